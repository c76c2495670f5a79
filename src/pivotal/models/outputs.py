"""A network's output tensors as seed 003's :class:`~pivotal.core.types.ModelOutput`, per sample.

:func:`to_model_outputs` reads the dict a registered network returns and builds one
``ModelOutput`` per row of the batch:

``predictions`` (plain Python floats, strings, lists and dicts):

- ``"regression"``: ``{target: value}`` when the model has regression targets: in the
  targets' own units (log returns, bars, ...) when ``target_scaling`` (the training's
  ``(mean, std)`` per target) is given, the network's standardised values otherwise (then
  the raw values are all there is). With ``target_scaling`` the raw row is kept as
  ``hidden_states["regression_scaled"]`` (float32), so the history holds the network's exact
  output beside the readable one;
- ``"probabilities"``: ``{class: probability}`` (softmax of ``"logits"``) and
  ``"predicted_class"`` (the most probable class), when it has classes. When every class is
  an action name (BUY, SELL, HOLD, CLOSE) and the model has no action head, ``"action"`` and
  ``"action_confidence"`` come from them (seed 003's standard fields);
- ``"action"``, ``"action_confidence"`` and ``"action_probabilities"`` ``{BUY, SELL, HOLD}``
  from an ``"action_logits"`` head (PivotCNN);
- ``"pivot_points"``: from ``"pivot_price"``/``"pivot_time"``/``"pivot_confidence"``, one
  dict per level ``{"level": 1.., "relative_price": price / close − 1, "log_bars": log of
  bars until the pivot, "bars": exp(log_bars), "confidence": (0, 1)}``. (``pivotal train``
  fits the regression targets, not these heads: :func:`pivot_targets` turns the
  ``pivot{L}_{kind}_rel/bars`` targets into prices and bars);
- ``"prices"``: the next closes relative to the newest (list, nearest first);
  ``"extrema"``: ``{"local_max": p, "local_min": p}`` (sigmoid of the extrema logits);
  ``"volume"``: the predicted ``log1p`` next-bar volume.

``confidence``: the largest class probability when the model has classes; else the largest
action probability when it has an action head; else :data:`NEUTRAL_CONFIDENCE` (0.5:
regression heads carry no calibrated uncertainty, so the output states none either way).

``hidden_states``: ``{"hidden": float32 array (hidden_size,)}`` plus every other output
tensor that is not a prediction (PivotCNN's ``"conv_features"`` and ``"recurrent_state"``),
as float32 numpy arrays of that sample.

``metadata``: ``{"model_type": ..., "registry_name": ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, ModelOutput
from pivotal.models.base import PivotalModel
from pivotal.models.networks.pivot_cnn import ACTIONS as ACTION_ORDER

__all__ = ["NEUTRAL_CONFIDENCE", "PREDICTION_KEYS", "pivot_targets", "to_model_outputs"]

NEUTRAL_CONFIDENCE = 0.5
"""``ModelOutput.confidence`` of models without a classifier or an action head."""

PREDICTION_KEYS: frozenset[str] = frozenset(
    {
        "regression",
        "logits",
        "action_logits",
        "pivot_price",
        "pivot_time",
        "pivot_confidence",
        "prices",
        "extrema",
        "volume",
    }
)
"""Output keys that become ``predictions``; other keys (but ``"hidden"``) are hidden states."""

_PIVOT_KEYS = ("pivot_price", "pivot_time", "pivot_confidence")
_KINDS = ("high", "low")


def _per_sample(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, str | Symbol | int | np.integer):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries for a batch of {n}; give one per sample")
    return items


def _symbol(value: Symbol | str) -> Symbol:
    if isinstance(value, Symbol):
        return value
    if isinstance(value, str):
        return Symbol.parse(value)
    raise TypeError(f"symbols must be Symbol or 'BASE/QUOTE' strings, got {value!r}")


def _arrays(outputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    if "hidden" not in outputs:
        raise ValueError(f"outputs lack 'hidden'; got keys {sorted(outputs)}")
    hidden = outputs["hidden"]
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise ValueError("outputs['hidden'] must be a (batch, hidden_size) tensor")
    n = hidden.shape[0]
    arrays: dict[str, np.ndarray] = {}
    for key, tensor in outputs.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() < 1 or tensor.shape[0] != n:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise ValueError(f"outputs[{key!r}] must be a tensor of batch {n}, got {got}")
        array = tensor.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(array).all():
            raise ValueError(f"outputs[{key!r}] contains NaN or infinity")
        arrays[key] = array.reshape(n, -1)
    return arrays


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check_width(arrays: Mapping[str, np.ndarray], key: str, names: Sequence[str]) -> None:
    if key in arrays and arrays[key].shape[1] != len(names):
        raise ValueError(
            f"outputs[{key!r}] has {arrays[key].shape[1]} columns but the model declares "
            f"{len(names)} ({list(names)}); pass the model that produced these outputs"
        )


def _unscaler(
    scaling: tuple[npt.ArrayLike, npt.ArrayLike] | None, width: int
) -> Callable[[np.ndarray], np.ndarray] | None:
    if scaling is None or not width:
        return None
    mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in scaling)
    if mean.shape != (width,) or std.shape != (width,):
        raise ValueError(
            f"target_scaling has {mean.size} means and {std.size} stds for {width} regression "
            "targets; pass the scaling the model was trained with"
        )
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError("target_scaling contains NaN or infinity")
    return lambda raw: raw * std + mean


def pivot_targets(
    regression: Mapping[str, float],
    *,
    close: float | None,
    timestamp: int,
    bar_ms: int,
) -> list[dict[str, Any]]:
    """The ``pivot{L}_{kind}_rel`` / ``pivot{L}_{kind}_bars`` targets of ``regression`` (in
    their own units: ``log(pivot price / close)`` and bars of the sample's timeframe) as one
    dict per level and kind, nearest level first, highs before lows::

        {"level": L, "kind": "high" | "low", "price": close * exp(rel) (None without close),
         "relative_price": exp(rel) - 1, "bars": bars,
         "time": timestamp + bars * bar_ms (UTC ms; the pivot bar's expected close)}

    A kind with only one of its two targets is left out.
    """
    found: dict[tuple[int, str], dict[str, float]] = {}
    for name, value in regression.items():
        parts = name.split("_")
        if len(parts) != 3 or not parts[0].startswith("pivot") or parts[1] not in _KINDS:
            continue
        level = parts[0].removeprefix("pivot")
        if not level.isdigit() or parts[2] not in ("rel", "bars"):
            continue
        found.setdefault((int(level), parts[1]), {})[parts[2]] = float(value)
    out = []
    for (level, kind), values in sorted(
        found.items(), key=lambda kv: (kv[0][0], _KINDS.index(kv[0][1]))
    ):
        if "rel" not in values or "bars" not in values:
            continue
        rel, bars = values["rel"], values["bars"]
        out.append(
            {
                "level": level,
                "kind": kind,
                "price": None if close is None else float(close) * math.exp(rel),
                "relative_price": math.expm1(rel),
                "bars": bars,
                "time": int(timestamp) + round(bars * bar_ms),
            }
        )
    return out


def _is_action_set(classes: Sequence[str]) -> bool:
    allowed = {a.value for a in Action}
    return bool(classes) and all(c.upper() in allowed for c in classes)


def to_model_outputs(
    model: PivotalModel,
    outputs: Mapping[str, torch.Tensor],
    *,
    model_name: str,
    symbols: Symbol | str | Sequence[Symbol | str],
    timestamps: int | Sequence[int] | np.ndarray,
    target_scaling: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> list[ModelOutput]:
    """One :class:`ModelOutput` per sample of ``outputs = model(x, context)``.

    ``symbols`` and ``timestamps`` (UTC ms, the sample time ``t``) are one per sample, or one
    value for the whole batch. ``target_scaling``: ``(mean, std)`` of the regression targets
    as the training standardised them (``value = raw * std + mean``). Raises ``ValueError``
    when the outputs do not fit the model (missing ``"hidden"``, widths other than its
    targets', mixed batch sizes, NaN) or the symbols/timestamps or scaling do not fit.
    """
    arrays = _arrays(outputs)
    n = arrays["hidden"].shape[0]
    regression, classes = model.targets.regression, model.targets.classes
    unscale = _unscaler(target_scaling, len(regression))
    for key, names in (("regression", regression), ("logits", classes)):
        _check_width(arrays, key, names)
        if names and key not in arrays:
            raise ValueError(f"the model has {key} targets {list(names)}, but outputs lack {key!r}")
    _check_width(arrays, "action_logits", ACTION_ORDER)
    syms = [_symbol(s) for s in _per_sample(symbols, n, "symbols")]
    times = [int(t) for t in _per_sample(timestamps, n, "timestamps")]

    class_probs = _softmax(arrays["logits"]) if classes else None
    action_probs = _softmax(arrays["action_logits"]) if "action_logits" in arrays else None
    has_pivots = all(k in arrays for k in _PIVOT_KEYS)
    hidden_keys = [k for k in arrays if k not in PREDICTION_KEYS]
    metadata = {
        "model_type": model.model_type,
        "registry_name": getattr(model, "registry_name", type(model).__name__),
    }

    results = []
    for i in range(n):
        predictions: dict[str, Any] = {}
        confidence = NEUTRAL_CONFIDENCE
        if regression:
            row = arrays["regression"][i]
            real = row if unscale is None else unscale(row)
            predictions["regression"] = dict(zip(regression, map(float, real), strict=True))
        if class_probs is not None:
            probs = class_probs[i]
            best = int(probs.argmax())
            predictions["probabilities"] = dict(zip(classes, map(float, probs), strict=True))
            predictions["predicted_class"] = classes[best]
            confidence = float(probs[best])
            if action_probs is None and _is_action_set(classes):
                predictions["action"] = classes[best].upper()
                predictions["action_confidence"] = confidence
        if action_probs is not None:
            probs = action_probs[i]
            best = int(probs.argmax())
            predictions["action"] = ACTION_ORDER[best]
            predictions["action_confidence"] = float(probs[best])
            predictions["action_probabilities"] = dict(
                zip(ACTION_ORDER, map(float, probs), strict=True)
            )
            if class_probs is None:
                confidence = float(probs[best])
        if has_pivots:
            price, log_bars, conf = (arrays[k][i] for k in _PIVOT_KEYS)
            predictions["pivot_points"] = [
                {
                    "level": level + 1,
                    "relative_price": float(price[level]),
                    "log_bars": float(log_bars[level]),
                    "bars": math.exp(float(log_bars[level])),
                    "confidence": float(conf[level]),
                }
                for level in range(len(price))
            ]
        if "prices" in arrays:
            predictions["prices"] = [float(v) for v in arrays["prices"][i]]
        if "extrema" in arrays:
            p_max, p_min = (1.0 / (1.0 + np.exp(-arrays["extrema"][i][:2]))).tolist()
            predictions["extrema"] = {"local_max": p_max, "local_min": p_min}
        if "volume" in arrays:
            predictions["volume"] = float(arrays["volume"][i][0])
        hidden_states = {k: arrays[k][i].astype(np.float32) for k in hidden_keys}
        if regression and unscale is not None:
            hidden_states["regression_scaled"] = arrays["regression"][i].astype(np.float32)
        results.append(
            ModelOutput(
                model_type=model.model_type,
                model_name=model_name,
                symbol=syms[i],
                timestamp=times[i],
                confidence=min(1.0, max(0.0, confidence)),
                predictions=predictions,
                hidden_states=hidden_states,
                metadata=metadata,
            )
        )
    return results
