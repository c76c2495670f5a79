"""What the learning loop reports: :class:`LearningEvent` and its kinds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["GATE", "METRIC", "NEW_WEIGHTS", "EventKind", "LearningEvent"]

EventKind = Literal[
    "promoted",
    "rolled_back",
    "degradation",
    "retrain_promoted",
    "retrain_rolled_back",
    "checkpoint_saved",
    "checkpoint_loaded",
    "checkpoint_skipped",
    "retrain_requested",
]
GATE = "gate"
"""``LearningEvent.model`` of the gate's events."""
METRIC = "holdout_accuracy"
"""The metric online checkpoints are ranked by."""
NEW_WEIGHTS: frozenset[str] = frozenset({"promoted", "retrain_promoted", "checkpoint_loaded"})
"""Event kinds after which a model's weights differ from before."""


@dataclass(frozen=True, slots=True)
class LearningEvent:
    """Something the learning loop did at step ``timestamp`` (UTC ms) of ``symbol``.

    ``before``/``after`` are on ``metric``: the current model's and the candidate's holdout
    score (promoted, rolled_back, retrain_*: ``holdout_log_loss``, lower is better, or
    ``holdout_accuracy``), the best and current rolling accuracy (degradation,
    retrain_requested: ``rolling_accuracy``) or the checkpoint's holdout accuracy
    (checkpoint_*; ``before`` None). ``details``: the candidate's and current model's
    accuracy and log-loss by name. ``symbol`` is empty for checkpoint_loaded/skipped (at
    start, no step).

    ``applied_at``: for the results of a candidate (promoted, rolled_back, retrain_*,
    checkpoint_saved), the close time (UTC ms) of the step before whose inference the result
    took effect (the candidate trains on a worker thread after step ``timestamp``); None for
    the events that take effect at once.
    """

    timestamp: int
    symbol: str
    model: str
    kind: EventKind
    before: float | None
    after: float | None
    message: str
    metric: str = ""
    details: Mapping[str, float] = field(default_factory=dict)
    applied_at: int | None = None

    @property
    def difference(self) -> float | None:
        """``after - before`` (candidate minus current), None when either is missing."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before
