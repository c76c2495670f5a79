"""The trainer learns a planted signal, is deterministic, stops early, clips and logs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pivotal.core.errors import ModelError
from pivotal.models import InputShape, PivotalModel, TargetSpec, available, model_class, register
from pivotal.training.config import TrainingConfig
from pivotal.training.data import TensorSupervisedDataset
from pivotal.training.losses import LossOutput, TaskLoss
from pivotal.training.trainer import Callback, EpochLog, Trainer, set_seed

NAME = "test_tiny_mlp_trainer"


class TinyMLP(PivotalModel):
    """Flatten → Linear → ReLU → Dropout → heads: small enough for fast CPU tests."""

    model_type = "mlp"

    def __init__(
        self, shape: InputShape, targets: TargetSpec, hidden_size: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__(shape, targets)
        self._hidden = hidden_size
        self.dropout = dropout
        width = shape.streams * shape.frames * shape.channels + shape.context
        self.body = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.reg = nn.Linear(hidden_size, len(targets.regression)) if targets.regression else None
        self.cls = nn.Linear(hidden_size, len(targets.classes)) if targets.classes else None

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden_size": self._hidden, "dropout": self.dropout}

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        if context is not None:
            flat = torch.cat([flat, context], dim=1)
        hidden = self.body(flat)
        out = {"hidden": hidden}
        if self.reg is not None:
            out["regression"] = self.reg(hidden)
        if self.cls is not None:
            out["logits"] = self.cls(hidden)
        return out


if NAME not in available():
    register(NAME)(TinyMLP)
TINY = model_class(NAME)
SHAPE = InputShape(streams=1, frames=8, channels=3)
CLASSES = TargetSpec(classes=("down", "up"))


def planted(n: int, seed: int, *, flip: bool = False) -> TensorSupervisedDataset:
    """Labels are the sign of a fixed weighted sum of the inputs (``flip``: the opposite)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 3)).astype(np.float32)
    w = np.random.default_rng(1234).standard_normal(24)
    y = (x.reshape(n, -1) @ w > 0).astype(np.int64)
    return TensorSupervisedDataset(x, labels=1 - y if flip else y)


def config(**kw: Any) -> TrainingConfig:
    base: dict[str, Any] = {"epochs": 3, "batch_size": 64, "progress": False, "device": "cpu"}
    return TrainingConfig(**{**base, **kw})


def tiny(seed: int = 0, targets: TargetSpec = CLASSES, **kw: Any) -> PivotalModel:
    torch.manual_seed(seed)
    return TINY(SHAPE, targets, **kw)


def test_learns_a_planted_signal_to_high_accuracy() -> None:
    train, val = planted(2_000, 1), planted(500, 2)
    trainer = Trainer(tiny(hidden_size=32), config(epochs=15, lr=1e-2, optimizer="adam"))
    result = trainer.fit(train, val)
    assert result.epochs_run >= 5
    assert result.val_loss[-1] < result.val_loss[0]
    metrics = trainer.evaluate(val).metrics
    assert metrics["accuracy"] > 0.9
    # predict returns every output, in the dataset's order, matching the evaluated accuracy
    pred = trainer.predict(val)
    assert set(pred) == {"hidden", "logits"}
    assert pred["logits"].shape == (500, 2) and pred["logits"].dtype == np.float32
    labels = val.get_batch(np.arange(500))["label"].numpy()
    assert (pred["logits"].argmax(1) == labels).mean() == pytest.approx(metrics["accuracy"])
    trainer.model.train()
    trainer.predict(val)
    assert trainer.model.training  # predict restores the previous mode
    with pytest.raises(TypeError, match="BatchDataset"):
        trainer.predict(np.zeros((3, 1, 8, 3)))  # type: ignore[arg-type]


def test_regression_with_missing_targets_learns_and_ignores_nan() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1_200, 1, 8, 3)).astype(np.float32)
    y = x[:, 0, :, 0].sum(axis=1, keepdims=True).astype(np.float32) / 3
    y[::7] = np.nan  # missing targets are ignored, not learned as zeros
    ds = TensorSupervisedDataset(x, regression=y)
    assert ds.excluded == len(range(0, 1_200, 7))
    targets = TargetSpec(regression=("sum",))
    trainer = Trainer(tiny(targets=targets, hidden_size=32), config(epochs=12, lr=5e-3))
    result = trainer.fit(ds)
    assert result.val_loss == (None,) * result.epochs_run  # no validation: train loss monitored
    assert result.train_loss[-1] < 0.2 * result.train_loss[0]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "plateau"])
def test_every_optimizer_and_scheduler_runs(optimizer: str, scheduler: str) -> None:
    cfg = config(
        epochs=3,
        optimizer=optimizer,
        scheduler=scheduler,
        lr=1e-2,
        step_size=1,
        step_gamma=0.5,
        plateau_patience=0,
        plateau_factor=0.5,
        weight_decay=1e-4,
        early_stopping_patience=None,
    )
    trainer = Trainer(tiny(), cfg)
    result = trainer.fit(planted(256, 1), planted(128, 2, flip=True))
    assert result.epochs_run == 3
    assert all(math.isfinite(v) for v in result.train_loss)
    assert result.lr[0] == pytest.approx(1e-2)
    if scheduler == "none":
        assert result.lr == (1e-2,) * 3
    elif scheduler == "step":
        assert result.lr == pytest.approx((1e-2, 5e-3, 2.5e-3))
    elif scheduler == "cosine":
        assert result.lr[0] > result.lr[1] > result.lr[2] > 0
    else:  # flipped validation labels get worse as training improves: the plateau decays lr
        assert result.lr[2] < result.lr[0]


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
            snapshots[log.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    # validation labels are the opposite of the training labels: validation loss rises
    train, val = planted(512, 1), planted(256, 2, flip=True)
    trainer = Trainer(tiny(), config(epochs=30, lr=1e-2, early_stopping_patience=2))
    result = trainer.fit(train, val, callbacks=[Snapshot()])
    assert result.stopped_early and result.stop_reason == "early_stopping"
    assert result.epochs_run == result.best_epoch + 2 < 30
    val_losses = [v for v in result.val_loss if v is not None]
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert result.best_val_loss == min(val_losses) < val_losses[-1]
    best = snapshots[result.best_epoch]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, best[k]), k
    assert trainer.evaluate(val).loss == pytest.approx(result.best_val_loss, rel=1e-6)


