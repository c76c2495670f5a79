"""MarketState: the book, the trade queries, klines and their pushes, history."""

from __future__ import annotations

import numpy as np
import pytest

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.flow import (
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    Kline,
    SymbolFlow,
    TradePrint,
)
from pivotal.localexchange.market import BINANCE_TIMEFRAMES, MarketState

S, M = 1_000, 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight
SNAP = BookSnapshot(100, ((10.0, 1.0), (9.9, 2.0), (9.8, 3.0)), ((10.1, 1.5), (10.2, 2.5)))


def _flow(
    events: list[FlowEvent] = (),  # type: ignore[assignment]
    *,
    start: int = T0,
    history: dict[Timeframe, Candles] | None = None,
) -> SymbolFlow:
    events = list(events)
    return SymbolFlow(
        symbol=Symbol("ABC", "USDT"),
        source="test",
        start_ms=start,
        end_ms=events[-1].time_ms if events else start,
        snapshot=SNAP,
        tick_size=0.1,
        step_size=0.01,
        factory=lambda: iter(events),
        history=history or {},
    )


def _trade(t: int, tid: int, price: float, qty: float = 1.0, maker: bool = False) -> TradePrint:
    return TradePrint(t, tid, price, qty, maker)


# ------------------------------------------------------------------------------ book
def test_depth_levels_order_and_limit() -> None:
    market = MarketState(_flow())
    assert market.depth(2) == BookSnapshot(
        100, ((10.0, 1.0), (9.9, 2.0)), ((10.1, 1.5), (10.2, 2.5))
    )
    assert market.depth(1000) == SNAP
    market.apply(DepthDiff(T0, 99, 101, ((10.05, 4.0), (9.9, 0.0)), ((10.1, 0.0), (10.15, 1.0))))
    market.apply(DepthDiff(T0 + 100, 102, 103, ((9.7, 5.0),), ()))
    book = market.depth(10)
    assert book.last_update_id == market.last_update_id == 103
    assert book.bids == ((10.05, 4.0), (10.0, 1.0), (9.8, 3.0), (9.7, 5.0))
    assert book.asks == ((10.15, 1.0), (10.2, 2.5))
    with pytest.raises(ValueError, match="at least 1"):
        market.depth(0)


def test_diff_sequencing() -> None:
    market = MarketState(_flow())
    market.apply(DepthDiff(T0, 90, 100, ((10.0, 9.0),), ()))  # stale: ignored
    assert market.depth(1).bids == ((10.0, 1.0),)
    with pytest.raises(DataError, match="breaks the sequence"):
        market.apply(DepthDiff(T0, 102, 103, (), ()))  # does not straddle 101
    market.apply(DepthDiff(T0, 101, 101, (), ()))
    with pytest.raises(DataError, match=r"expected U=102"):
        market.apply(DepthDiff(T0, 103, 104, (), ()))


def test_top_prefers_the_newest_of_ticker_and_book() -> None:
    market = MarketState(_flow())
    assert market.top() == BookTop(T0, 100, 10.0, 1.0, 10.1, 1.5)  # from the snapshot
    ticker = BookTop(T0 + 5, 101, 10.0, 0.5, 10.1, 1.5)
    market.apply(ticker)
    assert market.top() == ticker
    market.apply(DepthDiff(T0 + 10, 101, 102, ((10.0, 0.0),), ()))
    assert market.top() == BookTop(T0 + 10, 102, 9.9, 2.0, 10.1, 1.5)


def test_events_before_the_cursor_are_refused() -> None:
    market = MarketState(_flow())
    market.apply(_trade(T0 + 500, 1, 10.0))
    with pytest.raises(DataError, match="before the cursor"):
        market.apply(_trade(T0 + 499, 2, 10.0))
    market.advance(T0 + 1000)
    with pytest.raises(DataError, match="before the cursor"):
        market.apply(_trade(T0 + 999, 2, 10.0))
    with pytest.raises(ValueError, match="before the cursor"):
        market.advance(T0 + 999)


