"""The kernel step: its order (venue, listeners, risk, decisions, equity, events), time-keyed
wake-ups with the warm-up in bars, gap closes instead of decisions, and its refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.clock import ReplayClock
from pivotal.core.events import CandleClosed, TradesReceived
from pivotal.core.ports import NEVER
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.runtime.kernel import Kernel
from pivotal.runtime.recorder import MemoryRecorder
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.testing.runtime_fakes import (
    MINUTE,
    LoggingBroker,
    LoggingListener,
    LoggingRecorder,
    LoggingRisk,
    WakeSource,
    candles,
    executor,
)

M1 = Timeframe.M1


def _kernel(log: list[Any], source: WakeSource, clock: ReplayClock, **kw: Any) -> Kernel:
    broker = LoggingBroker(log)
    risk = LoggingRisk(log)
    return Kernel(
        clock=clock,
        broker=broker,
        risk=risk,
        source=source,
        executor=executor(broker, risk),
        timeframe=M1,
        venue=broker,
        **kw,
    )


def _run(kernel: Kernel, feed: ReplayFeed) -> list[int]:
    steps = []
    while (events := feed.next_events()) is not None:
        now = kernel.step(events)
        if now is not None:
            steps.append(now)
    return steps


def test_one_step_runs_venue_listeners_risk_decisions_equity_events_in_order() -> None:
    log: list[Any] = []
    bars = {"BTC/USDT": candles(2), "ETH/USDT": candles(2)}
    feed = ReplayFeed.from_candles(bars, timeframe=M1)
    kernel = _kernel(
        log,
        WakeSource(log),
        feed.clock,
        listeners=[LoggingListener(log)],
        recorder=LoggingRecorder(log),
    )
    events = feed.next_events()
    assert events is not None
    assert kernel.step(events) == MINUTE
    assert log == [
        ("on_bar", "BTC/USDT", 0),
        ("listen", "BTC/USDT", MINUTE),
        ("on_bar", "ETH/USDT", 0),
        ("listen", "ETH/USDT", MINUTE),
        ("observe", MINUTE),
        ("next_wake", "BTC/USDT", MINUTE),
        ("decide", "BTC/USDT", MINUTE),
        ("decision", "BTC/USDT", MINUTE),
        ("next_wake", "BTC/USDT", MINUTE + 1),
        ("next_wake", "ETH/USDT", MINUTE),
        ("decide", "ETH/USDT", MINUTE),
        ("decision", "ETH/USDT", MINUTE),
        ("next_wake", "ETH/USDT", MINUTE + 1),
        ("equity", MINUTE),
        ("drain",),
    ]


def test_a_step_without_a_base_bar_only_reaches_the_listeners() -> None:
    log: list[Any] = []
    clock = ReplayClock(0)
    kernel = _kernel(log, WakeSource(log), clock, listeners=[LoggingListener(log)])
    clock.advance_to(5 * MINUTE)
    five = CandleClosed("BTC/USDT", Timeframe.M5, candles(1, bar_ms=5 * MINUTE), 5 * MINUTE)
    assert kernel.step([five]) is None
    assert log == [("listen", "BTC/USDT", 5 * MINUTE)]


def test_wakes_are_close_times_and_the_warm_up_counts_bars() -> None:
    log: list[Any] = []
    wanted = [5 * MINUTE, 6 * MINUTE + 1, 9 * MINUTE]  # closes of bars 4, 6 (after 6:00), 8

    def wake(symbol: str, now: int) -> int:
        later = [w for w in wanted if w >= now]
        return later[0] if later else NEVER

    source = WakeSource(log, warmup=2, wake=wake)
    feed = ReplayFeed.from_candles({"BTC/USDT": candles(12)}, timeframe=M1)
    memory = MemoryRecorder()
    kernel = _kernel(log, source, feed.clock, recorder=memory)
    steps = _run(kernel, feed)
    assert steps == [(i + 1) * MINUTE for i in range(12)]
    asked = [e[2] for e in log if e[0] == "next_wake"]
    assert asked[0] == 3 * MINUTE  # the close of bar 2, the first past a warm-up of 2 bars
    decided = [c.bar_index for c in source.contexts]
    assert decided == [4, 6, 8]
    assert [c.timestamp for c in source.contexts] == [5 * MINUTE, 7 * MINUTE, 9 * MINUTE]
    assert all(len(c.candles) == c.bar_index + 1 for c in source.contexts)  # no look-ahead
    assert kernel.decisions == 3 == len(memory.decisions)
    assert memory.times == steps and len(memory.values) == 12


def test_a_wake_before_the_time_asked_is_refused() -> None:
    log: list[Any] = []
    source = WakeSource(log, wake=lambda symbol, now: now - 1)
    feed = ReplayFeed.from_candles({"BTC/USDT": candles(3)}, timeframe=M1)
    kernel = _kernel(log, source, feed.clock)
    with pytest.raises(ValueError, match="earlier time"):
        _run(kernel, feed)


class _Plan:
    def __init__(self, symbol: str, bars: set[int]) -> None:
        self.symbol = symbol
        self.bars = bars

    def closes_after(self, symbol: str, bar_index: int) -> bool:
        return symbol == self.symbol and bar_index in self.bars


def test_the_last_bar_before_a_gap_closes_instead_of_deciding() -> None:
    log: list[Any] = []
    source = WakeSource(log)
    bars = candles(10, skip=range(4, 8))  # bars 0-3, then the bars opened at 8 and 9 min
    feed = ReplayFeed.from_candles({"BTC/USDT": bars}, timeframe=M1)
    kernel = _kernel(log, source, feed.clock, gap_plan=_Plan("BTC/USDT", {3}))
    steps = _run(kernel, feed)
    assert steps == [MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE, 9 * MINUTE, 10 * MINUTE]
    assert [c.bar_index for c in source.contexts] == [0, 1, 2, 4, 5]
    # the wake-up moved past the closing bar all the same
    assert ("next_wake", "BTC/USDT", 4 * MINUTE + 1) in log


def test_without_a_view_the_kernel_keeps_the_bars_it_was_given() -> None:
    log: list[Any] = []
    source = WakeSource(log)
    bars = candles(5, start=7 * MINUTE)
    feed = ReplayFeed.from_candles({"BTC/USDT": bars}, timeframe=M1)
    kernel = _kernel(log, source, feed.clock)
    _run(kernel, feed)
    last = source.contexts[-1]
    assert last.bar_index == 4 and last.candles.equals(bars)


def test_a_view_gives_the_bar_index_of_a_feed_that_starts_late() -> None:
    log: list[Any] = []
    source = WakeSource(log)
    whole = candles(8)
    feed = ReplayFeed.from_candles({"BTC/USDT": whole[5:]}, timeframe=M1)
    kernel = _kernel(log, source, feed.clock, candles_view=lambda s: whole)
    _run(kernel, feed)
    assert [c.bar_index for c in source.contexts] == [5, 6, 7]
    assert source.contexts[0].candles.equals(whole[:6])


def test_a_clock_that_does_not_move_forward_is_refused() -> None:
    log: list[Any] = []
    clock = ReplayClock(0)
    kernel = _kernel(log, WakeSource(log), clock)
    clock.advance_to(MINUTE)
    bar = CandleClosed("BTC/USDT", M1, candles(1), MINUTE)
    kernel.step([bar])
    with pytest.raises(ValueError, match="forward"):
        kernel.step([bar])


def test_a_bar_reported_before_its_close_is_refused() -> None:
    log: list[Any] = []
    clock = ReplayClock(0)
    kernel = _kernel(log, WakeSource(log), clock)
    clock.advance_to(MINUTE - 1)
    with pytest.raises(ValueError, match="only once it has closed"):
        kernel.step([CandleClosed("BTC/USDT", M1, candles(1), MINUTE)])


def test_the_kernel_refuses_parts_that_do_not_fit() -> None:
    log: list[Any] = []
    broker = LoggingBroker(log)
    risk = LoggingRisk(log)
    other = LoggingBroker(log)
    with pytest.raises(ValueError, match="same objects"):
        Kernel(
            clock=ReplayClock(0),
            broker=other,
            risk=risk,
            source=WakeSource(log),
            executor=executor(broker, risk),
            timeframe=M1,
        )
    with pytest.raises(TypeError, match="RunRecorder"):
        Kernel(
            clock=ReplayClock(0),
            broker=broker,
            risk=risk,
            source=WakeSource(log),
            executor=executor(broker, risk),
            timeframe=M1,
            recorder=object(),  # type: ignore[arg-type]
        )


def test_trades_and_books_reach_the_listeners_without_a_decision_step() -> None:
    log: list[Any] = []
    clock = ReplayClock(0)
    kernel = _kernel(log, WakeSource(log), clock, listeners=[LoggingListener(log)])
    clock.advance_to(30_000)
    trades = Trades(
        np.array([10_000, 29_000]),
        np.array([100.0, 101.0]),
        np.array([0.5, 0.25]),
        np.array([False, True]),
        np.array([1, 2]),
    )
    assert kernel.step([TradesReceived("BTC/USDT", trades, 29_000)]) is None
    assert log == [("listen", "BTC/USDT", 29_000)]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(5, 80),
    holes=st.lists(st.integers(1, 79), max_size=10),
    wake_bars=st.lists(st.integers(0, 90), max_size=12),
    offsets=st.lists(st.integers(-MINUTE + 1, 0), min_size=12, max_size=12),
    warmup=st.integers(0, 6),
)
def test_each_wake_time_picks_the_first_bar_closing_at_or_after_it(
    n: int, holes: list[int], wake_bars: list[int], offsets: list[int], warmup: int
) -> None:
    """Wake-ups anywhere inside a bar (or in a hole) decide at the first bar closing at or
    after them, never before the warm-up, once per wake-up time reached."""
    bars = candles(n, skip=[h for h in holes if h < n - 1])
    closes = bars.timestamp + MINUTE
    wakes = sorted({(b + 1) * MINUTE + o for b, o in zip(wake_bars, offsets, strict=False)})

    def wake(symbol: str, now: int) -> int:
        later = [w for w in wakes if w >= now]
        return later[0] if later else NEVER

    log: list[Any] = []
    source = WakeSource(log, warmup=warmup, wake=wake)
    feed = ReplayFeed.from_candles({"BTC/USDT": bars}, timeframe=M1)
    _run(_kernel(log, source, feed.clock), feed)
    expected: list[int] = []
    if warmup < len(bars):
        now = int(closes[warmup])
        while (w := wake("BTC/USDT", now)) != NEVER:
            j = int(np.searchsorted(closes, w))
            if j >= len(bars):
                break
            expected.append(j)
            now = int(closes[j]) + 1
    assert [c.bar_index for c in source.contexts] == expected
