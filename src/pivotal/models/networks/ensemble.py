"""Seed 001's EnsembleModel: a transformer, an LSTM-attention and a 1-D CNN, aggregated.

Each member is a full network for the same input and targets, built from its own
hyperparameter dict. The ensemble's ``"regression"`` (and ``"logits"``) is the weighted sum of
the members' with learned weights ``softmax(w)`` (one weight vector per output kind, starting
equal); ``"hidden"`` is the members' hidden vectors concatenated (transformer, LSTM, CNN).
A trainer that wants per-member losses calls ``model.members[name](x, context)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn

from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.networks.cnn1d import CNN1DModel
from pivotal.models.networks.lstm_attention import LSTMAttentionModel
from pivotal.models.networks.transformer import TransformerModel
from pivotal.models.registry import register

__all__ = ["EnsembleModel"]

MEMBERS: dict[str, type[PivotalModel]] = {
    "transformer": TransformerModel,
    "lstm_attention": LSTMAttentionModel,
    "cnn1d": CNN1DModel,
}


def _member(
    name: str, shape: InputShape, targets: TargetSpec, params: Mapping[str, Any] | None
) -> PivotalModel:
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"hyperparameter {name} must be a dict of {name} hyperparameters")
    try:
        return MEMBERS[name](shape, targets, **dict(params or {}))
    except TypeError as exc:
        raise ValueError(f"ensemble member {name!r}: {exc}") from None


@register("ensemble")
class EnsembleModel(PivotalModel):
    """Members ``transformer``, ``lstm_attention`` and ``cnn1d`` with learned softmax weights.

    ``transformer``, ``lstm_attention`` and ``cnn1d`` are the members' keyword
    hyperparameters (``None``: that model's defaults). ``mixture_weights()`` reports the
    current weights.
    """

    model_type: ClassVar[str] = "ensemble"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        *,
        transformer: Mapping[str, Any] | None = None,
        lstm_attention: Mapping[str, Any] | None = None,
        cnn1d: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(shape, targets)
        params = {"transformer": transformer, "lstm_attention": lstm_attention, "cnn1d": cnn1d}
        self.members = nn.ModuleDict(
            {name: _member(name, shape, targets, p) for name, p in params.items()}
        )
        n = len(self.members)
        self.regression_weights = nn.Parameter(torch.zeros(n)) if targets.regression else None
        self.logit_weights = nn.Parameter(torch.zeros(n)) if targets.classes else None

    def _members(self) -> list[tuple[str, PivotalModel]]:
        return [(name, cast(PivotalModel, m)) for name, m in self.members.items()]

    @property
    def hidden_size(self) -> int:
        return sum(m.hidden_size for _, m in self._members())

    def hyperparameters(self) -> dict[str, Any]:
        return {name: m.hyperparameters() for name, m in self._members()}

    def mixture_weights(self) -> dict[str, dict[str, float]]:
        """Current member weights by output kind: ``{"regression": {"transformer": w}, ...}``."""
        result: dict[str, dict[str, float]] = {}
        for kind, w in (("regression", self.regression_weights), ("logits", self.logit_weights)):
            if w is not None:
                probs = torch.softmax(w.detach(), 0).tolist()
                result[kind] = dict(zip(self.members.keys(), probs, strict=True))
        return result

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        check_batch(self.shape, x, context)
        outs = [member(x, context) for member in self.members.values()]
        result = {"hidden": torch.cat([o["hidden"] for o in outs], dim=1)}
        for key, w in (("regression", self.regression_weights), ("logits", self.logit_weights)):
            if w is not None:
                stacked = torch.stack([o[key] for o in outs], dim=-1)  # (B, n_out, members)
                result[key] = stacked @ torch.softmax(w, 0)
        return result
