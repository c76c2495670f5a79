"""Coordinated inference over the experts (seed 003 §4.2, with §4.5's input validation).

:class:`ModelInferenceCoordinator` runs the experts of one step in dependency order:

1. **Graph.** Each expert's ``depends_on`` names experts whose output *of the same step* it
   reads (PivotCNN → DQN). The graph is cut into topological :attr:`levels`; the experts of
   one level are independent. Unknown names and cycles are refused when it is built.
2. **Trigger.** ``run(..., updated=...)`` names the timeframes whose candles changed this
   step; an expert runs when one of its ``timeframes`` is among them (``None``: all run).
   An expert that runs also runs everything it depends on, since it needs their output of
   this step. Experts that are not triggered are simply absent from the result.
3. **Validate.** Before each call the step's input is checked against the expert's ``spec``
   (:func:`~pivotal.features.inputs.check_input`); an incomplete input skips the expert with
   the report's message (logged at INFO once per kind of problem per expert, recorded as an
   event every time). An expert whose dependency gave no output this step is skipped too.
4. **Call.** Every call runs on the expert's own daemon worker thread
   (:class:`~pivotal.orchestrator.workers.CallWorker`) and is awaited for at most
   ``InferenceConfig.timeout_ms``, so a hung model never blocks the step. A replay's builder
   passes ``calls="inline"`` (:class:`~pivotal.orchestrator.workers.InlineCall`): calls run
   on the caller's thread, no hand-off and nothing that depends on wall time. With
   ``parallel=True`` the experts of a level run at the same time; otherwise one at a time,
   still on their workers (so the timeout holds either way).
5. **Check the answer.** A failure is a raise, a timeout, or an invalid answer (not an
   :class:`~pivotal.orchestrator.contracts.Inference`; wrong model name, timestamp or symbol;
   non-finite confidence; no readable vote per
   :func:`~pivotal.orchestrator.contracts.action_probabilities`; a non-finite float anywhere
   in ``predictions`` or ``hidden_states``). Each failure is an event and gives no output.
6. **Isolate.** After ``max_failures`` consecutive failures the expert is isolated. Its
   ``fallback()`` (a fresh expert from its last good checkpoint; an exception counts as
   none) replaces it from the next step, prepared with the candles of the last
   :meth:`~ModelInferenceCoordinator.prepare`; without one it gives no vote any more. A
   fallback that fails ``max_failures`` times in a row is isolated for good. A hung worker
   thread is abandoned, never joined; the next call gets a new worker.

Results are deterministic: ``StepResult.outputs`` follows the graph order (levels in order,
experts of a level in the order they were given), never the order calls completed in.
``run`` is meant for one thread (the orchestrator's); concurrent calls are serialized.
Times are UTC milliseconds; latencies are milliseconds of wall time.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from types import MappingProxyType
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import BaseDataInput, ModelOutput
from pivotal.features.inputs import InputReport, InputSpec, check_input
from pivotal.orchestrator.config import InferenceConfig
from pivotal.orchestrator.contracts import (
    Expert,
    Inference,
    InferenceRequest,
)
from pivotal.orchestrator.output_checks import judge_output, validate_output
from pivotal.orchestrator.workers import CallWorker, InlineCall

__all__ = [
    "EventKind",
    "ExpertEvent",
    "ExpertStatus",
    "ModelInferenceCoordinator",
    "StepResult",
    "validate_output",
]

logger = logging.getLogger(__name__)

EventKind = Literal["skipped", "failed", "timeout", "invalid_output", "isolated", "fallback"]
ExpertStatus = Literal["active", "fallback", "isolated"]


@dataclass(frozen=True, slots=True)
class ExpertEvent:
    """Something that happened to one expert at one step (UTC ms ``timestamp``).

    ``skipped``: not called (incomplete input or no upstream output); ``failed``: raised;
    ``timeout``: no answer within the timeout; ``invalid_output``: answered something
    unusable; ``isolated``: taken out after consecutive failures; ``fallback``: replaced by
    its fallback from the next step. Events of :meth:`ModelInferenceCoordinator.prepare`
    come with the next step's result, stamped with the close time of the prepared candles.
    """

    timestamp: int
    symbol: str
    model: str
    kind: EventKind
    message: str


@dataclass(frozen=True, slots=True)
class StepResult:
    """What the experts gave at one step.

    ``outputs`` / ``inferences``: by expert name, in graph order. ``skipped``: expert → why
    it gave no output (incomplete input, upstream missing, isolated, failed, timed out,
    invalid output). ``events``: in the order they happened. ``latency_ms``: wall time of
    each call made (the time waited, for a timeout). ``votes``: each output's
    :func:`~pivotal.orchestrator.contracts.action_probabilities` as the output check
    computed it (read-only arrays), by expert name, for the gate.
    """

    symbol: str
    timestamp: int
    outputs: Mapping[str, ModelOutput]
    inferences: Mapping[str, Inference]
    skipped: Mapping[str, str]
    events: tuple[ExpertEvent, ...]
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    votes: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)


@dataclass(slots=True)
class _Slot:
    """One named place in the graph and the expert currently filling it."""

    name: str
    depends_on: tuple[str, ...]
    expert: Expert
    timeframes: frozenset[str]
    status: ExpertStatus = "active"
    failures: int = 0
    last_failure: str = ""
    isolated_reason: str = ""
    worker: CallWorker | InlineCall | None = None
    logged: set[tuple[str, ...]] = field(default_factory=set)


def _levels(experts: Sequence[Expert]) -> tuple[tuple[str, ...], ...]:
    """Topological levels (Kahn), experts of a level in the order given; ``ValueError`` for
    an unknown dependency or a cycle (the message spells the cycle)."""
    names = [e.name for e in experts]
    deps = {e.name: tuple(e.depends_on) for e in experts}
    for name, wanted in deps.items():
        unknown = [d for d in wanted if d not in deps]
        if unknown:
            raise ValueError(
                f"expert {name!r} depends on unknown expert(s) {unknown}; experts: {names}"
            )
    levels: list[tuple[str, ...]] = []
    placed: set[str] = set()
    while len(placed) < len(names):
        level = tuple(n for n in names if n not in placed and all(d in placed for d in deps[n]))
        if not level:
            raise ValueError(f"expert dependencies form a cycle: {_cycle(deps, placed)}")
        levels.append(level)
        placed.update(level)
    return tuple(levels)


def _cycle(deps: Mapping[str, tuple[str, ...]], placed: set[str]) -> str:
    """One cycle among the unplaced experts, as ``"a -> b -> a"``."""
    start = next(n for n in deps if n not in placed)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in deps[node] if d not in placed)
    return " -> ".join([*path[seen[node] :], node])


def _problem_kind(report: InputReport) -> tuple[str, ...]:
    """The report's problems with numbers blanked: one log line per kind, not per bar."""
    return tuple(re.sub(r"\d+", "#", m) for m in report.missing)


