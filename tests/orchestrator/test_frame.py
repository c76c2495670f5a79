"""MarketFrame: nothing before advance, no look-ahead at any t, growing bar by bar equals
loading at once, and every part of the input equals its definition."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.trades import Trades
from pivotal.core.types import BaseDataInput, COBData
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.resample import resample
from pivotal.data.series import SeriesKey
from pivotal.features.indicators import compute_indicator_features
from pivotal.features.inputs import InputSpec
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.provider import StandardizedDataProvider
from pivotal.features.pivots.williams import to_pivot_points, williams_pivots
from pivotal.orchestrator.frame import MarketFrame
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

BTC = "BTC/USDT"
SYM = Symbol("BTC", "USDT")
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.H1)
SPEC = InputSpec.candles(["1m", "5m", "1h"], frames=30, min_frames=5)


def _history(n: int = 1_500, seed: int = 4) -> dict[Timeframe, Candles]:
    m1 = planted_candles(n, seed=seed, scale=0.004)
    return {tf: m1 if tf is Timeframe.M1 else resample(m1, Timeframe.M1, tf) for tf in TFS}


HISTORY = _history()
START = int(HISTORY[Timeframe.M1].timestamp[0])
END = int(HISTORY[Timeframe.M1].timestamp[-1]) + 60_000


def _closed(candles: Candles, tf: Timeframe, t: int) -> Candles:
    return candles.head(int(np.searchsorted(candles.timestamp, t - tf.ms, side="right")))


def _loaded(
    history: Mapping[Timeframe, Candles], t: int | None = None, **kw: object
) -> MarketFrame:
    frame = MarketFrame(**kw)  # type: ignore[arg-type]
    frame.load(BTC, history)
    if t is not None:
        frame.advance(BTC, t)
    return frame


def _same_indicators(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return list(a) == list(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(a.values(), b.values(), strict=True)
    )


def _close(x: float, y: float) -> bool:
    """Equal within the streaming twins' tolerance (rtol 1e-10, atol 1e-8), NaN as NaN."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= 1e-8 + 1e-10 * abs(y)


