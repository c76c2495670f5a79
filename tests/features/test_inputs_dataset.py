"""The bulk dataset equals the one-at-a-time builder + encoder, on real and synthetic data."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.trades import Trades
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.features.inputs import (
    EncodedInputDataset,
    InputEncoder,
    InputSpec,
    build_input,
    closed_window,
)
from pivotal.features.scalers import FeatureLayout
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

S1, M1, H1, D1 = Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1
DATA = shared_data_dir()
real_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


@cache
def ohlcv(symbol: str, tf: str) -> Candles:
    assert DATA is not None
    path = DATA / "ohlcv" / "binance-spot" / tf / f"{symbol}_USDT-{tf}.parquet"
    return Candles.from_frame(pd.read_parquet(path, columns=COLUMNS))


def assert_bulk_equals_single(
    ds: EncodedInputDataset,
    candles: dict[Timeframe, Candles],
    symbol: str,
    reference: dict[Timeframe, Candles] | None = None,
    step: int = 1,
) -> int:
    indices = np.arange(0, len(ds), step)
    batch = torch.cat([ds.get_batch(indices[i : i + 512]) for i in range(0, len(indices), 512)])
    encoder = InputEncoder(ds.spec)
    for k, t in enumerate(ds.times(indices)):
        inp = build_input(candles, symbol, int(t), ds.spec, reference=reference)
        single = encoder.encode(inp)
        assert torch.equal(batch[k], single), f"sample {indices[k]} at t={t} differs"
    return len(indices)


@real_data
def test_bulk_equals_one_at_a_time_on_real_eth_1m_1h_1d_with_btc_reference() -> None:
    eth = {tf: ohlcv("ETH", tf.value) for tf in (M1, H1, D1)}
    btc = {M1: ohlcv("BTC", "1m")}
    spec = InputSpec.candles([M1, H1, D1], reference_symbol="BTC/USDT", reference_timeframes=[M1])
    start = int(eth[M1].timestamp[0])  # ETH 1m starts here: the first samples are left-padded
    ds = EncodedInputDataset(spec, eth, start, start + 3_000 * 60_000, anchor=M1, reference=btc)
    assert ds.first_time == start + 100 * 60_000  # the 100th 1m candle closes there
    assert len(ds) == 2_900
    assert ds.layout.shape == (4, 300, 7)
    x = ds.get_batch([0, len(ds) - 1])
    assert x[0, 0, :, 6].sum() == 100 and x[1, 0, :, 6].sum() == 300
    assert assert_bulk_equals_single(ds, eth, "ETH/USDT", btc) == 2_900
    # memory: per stream, the candles of the range plus `frames` of history plus `frames - 1`
    # padding rows, 7 float64 columns; nothing per sample
    in_range = 3_000 + 51 + 3 + 3_000  # ETH 1m, 1h, 1d, BTC 1m
    assert ds.source_bytes <= (in_range + 4 * (300 + 299)) * 7 * 8


@real_data
def test_bulk_equals_one_at_a_time_with_1s_candles_built_from_real_trades() -> None:
    assert DATA is not None
    files = sorted((DATA / "trades" / "binance-spot").glob("BTC_USDT-trades-*.parquet"))
    frame = pd.read_parquet(files[0]).sort_values("timestamp", kind="stable")
    s1 = aggregate_trades(Trades.from_frame(frame), S1).candles
    data = {S1: s1, M1: ohlcv("BTC", "1m")}
    spec = InputSpec.candles([S1, M1])
    ds = EncodedInputDataset(spec, data, 0, 2**62, anchor=S1)
    assert len(ds) == len(s1) - 99
    assert assert_bulk_equals_single(ds, data, "BTC/USDT") == len(ds)


@real_data
def test_item_and_dataloader_paths_give_the_same_samples() -> None:
    eth = {tf: ohlcv("ETH", tf.value) for tf in (M1, H1)}
    spec = InputSpec.candles([M1, H1], frames=120, min_frames=100)
    ds = EncodedInputDataset(spec, eth, 1_750_000_000_000, 1_750_030_000_000)
    whole = ds.get_batch(np.arange(len(ds)))
    assert torch.equal(ds[3], whole[3])
    assert torch.equal(ds[-1], whole[-1])
    loader = DataLoader(ds, batch_size=None, sampler=BatchSampler(SequentialSampler(ds), 64, False))
    assert torch.equal(torch.cat(list(loader)), whole)
    with pytest.raises(IndexError):
        ds[len(ds)]


def walk(tf: Timeframe, n: int, start: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]][:n]
    return Candles(
        start + tf.ms * np.arange(n, dtype=np.int64),
        open_,
        np.maximum(open_, close) * 1.001,
        np.minimum(open_, close) * 0.999,
        close,
        rng.exponential(5.0, n),
    )


T0 = 1_748_736_000_000
SMALL = InputSpec.candles([M1, H1], frames=30, min_frames=10)


def synthetic(seed: int = 0, drop: int = 0) -> dict[Timeframe, Candles]:
    m1 = walk(M1, 3_000, T0, seed)
    keep = np.ones(len(m1), dtype=bool)
    keep[1_000 : 1_000 + drop] = False  # an outage in the 1m series
    return {M1: m1[keep], H1: walk(H1, 60, T0 - 10 * H1.ms, seed + 1)}


def test_bulk_equals_single_with_extra_features_and_an_outage() -> None:
    data = synthetic(drop=45)
    layout = FeatureLayout(("ema", "flag"))
    full = {}
    for tf, c in data.items():
        ema = pd.Series(c.close).ewm(span=5, min_periods=5).mean().to_numpy()  # NaN warm-up
        full[tf] = (layout, np.column_stack([ema, np.arange(len(c)) % 2]))
    ds = EncodedInputDataset(SMALL, data, T0, T0 + 2 * 86_400_000, extra=full)
    assert ds.layout.channels.names[-2:] == ("ema", "flag")
    encoder = InputEncoder(SMALL, extra=layout)
    # a 45-bar outage is a gap: samples whose window crosses it are invalid, the rest match
    assert 0 < ds.gap_invalid < len(ds)
    indices = np.flatnonzero(ds.valid)[::7]
    batch = ds.get_batch(indices)
    for k, t in enumerate(ds.times(indices)):
        inp = build_input(data, "ETH/USDT", int(t), SMALL)
        extra = {
            tf: (layout, m[closed_window(data[tf], tf, int(t), SMALL.frames)])
            for tf, (_, m) in full.items()
        }
        assert torch.equal(batch[k], encoder.encode(inp, extra))


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 2_900 * 60_000), seed=st.integers(0, 1_000), tail=st.integers(1, 200))
def test_samples_at_t_do_not_change_when_later_candles_are_appended(
    cut: int, seed: int, tail: int
) -> None:
    """A dataset over the data known at t and one with arbitrary later candles agree up to t."""
    t = T0 + 60 * 60_000 + cut
    data = synthetic(seed)
    known = {tf: c.between(None, tf.floor(t)) for tf, c in data.items()}
    later = {
        tf: Candles.concat([c, walk(tf, tail, tf.floor(t), seed + 7)]) for tf, c in known.items()
    }
    a = EncodedInputDataset(SMALL, known, T0, t + 1)
    b = EncodedInputDataset(SMALL, later, T0, t + 1)
    assert np.array_equal(a.times(np.arange(len(a))), b.times(np.arange(len(a))))
    assert torch.equal(a.get_batch(np.arange(len(a))), b.get_batch(np.arange(len(a))))


def test_refusals_say_what_is_wrong() -> None:
    data = synthetic()
    with pytest.raises(ValueError, match="requires cob_data"):
        EncodedInputDataset(InputSpec.full(), data, T0, T0 + 86_400_000)
    with pytest.raises(DataError, match="1d has 0 candles in all"):
        EncodedInputDataset(InputSpec.candles([M1, D1]), data, T0, T0 + 86_400_000)
    with pytest.raises(DataError, match="no 1m close in"):
        EncodedInputDataset(SMALL, data, T0, T0 + 5 * 60_000)
    with pytest.raises(ValueError, match="anchor 1d"):
        EncodedInputDataset(SMALL, data, T0, T0 + 86_400_000, anchor="1d")
    m1 = data[M1]
    close = m1.close.copy()
    close[500] = np.nan
    bad = {**data, M1: Candles(m1.timestamp, m1.open, m1.high, m1.low, close, m1.volume)}
    with pytest.raises(DataError, match="1m has 1 candles with NaN"):
        EncodedInputDataset(SMALL, bad, T0, T0 + 86_400_000)
    # outside the rows it uses, bad values do not matter
    assert len(EncodedInputDataset(SMALL, bad, T0 + 600 * 60_000, T0 + 700 * 60_000)) == 100


def test_reference_symbol_streams_are_encoded_after_the_primary_ones() -> None:
    data = synthetic()
    ref = {M1: walk(M1, 3_000, T0, 99)}
    btc = Symbol("BTC", "USDT")
    spec = InputSpec.candles(
        [M1, H1], frames=30, min_frames=10, reference_symbol=btc, reference_timeframes=[M1]
    )
    ds = EncodedInputDataset(spec, data, T0, T0 + 86_400_000, reference=ref)
    assert ds.layout.streams == ("1m", "1h", "reference 1m")
    assert_bulk_equals_single(ds, data, "ETH/USDT", ref, step=37)
