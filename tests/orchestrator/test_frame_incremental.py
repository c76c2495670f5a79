"""The incremental, bounded MarketFrame: candles pushed as they close give, at every bar,
the batch indicators, pivots and encoded samples of the whole history, while the frame keeps
only the newest ``capacity`` candles per timeframe."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.real_candles import cut_gaps, real_1m
from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.gaps import segment_starts
from pivotal.data.resample import resample
from pivotal.features.indicators import compute_indicator_features
from pivotal.features.inputs import EncodedInputDataset, InputSpec
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.encoder import BASE_CHANNELS
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.pivots.williams import to_pivot_points, williams_pivots
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.frame import MarketFrame
from pivotal.orchestrator.subscriptions import (
    DataSubscriptionManager,
    StreamKey,
    StreamKind,
    StreamUpdate,
)
from pivotal.testing.planted import planted_candles

M1, M5, H1 = Timeframe.M1, Timeframe.M5, Timeframe.H1
TFS = (M1, M5, H1)
MS = 60_000
N_BASE = len(BASE_CHANNELS)


def same(got: np.ndarray, want: np.ndarray, where: str) -> None:
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), where
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=1e-10, atol=1e-8, err_msg=where)


class ExpectedPivots:
    """The batch definition of what the frame shows: the newest ``keep`` pivots of the whole
    history confirmed by ``t`` whose extreme lies in the segment of the newest candle closed
    at ``t`` (none when a gap reaches ``t``)."""

    def __init__(self, candles: Candles, tf: Timeframe, symbol: Symbol) -> None:
        frame = williams_pivots(
            candles.high, candles.low, levels=5, strength=2, timestamps=candles.timestamp,
            step_ms=tf.ms,
        )  # fmt: skip
        self.points = to_pivot_points(frame, symbol, candles.timestamp, bar_ms=tf.ms)
        self.confirmed = np.array([p.confirmed_at for p in self.points], dtype=np.int64)
        self.extreme = np.array([p.timestamp for p in self.points], dtype=np.int64)
        self.ts = candles.timestamp
        self.starts = self.ts[segment_starts(self.ts, tf.ms)]
        self.tf = tf

    def at(self, t: int, keep: int) -> list:
        end = int(np.searchsorted(self.ts, t - self.tf.ms, side="right"))
        if not end or (t - int(self.ts[end - 1])) // self.tf.ms - 1 > 5:
            return []
        first = self.starts[np.searchsorted(self.starts, self.ts[end - 1], side="right") - 1]
        count = int(np.searchsorted(self.confirmed, t, side="right"))
        shown = [k for k in range(max(0, count - keep), count) if self.extreme[k] >= first]
        return [self.points[k] for k in shown]


@pytest.mark.parametrize(("symbol", "seed"), [("BTC", 21), ("ETH", 22)])
def test_pushed_real_bars_equal_the_batch_at_every_bar(symbol: str, seed: int) -> None:
    """BTC/ETH 1m with gaps cut in, 1m/5m/1h pushed as a live feed would (each candle when
    it closes, then the cursor): at every base bar the indicators equal the batch over the
    whole history, the pivots equal the batch pivots, the windows are the newest
    ``capacity`` candles, and ``observe`` equals the bulk dataset's sample."""
    m1 = cut_gaps(real_1m(symbol, 3_000, seed), seed, count=6)
    data = {tf: m1 if tf is M1 else resample(m1, M1, tf) for tf in TFS}
    sym = Symbol(symbol, "USDT")
    name = str(sym)
    capacity = 120
    columns = ColumnsConfig()
    frame = MarketFrame(capacity=capacity, max_pivots=15, columns=columns)
    spec = InputSpec.candles(["1m", "5m", "1h"], frames=20, min_frames=4)
    builder = ObservationBuilder(spec, columns=columns)
    extra = {tf: candle_columns(c, tf, columns) for tf, c in data.items()}
    ds = EncodedInputDataset(spec, data, 0, 2**62, extra=extra)
    sample = {int(t): k for k, t in enumerate(ds.times(np.arange(len(ds))))}
    raw = {
        tf: compute_indicator_features(c, allow_short=True, step_ms=tf.ms) for tf, c in data.items()
    }
    pivots = ExpectedPivots(data[M1], M1, sym)
    assert (np.diff(pivots.confirmed) >= 0).all()
    pos = dict.fromkeys(TFS, 0)
    compared = 0
    for i, t in enumerate((m1.timestamp + MS).tolist()):
        for tf, candles in data.items():
            hi = int(np.searchsorted(candles.timestamp + tf.ms, t, side="right"))
            if hi > pos[tf]:
                assert frame.append_candles(name, tf, candles[pos[tf] : hi]) == hi - pos[tf]
                pos[tf] = hi
        frame.advance(name, t)
        for tf, candles in data.items():
            end = pos[tf]
            shown = frame.candles(name, tf)
            assert shown.equals(candles[max(0, end - capacity) : end]), (tf, i)
            if end:
                got = frame.indicators(name, tf)
                same(
                    np.array(list(got.values())),
                    np.array([v[end - 1] for v in raw[tf].values()]),
                    f"{tf} {i}",
                )
        assert list(frame.pivots(name)) == pivots.at(t, 15), i
        got = frame.observe(name, builder)
        k = sample.get(t)
        if k is None or not ds.valid[k]:
            assert got is None, i
        else:
            want_obs = ds[k].numpy()
            assert got is not None
            np.testing.assert_array_equal(got[..., :N_BASE], want_obs[..., :N_BASE])
            np.testing.assert_allclose(
                got[..., N_BASE:], want_obs[..., N_BASE:], rtol=3e-7, atol=1e-7
            )
            compared += 1
    assert compared > 1_000
    assert len(frame.candles(name, M1)) == capacity  # bounded


