"""Candidate training off the decision thread: what the learning loop's worker runs.

The decision thread (:class:`~pivotal.orchestrator.learning.LearningLoop`) decides *what* to
train (an :class:`Attempt`: the batch, the holdout, the epochs) and hands it to a
:class:`LearningWorker`; the worker's thread trains the candidate on a **training copy** of
the model (:class:`Trainer`), judges it against the current weights on the holdout, saves a
promoted one's checkpoint and returns an :class:`AttemptResult`: the events, and the promoted
weights (a ``snapshot()`` of the copy) for the live model. The live model is only touched by
the decision thread, when the result is *applied* (``restore`` of the promoted weights), so
the experts never infer while their weights change.

**Training copy.** The first attempt of a model makes its copy, on the worker's thread:
``target.training_copy()`` when the model offers one (:class:`SupportsTrainingCopy`; the
PivotCNN copies only its network, not its prepared inputs), else ``copy.deepcopy(target)``
(the live model only reads meanwhile: it changes only when a result of its own is applied,
and none is pending before its first attempt; loading checkpoints first waits for the
worker and drops the copy).
After every applied result the copy holds exactly the live weights (promoted: both hold the
candidate; rolled back: the copy restored its snapshot), and attempts run one after another
in submission order, so the copy goes through the very same states a model trained on the
decision thread would: same candidates, same verdicts, same checkpoints.

**When a result is applied** (:class:`LearningWorker`): ``apply_after_steps`` learning steps
after its submission (``at_step``: a replay; the decision thread waits there if the worker is
late, which is counted in :class:`WorkerStats`), so two runs of the same replay apply every
promotion before the same step and decide identically; or as soon as it is ready
(``when_ready``: paper and live; never waits). The run builder picks; nothing below it asks
which mode it is in.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pivotal.core.errors import ModelError
from pivotal.orchestrator.candidates import Verdict, holdout_scores, judge
from pivotal.orchestrator.config import LearningConfig
from pivotal.orchestrator.learning_events import METRIC, EventKind, LearningEvent
from pivotal.orchestrator.online_checkpoints import (
    LEARNED_UNTIL,
    TRAINED_UNTIL,
    ExpertCheckpoints,
)
from pivotal.orchestrator.serial_worker import SerialWorker

__all__ = [
    "Attempt",
    "AttemptResult",
    "LearningWorker",
    "SupportsTrainingCopy",
    "Trainer",
    "WorkerStats",
    "run_attempt",
]


@runtime_checkable
class SupportsTrainingCopy(Protocol):
    """A trainable model that can make its own training copy (cheaper than a deep copy)."""

    def training_copy(self) -> Any:
        """An independent object with the same weights, optimizer state and training
        methods (``snapshot``, ``restore``, ``fit``, ``score``, ``save``), sharing nothing
        that training changes; it is never asked to infer."""
        ...


def training_copy(target: Any) -> Any:
    """``target.training_copy()`` when it offers one, else a deep copy."""
    if isinstance(target, SupportsTrainingCopy):
        return target.training_copy()
    return copy.deepcopy(target)


@dataclass(eq=False)
class Trainer:
    """The worker's side of one learner: the training copy and what only saving needs.

    Touched by the worker's thread only, except before the first attempt (construction,
    loading checkpoints). ``learned_until``: close time (UTC ms) of the newest candle in the
    weights (:mod:`~pivotal.orchestrator.online_checkpoints`); ``epoch``: the next
    checkpoint's number.
    """

    name: str
    target: Any
    manager: ExpertCheckpoints | None = None
    epoch: int = 1
    learned_until: int | None = None
    copy: Any = None

    def model(self) -> Any:
        """The training copy, made from the live target on first use."""
        if self.copy is None:
            self.copy = training_copy(self.target)
        return self.copy

    def forget_copy(self) -> None:
        """Drop the copy (the live weights changed another way: loaded from a checkpoint)."""
        self.copy = None


@dataclass(frozen=True, slots=True, eq=False)
class Attempt:
    """One candidate to train on ``batch`` and judge on ``held``, for ``epochs``.

    ``last_seq``: the newest example sequence number of the batch (marked used when the
    candidate is promoted); ``retrain``: a retrain after a degradation; ``at``: the step
    (symbol, close time in UTC ms) that asked for it.
    """

    batch: Sequence[Any]
    last_seq: int
    held: Sequence[Any]
    epochs: int
    retrain: bool
    at: tuple[str, int]


@dataclass(frozen=True, slots=True, eq=False)
class AttemptResult:
    """What an attempt did: its ``events`` and, when promoted, ``weights`` (a snapshot of
    the training copy) for the live model."""

    events: list[LearningEvent]
    promoted: bool
    last_seq: int
    weights: Any = None


def run_attempt(
    trainer: Trainer, attempt: Attempt, config: LearningConfig, bar_ms: int | None
) -> AttemptResult:
    """Train a candidate on ``attempt.batch`` from the training copy's weights; keep it if it
    beats them on ``attempt.held`` (:func:`~pivotal.orchestrator.candidates.judge`), else
    restore the copy's snapshot. A promoted candidate is saved when a checkpoint manager is
    set. Runs on the worker's thread."""
    model = trainer.model()
    symbol, timestamp = attempt.at
    examples, held, epochs = list(attempt.batch), list(attempt.held), attempt.epochs
    current = holdout_scores(model, held)
    snapshot = model.snapshot()
    kind: EventKind = "retrain_rolled_back" if attempt.retrain else "rolled_back"
    try:
        loss = float(model.fit(examples, epochs=epochs))
        candidate = holdout_scores(model, held)
    except (ModelError, ValueError, RuntimeError, FloatingPointError) as exc:
        model.restore(snapshot)
        message = f"candidate failed to train on {len(examples)} examples: {exc}"
        metric, before = (
            ("holdout_log_loss", current.log_loss)
            if config.score == "log_loss" and current.log_loss is not None
            else (METRIC, current.accuracy)
        )
        event = LearningEvent(
            timestamp, symbol, trainer.name, kind, before, None, message, metric=metric
        )
        return AttemptResult([event], False, attempt.last_seq)
    verdict = judge(current, candidate, score=config.score, min_improvement=config.min_improvement)
    what = f"{len(examples)} examples x {epochs} epochs (loss {loss:.4f})"
    where = f"on {len(held)} held out: {verdict.describe()}; {what}"
    if not verdict.promote:
        model.restore(snapshot)
        event = _judged(trainer.name, kind, verdict, f"candidate rolled back {where}", attempt.at)
        return AttemptResult([event], False, attempt.last_seq)
    newest = max(e.outcome.matured_at for e in [*examples, *held])
    trainer.learned_until = max(trainer.learned_until or newest, newest)
    kind = "retrain_promoted" if attempt.retrain else "promoted"
    events = [_judged(trainer.name, kind, verdict, f"candidate promoted {where}", attempt.at)]
    events += _save(trainer, verdict, examples, held, attempt.at, bar_ms)
    return AttemptResult(events, True, attempt.last_seq, model.snapshot())


