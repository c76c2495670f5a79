"""Seed 001's LSTMAttentionModel: stacked LSTM → multi-head attention → MLP head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    LastStepAttention,
    check_dropout,
    check_heads,
    check_positive_int,
    frames_as_features,
)
from pivotal.models.registry import register

__all__ = ["LSTMAttentionModel"]


@register("lstm_attention")
class LSTMAttentionModel(PivotalModel):
    """``num_layers`` LSTM (width ``lstm_size``), ``num_heads``-head attention, MLP head.

    Each frame's ``streams × channels`` vector is one step. The attention output at the
    newest step (the seed reads ``[:, -1]``) and the context feed the head; ``"hidden"`` is
    its ``head_size``-wide ReLU layer.
    """

    model_type: ClassVar[str] = "lstm"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        lstm_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 8,
        head_size: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(shape, targets)
        self.lstm_size = check_positive_int("lstm_size", lstm_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_heads = check_positive_int("num_heads", num_heads)
        check_heads("lstm_size", lstm_size, "num_heads", num_heads)
        self.head_size = check_positive_int("head_size", head_size)
        self.dropout = check_dropout("dropout", dropout)
        self.lstm = nn.LSTM(
            shape.streams * shape.channels,
            lstm_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = LastStepAttention(lstm_size, num_heads, dropout, residual=False)
        self.head = FusionHead(lstm_size, shape.context, head_size, targets, dropout)

    @property
    def hidden_size(self) -> int:
        return self.head_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lstm_size": self.lstm_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "head_size": self.head_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        sequence, _ = self.lstm(frames_as_features(x))
        return self.head(self.attention(sequence), context)
