"""A paper or live session: the runtime's loop over the live feed, with the node's duties.

:class:`TradingNode` owns one session (built by :func:`pivotal.node.build.build_node`, the
only place that knows the mode). :meth:`TradingNode.run`:

1. (the journal, opened by the builder, holds its writer lock: two nodes never trade one
   journal) journals a ``session`` entry (``start`` or ``restart`` when the journal has entries);
2. starts the broker: it rebuilds its state from the journal and reconciles with the venue
   (the venue wins; differences are journaled and shown). A broker that cannot reconcile
   raises and the node does not start;
3. builds the orchestrator at the venue's time (models only from checkpoints made before
   its bar), warms its frame with stored bars closed by then (:mod:`pivotal.node.warmup`)
   and, with ``learn_from``, runs the learning span up to that bar without orders;
4. starts the market data thread, waits for the first event time ``t0``, pushes stored bars
   closed since (the market may have moved while the models got ready), and replays the
   journal's equity into the risk manager (the drawdown breaker continues across restarts);
5. runs :class:`~pivotal.runtime.loop.TradingLoop` (the same kernel step as a backtest) over a
   :class:`~pivotal.node.control.ControlledFeed`; between steps the node handles a stop signal,
   kill requests (``pivotal kill``) and breaker kills, periodic reconciliation, the duration;
   :attr:`TradingNode.commands` (:mod:`pivotal.node.commands`: thresholds, entries, force
   exit, kill, process switches) are applied there too, journaled first, and every half second
   a fresh :attr:`TradingNode.snapshot` (:mod:`pivotal.node.snapshot`) is published for
   readers on other threads (the API); the thresholds and switches of earlier sessions are
   re-applied from the journal before the first step;
6. at a stop (SIGTERM/SIGINT, duration, feed end): no new step, hence no new order; the
   streams stop; open orders are kept or cancelled (``live.on_stop``); a last
   reconciliation brings the journal in line with the venue; the journal gets a ``session``
   stop entry; the broker closes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pivotal.config.live import LiveSettings
from pivotal.core.candles import Candles
from pivotal.core.clock import utc_text
from pivotal.core.errors import OperationalError, PivotalError
from pivotal.core.events import MarketEvent
from pivotal.core.journal import NewEntry, OrderJournal
from pivotal.core.ports import DecisionSource
from pivotal.core.timeframes import Timeframe
from pivotal.data.store import MarketDataStore
from pivotal.node.commands import (
    Command,
    CommandApplier,
    CommandOutcome,
    GatedExecutor,
    NodeCommands,
    NotedRecorder,
    decision_notes,
)
from pivotal.node.control import ControlledFeed, MarketClock
from pivotal.node.kill_switch import KillReport, KillSwitch, read_kill_request
from pivotal.node.market_data import MarketDataThread
from pivotal.node.session_broker import SessionBroker
from pivotal.node.snapshot import SNAPSHOT_EVERY_S, NodeSnapshot, take_snapshot
from pivotal.node.warmup import learn_span, warm_up
from pivotal.orchestrator.run_file import RunConfig
from pivotal.runtime.kernel import MarketListener
from pivotal.runtime.loop import TradingLoop
from pivotal.trading.risk import RiskManager

__all__ = ["NodeReport", "SessionSource", "TradingNode"]

BREAKER_RECORDS = frozenset({"risk_circuit_breaker", "risk_daily_loss_limit"})


@runtime_checkable
class SessionSource(DecisionSource, MarketListener, Protocol):
    """What a session trades with: a decision source that also listens to the market (the
    orchestrator, or a scripted source in tests), with the timeframes it reads and a
    ``finish`` for its workers."""

    @property
    def timeframes(self) -> tuple[Timeframe, ...]: ...

    def finish(self, now_ms: int | None = None) -> None: ...


@dataclass
class NodeReport:
    """What a session did (this process's part of it)."""

    mode: str
    venue: str
    restart: bool
    started_ms: int = 0
    stopped_ms: int = 0
    steps: int = 0
    decisions: int = 0
    held_events: int = 0
    reconciles: int = 0
    reconcile_lines: list[str] = field(default_factory=list)
    kill: KillReport | None = None
    stop_reason: str = ""
    warmup_bars: dict[str, int] = field(default_factory=dict)
    cancelled_at_stop: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "kill"}
        out["kill"] = None if self.kill is None else self.kill.__dict__
        return out


