"""The decision maker (seed 003 §4 "DecisionMaker"): the experts' outputs of one step → one
:class:`~pivotal.orchestrator.contracts.Decision`, with who contributed and how much.

Rule, on the gate's combined BUY/SELL/HOLD probabilities ``(p_buy, p_sell, p_hold)``:

1. BUY if ``p_buy >= buy_threshold`` and ``p_buy > p_sell``;
2. else SELL if ``p_sell >= sell_threshold`` and ``p_sell > p_buy``;
3. else HOLD.
4. A BUY or SELL whose probability is below ``min_confidence`` becomes HOLD.

``Decision.confidence`` is the combined probability of the decided action; every voter's
``Contribution.share`` is ``weight × its probability of the decided action``, so the shares
sum to the confidence. A step where no expert voted is HOLD with confidence 0 and all-zero
probabilities (there is no distribution to report), reason ``"no expert voted"``.

``Decision.gate`` names the gate actually used: ``"vote"``, ``"learned"``, or
``"vote (learned gate not ready)"`` while a configured learned gate has not yet seen
``learned_min_examples`` examples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.types import ModelOutput
from pivotal.orchestrator.config import GateConfig
from pivotal.orchestrator.contracts import (
    VOTE_ACTIONS,
    Contribution,
    Decision,
    action_probabilities,
)
from pivotal.orchestrator.gate import ConfidenceWeightedVote, LearnedGate

__all__ = ["NOT_READY_GATE", "DecisionMaker", "Thresholds", "decisions_frame"]

NOT_READY_GATE = "vote (learned gate not ready)"
"""``Decision.gate`` while a configured learned gate falls back to the vote."""

_HOLD = VOTE_ACTIONS[2]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The decision thresholds, each a combined probability in [0, 1]."""

    buy: float
    sell: float
    min_confidence: float


def _unit(value: float | None, name: str, current: float) -> float:
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


class DecisionMaker:
    """Turns the experts' :class:`ModelOutput` s of one step into a :class:`Decision`.

    ``config.kind == "vote"``: a :class:`ConfidenceWeightedVote` with ``config.weights``.
    ``"learned"``: a :class:`LearnedGate` over ``experts`` (prior ``config.weights``, seeded
    by ``seed``), with the vote used until the learned gate is :attr:`LearnedGate.ready`; the
    learning loop trains it through :attr:`learned_gate`.

    ``experts``: the names of every expert that may vote (the keys of ``decide``'s
    ``outputs``). Thresholds start at the config's and can be changed live with
    :meth:`set_thresholds` (replaced as one object, so a reader on another thread never sees
    half an update).
    """

    def __init__(self, config: GateConfig, experts: Sequence[str], *, seed: int = 0) -> None:
        if not isinstance(config, GateConfig):
            raise TypeError(f"config must be a GateConfig, got {type(config).__name__}")
        names = tuple(str(e) for e in experts)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"expert names must be unique; repeated: {repeated}")
        self.experts = names
        self._known = frozenset(names)
        self._order = {name: i for i, name in enumerate(names)}
        self._vote = ConfidenceWeightedVote(config.weights)
        self._learned: LearnedGate | None = None
        if config.kind == "learned":
            if not names:
                raise ValueError("a learned gate needs at least one expert; list the experts")
            self._learned = LearnedGate(
                names,
                hidden=config.learned_hidden,
                learning_rate=config.learned_learning_rate,
                min_examples=config.learned_min_examples,
                seed=seed,
                prior={k: v for k, v in config.weights.items() if k in self._known},
            )
        self._thresholds = Thresholds(
            buy=config.buy_threshold,
            sell=config.sell_threshold,
            min_confidence=config.min_confidence,
        )

    @property
    def gate(self) -> ConfidenceWeightedVote | LearnedGate:
        """The gate the next :meth:`decide` uses (the vote while a learned gate is not ready)."""
        learned = self._learned
        return learned if learned is not None and learned.ready else self._vote

    @property
    def learned_gate(self) -> LearnedGate | None:
        """The learned gate (ready or not) when configured, else None."""
        return self._learned

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    def _gate_name(self) -> tuple[ConfidenceWeightedVote | LearnedGate, str]:
        learned = self._learned
        if learned is None:
            return self._vote, self._vote.name
        if learned.ready:
            return learned, learned.name
        return self._vote, NOT_READY_GATE

    def set_thresholds(
        self,
        *,
        buy: float | None = None,
        sell: float | None = None,
        min_confidence: float | None = None,
    ) -> None:
        """Change thresholds live (None keeps the current value); each must lie in [0, 1]."""
        current = self._thresholds
        self._thresholds = Thresholds(
            buy=_unit(buy, "buy threshold", current.buy),
            sell=_unit(sell, "sell threshold", current.sell),
            min_confidence=_unit(min_confidence, "min_confidence", current.min_confidence),
        )

    def decide(
        self,
        symbol: str,
        timestamp: int,
        outputs: Mapping[str, ModelOutput],
        skipped: Mapping[str, str] | None = None,
        votes: Mapping[str, npt.NDArray[np.float64]] | None = None,
    ) -> Decision:
        """The decision at ``timestamp`` (UTC ms) for ``symbol`` from ``outputs`` (expert
        name → its output of this step). ``skipped``: experts that gave no output and why;
        an output whose probabilities are invalid is added there and does not vote.
        ``votes``: :func:`action_probabilities` of (some of) these very outputs, already
        computed (the coordinator's output check did: ``StepResult.votes``); the others are
        computed here. ``ValueError`` for an output from an expert not in :attr:`experts`."""
        thresholds = self._thresholds
        gate, gate_name = self._gate_name()
        skipped_all = dict(skipped) if skipped else {}
        ballots: dict[str, tuple[npt.NDArray[np.float64], float]] = {}
        known = self._known
        for name, output in outputs.items():
            if name not in known:
                raise ValueError(
                    f"output from unknown expert {name!r}; this decision maker knows "
                    f"{list(self.experts)}"
                )
            probabilities = None if votes is None else votes.get(name)
            if probabilities is None:
                try:
                    probabilities = action_probabilities(output)
                except ValueError as err:
                    skipped_all[name] = f"invalid probabilities: {err}"
                    continue
            ballots[name] = (probabilities, float(output.confidence))
        if not ballots:
            reason = "no expert voted"
            if skipped_all:
                details = "; ".join(f"{k}: {v}" for k, v in skipped_all.items())
                reason = f"{reason} ({details})"
            return Decision(
                symbol=symbol,
                timestamp=timestamp,
                action=_HOLD,
                confidence=0.0,
                probabilities=(0.0, 0.0, 0.0),
                gate=gate_name,
                contributions=(),
                reason=reason,
                skipped=skipped_all,
            )
        if len(ballots) > 1:
            order = self._order
            ballots = dict(sorted(ballots.items(), key=lambda item: order[item[0]]))
        combined, weights = gate.combine(ballots)
        p_buy, p_sell, p_hold = (float(v) for v in combined)
        index, reason = _rule(p_buy, p_sell, p_hold, thresholds)
        contributions = []
        for name, (probs, conf) in ballots.items():
            w = weights[name]
            contributions.append(
                Contribution(
                    model=name,
                    action=VOTE_ACTIONS[int(probs.argmax())],
                    confidence=conf,
                    weight=w,
                    probabilities=(float(probs[0]), float(probs[1]), float(probs[2])),
                    share=w * float(probs[index]),
                )
            )
        return Decision(
            symbol=symbol,
            timestamp=timestamp,
            action=VOTE_ACTIONS[index],
            confidence=(p_buy, p_sell, p_hold)[index],
            probabilities=(p_buy, p_sell, p_hold),
            gate=gate_name,
            contributions=tuple(contributions),
            reason=reason,
            skipped=skipped_all,
        )