def _close_indicators(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """The frame's streaming indicators against a batch computation's."""
    return list(a) == list(b) and all(_close(a[k], b[k]) for k in a)


def _same_input(a: BaseDataInput, b: BaseDataInput) -> None:
    assert a.timestamp == b.timestamp
    assert list(a.ohlcv) == list(b.ohlcv)
    for tf in a.ohlcv:
        assert a.ohlcv[tf].equals(b.ohlcv[tf]), tf
    assert _same_indicators(a.technical_indicators, b.technical_indicators)
    assert a.pivot_points == b.pivot_points
    assert a.cob_data is b.cob_data or a.cob_data == b.cob_data
    assert dict(a.market_microstructure) == dict(b.market_microstructure)


def _snapshot(ts: int, symbol: Symbol = SYM) -> COBData:
    prices = 100.0 + np.arange(-2, 2, dtype=np.float64)
    return COBData(
        symbol=symbol,
        timestamp=ts,
        current_price=100.0,
        bucket_size=1.0,
        bucket_prices=prices,
        bid_volume=np.array([1.0, 2.0, 3.0, 0.0]),
        ask_volume=np.array([0.0, 1.0, 1.0, 2.0]),
        imbalance=np.zeros(4),
        volume_weighted_prices=prices,
    )


def _trades(times: np.ndarray, seed: int = 0) -> Trades:
    rng = np.random.default_rng(seed)
    n = len(times)
    return Trades(
        timestamp=times.astype(np.int64),
        price=100.0 + rng.normal(0, 1, n),
        quantity=rng.lognormal(0, 1, n) * 300,  # some trades above the 100k notional mark
        is_buyer_maker=rng.random(n) < 0.5,
        trade_id=np.arange(n, dtype=np.int64),
    )


# -- visibility -----------------------------------------------------------------------------
def test_nothing_is_visible_before_advance() -> None:
    frame = _loaded(HISTORY)
    assert frame.known_until(BTC) is None
    assert frame.symbols() == (BTC,)
    assert frame.timeframes(BTC) == TFS
    for tf in TFS:
        assert len(frame.candles(BTC, tf)) == 0
        assert frame.indicators(BTC, tf) == {}
    assert frame.pivots(BTC) == ()
    with pytest.raises(ValueError, match="advance"):
        frame.input(BTC, SPEC)
    frame.advance(BTC, START + 59_999)  # the first candle is still open
    assert len(frame.candles(BTC, "1m")) == 0
    frame.advance(BTC, START + 60_000)
    assert len(frame.candles(BTC, "1m")) == 1
    assert len(frame.candles(BTC, "1h")) == 0
    assert len(frame.candles("ETH/USDT", "1m")) == 0  # an unknown symbol shows nothing


def test_advance_only_moves_forward() -> None:
    frame = _loaded(HISTORY, START + 600_000)
    frame.advance(BTC, START + 600_000)  # staying is fine
    with pytest.raises(ValueError, match="goes back"):
        frame.advance(BTC, START + 540_000)
    with pytest.raises(TypeError, match="milliseconds"):
        frame.advance(BTC, float(START + 660_000))
    assert frame.known_until("btc/usdt") == START + 600_000  # any spelling of the symbol


@settings(max_examples=30, deadline=None)
@given(t=st.integers(START - 3_600_000, END + 3_600_000))
def test_no_look_ahead_at_any_t(t: int) -> None:
    """At every t the frame shows only closed candles and equals a frame that was given the
    history truncated at t: nothing later leaks into windows, indicators or pivots."""
    full = _loaded(HISTORY, t, max_pivots=10_000)
    truncated = _loaded({tf: _closed(c, tf, t) for tf, c in HISTORY.items()}, t, max_pivots=10_000)
    for tf in TFS:
        shown = full.candles(BTC, tf)
        assert np.all(shown.timestamp + tf.ms <= t)
        assert shown.equals(truncated.candles(BTC, tf))
        assert shown.equals(_closed(HISTORY[tf], tf, t))
        assert _same_indicators(full.indicators(BTC, tf), truncated.indicators(BTC, tf))
    assert full.pivots(BTC) == truncated.pivots(BTC)
    assert all(p.confirmed_at <= t for p in full.pivots(BTC))
    _same_input(full.input(BTC, SPEC), truncated.input(BTC, SPEC))


# -- growth ---------------------------------------------------------------------------------
def test_append_bar_by_bar_equals_load() -> None:
    history = _history(900, seed=7)
    loaded = _loaded(history, max_pivots=10_000)
    grown = MarketFrame(max_pivots=10_000)
    m1 = history[Timeframe.M1]
    rng = np.random.default_rng(0)
    i = 0
    while i < len(m1):
        step = int(rng.integers(1, 4))  # chunks of 1-3 bars, like a feed catching up
        t = int(m1.timestamp[min(i + step, len(m1)) - 1]) + 60_000
        for tf, candles in history.items():  # each timeframe's candles closed by t, new ones
            held = grown.last_open(BTC, tf)
            lo = 0 if held is None else int(np.searchsorted(candles.timestamp, held, "right"))
            hi = int(np.searchsorted(candles.timestamp + tf.ms, t, side="right"))
            grown.append_candles(BTC, tf, candles[lo:hi])
        grown.advance(BTC, t)
        loaded.advance(BTC, t)
        i += step
        if i % 5 < step or i >= len(m1):  # compare often, not at every bar (speed)
            for tf in TFS:
                assert grown.candles(BTC, tf).equals(loaded.candles(BTC, tf))
                assert _same_indicators(grown.indicators(BTC, tf), loaded.indicators(BTC, tf))
            assert grown.pivots(BTC) == loaded.pivots(BTC)
            _same_input(grown.input(BTC, SPEC), loaded.input(BTC, SPEC))
    assert len(loaded.pivots(BTC)) > 50  # the comparison covered many pivots
    assert loaded.pivot_count(BTC, "5m") == grown.pivot_count(BTC, "5m") > 0


def test_append_ignores_known_rows_and_refuses_to_rewrite_the_past() -> None:
    m1 = HISTORY[Timeframe.M1]
    frame = _loaded({Timeframe.M1: m1[:100]})
    assert frame.append_candles(BTC, "1m", m1[90:100]) == 0  # re-publishing: a no-op
    assert frame.append_candles(BTC, "1m", m1[95:103]) == 3  # overlap: only the new rows
    gap = Candles.concat([m1[103:104], m1[105:106]])
    assert frame.append_candles(BTC, "1m", gap) == 2  # a gap is allowed, in order
    missing = m1[104:105]  # lacks 104 now, which is older than the newest (105)
    with pytest.raises(ValueError, match=str(int(m1.timestamp[104]))):
        frame.append_candles(BTC, "1m", missing)
    with pytest.raises(ValueError, match="strictly increase"):
        frame.append_candles(BTC, "1m", Candles.concat([m1[110:111], m1[108:109]]))
    bad = m1[106:107].to_frame().copy()
    bad.loc[:, "close"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        frame.append_candles(BTC, "1m", Candles.from_frame(bad))
    assert frame.last_open(BTC, "1m") == int(m1.timestamp[105])


def test_views_handed_out_stay_valid_while_the_history_grows() -> None:
    m1 = HISTORY[Timeframe.M1]
    frame = MarketFrame()
    frame.append_candles(BTC, "1m", m1[:10])
    frame.advance(BTC, int(m1.timestamp[9]) + 60_000)
    early = frame.candles(BTC, "1m")
    copy = Candles(*(np.array(a) for a in early.columns().values()))
    for i in range(10, 1_000):  # several re-allocations of the growing buffers
        frame.append_candles(BTC, "1m", m1[i : i + 1])
    frame.advance(BTC, int(m1.timestamp[999]) + 60_000)
    assert early.equals(copy)
    assert frame.candles(BTC, "1m").equals(m1[:1_000])


def test_load_refuses_bad_data_and_loading_twice() -> None:
    frame = _loaded({Timeframe.M1: HISTORY[Timeframe.M1]})
    with pytest.raises(ValueError, match="append_candles"):
        frame.load(BTC, {"1m": HISTORY[Timeframe.M1]})
    bad = HISTORY[Timeframe.M5].to_frame().copy()
    bad.loc[3, "high"] = bad.loc[3, "low"] - 1
    with pytest.raises(ValueError, match="high < low"):
        frame.load(BTC, {"5m": Candles.from_frame(bad)})
    assert frame.timeframes(BTC) == (Timeframe.M1,)  # nothing of the failed load was kept
    with pytest.raises(TypeError, match="Candles"):
        frame.load(BTC, {"1h": HISTORY[Timeframe.H1].to_frame()})  # type: ignore[dict-item]


# -- the input ------------------------------------------------------------------------------
def test_input_parts_equal_their_definitions() -> None:
    m1 = HISTORY[Timeframe.M1]
    t = int(m1.timestamp[1_200]) + 30_000  # half-way through a minute: that candle is open
    frame = _loaded(HISTORY, max_pivots=7)
    for ts in (t - 2_000, t - 1_000, t + 1_000):
        frame.add_cob(_snapshot(ts))
    times = np.sort(np.r_[t - 90_000, t - 60_000, np.linspace(t - 50_000, t - 1, 40), t, t + 5])
    trades = _trades(times.astype(np.int64))
    frame.add_trades(BTC, trades)
    frame.advance(BTC, t)
    inp = frame.input(BTC, SPEC)

    for tf in TFS:
        closed = _closed(HISTORY[tf], tf, t)
        assert inp.ohlcv[tf].equals(closed[-SPEC.frames :])
        expected = compute_indicator_features(closed, allow_short=True)
        for name, values in expected.items():
            got = inp.technical_indicators[f"{tf}/{name}"]
            assert _close(got, float(values[-1])), name
    assert not math.isnan(inp.technical_indicators["1h/rsi"])

    closed = _closed(m1, Timeframe.M1, t)
    pivots = to_pivot_points(
        williams_pivots(closed.high, closed.low, levels=5, strength=2),
        SYM,
        closed.timestamp,
        bar_ms=60_000,
    )
    assert inp.pivot_points == tuple(pivots[-7:])
    assert all(p.confirmed_at <= t for p in inp.pivot_points)

    assert inp.cob_data is not None and inp.cob_data.timestamp == t - 1_000
    window = (trades.timestamp >= t - 60_000) & (trades.timestamp < t)
    buy = window & ~trades.is_buyer_maker
    large = trades.price * trades.quantity >= 100_000
    micro = inp.market_microstructure
    assert micro["buy_volume"] == pytest.approx(trades.quantity[buy].sum(), rel=1e-12)
    assert micro["sell_volume"] == pytest.approx(trades.quantity[window & ~buy].sum(), rel=1e-12)
    assert micro["trade_count"] == window.sum() == 41
    assert micro["large_buy_count"] == (buy & large).sum()
    assert micro["large_sell_count"] == (window & ~buy & large).sum()

    frame.advance(BTC, t + 3_600_000)  # no trades in the window: no microstructure
    assert frame.input(BTC, SPEC).market_microstructure == {}


def test_reference_symbol_windows_come_from_the_frame() -> None:
    spec = InputSpec.candles(["1m"], frames=20, min_frames=5, reference_symbol="ETH/USDT",
                             reference_timeframes=["1m"])  # fmt: skip
    eth = planted_candles(300, seed=9, start_price=2_000.0)
    frame = _loaded({Timeframe.M1: HISTORY[Timeframe.M1]})
    t = int(eth.timestamp[100]) + 60_000
    frame.advance(BTC, t)
    assert frame.input(BTC, spec).reference_symbol is None  # not held: no reference
    frame.load("ETH/USDT", {"1m": eth})
    inp = frame.input(BTC, spec)
    assert inp.reference_symbol == Symbol("ETH", "USDT")
    assert inp.reference_ohlcv[Timeframe.M1].equals(eth[81:101])


def test_trades_are_compacted_without_changing_the_sums() -> None:
    frame = MarketFrame(trade_window_ms=5_000)
    spec = InputSpec.candles(["1m"], frames=5, min_frames=1)
    t0 = 1_700_000_000_000
    batches = []
    for k in range(40):  # 40 batches of 500 trades, 2 s apart; the cursor follows them
        batches.append(_trades(t0 + k * 2_000 + np.arange(500, dtype=np.int64) * 4, seed=k))
        frame.add_trades(BTC, batches[-1])  # drops what the window has left behind, in batches
        t = int(batches[-1].timestamp[-1]) + 1
        frame.advance(BTC, t)
        ts = np.concatenate([b.timestamp for b in batches])
        qty = np.concatenate([b.quantity for b in batches])
        buy = ~np.concatenate([b.is_buyer_maker for b in batches])
        window = (ts >= t - 5_000) & (ts < t)
        micro = frame.input(BTC, spec).market_microstructure
        assert micro["buy_volume"] == pytest.approx(qty[window & buy].sum(), rel=1e-12)
        assert micro["trade_count"] == window.sum()
    with pytest.raises(ValueError, match="older"):
        frame.add_trades(BTC, _trades(np.array([t0], dtype=np.int64)))


# -- real data ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def btc_1h() -> Candles:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet")
    return Candles.from_frame(frame.reset_index(drop=True)).head(3_000)


def test_real_btc_1h_equals_the_standardized_data_provider(btc_1h: Candles, tmp_path: Path) -> None:
    """Bar by bar over real hourly BTC, the frame's input equals the store-backed provider's
    (windows, indicators; pivots: the provider's newest)."""
    spec = InputSpec.candles(["1h"], frames=48, min_frames=24)
    store = DuckDBStore(tmp_path / "s.duckdb")
    store.write_candles(SeriesKey("binance", SYM, Timeframe.H1), btc_1h)
    provider = StandardizedDataProvider(store, "binance", spec, history_bars=10_000)
    frame = MarketFrame(columns=ColumnsConfig(), max_pivots=25)
    frame.load(BTC, {"1h": btc_1h})
    closes = btc_1h.timestamp + 3_600_000
    picks = np.r_[5, 60, np.arange(2_900, 2_999, 11), len(btc_1h) - 1]
    for i in picks:
        t = int(closes[i])
        frame.advance(BTC, t)
        got, want = frame.input(BTC, spec), provider.build(SYM, t)
        assert got.ohlcv[Timeframe.H1].equals(want.ohlcv[Timeframe.H1])
        assert _close_indicators(got.technical_indicators, want.technical_indicators)
        assert got.pivot_points == want.pivot_points[-25:]
        assert got.pivot_points and all(p.confirmed_at <= t for p in got.pivot_points)
    store.close()
