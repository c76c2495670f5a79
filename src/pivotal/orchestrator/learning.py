"""The inference → outcome → training loop (seed 003 §4.4 and §4.6).

At every step (one base bar of one symbol) :meth:`LearningLoop.on_step`:

1. **Matures** the predictions whose horizon has passed (:class:`OutcomeTracker`) and pairs
   each expert's stored inference (its ``Inference.tensors``) with the outcome: a
   :class:`TrainingExample` (and a :class:`GateExample` of all experts' votes when a gate
   learns). The predicted action is ``output.action`` with CLOSE counted as HOLD (argmax of
   the probabilities when the output names no action). Every model in the step's inferences
   gets its rolling accuracy tracked per symbol (:class:`AccuracyTracker`); pass the
   orchestrator's decision as an inference of its own to track it too.
2. **Registers** this step's inferences as new predictions.
3. **Updates online** each trainable expert (and the gate): once ``batch_size`` new examples
   wait to be trained on, a candidate is trained from a snapshot of the current weights and
   kept only when it beats them on held-out recent outcomes; otherwise the snapshot is
   restored bit for bit (rollback).
4. **Watches for degradation**: a rolling accuracy (over ``accuracy_window`` matured
   predictions, at least half of them present) more than ``degradation_drop`` below its best
   triggers a retrain on the whole buffer under the same promote/rollback rule; experts that
   cannot learn online (or any expert while learning is disabled, or one with fewer than
   ``batch_size`` trainable examples) get a ``retrain_requested`` event instead (they are
   retrained offline). The best of every symbol of the model is reset after each
   degradation, so one dip fires once; a slide of several times ``degradation_drop`` fires
   once per drop. A tracked model that is not an expert only gets the degradation event.
   The best is the maximum of a noisy rolling mean, so keep ``degradation_drop`` well above
   a window's binomial noise ``sqrt(p (1 - p) / accuracy_window)`` or expect false alarms
   (harmless: a retrain is judged on the holdout like any candidate).

**Holdout and purge.** Each learner keeps the last ``buffer`` matured examples in maturity
order. The *holdout* is the newest ``holdout`` of them; ``t0`` is the earliest prediction time
in it. Examples before the holdout are *trainable* only when their outcome was known by
``t0`` (``matured_at <= t0``): an example whose horizon overlaps the holdout's start is
purged, so the candidate never trains on a price move the holdout is judged on. The online
**train batch** is the trainable examples not yet part of a promoted update, the newest
``max(batch_size, holdout)`` of them; an update runs when at least ``batch_size`` such
examples exist and ``batch_size`` examples arrived since the last attempt. A promoted update
marks its examples as used; a rolled-back one does not, so the next candidate retries them
with the newer ones (a change too small to move the holdout accuracy is not lost for good).
A retrain fits on every trainable example for ``retrain_epochs``. A candidate is judged by
:mod:`~pivotal.orchestrator.candidates`: by default it must lower the holdout log-loss by more
than ``min_improvement`` without lowering the holdout accuracy (``score: accuracy``: raise the
accuracy by more than ``min_improvement``; a tie is rolled back). Every promoted or rolled
back event carries the deciding metric, both models' scores and their difference.

Only the newest ``buffer`` examples of each *trainable* expert are kept (an inference
without tensors cannot be replayed and is not kept); experts that are only evaluated keep
none, since their stored inputs can be large.

**Checkpoints.** With ``checkpoint_dir`` set, every promoted expert is saved through a
:class:`~pivotal.training.checkpoint_manager.CheckpointManager` (:class:`ExpertCheckpoints`:
the same files, index and ranking, written by the expert's own ``save``), by
``holdout_accuracy``, best ``keep_checkpoints`` kept, named ``<expert><checkpoint_tag>``.
Each records the time of the newest candle and outcome it learned from
(:mod:`~pivotal.orchestrator.online_checkpoints`). :meth:`LearningLoop.load_best` loads each
expert's best at start under a load rule: ``"best"`` (paper, live) or ``"before:<ms>"`` (a
backtest: only checkpoints learned before its first learning bar); :attr:`checkpoints` lists
what was loaded and skipped, and why. Holdout accuracies of different times rank the
checkpoints, as the seed asks; a model that was best on an old regime stays ranked by that
score.

Everything runs on the orchestrator's thread between steps and is deterministic for the same
inputs (the experts' own training must be seeded).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pivotal.core.errors import ModelError
from pivotal.core.types import Action, ModelOutput
from pivotal.orchestrator.candidates import Verdict, holdout_scores, judge
from pivotal.orchestrator.config import LearningConfig
from pivotal.orchestrator.contracts import (
    VOTE_ACTIONS,
    Expert,
    GateExample,
    Inference,
    Outcome,
    TrainableExpert,
    TrainableGate,
    TrainingExample,
    action_probabilities,
)
from pivotal.orchestrator.online_checkpoints import (
    LEARNED_UNTIL,
    TRAINED_UNTIL,
    CheckpointChoice,
    ExpertCheckpoints,
    LoadRule,
    iso_utc,
)
from pivotal.orchestrator.outcomes import AccuracyTracker, OutcomeTracker

__all__ = [
    "AccuracyTracker",
    "ExpertCheckpoints",
    "LearningEvent",
    "LearningLoop",
]

logger = logging.getLogger(__name__)

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
MAX_EVENTS = 10_000
"""Events kept in memory (the oldest are dropped beyond this)."""


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

    @property
    def difference(self) -> float | None:
        """``after - before`` (candidate minus current), None when either is missing."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


