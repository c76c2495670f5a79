"""Seed 001's CNN1DModel: parallel Conv1d branches, global max pooling, MLP head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    check_dropout,
    check_int_list,
    check_positive_int,
    frames_as_features,
)
from pivotal.models.registry import register

__all__ = ["CNN1DModel"]


@register("cnn1d")
class CNN1DModel(PivotalModel):
    """One ``Conv1d`` (``channels`` filters, no padding) per kernel size, ReLU, global max pool.

    The per-frame ``streams × channels`` vector is the convolution's input channels. The
    pooled branches are concatenated, dropped out and, with the context, fed to the MLP head;
    ``"hidden"`` is its ``head_size``-wide ReLU layer. Every kernel must fit in
    ``shape.frames``.
    """

    model_type: ClassVar[str] = "cnn"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        head_size: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(shape, targets)
        self.channels = check_positive_int("channels", channels)
        self.kernel_sizes = check_int_list("kernel_sizes", kernel_sizes)
        if max(self.kernel_sizes) > shape.frames:
            raise ValueError(
                f"hyperparameter kernel_sizes={self.kernel_sizes} has a kernel longer than the "
                f"input's {shape.frames} frames; use kernels of at most {shape.frames}"
            )
        self.head_size = check_positive_int("head_size", head_size)
        self.dropout = check_dropout("dropout", dropout)
        width = shape.streams * shape.channels
        self.convs = nn.ModuleList(nn.Conv1d(width, channels, k) for k in self.kernel_sizes)
        self.pool_dropout = nn.Dropout(dropout)
        body = channels * len(self.kernel_sizes)
        self.head = FusionHead(body, shape.context, head_size, targets, dropout)

    @property
    def hidden_size(self) -> int:
        return self.head_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "kernel_sizes": list(self.kernel_sizes),
            "head_size": self.head_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        series = frames_as_features(x).transpose(1, 2)  # (B, features, frames)
        pooled = [F.relu(conv(series)).amax(dim=-1) for conv in self.convs]
        return self.head(self.pool_dropout(torch.cat(pooled, dim=1)), context)
