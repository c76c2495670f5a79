"""Resampling is exact: it equals the exchange's own higher-timeframe bars and pandas, streaming
equals batch bit for bit, and resampling composes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.core.types import OHLCVBar
from pivotal.data.resample import CandleResampler, resample
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
H = 3_600_000
M = 60_000


def make_candles(
    seed: int, n: int, step_ms: int, *, gap_prob: float = 0.0, dyadic: bool = False
) -> Candles:
    """Valid random candles on the ``step_ms`` grid, with random outages when gap_prob > 0."""
    rng = np.random.default_rng(seed)
    jumps = 1 + (rng.random(n) < gap_prob) * rng.integers(1, 300, n)
    ts = (int(rng.integers(0, 10_000)) + np.cumsum(jumps)) * step_ms
    return candles_at(ts, seed, dyadic=dyadic)


def candles_at(ts: np.ndarray, seed: int, *, dyadic: bool = False) -> Candles:
    """Valid random candles at the open times ``ts``."""
    rng = np.random.default_rng(seed + 1)
    n = len(ts)
    close = 1_000 + np.cumsum(rng.normal(0, 1, n))
    open_ = close + rng.normal(0, 0.5, n)
    high = np.maximum(open_, close) + rng.random(n)
    low = np.minimum(open_, close) - rng.random(n)
    # dyadic volumes add exactly in any order, so composed resamples can be compared exactly
    volume = rng.integers(0, 2**20, n) / 1024 if dyadic else rng.exponential(3.0, n)
    return Candles(ts, open_, high, low, close, volume)


def pandas_resample(candles: Candles, source: Timeframe, target: Timeframe) -> pd.DataFrame:
    """Independent oracle: pandas ``resample().agg`` with the module's coverage rule."""
    frame = candles.to_frame(datetime_index=True)
    out = frame.resample(f"{target.ms}ms", origin="epoch").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    out["n"] = frame["close"].resample(f"{target.ms}ms", origin="epoch").count()
    out = out[out["n"] > 0]
    out.index = out.index.as_unit("ms").asi8
    first, last = int(candles.timestamp[0]), int(candles.timestamp[-1])
    covered = (out.index >= first) & (out.index + target.ms <= last + source.ms)
    return out[covered]


def assert_same(ours: Candles, ref: pd.DataFrame, *, volume_decimals: int | None = None) -> None:
    np.testing.assert_array_equal(ours.timestamp, ref.index.to_numpy())
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(ours, name), ref[name].to_numpy(), err_msg=name)
    volume = ours.volume if volume_decimals is None else np.round(ours.volume, volume_decimals)
    if volume_decimals is None:
        np.testing.assert_allclose(volume, ref["volume"].to_numpy(), rtol=1e-12)
    else:
        np.testing.assert_array_equal(volume, ref["volume"].to_numpy())


def test_buckets_by_hand() -> None:
    # minutes 0, 1, 2 of hour 0 missing minute 3..58 (outage), then all of hour 1
    ts = np.concatenate(([0, M, 2 * M, 59 * M], H + np.arange(60) * M))
    n = len(ts)
    close = np.arange(1.0, n + 1)
    candles = Candles(ts, close - 0.5, close + 1, close - 1, close, np.ones(n))
    out = resample(candles, Timeframe.M1, Timeframe.H1)
    np.testing.assert_array_equal(out.timestamp, [0, H])
    np.testing.assert_array_equal(out.open, [0.5, 4.5])
    np.testing.assert_array_equal(out.high, [5.0, float(n + 1)])
    np.testing.assert_array_equal(out.low, [0.0, 4.0])
    np.testing.assert_array_equal(out.close, [4.0, float(n)])
    np.testing.assert_array_equal(out.volume, [4.0, 60.0])


def test_edge_buckets_need_full_coverage_unless_partial() -> None:
    day = make_candles(0, 3 * 60, M)  # three hours, but shifted off the hour
    start = int(day.timestamp[0])
    assert start % H != 0
    out = resample(day, Timeframe.M1, Timeframe.H1)
    # the first hour starts before the data; the last ends after it
    assert out.timestamp[0] == start - start % H + H
    assert out.timestamp[-1] + H <= day.timestamp[-1] + M
    partial = resample(day, Timeframe.M1, Timeframe.H1, partial=True)
    assert len(partial) == len(out) + 2
    assert partial.open[0] == day.open[0] and partial.close[-1] == day.close[-1]


