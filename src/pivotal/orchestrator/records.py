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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pivotal.core.types import Action, BaseDataInput, ModelOutput
from pivotal.data.inference_history import InferenceRecord
from pivotal.orchestrator.contracts import Contribution, Decision, Expert, Inference

__all__ = [
    "decision_from_record",
    "output_to_dict",
    "plain",
    "record_of_step",
    "replay_decision",
]


_SCALARS = frozenset({float, int, bool, str, type(None)})


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: mappings → dicts with str keys, sequences and arrays →
    lists, numpy scalars → Python numbers, enums → their value; non-finite floats stay floats
    (the history encodes them)."""
    kind = type(value)
    if kind is float or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        if all(type(v) in _SCALARS for v in value):  # floats, names: nothing to convert
            return list(value)
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arrays(states: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in (states or {}).items():
        if isinstance(value, np.ndarray):
            out[str(key)] = value
        elif hasattr(value, "detach"):  # a torch tensor
            out[str(key)] = value.detach().cpu().numpy()
        elif isinstance(value, list | tuple | int | float):
            out[str(key)] = np.asarray(value, dtype=np.float64)
    return out


def output_to_dict(output: ModelOutput) -> dict[str, Any]:
    """The JSON-able part of an output (hidden states are stored as arrays apart)."""
    return {
        "model_type": output.model_type,
        "model_name": output.model_name,
        "timestamp": int(output.timestamp),
        "confidence": float(output.confidence),
        "action": None if output.action is None else output.action.value,
        "predictions": plain(output.predictions),
        "metadata": plain(output.metadata),
    }


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
        "technical_indicators": {
            k: (None if not math.isfinite(v) else float(v))
            for k, v in inp.technical_indicators.items()
        },
        "pivot_points": [
            {
                "timestamp": p.timestamp,
                "confirmed_at": p.confirmed_at,
                "price": p.price,
                "kind": str(p.kind),
                "level": p.level,
            }
            for p in inp.pivot_points
        ],
        "last_predictions": {
            name: {
                "timestamp": int(out.timestamp),
                "action": None if out.action is None else out.action.value,
                "confidence": float(out.confidence),
            }
            for name, out in inp.last_predictions.items()
        },
        "market_microstructure": plain(inp.market_microstructure),
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


def record_of_step(
    decision: Decision,
    inp: BaseDataInput,
    inferences: Mapping[str, Inference],
    versions: Mapping[str, int] | None = None,
) -> InferenceRecord:
    """The history record of one step (module docstring). ``versions``: each model's weight
    generation at the time (the learning loop bumps it on every promotion), so a replay can
    tell whether the current weights are the ones that decided."""
    versions = versions or {}
    return InferenceRecord(
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
        outputs={name: output_to_dict(inf.output) for name, inf in inferences.items()},
        hidden={name: _arrays(inf.output.hidden_states) for name, inf in inferences.items()},
        tensors={
            name: {k: np.asarray(v) for k, v in inf.tensors.items()}
            for name, inf in inferences.items()
        },
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
