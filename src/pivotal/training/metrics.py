"""Evaluation metrics for regression and classification targets, in numpy.

**Unknown targets are ignored, everywhere the same way**: a regression truth that is NaN, or
a class label that is ``-1`` (:data:`pivotal.training.labels.UNKNOWN_CLASS`) or NaN, drops
its row from every metric, together with the prediction for that row. Predictions must be
finite on the rows that count (a model has to predict every sample); otherwise
``ValueError``. A metric of zero counted rows raises ``ValueError`` too.

Every function returns a plain ``float``; :func:`evaluate_regression` and
:func:`evaluate_classification` bundle them into ``dict[str, float]``, whose keys are
listed in :data:`HIGHER_IS_BETTER` (with the direction in which each metric improves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLASSIFICATION_METRICS",
    "HIGHER_IS_BETTER",
    "REGRESSION_METRICS",
    "CalibrationCurve",
    "accuracy",
    "brier_score",
    "calibration_curve",
    "directional_accuracy",
    "evaluate_classification",
    "evaluate_regression",
    "expected_calibration_error",
    "known_classes",
    "known_regression",
    "log_loss",
    "macro_f1",
    "mae",
    "mse",
    "r2",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REGRESSION_METRICS: tuple[str, ...] = ("mse", "mae", "r2", "directional_accuracy")
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "brier", "log_loss", "ece")
HIGHER_IS_BETTER: dict[str, bool] = {
    "mse": False,
    "mae": False,
    "r2": True,
    "directional_accuracy": True,
    "accuracy": True,
    "macro_f1": True,
    "brier": False,
    "log_loss": False,
    "ece": False,
}
"""Each compared metric → whether larger values are better (``n`` is a count, not compared)."""

_PROB_TOLERANCE = 1e-6


# -- input handling ----------------------------------------------------------------------------
def _vector(values: Any, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as float64: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def known_regression(pred: Any, truth: Any) -> tuple[FloatArray, FloatArray]:
    """``(pred, truth)`` on the rows whose truth is known (not NaN), after checks.

    Raises ``ValueError`` on unequal lengths, infinite truths, non-finite predictions on
    counted rows, or when no row is left.
    """
    p = _vector(pred, "pred")
    t = _vector(truth, "truth")
    if len(p) != len(t):
        raise ValueError(f"pred and truth must have equal lengths, got {len(p)} and {len(t)}")
    if np.isinf(t).any():
        raise ValueError("truth holds infinite values; unknown targets must be NaN")
    keep = ~np.isnan(t)
    p, t = p[keep], t[keep]
    if not len(t):
        raise ValueError("no known targets: every truth is NaN")
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).sum())
        raise ValueError(f"pred holds {bad} NaN/infinite value(s) on rows with a known truth")
    return p, t


def _labels(values: Any, name: str) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Integer labels and the mask of known ones (``-1`` or NaN unknown)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind == "f":
        known = ~np.isnan(array)
        if np.any(array[known] != np.round(array[known])):
            raise ValueError(f"{name} must hold whole class indices, got fractions")
        out = np.where(known, array, -1).astype(np.int64)
    elif array.dtype.kind in "iu" or array.dtype == bool:
        out = array.astype(np.int64)
    else:
        raise TypeError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    known = out != -1
    if np.any(out[known] < 0):
        raise ValueError(f"{name} holds negative classes other than -1 (unknown)")
    return out, known


def _probabilities(probs: Any) -> FloatArray:
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"probs cannot be read as float64: {exc}") from None
    if p.ndim == 1:  # binary: probability of class 1
        p = np.column_stack([1.0 - p, p])
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(
            f"probs must be (samples, classes) with >= 2 classes, or 1-D binary, got {p.shape}"
        )
    return p


def known_classes(probs: Any, labels: Any) -> tuple[FloatArray, IntArray]:
    """``(probs, labels)`` on the rows whose label is known, after checks.

    ``probs``: ``(samples, classes)`` probabilities (rows sum to 1) or, for two classes,
    the 1-D probability of class 1. Raises ``ValueError`` on unequal lengths, labels outside
    ``0..classes-1``, probabilities that are not finite, outside [0, 1] or do not sum to 1
    (on counted rows), or when no row is left.
    """
    p = _probabilities(probs)
    y, known = _labels(labels, "labels")
    if len(p) != len(y):
        raise ValueError(f"probs and labels must have equal lengths, got {len(p)} and {len(y)}")
    p, y = p[known], y[known]
    if not len(y):
        raise ValueError("no known labels: every label is -1 (unknown)")
    if np.any(y >= p.shape[1]):
        raise ValueError(f"labels hold class {int(y.max())} but probs has {p.shape[1]} classes")
    if not np.isfinite(p).all() or np.any(p < -_PROB_TOLERANCE) or np.any(p > 1 + _PROB_TOLERANCE):
        raise ValueError("probs must be finite probabilities in [0, 1] on rows with known labels")
    if np.any(np.abs(p.sum(axis=1) - 1.0) > _PROB_TOLERANCE):
        raise ValueError("each row of probs must sum to 1 (apply softmax to logits first)")
    return p, y


def _class_pair(pred_labels: Any, labels: Any) -> tuple[IntArray, IntArray]:
    pred, _ = _labels(pred_labels, "pred_labels")
    y, known = _labels(labels, "labels")
    if len(pred) != len(y):
        raise ValueError(
            f"pred_labels and labels must have equal lengths, got {len(pred)} and {len(y)}"
        )
    pred, y = pred[known], y[known]
    if not len(y):
        raise ValueError("no known labels: every label is -1 (unknown)")
    if np.any(pred < 0):
        raise ValueError("pred_labels must be a class for every row with a known label")
    return pred, y


# -- regression --------------------------------------------------------------------------------
def mse(pred: Any, truth: Any) -> float:
    """Mean squared error over rows with a known truth."""
    p, t = known_regression(pred, truth)
    return float(np.mean((p - t) ** 2))


def mae(pred: Any, truth: Any) -> float:
    """Mean absolute error over rows with a known truth."""
    p, t = known_regression(pred, truth)
    return float(np.mean(np.abs(p - t)))


def r2(pred: Any, truth: Any) -> float:
    """Coefficient of determination ``1 - SSE / SST`` (SST about the truths' own mean).

    0 for predicting the (test) mean, negative when worse; NaN when the truths are constant.
    """
    p, t = known_regression(pred, truth)
    sst = float(np.sum((t - t.mean()) ** 2))
    if sst == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((p - t) ** 2)) / sst


def directional_accuracy(pred: Any, truth: Any) -> float:
    """Share of rows with a non-zero known truth where ``sign(pred) == sign(truth)``.

    Rows whose truth is exactly 0 are ignored (no direction to get right); a prediction of
    exactly 0 states no direction and counts as wrong. NaN when every known truth is 0.
    """
    p, t = known_regression(pred, truth)
    moving = t != 0
    if not moving.any():
        return float("nan")
    return float(np.mean(np.sign(p[moving]) == np.sign(t[moving])))


def evaluate_regression(pred: Any, truth: Any) -> dict[str, float]:
    """``n`` (rows counted) and every metric of :data:`REGRESSION_METRICS`."""
    p, t = known_regression(pred, truth)
    return {
        "n": float(len(t)),
        "mse": mse(p, t),
        "mae": mae(p, t),
        "r2": r2(p, t),
        "directional_accuracy": directional_accuracy(p, t),
    }


# -- classification ----------------------------------------------------------------------------
def accuracy(pred_labels: Any, labels: Any) -> float:
    """Share of rows with a known label whose predicted class is that label."""
    pred, y = _class_pair(pred_labels, labels)
    return float(np.mean(pred == y))


def macro_f1(pred_labels: Any, labels: Any) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truths or predictions.

    A class's F1 is ``2·TP / (2·TP + FP + FN)``; a class never predicted and never true is
    not counted (scikit-learn's ``f1_score(average="macro", zero_division=0)``).
    """
    pred, y = _class_pair(pred_labels, labels)
    classes = np.union1d(pred, y)
    scores = []
    for c in classes:
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def brier_score(probs: Any, labels: Any) -> float:
    """Multi-class Brier score: mean over rows of ``Σ_k (p_k - 1[label = k])²`` (0 .. 2)."""
    p, y = known_classes(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_loss(probs: Any, labels: Any, eps: float = 1e-15) -> float:
    """Mean negative log probability of the true class (natural log), clipped at ``eps``."""
    p, y = known_classes(probs, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


@dataclass(frozen=True, slots=True, eq=False)
class CalibrationCurve:
    """A reliability diagram: per probability bin, mean predicted vs observed frequency.

    Bins are ``(lower, upper]`` (the first also includes 0), as in scikit-learn.
    ``mean_predicted`` and ``observed_frequency`` are NaN for empty bins; ``counts`` are the
    rows per bin.
    """

    bin_lower: FloatArray
    bin_upper: FloatArray
    mean_predicted: FloatArray
    observed_frequency: FloatArray
    counts: IntArray

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "bin_lower": self.bin_lower.tolist(),
            "bin_upper": self.bin_upper.tolist(),
            "mean_predicted": self.mean_predicted.tolist(),
            "observed_frequency": self.observed_frequency.tolist(),
            "counts": self.counts.astype(float).tolist(),
        }


def calibration_curve(
    probs: Any, labels: Any, n_bins: int = 10, *, positive_class: int | None = None
) -> CalibrationCurve:
    """Reliability bins of the predicted probabilities.

    ``positive_class=None`` (default): *top-label* calibration: each row's confidence is its
    largest probability, and the observed frequency is how often that argmax class is right.
    ``positive_class=k``: one-vs-rest for class ``k``: ``probs[:, k]`` against
    ``labels == k`` (for two classes and ``k=1`` this is scikit-learn's
    ``calibration_curve(strategy="uniform")``, which also drops the empty bins).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    p, y = known_classes(probs, labels)
    if positive_class is None:
        confidence = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(np.float64)
    else:
        if not 0 <= positive_class < p.shape[1]:
            raise ValueError(f"positive_class must be in 0..{p.shape[1] - 1}, got {positive_class}")
        confidence = p[:, positive_class]
        hit = (y == positive_class).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        observed = np.bincount(bins, weights=hit, minlength=n_bins) / counts
    return CalibrationCurve(edges[:-1], edges[1:], mean_pred, observed, counts)


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 10) -> float:
    """Top-label ECE: ``Σ_bins (count / n) · |observed - mean predicted|``."""
    curve = calibration_curve(probs, labels, n_bins)
    filled = curve.counts > 0
    weights = curve.counts[filled] / curve.counts.sum()
    gaps = np.abs(curve.observed_frequency[filled] - curve.mean_predicted[filled])
    return float(np.sum(weights * gaps))


def evaluate_classification(probs: Any, labels: Any, *, n_bins: int = 10) -> dict[str, float]:
    """``n`` and every metric of :data:`CLASSIFICATION_METRICS`; the predicted class is the
    argmax of ``probs``."""
    p, y = known_classes(probs, labels)
    pred = p.argmax(axis=1)
    return {
        "n": float(len(y)),
        "accuracy": accuracy(pred, y),
        "macro_f1": macro_f1(pred, y),
        "brier": brier_score(p, y),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(p, y, n_bins),
    }
