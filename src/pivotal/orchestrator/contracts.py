"""The orchestrator's contracts: what an expert (a model seen by the orchestrator) is, what it
is asked, what it answers, and what the learning loop and the decision maker exchange.

- :class:`Expert`: one model behind the orchestrator. It declares the input it needs
  (``spec``, validated before every call), the experts whose output *of the same step* it
  reads (``depends_on``: the DQN reads the PivotCNN), builds its causal bulk inputs once per
  symbol (``prepare``) and answers one :class:`InferenceRequest` with an :class:`Inference`:
  the seed-003 :class:`~pivotal.core.types.ModelOutput` plus the exact arrays the network
  read. Those arrays are what the inference history stores and what :meth:`Expert.replay`
  turns back into the same output.
- :class:`TrainableExpert`: an expert the learning loop may update online (snapshot,
  fit on matured examples, score, restore; save/load through a ``CheckpointManager``).
- :class:`Outcome` / :class:`TrainingExample`: a prediction whose horizon has passed, paired
  with what the market did.
- :class:`Contribution` / :class:`Decision`: the gate's combined action and who contributed.

Actions the experts vote on are :data:`VOTE_ACTIONS` (BUY, SELL, HOLD), in that order
everywhere an array of per-action values appears. Times are UTC milliseconds; ``timestamp``
of a step is the close time of the base-timeframe bar that triggered it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, BaseDataInput, ModelOutput, TradingAction
from pivotal.features.inputs.spec import InputSpec

__all__ = [
    "VOTE_ACTIONS",
    "Contribution",
    "Decision",
    "Expert",
    "GateExample",
    "Inference",
    "InferenceRequest",
    "Outcome",
    "TrainableExpert",
    "TrainableGate",
    "TrainingExample",
    "action_probabilities",
]

VOTE_ACTIONS: tuple[Action, ...] = (Action.BUY, Action.SELL, Action.HOLD)
"""The actions experts vote on, in the order of every per-action array."""

Tensors = Mapping[str, npt.NDArray[Any]]

_VOTE_KEYS: tuple[str, ...] = tuple(a.value for a in VOTE_ACTIONS)
_CLOSE_KEY: str = Action.CLOSE.value
_INF = math.inf
_NAN = math.nan
_sum = np.add.reduce


def action_probabilities(output: ModelOutput) -> npt.NDArray[np.float64]:
    """``(3,)`` probabilities of BUY, SELL, HOLD that ``output`` states.

    Read from ``predictions["action_probabilities"]`` (PivotCNN), else
    ``predictions["probabilities"]`` restricted to BUY/SELL/HOLD (the DQN's softmax of
    Q-values; CLOSE's mass goes to HOLD, since closing is not a directional vote), else a
    one-hot of ``predictions["action"]`` scaled by the confidence with the rest on HOLD.
    Renormalised to sum to 1. ``ValueError`` when the output states no action at all or a
    probability that is NaN or negative.
    """
    preds = output.predictions
    probs = preds.get("action_probabilities") or preds.get("probabilities")
    if isinstance(probs, Mapping) and any(key in probs for key in _VOTE_KEYS):
        buy, sell, hold = (float(probs.get(key, 0.0)) for key in _VOTE_KEYS)
        hold += float(probs.get(_CLOSE_KEY, 0.0))  # float64 sums: the bits numpy gives
        out = np.array((buy, sell, hold), dtype=np.float64)
        values: tuple[float, ...] = (buy, sell, hold)
    elif output.action is not None:
        out = np.zeros(3, dtype=np.float64)
        action = output.action
        c = float(output.confidence)
        if action in VOTE_ACTIONS:
            out[VOTE_ACTIONS.index(action)] = c
            out[2] += 1.0 - c
        else:  # CLOSE
            out[2] = 1.0
        values = tuple(out.tolist())
    else:
        raise ValueError(
            f"{output.model_name} output at {output.timestamp} states no action: give "
            "predictions['action_probabilities'], ['probabilities'] or ['action']"
        )
    # finite and >= 0 (NaN fails both comparisons), summing to more than 0
    total = _sum(out) if all(0.0 <= v < _INF for v in values) else _NAN
    if not total > 0:
        raise ValueError(
            f"{output.model_name} output at {output.timestamp} has invalid action "
            f"probabilities {out.tolist()} (NaN, negative or all zero)"
        )
    return out / total


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One expert call at one step.

    ``input``: the standardized input at ``timestamp`` (windows of closed candles, the latest
    indicators and confirmed pivots, and ``last_predictions``: every model's newest output
    from *earlier* steps). ``upstream``: the outputs of this same step of the experts named in
    the expert's ``depends_on`` (PivotCNN → DQN). ``account``: the broker's account at the
    decision (position state for the RL agent).
    """

    symbol: str
    timestamp: int
    input: BaseDataInput
    upstream: Mapping[str, ModelOutput]
    account: AccountSnapshot
    observe: Callable[[Any], npt.NDArray[np.float32] | None] | None = None
    """Reads the expert's encoded input at this step from the market frame:
    ``observe(builder)`` with the expert's
    :class:`~pivotal.features.inputs.observation.ObservationBuilder` gives the unscaled
    ``(streams, frames, channels)`` float32 window, or None where the frame holds no valid
    window (too few bars, a gap). None when the step has no frame (a test's bare request)."""


@dataclass(frozen=True, slots=True)
class Inference:
    """An expert's answer: the output, and the exact arrays the network read (``tensors``:
    name → numpy array, e.g. ``{"x": (1, streams, frames, channels)}`` or ``{"obs": (1,
    frames, features)}``), enough for :meth:`Expert.replay` to reproduce ``output``."""

    output: ModelOutput
    tensors: Tensors = field(default_factory=dict)


@runtime_checkable
class Expert(Protocol):
    """A model as the orchestrator sees it (module docstring).

    ``name``: unique within an orchestrator (``ModelOutput.model_name`` of its outputs).
    ``model_type``: seed 003's type (``"cnn"``, ``"rl"``, ...). ``depends_on``: expert names
    whose same-step output it reads. ``spec``: the input it needs; an input that fails
    :func:`~pivotal.features.inputs.check_input` against it skips the call. ``timeframes``:
    the candle timeframes ``prepare`` must be given (all of the spec's, at least).
    """

    name: str
    model_type: str
    depends_on: tuple[str, ...]
    spec: InputSpec

    @property
    def timeframes(self) -> tuple[Timeframe, ...]: ...

    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        """Build causal bulk inputs for ``symbol`` from its candle history (every value at a
        close ``t`` from candles closed by ``t`` only). Called again when history grows."""
        ...

    def infer(self, request: InferenceRequest) -> Inference:
        """The output at ``request.timestamp``; raises on failure (the coordinator isolates
        it). Must not mutate shared state other than the expert's own."""
        ...

    def replay(self, symbol: str, timestamp: int, tensors: Tensors) -> ModelOutput:
        """The output the network gives on stored ``tensors`` (history replay); equal to the
        original ``Inference.output`` for the same weights."""
        ...

    def fallback(self) -> Expert | None:
        """A fresh expert from this one's last good checkpoint, or None (no vote)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened after a prediction made at ``timestamp`` for ``symbol``.

    ``realized_return``: close at ``matured_at`` over close at ``timestamp``, minus 1, after
    ``horizon_bars`` base bars. ``label``: BUY when the return is above the dead band, SELL
    when below minus the band, else HOLD.
    """

    symbol: str
    timestamp: int
    matured_at: int
    horizon_bars: int
    realized_return: float
    label: Action


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """A stored inference of ``model`` paired with its outcome (seed 003 §4.6)."""

    model: str
    symbol: str
    timestamp: int
    tensors: Tensors
    predicted: Action
    probabilities: npt.NDArray[np.float64]
    outcome: Outcome

    @property
    def correct(self) -> bool:
        return self.predicted is self.outcome.label


@dataclass(frozen=True, slots=True)
class GateExample:
    """The experts' votes at one step paired with the outcome: what a learned gate trains on.

    ``probabilities``: expert name → its BUY/SELL/HOLD vote (:func:`action_probabilities`);
    ``confidences``: expert name → ``ModelOutput.confidence``. Experts that gave no vote at
    that step are absent from both.
    """

    symbol: str
    timestamp: int
    probabilities: Mapping[str, tuple[float, float, float]]
    confidences: Mapping[str, float]
    outcome: Outcome


@runtime_checkable
class TrainableGate(Protocol):
    """A gate the learning loop trains on :class:`GateExample` s (candidate → promote or
    rollback, like an expert)."""

    @property
    def ready(self) -> bool:
        """Whether it has been trained enough to replace the vote."""
        ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...

    def fit(self, examples: Sequence[GateExample], *, epochs: int = 1) -> float: ...

    def score(self, examples: Sequence[GateExample]) -> float:
        """Accuracy in [0, 1]: the gate's combined action == outcome label."""
        ...


@runtime_checkable
class TrainableExpert(Expert, Protocol):
    """An expert the learning loop updates online. The loop trains a *training copy* of it
    on its worker thread (``training_copy()`` when the expert has one, else
    ``copy.deepcopy``; see :mod:`~pivotal.orchestrator.learning_worker`): the copy's
    methods run there, while the live expert infers; the live expert itself only gets
    ``restore`` (promoted weights) and ``load``, on the orchestrator's thread between steps
    (never concurrently with ``infer``)."""

    def snapshot(self) -> Any:
        """A copy of the current weights (and optimizer state) for :meth:`restore`."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Put the weights of ``snapshot`` back (rollback of a rejected candidate)."""
        ...

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        """Update the weights on ``examples`` (small online batch); returns the mean loss."""
        ...

    def score(self, examples: Sequence[TrainingExample]) -> float:
        """Accuracy in [0, 1] of the *current* weights on ``examples`` (replaying their
        stored tensors): predicted action == outcome label."""
        ...

    def save(self, path: Path, *, metrics: Mapping[str, float]) -> Path:
        """Write a checkpoint of the current weights to ``path`` (atomic)."""
        ...

    def load(self, path: Path) -> None:
        """Load weights from a checkpoint written by :meth:`save`."""
        ...


@dataclass(frozen=True, slots=True)
class Contribution:
    """One expert's part in a decision.

    ``weight``: its gate weight (weights of the voting experts sum to 1). ``probabilities``:
    its BUY/SELL/HOLD vote. ``share``: ``weight × probabilities[decided action]``, its part of
    the decision's confidence.
    """

    model: str
    action: Action
    confidence: float
    weight: float
    probabilities: tuple[float, float, float]
    share: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The orchestrator's decision at one step.

    ``probabilities``: the gate's combined BUY/SELL/HOLD; ``confidence``: the combined
    probability of ``action``; ``reason``: why (threshold met, below minimum confidence, no
    expert voted, ...). ``skipped``/``failed``: experts that gave no vote and why.
    """

    symbol: str
    timestamp: int
    action: Action
    confidence: float
    probabilities: tuple[float, float, float]
    gate: str
    contributions: tuple[Contribution, ...]
    reason: str
    skipped: Mapping[str, str] = field(default_factory=dict)

    def trading_action(self, source: str = "orchestrator") -> TradingAction | None:
        """The :class:`TradingAction` to send to the risk manager (None for HOLD)."""
        if self.action is Action.HOLD:
            return None
        return TradingAction(
            symbol=Symbol.parse(self.symbol),
            timestamp=self.timestamp,
            action=self.action,
            confidence=min(1.0, max(0.0, float(self.confidence))),
            source=source,
            reason=self.reason,
        )
