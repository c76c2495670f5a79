"""Turning one orchestrator step into an inference-history record, and back into a decision.

A record (:class:`~pivotal.data.inference_history.InferenceRecord`) keeps what the models
were given and what they answered:

- ``tensors``: per model, the exact arrays its network read (``Inference.tensors``): the
  encoded, scaled candle windows, the position state and the upstream CNN features. These
  *are* the complete encoded input; :func:`replay_decision` runs them through the models
  again.
- ``input``: the rest of the input package as plain data: per timeframe the window's first
  and last candle open time and its row count (the candles themselves stay in the candle
  store, where those bounds find them), the technical indicators, the confirmed pivots, the
  ``last_predictions`` each model had (name → time, action, confidence) and the order-flow
  metrics.
- ``outputs`` / ``hidden``: every model's output (predictions, confidence, metadata) and its
  hidden states as arrays; ``decision``: the gate's probabilities, contributions, reason and
  the experts that gave no vote.

The record is an :class:`~pivotal.data.inference_payload.EncodedRecord`: the step's
read-only mappings (predictions, metadata, hidden states, indicators, microstructure) go in
as they are, and its JSON header is encoded once, on the decision thread while the step's
data is fresh in the cache, by :func:`plain`'s rules (the stored values are those of the
plain copies earlier versions built first). Names that should be str (models, skipped
experts, versions, indicators) but are not are stored as ``str(name)``, plain's rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from pivotal.core.types import Action, BaseDataInput, ModelOutput, PivotPoint
from pivotal.data.inference_history import InferenceRecord
from pivotal.data.inference_payload import EncodedRecord, plain
from pivotal.orchestrator.contracts import Contribution, Decision, Expert, Inference

__all__ = [
    "decision_from_record",
    "output_to_dict",
    "plain",
    "record_of_step",
    "replay_decision",
]


def _arrays(states: Mapping[str, Any] | None) -> Mapping[str, np.ndarray]:
    """The arrays among ``states`` (hidden states): numpy arrays as they are, torch tensors
    and numbers converted; anything else left out. States that are all arrays under str
    names are returned as they are (an output's are a read-only mapping)."""
    if not states:
        return {}
    if set(map(type, states.values())) == {np.ndarray} and set(map(type, states)) == {str}:
        return states if type(states) is MappingProxyType else dict(states)
    out: dict[str, np.ndarray] = {}
    for key, value in states.items():
        if isinstance(value, np.ndarray):
            out[str(key)] = value
        elif isinstance(value, list | tuple | int | float):  # numpy floats too
            out[str(key)] = np.asarray(value, dtype=np.float64)
        elif hasattr(value, "detach"):  # a torch tensor
            out[str(key)] = value.detach().cpu().numpy()
    return out


#: an action's value → itself, and each Action → its value (a StrEnum hashes as its value)
_ACTION_VALUES: dict[Any, str] = {a.value: a.value for a in Action}


def _action(value: Any) -> str | None:
    """``Action.parse(value).value`` (None for None), a dict look-up for the usual values."""
    if value is None:
        return None
    known = _ACTION_VALUES.get(value) if isinstance(value, str) else None
    return known if known is not None else Action.parse(value).value


def output_to_dict(output: ModelOutput) -> dict[str, Any]:
    """The JSON-able part of an output (hidden states are stored as arrays apart)."""
    out = _output(output)
    out["predictions"] = plain(output.predictions)
    out["metadata"] = plain(output.metadata)
    return out


def _output(output: ModelOutput) -> dict[str, Any]:
    """:func:`output_to_dict` with ``predictions`` and ``metadata`` as they are (an
    :class:`EncodedRecord` makes them plain as it writes them)."""
    return {
        "model_type": output.model_type,
        "model_name": output.model_name,
        "timestamp": int(output.timestamp),
        "confidence": float(output.confidence),
        "action": _action(output.predictions.get("action")),
        "predictions": output.predictions,
        "metadata": output.metadata,
    }


#: the last step's pivots and their entries (the next step's are the same, as a rule: a new
#: pivot is confirmed every few bars)
_last_pivots: tuple[tuple[PivotPoint, ...], list[dict[str, Any]]] = ((), [])


def _pivot(p: PivotPoint) -> dict[str, Any]:
    """A pivot's entry in the input summary."""
    return {
        "timestamp": p.timestamp,
        "confirmed_at": p.confirmed_at,
        "price": p.price,
        "kind": str(p.kind),
        "level": p.level,
    }


def _pivots(points: tuple[PivotPoint, ...]) -> list[dict[str, Any]]:
    """The input summary's pivots; for the same pivots as the last step's, the same list
    (records are not changed once built, and PivotPoints are frozen)."""
    global _last_pivots
    last = _last_pivots
    if points == last[0]:  # element by element, identity first
        return last[1]
    entries = [_pivot(p) for p in points]
    _last_pivots = (tuple(points), entries)
    return entries


def _indicators(values: Mapping[str, float]) -> Mapping[str, float | None]:
    """The technical indicators as floats, non-finite ones as None; all-finite floats are
    returned as they are (an input's are a read-only mapping)."""
    if set(map(type, values.values())) <= {float} and math.isfinite(sum(values.values())):
        return values  # all finite (an overflow of the sum takes the loop)
    return {k: (None if not math.isfinite(v) else float(v)) for k, v in values.items()}


def _input_summary(inp: BaseDataInput) -> dict[str, Any]:
    windows = {
        str(tf): {
            "first_open": int(c.timestamp[0]) if len(c) else None,
            "last_open": int(c.timestamp[-1]) if len(c) else None,
            "rows": len(c),
        }
        for tf, c in inp.ohlcv.items()
    }
    return {
        "symbol": str(inp.symbol),
        "timestamp": int(inp.timestamp),
        "windows": windows,
        "technical_indicators": _indicators(inp.technical_indicators),
        "pivot_points": _pivots(inp.pivot_points),
        "last_predictions": {
            name: {
                "timestamp": int(out.timestamp),
                "action": _action(out.predictions.get("action")),
                "confidence": float(out.confidence),
            }
            for name, out in inp.last_predictions.items()
        },
        "market_microstructure": inp.market_microstructure,
        "cob_timestamp": None if inp.cob_data is None else int(inp.cob_data.timestamp),
    }


def _contribution(c: Contribution) -> dict[str, Any]:
    return {
        "model": c.model,
        "action": c.action.value,
        "confidence": float(c.confidence),
        "weight": float(c.weight),
        "probabilities": [float(p) for p in c.probabilities],
        "share": float(c.share),
    }


def _tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if set(map(type, tensors.values())) <= {np.ndarray}:
        return dict(tensors)
    return {k: np.asarray(v) for k, v in tensors.items()}


def record_of_step(
    decision: Decision,
    inp: BaseDataInput,
    inferences: Mapping[str, Inference],
    versions: Mapping[str, int] | None = None,
) -> InferenceRecord:
    """The history record of one step (module docstring), encoded as it is built
    (:class:`~pivotal.data.inference_payload.EncodedRecord`: the outputs' predictions and
    metadata and the input's microstructure are kept as they are and made plain as they
    are written). ``versions``: each model's weight generation at the time (the learning
    loop bumps it on every promotion), so a replay can tell whether the current weights are
    the ones that decided."""
    versions = versions or {}
    return EncodedRecord(
        symbol=decision.symbol,
        timestamp=int(decision.timestamp),
        action=decision.action.value,
        confidence=float(decision.confidence),
        decision={
            "probabilities": [float(p) for p in decision.probabilities],
            "gate": decision.gate,
            "reason": decision.reason,
            "contributions": [_contribution(c) for c in decision.contributions],
            "skipped": dict(decision.skipped),
            "versions": {k: int(v) for k, v in versions.items()},
        },
        outputs={name: _output(inf.output) for name, inf in inferences.items()},
        hidden={name: _arrays(inf.output.hidden_states) for name, inf in inferences.items()},
        tensors={name: _tensors(inf.tensors) for name, inf in inferences.items()},
        input=_input_summary(inp),
    )


def decision_from_record(record: InferenceRecord) -> Decision:
    """The :class:`Decision` a record stores."""
    d = record.decision
    return Decision(
        symbol=record.symbol,
        timestamp=int(record.timestamp),
        action=Action.parse(record.action),
        confidence=float(record.confidence),
        probabilities=tuple(float(p) for p in d["probabilities"]),  # type: ignore[arg-type]
        gate=str(d["gate"]),
        contributions=tuple(
            Contribution(
                model=c["model"],
                action=Action.parse(c["action"]),
                confidence=float(c["confidence"]),
                weight=float(c["weight"]),
                probabilities=tuple(float(p) for p in c["probabilities"]),  # type: ignore[arg-type]
                share=float(c["share"]),
            )
            for c in d["contributions"]
        ),
        reason=str(d["reason"]),
        skipped=dict(d.get("skipped", {})),
    )


def replay_decision(
    record: InferenceRecord,
    experts: Mapping[str, Expert],
    decide: Any,
    order: Sequence[str] | None = None,
) -> Decision:
    """Run a record's stored tensors through ``experts`` (``Expert.replay``) and the decision
    function ``decide(symbol, timestamp, outputs, skipped) -> Decision`` again.

    ``order``: model names in dependency order (default: the record's). Models the record
    has no tensors for are left out, as they gave no vote then. ``KeyError`` naming the model
    when the record names an expert that ``experts`` lacks.
    """
    names = [n for n in (order or list(record.tensors)) if n in record.tensors]
    outputs: dict[str, ModelOutput] = {}
    for name in names:
        if name not in experts:
            raise KeyError(
                f"the record at {record.timestamp} was decided with expert {name!r}, which is not "
                f"loaded (loaded: {sorted(experts)})"
            )
        outputs[name] = experts[name].replay(record.symbol, record.timestamp, record.tensors[name])
    skipped = dict(record.decision.get("skipped", {}))
    return decide(record.symbol, record.timestamp, outputs, skipped)