def _judged(
    name: str, kind: EventKind, verdict: Verdict, message: str, at: tuple[str, int]
) -> LearningEvent:
    symbol, timestamp = at
    return LearningEvent(
        timestamp,
        symbol,
        name,
        kind,
        verdict.current,
        verdict.candidate,
        message,
        metric=verdict.metric,
        details=verdict.details(),
    )


def _save(
    trainer: Trainer,
    verdict: Verdict,
    examples: list[Any],
    held: list[Any],
    at: tuple[str, int],
    bar_ms: int | None,
) -> list[LearningEvent]:
    if trainer.manager is None:
        return []
    symbol, timestamp = at
    newest = max([*examples, *held], key=lambda e: (e.outcome.matured_at, e.timestamp))
    until = int(trainer.learned_until or newest.outcome.matured_at)
    scores = verdict.candidate_scores
    metrics: dict[str, float] = {
        METRIC: scores.accuracy,
        "holdout_accuracy_before": verdict.current_scores.accuracy,
        "train_examples": float(len(examples)),
        "timestamp": float(timestamp),
        LEARNED_UNTIL: float(until),
        "newest_outcome_ms": float(newest.timestamp),
        "newest_outcome_matured_ms": float(newest.outcome.matured_at),
    }
    if bar_ms is not None:
        metrics["newest_candle_open_ms"] = float(until - bar_ms)
    base = getattr(trainer.target, "trained_until_ms", None)
    if base is not None:
        metrics[TRAINED_UNTIL] = float(max(int(base), until))
    if scores.log_loss is not None:
        metrics["holdout_log_loss"] = scores.log_loss
    if verdict.current_scores.log_loss is not None:
        metrics["holdout_log_loss_before"] = verdict.current_scores.log_loss
    path = trainer.manager.save_expert(
        trainer.model(), epoch=trainer.epoch, metrics=metrics, created_at_ms=timestamp
    )
    trainer.epoch += 1
    if path is None:
        return []
    return [
        LearningEvent(
            timestamp,
            symbol,
            trainer.name,
            "checkpoint_saved",
            None,
            scores.accuracy,
            str(path),
            metric=METRIC,
            details={LEARNED_UNTIL: float(until)},
        )
    ]


