"""The pushed (live) feed: events published from another thread, grouped by event time,
drive the same loop to the same run as a replay; quiet spans give heartbeats, late events
are delivered (never dropped), a full queue blocks its producer, close drains and ends."""

from __future__ import annotations

import random
import threading
from typing import Any

import numpy as np
import pytest

from pivotal.backtest.replay import replay
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.events import CandleClosed, MarketEvent, TradesReceived
from pivotal.core.trades import Trades
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.testing.planted import planted_candles
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings

MINUTE = 60_000


class FakeClock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


def _no_trades() -> Trades:
    return Trades(
        timestamp=np.zeros(0, np.int64),
        price=np.zeros(0),
        quantity=np.zeros(0),
        is_buyer_maker=np.zeros(0, bool),
        trade_id=np.zeros(0, np.int64),
    )


def _bar(symbol: str, close: int, tf: str = "1m") -> CandleClosed:
    candle = planted_candles(2, seed=close % 97, start_time=close - MINUTE)[:1]
    return CandleClosed(symbol, tf, candle, close)


def test_a_group_waits_for_every_expected_stream_then_comes_in_the_fixed_order() -> None:
    clock = FakeClock()
    feed = PushedFeed(clock, [("AAA/USDT", "1m"), ("BBB/USDT", "1m")], grace_ms=5_000,
                      heartbeat_ms=20)  # fmt: skip
    trades = TradesReceived("AAA/USDT", _no_trades(), MINUTE)
    feed.publish([trades, _bar("BBB/USDT", MINUTE, "1h")])
    feed.publish([_bar("BBB/USDT", MINUTE)])
    assert feed.next_events() == []  # AAA's bar has not come, grace not over: a heartbeat
    feed.publish([_bar("AAA/USDT", MINUTE)])
    group = feed.next_events()
    assert group is not None
    assert [(type(e).__name__, e.symbol) for e in group] == [
        ("CandleClosed", "AAA/USDT"),
        ("CandleClosed", "BBB/USDT"),
        ("CandleClosed", "BBB/USDT"),  # the 1h bar: not a base stream
        ("TradesReceived", "AAA/USDT"),
    ]
    assert isinstance(group[1], CandleClosed) and group[1].timeframe.value == "1m"


def test_a_missing_stream_holds_a_close_only_for_the_grace() -> None:
    clock = FakeClock(1_000)
    feed = PushedFeed(clock, [("AAA/USDT", "1m"), ("BBB/USDT", "1m")], grace_ms=2_000,
                      heartbeat_ms=10)  # fmt: skip
    feed.publish([_bar("AAA/USDT", MINUTE), _bar("BBB/USDT", MINUTE)])
    assert [e.symbol for e in feed.next_events() or []] == ["AAA/USDT", "BBB/USDT"]
    feed.publish([_bar("AAA/USDT", 2 * MINUTE)])
    feed.publish([_bar("AAA/USDT", 3 * MINUTE)])  # AAA's next bar does not push BBB's out
    assert feed.next_events() == []
    feed.publish([_bar("BBB/USDT", 2 * MINUTE)])  # BBB lagged, within the grace
    group = feed.next_events()
    assert group is not None and [e.symbol for e in group] == ["AAA/USDT", "BBB/USDT"]
    assert feed.next_events() == []  # 3 min: BBB's bar again late
    clock.now = 4_000  # the grace has passed on the clock: 3 min goes without BBB
    group = feed.next_events()
    assert group is not None and [e.event_time for e in group] == [3 * MINUTE]
    assert feed.late == 0 and feed.missed_closes == 0  # a close with a bar is not missed


def test_a_stream_with_a_gap_does_not_hold_the_others() -> None:
    clock = FakeClock(0)
    feed = PushedFeed(clock, [("AAA/USDT", "1m"), ("BBB/USDT", "1m")], grace_ms=60_000,
                      heartbeat_ms=10)  # fmt: skip
    feed.publish([_bar("AAA/USDT", MINUTE), _bar("BBB/USDT", MINUTE)])
    feed.publish([_bar("AAA/USDT", 2 * MINUTE)])
    feed.publish([_bar("BBB/USDT", 3 * MINUTE)])  # BBB has no bar closing at 2 min
    assert [e.event_time for e in feed.next_events() or []] == [MINUTE, MINUTE]
    group = feed.next_events()
    assert group is not None and [e.symbol for e in group] == ["AAA/USDT"]


def test_late_events_are_delivered_and_counted_and_close_drains_then_ends() -> None:
    clock = FakeClock()
    feed = PushedFeed(clock, grace_ms=0, heartbeat_ms=10)
    feed.publish([_bar("AAA/USDT", 2 * MINUTE)])
    assert [e.event_time for e in feed.next_events() or []] == [2 * MINUTE]
    feed.publish([_bar("AAA/USDT", MINUTE)])  # older than what was delivered
    late = feed.next_events()
    assert late is not None and [e.event_time for e in late] == [MINUTE]
    assert feed.late == 1
    feed.publish([_bar("AAA/USDT", 3 * MINUTE)])
    feed.close()
    assert [e.event_time for e in feed.next_events() or []] == [3 * MINUTE]
    assert feed.next_events() is None
    with pytest.raises(RuntimeError, match="after close"):
        feed.publish([_bar("AAA/USDT", 4 * MINUTE)])