def test_last_bucket_is_complete_when_its_last_slot_is_present() -> None:
    ts = np.array([0, 30 * M, 59 * M])  # interior outage inside the bucket, but both edges present
    candles = Candles(ts, [1.0] * 3, [2.0] * 3, [0.5] * 3, [1.0] * 3, [1.0] * 3)
    assert len(resample(candles, Timeframe.M1, Timeframe.H1)) == 1
    assert len(resample(candles[:2], Timeframe.M1, Timeframe.H1)) == 0
    assert len(resample(candles[1:], Timeframe.M1, Timeframe.H1)) == 0


def test_same_timeframe_is_identity_and_empty_stays_empty() -> None:
    candles = make_candles(1, 500, M, gap_prob=0.05)
    assert resample(candles, Timeframe.M1, Timeframe.M1).equals(candles)
    assert len(resample(Candles.empty(), Timeframe.M1, Timeframe.H1)) == 0


@pytest.mark.parametrize(
    ("source", "target"),
    [(Timeframe.M3, Timeframe.M5), (Timeframe.H1, Timeframe.M1), (Timeframe.H8, Timeframe.H12)],
)
def test_target_must_be_a_whole_multiple(source: Timeframe, target: Timeframe) -> None:
    with pytest.raises(ValueError, match="whole multiple"):
        resample(Candles.empty(), source, target)
    with pytest.raises(ValueError, match="whole multiple"):
        CandleResampler(source, target)


def test_unsorted_duplicated_or_off_grid_input_is_refused() -> None:
    candles = make_candles(2, 10, M)
    order = np.arange(10)
    order[[3, 4]] = order[[4, 3]]
    with pytest.raises(ValueError, match="sorted"):
        resample(candles[order], Timeframe.M1, Timeframe.H1)
    with pytest.raises(ValueError, match="duplicates"):
        resample(candles[np.array([0, 1, 1, 2])], Timeframe.M1, Timeframe.H1)
    with pytest.raises(ValueError, match="grid"):
        resample(candles, Timeframe.M15, Timeframe.H1)


def test_streaming_refuses_bars_out_of_order_and_keeps_its_state() -> None:
    candles = make_candles(3, 200, M)
    stream = CandleResampler(Timeframe.M1, Timeframe.H1)
    first = stream.update(candles[:100])
    with pytest.raises(ValueError, match="not after the last candle"):
        stream.update(candles[50:60])
    bars = Candles.concat([first, stream.update(candles[100:]), stream.flush()])
    assert bars.equals(resample(candles, Timeframe.M1, Timeframe.H1))


def test_streaming_emits_a_bucket_as_soon_as_its_last_slot_arrives() -> None:
    candles = make_candles(4, 180, M)
    candles = candles.between(candles.timestamp[0] - candles.timestamp[0] % H + H)  # on the hour
    stream = CandleResampler(Timeframe.M1, Timeframe.H1)
    assert len(stream.update(candles[:59])) == 0
    done = stream.update(candles[59:60])
    assert len(done) == 1 and done.timestamp[0] == candles.timestamp[0]
    symbol = Symbol("BTC", "USDT")
    out = [stream.update(OHLCVBar.from_candles(candles, i, symbol, Timeframe.M1)) for i in (60, 61)]
    assert sum(len(o) for o in out) == 0
    assert stream.last_timestamp == candles.timestamp[61]
    with pytest.raises(ValueError, match="timeframe"):
        stream.update(OHLCVBar.from_candles(candles, 62, symbol, Timeframe.M5))


