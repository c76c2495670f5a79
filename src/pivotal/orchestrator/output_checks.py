"""Whether an expert's answer is usable: the coordinator's output check.

An answer is refused when it is not an :class:`~pivotal.orchestrator.contracts.Inference`,
names another model, step or symbol, has a non-finite confidence, a non-finite float
anywhere in ``predictions`` or ``hidden_states`` (dicts, lists, tuples, arrays), or no
readable vote (:func:`~pivotal.orchestrator.contracts.action_probabilities`). The common case
(everything finite) is checked without building the path strings that say where a bad value
hides; those are built only for the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.symbols import Symbol
from pivotal.core.types import ModelOutput
from pivotal.orchestrator.contracts import Inference, action_probabilities

__all__ = ["judge_output", "validate_output"]


_PLAIN = frozenset({str, bool, int, type(None)})  # nothing non-finite hides in these
_MAPPINGS = frozenset({dict, MappingProxyType})
_SEQUENCES = frozenset({list, tuple})
_concatenate = np.concatenate


def _finite(value: Any) -> bool:
    """True when no non-finite float hides in ``value`` (the fast check; :func:`_nonfinite`
    then says where one is, and is the exact check). The plain floats of all the dicts,
    lists and tuples nested in ``value`` are summed in one pass (a NaN or an infinity makes
    the sum non-finite; a sum that is not finite, an overflow included, is settled by the
    exact check), the one-dimensional float arrays joined into one for a single
    ``np.isfinite``, anything else in turn."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind in _MAPPINGS or isinstance(value, Mapping):
        items: Any = value.values()
    elif kind in _SEQUENCES or isinstance(value, list | tuple):
        items = value
    elif isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.isfinite(value).all())
    elif isinstance(value, float):  # a float subclass (np.float64)
        return math.isfinite(value)
    else:
        return _nonfinite(value, "") is None
    total = 0.0
    vectors: list[npt.NDArray[np.floating[Any]]] = []  # 1-D float arrays, checked at once
    pending = [items]  # containers whose items are still to be read
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is float:
                total += item
            elif kind in _PLAIN:
                continue
            elif kind in _MAPPINGS:
                pending.append(item.values())
            elif kind in _SEQUENCES:
                pending.append(item)
            elif kind is np.ndarray and item.dtype.kind == "f" and item.ndim == 1:
                vectors.append(item)
            elif not _finite(item):
                return False
    if vectors and not np.isfinite(_concatenate(vectors) if len(vectors) > 1 else vectors[0]).all():
        return False  # joined in one float dtype: every value keeps its finiteness
    return math.isfinite(total) or _nonfinite(value, "") is None


def _nonfinite(value: Any, where: str) -> str | None:
    """Where a non-finite float hides in ``value`` (dicts, lists, tuples, arrays), or None."""
    if isinstance(value, float | np.floating):
        return None if math.isfinite(value) else where
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return None if np.isfinite(value).all() else where
        if value.dtype.kind == "O":
            return next(
                (w for i, v in enumerate(value.flat) if (w := _nonfinite(v, f"{where}[{i}]"))),
                None,
            )
        return None
    if isinstance(value, Mapping):
        return next((w for k, v in value.items() if (w := _nonfinite(v, f"{where}[{k!r}]"))), None)
    if isinstance(value, list | tuple):
        return next((w for i, v in enumerate(value) if (w := _nonfinite(v, f"{where}[{i}]"))), None)
    if hasattr(value, "__array__") and not isinstance(value, str | bytes):  # torch, jax, ...
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, RuntimeError):
            return None
        return _nonfinite(array, where) if isinstance(array, np.ndarray) else None
    return None


def validate_output(answer: object, name: str, symbol: Symbol, timestamp: int) -> str | None:
    """Why ``answer`` is not a usable answer of expert ``name`` at this step, or None."""
    return judge_output(answer, name, symbol, timestamp)[0]


def judge_output(
    answer: object, name: str, symbol: Symbol, timestamp: int
) -> tuple[str | None, npt.NDArray[np.float64] | None]:
    """``(problem, None)`` as :func:`validate_output` words it, or ``(None, vote)`` for a
    usable answer: the vote is :func:`~pivotal.orchestrator.contracts.action_probabilities`
    of its output, which the check computes anyway (a read-only array, so a caller that
    keeps it for the gate reads what was checked)."""
    if not isinstance(answer, Inference):
        return f"returned {type(answer).__name__}, not an Inference", None
    output = answer.output
    if not isinstance(output, ModelOutput):
        return f"Inference.output is {type(output).__name__}, not a ModelOutput", None
    if output.model_name != name:
        return f"output names model {output.model_name!r}, expected {name!r}", None
    if output.timestamp != timestamp:
        return f"output is stamped {output.timestamp}, the step is at {timestamp}", None
    if output.symbol != symbol:
        return f"output is for {output.symbol}, the step is for {symbol}", None
    if not math.isfinite(output.confidence):
        return f"confidence is {output.confidence}", None
    if not (_finite(output.predictions) and _finite(output.hidden_states)):
        where = _nonfinite(output.predictions, "predictions") or _nonfinite(
            output.hidden_states, "hidden_states"
        )
        return f"non-finite value in {where}", None
    try:
        vote = action_probabilities(output)
    except (ValueError, TypeError) as exc:
        return f"no usable vote: {exc}", None
    vote.flags.writeable = False
    return None, vote
