"""Baselines a model must beat, evaluated on the same test rows as the model.

Every baseline is fitted on the **training** rows only (features ``train_x``, labels
``train_y``) and predicts the **test** rows; nothing of the test labels enters a
prediction. Rows with an unknown training label (NaN or ``-1``) are left out of fitting.

Regression (a future log return, or any float target):

- ``persistence``: nothing changes: a future return of 0 (or, for a level target, the
  caller's ``persistence_test``, e.g. the last known value);
- ``last_return_sign``: the last observed return's sign times the mean absolute training
  target (the direction of the last move continues, with a typical size);
- ``train_mean``: the training targets' mean;
- ``linear``: ridge regression on standardized features.

Classification (e.g. direction classes ``down/flat/up``):

- ``majority``: the training class frequencies as probabilities (argmax: the majority class);
- ``last_return_sign``: the class of the last observed return (``up`` above ``dead_band``,
  ``down`` below ``-dead_band``, else ``flat``) with probability 1 (direction labels only);
- ``linear``: multinomial logistic regression on standardized features.

``*_predictions`` functions return the predictions (for plots); ``regression_baselines`` and
``classification_baselines`` return each baseline's metrics
(:func:`~pivotal.training.metrics.evaluate_regression` /
:func:`~pivotal.training.metrics.evaluate_classification`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pivotal.training.labels import DIRECTION_CLASSES
from pivotal.training.metrics import evaluate_classification, evaluate_regression

__all__ = [
    "classification_baseline_probabilities",
    "classification_baselines",
    "regression_baseline_predictions",
    "regression_baselines",
]

FloatArray = npt.NDArray[np.float64]


def _matrix(values: Any, name: str) -> FloatArray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as float64: {exc}") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be (samples, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        rows = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(
            f"{name} holds NaN/infinite values in {rows} row(s); drop indicator warm-up rows "
            "or fill features before fitting baselines"
        )
    return x


def _vector(values: Any, name: str, n: int) -> FloatArray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) != n:
        raise ValueError(f"{name} must have {n} entries (one per row), got {len(v)}")
    return v


def _features(train_x: Any, test_x: Any) -> tuple[FloatArray, FloatArray]:
    tr = _matrix(train_x, "train_x")
    te = _matrix(test_x, "test_x")
    if tr.shape[1] != te.shape[1]:
        raise ValueError(
            f"train_x has {tr.shape[1]} feature(s) but test_x has {te.shape[1]}; use the same "
            "feature columns"
        )
    return tr, te


def _last_returns(values: Any, n: int) -> FloatArray:
    r = _vector(values, "last_returns_test", n)
    if not np.isfinite(r).all():
        raise ValueError(
            "last_returns_test holds NaN/infinite values; give the return of the bar that "
            "closes at each test sample (known at its time)"
        )
    return r


# -- regression --------------------------------------------------------------------------------
def regression_baseline_predictions(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    last_returns_test: Any,
    *,
    persistence_test: Any = None,
    ridge_alpha: float = 1.0,
) -> dict[str, FloatArray]:
    """Each regression baseline's predictions for the test rows (see the module doc).

    ``train_x``/``test_x``: ``(rows, features)`` finite; ``train_y``: training targets (NaN
    rows are skipped in fitting); ``last_returns_test``: the last observed one-bar log
    return at each test sample; ``persistence_test``: the persistence forecast per test row
    (default 0: the right one for return targets).
    """
    tr, te = _features(train_x, test_x)
    y = _vector(train_y, "train_y", len(tr))
    if np.isinf(y).any():
        raise ValueError("train_y holds infinite values; unknown targets must be NaN")
    fit = ~np.isnan(y)
    if fit.sum() < 2:
        raise ValueError("train_y has fewer than 2 known targets; cannot fit baselines")
    last = _last_returns(last_returns_test, len(te))
    if persistence_test is None:
        persistence = np.zeros(len(te))
    else:
        persistence = _vector(persistence_test, "persistence_test", len(te))
        if not np.isfinite(persistence).all():
            raise ValueError("persistence_test holds NaN/infinite values")
    if not isinstance(ridge_alpha, int | float) or not ridge_alpha >= 0:
        raise ValueError(f"ridge_alpha must be a number >= 0, got {ridge_alpha!r}")
    model = make_pipeline(StandardScaler(), Ridge(alpha=float(ridge_alpha)))
    with threadpool_limits(limits=1):
        model.fit(tr[fit], y[fit])
    return {
        "persistence": persistence,
        "last_return_sign": np.sign(last) * float(np.mean(np.abs(y[fit]))),
        "train_mean": np.full(len(te), float(np.mean(y[fit]))),
        "linear": np.asarray(model.predict(te), dtype=np.float64),
    }


def regression_baselines(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    last_returns_test: Any,
    *,
    persistence_test: Any = None,
    ridge_alpha: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Baseline name → :func:`~pivotal.training.metrics.evaluate_regression` on ``test_y``."""
    predictions = regression_baseline_predictions(
        train_x,
        train_y,
        test_x,
        last_returns_test,
        persistence_test=persistence_test,
        ridge_alpha=ridge_alpha,
    )
    truth = _vector(test_y, "test_y", len(next(iter(predictions.values()))))
    return {name: evaluate_regression(pred, truth) for name, pred in predictions.items()}


