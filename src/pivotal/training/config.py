"""How a network is trained: one frozen, typed config that refuses unknown keys.

Units: ``lr`` per optimizer step; ``epochs``, ``step_size`` and the patiences count epochs;
``grad_clip_norm`` bounds the L2 norm of all gradients together, before each step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pivotal.config.models import StrictModel

__all__ = ["TrainingConfig"]


class TrainingConfig(StrictModel):
    """The trainer's settings (see :class:`~pivotal.training.trainer.Trainer`)."""

    epochs: int = Field(default=20, ge=1, description="Maximum passes over the training data")
    batch_size: int = Field(default=256, ge=1, description="Samples per optimizer step")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adamw"
    lr: float = Field(default=1e-3, gt=0, description="Initial learning rate")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty (decoupled for adamw)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="Momentum for sgd and rmsprop")
    scheduler: Literal["none", "step", "cosine", "plateau"] = Field(
        default="none",
        description="none: constant lr; step: lr *= step_gamma every step_size epochs; "
        "cosine: anneal to min_lr over `epochs`; plateau: lr *= plateau_factor after "
        "plateau_patience epochs without a better validation loss",
    )
    step_size: int = Field(default=10, ge=1, description="Epochs between step decays")
    step_gamma: float = Field(default=0.1, gt=0, le=1, description="Step decay factor")
    plateau_factor: float = Field(default=0.5, gt=0, lt=1, description="Plateau decay factor")
    plateau_patience: int = Field(default=2, ge=0, description="Epochs without improvement")
    min_lr: float = Field(default=0.0, ge=0, description="Floor for cosine and plateau")
    early_stopping_patience: int | None = Field(
        default=5,
        ge=1,
        description="Stop after this many epochs without a validation loss better than the "
        "best by more than min_delta; None disables early stopping",
    )
    min_delta: float = Field(default=0.0, ge=0, description="Smallest improvement that counts")
    restore_best: bool = Field(
        default=True, description="Load the weights of the best epoch when training ends"
    )
    grad_clip_norm: float | None = Field(
        default=None, gt=0, description="Clip the global gradient L2 norm; None: no clipping"
    )
    seed: int = Field(default=0, ge=0, description="Seeds torch, numpy and the shuffles")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available, else CPU"
    )
    amp: bool = Field(
        default=False, description="Mixed precision (float16 autocast + GradScaler); CUDA only"
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes")
    log_dir: Path | None = Field(default=None, description="TensorBoard run directory")
    progress: bool = Field(default=True, description="Show rich progress bars")

    @model_validator(mode="after")
    def _schedule(self) -> TrainingConfig:
        if self.scheduler == "cosine" and self.min_lr >= self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be below lr ({self.lr}) for cosine")
        return self