# --- one learner -----------------------------------------------------------------------------


class _Learner:
    """The buffer and bookkeeping of one trainable expert or the gate."""

    def __init__(self, name: str, target: Any, capacity: int) -> None:
        self.name = name
        self.target = target
        self.buffer: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self.seq = 0
        self.used = -1  # highest seq trained into a promoted model
        self.new = 0  # examples added since the last attempt
        self.manager: ExpertCheckpoints | None = None
        self.epoch = 1
        self.learned_until: int | None = None  # newest candle close in the weights (learned)

    def add(self, example: Any) -> None:
        self.buffer.append((self.seq, example))
        self.seq += 1
        self.new += 1

    def split(self, holdout: int) -> tuple[list[tuple[int, Any]], list[Any]] | None:
        """(trainable (seq, example) oldest first, holdout examples), or None when the
        buffer cannot hold a holdout and something before it."""
        if len(self.buffer) <= holdout:
            return None
        items = list(self.buffer)
        held = [e for _, e in items[-holdout:]]
        start = min(e.timestamp for e in held)
        trainable = [(s, e) for s, e in items[:-holdout] if e.outcome.matured_at <= start]
        return trainable, held


def _vote(output: ModelOutput) -> tuple[Action, npt.NDArray[np.float64]]:
    """The BUY/SELL/HOLD an output votes for and its probabilities (module docstring)."""
    probabilities = action_probabilities(output)
    action = output.action
    if action is None:
        action = VOTE_ACTIONS[int(np.argmax(probabilities))]
    elif action is Action.CLOSE:
        action = Action.HOLD
    return action, probabilities


# --- the loop --------------------------------------------------------------------------------


