"""Judging an online candidate against the current model on held-out outcomes.

Both are scored on the same holdout (:func:`holdout_scores`):

- ``accuracy``: the share of examples whose predicted action (argmax) equals the outcome
  label (the model's own ``score``);
- ``log_loss``: the mean of ``-log p(label)`` over the examples, from the model's
  ``log_loss`` when it has one, else from its BUY/SELL/HOLD probabilities on the replayed
  stored tensors (``replay``); absent when neither exists (a gate without ``log_loss``).

Accuracy alone is too coarse to judge a small online update: an update that moves every
probability toward the outcomes but flips no argmax leaves the accuracy exactly where it
was, and would be rolled back forever (what happened to the PivotCNN's action head, whose
inputs vary little from bar to bar). So with ``LearningConfig.score = "log_loss"`` (the
default) a candidate is promoted when its holdout log-loss is lower than the current
model's by more than ``min_improvement`` **and** its holdout accuracy is not lower;
with ``"accuracy"`` (or when no log-loss can be computed) when its accuracy is higher by
more than ``min_improvement``. :class:`Verdict` carries both scores of both models, the
deciding metric and the difference (candidate minus current) for the learning event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pivotal.orchestrator.contracts import VOTE_ACTIONS, TrainingExample, action_probabilities

__all__ = ["PROB_FLOOR", "Scores", "Verdict", "holdout_scores", "judge"]

PROB_FLOOR = 1e-12
"""Probabilities are clipped to this before the log (a certain wrong answer costs ~27.6)."""


@dataclass(frozen=True, slots=True)
class Scores:
    """One model's holdout scores: accuracy in [0, 1] and log-loss (None when unknown)."""

    accuracy: float
    log_loss: float | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A candidate judged against the current model (module docstring)."""

    promote: bool
    metric: str
    """``"holdout_log_loss"`` (lower is better) or ``"holdout_accuracy"``."""
    current: float
    candidate: float
    current_scores: Scores
    candidate_scores: Scores
    threshold: float

    @property
    def difference(self) -> float:
        """Candidate minus current, on ``metric``."""
        return self.candidate - self.current

    def details(self) -> dict[str, float]:
        """Both scores of both models, by name (for the event and the checkpoint)."""
        out = {
            "accuracy_current": self.current_scores.accuracy,
            "accuracy_candidate": self.candidate_scores.accuracy,
        }
        if self.current_scores.log_loss is not None:
            out["log_loss_current"] = self.current_scores.log_loss
        if self.candidate_scores.log_loss is not None:
            out["log_loss_candidate"] = self.candidate_scores.log_loss
        return out

    def describe(self) -> str:
        """``log-loss 1.0921 vs current 1.0986 (difference -0.0065, lower is better),
        accuracy 0.398 vs 0.398``."""
        acc = f"accuracy {self.candidate_scores.accuracy:.3f} vs {self.current_scores.accuracy:.3f}"
        if self.metric == "holdout_accuracy":
            return (
                f"accuracy {self.candidate:.4f} vs current {self.current:.4f} "
                f"(difference {self.difference:+.4f}, must exceed {self.threshold:g})"
            )
        text = (
            f"log-loss {self.candidate:.4f} vs current {self.current:.4f} (difference "
            f"{self.difference:+.4f}, must be below {0.0 - self.threshold:g}), {acc}"
        )
        fell = self.candidate_scores.accuracy < self.current_scores.accuracy
        if fell and self.difference < -self.threshold:
            text += " (accuracy fell)"
        return text


def _replayed_log_loss(target: Any, held: Sequence[Any]) -> float | None:
    if not hasattr(target, "replay") or not all(isinstance(e, TrainingExample) for e in held):
        return None
    total = 0.0
    for e in held:
        output = target.replay(e.symbol, e.timestamp, e.tensors)
        p = action_probabilities(output)[VOTE_ACTIONS.index(e.outcome.label)]
        total -= math.log(max(float(p), PROB_FLOOR))
    return total / len(held)


def holdout_scores(target: Any, held: Sequence[Any]) -> Scores:
    """``target``'s accuracy (its ``score``) and log-loss on ``held`` (module docstring)."""
    both = getattr(target, "scores", None)
    if callable(both):  # one forward pass for both
        accuracy, loss = (float(v) for v in both(held))
    else:
        accuracy = float(target.score(held))
        own = getattr(target, "log_loss", None)
        loss = float(own(held)) if callable(own) else _replayed_log_loss(target, held)
    if loss is not None and not np.isfinite(loss):
        raise ValueError(f"holdout log-loss is {loss}")
    return Scores(accuracy, loss)


def judge(current: Scores, candidate: Scores, *, score: str, min_improvement: float) -> Verdict:
    """Whether ``candidate`` beats ``current`` under ``score`` (module docstring)."""
    if score == "log_loss" and current.log_loss is not None and candidate.log_loss is not None:
        better = candidate.log_loss < current.log_loss - min_improvement
        promote = better and candidate.accuracy >= current.accuracy
        return Verdict(
            promote,
            "holdout_log_loss",
            current.log_loss,
            candidate.log_loss,
            current,
            candidate,
            min_improvement,
        )
    promote = candidate.accuracy > current.accuracy + min_improvement
    return Verdict(
        promote,
        "holdout_accuracy",
        current.accuracy,
        candidate.accuracy,
        current,
        candidate,
        min_improvement,
    )
