"""Steering a running paper or live node: a thread-safe command queue applied by the node's
own loop, journaled before it acts.

Any thread (the API server, a CLI in the node's process) calls :meth:`NodeCommands.submit`
and waits for the outcome. :class:`~pivotal.node.trading_node.TradingNode` drains the queue in
``_tick``, between two kernel steps, on its own thread, so a command never races a step: the
decision maker, the risk manager, the executor and the broker are only ever touched by the
loop. :class:`CommandApplier` does the work, one command at a time:

1. journals a ``command`` entry (``phase: request``, ``command``, ``args``, ``source``) before
   anything changes;
2. applies it (a refusal is an outcome, never an exception in the loop);
3. journals a ``command`` entry with the outcome (``phase: result``, ``accepted``,
   ``detail``, and ``command``/``args`` again so the entry stands alone).

The commands (``Command.name`` → ``args``):

- ``thresholds`` (``buy_threshold``, ``sell_threshold``, ``min_confidence``: each None or
  in [0, 1]; None keeps the current one): the orchestrator's decision maker;
- ``entries`` (``stopped``: bool): the risk manager stops or allows new entries (exits, stops
  and take-profits still pass); allowing entries also lifts a kill switch's stop;
- ``force_exit`` (``symbol``): cancel the symbol's open orders, then sell what is held (the
  kill switch's flatten for one symbol); refused when the symbol is not traded here or
  nothing is held and nothing is open;
- ``kill`` (``reason``): :meth:`~pivotal.node.kill_switch.KillSwitch.fire`;
- ``process`` (``process``: ``streams`` | ``inference`` | ``learning`` | ``trading``,
  ``enabled``: bool): streams pause or resume the market data thread; inference off makes
  the orchestrator hold without asking its models; learning off stops stepping its learning
  loop; trading off lets decisions be made and journaled while no order is sent (exits
  included; the kill switch and force exit still act on the broker).

**Persistence.** Thresholds, the entries stop and the inference, learning and trading
switches survive a restart: :meth:`CommandApplier.restore` re-applies the accepted results
of the journal's ``command`` entries, in order, before the first step. The streams always
start with the node (a node waits for its first market event before trading); a ``restore``
entry records what was re-applied.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pivotal.core.journal import NewEntry, OrderJournal
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.types import TradingAction
from pivotal.node.journal_recorder import JournalRecorder
from pivotal.orchestrator.decision_log import decision_record
from pivotal.trading.execution import ActionExecutor

__all__ = [
    "COMMANDS",
    "PROCESSES",
    "Command",
    "CommandApplier",
    "CommandOutcome",
    "ControlState",
    "GatedExecutor",
    "NodeCommands",
    "NotedRecorder",
]

COMMANDS = ("thresholds", "entries", "force_exit", "kill", "process")
PROCESSES = ("streams", "inference", "learning", "trading")
_THRESHOLDS = ("buy_threshold", "sell_threshold", "min_confidence")
_PERSISTED_PROCESSES = ("inference", "learning", "trading")
ENTRIES_REASON = "new entries stopped by a person"


@dataclass(frozen=True, slots=True)
class Command:
    """One command: ``name`` (one of :data:`COMMANDS`), its ``args`` (module docstring) and
    who sent it (``source``: ``api``, ``cli`` ...)."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"