# ---------------------------------------------------------------------------- trades
def test_trade_queries_and_capacity() -> None:
    market = MarketState(_flow(), timeframes=(Timeframe.M1,), trade_capacity=10)
    trades = [_trade(T0 + 100 * i, 1000 + i, 10.0 + i / 10) for i in range(25)]
    for t in trades:
        market.apply(t)
    assert market.trade_count == 25
    assert market.trades_recent(3) == trades[22:]
    assert market.trades_recent(100) == trades[15:]  # only the newest 10 are kept
    assert market.trades_from(1000, 3) == trades[15:18]  # older than kept: from the oldest
    assert market.trades_from(1020, 3) == trades[20:23]
    assert market.trades_from(1024, 3) == trades[24:]
    assert market.trades_from(2000, 3) == []
    assert market.trades_between(T0 + 1800, T0 + 2000, 100) == trades[18:21]  # inclusive
    assert market.trades_between(T0 + 1800, None, 2) == trades[18:20]  # oldest from start
    assert market.trades_between(None, T0 + 2000, 2) == trades[19:21]  # newest up to end
    assert market.trades_between(None, None, 2) == trades[23:]


def test_trade_ring_over_many_wraps() -> None:
    market = MarketState(_flow(), timeframes=(Timeframe.S1,), trade_capacity=1000)
    rng = np.random.default_rng(4)
    times = T0 + np.cumsum(rng.integers(0, 50, 7500))
    for i, t in enumerate(times.tolist()):
        market.apply(_trade(t, i, 10.0 + (i % 7) / 10, 0.5, bool(i % 2)))
        if i in (999, 1000, 2047, 4321, 7499):
            recent = market.trades_recent(5000)
            kept = min(i + 1, 1000)
            assert len(recent) == kept
            assert [r.trade_id for r in recent] == list(range(i + 1 - kept, i + 1))
            assert [r.time_ms for r in recent] == times[i + 1 - kept : i + 1].tolist()


# ---------------------------------------------------------------------------- klines
def _kl(ot: int, tf: int, o, h, lo, c, v, q, n, bv, bq, closed) -> Kline:  # type: ignore[no-untyped-def]
    return Kline(ot, ot + tf - 1, o, h, lo, c, v, q, n, bv, bq, closed)


def test_klines_from_trades_with_empty_intervals() -> None:
    market = MarketState(_flow(), timeframes=(Timeframe.M1, Timeframe.M3))
    market.apply(_trade(T0 + 1_000, 1, 10.0, 1.0, maker=False))
    market.apply(_trade(T0 + 2_000, 2, 10.5, 2.0, maker=True))
    market.apply(_trade(T0 + 3_000, 3, 9.5, 1.0, maker=False))
    market.apply(_trade(T0 + 3 * M + 5, 4, 11.0, 0.5, maker=True))  # minutes 1, 2 empty
    m1 = market.klines(Timeframe.M1, None, None, 10)
    assert m1 == [
        _kl(T0, M, 10.0, 10.5, 9.5, 9.5, 4.0, 10.0 + 21.0 + 9.5, 3, 2.0, 19.5, True),
        _kl(T0 + M, M, 9.5, 9.5, 9.5, 9.5, 0.0, 0.0, 0, 0.0, 0.0, True),
        _kl(T0 + 2 * M, M, 9.5, 9.5, 9.5, 9.5, 0.0, 0.0, 0, 0.0, 0.0, True),
        _kl(T0 + 3 * M, M, 11.0, 11.0, 11.0, 11.0, 0.5, 5.5, 1, 0.0, 0.0, False),
    ]
    m3 = market.klines(Timeframe.M3, None, None, 10)
    assert [(k.open_time, k.volume, k.closed) for k in m3] == [
        (T0, 4.0, True),
        (T0 + 3 * M, 0.5, False),
    ]
    # Binance query semantics: by open time, bounds inclusive, oldest first from start
    assert market.klines(Timeframe.M1, T0 + M, None, 2) == m1[1:3]
    assert market.klines(Timeframe.M1, T0 + M, T0 + 2 * M, 10) == m1[1:3]
    assert market.klines(Timeframe.M1, None, T0 + 2 * M, 2) == m1[1:3]  # newest up to end
    assert market.klines(Timeframe.M1, None, None, 2) == m1[2:]
    assert market.klines(Timeframe.M1, T0 + 5 * M, None, 2) == []
    # the cursor moving on closes the open kline in queries too
    market.advance(T0 + 4 * M)
    assert market.klines(Timeframe.M1, None, None, 1)[0] == _kl(
        T0 + 4 * M, M, 11.0, 11.0, 11.0, 11.0, 0.0, 0.0, 0, 0.0, 0.0, False
    )
    with pytest.raises(ValueError, match="no 5m klines"):
        market.klines(Timeframe.M5, None, None, 1)


