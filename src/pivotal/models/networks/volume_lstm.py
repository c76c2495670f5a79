"""Seed 004's volume LSTM: an LSTM over the last ``lookback`` frames and a dense output.

With ``volume_only`` (the seed's single feature) each step is the ``log_volume`` channel of
every stream (``streams`` features); otherwise it is the whole ``streams × channels`` vector
(the seed's "incorporate additional features"). Besides the contract outputs it predicts
``"volume"`` ``(batch, 1)``: ``log1p`` of the primary stream's next-bar volume (base asset),
the encoder's ``log_volume`` scale.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from pivotal.features.inputs import BASE_CHANNELS
from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    check_bool,
    check_dropout,
    check_positive_int,
    frames_as_features,
)
from pivotal.models.registry import register

__all__ = ["VolumeLSTM"]

LOG_VOLUME = BASE_CHANNELS.index("log_volume")


@register("volume_lstm")
class VolumeLSTM(PivotalModel):
    """LSTM (``lstm_size`` 50 units by default) over the newest ``lookback`` frames → head.

    ``lookback=None`` reads every frame (``hyperparameters()`` then reports
    ``shape.frames``). The last LSTM state and the context feed a ``head_size``-wide ReLU
    layer (``"hidden"``) and the linear outputs (the seed's ``Dense``).
    """

    model_type: ClassVar[str] = "lstm"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        lookback: int | None = None,
        lstm_size: int = 50,
        num_layers: int = 1,
        volume_only: bool = True,
        head_size: int = 50,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(shape, targets)
        lookback = shape.frames if lookback is None else lookback
        self.lookback = check_positive_int("lookback", lookback)
        if lookback > shape.frames:
            raise ValueError(
                f"hyperparameter lookback={lookback} exceeds the input's {shape.frames} frames; "
                f"use at most {shape.frames} (or None for all of them)"
            )
        self.lstm_size = check_positive_int("lstm_size", lstm_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.volume_only = check_bool("volume_only", volume_only)
        if volume_only and shape.channels <= LOG_VOLUME:
            raise ValueError(
                f"volume_only needs the encoder's log_volume channel (index {LOG_VOLUME}), but "
                f"the input has {shape.channels} channels; use volume_only=False"
            )
        self.head_size = check_positive_int("head_size", head_size)
        self.dropout = check_dropout("dropout", dropout)
        width = shape.streams if volume_only else shape.streams * shape.channels
        self.lstm = nn.LSTM(
            width,
            lstm_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = FusionHead(
            lstm_size, shape.context, head_size, targets, dropout, extra={"volume": 1}
        )

    @property
    def hidden_size(self) -> int:
        return self.head_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lookback": self.lookback,
            "lstm_size": self.lstm_size,
            "num_layers": self.num_layers,
            "volume_only": self.volume_only,
            "head_size": self.head_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        window = x[:, :, -self.lookback :]
        if self.volume_only:
            steps = window[..., LOG_VOLUME].transpose(1, 2)  # (B, lookback, streams)
        else:
            steps = frames_as_features(window)
        _, (h, _) = self.lstm(steps)
        return self.head(h[-1], context)
