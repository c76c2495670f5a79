"""The contract every network in :mod:`pivotal.models` follows.

A model reads the encoded standardized input (:class:`~pivotal.features.inputs.InputEncoder`):

- ``x``: float32 ``(batch, streams, frames, channels)``: candle streams (the spec's timeframes,
  then its reference timeframes), frames oldest → newest, channels as in the encoder's
  layout (OHLCV relative to the newest close, then per-candle feature columns);
- ``context``: float32 ``(batch, context)`` or ``None``: one vector per sample that is not a
  candle stream (latest COB summary, predictions of other models, microstructure).

and returns a ``dict`` of tensors, always with:

- ``"hidden"``: ``(batch, hidden_size)``, the representation other models may consume
  (seed 003's hidden states for the RL model);
- ``"regression"``: ``(batch, len(targets.regression))`` when the model has regression
  targets (in the targets' order);
- ``"logits"``: ``(batch, len(targets.classes))`` when it has a classification target
  (unnormalised; softmax gives probabilities).

Models may add their own keys (PivotCNN's per-level pivot vectors, the price model's extrema
probabilities). ``nn.Module`` subclasses only describe networks: the loop that trains them
lives in :mod:`pivotal.training`. :meth:`PivotalModel.config` returns the keyword arguments
that rebuild the same architecture (checkpoints store it).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["InputShape", "PivotalModel", "TargetSpec", "check_batch"]


@dataclass(frozen=True, slots=True)
class InputShape:
    """Shape of one sample: ``x`` is ``(streams, frames, channels)``, ``context`` ``(context,)``."""

    streams: int
    frames: int
    channels: int
    context: int = 0

    def __post_init__(self) -> None:
        for name in ("streams", "frames", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"InputShape.{name} must be a positive int, got {value!r}")
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 0:
            raise ValueError(f"InputShape.context must be an int >= 0, got {self.context!r}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What a model predicts: named regression outputs and/or the classes of one classifier."""

    regression: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "regression", tuple(str(r) for r in self.regression))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.regression and not self.classes:
            raise ValueError("TargetSpec needs at least one regression target or two classes")
        if len(self.classes) == 1:
            raise ValueError("TargetSpec.classes needs at least two classes, got one")
        for name, values in (("regression", self.regression), ("classes", self.classes)):
            if len(set(values)) != len(values):
                raise ValueError(f"TargetSpec.{name} repeats a name: {list(values)}")

    def to_dict(self) -> dict[str, list[str]]:
        return {"regression": list(self.regression), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetSpec:
        return cls(tuple(data.get("regression", ())), tuple(data.get("classes", ())))


def check_batch(shape: InputShape, x: torch.Tensor, context: torch.Tensor | None) -> None:
    """Raise ``ValueError`` unless ``x``/``context`` match ``shape`` and are finite."""
    expected = (shape.streams, shape.frames, shape.channels)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"x must have shape (batch, {', '.join(map(str, expected))}) "
            f"(batch, streams, frames, channels), got {tuple(x.shape)}; the model was built "
            "for another input layout"
        )
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinity; encode inputs with InputEncoder (NaN → 0)")
    if shape.context:
        if context is None or tuple(context.shape) != (x.shape[0], shape.context):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context must have shape (batch, {shape.context}), got {got}")
        if not torch.isfinite(context).all():
            raise ValueError("context contains NaN or infinity")
    elif context is not None and context.numel():
        raise ValueError("context given, but the model was built with InputShape.context=0")


class PivotalModel(nn.Module):
    """Base of every registered network: ``forward(x, context) -> dict[str, Tensor]``."""

    model_type: ClassVar[str] = "model"
    """Seed 003's ``ModelOutput.model_type``: ``"cnn"``, ``"lstm"``, ``"transformer"``, ..."""

    def __init__(self, shape: InputShape, targets: TargetSpec) -> None:
        super().__init__()
        self.shape = shape
        self.targets = targets

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width of ``outputs["hidden"]``."""

    @abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """Keyword arguments (besides shape and targets) that rebuild this architecture."""

    @abstractmethod
    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]: ...

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the network: shape, targets and hyperparameters."""
        return {
            "shape": self.shape.to_dict(),
            "targets": self.targets.to_dict(),
            "hyperparameters": self.hyperparameters(),
        }
