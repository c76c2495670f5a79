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

**Off the decision thread.** Steps 1, 2 and 4's bookkeeping run on the orchestrator's
thread (cheap); every candidate (step 3 and the retrains of step 4) is trained, judged and
saved by a :class:`~pivotal.orchestrator.learning_worker.LearningWorker` on its own thread,
on a training copy of the model, and its result is *applied* to the live model later:
``apply_after_steps`` steps after the step that asked for it (``LearningConfig``; 1 = before
the next step's inference, as if trained inline), waiting there only when the worker is late
(counted in :attr:`LearningLoop.stats`); or, with ``apply_when_ready`` (a paper or live run's
builder sets it), at the first step after it is ready, never waiting. While a learner's
result is pending no new online candidate of it starts (its examples keep counting), and a
retrain asked for meanwhile trains after it on the same copy. A replay is deterministic for
the same inputs (the experts' own training must be seeded): the same results are applied
before the same steps. :meth:`LearningLoop.close` applies what is still pending (the end of
a run) and stops the worker.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.types import Action, ModelOutput
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
from pivotal.orchestrator.learning_events import GATE, METRIC, EventKind, LearningEvent
from pivotal.orchestrator.learning_worker import (
    Attempt,
    AttemptResult,
    LearningWorker,
    Trainer,
    WorkerStats,
)
from pivotal.orchestrator.online_checkpoints import (
    LEARNED_UNTIL,
    CheckpointChoice,
    ExpertCheckpoints,
    LoadRule,
    iso_utc,
)
from pivotal.orchestrator.outcomes import AccuracyTracker, OutcomeTracker

__all__ = [
    "GATE",
    "AccuracyTracker",
    "EventKind",
    "ExpertCheckpoints",
    "LearningEvent",
    "LearningLoop",
    "WorkerStats",
]

logger = logging.getLogger(__name__)

MAX_EVENTS = 10_000
"""Events kept in memory (the oldest are dropped beyond this)."""


# --- one learner -----------------------------------------------------------------------------


class _Learner:
    """The decision thread's side of one trainable expert or the gate: its example buffer
    and which examples a promoted update used. ``trainer``: the worker's side."""

    def __init__(self, name: str, target: Any, capacity: int) -> None:
        self.name = name
        self.target = target
        self.buffer: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self.seq = 0
        self.used = -1  # highest seq trained into a promoted model
        self.new = 0  # examples added since the last attempt
        self.trainer = Trainer(name, target)

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

    def fresh(self, holdout: int, limit: int) -> tuple[list[tuple[int, Any]], list[Any], int]:
        """The newest ``limit`` examples of :meth:`split`'s trainable part not yet used by a
        promoted update (oldest first), the holdout, and how many such unused examples there
        are in all (counted up to ``limit``). Walks back from the newest example and stops at
        the first used one, so a step's cost does not grow with the buffer; the result equals
        filtering the whole of :meth:`split` (tested)."""
        buffer = self.buffer
        if len(buffer) <= holdout:
            return [], [], 0
        older = reversed(buffer)
        held = [next(older)[1] for _ in range(holdout)]
        held.reverse()
        start = min(e.timestamp for e in held)
        picked: list[tuple[int, Any]] = []
        for seq, example in older:
            if seq <= self.used or len(picked) == limit:
                break
            if example.outcome.matured_at <= start:
                picked.append((seq, example))
        picked.reverse()
        return picked, held, len(picked)


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
    ``apply_when_ready``: apply each candidate's result at the first step after it is ready
    instead of ``config.apply_after_steps`` steps after it was asked for (module docstring;
    a paper or live run's builder sets it, a replay's leaves it off).
    """

    def __init__(
        self,
        config: LearningConfig,
        experts: Mapping[str, Expert],
        *,
        gate: TrainableGate | None = None,
        checkpoint_tag: str = "",
        bar_ms: int | None = None,
        apply_when_ready: bool = False,
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
        self._step = 0  # on_step calls so far: the clock of the worker's apply points
        self._last_time = 0  # close time of the newest step
        self._worker = LearningWorker(
            config,
            bar_ms=bar_ms,
            apply_after_steps=config.apply_after_steps,
            when_ready=apply_when_ready,
        )
        weakref.finalize(self, self._worker.close)
        for name, expert in self._experts.items():
            if not isinstance(expert, TrainableExpert) or not config.enabled:
                continue
            if hasattr(expert, "learning_rate"):
                expert.learning_rate = config.learning_rate
            learner = _Learner(name, expert, config.buffer)
            if config.checkpoint_dir is not None:
                manager = ExpertCheckpoints(
                    config.checkpoint_dir,
                    f"{name}{checkpoint_tag}",
                    keep=config.keep_checkpoints,
                    metric=METRIC,
                    mode="max",
                )
                learner.trainer.manager = manager
                learner.trainer.epoch = max((e.epoch for e in manager.list()), default=0) + 1
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

    @property
    def stats(self) -> WorkerStats:
        """How the worker kept up: attempts submitted and applied, results the decision
        thread waited for (late) and for how long, results pending."""
        return self._worker.stats

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
        Returns a ``checkpoint_loaded`` or ``checkpoint_skipped`` event per checkpoint.
        Results still pending are applied first (their events are kept in :attr:`events`)."""
        self._events.extend(self._apply(self._worker.drain()))
        events = []
        for name, learner in self._learners.items():
            trainer = learner.trainer
            if trainer.manager is None:
                continue
            entry, choices = trainer.manager.load_best_into(learner.target, rule, model=name)
            self._choices += choices
            if entry is not None:
                value = entry.metrics.get(LEARNED_UNTIL)
                trainer.learned_until = None if value is None else int(value)
                trainer.forget_copy()  # the next attempt copies the loaded weights
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
        ``inferences`` (model name → :class:`Inference`). Call once per bar, in order,
        after the step's inference. Returns the events of this step: its own, then those of
        the candidates whose results were applied at its end (their ``timestamp`` is the
        step that asked for them)."""
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        events: list[LearningEvent] = []
        degraded: dict[str, list[tuple[float, float]]] = {}
        for outcome, matured in self._tracker.mature(symbol, bar_index, timestamp, close):
            self._evaluate(outcome, matured, degraded)
        self._tracker.add(symbol, timestamp, bar_index, close, inferences)
        for learner in self._learners.values():
            self._online(learner, symbol, timestamp)
        if self._gate is not None:
            self._online(self._gate, symbol, timestamp)
        for model, drops in degraded.items():
            events += self._degradation(model, drops, symbol, timestamp)
        self._last_time = int(timestamp)
        events += self._apply(self._worker.due(self._step))
        self._step += 1
        self._events.extend(events)
        return events

    def apply_ready(self) -> list[LearningEvent]:
        """Apply the results ready now (with ``apply_when_ready``; otherwise the results
        due by the last step, which :meth:`on_step` applied already). Call before a step's
        inference. Returns their events."""
        events = self._apply(self._worker.due(self._step - 1))
        self._events.extend(events)
        return events

    def settle(self) -> None:
        """Wait until the candidates submitted so far are trained and judged (their results
        are applied at their step as usual)."""
        self._worker.settle()

    def close(self) -> list[LearningEvent]:
        """Wait for every pending result, apply it, and stop the worker (the end of a run).
        Returns their events. A later step starts the worker again."""
        events = self._apply(self._worker.drain())
        self._worker.close()
        self._events.extend(events)
        return events

    def _apply(self, results: list[tuple[str, AttemptResult]]) -> list[LearningEvent]:
        """Put promoted weights into the live models; the results' events, stamped with
        the step they took effect after."""
        events: list[LearningEvent] = []
        for name, result in results:
            learner = self._learner(name)
            if result.promoted:
                learner.target.restore(result.weights)
                learner.used = max(learner.used, result.last_seq)
            events += [replace(e, applied_at=self._last_time) for e in result.events]
        return events

    def _learner(self, name: str) -> _Learner:
        learner = self._gate if name == GATE else self._learners.get(name)
        if learner is None:
            raise KeyError(f"no learner {name!r}; learners: {sorted(self._learners)}")
        return learner

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

    def _online(self, learner: _Learner, symbol: str, timestamp: int) -> None:
        cfg = self.config
        if learner.new < cfg.batch_size or self._worker.in_flight(learner.name):
            return
        batch, held, count = learner.fresh(cfg.holdout, max(cfg.batch_size, cfg.holdout))
        if count < cfg.batch_size:
            return
        learner.new = 0
        self._submit(learner, batch, held, cfg.epochs, retrain=False, at=(symbol, timestamp))

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
        epochs = self.config.retrain_epochs
        self._submit(learner, trainable, held, epochs, retrain=True, at=(symbol, timestamp))
        return events

    def _submit(
        self,
        learner: _Learner,
        batch: list[tuple[int, Any]],
        held: list[Any],
        epochs: int,
        *,
        retrain: bool,
        at: tuple[str, int],
    ) -> None:
        """Hand a candidate on ``batch`` (judged on ``held``) to the worker."""
        attempt = Attempt([e for _, e in batch], batch[-1][0], held, epochs, retrain, at)
        self._worker.submit(learner.trainer, attempt, self._step)