# --- the worker ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """How the worker kept up. ``submitted``/``applied``: attempts; ``late``: results the
    decision thread had to wait for at their step (``at_step`` only); ``waited_s``: seconds
    it waited in all (measured with ``perf_counter``, for reports only); ``pending``: results
    not applied yet."""

    submitted: int
    applied: int
    late: int
    waited_s: float
    pending: int


@dataclass(eq=False)
class _Pending:
    name: str
    due: int
    future: Future[AttemptResult]


class LearningWorker:
    """Runs :func:`run_attempt` on one background thread and hands the results back.

    ``apply_after_steps``: a result is due that many learning steps after the step that
    submitted it (1: before the next step's inference, i.e. as if trained on the decision
    thread); ``when_ready``: a result is handed back as soon as it is ready instead, and
    :meth:`due` never waits.
    """

    def __init__(
        self,
        config: LearningConfig,
        *,
        bar_ms: int | None,
        apply_after_steps: int,
        when_ready: bool,
        name: str = "learning-worker",
    ) -> None:
        if isinstance(apply_after_steps, bool) or not isinstance(apply_after_steps, int):
            raise TypeError(f"apply_after_steps must be an int, got {apply_after_steps!r}")
        if apply_after_steps < 1:
            raise ValueError(f"apply_after_steps must be >= 1, got {apply_after_steps}")
        self.config = config
        self.bar_ms = bar_ms
        self.apply_after_steps = apply_after_steps
        self.when_ready = bool(when_ready)
        self._thread = SerialWorker(name)
        self._pending: deque[_Pending] = deque()
        self._submitted = 0
        self._applied = 0
        self._late = 0
        self._waited = 0.0

    @property
    def stats(self) -> WorkerStats:
        return WorkerStats(
            self._submitted, self._applied, self._late, self._waited, len(self._pending)
        )

    def in_flight(self, name: str) -> bool:
        """Whether a result of learner ``name`` is still to be applied."""
        return any(p.name == name for p in self._pending)

    def submit(self, trainer: Trainer, attempt: Attempt, step: int) -> None:
        """Queue ``attempt`` on ``trainer``'s copy, asked for at learning step ``step``."""
        config, bar_ms = self.config, self.bar_ms
        future = self._thread.submit(lambda: run_attempt(trainer, attempt, config, bar_ms))
        self._pending.append(_Pending(trainer.name, step + self.apply_after_steps - 1, future))
        self._submitted += 1

    def due(self, step: int) -> list[tuple[str, AttemptResult]]:
        """Results to apply after learning step ``step``, in submission order: every one due
        by then (waiting for a late one), or with ``when_ready`` every finished one."""
        out: list[tuple[str, AttemptResult]] = []
        while self._pending:
            head = self._pending[0]
            if self.when_ready:
                if not head.future.done():
                    break
            elif head.due > step:
                break
            elif not head.future.done():
                self._late += 1
                started = time.perf_counter()
                head.future.result()
                self._waited += time.perf_counter() - started
            self._pending.popleft()
            out.append((head.name, head.future.result()))
            self._applied += 1
        return out

    def settle(self) -> None:
        """Wait until every submitted attempt has finished; the results stay pending and are
        applied when :meth:`due` hands them back."""
        for pending in list(self._pending):
            pending.future.result()

    def drain(self) -> list[tuple[str, AttemptResult]]:
        """Every pending result, waiting for each (the end of a run)."""
        out = []
        while self._pending:
            head = self._pending.popleft()
            out.append((head.name, head.future.result()))
            self._applied += 1
        return out

    def close(self) -> None:
        """Stop the thread after the queued attempts (their results are dropped unless
        :meth:`drain` took them first)."""
        self._thread.close()