def test_a_full_queue_blocks_its_producer_until_the_loop_takes_events() -> None:
    feed = PushedFeed(FakeClock(), grace_ms=0, heartbeat_ms=10, max_pending=2)
    feed.publish([_bar("AAA/USDT", MINUTE), _bar("AAA/USDT", 2 * MINUTE)])
    done = threading.Event()

    def produce() -> None:
        feed.publish([_bar("AAA/USDT", 3 * MINUTE)])
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    assert not done.wait(0.3)  # blocked: two events queued
    assert feed.next_events() is not None
    assert done.wait(5.0)
    thread.join()
    assert feed.waits >= 1 and feed.published == 3


def _two_symbols() -> dict[str, Candles]:
    first = planted_candles(1_200, seed=1)
    second = planted_candles(1_000, seed=2, start_price=30.0, start_time=int(first.timestamp[150]))
    keep = np.ones(len(second), dtype=bool)
    keep[[10, 11, 12, 500]] = False
    return {"AAA/USDT": first, "BBB/USDT": second[keep]}


def test_a_run_fed_from_another_thread_equals_the_replay() -> None:
    """The producer publishes each close's bars one symbol at a time, in a shuffled order,
    from its own thread; the loop consumes the pushed feed: the same run as a replay."""
    from tests.runtime.test_loop import RandomActions, _live_like_loop

    candles = _two_symbols()
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(
            initial_cash=50_000.0, fees=FeeSchedule(maker=0.0002, taker=0.001), allow_short=True
        ),
        risk=RiskConfig(allow_short=True, fraction=0.4, stop_loss_atr=2.0),
    )
    reference = replay(candles, RandomActions(3, every_bar=True), timeframe="1m",
                       settings=settings)  # fmt: skip
    loop, replay_feed, _venue = _live_like_loop(candles, RandomActions(3, every_bar=True),
                                                settings)  # fmt: skip
    pushed = PushedFeed(
        FakeClock(),
        [(s, "1m") for s in candles],
        grace_ms=60_000,
        heartbeat_ms=50,
        max_pending=64,
        moves=replay_feed.clock,
    )
    source = ReplayFeed.from_candles(candles, timeframe="1m")  # its own clock
    rng = random.Random(4)

    def produce() -> None:
        while (events := source.next_events()) is not None:
            parts: list[list[MarketEvent]] = [[e] for e in events]
            rng.shuffle(parts)
            for part in parts:
                pushed.publish(part)
        pushed.close()

    thread = threading.Thread(target=produce)
    thread.start()
    result = _run_skipping_heartbeats(loop, pushed)
    thread.join()
    assert np.array_equal(result.equity, reference.equity)
    np.testing.assert_array_equal(result.timestamps, reference.timestamps)
    assert result.events == reference.events
    assert result.decisions == reference.decisions > 100
    assert pushed.late == 0


def _run_skipping_heartbeats(loop: Any, feed: PushedFeed) -> Any:
    class NoHeartbeats:
        def next_events(self) -> Any:
            while (events := feed.next_events()) == []:
                pass
            return events

    return loop.run(NoHeartbeats())


def test_moves_moves_the_replay_clock_to_each_delivered_time() -> None:
    clock = ReplayClock(0)
    feed = PushedFeed(FakeClock(), grace_ms=0, heartbeat_ms=10, moves=clock)
    feed.publish([_bar("AAA/USDT", 5 * MINUTE)])
    feed.next_events()
    assert clock.now_ms() == 5 * MINUTE


def _trades_at(symbol: str, t: int) -> TradesReceived:
    one = Trades(
        timestamp=np.array([t], np.int64),
        price=np.array([100.0]),
        quantity=np.array([1.0]),
        is_buyer_maker=np.array([False]),
        trade_id=np.array([t], np.int64),
    )
    return TradesReceived(symbol, one, t)


def test_trades_after_a_close_wait_for_the_bar_so_the_step_comes_at_its_close_time() -> None:
    clock = FakeClock(0)
    feed = PushedFeed(clock, [("AAA/USDT", "1m")], grace_ms=2_000, heartbeat_ms=10)
    feed.publish([_trades_at("AAA/USDT", MINUTE - 500)])  # not a close time: out at once
    assert [e.event_time for e in feed.next_events() or []] == [MINUTE - 500]
    feed.publish([_trades_at("AAA/USDT", MINUTE + 300)])  # the next bar's trade, bar not yet
    assert feed.next_events() == []  # held: the bar closing at MINUTE has not come
    feed.publish([_bar("AAA/USDT", MINUTE)])
    group = feed.next_events()
    assert group is not None and [e.event_time for e in group] == [MINUTE]
    group = feed.next_events()
    assert group is not None and [e.event_time for e in group] == [MINUTE + 300]
    assert feed.late == 0 and feed.missed_closes == 0


def test_a_bar_that_never_comes_is_given_up_after_the_grace_and_counted() -> None:
    clock = FakeClock(0)
    feed = PushedFeed(clock, [("AAA/USDT", "1m")], grace_ms=2_000, heartbeat_ms=10)
    feed.publish([_trades_at("AAA/USDT", MINUTE - 500), _trades_at("AAA/USDT", MINUTE + 300)])
    assert [e.event_time for e in feed.next_events() or []] == [MINUTE - 500]
    assert feed.next_events() == []
    clock.now = 2_500
    group = feed.next_events()
    assert group is not None and [e.event_time for e in group] == [MINUTE + 300]
    assert feed.missed_closes == 1