chunkings = st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 2_000),
    gap_prob=st.sampled_from([0.0, 0.002, 0.05, 0.5]),
    pair=st.sampled_from(
        [
            (Timeframe.M1, Timeframe.H1),
            (Timeframe.S1, Timeframe.M1),
            (Timeframe.M1, Timeframe.M5),
            (Timeframe.M5, Timeframe.H4),
            (Timeframe.H1, Timeframe.D1),
        ]
    ),
    partial=st.booleans(),
    sizes=chunkings,
    one_bar_mode=st.booleans(),
)
def test_streaming_equals_batch_in_any_chunking(
    seed: int,
    n: int,
    gap_prob: float,
    pair: tuple[Timeframe, Timeframe],
    partial: bool,
    sizes: list[int],
    one_bar_mode: bool,
) -> None:
    source, target = pair
    candles = make_candles(seed, n, source.ms, gap_prob=gap_prob)
    stream = CandleResampler(source, target, partial=partial)
    symbol = Symbol("BTC", "USDT")
    outputs, i, k = [], 0, 0
    while i < n:
        size = sizes[k % len(sizes)]
        k += 1
        if size == 1 and one_bar_mode:
            outputs.append(stream.update(OHLCVBar.from_candles(candles, i, symbol, source)))
        else:
            outputs.append(stream.update(candles[i : i + size]))
        i += size
    outputs.append(stream.flush())
    streamed = Candles.concat(outputs)
    batch = resample(candles, source, target, partial=partial)
    assert streamed.equals(batch)  # bit-identical, volume sums included


CHAINS = [
    (Timeframe.S1, Timeframe.M1, Timeframe.H1),
    (Timeframe.M1, Timeframe.M15, Timeframe.H4),
    (Timeframe.M5, Timeframe.H1, Timeframe.D1),
    (Timeframe.M1, Timeframe.M3, Timeframe.M30),
]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3_000),
    chain=st.sampled_from(CHAINS),
    layout=st.sampled_from(["partial, gaps", "gapless", "gaps, edges on the middle grid"]),
)
def test_resampling_composes(
    seed: int, n: int, chain: tuple[Timeframe, Timeframe, Timeframe], layout: str
) -> None:
    """small -> middle -> large equals small -> large (exactly: dyadic volumes add exactly).

    With ``partial=False`` the middle step drops its own uncovered edge buckets, so the large
    step may see the data begin later than it did; composition holds when that loses nothing:
    gapless data, or data whose first and last bars sit on the middle grid's bucket edges.
    """
    small, middle, large = chain
    partial = layout.startswith("partial")
    gaps = 0.0 if layout == "gapless" else 0.2
    candles = make_candles(seed, n, small.ms, gap_prob=gaps, dyadic=True)
    if layout.startswith("gaps"):  # move the first and last bar onto the middle grid's edges
        ts = candles.timestamp
        first = -(-int(ts[0]) // middle.ms) * middle.ms
        last = int(ts[-1]) // middle.ms * middle.ms - small.ms
        if last < first:
            return
        inside = ts[(ts > first) & (ts < last)]
        ts = np.unique(np.concatenate(([first], inside, [last])))
        candles = candles_at(ts, seed, dyadic=True)
    two_steps = resample(
        resample(candles, small, middle, partial=partial), middle, large, partial=partial
    )
    assert two_steps.equals(resample(candles, small, large, partial=partial))


def test_composition_can_lose_coverage_at_the_middle_step() -> None:
    """Data from 11:57 with an outage until 16:30: 1m -> 4h keeps the 16:00 bucket (interior),
    but 1m -> 15m drops 11:45 (uncovered), so 15m -> 4h sees data begin at 16:30 and drops it.
    Use ``partial=True`` in the middle step or align the data to it (see the test above)."""
    t0 = 11 * H + 57 * M
    ts = np.concatenate(([t0, t0 + M], 16 * H + 30 * M + np.arange(90) * M, [20 * H]))
    candles = candles_at(ts, 0)
    direct = resample(candles, Timeframe.M1, Timeframe.H4)
    via_15m = resample(resample(candles, Timeframe.M1, Timeframe.M15), Timeframe.M15, Timeframe.H4)
    assert list(direct.timestamp) == [16 * H] and len(via_15m) == 0


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3_000),
    gap_prob=st.sampled_from([0.0, 0.01, 0.3]),
    pair=st.sampled_from([(Timeframe.M1, Timeframe.H1), (Timeframe.H1, Timeframe.D1)]),
)
def test_matches_pandas_resample(
    seed: int, n: int, gap_prob: float, pair: tuple[Timeframe, Timeframe]
) -> None:
    source, target = pair
    candles = make_candles(seed, n, source.ms, gap_prob=gap_prob)
    assert_same(resample(candles, source, target), pandas_resample(candles, source, target))