@dataclass(frozen=True, slots=True)
class ControlState:
    """What a person can change, as it is: thresholds (None when the node's decision source
    has none), the entries stop, each process's switch, whether the kill switch fired."""

    buy_threshold: float | None
    sell_threshold: float | None
    min_confidence: float | None
    entries_stopped: bool
    entries_reason: str
    processes: Mapping[str, bool]
    killed: bool


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of a command: ``accepted`` (applied as asked), ``detail`` for people,
    ``applied_ms`` (the node's clock, UTC ms; None when it was never applied) and the
    controls right after it (None when it was never applied)."""

    command: str
    accepted: bool
    detail: str
    applied_ms: int | None = None
    controls: ControlState | None = None


class Refused(Exception):
    """A command that cannot be applied; the message says why and what to send."""


# -- the queue ---------------------------------------------------------------------------------
class _Pending:
    __slots__ = ("command", "done", "outcome", "taken")

    def __init__(self, command: Command) -> None:
        self.command = command
        self.done = threading.Event()
        self.outcome: CommandOutcome | None = None
        self.taken = False


class NodeCommands:
    """The queue between any thread and the node's loop (module docstring). Thread-safe."""

    #: Extra seconds a caller waits for a command the loop has already started applying (a
    #: kill or a stream pause may take a while; its outcome is worth waiting for).
    IN_FLIGHT_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._closed: str | None = None

    def submit(self, command: Command, timeout_s: float = 10.0) -> CommandOutcome:
        """Queue ``command`` and wait up to ``timeout_s`` for the loop to apply it. Not taken
        by then: withdrawn, and the outcome says so (``accepted=False``); taken: waits for
        it to finish (up to :attr:`IN_FLIGHT_S` more)."""
        pending = _Pending(command)
        with self._lock:
            if self._closed is not None:
                return CommandOutcome(command.name, False, self._closed)
            self._queue.append(pending)
        if pending.done.wait(timeout_s):
            return pending.outcome or CommandOutcome(command.name, False, "no outcome")
        with self._lock:
            if not pending.taken:
                self._queue.remove(pending)
                return CommandOutcome(
                    command.name,
                    False,
                    f"not applied within {timeout_s:g} s: the node's loop did not reach a "
                    "step boundary (is it still starting, or stuck?); the command was "
                    "withdrawn, send it again",
                )
        pending.done.wait(self.IN_FLIGHT_S)
        return pending.outcome or CommandOutcome(
            command.name,
            False,
            f"still being applied after {timeout_s + self.IN_FLIGHT_S:g} s; read the "
            "controls and the journal for its outcome",
        )

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def drain(self, apply: Callable[[Command], CommandOutcome]) -> int:
        """Apply every queued command in order (the node's loop); returns how many."""
        count = 0
        while True:
            with self._lock:
                if not self._queue:
                    return count
                pending = self._queue.popleft()
                pending.taken = True
            try:
                pending.outcome = apply(pending.command)
            except Exception as exc:  # never into the loop: the caller gets it
                pending.outcome = CommandOutcome(
                    pending.command.name, False, f"failed: {type(exc).__name__}: {exc}"
                )
            finally:
                pending.done.set()
            count += 1

    def close(self, reason: str = "the node has stopped; commands go to a running node") -> None:
        """Refuse new commands and answer the queued ones with ``reason``."""
        with self._lock:
            self._closed = reason
            queued, self._queue = list(self._queue), deque()
        for pending in queued:
            pending.outcome = CommandOutcome(pending.command.name, False, reason)
            pending.done.set()

    def reopen(self) -> None:
        with self._lock:
            self._closed = None


# -- the executor's gate -----------------------------------------------------------------------
class GatedExecutor(ActionExecutor):
    """An :class:`ActionExecutor` with the ``trading`` switch: while ``trading_enabled`` is
    False no action is reviewed or sent (exits included); each one becomes a
    ``trading_paused`` record (journaled as an alert) so the decision's fate is visible."""

    trading_enabled: bool = True

    def execute(
        self,
        actions: Sequence[TradingAction],
        account: AccountSnapshot,
        *,
        symbol: str,
        timestamp: int,
        price: float,
        atr: float | None,
    ) -> list[dict[str, Any]]:
        if self.trading_enabled or not actions:
            return super().execute(
                actions, account, symbol=symbol, timestamp=timestamp, price=price, atr=atr
            )
        return [
            {
                "timestamp": timestamp,
                "kind": "trading_paused",
                "symbol": symbol,
                "action": str(a.action),
                "message": f"trading paused: {a.action} {symbol} decided, no order sent",
            }
            for a in actions
        ]


# -- the decisions' notes ----------------------------------------------------------------------
class NotedRecorder(JournalRecorder):
    """The node's journal recorder, whose ``decision`` entries also carry what a reader of
    the journal needs: ``model_decision`` (the orchestrator's decision of this step,
    :func:`~pivotal.orchestrator.decision_log.decision_record`, when the source has one),
    ``thresholds`` (``buy``, ``sell``, ``min_confidence`` in force) and ``trading`` (False:
    the decision's orders were not sent)."""

    def __init__(self, *args: Any, notes: Callable[[Mapping[str, Any]], dict[str, Any]], **kw: Any):
        super().__init__(*args, **kw)
        self.notes = notes

    def decision(self, record: Mapping[str, Any]) -> None:
        super().decision({**record, **self.notes(record)})


def decision_notes(
    source: Any, executor: GatedExecutor, record: Mapping[str, Any]
) -> dict[str, Any]:
    """The notes :class:`NotedRecorder` adds to the kernel's decision ``record``."""
    notes: dict[str, Any] = {"trading": bool(executor.trading_enabled)}
    maker = getattr(source, "decision_maker", None)
    if maker is not None:
        t = maker.thresholds
        notes["thresholds"] = {"buy": t.buy, "sell": t.sell, "min_confidence": t.min_confidence}
    log = getattr(source, "log", None)
    decisions = getattr(log, "decisions", None)
    if decisions:
        last = decisions[-1]
        if last.symbol == record.get("symbol") and int(last.timestamp) == int(
            record.get("timestamp", -1)
        ):
            notes["model_decision"] = decision_record(last)
    return notes


# -- applying ----------------------------------------------------------------------------------
def _unit(args: Mapping[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"{name} must be a number in [0, 1], got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise Refused(f"{name} must lie in [0, 1], got {value!r}; send a probability")
    return float(value)


def _flag(args: Mapping[str, Any], name: str) -> bool:
    value = args.get(name)
    if not isinstance(value, bool):
        raise Refused(f"{name} must be true or false, got {value!r}")
    return value


class CommandApplier:
    """Applies :class:`Command` s to a :class:`~pivotal.node.trading_node.TradingNode` on its
    own thread (module docstring). ``node`` is read for its ``journal``, ``clock``, ``risk``,
    ``executor`` (a :class:`GatedExecutor`), ``kill_switch``, ``broker``, ``market``,
    ``orchestrator_obj`` and ``run_config.symbols``."""

    def __init__(self, node: Any) -> None:
        self.node = node

    # -- state ---------------------------------------------------------------------------------
    def controls(self) -> ControlState:
        node = self.node
        source = node.orchestrator_obj
        maker = getattr(source, "decision_maker", None)
        t = None if maker is None else maker.thresholds
        reason = node.risk.halt_reason if node.risk.halted else ""
        return ControlState(
            buy_threshold=None if t is None else t.buy,
            sell_threshold=None if t is None else t.sell,
            min_confidence=None if t is None else t.min_confidence,
            entries_stopped=bool(node.risk.halted),
            entries_reason=reason,
            processes=self.processes(),
            killed=node.kill_switch.fired is not None,
        )

    def processes(self) -> dict[str, bool]:
        node = self.node
        source = node.orchestrator_obj
        return {
            "streams": not node.market.paused,
            "inference": bool(getattr(source, "inference_enabled", True)),
            "learning": bool(getattr(source, "learning_enabled", True))
            and getattr(source, "learning", None) is not None,
            "trading": bool(node.executor.trading_enabled),
        }

    # -- one command ---------------------------------------------------------------------------
    def apply(self, command: Command) -> CommandOutcome:
        """Journal, apply, journal the outcome (module docstring); never raises for a bad
        command (a journal that cannot be written does raise: nothing acts unjournaled)."""
        node = self.node
        args = dict(command.args)
        symbol = args.get("symbol") if isinstance(args.get("symbol"), str) else None
        base = {"command": command.name, "args": args, "source": command.source}
        node.journal.append(
            [NewEntry(node.clock.now_ms(), "command", {"phase": "request", **base}, symbol=symbol)]
        )
        try:
            detail = self._apply(command.name, args)
            accepted = True
        except Refused as exc:
            accepted, detail = False, str(exc)
        except Exception as exc:  # a fault while applying: an outcome, not a dead loop
            accepted, detail = False, f"failed while applying: {type(exc).__name__}: {exc}"
        now = node.clock.now_ms()
        node.journal.append(
            [
                NewEntry(
                    now,
                    "command",
                    {"phase": "result", **base, "accepted": accepted, "detail": detail},
                    symbol=symbol,
                )
            ]
        )
        node.say(f"command {command.name} ({command.source}): {detail}")
        return CommandOutcome(command.name, accepted, detail, now, self.controls())

    def _apply(self, name: str, args: Mapping[str, Any]) -> str:
        if name == "thresholds":
            return self._thresholds(args)
        if name == "entries":
            return self._entries(_flag(args, "stopped"))
        if name == "force_exit":
            return self._force_exit(args.get("symbol"))
        if name == "kill":
            reason = str(args.get("reason") or "kill command").strip() or "kill command"
            report = self.node.kill_switch.fire(reason)
            for line in report.lines():
                self.node.say(line)
            return "; ".join(report.lines()[:3] + [f"problem: {p}" for p in report.problems])
        if name == "process":
            process = args.get("process")
            if process not in PROCESSES:
                raise Refused(f"unknown process {process!r}; the processes: {', '.join(PROCESSES)}")
            return self._process(str(process), _flag(args, "enabled"))
        raise Refused(f"unknown command {name!r}; the commands: {', '.join(COMMANDS)}")

    def _thresholds(self, args: Mapping[str, Any]) -> str:
        unknown = sorted(set(args) - set(_THRESHOLDS))
        if unknown:
            raise Refused(f"unknown threshold(s) {unknown}; send {', '.join(_THRESHOLDS)}")
        values = {k: _unit(args, k) for k in _THRESHOLDS}
        if all(v is None for v in values.values()):
            raise Refused(f"no threshold given; send at least one of {', '.join(_THRESHOLDS)}")
        maker = getattr(self.node.orchestrator_obj, "decision_maker", None)
        if maker is None:
            raise Refused(
                "this node's decision source has no decision thresholds (it is not the "
                "orchestrator, or the node is still starting); nothing changed"
            )
        maker.set_thresholds(
            buy=values["buy_threshold"],
            sell=values["sell_threshold"],
            min_confidence=values["min_confidence"],
        )
        t = maker.thresholds
        return (
            f"thresholds now buy {t.buy:.3f}, sell {t.sell:.3f}, min confidence "
            f"{t.min_confidence:.3f} (from the next decision on)"
        )

    def _entries(self, stopped: bool) -> str:
        risk = self.node.risk
        if stopped:
            risk.stop_entries(ENTRIES_REASON)
            return "new entries stopped; exits, stops and take-profits still run"
        lifted = risk.halt_reason if risk.halted else ""
        risk.allow_entries()
        if risk.halted:  # an equity halt keeps its own rules
            return f"entries allowed by hand, but the risk manager still halts: {risk.halt_reason}"
        return "new entries allowed" + (f" (lifted: {lifted})" if lifted else "")

    def _symbol(self, text: Any) -> str:
        symbols = [str(s) for s in self.node.run_config.symbols]
        if not isinstance(text, str) or not text.strip():
            raise Refused(f"force exit needs a symbol; this node trades {', '.join(symbols)}")
        try:
            symbol = str(Symbol.resolve(text, [Symbol.parse(s) for s in symbols]))
        except ValueError as exc:
            raise Refused(f"{exc}; this node trades {', '.join(symbols)}") from None
        if symbol not in symbols:
            raise Refused(f"this node does not trade {text!r}; it trades {', '.join(symbols)}")
        return symbol

    def _force_exit(self, text: Any) -> str:
        symbol = self._symbol(text)
        node = self.node
        position = node.broker.account().positions.get(symbol)
        held = position is not None and position.quantity != 0
        if not held and not node.broker.open_orders(symbol):
            raise Refused(f"nothing to exit on {symbol}: no position held and no open order")
        report = node.kill_switch.exit_symbol(symbol, f"force exit of {symbol}")
        parts = [f"force exit {symbol}: {len(report.cancelled)} order(s) cancelled"]
        if symbol in report.flattened:
            parts.append(f"sell order for {report.flattened[symbol]:g} sent")
        elif not held:
            parts.append("nothing was held")
        if report.problems:
            raise Refused("; ".join(parts + [f"problem: {p}" for p in report.problems]))
        return ", ".join(parts)

    def _process(self, process: str, enabled: bool) -> str:
        node = self.node
        word = "on" if enabled else "off"
        if process == "streams":
            changed = node.market.resume() if enabled else node.market.pause()
            if not changed:
                return f"streams already {'running' if enabled else 'paused'}"
            return "streams resumed" if enabled else "streams paused: no market data until resumed"
        if process == "trading":
            node.executor.trading_enabled = enabled
            return (
                "trading on: decisions send orders again"
                if enabled
                else "trading off: decisions are made and journaled, no order is sent"
            )
        source = node.orchestrator_obj
        attr = f"{process}_enabled"
        if source is None or not hasattr(source, attr):
            raise Refused(
                f"this node's decision source has no {process} switch (it is not the "
                "orchestrator, or the node is still starting); nothing changed"
            )
        if process == "learning" and getattr(source, "learning", None) is None:
            raise Refused(
                "this node's orchestrator has no learning loop (learning.enabled is false in "
                "the run file); nothing to switch"
            )
        setattr(source, attr, enabled)
        return f"{process} {word}"

    # -- restart -------------------------------------------------------------------------------
    def restore(self, journal: OrderJournal) -> list[str]:
        """Re-apply the accepted thresholds, entries and process switches of ``journal``'s
        ``command`` entries (module docstring); lines for people, journaled as a ``restore``
        entry when anything was re-applied."""
        thresholds: dict[str, float] = {}
        entries: bool | None = None
        processes: dict[str, bool] = {}
        for entry in journal.entries(kinds=["command"]):
            data = entry.data
            if data.get("phase") != "result" or not data.get("accepted"):
                continue
            args = data.get("args") or {}
            name = data.get("command")
            if name == "thresholds":
                thresholds.update({k: v for k, v in args.items() if v is not None})
            elif name == "entries" and isinstance(args.get("stopped"), bool):
                entries = args["stopped"]
            elif name == "process" and args.get("process") in _PERSISTED_PROCESSES:
                processes[str(args["process"])] = bool(args.get("enabled"))
        lines: list[str] = []
        if thresholds:
            lines.append(self._restored("thresholds", lambda: self._thresholds(thresholds)))
        if entries:  # allowed is the default
            lines.append(self._restored("entries", lambda: self._entries(True)))
        for process in [p for p, enabled in processes.items() if not enabled]:  # on: default
            lines.append(self._restored(process, _switch_off(self, process)))
        if lines:
            self.node.journal.append(
                [
                    NewEntry(
                        self.node.clock.now_ms(),
                        "command",
                        {"phase": "restore", "lines": lines, "source": "restart"},
                    )
                ]
            )
        return lines

    def _restored(self, what: str, apply: Callable[[], str]) -> str:
        try:
            return f"restored {what}: {apply()}"
        except Refused as exc:
            return f"could not restore {what}: {exc}"


def _switch_off(applier: CommandApplier, process: str) -> Callable[[], str]:
    return lambda: applier._process(process, False)