@settings(max_examples=10, deadline=None)
@given(
    steps=st.lists(
        st.one_of(st.just(1), st.just(1), st.just(1), st.integers(2, 7), st.integers(7, 90)),
        min_size=50,
        max_size=300,
    ),
    seed=st.integers(0, 2**16),
    capacity=st.integers(30, 200),
)
def test_pushed_walk_with_gaps_equals_the_batch_at_every_bar(
    steps: list[int], seed: int, capacity: int
) -> None:
    """A random walk with random gaps pushed 1m/5m/1h: indicators, pivots and windows equal
    the batch definitions at every 1m close."""
    rng = np.random.default_rng(seed)
    n = len(steps)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 3e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    ts = 1_699_999_980_000 + np.cumsum(np.asarray(steps, dtype=np.int64)) * MS
    m1 = Candles(
        ts, open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999, close,
        rng.lognormal(0, 1, n),
    )  # fmt: skip
    data = {tf: m1 if tf is M1 else resample(m1, M1, tf) for tf in TFS}
    raw = {
        tf: compute_indicator_features(c, allow_short=True, step_ms=tf.ms)
        for tf, c in data.items()
        if len(c)  # a short walk may have no complete 1h candle
    }
    pivots = ExpectedPivots(m1, M1, Symbol("BTC", "USDT"))
    frame = MarketFrame(capacity=capacity, max_pivots=12)
    pos = dict.fromkeys(TFS, 0)
    for i, t in enumerate((m1.timestamp + MS).tolist()):
        for tf, candles in data.items():
            hi = int(np.searchsorted(candles.timestamp + tf.ms, t, side="right"))
            frame.append_candles("BTC/USDT", tf, candles[pos[tf] : hi])
            pos[tf] = hi
        frame.advance("BTC/USDT", t)
        for tf, candles in data.items():
            end = pos[tf]
            assert frame.candles("BTC/USDT", tf).equals(candles[max(0, end - capacity) : end])
            if end:
                got = np.array(list(frame.indicators("BTC/USDT", tf).values()))
                same(got, np.array([v[end - 1] for v in raw[tf].values()]), f"{tf} {i}")
        assert list(frame.pivots("BTC/USDT")) == pivots.at(t, 12), i


def test_loaded_backlog_equals_pushed_bars_and_stays_bounded() -> None:
    m1 = planted_candles(4_000, seed=3, scale=0.004)
    data = {tf: m1 if tf is M1 else resample(m1, M1, tf) for tf in TFS}
    loaded = MarketFrame(capacity=300, max_pivots=30)
    loaded.load("BTC/USDT", data)
    pushed = MarketFrame(capacity=300, max_pivots=30)
    spec = InputSpec.candles(["1m", "5m", "1h"], frames=50, min_frames=10)
    builder = ObservationBuilder(spec)
    for i in range(0, len(m1), 7):
        t = int(m1.timestamp[i]) + MS
        for tf, candles in data.items():
            hi = int(np.searchsorted(candles.timestamp + tf.ms, t, side="right"))
            pushed.append_candles("BTC/USDT", tf, candles[:hi])  # re-publishing is a no-op
        pushed.advance("BTC/USDT", t)
        loaded.advance("BTC/USDT", t)
        for tf in TFS:
            assert loaded.candles("BTC/USDT", tf).equals(pushed.candles("BTC/USDT", tf))
            a, b = loaded.indicators("BTC/USDT", tf), pushed.indicators("BTC/USDT", tf)
            assert list(a) == list(b)
            assert np.array_equal(
                np.array(list(a.values())), np.array(list(b.values())), equal_nan=True
            )
        assert loaded.pivots("BTC/USDT") == pushed.pivots("BTC/USDT")
        assert loaded.pivot_count("BTC/USDT") == pushed.pivot_count("BTC/USDT")
        x, y = loaded.observe("BTC/USDT", builder), pushed.observe("BTC/USDT", builder)
        assert (x is None and y is None) or np.array_equal(x, y)
    assert len(loaded.candles("BTC/USDT", M1)) == 300
    assert loaded.pivot_count("BTC/USDT") > 1_000  # counted since the first bar