def _rule(p_buy: float, p_sell: float, p_hold: float, t: Thresholds) -> tuple[int, str]:
    """``(index into VOTE_ACTIONS, reason)`` of the decision rule (module docstring)."""
    if p_buy >= t.buy and p_buy > p_sell:
        index, p, reason = 0, p_buy, f"BUY: p={p_buy:.2f} >= buy threshold {t.buy:.2f}"
    elif p_sell >= t.sell and p_sell > p_buy:
        index, p, reason = 1, p_sell, f"SELL: p={p_sell:.2f} >= sell threshold {t.sell:.2f}"
    else:
        return 2, f"HOLD: {_why_not(p_buy, p_sell, t.buy, 'buy')}, " + _why_not(
            p_sell, p_buy, t.sell, "sell"
        ) + f" (p_hold={p_hold:.2f})"
    if p < t.min_confidence:
        action = VOTE_ACTIONS[index].value
        return 2, (
            f"HOLD: {action} confidence {p:.2f} below minimum {t.min_confidence:.2f} "
            f"(p_hold={p_hold:.2f})"
        )
    return index, reason


def _why_not(p: float, other: float, threshold: float, side: str) -> str:
    if p < threshold:
        return f"p_{side}={p:.2f} < {side} threshold {threshold:.2f}"
    return f"p_{side}={p:.2f} not above p_{'sell' if side == 'buy' else 'buy'}={other:.2f}"


def decisions_frame(decisions: Sequence[Decision]) -> pd.DataFrame:
    """One row per decision, in the given order.

    Columns: ``timestamp`` (int64 UTC ms), ``symbol``, ``action`` (its value, e.g.
    ``"BUY"``), ``confidence``, ``p_buy``, ``p_sell``, ``p_hold`` (float64), ``gate``,
    ``reason``, then for every expert that contributed to any decision (in order of first
    appearance): ``w_<model>`` (gate weight, 0 where it did not vote), ``share_<model>`` (its
    part of the confidence, 0 where it did not vote), ``vote_<model>`` (its own argmax action,
    ``""`` where it did not vote).
    """
    n = len(decisions)
    columns: dict[str, object] = {
        "timestamp": np.fromiter((d.timestamp for d in decisions), dtype=np.int64, count=n),
        "symbol": pd.array([d.symbol for d in decisions], dtype="str"),
        "action": pd.array([d.action.value for d in decisions], dtype="str"),
        "confidence": np.fromiter((d.confidence for d in decisions), dtype=np.float64, count=n),
    }
    probs = np.array([d.probabilities for d in decisions], dtype=np.float64).reshape(n, 3)
    columns["p_buy"], columns["p_sell"], columns["p_hold"] = probs[:, 0], probs[:, 1], probs[:, 2]
    columns["gate"] = pd.array([d.gate for d in decisions], dtype="str")
    columns["reason"] = pd.array([d.reason for d in decisions], dtype="str")
    models: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[str]]] = {}
    for row, decision in enumerate(decisions):
        for c in decision.contributions:
            entry = models.get(c.model)
            if entry is None:
                entry = (np.zeros(n), np.zeros(n), [""] * n)
                models[c.model] = entry
            entry[0][row] = c.weight
            entry[1][row] = c.share
            entry[2][row] = c.action.value
    for model, (w, share, vote) in models.items():
        columns[f"w_{model}"] = w
        columns[f"share_{model}"] = share
        columns[f"vote_{model}"] = pd.array(vote, dtype="str")
    return pd.DataFrame(columns)