def test_advance_pushes_each_close_once_and_open_changes() -> None:
    market = MarketState(_flow(), timeframes=(Timeframe.S1, Timeframe.M1))
    assert market.advance(T0) == {}  # no price yet, nothing to push
    market.apply(_trade(T0 + 200, 1, 10.0))
    pushes = market.advance(T0 + 500)
    assert [(k.open_time, k.closed) for k in pushes[Timeframe.S1]] == [(T0, False)]
    assert [(k.open_time, k.closed) for k in pushes[Timeframe.M1]] == [(T0, False)]
    assert market.advance(T0 + 900) == {}  # nothing changed
    pushes = market.advance(T0 + 3 * S)
    assert [(k.open_time, k.closed) for k in pushes[Timeframe.S1]] == [
        (T0, True),
        (T0 + S, True),  # no trades: zero volume at the previous close
        (T0 + 2 * S, True),
        (T0 + 3 * S, False),  # the new open kline, empty at the previous close
    ]
    assert Timeframe.M1 not in pushes
    assert pushes[Timeframe.S1][1].volume == 0 and pushes[Timeframe.S1][1].close == 10.0
    market.apply(_trade(T0 + 3 * S + 1, 2, 10.2))
    pushes = market.advance(T0 + 4 * S)
    assert [(k.open_time, k.closed, k.close) for k in pushes[Timeframe.S1]] == [
        (T0 + 3 * S, True, 10.2),
        (T0 + 4 * S, False, 10.2),
    ]
    assert [(k.open_time, k.closed, k.high) for k in pushes[Timeframe.M1]] == [(T0, False, 10.2)]
    pushes = market.advance(T0 + M)
    assert [k.open_time for k in pushes[Timeframe.S1] if k.closed][-1] == T0 + M - S
    assert [(k.open_time, k.closed) for k in pushes[Timeframe.M1]] == [(T0, True), (T0 + M, False)]


def test_all_binance_timeframes_roll_at_their_boundaries() -> None:
    market = MarketState(_flow())
    assert market.timeframes == BINANCE_TIMEFRAMES
    market.apply(_trade(T0, 1, 10.0))
    market.advance(T0 + 1)
    pushes = market.advance(T0 + 86_400_000)
    for tf in BINANCE_TIMEFRAMES:
        closed = [k for k in pushes[tf] if k.closed]
        assert len(closed) == 86_400_000 // tf.ms
        assert closed[0].open_time == T0 and closed[-1].close_time == T0 + 86_400_000 - 1
        assert pushes[tf][-1] == Kline(
            T0 + 86_400_000,
            T0 + 86_400_000 + tf.ms - 1,
            10.0,
            10.0,
            10.0,
            10.0,
            0.0,
            0.0,
            0,
            0.0,
            0.0,
            False,
        )