# -- real Binance data ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def btc_1m() -> Candles:
    assert DATA is not None
    return Candles.from_frame(pd.read_parquet(DATA / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet"))


def official(relative: str) -> pd.DataFrame:
    assert DATA is not None
    return pd.read_parquet(Path(DATA) / relative).set_index("timestamp")


@needs_data
@pytest.mark.parametrize(
    ("target", "relative", "complete"),
    [
        (Timeframe.H1, "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet", 26_302),
        (Timeframe.D1, "ohlcv/binance-spot/1d/BTC_USDT-1d.parquet", 1_095),
    ],
)
def test_real_1m_resampled_equals_the_exchange_bars(
    btc_1m: Candles, target: Timeframe, relative: str, complete: int
) -> None:
    ours = resample(btc_1m, Timeframe.M1, target)
    oracle = pandas_resample(btc_1m, Timeframe.M1, target)
    assert_same(ours, oracle)  # an independent computation agrees on every bucket
    full = oracle.index[oracle["n"] == target.ms // M]
    assert len(full) == complete  # README: 26,302 complete hours; one day has the outage
    ref = official(relative)
    emitted = pd.Index(ours.timestamp)
    assert full.isin(ref.index).all() and emitted.isin(ref.index).all()
    # every complete bucket, and the outage bucket built from the bars present, equal Binance's
    assert_same(ours, ref.loc[emitted], volume_decimals=8)


@needs_data
def test_real_outage_hour_is_emitted_from_the_bars_present(btc_1m: Candles) -> None:
    outage_hour = 1_679_659_200_000  # 2023-03-24 12:00 UTC: 40 bars, then the spot outage
    hour = btc_1m.between(outage_hour, outage_hour + H)
    assert len(hour) == 40
    out = resample(btc_1m.between(outage_hour - H, outage_hour + 3 * H), Timeframe.M1, Timeframe.H1)
    assert outage_hour in out.timestamp
    assert outage_hour + H not in out.timestamp  # no bar at all in 13:00


@needs_data
def test_real_streaming_over_a_month_equals_batch(btc_1m: Candles) -> None:
    month = btc_1m[:43_200]
    rng = np.random.default_rng(7)
    bounds = [0, *np.unique(rng.integers(1, len(month), 300)).tolist(), len(month)]
    stream = CandleResampler(Timeframe.M1, Timeframe.H4)
    parts = [stream.update(month[a:b]) for a, b in itertools.pairwise(bounds)]
    assert Candles.concat([*parts, stream.flush()]).equals(
        resample(month, Timeframe.M1, Timeframe.H4)
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), gap_prob=st.sampled_from([0.0, 0.01, 0.2]))
def test_resample_complete_keeps_exactly_the_full_buckets(seed: int, gap_prob: float) -> None:
    """What ``pivotal data resample`` stores: every full bucket, equal to :func:`resample`'s,
    and the open time of every bucket that has some bars but not all, nothing else."""
    from pivotal.data.resample import resample_complete

    candles = make_candles(seed, 3_000, M, gap_prob=gap_prob)
    built = resample_complete(candles, Timeframe.M1, Timeframe.M15)
    everything = resample(candles, Timeframe.M1, Timeframe.M15, partial=True)
    bars = pd.Series(candles.timestamp // (15 * M)).value_counts()
    full = np.sort(bars[bars == 15].index.to_numpy() * 15 * M)
    partial = np.sort(bars[bars < 15].index.to_numpy() * 15 * M)
    assert built.candles.timestamp.tolist() == full.tolist()
    assert built.partial.tolist() == partial.tolist() and built.skipped == len(partial)
    assert built.candles.equals(everything[np.isin(everything.timestamp, full)])
