"""The one training loop: a :class:`~pivotal.models.base.PivotalModel` on batch datasets.

:class:`Trainer` owns the device, the optimizer and scheduler, mixed precision, gradient
clipping, early stopping, progress bars and TensorBoard; networks only describe themselves.
Epochs are numbered from 1. Per epoch it trains on shuffled batches (the order depends only
on ``config.seed`` and the epoch), evaluates the validation data, steps the scheduler, and
tracks the *monitored loss*: the validation loss, or the training loss without validation
data. Callbacks (checkpoints, Optuna pruning) run after every epoch and may stop training.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn

from pivotal.core.errors import ModelError
from pivotal.models.base import PivotalModel
from pivotal.training.config import TrainingConfig
from pivotal.training.data import Batch, BatchDataset
from pivotal.training.losses import TaskLoss

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["Callback", "EpochLog", "EvalResult", "Trainer", "TrainingResult", "set_seed"]


def set_seed(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (all devices); optionally ask torch for deterministic ops.

    ``deterministic`` calls ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (process-wide): ops without a deterministic version warn instead of failing.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Mean loss (per sample), its parts, and metrics (``accuracy`` with labels) of a pass."""

    loss: float
    parts: dict[str, float]
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class EpochLog:
    """One epoch: mean losses per sample, the lr it trained with, wall seconds."""

    epoch: int
    train_loss: float
    val_loss: float | None
    lr: float
    train_parts: dict[str, float] = field(default_factory=dict)
    val_parts: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def monitored(self) -> float:
        """The loss early stopping, plateau and pruning watch: validation, else training."""
        return self.train_loss if self.val_loss is None else self.val_loss

    def metrics(self) -> dict[str, float]:
        """Flat metrics for checkpoints and search: train_loss, val_loss, val_<metric>."""
        out = {"train_loss": self.train_loss}
        if self.val_loss is not None:
            out["val_loss"] = self.val_loss
        out.update({f"val_{k}": v for k, v in self.val_metrics.items()})
        return out


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """What :meth:`Trainer.fit` did. ``best_val_loss`` is the best monitored loss."""

    history: tuple[EpochLog, ...]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    stop_reason: str | None
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def train_loss(self) -> tuple[float, ...]:
        return tuple(log.train_loss for log in self.history)

    @property
    def val_loss(self) -> tuple[float | None, ...]:
        return tuple(log.val_loss for log in self.history)

    @property
    def lr(self) -> tuple[float, ...]:
        return tuple(log.lr for log in self.history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "epochs_run": self.epochs_run,
            "seconds": self.seconds,
            "train_loss": list(self.train_loss),
            "val_loss": list(self.val_loss),
            "lr": list(self.lr),
        }


