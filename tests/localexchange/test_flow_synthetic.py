"""synthetic_flow: a seeded book and trade flow consistent with candles."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pivotal.core.candles import Candles
from pivotal.core.errors import ConfigError, DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.localexchange import synthetic
from pivotal.localexchange.flow import BookTop, DepthDiff, SymbolFlow, TradePrint
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

MINUTE = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE


def _data() -> Path:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    return data


def _btc_1m(start: str, stop: str) -> Candles:
    """BTC/USDT 1m candles with open times in [start, stop) (UTC, ``YYYY-MM-DD HH:MM``)."""
    path = _data() / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet"
    table = pq.read_table(path, columns=["timestamp", "open", "high", "low", "close", "volume"])
    candles = Candles.from_arrow(table)
    lo, hi = (int(np.datetime64(t, "ms").astype(np.int64)) for t in (start, stop))
    return candles[(candles.timestamp >= lo) & (candles.timestamp < hi)]


def _small() -> Candles:
    """Five hand-made 1m candles, one with zero volume (at the previous close)."""
    return Candles(
        np.arange(5, dtype=np.int64) * MINUTE + T0,
        [100.00, 100.50, 100.20, 100.20, 99.90],
        [100.85, 100.90, 100.20, 100.20, 100.40],
        [99.70, 100.10, 100.20, 100.20, 99.50],
        [100.50, 100.20, 100.20, 100.20, 100.00],
        [3.25, 0.0006, 0.0, 0.0, 12.5],
    )


def _check(flow: SymbolFlow, candles: Candles, timeframe: Timeframe) -> MarketState:
    """Replay ``flow`` through a MarketState, checking every invariant on the way."""
    tick = flow.tick_size
    market = MarketState(flow, timeframes=(timeframe,))
    prev_time = flow.start_ms
    prev_last = flow.snapshot.last_update_id
    trade_id = None
    pending_top = None
    events = 0
    candle_index = {int(t): i for i, t in enumerate(candles.timestamp.tolist())}
    for event in flow.events():
        events += 1
        assert event.time_ms >= prev_time
        prev_time = event.time_ms
        if pending_top is not None:
            assert type(event) is BookTop and event.update_id == pending_top
            pending_top = None
        if type(event) is TradePrint:
            book = market.depth(1)
            assert book.bids[0][0] < event.price < book.asks[0][0]
            assert event.qty > 0
            i = candle_index[event.time_ms - event.time_ms % timeframe.ms]
            assert candles.low[i] <= event.price <= candles.high[i]
            assert trade_id is None or event.trade_id == trade_id + 1
            trade_id = event.trade_id
        elif type(event) is DepthDiff:
            assert event.first_id == prev_last + 1
            assert event.last_id - event.first_id + 1 == len(event.bids) + len(event.asks)
            prev_last = event.last_id
            for price, _ in event.bids + event.asks:
                assert abs(price / tick - round(price / tick)) < 1e-6
            pending_top = event.last_id
        market.apply(event)
        if type(event) is BookTop:
            book = market.depth(1)
            assert (event.bid, event.bid_qty) == book.bids[0]
            assert (event.ask, event.ask_qty) == book.asks[0]
            assert event.bid < event.ask
    assert pending_top is None
    assert events > 0 and prev_time == flow.end_ms
    return market


def _assert_klines_equal(market: MarketState, candles: Candles, timeframe: Timeframe) -> None:
    klines = market.klines(timeframe, int(candles.timestamp[0]), None, 10**6)
    by_time = {k.open_time: k for k in klines}
    for t, o, h, lo, c, v in zip(
        *(col.tolist() for col in candles.columns().values()), strict=True
    ):
        k = by_time[t]
        assert (k.open, k.high, k.low, k.close) == (o, h, lo, c), t
        assert k.volume == pytest.approx(v, rel=1e-9, abs=1e-12), t


def test_small_candles_invariants_and_aggregate() -> None:
    candles = _small()
    flow = synthetic_flow(candles, "1m", "ABC/USDT", seed=3, depth_levels=5)
    assert flow.symbol == Symbol("ABC", "USDT")
    assert flow.source == "synthetic:seed=3,tf=1m,candles=5"
    assert (flow.tick_size, flow.step_size) == (0.01, 0.0001)  # inferred from the data
    assert flow.start_ms == T0
    assert len(flow.snapshot.bids) == len(flow.snapshot.asks) == 5
    market = _check(flow, candles, Timeframe.M1)
    _assert_klines_equal(market, candles, Timeframe.M1)
    trades = [e for e in flow.events() if type(e) is TradePrint]
    assert len(trades) == 3 * 12  # no trades in the zero-volume candles
    assert trades[0].trade_id == 1 and trades[0].price == 100.0  # open first
    assert [t.price for t in trades if t.time_ms < T0 + MINUTE][-1] == 100.5  # close last
    first_candle = [t.qty for t in trades if t.time_ms < T0 + MINUTE]
    assert sum(first_candle) == pytest.approx(3.25, rel=1e-12)
    assert all(abs(q * 1e4 - round(q * 1e4)) < 1e-6 for q in first_candle[:-1])  # step grid


def test_deterministic_per_seed() -> None:
    candles = _small()
    a = synthetic_flow(candles, Timeframe.M1, "ABC/USDT", seed=11)
    b = synthetic_flow(candles, Timeframe.M1, "ABC/USDT", seed=11)
    c = synthetic_flow(candles, Timeframe.M1, "ABC/USDT", seed=12)
    events = list(a.events())
    assert events == list(a.events()) == list(b.events())
    assert a.snapshot == b.snapshot
    assert events != list(c.events())


def test_options_shape_the_flow() -> None:
    candles = _small()
    flow = synthetic_flow(
        candles,
        Timeframe.M1,
        Symbol("ABC", "USDT"),
        seed=5,
        trades_per_candle=40,
        depth_levels=20,
        level_spacing=1,
        churn=0,
        tick_size=0.1,
        step_size=0.001,
        first_trade_id=500,
        first_update_id=77,
    )
    assert flow.snapshot.last_update_id == 77
    bids = [p for p, _ in flow.snapshot.bids]
    assert len(bids) == 20 and bids[0] - bids[-1] == pytest.approx(1.9)  # contiguous ladder
    trades = [e for e in flow.events() if type(e) is TradePrint]
    assert len(trades) == 120 and trades[0].trade_id == 500
    _check(flow, candles, Timeframe.M1)


def test_generated_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 43_200  # a 30-day 1m replay
    rng = np.random.default_rng(1)
    close = 100.0 + np.cumsum(np.round(rng.normal(0, 0.05, n), 2))
    candles = Candles(
        np.arange(n, dtype=np.int64) * MINUTE + T0,
        close,
        close + 0.3,
        close - 0.3,
        close,
        np.full(n, 2.0),
    )
    calls = []
    original = synthetic._Generator.candle

    def counting(self, i, *args):  # type: ignore[no-untyped-def]
        calls.append(i)
        return original(self, i, *args)

    monkeypatch.setattr(synthetic._Generator, "candle", counting)
    flow = synthetic_flow(candles, Timeframe.M1, "ABC/USDT", seed=1)
    assert calls == []  # nothing generated up front
    assert flow.end_ms >= int(candles.timestamp[-1])
    assert len(list(islice(flow.events(), 100))) == 100
    assert len(calls) <= 5


def test_invalid_input_raises() -> None:
    candles = _small()
    with pytest.raises(ConfigError, match="at least 4"):
        synthetic_flow(candles, Timeframe.M1, "ABC/USDT", seed=1, trades_per_candle=3)
    with pytest.raises(DataError, match="at least one candle"):
        synthetic_flow(Candles.empty(), Timeframe.M1, "ABC/USDT", seed=1)
    with pytest.raises(DataError, match="not on the 1h grid"):
        synthetic_flow(candles, Timeframe.H1, "ABC/USDT", seed=1)
    swapped = Candles(
        candles.timestamp[::-1].copy(), *(c for c in list(candles.columns().values())[1:])
    )
    with pytest.raises(DataError, match="sort them"):
        synthetic_flow(swapped, Timeframe.M1, "ABC/USDT", seed=1)
    bad = Candles(
        candles.timestamp, candles.open, candles.low, candles.high, candles.close, candles.volume
    )
    with pytest.raises(DataError, match="not a valid candle"):
        synthetic_flow(bad, Timeframe.M1, "ABC/USDT", seed=1)


def test_real_day_of_1m_candles() -> None:
    candles = _btc_1m("2024-08-08 00:00", "2024-08-09 00:00")
    assert len(candles) == 1440
    flow = synthetic_flow(candles, Timeframe.M1, "BTC/USDT", seed=7)
    assert (flow.tick_size, flow.step_size) == (0.01, 0.00001)
    market = _check(flow, candles, Timeframe.M1)
    _assert_klines_equal(market, candles, Timeframe.M1)


def test_zero_volume_candles_and_an_outage() -> None:
    # 2023-03-24: 72 zero-volume candles from 11:28, then no candles 12:40..13:59 (outage)
    candles = _btc_1m("2023-03-24 11:00", "2023-03-24 14:30")
    assert int((candles.volume == 0).sum()) == 72
    flow = synthetic_flow(candles, Timeframe.M1, "BTC/USDT", seed=2)
    market = _check(flow, candles, Timeframe.M1)
    _assert_klines_equal(market, candles, Timeframe.M1)
    # the outage minutes have no trades: zero-volume klines at the previous close
    outage = market.klines(Timeframe.M1, 1679661600000, 1679661600000 + 79 * MINUTE, 100)
    assert len(outage) == 80 and all(k.volume == 0 and k.trades == 0 for k in outage)


def test_from_1s_candles() -> None:
    path = (
        _data() / "trades" / "binance-spot" / "ETH_USDT-trades-20240808T2354-20240809T0005.parquet"
    )
    cols = pq.read_table(path).to_pydict()
    trades = Trades(
        np.array(cols["timestamp"]),
        np.array(cols["price"]),
        np.array(cols["qty"]),
        np.array(cols["is_buyer_maker"]),
        np.array(cols["trade_id"]),
    )
    candles = aggregate_trades(trades, Timeframe.S1).candles
    assert len(candles) > 600 and (candles.volume == 0).any()
    flow = synthetic_flow(candles, Timeframe.S1, "ETH/USDT", seed=9)
    market = _check(flow, candles, Timeframe.S1)
    _assert_klines_equal(market, candles, Timeframe.S1)
