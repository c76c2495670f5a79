"""A running node's state for readers on other threads: one immutable object, replaced whole.

:func:`take_snapshot` runs on the node's own thread (``TradingNode._tick``, at most every
:data:`SNAPSHOT_EVERY_S`, and right after each command): it reads the loop's mutable objects
(the orchestrator's output store and decision log, the learning loop's accuracy, the risk
manager, the broker's account and open orders, the collector's health) and copies what the
API shows into a :class:`NodeSnapshot` of frozen dataclasses, tuples and fresh dicts that
nobody mutates after. The node publishes it with one attribute assignment; a reader (the live
view, on the API server's thread) takes the reference once and reads only it, never the
loop's objects.

Times are UTC ms on the node's clock (the venue's, or a local exchange's market time).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pivotal.core.orders import AccountSnapshot, Order
from pivotal.node.commands import ControlState

__all__ = [
    "SNAPSHOT_EVERY_S",
    "ModelSnap",
    "NodeSnapshot",
    "ProcessSnap",
    "RiskSnap",
    "take_snapshot",
]

SNAPSHOT_EVERY_S = 0.5
_RECENT_DECISIONS = 200  # how far back the decision log is searched for each symbol's latest


@dataclass(frozen=True, slots=True)
class ModelSnap:
    """One model's (or the orchestrator's own) latest state for one symbol."""

    name: str
    symbol: str | None
    state: str  # ready | warming | disabled | error | unknown
    t: int | None = None
    action: str | None = None
    confidence: float | None = None
    output: Mapping[str, float | None] = field(default_factory=dict)
    accuracy: float | None = None
    accuracy_n: int = 0
    gate_weight: float | None = None
    version: int | None = None
    error: str | None = None
    #: The predicted next pivots of a pivot model's latest output (``level``, ``kind``,
    #: ``time``, ``price``, ``confidence``), as its ``predictions["pivot_points"]`` holds them.
    pivot_points: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessSnap:
    enabled: bool
    state: str  # running | paused | stopped | finished | error
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RiskSnap:
    metrics: Mapping[str, float | None]
    limits: Mapping[str, float | None]
    entries_stopped: bool
    breaker: str | None


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """The node as it was at ``t_ms`` (module docstring). ``status``: ``starting``,
    ``running``, ``stopping`` or ``stopped``. ``account`` is None before the broker started."""

    t_ms: int
    wall_s: float
    status: str
    mode: str
    venue: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    started_ms: int | None
    controls: ControlState
    models: tuple[ModelSnap, ...] = ()
    risk: RiskSnap | None = None
    streams: tuple[Mapping[str, Any], ...] = ()
    processes: Mapping[str, ProcessSnap] = field(default_factory=dict)
    account: AccountSnapshot | None = None
    open_orders: tuple[Order, ...] = ()
    steps: int = 0


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _flat_output(predictions: Mapping[str, Any]) -> dict[str, float | None]:
    """A model output's named numbers: scalars as they are, one level of nested mappings
    as ``outer.inner`` (``action_probabilities.BUY``)."""
    out: dict[str, float | None] = {}
    for key, value in predictions.items():
        if isinstance(value, Mapping):
            for inner, v in value.items():
                number = _num(v)
                if number is not None or v is None:
                    out[f"{key}.{inner}"] = number
        else:
            number = _num(value)
            if number is not None:
                out[str(key)] = number
    return out


def _latest_decisions(source: Any, symbols: tuple[str, ...]) -> dict[str, Any]:
    log = getattr(source, "log", None)
    decisions = getattr(log, "decisions", None)
    found: dict[str, Any] = {}
    if not decisions:
        return found
    for i, decision in enumerate(reversed(decisions)):
        if i >= _RECENT_DECISIONS * max(1, len(symbols)) or len(found) == len(symbols):
            break
        found.setdefault(decision.symbol, decision)
    return found


def _models(source: Any, symbols: tuple[str, ...]) -> tuple[ModelSnap, ...]:
    outputs = getattr(source, "outputs", None)
    order = getattr(source, "order", None)
    if outputs is None or order is None:
        return ()
    learning = getattr(source, "learning", None)
    accuracy = None if learning is None else learning.accuracy
    versions = source.versions() if hasattr(source, "versions") else {}
    inferring = bool(getattr(source, "inference_enabled", True))
    latest = _latest_decisions(source, symbols)
    snaps: list[ModelSnap] = []
    for symbol in symbols:
        newest = outputs.latest(symbol)
        decision = latest.get(symbol)
        weights = {} if decision is None else {c.model: c.weight for c in decision.contributions}
        skipped = {} if decision is None else dict(decision.skipped)
        for name in order:
            output = newest.get(name)
            error = skipped.get(name)
            if not inferring:
                state = "disabled"
            elif error is not None and any(
                w in error for w in ("failed", "isolated", "timed out", "timeout", "invalid")
            ):
                state = "error"
            elif output is None:
                state = "warming"
            else:
                state = "ready"
            action = None if output is None else output.action
            snaps.append(
                ModelSnap(
                    name=name,
                    symbol=symbol,
                    state=state,
                    t=None if output is None else int(output.timestamp),
                    action=None if action is None else action.value,
                    confidence=None if output is None else _num(output.confidence),
                    output={} if output is None else _flat_output(output.predictions),
                    accuracy=None if accuracy is None else accuracy.current(name, symbol),
                    accuracy_n=0 if accuracy is None else int(accuracy.samples(name, symbol)),
                    gate_weight=weights.get(name),
                    version=versions.get(name),
                    error=error,
                    pivot_points=_pivot_points(output),
                )
            )
        name = str(getattr(source, "name", "orchestrator"))
        snaps.append(
            ModelSnap(
                name=name,
                symbol=symbol,
                state="ready" if decision is not None else "warming",
                t=None if decision is None else int(decision.timestamp),
                action=None if decision is None else decision.action.value,
                confidence=None if decision is None else _num(decision.confidence),
                output={}
                if decision is None
                else dict(zip(("p_buy", "p_sell", "p_hold"), decision.probabilities, strict=True)),
                accuracy=None if accuracy is None else accuracy.current(name, symbol),
                accuracy_n=0 if accuracy is None else int(accuracy.samples(name, symbol)),
                error=None,
            )
        )
    return tuple(snaps)


def _pivot_points(output: Any) -> tuple[Mapping[str, Any], ...]:
    points = None if output is None else output.predictions.get("pivot_points")
    if not isinstance(points, list | tuple):
        return ()
    return tuple(dict(p) for p in points if isinstance(p, Mapping))


def _risk(node: Any, account: AccountSnapshot | None) -> RiskSnap:
    risk = node.risk
    metrics: dict[str, float | None] = {}
    if account is not None:
        values = dataclasses.asdict(risk.metrics(account))
        metrics = {
            k: _num(v) for k, v in values.items() if k != "timestamp" and not isinstance(v, str)
        }
    limits = {
        k: _num(v)
        for k, v in risk.config.model_dump().items()
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
    }
    state = risk.state()
    halt = state.breaker or state.daily_halt
    breaker = None if halt is None else str(halt.reason)
    return RiskSnap(metrics, limits, bool(risk.halted), breaker)


def _processes(node: Any, controls: ControlState, status: str) -> dict[str, ProcessSnap]:
    market = node.market
    error = market.error
    stream_state = market.state if status in ("running", "starting") else "stopped"
    out = {
        "streams": ProcessSnap(
            controls.processes["streams"],
            stream_state,
            "" if error is None else f"{type(error).__name__}: {error}",
        )
    }
    source = node.orchestrator_obj
    for name in ("inference", "learning", "trading"):
        enabled = controls.processes[name]
        if status not in ("running", "starting"):
            state = "stopped"
        else:
            state = "running" if enabled else "paused"
        detail = ""
        if name == "learning" and getattr(source, "learning", None) is None:
            state, detail = "stopped", "no learning loop (learning.enabled is false)"
        if (
            name in ("inference", "learning")
            and source is not None
            and not hasattr(source, f"{name}_enabled")
        ):
            detail = "the decision source has no models (a scripted source)"
        out[name] = ProcessSnap(enabled, state, detail)
    return out


def take_snapshot(node: Any, controls: ControlState, status: str, steps: int = 0) -> NodeSnapshot:
    """The node's state now (module docstring); call on the node's thread only."""
    run = node.run_config
    symbols = tuple(str(s) for s in run.symbols)
    source = node.orchestrator_obj
    timeframes = tuple(tf.value for tf in getattr(source, "timeframes", (run.base,)))
    account: AccountSnapshot | None = None
    open_orders: tuple[Order, ...] = ()
    if node.broker_started:
        try:
            account = node.broker.account()
            open_orders = tuple(node.broker.open_orders(None))
        except Exception:  # a broker not started yet (or closed): nothing to show
            account = None
    try:
        streams = tuple(dict(row) for row in node.market.health().get("streams", ()))
    except Exception:  # the collector is between runs
        streams = ()
    try:
        models = _models(source, symbols) if source is not None else ()
    except Exception:  # a model state that cannot be read must not stop the node
        models = ()
    return NodeSnapshot(
        t_ms=int(node.clock.now_ms()),
        wall_s=time.time(),
        status=status,
        mode=node.mode,
        venue=node.settings.venue,
        symbols=symbols,
        timeframes=timeframes,
        started_ms=node.started_ms,
        controls=controls,
        models=models,
        risk=_risk(node, account),
        streams=streams,
        processes=_processes(node, controls, status),
        account=account,
        open_orders=open_orders,
        steps=steps,
    )