class Callback:
    """Hooks into :meth:`Trainer.fit`; override what you need. Exceptions propagate."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (the model is on its device)."""

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        """After an epoch's evaluation and scheduler step; may call ``trainer.request_stop``."""

    def on_fit_end(self, trainer: Trainer, result: TrainingResult) -> None:
        """After training, with the best weights restored (when configured)."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainingConfig.device is 'cuda' but CUDA is not available; use 'auto'")
    return torch.device(name)


def _optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    lr, wd, momentum = config.lr, config.weight_decay, config.momentum
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=wd)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> Any:
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.step_gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=config.min_lr
        )
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
    return None


class Trainer:
    """Trains ``model`` with ``config``; ``loss`` defaults to ``TaskLoss(model.targets)``.

    The model moves to the configured device at construction; ``optimizer`` and
    ``scheduler`` are built then too (load a checkpoint's optimizer state into
    ``trainer.optimizer`` to resume).
    """

    def __init__(
        self,
        model: PivotalModel,
        config: TrainingConfig,
        loss: TaskLoss | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
        self.config = config
        self.device = _device(config.device)
        self.model = model.to(self.device)
        self.loss = loss if loss is not None else TaskLoss(model.targets)
        self.optimizer = _optimizer(self.model, config)
        self.scheduler = _scheduler(self.optimizer, config)
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._stop_reason: str | None = None

    # --- public API -----------------------------------------------------------------------

    def request_stop(self, reason: str = "callback") -> None:
        """Ask :meth:`fit` to stop after the current epoch (for callbacks)."""
        self._stop_reason = reason

    @property
    def lr(self) -> float:
        """The optimizer's current learning rate (first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def fit(
        self,
        train_data: BatchDataset,
        val_data: BatchDataset | None = None,
        *,
        callbacks: Sequence[Callback] = (),
    ) -> TrainingResult:
        """Train for up to ``config.epochs`` epochs; see the module docstring.

        Raises ``ModelError`` when a loss becomes NaN or infinite (naming epoch and batch).
        With ``config.restore_best`` the model ends with the weights of the best epoch.
        """
        self._check_data(train_data, "train_data")
        if val_data is not None:
            self._check_data(val_data, "val_data")
        cfg = self.config
        set_seed(cfg.seed)
        self._stop_reason = None
        started = time.perf_counter()
        history: list[EpochLog] = []
        best_loss, best_epoch, best_state = math.inf, 0, None
        since_best = 0
        writer = self._writer()
        progress = self._progress()
        try:
            with progress:
                epochs_task = progress.add_task("epochs", total=cfg.epochs, info="")
                batch_task = progress.add_task("train", total=None, info="")
                for cb in callbacks:
                    cb.on_fit_start(self)
                for epoch in range(1, cfg.epochs + 1):
                    log = self._epoch(epoch, train_data, val_data, progress, batch_task)
                    history.append(log)
                    if log.monitored < best_loss - cfg.min_delta:
                        best_loss, best_epoch, since_best = log.monitored, epoch, 0
                        if cfg.restore_best:
                            best_state = _state_copy(self.model)
                    else:
                        since_best += 1
                    self._log_epoch(writer, log)
                    info = f"loss {log.train_loss:.4g}" + (
                        "" if log.val_loss is None else f" · val {log.val_loss:.4g}"
                    )
                    progress.update(epochs_task, advance=1, info=info)
                    for cb in callbacks:
                        cb.on_epoch_end(self, log)
                    patience = cfg.early_stopping_patience
                    if patience is not None and since_best >= patience:
                        self._stop_reason = self._stop_reason or "early_stopping"
                    if self._stop_reason is not None:
                        break
        finally:
            if writer is not None:
                writer.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        stopped = len(history) < cfg.epochs
        result = TrainingResult(
            history=tuple(history),
            best_epoch=best_epoch,
            best_val_loss=best_loss,
            stopped_early=stopped,
            stop_reason=self._stop_reason if stopped else None,
            seconds=time.perf_counter() - started,
        )
        for cb in callbacks:
            cb.on_fit_end(self, result)
        return result

    def evaluate(self, data: BatchDataset, *, batch_size: int | None = None) -> EvalResult:
        """Mean loss, parts and metrics on ``data`` in eval mode without gradients."""
        self._check_data(data, "data")
        was_training = self.model.training
        self.model.eval()
        total, count, correct, labelled = 0.0, 0, 0, 0
        parts: dict[str, float] = {}
        try:
            with torch.no_grad():
                for b, batch in enumerate(self._batches(data, batch_size=batch_size), start=1):
                    outputs = self._forward(batch)
                    out = self.loss(outputs, batch)
                    value = float(out.total)
                    if not math.isfinite(value):
                        raise ModelError(
                            f"validation loss is {value} at batch {b}; the weights or inputs "
                            "hold NaN/inf: lower the learning rate, set grad_clip_norm, or "
                            "check the inputs and targets"
                        )
                    n = len(batch["x"])
                    total += value * n
                    count += n
                    for k, v in out.parts.items():
                        parts[k] = parts.get(k, 0.0) + float(v) * n
                    if "logits" in outputs and "label" in batch:
                        labels = batch["label"]
                        mask = labels >= 0
                        pred = outputs["logits"].argmax(dim=1)
                        correct += int((pred[mask] == labels[mask]).sum())
                        labelled += int(mask.sum())
        finally:
            self.model.train(was_training)
        metrics = {"accuracy": correct / labelled} if labelled else {}
        return EvalResult(total / count, {k: v / count for k, v in parts.items()}, metrics)

    def predict(
        self, data: BatchDataset, *, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Every model output for every sample of ``data`` in order, as float32/int arrays."""
        self._check_data(data, "data")
        was_training = self.model.training
        self.model.eval()
        chunks: dict[str, list[torch.Tensor]] = {}
        try:
            with torch.no_grad():
                for batch in self._batches(data, batch_size=batch_size):
                    for k, v in self._forward(batch).items():
                        value = v.detach()
                        if value.is_floating_point():
                            value = value.float()
                        chunks.setdefault(k, []).append(value.cpu())
        finally:
            self.model.train(was_training)
        return {k: torch.cat(v).numpy() for k, v in chunks.items()}

    # --- the loop ---------------------------------------------------------------------------

    def _epoch(
        self,
        epoch: int,
        train_data: BatchDataset,
        val_data: BatchDataset | None,
        progress: Progress,
        task: TaskID,
    ) -> EpochLog:
        started = time.perf_counter()
        cfg = self.config
        lr = self.lr
        self.model.train()
        n_batches = math.ceil(len(train_data) / cfg.batch_size)
        progress.reset(task, total=n_batches, description=f"epoch {epoch}", info="")
        total, count = 0.0, 0
        parts: dict[str, float] = {}
        seed = int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0])
        batches = self._batches(train_data, shuffle=True, seed=seed)
        for b, batch in enumerate(batches, start=1):
            value, batch_parts = self._step(batch, epoch, b)
            n = len(batch["x"])
            total += value * n
            count += n
            for k, v in batch_parts.items():
                parts[k] = parts.get(k, 0.0) + v * n
            progress.update(task, advance=1, info=f"loss {value:.4g}")
        train_loss = total / count
        train_parts = {k: v / count for k, v in parts.items()}
        val = None if val_data is None else self.evaluate(val_data)
        monitored = train_loss if val is None else val.loss
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.scheduler is not None:
            self.scheduler.step()
        return EpochLog(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=None if val is None else val.loss,
            lr=lr,
            train_parts=train_parts,
            val_parts={} if val is None else val.parts,
            val_metrics={} if val is None else val.metrics,
            seconds=time.perf_counter() - started,
        )

    def _step(self, batch: Batch, epoch: int, b: int) -> tuple[float, dict[str, float]]:
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self._forward(batch)
        out = self.loss(outputs, batch)
        value = float(out.total.detach())
        if not math.isfinite(value):
            raise ModelError(
                f"training loss became {value} at epoch {epoch}, batch {b} (lr={self.lr:g}); "
                "lower the learning rate, set grad_clip_norm, or check the inputs and targets "
                "for NaN/inf"
            )
        self.grad_scaler.scale(out.total).backward()
        if self.config.grad_clip_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return value, {k: float(v) for k, v in out.parts.items()}

    def _forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        autocast: AbstractContextManager[Any] = (
            torch.autocast(device_type="cuda", dtype=torch.float16) if self.amp else nullcontext()
        )
        with autocast:
            return self.model(batch["x"], batch.get("context"))

    def _batches(
        self,
        data: BatchDataset,
        *,
        shuffle: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> Iterator[Batch]:
        cuda = self.device.type == "cuda"
        for batch in data.batches(
            batch_size=batch_size or self.config.batch_size,
            shuffle=shuffle,
            seed=seed,
            pin_memory=cuda,
            num_workers=self.config.num_workers,
        ):
            yield {k: v.to(self.device, non_blocking=cuda) for k, v in batch.items()}

    @staticmethod
    def _check_data(data: object, name: str) -> None:
        if not isinstance(data, BatchDataset):
            raise TypeError(
                f"{name} must be a BatchDataset (SupervisedDataset or TensorSupervisedDataset), "
                f"got {type(data).__name__}"
            )
        if len(data) == 0:
            raise ValueError(f"{name} has no samples")

    # --- reporting --------------------------------------------------------------------------

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            disable=not self.config.progress,
            transient=False,
        )

    def _writer(self) -> SummaryWriter | None:
        if self.config.log_dir is None:
            return None
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

        return SummaryWriter(log_dir=str(self.config.log_dir))

    def _log_epoch(self, writer: SummaryWriter | None, log: EpochLog) -> None:
        if writer is None:
            return
        step = log.epoch
        writer.add_scalar("loss/train", log.train_loss, step)
        if log.val_loss is not None:
            writer.add_scalar("loss/val", log.val_loss, step)
        for prefix, values in (
            ("loss_parts/train", log.train_parts),
            ("loss_parts/val", log.val_parts),
            ("metrics/val", log.val_metrics),
        ):
            for k, v in values.items():
                writer.add_scalar(f"{prefix}_{k}", v, step)
        writer.add_scalar("lr", log.lr, step)
        for name, param in self.model.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
        writer.flush()


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