def _data_end(candles: Mapping[Timeframe, Candles]) -> int:
    """Close time (UTC ms) of the newest candle given, 0 when there is none."""
    ends = [
        int(c.timestamp[-1]) + Timeframe.parse(tf).ms for tf, c in candles.items() if len(c) > 0
    ]
    return max(ends, default=0)


class ModelInferenceCoordinator:
    """Runs the experts of a step in dependency order with validation, timeouts, isolation
    and fallbacks (module docstring). A context manager: :meth:`close` stops the workers."""

    def __init__(
        self,
        experts: Sequence[Expert],
        config: InferenceConfig | None = None,
        *,
        calls: Literal["threads", "inline"] = "threads",
    ) -> None:
        experts = list(experts)
        for expert in experts:
            if not isinstance(expert, Expert):
                raise TypeError(
                    f"{expert!r} is not an Expert: it needs name, model_type, depends_on, spec, "
                    "timeframes, prepare, infer, replay and fallback"
                )
        names = [e.name for e in experts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"expert names must be unique; repeated: {repeated}")
        if calls not in ("threads", "inline"):
            raise ValueError(f"calls must be 'threads' or 'inline', got {calls!r}")
        self._worker = InlineCall if calls == "inline" else CallWorker
        self._config = config or InferenceConfig()
        self._timeout_s = self._config.timeout_ms / 1000.0
        self._levels = _levels(experts)
        order = [n for level in self._levels for n in level]
        by_name = {e.name: e for e in experts}
        self._slots: dict[str, _Slot] = {n: self._slot(by_name[n]) for n in order}
        self._prepared: dict[str, dict[Timeframe, Candles]] = {}
        self._pending: list[ExpertEvent] = []
        self._triggers: dict[frozenset[str], frozenset[str]] = {}
        self._symbols: dict[str, Symbol] = {}
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _slot(expert: Expert) -> _Slot:
        return _Slot(
            name=expert.name,
            depends_on=tuple(expert.depends_on),
            expert=expert,
            timeframes=frozenset(str(tf) for tf in expert.timeframes),
        )

    # -- introspection ---------------------------------------------------------------------
    @property
    def config(self) -> InferenceConfig:
        return self._config

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Topological levels: every expert's dependencies lie in earlier levels; the experts
        of one level are independent (run at the same time when ``parallel``)."""
        return self._levels

    def status(self) -> dict[str, str]:
        """Expert name → ``"active"``, ``"fallback"`` (its fallback is in use) or
        ``"isolated"`` (no vote any more), in graph order."""
        return {name: slot.status for name, slot in self._slots.items()}

    def experts(self) -> dict[str, Expert]:
        """The experts in use (fallbacks in place of the ones they replaced; isolated ones
        left out), in graph order."""
        return {n: s.expert for n, s in self._slots.items() if s.status != "isolated"}

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker threads (a hung one ends when its call returns). Idempotent."""
        with self._lock:
            self._closed = True
            for slot in self._slots.values():
                if slot.worker is not None:
                    slot.worker.close()
                    slot.worker = None

    def __enter__(self) -> ModelInferenceCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prepare ---------------------------------------------------------------------------
    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        """Call every expert's ``prepare`` for ``symbol`` (on this thread). An expert whose
        prepare raises is isolated (and replaced by its fallback, if any); the events come
        with the next :meth:`run`'s result. The candles are kept to prepare fallbacks."""
        candles = {Timeframe.parse(tf): c for tf, c in candles.items()}
        symbol = str(self._symbol(symbol))
        at = _data_end(candles)
        with self._lock:
            if self._closed:
                raise RuntimeError("the coordinator is closed; build a new one")
            self._prepared[symbol] = candles
            for slot in self._slots.values():
                if slot.status == "isolated":
                    continue
                error = self._prepare_one(slot.expert, symbol, candles)
                if error is not None:
                    reason = f"isolated: prepare for {symbol} failed: {error}"
                    self._isolate(slot, reason, symbol, at, self._pending)

    @staticmethod
    def _prepare_one(
        expert: Expert, symbol: str, candles: Mapping[Timeframe, Candles]
    ) -> str | None:
        try:
            expert.prepare(symbol, candles)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    # -- run -------------------------------------------------------------------------------
    def run(
        self,
        symbol: str,
        timestamp: int,
        input: BaseDataInput,
        account: AccountSnapshot,
        *,
        updated: Collection[Timeframe] | None = None,
        observe: Callable[[Any], Any] | None = None,
        check: Callable[[BaseDataInput, InputSpec], InputReport] = check_input,
    ) -> StepResult:
        """Run the triggered experts on the step's ``input`` at ``timestamp`` (UTC ms, the
        close of the bar that triggered the step); see the module docstring.

        ``check``: validates the input against an expert's spec; it must give
        :func:`~pivotal.features.inputs.check_input`'s report (the market frame's
        :meth:`~pivotal.orchestrator.frame.MarketFrame.check_input` does, reading the invalid
        candles it counted as they arrived).

        ``ValueError`` when ``input`` is for another symbol or time (a caller bug); every
        expert problem is contained in the result instead.
        """
        sym = self._symbol(symbol)
        if input.symbol != sym or input.timestamp != timestamp:
            raise ValueError(
                f"the step is {sym} at {timestamp} but the input is {input.symbol} at "
                f"{input.timestamp}; build the input for the step it is run at"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("the coordinator is closed; build a new one")
            step = _Step(self, str(sym), sym, timestamp, input, account)
            step.observe = observe
            step.check = check
            return step.run(self._triggered(updated))

    def _symbol(self, symbol: str) -> Symbol:
        parsed = self._symbols.get(symbol)
        if parsed is None:
            parsed = self._symbols[symbol] = Symbol.parse(symbol)
        return parsed

    def _triggered(self, updated: Collection[Timeframe] | None) -> frozenset[str]:
        """Names of the experts to run: those reading an updated timeframe, and everything
        they depend on."""
        if updated is None:
            return frozenset(self._slots)
        key = frozenset(str(tf) for tf in updated)
        found = self._triggers.get(key)
        if found is None:
            wanted = [n for n, s in self._slots.items() if s.timeframes & key]
            closure: set[str] = set()
            while wanted:
                name = wanted.pop()
                if name not in closure:
                    closure.add(name)
                    wanted.extend(self._slots[name].depends_on)
            found = self._triggers[key] = frozenset(closure)
        return found

    # -- failures --------------------------------------------------------------------------
    def _fail(
        self,
        slot: _Slot,
        kind: EventKind,
        message: str,
        symbol: str,
        timestamp: int,
        events: list[ExpertEvent],
    ) -> None:
        """Record one failure; isolate the expert when they reach ``max_failures`` in a row."""
        events.append(ExpertEvent(timestamp, symbol, slot.name, kind, message))
        logger.warning("%s %s at %s for %s: %s", slot.name, kind, timestamp, symbol, message)
        slot.failures += 1
        slot.last_failure = message
        if slot.failures >= self._config.max_failures:
            reason = f"isolated after {slot.failures} failures: {message}"
            self._isolate(slot, reason, symbol, timestamp, events)

    def _isolate(
        self, slot: _Slot, reason: str, symbol: str, timestamp: int, events: list[ExpertEvent]
    ) -> None:
        """Take the expert out (``reason``: why, as ``skipped`` will say it from now on); put
        its fallback in (prepared) if it has a usable one."""
        if slot.worker is not None:
            slot.worker.abandon()
            slot.worker = None
        events.append(ExpertEvent(timestamp, symbol, slot.name, "isolated", reason))
        logger.error("%s at %s for %s: %s", slot.name, timestamp, symbol, reason)
        replacement, why_not = None, "its fallback already failed"
        if slot.status == "active":
            replacement, why_not = self._fallback(slot)
        if replacement is not None:
            for sym, candles in self._prepared.items():
                error = self._prepare_one(replacement, sym, candles)
                if error is not None:
                    replacement, why_not = None, f"fallback prepare failed for {sym}: {error}"
                    break
        if replacement is None:
            slot.status = "isolated"
            slot.isolated_reason = reason
            logger.error("%s gives no vote any more (%s)", slot.name, why_not)
            return
        slot.expert = replacement
        slot.timeframes = frozenset(str(tf) for tf in replacement.timeframes)
        slot.status = "fallback"
        slot.failures = 0
        self._triggers.clear()
        message = f"replaced by its fallback {type(replacement).__name__} from the next step"
        events.append(ExpertEvent(timestamp, symbol, slot.name, "fallback", message))
        logger.warning("%s: %s", slot.name, message)

    @staticmethod
    def _fallback(slot: _Slot) -> tuple[Expert | None, str]:
        try:
            replacement = slot.expert.fallback()
        except Exception as exc:
            return None, f"fallback() raised {type(exc).__name__}: {exc}"
        if replacement is None:
            return None, "no fallback"
        if not isinstance(replacement, Expert):
            return None, f"fallback() returned {type(replacement).__name__}, not an Expert"
        if replacement.name != slot.name or tuple(replacement.depends_on) != slot.depends_on:
            return None, (
                f"fallback {replacement.name!r} (depends on {list(replacement.depends_on)}) "
                f"does not match {slot.name!r} (depends on {list(slot.depends_on)})"
            )
        return replacement, ""


class _Step:
    """The work of one :meth:`ModelInferenceCoordinator.run` call."""

    __slots__ = (
        "account",
        "check",
        "coordinator",
        "events",
        "inferences",
        "input",
        "latency",
        "observe",
        "outputs",
        "reports",
        "skipped",
        "sym",
        "symbol",
        "timestamp",
        "votes",
    )

    def __init__(
        self,
        coordinator: ModelInferenceCoordinator,
        symbol: str,
        sym: Symbol,
        timestamp: int,
        input: BaseDataInput,
        account: AccountSnapshot,
    ) -> None:
        self.coordinator = coordinator
        self.symbol = symbol
        self.sym = sym
        self.timestamp = timestamp
        self.input = input
        self.account = account
        self.outputs: dict[str, ModelOutput] = {}
        self.inferences: dict[str, Inference] = {}
        self.skipped: dict[str, str] = {}
        self.events: list[ExpertEvent] = coordinator._pending
        coordinator._pending = []
        self.latency: dict[str, float] = {}
        self.reports: dict[InputSpec, InputReport] = {}
        self.observe: Callable[[Any], Any] | None = None
        self.check: Callable[[BaseDataInput, InputSpec], InputReport] = check_input
        self.votes: dict[str, npt.NDArray[np.float64]] = {}

    def run(self, triggered: frozenset[str]) -> StepResult:
        coordinator = self.coordinator
        parallel = coordinator._config.parallel
        for level in coordinator._levels:
            ready = [r for n in level if n in triggered and (r := self._request(n)) is not None]
            if parallel and len(ready) > 1:
                started = [(slot, self._submit(slot, req), perf_counter()) for slot, req in ready]
                for slot, worker, start in started:
                    self._collect(slot, worker, start)
            else:
                for slot, request in ready:
                    worker = self._submit(slot, request)
                    self._collect(slot, worker, perf_counter())
        order = [n for level in coordinator._levels for n in level]
        outputs = {n: self.outputs[n] for n in order if n in self.outputs}
        inferences = {n: self.inferences[n] for n in outputs}
        return StepResult(
            symbol=self.symbol,
            timestamp=self.timestamp,
            outputs=MappingProxyType(outputs),
            inferences=MappingProxyType(inferences),
            skipped=MappingProxyType(self.skipped),
            events=tuple(self.events),
            latency_ms=MappingProxyType(self.latency),
            votes=MappingProxyType({n: self.votes[n] for n in outputs}),
        )

    def _skip(self, slot: _Slot, message: str, problem: tuple[str, ...]) -> None:
        self.skipped[slot.name] = message
        self.events.append(ExpertEvent(self.timestamp, self.symbol, slot.name, "skipped", message))
        if problem not in slot.logged:
            slot.logged.add(problem)
            logger.info("%s skipped: %s", slot.name, message)

    def _request(self, name: str) -> tuple[_Slot, InferenceRequest] | None:
        """The request for ``name``, or None when it is skipped (recorded)."""
        slot = self.coordinator._slots[name]
        if slot.status == "isolated":
            self.skipped[name] = slot.isolated_reason
            return None
        for dep in slot.depends_on:
            if dep not in self.outputs:
                why = self.skipped.get(dep, "not run")
                message = f"upstream {dep} gave no output: {why}"
                self._skip(slot, message, ("upstream", dep, re.sub(r"\d+", "#", why)))
                return None
        spec = slot.expert.spec
        report = self.reports.get(spec)
        if report is None:
            report = self.reports[spec] = self.check(self.input, spec)
        if not report.ok:
            self._skip(slot, report.message(), _problem_kind(report))
            return None
        upstream = {dep: self.outputs[dep] for dep in slot.depends_on}
        request = InferenceRequest(
            self.symbol, self.timestamp, self.input, upstream, self.account, self.observe
        )
        return slot, request

    def _submit(self, slot: _Slot, request: InferenceRequest) -> CallWorker | InlineCall:
        worker = slot.worker
        if worker is None:
            worker = slot.worker = self.coordinator._worker(slot.name)
        worker.submit(slot.expert.infer, request)
        return worker

    def _collect(self, slot: _Slot, worker: CallWorker | InlineCall, start: float) -> None:
        """Await ``worker``'s call (the timeout counted from ``start``) and judge it."""
        coordinator = self.coordinator
        timeout_s = coordinator._timeout_s
        if not worker.wait(timeout_s - (perf_counter() - start)):
            waited = perf_counter() - start
            self.latency[slot.name] = waited * 1000.0
            worker.abandon()
            slot.worker = None
            message = f"no answer within {coordinator._config.timeout_ms:g} ms"
            self._failed(slot, "timeout", message)
            return
        self.latency[slot.name] = worker.elapsed_s * 1000.0
        error, answer = worker.error, worker.result
        worker.result = worker.error = None
        if error is not None:
            self._failed(slot, "failed", f"{type(error).__name__}: {error}")
            return
        problem, vote = judge_output(answer, slot.name, self.sym, self.timestamp)
        if problem is not None or vote is None:
            self._failed(slot, "invalid_output", str(problem))
            return
        inference = cast(Inference, answer)  # judge_output checked it
        slot.failures = 0
        self.outputs[slot.name] = inference.output
        self.inferences[slot.name] = inference
        self.votes[slot.name] = vote

    def _failed(self, slot: _Slot, kind: EventKind, message: str) -> None:
        labels = {"timeout": "timed out", "failed": "failed", "invalid_output": "invalid output"}
        self.skipped[slot.name] = f"{labels.get(kind, kind)}: {message}"
        self.coordinator._fail(slot, kind, message, self.symbol, self.timestamp, self.events)