class TradingNode:
    """One paper or live session (module docstring); :func:`pivotal.node.build.build_node`
    builds it."""

    def __init__(
        self,
        *,
        mode: str,
        run: RunConfig,
        settings: LiveSettings,
        store: MarketDataStore,
        broker: SessionBroker,
        journal: OrderJournal,
        journal_path: Path,
        clock: MarketClock,
        market: MarketDataThread,
        orchestrator: Callable[[int], SessionSource],
        say: Callable[[str], None] = print,
        first_event_timeout_s: float = 120.0,
    ) -> None:
        self.mode = mode
        self.run_config = run
        self.settings = settings
        self.store = store
        self.broker = broker
        self.journal = journal
        self.journal_path = journal_path
        self.clock = clock
        self.market = market
        self.make_orchestrator = orchestrator
        self.say = say
        self.first_event_timeout_s = first_event_timeout_s
        self.risk = RiskManager(run.settings.risk)
        self.executor = GatedExecutor(
            broker,
            self.risk,
            fees=run.settings.broker.fees,
            lot_size=run.settings.broker.lot_size,
        )
        self.kill_switch = KillSwitch(broker, self.risk, journal, clock, list(run.symbols))
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self._breaker: str | None = None
        self._next_reconcile = 0.0
        self._next_kill_check = 0.0
        self._deadline: float | None = None
        self.orchestrator_obj: SessionSource | None = None
        #: Commands from other threads, applied by ``_tick`` (:mod:`pivotal.node.commands`).
        self.commands = NodeCommands()
        self.applier = CommandApplier(self)
        self.broker_started = False
        self.started_ms: int | None = None
        self.status = "starting"
        self._recorder: NotedRecorder | None = None
        self._next_snapshot = 0.0
        self._snapshot_error = ""
        #: The node as readers on other threads see it (replaced whole; never mutated).
        self.snapshot: NodeSnapshot = self._take_snapshot()

    # -- control -------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Stop at the next step boundary (any thread; the signal handler's call)."""
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()

    def _install_signals(self) -> list[tuple[int, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []
        previous = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous.append((sig, signal.getsignal(sig)))
            signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))
        return previous

    def _on_alert(self, record: Mapping[str, Any]) -> None:
        if self.settings.kill_on_breaker and record.get("kind") in BREAKER_RECORDS:
            self._breaker = str(record.get("message") or record.get("kind"))

    def _take_snapshot(self) -> NodeSnapshot:
        steps = 0 if self._recorder is None else self._recorder.decisions
        return take_snapshot(self, self.applier.controls(), self.status, steps)

    def _publish(self, wall: float | None = None) -> None:
        """A fresh :attr:`snapshot` (the node's thread only)."""
        wall = time.monotonic() if wall is None else wall
        self._next_snapshot = wall + SNAPSHOT_EVERY_S
        try:
            self.snapshot = self._take_snapshot()
            self._snapshot_error = ""
        except Exception as exc:  # the readers keep the previous one; the loop goes on
            error = f"{type(exc).__name__}: {exc}"
            if error != self._snapshot_error:  # said once, not twice a second
                self._snapshot_error = error
                self.say(f"the node snapshot failed ({error}); readers see the last one")

    def _duties(self) -> None:
        """Commands, then the snapshot when it is due (the node's thread)."""
        self.commands.drain(self._apply_command)
        if time.monotonic() >= self._next_snapshot:
            self._publish()

    def _apply_command(self, command: Command) -> CommandOutcome:
        outcome = self.applier.apply(command)
        self._publish()  # before the caller wakes: what it reads next shows the command
        return outcome

    def _tick(self) -> bool:
        if self.stop_requested.is_set():
            return False
        self._duties()
        wall = time.monotonic()
        if self._deadline is not None and wall >= self._deadline:
            self.request_stop(f"duration {self.settings.duration_s:g} s reached")
            return False
        if self._breaker is not None and self.kill_switch.fired is None:
            reason, self._breaker = self._breaker, None
            self._fire(f"risk breaker: {reason}")
        if wall >= self._next_kill_check:
            self._next_kill_check = wall + 0.5
            request = read_kill_request(self.journal_path)
            if request is not None:
                self._fire(str(request.get("reason") or "pivotal kill"))
        if wall >= self._next_reconcile:
            self._next_reconcile = wall + self.settings.reconcile_every_s
            self._reconcile()
        return True

    def _fire(self, reason: str) -> None:
        report = self.kill_switch.fire(reason)
        for line in report.lines():
            self.say(line)

    def _reconcile(self) -> None:
        outcome = self.broker.reconcile()
        self.report.reconciles += 1
        if not outcome.ok:
            for line in outcome.lines():
                self.say(f"reconcile: {line}")
            self.report.reconcile_lines += outcome.lines()[-20:]

    # -- the session ---------------------------------------------------------------------------
    def run(self) -> NodeReport:
        restart = next(iter(self.journal.entries()), None) is not None
        self.report = NodeReport(mode=self.mode, venue=self.settings.venue, restart=restart)
        previous = self._install_signals()
        try:
            return self._run(restart)
        finally:
            for sig, handler in previous:
                signal.signal(sig, handler)

    def _run(self, restart: bool) -> NodeReport:
        run = self.run_config
        self.report.started_ms = self.clock.now_ms()
        self.journal.append(
            [
                NewEntry(
                    self.clock.now_ms(),
                    "session",
                    {
                        "event": "restart" if restart else "start",
                        "mode": self.mode,
                        "venue": self.settings.venue,
                        "symbols": list(run.symbols),
                        "pid": os.getpid(),
                    },
                )
            ]
        )
        equity = self._journaled_equity()
        self._check_time_goes_on(equity[0])
        outcome = self.broker.start()  # rebuild + reconcile; raises when it cannot
        self.broker_started = True
        self.started_ms = self.report.started_ms
        for line in outcome.lines():
            self.say(f"start: {line}")
        self._next_reconcile = time.monotonic() + self.settings.reconcile_every_s
        try:
            # the models are built, warmed and (with learn_from) taught the learning span
            # before the streams start: a long learning span must not make the first live
            # steps late
            begin = self.clock.now_ms()  # the venue's time
            first_bar = begin // run.base.ms * run.base.ms
            orchestrator = self.make_orchestrator(first_bar)
            self.orchestrator_obj = orchestrator
            for line in self.applier.restore(self.journal):  # earlier sessions' controls
                self.say(line)
            self._publish()
            for symbol in run.symbols:
                orchestrator.prepare(symbol, Candles.empty())  # pushed: nothing up front
            learn = run.learn_from is not None and int(run.learn_from) < first_bar
            warm_to = int(run.learn_from) if learn else first_bar  # type: ignore[arg-type]
            self.report.warmup_bars = warm_up(
                orchestrator, self.store, run.exchange, run.symbols, orchestrator.timeframes,
                t0=warm_to, bars=run.warmup_bars,
            )  # fmt: skip
            if learn:  # the run file's learning span, up to the session's first bar
                self.say(f"learning span from {utc_text(warm_to)} to {utc_text(first_bar)}")
                started = time.perf_counter()
                steps = learn_span(
                    orchestrator, self.store, run.exchange, run.symbols,
                    orchestrator.timeframes, run.base, self.broker.account(),
                    since=warm_to, until=first_bar,
                )  # fmt: skip
                self.say(
                    f"learning span: {sum(steps.values()):,} steps (no orders) in "
                    f"{time.perf_counter() - started:.0f} s"
                )
            self.market.start()
            self.say("streams started; trading from the first live bar")
            if self.settings.duration_s is not None:  # trading time, start-up not counted
                self._deadline = time.monotonic() + self.settings.duration_s
            first = self._first_events()
            if first is None:
                self.report.stop_reason = self.stop_reason or "the market feed ended at once"
                return self.report
            t0 = self.clock.now_ms()
            if t0 - first_bar >= run.base.ms:  # the market moved on while the models got ready
                warm_up(
                    orchestrator, self.store, run.exchange, run.symbols,
                    orchestrator.timeframes, t0=t0, bars=run.warmup_bars, skip=first,
                    after=first_bar,
                )  # fmt: skip
            self._restore_risk(equity)
            recorder = NotedRecorder(
                self.journal,
                self.clock,
                on_alert=self._on_alert,
                notes=lambda record: decision_notes(self.orchestrator_obj, self.executor, record),
            )
            self._recorder = recorder
            self.status = "running"
            self._publish()
            loop = TradingLoop(
                clock=self.clock,
                broker=self.broker,
                risk=self.risk,
                source=orchestrator,
                executor=self.executor,
                timeframe=run.base,
                venue=None,  # the venue matches orders itself
                listeners=(self.broker, orchestrator),
                recorder=recorder,
                atr_period=run.settings.atr_period,
                memory=False,
            )
            controlled = ControlledFeed(_Prepend(first, self.market.feed), self.clock, self._tick)
            result = loop.run(controlled)
            self.report.decisions = result.decisions
            self.report.held_events = controlled.held
            self.report.steps = recorder.decisions
        finally:
            self.status = "stopping"
            self.commands.close()
            self.market.stop()
            if self.orchestrator_obj is not None:
                self.orchestrator_obj.finish(now_ms=self.clock.now_ms())
            self._stop_session()
        return self.report

    def _first_events(self) -> Sequence[MarketEvent] | None:
        deadline = time.monotonic() + self.first_event_timeout_s
        feed = self.market.feed
        while not self.stop_requested.is_set():
            self._duties()
            events = feed.next_events()
            if events is None:
                if self.market.error is not None:
                    raise OperationalError(f"the market data stopped: {self.market.error}")
                return None
            if events:
                return events
            if time.monotonic() > deadline:
                raise OperationalError(
                    f"no market event within {self.first_event_timeout_s:g} s of starting the "
                    "streams; is the venue (or the local exchange) streaming?"
                )
        return None

    def _journaled_equity(self) -> tuple[list[int], list[float]]:
        """The journal's equity points, times strictly increasing (read once at start: the
        time check and the risk manager's restore both use them)."""
        times: list[int] = []
        values: list[float] = []
        for entry in self.journal.entries(kinds=["equity"]):
            t = int(entry.ts)
            if times and t <= times[-1]:
                continue
            times.append(t)
            values.append(float(entry.data["equity"]))
        return times, values

    def _check_time_goes_on(self, times: list[int]) -> None:
        """Refuse a journal whose equity runs past the venue's time: it was written against a
        later market (a local exchange replaying from its start again), and resuming it would
        take time backwards."""
        now = self.clock.now_ms()
        if times and times[-1] > now:
            raise OperationalError(
                f"the journal {self.journal_path} runs to {utc_text(times[-1])}, after the "
                f"venue's time {utc_text(now)}: it belongs to a later market (a local exchange "
                "started again from the beginning of its replay?). Move it away to start a new "
                "session, or give this session another journal (live.journal in the run file)"
            )

    def _restore_risk(self, equity: tuple[list[int], list[float]]) -> None:
        times, values = equity
        if times:
            self.risk.observe_many(np.asarray(times, np.int64), np.asarray(values, np.float64))
            self.risk.drain_alerts()  # already journaled by the session that saw them

    def _stop_session(self) -> None:
        reason = self.stop_reason or "the market feed ended"
        self.report.stop_reason = reason
        cancelled = 0
        try:
            if self.settings.on_stop == "cancel":
                cancelled = len(self.broker.cancel_all(None))
            self.report.cancelled_at_stop = cancelled
            self.broker.drain_events()  # journaled by the broker
            try:  # the journal ends in agreement with the venue
                self._reconcile()
            except PivotalError as exc:
                self.say(f"the closing reconciliation failed ({exc}); the next start redoes it")
        finally:
            self.report.kill = self.kill_switch.fired
            self.report.stopped_ms = self.clock.now_ms()
            self.journal.append(
                [
                    NewEntry(
                        self.clock.now_ms(),
                        "session",
                        {"event": "stop", "reason": reason, "cancelled": cancelled},
                    )
                ]
            )
            self.status = "stopped"
            self._publish()  # the last snapshot, while the broker can still be read
            self.broker.close()
            self.broker_started = False


class _Prepend:
    """A feed that first returns ``first`` (the step the node peeked at), then ``feed``'s."""

    def __init__(self, first: Sequence[MarketEvent], feed: Any) -> None:
        self._first: Sequence[MarketEvent] | None = first
        self._feed = feed

    def next_events(self) -> Sequence[MarketEvent] | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._feed.next_events()
