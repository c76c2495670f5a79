"""Seed 001's TransformerModel: embedding → positional encoding → encoder → MLP head.

Each frame's ``streams × channels`` vector is one token (oldest first); the encoder's output
at the newest token is the sequence summary (as the seed's ensemble reads it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    SinusoidalPositionalEncoding,
    check_dropout,
    check_heads,
    check_positive_int,
    frames_as_features,
)
from pivotal.models.registry import register

__all__ = ["TransformerModel"]


@register("transformer")
class TransformerModel(PivotalModel):
    """Linear embedding (``d_model``), sinusoidal positions, ``num_layers`` encoder layers.

    Encoder layers have ``nhead`` heads, a ``ff_multiplier × d_model`` feed-forward (the seed's
    ``hidden_dim * 4``) and ``dropout``. The newest token's encoding and the context feed the
    MLP head; ``"hidden"`` is its ``head_size``-wide ReLU layer. Embedding weights start
    uniform in ±0.1 (the seed's ``init_weights``).
    """

    model_type: ClassVar[str] = "transformer"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        d_model: int = 128,
        nhead: int = 8,
        num_layers: int = 2,
        ff_multiplier: int = 4,
        head_size: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(shape, targets)
        self.d_model = check_positive_int("d_model", d_model)
        self.nhead = check_positive_int("nhead", nhead)
        check_heads("d_model", d_model, "nhead", nhead)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.ff_multiplier = check_positive_int("ff_multiplier", ff_multiplier)
        self.head_size = check_positive_int("head_size", head_size)
        self.dropout = check_dropout("dropout", dropout)
        self.embedding = nn.Linear(shape.streams * shape.channels, d_model)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.positions = SinusoidalPositionalEncoding(d_model, shape.frames)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, ff_multiplier * d_model, dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = FusionHead(d_model, shape.context, head_size, targets, dropout)

    @property
    def hidden_size(self) -> int:
        return self.head_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "d_model": self.d_model,
            "nhead": self.nhead,
            "num_layers": self.num_layers,
            "ff_multiplier": self.ff_multiplier,
            "head_size": self.head_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        tokens = self.positions(self.embedding(frames_as_features(x)))
        encoded = self.encoder(tokens)
        return self.head(encoded[:, -1], context)
