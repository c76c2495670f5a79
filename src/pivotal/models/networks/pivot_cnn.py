"""Seed 003's CNN model: next pivot of each Williams level from multi-timeframe candles.

Input: the encoded streams (the traded symbol's timeframes, then the reference symbol's) and,
when ``shape.context > 0``, a context vector (COB summary, past pivots, other models'
predictions). Architecture:

1. **Conv towers**, one per stream: ``Conv1d(k, stride) → ReLU`` per entry of
   ``conv_channels``, ``padding = k // 2`` so every layer keeps ``ceil(frames / stride)``
   steps. ``shared_towers=True`` (default) runs one tower over every stream (the streams share
   their channel layout) plus a learned per-stream bias after the first layer, so the tower
   knows which timeframe it reads; ``False`` gives each stream its own weights (grouped
   convolution).
2. **Fusion**: the towers' outputs are stacked by position from the newest frame (the streams'
   newest candles all closed at the sample time) into one sequence of ``streams × channels``
   vectors; a ``recurrent`` (GRU or LSTM) layer runs over it, and additive attention pools its
   outputs.
3. **Context branch**: ``Linear → ReLU`` (``context_size``) over the context vector.
4. **Head**: ``[conv_features, recurrent_state, attention, context] → fusion_size`` ReLU
   (``"hidden"``) → outputs.

Outputs, besides the contract's ``"hidden"``/``"regression"``/``"logits"``:

- ``"pivot_price"`` ``(batch, levels)``: the next pivot of level 1..levels, price relative to
  the primary stream's newest close (``price / close − 1``);
- ``"pivot_time"`` ``(batch, levels)``: ``log`` of the primary-stream bars from now until
  that pivot (≥ 1 bar, so ≥ 0; a softplus keeps it there);
- ``"pivot_confidence"`` ``(batch, levels)`` in (0, 1): probability that the predicted pivot
  is right (sigmoid);
- ``"action_logits"`` ``(batch, 3)``: unnormalised scores of :data:`ACTIONS` (BUY, SELL,
  HOLD);
- ``"conv_features"`` ``(batch, streams × conv_channels[-1])``: each tower's output averaged
  over time (hidden state for the RL model);
- ``"recurrent_state"`` ``(batch, recurrent_size)``: the recurrent layer's final hidden state.

The default size (3 conv layers of 32/48/64, GRU 64) keeps single-sample CPU inference on the
seed's 5 streams × 300 frames in the low milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.common import (
    FusionHead,
    check_bool,
    check_choice,
    check_dropout,
    check_int_list,
    check_positive_int,
)
from pivotal.models.registry import register

__all__ = ["ACTIONS", "PivotCNN"]

ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")
"""Order of ``"action_logits"``'s columns."""


class ConvTowers(nn.Module):
    """Per-stream conv towers: ``(batch, streams, frames, channels)`` → ``(B, S, C', steps)``."""

    def __init__(
        self, streams: int, channels: int, widths: list[int], kernel: int, stride: int, shared: bool
    ) -> None:
        super().__init__()
        self.streams = streams
        self.shared = shared
        groups = 1 if shared else streams
        scale = 1 if shared else streams
        layers: list[nn.Module] = []
        previous = channels
        for width in widths:
            layers.append(
                nn.Conv1d(
                    previous * scale,
                    width * scale,
                    kernel,
                    stride=stride,
                    padding=kernel // 2,
                    groups=groups,
                )
            )
            previous = width
        self.convs = nn.ModuleList(layers)
        self.stream_bias = nn.Parameter(torch.zeros(streams, widths[0], 1)) if shared else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, streams, frames, channels = x.shape
        if self.shared:
            h = x.reshape(batch * streams, frames, channels).transpose(1, 2)
        else:
            h = x.permute(0, 1, 3, 2).reshape(batch, streams * channels, frames)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i == 0 and self.stream_bias is not None:
                h = (h.view(batch, streams, -1, h.shape[-1]) + self.stream_bias).flatten(0, 1)
            h = F.relu(h)
        return h.reshape(batch, streams, -1, h.shape[-1])


@register("pivot_cnn")
class PivotCNN(PivotalModel):
    """Multi-timeframe, multi-symbol pivot predictor with a BUY/SELL/HOLD head."""

    model_type: ClassVar[str] = "cnn"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        levels: int = 5,
        conv_channels: Sequence[int] = (32, 48, 64),
        kernel_size: int = 5,
        stride: int = 2,
        shared_towers: bool = True,
        recurrent: str = "gru",
        recurrent_size: int = 64,
        context_size: int = 32,
        fusion_size: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(shape, targets)
        self.levels = check_positive_int("levels", levels)
        self.conv_channels = check_int_list("conv_channels", conv_channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)
        self.shared_towers = check_bool("shared_towers", shared_towers)
        self.recurrent_kind = check_choice("recurrent", recurrent, ("gru", "lstm"))
        self.recurrent_size = check_positive_int("recurrent_size", recurrent_size)
        self.context_size = check_positive_int("context_size", context_size)
        self.fusion_size = check_positive_int("fusion_size", fusion_size)
        self.dropout = check_dropout("dropout", dropout)

        self.towers = ConvTowers(
            shape.streams,
            shape.channels,
            self.conv_channels,
            kernel_size,
            stride,
            shared_towers,
        )
        step_width = shape.streams * self.conv_channels[-1]
        rnn = nn.GRU if recurrent == "gru" else nn.LSTM
        self.recurrent = rnn(step_width, recurrent_size, batch_first=True)
        self.attention_score = nn.Linear(recurrent_size, 1)
        self.context_branch = (
            nn.Sequential(nn.Linear(shape.context, context_size), nn.ReLU())
            if shape.context
            else None
        )
        body = step_width + 2 * recurrent_size + (context_size if shape.context else 0)
        self.head = FusionHead(
            body,
            0,
            fusion_size,
            targets,
            dropout,
            extra={
                "pivot_price": levels,
                "pivot_time": levels,
                "pivot_confidence": levels,
                "action_logits": len(ACTIONS),
            },
        )

    @property
    def hidden_size(self) -> int:
        return self.fusion_size

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "conv_channels": list(self.conv_channels),
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "shared_towers": self.shared_towers,
            "recurrent": self.recurrent_kind,
            "recurrent_size": self.recurrent_size,
            "context_size": self.context_size,
            "fusion_size": self.fusion_size,
            "dropout": self.dropout,
        }

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        towers = self.towers(x)  # (B, S, C', steps)
        conv_features = towers.mean(dim=-1).flatten(1)
        sequence = towers.flatten(1, 2).transpose(1, 2)  # (B, steps, S * C')
        outputs, state = self.recurrent(sequence)
        h = state[0] if isinstance(state, tuple) else state
        recurrent_state = h[-1]
        weights = torch.softmax(self.attention_score(outputs), dim=1)  # (B, steps, 1)
        attended = (weights * outputs).sum(dim=1)
        parts = [conv_features, recurrent_state, attended]
        if self.context_branch is not None and context is not None:
            parts.append(self.context_branch(context))
        result = self.head(torch.cat(parts, dim=1), None)
        result["pivot_time"] = F.softplus(result["pivot_time"])
        result["pivot_confidence"] = torch.sigmoid(result["pivot_confidence"])
        result["conv_features"] = conv_features
        result["recurrent_state"] = recurrent_state
        return result
