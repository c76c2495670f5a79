"""Model states and the PivotCNN's predicted pivots, from the inference history and the run's
learning events.

:func:`model_states` gives each model's latest output (action, confidence, named values,
the gate's weight, the checkpoint version) from the newest :class:`~pivotal.data.
inference_record.InferenceRecord` of each symbol, and its accuracy from the newest learning
event that reported one (``degradation``: rolling accuracy; ``promoted``/``rolled_back``:
holdout accuracy). Without a history, the decisions' contributions give the action, the
weight and the confidence. :func:`pivot_predictions` turns a record's ``pivot_points`` into
:class:`~pivotal.services.schemas.PivotPrediction` lines starting at the last confirmed pivot
of their level and kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pivotal.data.inference_history import InferenceHistory
from pivotal.data.inference_record import InferenceRecord
from pivotal.services.schemas import DecisionRow, ModelState, PivotMark, PivotPrediction

__all__ = [
    "latest_records",
    "model_states",
    "pivot_predictions",
    "predictions_in_window",
    "predictions_of_points",
]

_ACCURACY = re.compile(r"accuracy (\d+(?:\.\d+)?)")


def latest_records(
    history: InferenceHistory | None, symbols: Iterable[str]
) -> list[InferenceRecord]:
    """The newest inference record of each symbol (none without a history)."""
    if history is None:
        return []
    out = []
    for symbol in symbols:
        out.extend(history.query(symbol=symbol, limit=1, descending=True))
    return out


def model_states(
    records: Sequence[InferenceRecord],
    events: Sequence[Mapping[str, Any]] = (),
    decisions: Sequence[DecisionRow] = (),
) -> list[ModelState]:
    """One state per (model, symbol) (module docstring), sorted by model then symbol."""
    accuracy = _accuracies(events)
    states: dict[tuple[str, str | None], ModelState] = {}
    for record in records:
        versions = record.decision.get("versions") or {}
        weights = {
            str(c.get("model")): c.get("weight")
            for c in record.decision.get("contributions") or []
            if isinstance(c, Mapping)
        }
        for name, output in record.outputs.items():
            acc, n = accuracy.get((name, record.symbol), accuracy.get((name, None), (None, 0)))
            states[(name, record.symbol)] = ModelState.model_construct(
                name=name,
                symbol=record.symbol,
                state="ready",
                t=record.timestamp,
                action=output.get("action"),
                confidence=_num(output.get("confidence")),
                output=_named_values(output),
                accuracy=acc,
                accuracy_n=n,
                gate_weight=_num(weights.get(name)),
                version=versions.get(name) if isinstance(versions.get(name), int) else None,
                error=None,
            )
    if not records:  # the decisions' contributions
        for row in decisions:
            for name, weight in row.weights.items():
                acc, n = accuracy.get((name, row.symbol), accuracy.get((name, None), (None, 0)))
                states[(name, row.symbol)] = ModelState.model_construct(
                    name=name,
                    symbol=row.symbol,
                    state="ready",
                    t=row.t,
                    action=None,
                    confidence=None,
                    output={},
                    accuracy=acc,
                    accuracy_n=n,
                    gate_weight=weight,
                    version=None,
                    error=None,
                )
    return [states[k] for k in sorted(states, key=lambda k: (k[0], k[1] or ""))]


def pivot_predictions(
    record: InferenceRecord, pivots: Sequence[PivotMark], *, model: str = "pivot_cnn"
) -> list[PivotPrediction]:
    """The predicted next pivots of ``model`` in ``record`` as lines from the last pivot in
    ``pivots`` of the same level and kind confirmed by the decision time (none when the
    record has no such output or no such pivot is known)."""
    output = record.outputs.get(model) or {}
    points = (output.get("predictions") or {}).get("pivot_points") or []
    return predictions_of_points(
        points, _num(output.get("confidence")), record.timestamp, pivots, model=model
    )


def predictions_in_window(
    predictions: Iterable[PivotPrediction], bar_times: Sequence[int], step_ms: int
) -> list[PivotPrediction]:
    """The predictions a chart of ``bar_times`` can show: made while its bars ran (a chart of
    another span, e.g. 1s bars stored for an older month, would be stretched across months
    by a line to now) and pointing no further ahead than the chart is long."""
    if not bar_times:
        return []
    first, end = int(bar_times[0]), int(bar_times[-1]) + step_ms
    reach = end + (end - first)
    return [p for p in predictions if first <= p.made_t <= end and p.t <= reach]


def predictions_of_points(
    points: Iterable[Any],
    confidence: float | None,
    made_t: int,
    pivots: Sequence[PivotMark],
    *,
    model: str = "pivot_cnn",
) -> list[PivotPrediction]:
    """:func:`pivot_predictions` of a model output's ``pivot_points`` made at ``made_t``
    (a running node's latest output, a stored record's)."""
    out = []
    for p in points:
        if not isinstance(p, Mapping):
            continue
        level, kind = p.get("level"), p.get("kind")
        t, price = p.get("time"), _num(p.get("price"))
        if not isinstance(level, int) or not 1 <= level <= 5 or kind not in ("high", "low"):
            continue
        if not isinstance(t, int) or price is None:
            continue
        anchor = None
        for mark in pivots:
            known = mark.confirmed_t <= made_t
            if (
                mark.level == level
                and mark.kind == kind
                and known
                and (anchor is None or mark.t > anchor.t)
            ):
                anchor = mark
        if anchor is None:
            continue
        conf = _num(p.get("confidence"))
        conf = conf if conf is not None else confidence
        out.append(
            PivotPrediction.model_construct(
                model=model,
                level=level,
                kind=kind,
                from_t=anchor.t,
                from_price=anchor.price,
                t=t,
                price=price,
                confidence=min(max(conf if conf is not None else 0.0, 0.0), 1.0),
                made_t=made_t,
            )
        )
    return out


def _accuracies(
    events: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str | None], tuple[float, int]]:
    """(model, symbol) -> (accuracy, examples) from the newest event that reported one."""
    out: dict[tuple[str, str | None], tuple[float, int]] = {}
    for event in events:
        model = event.get("model")
        if not isinstance(model, str):
            continue
        value = None
        if event.get("metric") in ("rolling_accuracy", "holdout_accuracy"):
            value = _num(event.get("after"))
        if value is None:
            match = _ACCURACY.search(str(event.get("message", "")))
            value = float(match.group(1)) if match else None
        if value is None or not 0.0 <= value <= 1.0:
            continue
        held = re.search(r"on (\d+) held out", str(event.get("message", "")))
        out[(model, event.get("symbol"))] = (value, int(held.group(1)) if held else 0)
    return out


def _named_values(output: Mapping[str, Any]) -> dict[str, float | None]:
    """The output's scalar predictions: regression values, class and action probabilities."""
    preds = output.get("predictions") or {}
    values: dict[str, float | None] = {}
    for group in ("probabilities", "action_probabilities", "regression", "q_values"):
        part = preds.get(group)
        if isinstance(part, Mapping):
            for key, value in part.items():
                values[f"{group}.{key}"] = _num(value)
    return values


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None
