"""The supervised loss of a model's :class:`~pivotal.models.base.TargetSpec`.

``total = regression_weight * MSE + classification_weight * CE`` where

- MSE is the mean squared error over the regression entries that are present (NaN targets
  are missing and ignored; a batch without any present entry contributes 0);
- CE is the mean cross-entropy of the logits over the samples whose label is not ``-1``
  (a batch without any labelled sample contributes 0).

Both are computed in float32 even when the model ran under mixed precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from pivotal.models.base import TargetSpec

__all__ = ["LossOutput", "TaskLoss"]


@dataclass(frozen=True, slots=True)
class LossOutput:
    """``total`` (scalar, differentiable) and its weighted-before parts (detached scalars)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


class TaskLoss:
    """MSE over present regression targets plus cross-entropy over labelled samples.

    ``outputs`` are a model's output dict (``"regression"``, ``"logits"``), ``batch`` a
    :mod:`pivotal.training.data` batch (``"regression"``, ``"label"``). A part whose weight
    is 0 is neither computed nor required.
    """

    def __init__(
        self,
        targets: TargetSpec,
        regression_weight: float = 1.0,
        classification_weight: float = 1.0,
    ) -> None:
        if not isinstance(targets, TargetSpec):
            raise TypeError(f"targets must be a TargetSpec, got {type(targets).__name__}")
        for name, weight in (
            ("regression_weight", regression_weight),
            ("classification_weight", classification_weight),
        ):
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight}")
        self.targets = targets
        self.regression_weight = float(regression_weight) if targets.regression else 0.0
        self.classification_weight = float(classification_weight) if targets.classes else 0.0
        if self.regression_weight == 0 and self.classification_weight == 0:
            raise ValueError(
                "TaskLoss has nothing to optimise: give a positive weight to a target kind "
                f"the TargetSpec has (regression={list(targets.regression)}, "
                f"classes={list(targets.classes)})"
            )

    @staticmethod
    def _pair(
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        out_key: str,
        batch_key: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if out_key not in outputs:
            raise ValueError(f"the model's outputs have no {out_key!r}, but its targets need it")
        if batch_key not in batch:
            raise ValueError(
                f"the batch has no {batch_key!r} targets, but the loss needs them; build the "
                f"dataset with {'regression' if batch_key == 'regression' else 'labels'}=... "
                "or set that part's weight to 0"
            )
        return outputs[out_key].float(), batch[batch_key]

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> LossOutput:
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        if self.regression_weight:
            pred, target = self._pair(outputs, batch, "regression", "regression")
            if pred.shape != target.shape:
                raise ValueError(
                    f"regression output {tuple(pred.shape)} and targets {tuple(target.shape)} "
                    f"differ; the model predicts {list(self.targets.regression)}"
                )
            present = ~torch.isnan(target)
            diff = torch.where(present, pred - torch.nan_to_num(target.float()), 0.0)
            mse = diff.square().sum() / present.sum().clamp(min=1)
            parts["regression"] = mse.detach()
            total = self.regression_weight * mse
        if self.classification_weight:
            logits, labels = self._pair(outputs, batch, "logits", "label")
            n_classes = len(self.targets.classes)
            if logits.dim() != 2 or logits.shape[1] != n_classes or len(labels) != len(logits):
                raise ValueError(
                    f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not fit "
                    f"{n_classes} classes {list(self.targets.classes)}"
                )
            labels = labels.long()
            if labels.numel() and (int(labels.max()) >= n_classes or int(labels.min()) < -1):
                raise ValueError(
                    f"class labels must lie in [-1, {n_classes - 1}] for classes "
                    f"{list(self.targets.classes)}, got {int(labels.min())}..{int(labels.max())}"
                )
            labelled = (labels >= 0).sum().clamp(min=1)
            ce = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum") / labelled
            parts["classification"] = ce.detach()
            weighted = self.classification_weight * ce
            total = weighted if total is None else total + weighted
        assert total is not None  # guaranteed by __init__: at least one weight is positive
        return LossOutput(total, parts)
