"""The observation builder over rolling windows equals EncodedInputDataset's sample at every
anchor close (None exactly where the dataset has no valid sample), across gaps."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.real_candles import cut_gaps, real_1m
from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import resample
from pivotal.features.indicators.feature_set import IndicatorConfig
from pivotal.features.inputs import EncodedInputDataset, InputSpec
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.encoder import BASE_CHANNELS
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.inputs.rolling import RollingCandles

M1, M5, H1 = Timeframe.M1, Timeframe.M5, Timeframe.H1
MS = 60_000
SMALL = IndicatorConfig(
    sma_period=5, ema_period=4, wma_period=6, rsi_period=3, macd_fast=3, macd_slow=6,
    macd_signal=2, bb_period=5, stoch_k_period=4, stoch_k_smooth=2, stoch_d_period=2,
    atr_period=3, volatility_period=4, momentum_period=3,
)  # fmt: skip


N_BASE = len(BASE_CHANNELS)


def walk(steps: list[int], seed: int, start_price: float = 100.0) -> Candles:
    rng = np.random.default_rng(seed)
    n = len(steps)
    close = start_price * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 1e-3, n)))
    ts = 1_699_999_980_000 + np.cumsum(np.asarray(steps, dtype=np.int64)) * MS
    return Candles(ts, open_, high, low, close, rng.lognormal(0, 1, n))


def streams_of(m1: Candles, timeframes: tuple[Timeframe, ...]) -> dict[Timeframe, Candles]:
    return {tf: m1 if tf is M1 else resample(m1, M1, tf) for tf in timeframes}


def check_every_close(
    spec: InputSpec,
    data: Mapping[Timeframe, Candles],
    config: ColumnsConfig,
    *,
    capacity: int,
    anchor: Timeframe | None = None,
    reference: Mapping[Timeframe, Candles] | None = None,
    gap_bars: int = 5,
) -> tuple[int, int]:
    """Push every candle as it closes and compare ``observe`` with the dataset at every
    close of any stream; returns (valid samples compared, invalid ones)."""
    extra = {tf: candle_columns(c, tf, config, max_missing_bars=gap_bars) for tf, c in data.items()}
    ds = EncodedInputDataset(
        spec, data, 0, 2**62, anchor=anchor, reference=reference, extra=extra,
        max_missing_bars=gap_bars,
    )  # fmt: skip
    builder = ObservationBuilder(spec, anchor=anchor, columns=config, max_missing_bars=gap_bars)
    assert builder.layout == ds.layout
    times = ds.times(np.arange(len(ds))).tolist()
    sample = {t: k for k, t in enumerate(times)}
    sources = [(False, tf, c) for tf, c in data.items()]
    sources += [(True, tf, c) for tf, c in (reference or {}).items()]
    rolls = {
        (is_ref, tf): RollingCandles(tf, capacity=capacity, columns=config,
                                     max_missing_bars=gap_bars)
        for is_ref, tf, _ in sources
    }  # fmt: skip
    primary = {tf: r for (is_ref, tf), r in rolls.items() if not is_ref}
    refs = {tf: r for (is_ref, tf), r in rolls.items() if is_ref}
    pos = dict.fromkeys(rolls, 0)
    closes = np.unique(np.concatenate([c.timestamp + tf.ms for _, tf, c in sources]))
    compared = invalid = 0
    for t in closes.tolist():  # every time a candle of some stream closes
        for is_ref, tf, candles in sources:
            key = (is_ref, tf)
            while pos[key] < len(candles) and int(candles.timestamp[pos[key]]) + tf.ms <= t:
                rolls[key].append(*(float(a[pos[key]]) for a in candles.columns().values()))
                pos[key] += 1
        got = builder.observe(primary, t, refs or None)
        k = sample.get(t)
        if k is None or not ds.valid[k]:
            assert got is None, t
            invalid += k is not None
            continue
        want = ds[k].numpy()
        assert got is not None and got.dtype == np.float32 and got.shape == want.shape, t
        # candle channels: the same arithmetic, bit for bit; columns: the streaming tolerance
        np.testing.assert_array_equal(got[..., :N_BASE], want[..., :N_BASE])
        np.testing.assert_allclose(got[..., N_BASE:], want[..., N_BASE:], rtol=3e-7, atol=1e-7)
        compared += 1
    assert compared + invalid == len(ds)
    return compared, invalid


steps_strategy = st.lists(
    st.one_of(st.just(1), st.just(1), st.just(1), st.integers(2, 7), st.integers(7, 30)),
    min_size=30,
    max_size=400,
)


@settings(max_examples=20, deadline=None)
@given(
    steps=steps_strategy,
    seed=st.integers(0, 2**16),
    frames=st.integers(2, 12),
    min_frames=st.integers(1, 12),
    gap_bars=st.integers(0, 6),
)
def test_observe_equals_the_dataset_at_every_close(
    steps: list[int], seed: int, frames: int, min_frames: int, gap_bars: int
) -> None:
    spec = InputSpec.candles(["1m", "5m"], frames=frames, min_frames=min(frames, min_frames))
    config = ColumnsConfig(indicator=SMALL, pivot_levels=2, obv_window=4)
    data = streams_of(walk(steps, seed), (M1, M5))
    try:
        check_every_close(spec, data, config, capacity=frames + 3, gap_bars=gap_bars)
    except DataError:  # the dataset has no sample at all (too few candles): nothing to compare
        builder = ObservationBuilder(spec, columns=config, max_missing_bars=gap_bars)
        rolls = {tf: RollingCandles(tf, capacity=frames + 3, columns=config) for tf in data}
        for tf, candles in data.items():
            rolls[tf].extend(candles)
        assert builder.observe(rolls, int(data[M1].timestamp[-1]) + MS) is None


def test_observe_with_a_reference_symbol_and_another_anchor() -> None:
    spec = InputSpec.candles(
        ["1m", "5m"], frames=8, min_frames=4, reference_symbol="ETH/USDT",
        reference_timeframes=["1m"],
    )  # fmt: skip
    steps = [1] * 300 + [12] + [1] * 200
    data = streams_of(walk(steps, 3), (M1, M5))
    reference = {M1: walk(steps, 4, start_price=2_000.0)}
    compared, invalid = check_every_close(
        spec, data, ColumnsConfig(indicator=SMALL), capacity=8, anchor=M5, reference=reference
    )
    assert compared > 50 and invalid > 0


def test_observe_refuses_a_window_larger_than_the_capacity() -> None:
    data = walk([1] * 50, 1)
    rolling = RollingCandles("1m", capacity=5)
    rolling.extend(data)
    builder = ObservationBuilder(InputSpec.candles(["1m"], frames=10, min_frames=2))
    with pytest.raises(ValueError, match="capacity"):
        builder.observe({M1: rolling}, int(data.timestamp[-1]) + MS)
    other = ObservationBuilder(
        InputSpec.candles(["1m"], frames=3, min_frames=2), columns=ColumnsConfig(pivots=False)
    )
    with pytest.raises(ValueError, match="columns"):
        other.observe({M1: rolling}, int(data.timestamp[-1]) + MS)


# -- real data ------------------------------------------------------------------------------
@pytest.mark.parametrize(("symbol", "seed"), [("BTC", 11), ("ETH", 12)])
def test_real_1m_5m_1h_with_gaps_equals_the_dataset(symbol: str, seed: int) -> None:
    m1 = cut_gaps(real_1m(symbol, 5_000, seed), seed, count=8)
    data = streams_of(m1, (M1, M5, H1))
    spec = InputSpec.candles(["1m", "5m", "1h"], frames=24, min_frames=6)
    compared, invalid = check_every_close(spec, data, ColumnsConfig(), capacity=60)
    assert compared > 1_000 and invalid > 0
