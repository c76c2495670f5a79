"""One inference-history record: an orchestrator decision with everything behind it, checked
when built.

Stored by :class:`pivotal.data.inference_history.InferenceHistory`, encoded by
:mod:`pivotal.data.inference_payload`. JSON parts (``decision``, ``outputs``, ``input``) may
hold mappings, lists, tuples, str, int, float, bool, None, numpy scalars and numeric numpy
arrays; they come back as JSON does (tuples and arrays as lists, non-str mapping keys as
strings, **non-finite floats as ``None``**). Arrays (``hidden``, ``tensors``) must be numpy
arrays of a numeric, bool, datetime or fixed-width string dtype: nothing is ever pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from pivotal.core.types import Action

__all__ = ["ArrayParts", "InferenceRecord", "check_record"]

_TS_LIMIT = 2**62
_ARRAY_KINDS = frozenset("biufcmMSU")  # bool, ints, floats, complex, datetimes, fixed strings

#: model name → array name → array (a record's ``hidden`` and ``tensors``).
ArrayParts = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True, slots=True, eq=False)
class InferenceRecord:
    """One orchestrator decision and everything behind it.

    ``symbol``: the traded symbol as the orchestrator names it (queries match it exactly).
    ``timestamp``: close time of the decision step's base bar, UTC ms (an int).
    ``action``: the decided action (BUY/SELL/HOLD/CLOSE; stored upper case).
    ``confidence``: the decision's confidence (finite). ``decision``: the gate's details
    (probabilities, gate, reason, contributions, skipped, ...). ``outputs``: per model, its
    output as plain data (model_type, confidence, action, predictions, metadata).
    ``hidden``: per model, its hidden states as arrays. ``tensors``: per model, the exact
    arrays its network read. ``input``: the input package summary (window bounds per
    timeframe, indicators, pivots, last predictions, microstructure). JSON parts follow the
    module's rules (NaN → ``None``); arrays must be numpy arrays of a numeric, bool,
    datetime or fixed-width string dtype. Built records are checked; their mappings are not
    copied, so do not mutate them afterwards.
    """

    symbol: str
    timestamp: int
    action: str
    confidence: float
    decision: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hidden: ArrayParts = field(default_factory=dict)
    tensors: ArrayParts = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(
                f"inference record: symbol must be a non-empty str, got {self.symbol!r}"
            )
        where = f"inference record {self.symbol}"
        ts = self.timestamp
        if isinstance(ts, bool | np.bool_) or not isinstance(ts, int | np.integer):
            raise ValueError(
                f"{where}: timestamp must be an int of UTC milliseconds, got "
                f"{type(ts).__name__} {ts!r}"
            )
        if not -_TS_LIMIT < int(ts) < _TS_LIMIT:
            raise ValueError(f"{where}: timestamp {ts} is out of range (UTC milliseconds)")
        object.__setattr__(self, "timestamp", int(ts))
        where = f"inference record {self.symbol} @ {self.timestamp}"
        try:
            object.__setattr__(self, "action", Action.parse(self.action).value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        conf = self.confidence
        if isinstance(conf, bool | np.bool_) or not isinstance(
            conf, int | float | np.integer | np.floating
        ):
            raise ValueError(
                f"{where}: confidence must be a number, got {type(conf).__name__} {conf!r}"
            )
        if not math.isfinite(float(conf)):
            raise ValueError(f"{where}: confidence must be finite, got {conf!r}")
        object.__setattr__(self, "confidence", float(conf))
        check_record(self, f"{where}: ")

    @property
    def models(self) -> tuple[str, ...]:
        """Models the record holds anything of: ``outputs`` keys, then new ``tensors`` and
        ``hidden`` keys, in order of first appearance."""
        return tuple(dict.fromkeys([*self.outputs, *self.tensors, *self.hidden]))


def check_record(record: InferenceRecord, where: str = "") -> None:
    """Check the parts of ``record`` (built records are checked, but their mappings are not
    copied and may have changed since); ``ValueError`` naming the offending field, prefixed
    by ``where``."""
    for name in ("decision", "input"):
        if not _is_mapping(getattr(record, name)):
            raise ValueError(
                f"{where}{name} must be a mapping, got {type(getattr(record, name)).__name__}"
            )
    if not _is_mapping(record.outputs):
        raise ValueError(f"{where}outputs must map model name → output mapping")
    for model, output in record.outputs.items():
        if type(model) is not str or not model:
            _check_name(model, f"{where}outputs")
        if not _is_mapping(output):
            raise ValueError(
                f"{where}outputs[{model!r}] must be a mapping (model_type, confidence, "
                f"action, predictions, metadata), got {type(output).__name__}"
            )
    for part in ("hidden", "tensors"):
        models = getattr(record, part)
        if not _is_mapping(models):
            raise ValueError(f"{where}{part} must map model name → {{name: numpy array}}")
        for model, arrays in models.items():
            if type(model) is not str or not model:
                _check_name(model, f"{where}{part}")
            if not _is_mapping(arrays):
                raise ValueError(
                    f"{where}{part}[{model!r}] must map array name → numpy array, got "
                    f"{type(arrays).__name__}"
                )
            for name, array in arrays.items():
                # the common case at C speed: a str name and a plain array of a dtype seen
                if (
                    type(name) is not str
                    or not name
                    or type(array) is not np.ndarray
                    or array.dtype not in _STORABLE
                ):
                    _check_array(array, name, f"{where}{part}[{model!r}]")


def _is_mapping(value: object) -> bool:
    return type(value) is dict or type(value) is MappingProxyType or isinstance(value, Mapping)


def _check_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: keys must be non-empty str names, got {name!r}")


#: dtypes that passed :func:`_check_array` (at most ``_STORABLE_KEPT``)
_STORABLE: set[np.dtype] = set()
_STORABLE_KEPT = 256


def _check_array(array: object, name: object, where: str) -> None:
    _check_name(name, where)
    if not isinstance(array, np.ndarray):
        raise ValueError(
            f"{where}[{name!r}] is a {type(array).__name__}, not a numpy array; convert it "
            "(np.asarray; a torch tensor: .detach().cpu().numpy())"
        )
    dtype = array.dtype
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise ValueError(
            f"{where}[{name!r}] has dtype {dtype}, which cannot be stored without pickling; "
            "use a numeric, bool, datetime or fixed-width string dtype"
        )
    if len(_STORABLE) < _STORABLE_KEPT:
        _STORABLE.add(dtype)
