"""Train a job end to end, and evaluate a checkpoint beside the baselines.

:func:`train_job` prepares the data (:func:`~pivotal.training.pipeline.prepare`), trains the
job's model, keeps the best checkpoints by validation loss (each carries the job and the
scaling, so a checkpoint alone rebuilds its data), and evaluates the best one on the test
range. :func:`evaluate_checkpoint` does the evaluation from a checkpoint file.

Evaluation compares, on the same test samples:

- regression targets (in their own units, scaling undone): the model against persistence
  (no change: 0 for a return), the last-return sign, the training mean and a ridge model on
  the newest frame's channels of every stream;
- the classification target: the model against the majority class of the training labels,
  the last-return sign and a logistic model on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pivotal.core.errors import ModelError
from pivotal.data.store import MarketDataStore
from pivotal.training.checkpoint_manager import CheckpointCallback, CheckpointManager
from pivotal.training.checkpoints import load_checkpoint, read_checkpoint
from pivotal.training.pipeline import (
    Prepared,
    ScaledSubset,
    Scaling,
    TrainJob,
    build_model,
    prepare,
)
from pivotal.training.report import EvaluationReport, TargetEvaluation
from pivotal.training.trainer import Trainer, TrainingResult, set_seed

__all__ = [
    "Evaluation",
    "TrainOutcome",
    "evaluate_checkpoint",
    "evaluate_prepared",
    "foreign_checkpoint_message",
    "train_job",
]

MAX_BASELINE_TRAIN = 20_000


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A report plus the arrays behind its plots (test range, original units)."""

    report: EvaluationReport
    predictions: npt.NDArray[np.float64] | None  # (n, regression targets)
    truth: npt.NDArray[np.float64] | None
    probabilities: npt.NDArray[np.float64] | None  # (n, classes)
    labels: npt.NDArray[np.int64] | None
    regression_columns: tuple[str, ...] = ()
    classification_column: str | None = None

    def plot_data(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~pivotal.training.report.write_html`."""
        out: dict[str, Any] = {}
        if self.predictions is not None and self.truth is not None:
            out["predictions"] = {
                c: self.predictions[:, j] for j, c in enumerate(self.regression_columns)
            }
            out["truth"] = {c: self.truth[:, j] for j, c in enumerate(self.regression_columns)}
        if self.probabilities is not None and self.classification_column is not None:
            out["probabilities"] = {self.classification_column: self.probabilities}
            out["labels"] = {self.classification_column: self.labels}
        return out


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    result: TrainingResult
    best_checkpoint: Path
    evaluation: Evaluation
    prepared: Prepared


def _pipeline_state(prepared: Prepared) -> dict[str, Any]:
    return {
        "job": prepared.job.model_dump(mode="json"),
        "scaling": prepared.scaling.state(),
    }


def train_job(
    store: MarketDataStore,
    job: TrainJob,
    directory: str | Path,
    *,
    keep: int = 5,
    prepared: Prepared | None = None,
) -> TrainOutcome:
    """Train ``job`` with checkpoints in ``directory``; returns the result and evaluation."""
    prepared = prepared or prepare(store, job)
    set_seed(job.training.seed)  # the initial weights depend on the job's seed alone
    model = build_model(prepared)
    trainer = Trainer(model, job.training)
    manager = CheckpointManager(directory, job.model, keep=keep, metric="val_loss", mode="min")
    callback = CheckpointCallback(
        manager,
        feature_layout=prepared.layout,
        input_spec=prepared.job.spec(),
        data_span=prepared.data_span(),
        model_name=job.model,
        pipeline=_pipeline_state(prepared),
    )
    result = trainer.fit(prepared.train, prepared.validation, callbacks=[callback])
    best = manager.best_path()
    if best is None:
        raise RuntimeError(f"training finished but no checkpoint was kept in {directory}")
    best_model, _ = load_checkpoint(best, expected_layout=prepared.layout)
    evaluation = evaluate_prepared(best_model, prepared, job.model)
    return TrainOutcome(result, best, evaluation, prepared)


def foreign_checkpoint_message(path: str | Path, pipeline: dict[str, Any] | None, use: str) -> str:
    """Why the checkpoint at ``path`` cannot be used where a supervised model's checkpoint
    (with its job and scaling) is expected, and what to do (``use``: the fix for a DQN)."""
    kind = (pipeline or {}).get("kind")
    if kind == "dqn":
        return (
            f"checkpoint {path} is a DQN agent's (written by `pivotal train dqn`), not a "
            f"supervised model's such as a PivotCNN (`pivotal train pivot_cnn`); {use}"
        )
    return (
        f"checkpoint {path} was not written by `pivotal train` (it stores no job and scaling"
        f"{f'; it is of kind {kind!r}' if kind else ''}), so its inputs cannot be rebuilt; "
        "train the model with `pivotal train`"
    )


def evaluate_checkpoint(store: MarketDataStore, path: str | Path) -> Evaluation:
    """Rebuild a checkpoint's data from the store and evaluate it on its test range.

    ``ModelError`` for a checkpoint without its job (a DQN's lives beside it, in its folder).
    """
    meta = read_checkpoint(path)
    if not meta.pipeline or "job" not in meta.pipeline:
        raise ModelError(
            foreign_checkpoint_message(
                path,
                meta.pipeline,
                "`pivotal evaluate` reads a DQN's job from dqn.job.json beside the checkpoint: "
                "evaluate it where `pivotal train dqn` wrote it (its folder)",
            )
        )
    job = TrainJob.model_validate(meta.pipeline["job"])
    scaling = Scaling.from_state(meta.pipeline["scaling"])
    prepared = prepare(store, job, scaling=scaling)
    model, _ = load_checkpoint(path, expected_layout=prepared.layout)
    return evaluate_prepared(model, prepared, meta.model_name)


def _predict(model: torch.nn.Module, data: ScaledSubset, batch: int = 512) -> dict[str, np.ndarray]:
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            b = data.get_batch(np.arange(start, min(start + batch, len(data))))
            out = model(b["x"], b.get("context"))
            for key in ("regression", "logits"):
                if key in out:
                    parts.setdefault(key, []).append(out[key].float().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _spread(n: int, limit: int) -> npt.NDArray[np.int64]:
    """At most ``limit`` evenly spaced positions out of ``n``."""
    idx = np.arange(n)
    return idx if n <= limit else idx[np.linspace(0, n - 1, limit).astype(np.int64)]


def _features(data: ScaledSubset, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Newest frame of every stream, all channels, flattened: the linear baselines' input."""
    rows = []
    for start in range(0, len(idx), 2_048):
        x = data.get_batch(idx[start : start + 2_048])["x"]
        rows.append(x[:, :, -1, :].reshape(len(x), -1).numpy().astype(np.float64))
    return np.concatenate(rows)


def _last_returns(prepared: Prepared, data: ScaledSubset) -> npt.NDArray[np.float64]:
    close = prepared.candles[prepared.job.anchor].close
    rows = data.rows()
    previous = np.maximum(rows - 1, 0)
    return np.log(close[rows] / close[previous])


def evaluate_prepared(model: torch.nn.Module, prepared: Prepared, name: str) -> Evaluation:
    """Score ``model`` on ``prepared.test`` beside the baselines (module docstring)."""
    from pivotal.training.baselines import classification_baselines, regression_baselines
    from pivotal.training.metrics import evaluate_classification, evaluate_regression

    test, train = prepared.test, prepared.train
    out = _predict(model, test)
    train_idx = _spread(len(train), MAX_BASELINE_TRAIN)
    train_x = _features(train, train_idx)
    test_x = _features(test, np.arange(len(test)))
    last = _last_returns(prepared, test)
    data = prepared.dataset
    targets: list[TargetEvaluation] = []
    predictions = truth = probabilities = labels = None
    if prepared.regression_columns:
        predictions = prepared.scaling.unscale_targets(out["regression"])
        truth = data.regression_at(test.rows()).astype(np.float64)
        train_truth = data.regression_at(train.rows()[train_idx]).astype(np.float64)
        for j, column in enumerate(prepared.regression_columns):
            known_train = ~np.isnan(train_truth[:, j])
            known_test = ~np.isnan(truth[:, j])
            if not known_test.any() or not known_train.any():
                continue
            baselines = regression_baselines(
                train_x[known_train],
                train_truth[known_train, j],
                test_x[known_test],
                truth[known_test, j],
                last[known_test],
            )
            targets.append(
                TargetEvaluation(
                    column,
                    "regression",
                    evaluate_regression(predictions[known_test, j], truth[known_test, j]),
                    baselines,
                )
            )
    if prepared.classification_column is not None:
        logits = torch.as_tensor(out["logits"])
        probabilities = torch.softmax(logits, dim=1).numpy().astype(np.float64)
        labels = data.labels_at(test.rows())
        train_labels = data.labels_at(train.rows()[train_idx])
        known_train, known_test = train_labels >= 0, labels >= 0
        if known_test.any() and known_train.any():
            baselines = classification_baselines(
                train_x[known_train],
                train_labels[known_train],
                test_x[known_test],
                labels[known_test],
                last[known_test]
                if prepared.classification_column.startswith("direction_")
                else None,
                n_classes=len(prepared.targets.classes),
                dead_band=prepared.job.labels.dead_band,
            )
            targets.append(
                TargetEvaluation(
                    prepared.classification_column,
                    "classification",
                    evaluate_classification(probabilities[known_test], labels[known_test]),
                    baselines,
                )
            )
    report = EvaluationReport(name, prepared.split.span("test"), tuple(targets))
    return Evaluation(
        report,
        predictions,
        truth,
        probabilities,
        labels,
        prepared.regression_columns,
        prepared.classification_column,
    )