def test_kline_capacity_keeps_the_newest() -> None:
    market = MarketState(_flow(), timeframes=(Timeframe.S1,), kline_capacity=100)
    market.apply(_trade(T0, 1, 10.0))
    for second in range(1, 350):
        market.apply(_trade(T0 + second * S, second + 1, 10.0 + second / 100))
    klines = market.klines(Timeframe.S1, None, None, 1000)
    assert len(klines) == 101  # 100 closed + the open one
    assert [k.open_time for k in klines] == [T0 + s * S for s in range(249, 350)]
    assert klines[-1].close == 10.0 + 349 / 100


# ---------------------------------------------------------------------------- history
def _history_1m(n: int, end: int) -> Candles:
    """``n`` 1m candles ending at ``end`` (exclusive), prices rising by 1 a minute."""
    ts = end - M * np.arange(n, 0, -1)
    base = 100.0 + np.arange(n, dtype=np.float64)
    return Candles(ts, base, base + 0.5, base - 0.5, base + 0.25, np.full(n, 2.0))


def test_history_served_resampled_and_seeding_the_open_interval() -> None:
    start = T0 + 2 * 3_600_000 + 30 * M + 15 * S  # 02:30:15
    history = {Timeframe.M1: _history_1m(150, start - 15 * S)}  # 00:00 .. 02:29
    market = MarketState(
        _flow([_trade(start + 5 * S, 1, 300.0, 4.0)], start=start, history=history),
        timeframes=(Timeframe.M1, Timeframe.H1, Timeframe.D1),
    )
    m1 = market.klines(Timeframe.M1, None, None, 1000)
    assert len(m1) == 151 and m1[0].open_time == T0 and m1[-1].open_time == T0 + 150 * M
    assert m1[0] == _kl(T0, M, 100.0, 100.5, 99.5, 100.25, 2.0, 200.125, 0, 1.0, 100.0625, True)
    assert m1[-1] == _kl(
        T0 + 150 * M, M, 249.25, 249.25, 249.25, 249.25, 0.0, 0.0, 0, 0.0, 0.0, False
    )
    h1 = market.klines(Timeframe.H1, None, None, 10)
    assert [(k.open_time, k.closed) for k in h1] == [
        (T0, True),
        (T0 + 3_600_000, True),
        (T0 + 7_200_000, False),  # 02:00..02:29 from history, the rest from trades
    ]
    assert (h1[1].open, h1[1].high, h1[1].low, h1[1].close, h1[1].volume) == (
        160.0,
        219.5,
        159.5,
        219.25,
        120.0,
    )
    assert (h1[2].open, h1[2].close, h1[2].volume) == (220.0, 249.25, 60.0)
    market.apply(_trade(start + 5 * S, 1, 300.0, 4.0))
    h1_open = market.klines(Timeframe.H1, T0 + 7_200_000, None, 1)[0]
    assert (h1_open.open, h1_open.high, h1_open.close, h1_open.volume) == (
        220.0,
        300.0,
        300.0,
        64.0,
    )
    d1 = market.klines(Timeframe.D1, None, None, 10)
    assert len(d1) == 1 and d1[0].open == 100.0 and d1[0].volume == 304.0 and not d1[0].closed


def test_history_gap_before_start_is_filled_and_unclosed_candles_dropped() -> None:
    start = T0 + 10 * M
    history = {Timeframe.M1: _history_1m(5, T0 + 6 * M)}  # 00:01..00:05, then nothing
    history[Timeframe.M1] = Candles.concat(
        [history[Timeframe.M1], Candles([start], [1.0], [1.0], [1.0], [1.0], [1.0])]
    )  # a candle at the start itself is not closed before it: dropped
    market = MarketState(_flow(start=start, history=history), timeframes=(Timeframe.M1,))
    m1 = market.klines(Timeframe.M1, None, None, 100)
    assert [k.open_time for k in m1] == [T0 + i * M for i in range(1, 11)]
    assert [k.volume for k in m1] == [2.0] * 5 + [0.0] * 5
    assert {k.close for k in m1[5:]} == {104.25}
    assert m1[-1].closed is False
