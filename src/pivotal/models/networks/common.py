"""Building blocks the networks share: stream flattening, positional encoding, heads, checks.

- :func:`frames_as_features` turns the multi-stream input ``(batch, streams, frames,
  channels)`` into one feature vector per frame, ``(batch, frames, streams * channels)``;
- :class:`SinusoidalPositionalEncoding` adds Vaswani et al.'s fixed position signal;
- :class:`LastStepAttention` lets the newest step attend over the whole sequence;
- :class:`FusionHead` joins a network's body features with the context vector into
  ``"hidden"`` and maps it to ``"regression"``, ``"logits"`` and model-specific outputs;
- ``check_*`` validate hyperparameters with messages that say what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pivotal.models.base import TargetSpec

__all__ = [
    "FusionHead",
    "LastStepAttention",
    "SinusoidalPositionalEncoding",
    "check_bool",
    "check_choice",
    "check_dropout",
    "check_heads",
    "check_int_list",
    "check_positive_int",
    "frames_as_features",
]


def frames_as_features(x: torch.Tensor) -> torch.Tensor:
    """``(batch, streams, frames, channels)`` → ``(batch, frames, streams * channels)``.

    Frame ``i`` of every stream goes into step ``i``'s feature vector, stream-major (stream 0's
    channels first). Streams of different timeframes are aligned by position from the newest
    frame, which is the candle closed last in every stream.
    """
    batch, streams, frames, channels = x.shape
    return x.permute(0, 2, 1, 3).reshape(batch, frames, streams * channels)


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int ≥ 1; ``ValueError`` naming the hyperparameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"hyperparameter {name} must be a positive int, got {value!r}")
    return value


def check_dropout(name: str, value: object) -> float:
    """``value`` as a float in [0, 1); ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"hyperparameter {name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"hyperparameter {name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"hyperparameter {name} must be one of {list(allowed)}, got {value!r}")
    return str(value)


def check_int_list(name: str, value: object) -> list[int]:
    """A non-empty sequence of positive ints (a list, for JSON-friendly configs)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"hyperparameter {name} must be a non-empty list of ints, got {value!r}")
    return [check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value)]


def check_heads(d_model_name: str, d_model: int, heads_name: str, heads: int) -> None:
    """Attention needs the embedding width to be a multiple of the number of heads."""
    if d_model % heads:
        raise ValueError(
            f"hyperparameter {d_model_name}={d_model} must be divisible by "
            f"{heads_name}={heads}; change one of them"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds ``sin``/``cos`` position signals to ``(batch, steps, d_model)``; no parameters.

    Position 0 is the oldest frame. The table is a non-persistent buffer, rebuilt from
    ``(d_model, max_len)`` and not stored in ``state_dict``.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        rate = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model)
        )
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate[: d_model // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        if steps > self.table.shape[0]:
            raise ValueError(
                f"sequence of {steps} steps is longer than the encoding's {self.table.shape[0]}"
            )
        return x + self.table[:steps]


class LastStepAttention(nn.Module):
    """Multi-head attention with the newest step as query over all steps (keys, values).

    Equal to full self-attention followed by taking the newest step (nothing after it mixes
    steps), at a fraction of the cost. Returns ``(batch, embed_dim)``; with ``residual`` the
    newest step's own vector is added (a residual connection).
    """

    def __init__(self, embed_dim: int, heads: int, dropout: float, *, residual: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, heads, dropout=dropout, batch_first=True)
        self.residual = residual

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        last = sequence[:, -1:]
        attended, _ = self.attention(last, sequence, sequence, need_weights=False)
        out = attended[:, 0]
        return out + last[:, 0] if self.residual else out


class FusionHead(nn.Module):
    """``hidden = dropout(relu(Linear([body, context])))``, then one ``Linear`` per output.

    The context vector (COB summary, other models' predictions) joins here, so ``"hidden"``
    carries everything the outputs are computed from. Returns ``{"hidden": (batch, size),
    "regression": (batch, len(targets.regression)), "logits": (batch, len(targets.classes)),
    **extra}`` (regression/logits only when the targets have them); ``extra`` maps further
    output names to widths (linear, unnormalised: the model applies its own activations).
    """

    def __init__(
        self,
        body_size: int,
        context_size: int,
        size: int,
        targets: TargetSpec,
        dropout: float,
        extra: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.size = size
        self.fuse = nn.Sequential(
            nn.Linear(body_size + context_size, size), nn.ReLU(), nn.Dropout(dropout)
        )
        widths: dict[str, int] = {}
        if targets.regression:
            widths["regression"] = len(targets.regression)
        if targets.classes:
            widths["logits"] = len(targets.classes)
        for name, width in (extra or {}).items():
            if name in widths or name == "hidden":
                raise ValueError(f"output {name!r} is reserved by the network contract")
            widths[name] = width
        self.outputs = nn.ModuleDict({name: nn.Linear(size, w) for name, w in widths.items()})

    def forward(self, body: torch.Tensor, context: torch.Tensor | None) -> dict[str, torch.Tensor]:
        features = body if context is None or not context.numel() else torch.cat([body, context], 1)
        hidden = self.fuse(features)
        result = {"hidden": hidden}
        for name, layer in self.outputs.items():
            result[name] = layer(hidden)
        return result
