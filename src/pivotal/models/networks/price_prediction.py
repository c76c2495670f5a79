"""Seed 000's PricePredictionModel: stacked LSTM, self-attention, two linear layers.

The seed reads ``(price, volume)`` per step; here every frame's ``streams × channels`` vector
is one step (:func:`~pivotal.models.networks.common.frames_as_features`), so the model sees
the same price and volume columns plus the other streams and indicators. Besides the contract
outputs it predicts:

- ``"prices"`` ``(batch, horizon)``: the next ``horizon`` closes of the primary stream
  relative to the newest close (``close[t+k] / close[t] − 1``, the encoder's convention);
- ``"extrema"`` ``(batch, 2)``: logits of "a local maximum is ahead" and "a local minimum is
  ahead" (two independent binary indicators: apply ``sigmoid``, not ``softmax``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    check_dropout,
    check_positive_int,
    frames_as_features,
)
from pivotal.models.registry import register

__all__ = ["PricePredictionModel"]


class SelfAttentionPool(nn.Module):
    """Seed 000's self-attention with linear projections, read at the newest step.

    ``q = W_q h_T``, ``k = W_k h``, ``v = W_v h``; returns ``softmax(q·kᵀ / √d) v``
    ``(batch, d)``, i.e. the newest step's row of full self-attention.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.scale = size**-0.5

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        q = self.query(sequence[:, -1:])  # (B, 1, d)
        k = self.key(sequence)
        v = self.value(sequence)
        weights = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (B, 1, T)
        return (weights @ v)[:, 0]


@register("price_prediction")
class PricePredictionModel(PivotalModel):
    """2-layer LSTM (``lstm_size`` 128) → self-attention → Linear → ReLU → Linear.

    ``"hidden"`` is the first linear layer's ReLU output (width ``lstm_size``, the seed's
    ``hidden_size → hidden_size``), computed from the attended LSTM state and the context.
    """

    model_type: ClassVar[str] = "lstm"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        lstm_size: int = 128,
        num_layers: int = 2,
        horizon: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(shape, targets)
        self.lstm_size = check_positive_int("lstm_size", lstm_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.horizon = check_positive_int("horizon", horizon)
        self.dropout = check_dropout("dropout", dropout)
        self.lstm = nn.LSTM(
            shape.streams * shape.channels,
            lstm_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = SelfAttentionPool(lstm_size)
        self.head = FusionHead(
            lstm_size,
            shape.context,
            lstm_size,
            targets,
            dropout,
            extra={"prices": horizon, "extrema": 2},
        )

    @property
    def hidden_size(self) -> int:
        return self.lstm_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lstm_size": self.lstm_size,
            "num_layers": self.num_layers,
            "horizon": self.horizon,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        sequence, _ = self.lstm(frames_as_features(x))
        return self.head(self.attention(sequence), context)