class LearningLoop:
    """Seed 003's feedback loop over ``experts`` (name → expert) and an optional learned gate.

    Experts that satisfy :class:`TrainableExpert` learn online (when ``config.enabled``);
    the others are only evaluated. ``checkpoint_tag`` is appended to each expert's name to
    form its checkpoint name (e.g. ``"_BTC"`` to keep one set per symbol). ``bar_ms``: the
    base bar's length, to record the newest learned candle's open time in checkpoints.
    """

    def __init__(
        self,
        config: LearningConfig,
        experts: Mapping[str, Expert],
        *,
        gate: TrainableGate | None = None,
        checkpoint_tag: str = "",
        bar_ms: int | None = None,
    ) -> None:
        if not isinstance(config, LearningConfig):
            raise TypeError(f"config must be a LearningConfig, got {type(config).__name__}")
        if GATE in experts and gate is not None:
            raise ValueError(f"an expert may not be named {GATE!r} when a gate learns")
        self.config = config
        self.bar_ms = bar_ms
        self._choices: list[CheckpointChoice] = []
        self._experts = dict(experts)
        self._tracker = OutcomeTracker(config.horizon_bars, config.dead_band)
        self._accuracy = AccuracyTracker(config.accuracy_window)
        self._events: deque[LearningEvent] = deque(maxlen=MAX_EVENTS)
        self._learners: dict[str, _Learner] = {}
        for name, expert in self._experts.items():
            if not isinstance(expert, TrainableExpert) or not config.enabled:
                continue
            if hasattr(expert, "learning_rate"):
                expert.learning_rate = config.learning_rate
            learner = _Learner(name, expert, config.buffer)
            if config.checkpoint_dir is not None:
                learner.manager = ExpertCheckpoints(
                    config.checkpoint_dir,
                    f"{name}{checkpoint_tag}",
                    keep=config.keep_checkpoints,
                    metric=METRIC,
                    mode="max",
                )
                learner.epoch = max((e.epoch for e in learner.manager.list()), default=0) + 1
            self._learners[name] = learner
        self._gate = None
        if gate is not None and config.enabled:
            if not isinstance(gate, TrainableGate):
                raise TypeError(f"gate must be a TrainableGate, got {type(gate).__name__}")
            self._gate = _Learner(GATE, gate, config.buffer)

    # public views ------------------------------------------------------------------------------

    @property
    def accuracy(self) -> AccuracyTracker:
        return self._accuracy

    @property
    def events(self) -> list[LearningEvent]:
        """Events so far, oldest first (the newest ``MAX_EVENTS``)."""
        return list(self._events)

    @property
    def outcomes(self) -> OutcomeTracker:
        return self._tracker

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names of the experts that learn online."""
        return tuple(self._learners)

    def examples(self, model: str) -> Sequence[TrainingExample | GateExample]:
        """Buffered matured examples of ``model``, oldest first (``GATE``: the gate's
        :class:`GateExample` s). Empty for experts that are only evaluated."""
        if model == GATE and self._gate is not None:
            return tuple(e for _, e in self._gate.buffer)
        if model not in self._experts:
            raise ValueError(f"unknown model {model!r}; experts: {sorted(self._experts)}")
        learner = self._learners.get(model)
        return () if learner is None else tuple(e for _, e in learner.buffer)

    # start-up ----------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """The online checkpoints :meth:`load_best` considered, best first per expert: plain
        dicts ``path, model, learned_until (ISO UTC), status (loaded|skipped), reason``."""
        return [c.to_dict() for c in self._choices]

    def load_best(self, rule: str | LoadRule = "best") -> list[LearningEvent]:
        """Load every trainable expert's best checkpoint that ``rule`` allows (``"best"``,
        ``"none"`` or ``"before:<UTC ms>"``: see
        :mod:`~pivotal.orchestrator.online_checkpoints`); none without ``checkpoint_dir``.
        Returns a ``checkpoint_loaded`` or ``checkpoint_skipped`` event per checkpoint."""
        events = []
        for name, learner in self._learners.items():
            if learner.manager is None:
                continue
            entry, choices = learner.manager.load_best_into(learner.target, rule, model=name)
            self._choices += choices
            if entry is not None:
                value = entry.metrics.get(LEARNED_UNTIL)
                learner.learned_until = None if value is None else int(value)
            for choice in (c for c in choices if not c.outranked):
                loaded = choice.status == "loaded"
                events.append(
                    LearningEvent(
                        choice.created_at_ms,
                        "",
                        name,
                        "checkpoint_loaded" if loaded else "checkpoint_skipped",
                        None,
                        entry.value if loaded and entry is not None else None,
                        f"{choice.status} {choice.path.name} (learned until "
                        f"{iso_utc(choice.learned_until_ms) or 'unknown'}): {choice.reason}",
                        metric=METRIC if loaded else "",
                    )
                )
        self._events.extend(events)
        return events

    # the step ----------------------------------------------------------------------------------

    def on_step(
        self,
        symbol: str,
        timestamp: int,
        bar_index: int,
        close: float,
        inferences: Mapping[str, Inference],
    ) -> list[LearningEvent]:
        """Run the loop for the step at the close ``timestamp`` (UTC ms) of base bar
        ``bar_index`` of ``symbol`` (close price ``close``), whose inferences are
        ``inferences`` (model name → :class:`Inference`). Call once per bar, in order.
        Returns the events of this step."""
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        events: list[LearningEvent] = []
        degraded: dict[str, list[tuple[float, float]]] = {}
        for outcome, matured in self._tracker.mature(symbol, bar_index, timestamp, close):
            self._evaluate(outcome, matured, degraded)
        self._tracker.add(symbol, timestamp, bar_index, close, inferences)
        for learner in self._learners.values():
            events += self._online(learner, symbol, timestamp)
        if self._gate is not None:
            events += self._online(self._gate, symbol, timestamp)
        for model, drops in degraded.items():
            events += self._degradation(model, drops, symbol, timestamp)
        self._events.extend(events)
        return events

    def _evaluate(
        self,
        outcome: Outcome,
        inferences: Mapping[str, Inference],
        degraded: dict[str, list[tuple[float, float]]],
    ) -> None:
        votes: dict[str, tuple[float, float, float]] = {}
        confidences: dict[str, float] = {}
        for name in sorted(inferences):
            inference = inferences[name]
            try:
                predicted, probabilities = _vote(inference.output)
            except ValueError as exc:
                logger.warning("cannot evaluate %s at %d: %s", name, outcome.timestamp, exc)
                continue
            example = TrainingExample(
                name,
                outcome.symbol,
                outcome.timestamp,
                inference.tensors,
                predicted,
                probabilities,
                outcome,
            )
            self._accuracy.update(name, outcome.symbol, outcome.matured_at, example.correct)
            drop = self.config.degradation_drop
            if self._accuracy.degraded(name, outcome.symbol, drop):
                best = self._accuracy.best(name, outcome.symbol)
                current = self._accuracy.current(name, outcome.symbol)
                if best is not None and current is not None:
                    degraded.setdefault(name, []).append((best, current))
                    self._accuracy.reset_best(name)
            learner = self._learners.get(name)
            if learner is not None and inference.tensors:
                learner.add(example)
            if name in self._experts:
                votes[name] = (
                    float(probabilities[0]),
                    float(probabilities[1]),
                    float(probabilities[2]),
                )
                confidences[name] = float(inference.output.confidence)
        if self._gate is not None and votes:
            self._gate.add(
                GateExample(outcome.symbol, outcome.timestamp, votes, confidences, outcome)
            )

    def _online(self, learner: _Learner, symbol: str, timestamp: int) -> list[LearningEvent]:
        cfg = self.config
        if learner.new < cfg.batch_size:
            return []
        split = learner.split(cfg.holdout)
        if split is None:
            return []
        trainable, held = split
        fresh = [(s, e) for s, e in trainable if s > learner.used]
        if len(fresh) < cfg.batch_size:
            return []
        learner.new = 0
        batch = fresh[-max(cfg.batch_size, cfg.holdout) :]
        return self._attempt(
            learner, batch, fresh[-1][0], held, cfg.epochs, retrain=False, at=(symbol, timestamp)
        )

    def _degradation(
        self, model: str, drops: list[tuple[float, float]], symbol: str, timestamp: int
    ) -> list[LearningEvent]:
        best, current = drops[0]
        events = [
            LearningEvent(
                timestamp,
                symbol,
                model,
                "degradation",
                best,
                current,
                f"rolling accuracy {current:.3f} fell more than "
                f"{self.config.degradation_drop:.3f} below its best {best:.3f}",
                metric="rolling_accuracy",
            )
        ]
        learner = self._learners.get(model)
        if learner is None and model not in self._experts:
            return events  # a tracked non-expert (e.g. the orchestrator's decision)
        split = None if learner is None else learner.split(self.config.holdout)
        if learner is None or split is None or len(split[0]) < self.config.batch_size:
            why = (
                "it does not learn online (or learning is disabled); retrain it offline"
                if learner is None
                else f"fewer than batch_size={self.config.batch_size} trainable examples "
                f"besides the holdout of {self.config.holdout}; no retrain yet"
            )
            events.append(
                LearningEvent(
                    timestamp,
                    symbol,
                    model,
                    "retrain_requested",
                    best,
                    current,
                    why,
                    metric="rolling_accuracy",
                )
            )
            return events
        trainable, held = split
        events += self._attempt(
            learner,
            trainable,
            trainable[-1][0],
            held,
            self.config.retrain_epochs,
            retrain=True,
            at=(symbol, timestamp),
        )
        return events

    def _attempt(
        self,
        learner: _Learner,
        batch: list[tuple[int, Any]],
        last_seq: int,
        held: list[Any],
        epochs: int,
        *,
        retrain: bool,
        at: tuple[str, int],
    ) -> list[LearningEvent]:
        """Train a candidate on ``batch``; keep it if it beats the current model on ``held``
        (:func:`~pivotal.orchestrator.candidates.judge`), else restore the snapshot.
        ``last_seq``: marked used when promoted."""
        symbol, timestamp = at
        target = learner.target
        examples = [e for _, e in batch]
        current = holdout_scores(target, held)
        snapshot = target.snapshot()
        kind: EventKind = "retrain_rolled_back" if retrain else "rolled_back"
        try:
            loss = float(target.fit(examples, epochs=epochs))
            candidate = holdout_scores(target, held)
        except (ModelError, ValueError, RuntimeError, FloatingPointError) as exc:
            target.restore(snapshot)
            message = f"candidate failed to train on {len(examples)} examples: {exc}"
            metric, before = (
                ("holdout_log_loss", current.log_loss)
                if self.config.score == "log_loss" and current.log_loss is not None
                else (METRIC, current.accuracy)
            )
            return [
                LearningEvent(
                    timestamp, symbol, learner.name, kind, before, None, message, metric=metric
                )
            ]
        verdict = judge(
            current,
            candidate,
            score=self.config.score,
            min_improvement=self.config.min_improvement,
        )
        what = f"{len(examples)} examples x {epochs} epochs (loss {loss:.4f})"
        where = f"on {len(held)} held out: {verdict.describe()}; {what}"
        if verdict.promote:
            learner.used = last_seq
            newest = max(e.outcome.matured_at for e in [*examples, *held])
            learner.learned_until = max(learner.learned_until or newest, newest)
            kind = "retrain_promoted" if retrain else "promoted"
            events = [self._judged(learner, kind, verdict, f"candidate promoted {where}", at)]
            events += self._save(learner, verdict, examples, held, at)
            return events
        target.restore(snapshot)
        return [self._judged(learner, kind, verdict, f"candidate rolled back {where}", at)]

    @staticmethod
    def _judged(
        learner: _Learner, kind: EventKind, verdict: Verdict, message: str, at: tuple[str, int]
    ) -> LearningEvent:
        symbol, timestamp = at
        return LearningEvent(
            timestamp,
            symbol,
            learner.name,
            kind,
            verdict.current,
            verdict.candidate,
            message,
            metric=verdict.metric,
            details=verdict.details(),
        )

    def _save(
        self,
        learner: _Learner,
        verdict: Verdict,
        examples: list[Any],
        held: list[Any],
        at: tuple[str, int],
    ) -> list[LearningEvent]:
        if learner.manager is None:
            return []
        symbol, timestamp = at
        newest = max([*examples, *held], key=lambda e: (e.outcome.matured_at, e.timestamp))
        until = int(learner.learned_until or newest.outcome.matured_at)
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
        if self.bar_ms is not None:
            metrics["newest_candle_open_ms"] = float(until - self.bar_ms)
        base = getattr(learner.target, "trained_until_ms", None)
        if base is not None:
            metrics[TRAINED_UNTIL] = float(max(int(base), until))
        if scores.log_loss is not None:
            metrics["holdout_log_loss"] = scores.log_loss
        if verdict.current_scores.log_loss is not None:
            metrics["holdout_log_loss_before"] = verdict.current_scores.log_loss
        path = learner.manager.save_expert(
            learner.target, epoch=learner.epoch, metrics=metrics, created_at_ms=timestamp
        )
        learner.epoch += 1
        if path is None:
            return []
        return [
            LearningEvent(
                timestamp,
                symbol,
                learner.name,
                "checkpoint_saved",
                None,
                scores.accuracy,
                str(path),
                metric=METRIC,
                details={LEARNED_UNTIL: float(until)},
            )
        ]