def test_without_early_stopping_all_epochs_run() -> None:
    trainer = Trainer(tiny(), config(epochs=4, lr=1e-2, early_stopping_patience=None))
    result = trainer.fit(planted(256, 1), planted(128, 2, flip=True))
    assert result.epochs_run == 4 and not result.stopped_early and result.stop_reason is None


def _grad_norms(trainer: Trainer) -> list[float]:
    norms: list[float] = []

    def hook(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    trainer.optimizer.register_step_pre_hook(hook)
    return norms


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clipping_bounds_the_global_norm(clip: float | None) -> None:
    rng = np.random.default_rng(3)
    x = (100 * rng.standard_normal((256, 1, 8, 3))).astype(np.float32)  # large inputs, grads
    ds = TensorSupervisedDataset(x, labels=(x.sum(axis=(1, 2, 3)) > 0).astype(np.int64))
    trainer = Trainer(tiny(), config(epochs=2, lr=1e-3, optimizer="sgd", grad_clip_norm=clip))
    norms = _grad_norms(trainer)
    trainer.fit(ds)
    assert len(norms) == 2 * 4  # 256 samples / 64 per batch, 2 epochs
    if clip is None:
        assert max(norms) > 10 * 0.5  # the test could fail: without clipping norms are large
    else:
        assert max(norms) <= clip * (1 + 1e-5)


def test_same_seed_gives_identical_loss_history() -> None:
    def run() -> tuple[tuple[float, ...], tuple[float | None, ...], np.ndarray]:
        set_seed(7)
        model = TINY(SHAPE, CLASSES, hidden_size=16, dropout=0.2)
        trainer = Trainer(model, config(epochs=3, seed=7, lr=1e-2))
        result = trainer.fit(planted(300, 1), planted(100, 2))
        return result.train_loss, result.val_loss, trainer.predict(planted(50, 3))["logits"]

    first, second = run(), run()
    assert first[0] == second[0] and first[1] == second[1]
    np.testing.assert_array_equal(first[2], second[2])
    set_seed(7)
    model = TINY(SHAPE, CLASSES, hidden_size=16, dropout=0.2)
    other = Trainer(model, config(epochs=3, seed=8, lr=1e-2)).fit(planted(300, 1))
    assert other.train_loss != first[0]  # the seed drives the shuffles and dropout


class NaNAfter(TaskLoss):
    """A loss that turns NaN at call ``at`` (as a diverging model would)."""

    def __init__(self, targets: TargetSpec, at: int) -> None:
        super().__init__(targets)
        self.calls, self.at = 0, at

    def __call__(self, outputs: Any, batch: Any) -> LossOutput:
        out = super().__call__(outputs, batch)
        self.calls += 1
        if self.calls >= self.at:
            return LossOutput(out.total * math.nan, out.parts)
        return out


def test_nan_loss_raises_model_error_naming_epoch_and_batch() -> None:
    trainer = Trainer(tiny(), config(epochs=3), loss=NaNAfter(CLASSES, at=7))
    with pytest.raises(ModelError, match=r"epoch 2, batch 3 .*lower the learning rate"):
        trainer.fit(planted(256, 1))  # 4 batches per epoch: call 7 is epoch 2, batch 3


def test_diverging_learning_rate_raises_model_error() -> None:
    trainer = Trainer(tiny(), config(epochs=5, optimizer="sgd", lr=1e12, momentum=0.0))
    with pytest.raises(ModelError, match="training loss became"):
        trainer.fit(planted(256, 1))


def test_tensorboard_event_file_has_losses_lr_and_histograms(tmp_path: Any) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(tiny(), config(epochs=2, log_dir=tmp_path / "run"))
    trainer.fit(planted(128, 1), planted(64, 2))
    events = list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "lr", "metrics/val_accuracy"} <= scalars
    assert len(acc.Scalars("loss/train")) == 2
    assert any(t.startswith("weights/") for t in acc.Tags()["histograms"])


def test_progress_bars_render_without_error() -> None:
    result = Trainer(tiny(), config(epochs=1, progress=True)).fit(planted(64, 1))
    assert result.epochs_run == 1


def test_config_refuses_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        TrainingConfig(epochz=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="optimizer"):
        TrainingConfig(optimizer="adagrad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr"):
        TrainingConfig(lr=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Trainer(tiny(), TrainingConfig(device="cuda"))


def test_callback_can_stop_training() -> None:
    class StopAt2(Callback):
        def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
            if log.epoch == 2:
                trainer.request_stop("enough")

    result = Trainer(tiny(), config(epochs=5)).fit(planted(64, 1), callbacks=[StopAt2()])
    assert result.epochs_run == 2 and result.stop_reason == "enough"