# -- classification ----------------------------------------------------------------------------
def _train_labels(train_y: Any, n: int, n_classes: int) -> tuple[npt.NDArray[np.int64], Any]:
    raw = np.asarray(train_y).reshape(-1)
    if len(raw) != n:
        raise ValueError(f"train_y must have {n} entries (one per row), got {len(raw)}")
    values = raw.astype(np.float64)
    known = ~np.isnan(values) & (values != -1)
    y = np.where(known, values, -1).astype(np.int64)
    if np.any(values[known] != y[known]) or np.any((y[known] < 0) | (y[known] >= n_classes)):
        raise ValueError(f"train_y must hold classes 0..{n_classes - 1} (or -1 for unknown)")
    if known.sum() < 2:
        raise ValueError("train_y has fewer than 2 known labels; cannot fit baselines")
    return y, known


def classification_baseline_probabilities(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    *,
    n_classes: int = len(DIRECTION_CLASSES),
    last_returns_test: Any = None,
    dead_band: float = 0.0,
    logistic_c: float = 1.0,
) -> dict[str, FloatArray]:
    """Each classification baseline's ``(test rows, n_classes)`` probabilities.

    ``last_returns_test`` (the last observed one-bar log return per test row) adds the
    ``last_return_sign`` baseline; it needs ``n_classes == 3`` with the classes of
    :data:`~pivotal.training.labels.DIRECTION_CLASSES` (down, flat, up) and uses
    ``dead_band`` like the labels. ``logistic_c`` is the logistic regression's inverse
    regularisation strength (scikit-learn's ``C``).
    Raises ``ValueError`` when the training labels hold fewer than two classes.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    tr, te = _features(train_x, test_x)
    y, known = _train_labels(train_y, len(tr), n_classes)
    present = np.unique(y[known])
    if len(present) < 2:
        raise ValueError(
            f"the training labels hold only class {int(present[0])}; a classifier needs two "
            "or more classes to learn from (lengthen the training span)"
        )
    frequencies = np.bincount(y[known], minlength=n_classes) / known.sum()
    out: dict[str, FloatArray] = {"majority": np.tile(frequencies, (len(te), 1))}
    if last_returns_test is not None:
        if n_classes != len(DIRECTION_CLASSES):
            raise ValueError(
                "the last_return_sign baseline predicts direction classes (down, flat, up); "
                f"it needs n_classes=3, got {n_classes}"
            )
        last = _last_returns(last_returns_test, len(te))
        band = float(dead_band)
        if not np.isfinite(band) or band < 0:
            raise ValueError(f"dead_band must be a finite log return >= 0, got {dead_band!r}")
        cls = np.where(last > band, 2, np.where(last < -band, 0, 1))
        onehot = np.zeros((len(te), n_classes))
        onehot[np.arange(len(te)), cls] = 1.0
        out["last_return_sign"] = onehot
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(logistic_c), max_iter=500))
    # one BLAS thread: beside torch's thread pool, more threads oversubscribe a small machine
    # and slow the fit by 10x or more
    with threadpool_limits(limits=1):
        model.fit(tr[known], y[known])
    probs = np.zeros((len(te), n_classes))
    probs[:, model.classes_] = model.predict_proba(te)
    out["linear"] = probs
    return out


def classification_baselines(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    last_returns_test: Any = None,
    *,
    n_classes: int = len(DIRECTION_CLASSES),
    dead_band: float = 0.0,
    logistic_c: float = 1.0,
    n_bins: int = 10,
) -> dict[str, dict[str, float]]:
    """Baseline name → :func:`~pivotal.training.metrics.evaluate_classification` on ``test_y``."""
    probabilities = classification_baseline_probabilities(
        train_x,
        train_y,
        test_x,
        n_classes=n_classes,
        last_returns_test=last_returns_test,
        dead_band=dead_band,
        logistic_c=logistic_c,
    )
    return {
        name: evaluate_classification(p, test_y, n_bins=n_bins) for name, p in probabilities.items()
    }