def test_observe_and_input_refuse_what_the_frame_cannot_give() -> None:
    m1 = planted_candles(200, seed=1)
    frame = MarketFrame(capacity=50)
    with pytest.raises(ValueError, match="advance"):
        frame.observe(
            "BTC/USDT", ObservationBuilder(InputSpec.candles(["1m"], frames=5, min_frames=2))
        )
    frame.append_candles("BTC/USDT", M1, m1)
    t = int(m1.timestamp[-1]) + MS
    frame.advance("BTC/USDT", t - MS)
    builder = ObservationBuilder(InputSpec.candles(["1m"], frames=5, min_frames=2))
    with pytest.raises(ValueError, match="looks ahead"):
        frame.observe("BTC/USDT", builder, t)
    assert frame.observe("BTC/USDT", builder) is not None
    assert frame.observe("BTC/USDT", builder, t - MS - 30_000) is None  # not a close
    wide = InputSpec.candles(["1m"], frames=80, min_frames=2)
    with pytest.raises(ValueError, match="capacity"):
        frame.input("BTC/USDT", wide)
    with pytest.raises(ValueError, match="capacity"):
        frame.observe("BTC/USDT", ObservationBuilder(wide))
    five = ObservationBuilder(InputSpec.candles(["5m"], frames=5, min_frames=2))
    assert frame.observe("BTC/USDT", five) is None  # a stream the frame lacks
    with pytest.raises(ValueError, match="capacity"):
        MarketFrame(capacity=1)


def test_a_long_feed_keeps_memory_bounded() -> None:
    """Pushing 20x the capacity keeps at most ``capacity`` candles and a bounded pivot store."""
    m1 = planted_candles(6_000, seed=2, scale=0.004)
    frame = MarketFrame(capacity=300)
    for i in range(0, len(m1), 10):
        frame.append_candles("BTC/USDT", M1, m1[i : i + 10])
        frame.advance("BTC/USDT", int(m1.timestamp[min(i + 9, len(m1) - 1)]) + MS)
        assert len(frame.candles("BTC/USDT", M1)) <= 300
    assert frame.candles("BTC/USDT", M1).equals(m1[-300:])
    assert len(frame.pivots("BTC/USDT")) == 20


def test_derived_indicator_updates_go_on_past_the_capacity() -> None:
    """The subscription manager's derived indicator stream counts closed candles with
    ``candle_count``, which keeps growing once the window is full."""
    bars = planted_candles(120, seed=3, scale=0.004, start_time=1_700_000_040_000)
    frame = MarketFrame(capacity=20)
    manager = DataSubscriptionManager(frame)
    candles = StreamKey(StreamKind.CANDLES, "BTC/USDT", M1)
    indicators = StreamKey(StreamKind.INDICATORS, "BTC/USDT", M1)
    for key in (candles, indicators):
        manager.subscribe(key)
    for k in range(len(bars)):
        rows = bars[k : k + 1]
        manager.publish(StreamUpdate(candles, int(rows.timestamp[0]) + MS, rows))
        assert manager.drain()[:2] == [candles, indicators], k
        assert frame.candle_count("BTC/USDT", M1) == k + 1
        assert len(frame.candles("BTC/USDT", M1)) == min(k + 1, 20)
    assert manager.stats()[indicators].applied == len(bars)


def test_frame_capacity_is_configurable() -> None:
    assert OrchestratorConfig().frame_capacity == 1_500
    assert OrchestratorConfig(frame_capacity=500).frame_capacity == 500
    with pytest.raises(ValueError, match="frame_capacity"):
        OrchestratorConfig(frame_capacity=1)
