"""Seed 002's hybrid TradingModel: conv features, LSTM, attention and an indicator branch.

- feature extractor: ``Conv1d(streams × channels → conv_channels, kernel_size)`` → ReLU →
  ``BatchNorm1d`` → dropout, over frames (no padding: ``frames − kernel_size + 1`` steps);
- temporal: ``num_layers`` LSTM (``lstm_size``), ``num_heads``-head attention at the newest
  step with a residual connection;
- technical branch: ``Linear → ReLU`` (``technical_size``) over the newest frame of the
  primary stream (stream 0): its indicator columns, i.e. the channels after the encoder's 7
  base channels, or the channels it has when there are no indicator columns;
- predictor: ``Linear([temporal, technical, context] → predictor_size)`` → ReLU → dropout
  (``"hidden"``) → outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pivotal.features.inputs import BASE_CHANNELS
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

__all__ = ["HybridModel", "indicator_channels"]


def indicator_channels(channels: int) -> slice:
    """Channels the technical branch reads: those after the base channels, else all of them."""
    base = len(BASE_CHANNELS)
    return slice(base, channels) if channels > base else slice(0, channels)


@register("hybrid")
class HybridModel(PivotalModel):
    """Conv + LSTM + attention + indicator network (the reference sizes)."""

    model_type: ClassVar[str] = "hybrid"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        conv_channels: int = 64,
        kernel_size: int = 3,
        lstm_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        technical_size: int = 64,
        predictor_size: int = 64,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(shape, targets)
        self.conv_channels = check_positive_int("conv_channels", conv_channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size > shape.frames:
            raise ValueError(
                f"hyperparameter kernel_size={kernel_size} is longer than the input's "
                f"{shape.frames} frames; use at most {shape.frames}"
            )
        self.lstm_size = check_positive_int("lstm_size", lstm_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_heads = check_positive_int("num_heads", num_heads)
        check_heads("lstm_size", lstm_size, "num_heads", num_heads)
        self.technical_size = check_positive_int("technical_size", technical_size)
        self.predictor_size = check_positive_int("predictor_size", predictor_size)
        self.dropout = check_dropout("dropout", dropout)
        self.feature_extractor = nn.Sequential(
            nn.Conv1d(shape.streams * shape.channels, conv_channels, kernel_size),
            nn.ReLU(),
            nn.BatchNorm1d(conv_channels),
            nn.Dropout(dropout),
        )
        self.lstm = nn.LSTM(
            conv_channels,
            lstm_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = LastStepAttention(lstm_size, num_heads, dropout, residual=True)
        self.indicators = indicator_channels(shape.channels)
        n_indicators = self.indicators.stop - self.indicators.start
        self.technical = nn.Sequential(nn.Linear(n_indicators, technical_size), nn.ReLU())
        self.predictor = FusionHead(
            lstm_size + technical_size, shape.context, predictor_size, targets, dropout
        )

    @property
    def hidden_size(self) -> int:
        return self.predictor_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "conv_channels": self.conv_channels,
            "kernel_size": self.kernel_size,
            "lstm_size": self.lstm_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "technical_size": self.technical_size,
            "predictor_size": self.predictor_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        features = self.feature_extractor(frames_as_features(x).transpose(1, 2))
        sequence, _ = self.lstm(features.transpose(1, 2))
        temporal = self.attention(sequence)
        technical = self.technical(x[:, 0, -1, self.indicators])
        return self.predictor(torch.cat([temporal, technical], dim=1), context)
