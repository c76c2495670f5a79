"""The learning loop's checkpoints: what each one learned until, and which a run may load.

**Learned until.** Every checkpoint the learning loop writes records, in its metrics (file
and index):

- ``learned_until_ms``: the close time (UTC ms) of the newest candle whose price went into
  the weights, i.e. the newest matured outcome it was trained on *or judged on* (a candidate
  is chosen on held-out outcomes, so those count as learned). It is carried forward: a model
  that continued from a loaded checkpoint keeps the later of the two.
- ``trained_until_ms``: the expert's ``trained_until_ms`` when saved (the end of the data of
  the whole model it continued from, when the expert knows it);
- ``newest_candle_open_ms`` (that candle's open time, when the bar length is known),
  ``newest_outcome_ms`` (the prediction time of the newest matured outcome of this update) and
  ``newest_outcome_matured_ms`` (when it matured).

**Which may be loaded** (:func:`parse_load_rule`), a parameter the run builder passes, never a
mode test:

- ``"best"``: the best-ranked loadable checkpoint, whenever it was learned (a paper or live
  run continues from the best model so far);
- ``"before:<ms>"``: only checkpoints whose newest learned candle closed at or before ``<ms>``,
  the open time of the run's first learning bar (a backtest or replay: anything learned later
  would be look-ahead). A checkpoint without ``learned_until_ms`` (written by an older pivotal)
  is skipped: nothing proves it did not learn the future. So is one whose whole model was
  trained on data later than both ``<ms>`` and the run's own expert (an online checkpoint
  grown from another, newer base model): loading it would know more of the future than the
  model the user chose.
- ``"none"``: no online checkpoint is loaded.

Each checkpoint considered becomes a :class:`CheckpointChoice` (loaded or skipped, and why).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pivotal.core.clock import iso_utc
from pivotal.core.errors import ModelError
from pivotal.orchestrator.contracts import TrainableExpert
from pivotal.training.checkpoint_manager import CheckpointEntry, CheckpointManager

__all__ = [
    "LEARNED_UNTIL",
    "TRAINED_UNTIL",
    "CheckpointChoice",
    "ExpertCheckpoints",
    "LoadRule",
    "expert_data_warnings",
    "iso_utc",
    "parse_load_rule",
]

logger = logging.getLogger(__name__)

LEARNED_UNTIL = "learned_until_ms"
"""Metric key: close time (UTC ms) of the newest candle a checkpoint learned from."""
TRAINED_UNTIL = "trained_until_ms"
"""Metric key: the end of the data of the whole model (its base included), when known."""

Status = Literal["loaded", "skipped"]


@dataclass(frozen=True, slots=True)
class LoadRule:
    """Which online checkpoints a run loads at start (module docstring)."""

    kind: Literal["best", "before", "none"]
    before_ms: int | None = None

    def __str__(self) -> str:
        return f"before:{self.before_ms}" if self.kind == "before" else self.kind


def parse_load_rule(rule: str | LoadRule) -> LoadRule:
    """``"best"``, ``"none"`` or ``"before:<UTC ms>"`` as a :class:`LoadRule`."""
    if isinstance(rule, LoadRule):
        return rule
    text = str(rule).strip()
    if text in ("best", "none"):
        return LoadRule(text)  # type: ignore[arg-type]
    head, _, value = text.partition(":")
    if head == "before" and value.strip().lstrip("-").isdigit():
        return LoadRule("before", int(value))
    raise ValueError(
        f"load_online must be 'best', 'none' or 'before:<UTC ms>' (e.g. 'before:1700000000000'),"
        f" got {rule!r}"
    )


@dataclass(frozen=True, slots=True)
class CheckpointChoice:
    """One checkpoint a run considered: ``status`` loaded or skipped, and ``reason``."""

    path: Path
    model: str
    learned_until_ms: int | None
    status: Status
    reason: str
    outranked: bool = False
    """Skipped only because a better-ranked checkpoint was loaded (no event for it)."""
    created_at_ms: int = 0
    """When it was saved (the step time of its promotion)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data: path, model, learned_until (ISO UTC or None), status, reason."""
        return {
            "path": str(self.path),
            "model": self.model,
            "learned_until": iso_utc(self.learned_until_ms),
            "status": self.status,
            "reason": self.reason,
        }


def _learned_until(entry: CheckpointEntry, key: str = LEARNED_UNTIL) -> int | None:
    value = entry.metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    return int(value) if math.isfinite(float(value)) else None


class ExpertCheckpoints(CheckpointManager):
    """A :class:`CheckpointManager` whose files the expert writes itself.

    Same files, index, ranking and pruning as the manager, but the weights are written by
    :meth:`TrainableExpert.save` and read by :meth:`TrainableExpert.load`, since an expert
    need not be a single registered network.
    """

    def save_expert(
        self,
        expert: TrainableExpert,
        *,
        epoch: int,
        metrics: Mapping[str, float],
        created_at_ms: int,
    ) -> Path | None:
        """Save ``expert`` if it ranks among the best ``keep``; drop the ones it displaces.

        Returns the file, or None when it would not have been kept (nothing written).
        """
        value = self.ranking_value(metrics)
        if not self.admits(value):
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        written = Path(expert.save(self.path_for(epoch, value), metrics=dict(metrics)))
        self.record(written, epoch=epoch, value=value, metrics=metrics, created_at_ms=created_at_ms)
        return written

    def load_best_into(
        self, expert: TrainableExpert, rule: str | LoadRule = "best", *, model: str = ""
    ) -> tuple[CheckpointEntry | None, list[CheckpointChoice]]:
        """Load the best checkpoint that ``rule`` allows into ``expert`` (a corrupt one is
        skipped for the next best). Returns the loaded entry (None when none) and every
        checkpoint considered, best first, loaded or skipped with the reason."""
        rule = parse_load_rule(rule)
        name = model or self.model_name
        loaded: CheckpointEntry | None = None
        choices: list[CheckpointChoice] = []

        def choose(
            entry: CheckpointEntry, status: Status, reason: str, other: bool = False
        ) -> None:
            choices.append(
                CheckpointChoice(
                    entry.path, name, until, status, reason, other, entry.created_at_ms
                )
            )

        own = getattr(expert, "trained_until_ms", None)
        for entry in self.list():
            until = _learned_until(entry)
            base = _learned_until(entry, TRAINED_UNTIL)
            if rule.kind == "none":
                choose(entry, "skipped", "this run loads no online checkpoint")
                continue
            if loaded is not None:
                choose(entry, "skipped", f"a better-ranked one was loaded ({loaded.path})", True)
                continue
            if rule.kind == "before":
                cutoff = int(rule.before_ms or 0)
                if until is None:
                    choose(
                        entry,
                        "skipped",
                        "it records no learned-until time (written by an older pivotal), so it "
                        "may have learned after the run's first bar",
                    )
                    continue
                if until > cutoff:
                    choose(
                        entry,
                        "skipped",
                        f"learned until {iso_utc(until)}, after the run's first learning bar "
                        f"{iso_utc(cutoff)} (look-ahead)",
                    )
                    continue
                if base is not None and base > max(cutoff, int(own) if own is not None else 0):
                    choose(
                        entry,
                        "skipped",
                        f"its model was trained on data up to {iso_utc(base)}, after the run's "
                        f"first learning bar {iso_utc(cutoff)} and later than the run file's "
                        "expert (grown from another base model)",
                    )
                    continue
            try:
                expert.load(entry.path)
            except (ModelError, FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
                logger.warning("cannot load %s (%s); trying the next best", entry.path, exc)
                choose(entry, "skipped", f"cannot be loaded: {exc}")
                continue
            loaded = entry
            why = (
                f"the best ({self.metric} {entry.value:.4f})"
                if rule.kind == "best"
                else f"the best learned before the run's first learning bar "
                f"{iso_utc(rule.before_ms)} ({self.metric} {entry.value:.4f})"
            )
            choose(entry, "loaded", why)
        for choice in choices:
            logger.info("online checkpoint %s %s: %s", choice.path, choice.status, choice.reason)
        return loaded, choices


def expert_data_warnings(
    experts: Sequence[Any], first_learning_bar_ms: int | None
) -> list[dict[str, Any]]:
    """The experts' own checkpoints (given in the run file) are the user's choice and always
    loaded; one whose ``trained_until_ms`` (the end of the data it was trained and selected
    on) is after ``first_learning_bar_ms`` may have seen the run's future. Each such expert
    gives a logged warning and a ``lookahead_warning`` event dict (``timestamp`` the first
    learning bar, ``kind``, ``symbol`` "", ``model``, ``message``)."""
    events = []
    for expert in experts:
        raw = getattr(expert, "trained_until_ms", None)
        if raw is None or first_learning_bar_ms is None or int(raw) <= first_learning_bar_ms:
            continue
        path = getattr(expert, "checkpoint", "?")
        message = (
            f"checkpoint {path} (given in the run file) was trained on data up to "
            f"{iso_utc(int(raw))}, after the run's first learning bar "
            f"{iso_utc(first_learning_bar_ms)}: the run may have seen the future; train it on "
            "earlier data for an honest backtest"
        )
        logger.warning("expert %r: %s", expert.name, message)
        events.append(
            {
                "timestamp": int(first_learning_bar_ms),
                "kind": "lookahead_warning",
                "symbol": "",
                "model": str(expert.name),
                "message": message,
            }
        )
    return events
