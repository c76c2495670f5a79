"""The orchestrator: seed 003's central coordination hub, as a ``DecisionSource``.

At each closed bar of a traded symbol (``decide``), in this order:

1. **Data.** The closed candles of every timeframe that closes now are published to the
   :class:`~pivotal.orchestrator.subscriptions.DataSubscriptionManager`, which applies them
   to the :class:`~pivotal.orchestrator.frame.MarketFrame` (the full base frame, current to
   this close) and reports which streams changed.
2. **Input.** The frame builds the standardized ``BaseDataInput`` at this close; its
   ``last_predictions`` are every model's newest output from *earlier* steps, from the
   :class:`~pivotal.orchestrator.output_store.ModelOutputStore` (cross-model feeding).
3. **Inference.** The :class:`~pivotal.orchestrator.coordinator.ModelInferenceCoordinator`
   validates the input against each expert's spec, runs the experts whose streams changed
   in dependency order (PivotCNN, then the DQN with the CNN's output of this same step),
   independent ones in parallel, and isolates a model that raises, hangs or emits NaN.
4. **Decision.** The :class:`~pivotal.orchestrator.decisions.DecisionMaker` combines the
   votes through its gate (confidence-weighted vote, or a learned gate) into one action with
   a confidence and per-model contributions.
5. **Learning.** The :class:`~pivotal.orchestrator.learning.LearningLoop` matures earlier
   predictions against this close and tracks accuracy; candidates (online updates,
   retrains) train on its worker thread and their results (promote or roll back) are
   applied between steps: ``learning.apply_after_steps`` steps later in a replay (so two
   runs decide identically), as soon as ready with ``apply_learning_when_ready`` (paper and
   live builders). ``decide`` does not wait for training unless the worker is late.
6. **History.** The step (input package, tensors, outputs, hidden states, decision, the
   model versions that inferred) goes to the
   :class:`~pivotal.orchestrator.history_writer.HistoryWriter`, which writes it to the
   :class:`~pivotal.data.inference_history.InferenceHistory` in batches on its own thread.

The orchestrator reads time only from the decision context and reaches the market only
through what the run loop gives it, so the backtester (replay clock + simulated broker) and
the live loop (wall clock + exchange broker) drive this same object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.events import MarketEvent
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.orders import AccountSnapshot
from pivotal.core.ports import DecisionContext, MarketFeed
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import ModelOutput, TradingAction
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.data.resample import resample
from pivotal.features.inputs.spec import InputPart, InputSpec
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.contracts import VOTE_ACTIONS, Decision, Expert, Inference
from pivotal.orchestrator.coordinator import ModelInferenceCoordinator, StepResult
from pivotal.orchestrator.decision_log import DecisionLog, DecisionRecorder
from pivotal.orchestrator.decisions import DecisionMaker
from pivotal.orchestrator.frame import MarketFrame
from pivotal.orchestrator.history_writer import HistoryStats, HistoryWriter
from pivotal.orchestrator.intake import BarIntake
from pivotal.orchestrator.learning import LearningEvent, LearningLoop
from pivotal.orchestrator.online_checkpoints import parse_load_rule
from pivotal.orchestrator.output_store import ModelOutputStore
from pivotal.orchestrator.records import record_of_step, replay_decision
from pivotal.orchestrator.subscriptions import (
    DataSubscriptionManager,
)

__all__ = ["INFERENCE_OFF", "Orchestrator"]

INFERENCE_OFF = "inference paused: holding without asking the models"

logger = logging.getLogger(__name__)

#: Learning events after which a model's weights differ from before.
_NEW_WEIGHTS = frozenset({"promoted", "retrain_promoted", "checkpoint_loaded"})


def _union_spec(experts: Sequence[Expert]) -> InputSpec:
    """One input that serves every expert: all their timeframes, the most frames, the parts
    any of them requires. Each expert is still validated against its own spec."""
    timeframes: list[Timeframe] = []
    for expert in experts:
        for tf in expert.spec.timeframes:
            if tf not in timeframes:
                timeframes.append(tf)
    timeframes.sort(key=lambda tf: tf.ms)
    frames = max(e.spec.frames for e in experts)
    required: frozenset[InputPart] = frozenset().union(*(e.spec.required for e in experts))
    return InputSpec(
        timeframes=tuple(timeframes),
        frames=frames,
        min_frames=1,
        reference_symbol=None,
        required=required - {InputPart.PREDICTIONS},
    )


def _decision_output(decision: Decision, name: str) -> ModelOutput:
    """A decision as a ``ModelOutput`` (so the learning loop scores it like a model)."""
    return ModelOutput(
        model_type="ensemble",
        model_name=name,
        symbol=Symbol.parse(decision.symbol),
        timestamp=decision.timestamp,
        confidence=min(1.0, max(0.0, float(decision.confidence))),
        predictions={
            "action": decision.action.value,
            "action_probabilities": {
                a.value: float(p) for a, p in zip(VOTE_ACTIONS, decision.probabilities, strict=True)
            },
        },
    )


class Orchestrator:
    """Experts + gate + learning loop + history behind the ``DecisionSource`` protocol.

    ``experts``: the models, unique names, any dependency order (the coordinator sorts them).
    ``base_timeframe``: the bars the run loop calls ``decide`` on. ``data``: optional candle
    histories per symbol and timeframe known in advance (a backtest's store read, warm-up
    included); timeframes an expert needs that are not given are resampled from the base
    candles. ``history``: where every step is stored (None: not stored).
    ``trade_from``: no action is sent before this time (UTC ms; models still run, so their
    outputs and the learning loop are warm by then).
    ``max_missing_bars``: the market frame's gap length (indicators, pivots and windows restart
    after a longer missing run; see :mod:`pivotal.core.gaps`).
    ``load_online``: which online checkpoints of ``learning.checkpoint_dir`` are loaded at
    start: ``"best"`` (paper, live), ``"before:<UTC ms>"`` (a backtest or replay: only those
    learned before its first learning bar) or ``"none"``; :attr:`checkpoints` lists them.
    ``apply_learning_when_ready``: the learning loop applies each candidate's result as soon
    as its worker has it (paper, live) instead of ``learning.apply_after_steps`` steps after
    it was asked for (a replay: deterministic).
    ``accelerate``: a replay's histories given to :meth:`prepare` are published to the frame
    step by step and the experts evaluate them in batches ahead of the clock; False (paper,
    live, ``--no-accelerate``): candles arrive only through :meth:`on_event` and every expert
    reads its input from the market frame. ``calls``: the coordinator runs the experts on
    worker threads with a timeout (``"threads"``, live) or on this thread (``"inline"``, a
    replay: deterministic, no hand-offs). ``recorder``: a run journal the decisions and
    events stream to (only the newest stay in memory); None keeps them all in memory.
    """

    def __init__(
        self,
        experts: Sequence[Expert],
        config: OrchestratorConfig | None = None,
        *,
        base_timeframe: Timeframe | str,
        data: Mapping[str, Mapping[Timeframe | str, Candles]] | None = None,
        history: InferenceHistory | None = None,
        trade_from: int | None = None,
        seed: int = 0,
        name: str = "orchestrator",
        load_online: str = "best",
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
        accelerate: bool = True,
        calls: Literal["threads", "inline"] = "threads",
        apply_learning_when_ready: bool = False,
        recorder: DecisionRecorder | None = None,
    ) -> None:
        if not experts:
            raise ValueError("the orchestrator needs at least one expert")
        self.name = name
        self.config = config or OrchestratorConfig()
        self.base = Timeframe.parse(base_timeframe)
        self._data = {
            str(s): {Timeframe.parse(tf): c for tf, c in streams.items()}
            for s, streams in (data or {}).items()
        }
        self.history = history if self.config.history.enabled else None
        self.trade_from = trade_from
        self.frame = MarketFrame(
            capacity=self.config.frame_capacity, max_missing_bars=max_missing_bars
        )
        for expert in experts:  # each expert's per-candle columns, computed from the first bar
            observation = getattr(expert, "observation", None)
            if observation is not None:
                self.frame.keep_columns(observation.columns)
        self.subscriptions = DataSubscriptionManager(self.frame, self.config.streams)
        self.intake = BarIntake(self.subscriptions)
        self.accelerate = bool(accelerate)
        self.coordinator = ModelInferenceCoordinator(experts, self.config.inference, calls=calls)
        if self.accelerate:  # an agent reading a CNN may batch its coming steps on its rows
            by_name = {e.name: e for e in experts}
            for expert in experts:
                source = by_name.get(getattr(expert, "cnn", None) or "")
                if hasattr(expert, "upstream_ahead") and hasattr(source, "features_ahead"):
                    expert.upstream_ahead = source.features_ahead  # type: ignore[attr-defined]
        self.order: tuple[str, ...] = tuple(n for level in self.coordinator.levels for n in level)
        self.outputs = ModelOutputStore(self.config.output_capacity)
        self.decision_maker = DecisionMaker(self.config.gate, self.order, seed=seed)
        self.spec = _union_spec(experts)
        self.timeframes: tuple[Timeframe, ...] = tuple(
            sorted({tf for e in experts for tf in e.timeframes} | {self.base}, key=lambda t: t.ms)
        )
        self.learning: LearningLoop | None = None
        if self.config.learning.enabled:
            self.learning = LearningLoop(
                self.config.learning,
                self.coordinator.experts(),
                gate=self.decision_maker.learned_gate,
                bar_ms=self.base.ms,
                apply_when_ready=apply_learning_when_ready,
            )
        self.load_online = str(parse_load_rule(load_online))
        self.log = DecisionLog(recorder)
        self._writer = None if self.history is None else HistoryWriter(self.history)
        self._symbols: set[str] = set()
        self._loaded_best = False
        self._versions: dict[str, int] = {name: 0 for name in self.order}
        # steps per symbol: the learning loop's bar count, continuous across a learning span
        # and the backtest that follows (whose bar indices restart at 0)
        self._steps: dict[str, int] = {}
        #: A running node's switches (its command queue sets them between steps). Inference
        #: off: every step still applies its candles to the frame but asks no model and
        #: decides HOLD (reason :data:`INFERENCE_OFF`). Learning off: the learning loop is
        #: not stepped (no maturing, no training; results already trained wait).
        self.inference_enabled = True
        self.learning_enabled = True

    # -- DecisionSource -------------------------------------------------------------------
    def warmup_bars(self) -> int:
        """0: the frame may hold history from before the run (``data``); an expert whose
        input is still incomplete is skipped with the reason, never fed a short window."""
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        """Get ready to decide for ``symbol``; ``candles`` are the run's base bars.

        Pushed (``accelerate=False``): nothing is read up front; candles reach the frame as
        :meth:`on_event` receives them. Accelerated (a replay): ``candles`` plus the ``data``
        given up front (timeframes not given are resampled from the base candles) are kept
        and published to the frame step by step as they close, and every expert builds its
        causal bulk inputs from them to evaluate ahead of the clock. A second call with
        newer candles (the backtest after a learning span) extends the history."""
        self._symbols.add(symbol)
        if self.accelerate:
            streams = self._streams_for(symbol, candles)
            self.intake.prepare(symbol, streams)
            self.coordinator.prepare(symbol, streams)
        if self.learning is not None and not self._loaded_best:
            self._loaded_best = True
            for ev in self.learning.load_best(self.load_online):
                self._event(ev.kind, ev.timestamp, ev.symbol, ev.model, ev.message, score=ev)

    def _streams_for(self, symbol: str, candles: Candles) -> dict[Timeframe, Candles]:
        """The histories to accelerate over: ``data`` given up front, the base bars grown
        by ``candles`` (an earlier history is kept, so the warm-up stays), the other
        timeframes resampled from the base when not given."""
        streams = dict(self._data.get(symbol, {}))
        base = streams.get(self.base)
        held = self.intake.prepared(symbol)
        loaded = None if held is None else held.get(self.base)
        if (
            loaded is not None
            and len(loaded)
            and (base is None or not len(base) or loaded.timestamp[-1] > base.timestamp[-1])
        ):
            base = loaded  # an earlier prepare's history (a learning span): keep it
        if base is None or not len(base):
            streams[self.base] = candles
        elif len(candles) and int(candles.timestamp[-1]) > int(base.timestamp[-1]):
            earlier = base.between(None, int(candles.timestamp[0]))
            streams[self.base] = Candles.concat([earlier, candles])
        else:
            streams[self.base] = base
        for tf in self.timeframes:
            if tf not in streams:
                if tf.ms % self.base.ms:
                    raise ValueError(
                        f"an expert reads {tf} candles of {symbol}, which are not given and "
                        f"cannot be resampled from {self.base}; pass them in data="
                    )
                streams[tf] = resample(streams[self.base], self.base, tf)
        return streams

    def on_event(self, event: MarketEvent) -> None:
        """A market event as it arrives (the runtime's listener port): closed candles of
        any timeframe, trades, book snapshots; applied to the frame at the next step."""
        self.intake.push(event)

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms  # every bar (wake-ups are close times, UTC ms)

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        decision, _ = self.step(context)
        if self.trade_from is not None and context.timestamp <= self.trade_from:
            return ()
        action = decision.trading_action(self.name)
        return () if action is None else (action,)

    # -- one step ---------------------------------------------------------------------------
    def step(self, context: DecisionContext) -> tuple[Decision, StepResult]:
        """Steps 1–6 of the module docstring at ``context``'s close; returns the decision and
        the coordinator's step (outputs, inferences, skipped experts, events)."""
        symbol, t = context.symbol, int(context.timestamp)
        if symbol not in self._symbols:
            raise RuntimeError(f"{self.name}: prepare({symbol!r}, candles) was not called")
        if not self.inference_enabled:
            return self._hold_step(symbol, t)
        learning = self.learning if self.learning_enabled else None
        if learning is not None:  # results the learning worker finished for this step
            for ev in learning.apply_ready():
                self._event(ev.kind, ev.timestamp, ev.symbol, ev.model, ev.message, score=ev)
        # the weights that infer at this step (learning may promote before the step ends)
        versions = None if self._writer is None else self.versions()
        updated = self.intake.due(symbol, t)
        frame = self.frame
        inp = frame.input(symbol, self.spec, last_predictions=self.outputs.latest(symbol, t))
        step = self.coordinator.run(
            symbol,
            t,
            inp,
            context.account,
            updated=updated,
            observe=lambda builder: frame.observe(symbol, builder, t),
            check=frame.check_input,
        )
        for output in step.outputs.values():
            self.outputs.record(output)
        for event in step.events:
            self._event(event.kind, event.timestamp, event.symbol, event.model, event.message)
        decision = self.decision_maker.decide(
            symbol, t, step.outputs, step.skipped, votes=step.votes
        )
        self.log.decision(decision)
        count = self._steps.get(symbol, 0)
        self._steps[symbol] = count + 1
        if learning is not None:
            close = float(context.candles.close[-1])
            inferences = dict(step.inferences)
            if decision.contributions:  # the decision's own accuracy is tracked beside the models'
                inferences[self.name] = Inference(_decision_output(decision, self.name))
            for ev in learning.on_step(symbol, t, count, close, inferences):
                self._event(ev.kind, ev.timestamp, ev.symbol, ev.model, ev.message, score=ev)
        if self._writer is not None:  # written in batches on the writer's thread
            self._writer.add(record_of_step(decision, inp, step.inferences, versions))
        return decision, step

    def _hold_step(self, symbol: str, t: int) -> tuple[Decision, StepResult]:
        """A step with inference off: the frame stays current, no model is asked, HOLD."""
        self.intake.due(symbol, t)
        decision = Decision(
            symbol=symbol,
            timestamp=t,
            action=VOTE_ACTIONS[2],
            confidence=0.0,
            probabilities=(0.0, 0.0, 0.0),
            gate=self.decision_maker.gate.name,
            contributions=(),
            reason=INFERENCE_OFF,
        )
        self.log.decision(decision)
        self._steps[symbol] = self._steps.get(symbol, 0) + 1  # the bar count stays in time
        return decision, StepResult(symbol, t, {}, {}, {}, ())

    # -- results ----------------------------------------------------------------------------
    def versions(self) -> dict[str, int]:
        """Each model's weight generation (bumped when the learning loop promotes)."""
        return dict(self._versions)

    @property
    def stored(self) -> int:
        """Steps written to the inference history so far."""
        return 0 if self._writer is None else self._writer.written

    @property
    def history_stats(self) -> HistoryStats | None:
        """How the history writer kept up (written, lost, pending steps); None without."""
        return None if self._writer is None else self._writer.stats

    def flush(self) -> int:
        """Write every buffered step to the inference history and wait for it; returns the
        steps this call wrote."""
        return 0 if self._writer is None else self._writer.flush()

    def settle(self) -> None:
        """Wait until the background work queued so far is done: the learning candidates
        submitted (their results are applied at their step as usual) and the history batches
        handed to the writer. What a live node's bars leave time for between two closes; a
        bench calls it to measure a decision without a backlog of earlier bars' work."""
        if self.learning is not None:
            self.learning.settle()
        if self._writer is not None:
            self._writer.settle()

    def finish(self, now_ms: int | None = None) -> None:
        """Apply the learning loop's pending results (their events are recorded) and stop
        its worker, flush the history and stop its writer, apply the history's retention
        policy, stop the expert workers."""
        if self.learning is not None:
            for ev in self.learning.close():
                self._event(ev.kind, ev.timestamp, ev.symbol, ev.model, ev.message, score=ev)
        if self._writer is not None:
            self._writer.close()
        if self.history is not None and now_ms is not None:
            cfg = self.config.history
            self.history.apply_retention(
                now_ms=now_ms,
                max_age_ms=None if cfg.max_age_days is None else int(cfg.max_age_days * 86_400_000),
                max_bytes=None if cfg.max_megabytes is None else int(cfg.max_megabytes * 2**20),
            )
        self.coordinator.close()

    def learn(
        self,
        symbol: str,
        candles: Candles,
        account: AccountSnapshot,
        *,
        progress: Any = None,
        feed: MarketFeed | None = None,
    ) -> int:
        """Run every step of ``candles`` (base bars) without trading: models infer, outputs
        feed the next steps, the learning loop matures predictions and trains, the history
        stores the steps. ``account`` is the flat account the models see. Pushed
        (``accelerate=False``), the bars come from ``feed`` (the symbol's events over the same
        span, every timeframe): each event is pushed as it arrives and a step runs at each
        of ``candles``' closes. Returns steps."""
        self.prepare(symbol, candles)
        if not self.accelerate and feed is None:
            raise ValueError(
                f"{self.name}: learning without the accelerator reads the candles from a feed; "
                f"pass feed= (the {symbol} events of the learning span)"
            )
        closes = candles.timestamp + self.base.ms
        done = 0
        waiting: Sequence[MarketEvent] | None = None  # a batch later than the current step
        for j in range(len(candles)):
            t = int(closes[j])
            while feed is not None:
                batch = waiting if waiting is not None else feed.next_events()
                waiting = None
                if batch is None:
                    feed = None
                elif batch and min(e.event_time for e in batch) > t:
                    waiting = batch
                    break
                else:
                    for event in batch:
                        self.on_event(event)
            context = DecisionContext(
                timestamp=t,
                symbol=symbol,
                bar_index=j,
                candles=candles.head(j + 1),
                account=account,
            )
            self.step(context)
            done += 1
            if progress is not None:
                progress()
        return done

    @property
    def decisions(self) -> list[Decision]:
        """The decisions in memory, oldest first: all of them, or the newest when streaming
        to a ``recorder`` (:meth:`decisions_frame` reads the whole run)."""
        return list(self.log.decisions)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events in memory (as :attr:`decisions`); :meth:`all_events` reads them all."""
        return list(self.log.events)

    def all_events(self) -> list[dict[str, Any]]:
        return self.log.all_events()

    def decisions_frame(self, since: int | None = None) -> pd.DataFrame:
        """Every decision as a frame (:func:`decisions_frame`), those after ``since`` only."""
        return self.log.decisions_frame(since)

    def accuracy_frame(self) -> pd.DataFrame | None:
        return None if self.learning is None else self.learning.accuracy.frame()

    def replay(self, record: InferenceRecord) -> Decision:
        """The decision the current models and gate make on a stored record's tensors."""
        return replay_decision(
            record, self.coordinator.experts(), self.decision_maker.decide, self.order
        )

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """The online checkpoints considered at start (loaded or skipped, and why)."""
        return [] if self.learning is None else self.learning.checkpoints

    def _event(
        self,
        kind: str,
        timestamp: int,
        symbol: str,
        model: str,
        message: str,
        *,
        score: LearningEvent | None = None,
    ) -> None:
        if kind in _NEW_WEIGHTS and model in self._versions:
            self._versions[model] += 1
        event: dict[str, Any] = {
            "timestamp": int(timestamp),
            "kind": str(kind),
            "symbol": symbol,
            "model": model,
            "message": message,
        }
        if score is not None and score.metric:  # a learning event: its scores, by metric
            event.update(
                metric=score.metric,
                before=score.before,
                after=score.after,
                difference=score.difference,
            )
        self.log.event(event)
