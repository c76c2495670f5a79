"""Gates of the mixture of experts (seed 003 §4 "MoEGateway"): how the experts' votes of one
step become one BUY/SELL/HOLD distribution, and how much each expert counted.

Both gates take ``votes``: expert name → ``(probabilities, confidence)``, where
``probabilities`` is the expert's ``(3,)`` BUY/SELL/HOLD vote in
:data:`~pivotal.orchestrator.contracts.VOTE_ACTIONS` order (summing to 1) and ``confidence``
its ``ModelOutput.confidence`` in [0, 1]. Both return ``(combined, weights)``: the combined
``(3,)`` distribution ``Σ_m g_m p_m`` and the gate weight ``g_m`` of every voter (the weights
sum to 1, so ``combined`` sums to 1 too).

- :class:`ConfidenceWeightedVote`: ``g_m = w_m · conf_m / Σ_k w_k · conf_k`` with a fixed
  prior weight ``w_m`` per expert (uniform over the voters when that sum is 0).
- :class:`LearnedGate`: a small torch network that reads every expert's vote and confidence
  and outputs the gate weights; trained online on :class:`GateExample` s (stored votes paired
  with what the market did) by the learning loop, through the
  :class:`~pivotal.orchestrator.contracts.TrainableGate` protocol.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pivotal.orchestrator.contracts import VOTE_ACTIONS, GateExample

__all__ = ["ConfidenceWeightedVote", "LearnedGate", "Votes"]

Votes = Mapping[str, tuple[npt.NDArray[np.float64], float]]
"""Expert name → (its (3,) BUY/SELL/HOLD probabilities, its confidence in [0, 1])."""

FEATURES_PER_EXPERT = 5
"""Gate-network input per expert: p_buy, p_sell, p_hold, confidence, present (1/0)."""

_LOG_FLOOR = 1e-8
"""Combined probabilities are clamped to this before the log of the training loss."""

_PRIOR_FLOOR = 1e-12
"""A prior weight of 0 becomes this inside the learned gate's log-prior (effectively 0)."""


def _check_weights(weights: Mapping[str, float] | None, what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (weights or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"{what} weight of {name!r} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} weight of {name!r} must be finite and >= 0, got {value!r}")
        out[str(name)] = float(value)
    return out


class ConfidenceWeightedVote:
    """Confidence-weighted vote: each voter counts ``w_m · conf_m``, normalised over voters.

    ``weights``: prior weight per expert (>= 0; experts not named weigh 1). A weight may name
    an expert that does not vote at a step; it is simply unused there. When every voter has
    ``w_m · conf_m == 0`` the voters are weighted uniformly, so a step with votes always
    yields a distribution.
    """

    name = "vote"

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self._weights = _check_weights(weights, "vote")

    @property
    def weights(self) -> Mapping[str, float]:
        """The prior weights given (experts not listed weigh 1)."""
        return dict(self._weights)

    def combine(self, votes: Votes) -> tuple[npt.NDArray[np.float64], dict[str, float]]:
        """``(combined (3,), gate weight per voter)``; ``ValueError`` on no votes."""
        if not votes:
            raise ValueError("no votes to combine: give at least one expert's vote")
        prior = self._weights
        raw = {name: prior.get(name, 1.0) * float(conf) for name, (_, conf) in votes.items()}
        total = sum(raw.values())
        if total > 0:
            weights = {name: value / total for name, value in raw.items()}
        else:
            uniform = 1.0 / len(raw)
            weights = dict.fromkeys(raw, uniform)
        combined = np.zeros(3, dtype=np.float64)
        for name, (probs, _) in votes.items():
            combined += weights[name] * probs
        return combined, weights


class _GateNet(nn.Module):
    """``[p_buy, p_sell, p_hold, confidence, present] × experts`` → one logit per expert."""

    def __init__(self, experts: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES_PER_EXPERT * experts, hidden)
        self.out = nn.Linear(hidden, experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


class LearnedGate:
    """A gating network trained on stored outcomes (a :class:`TrainableGate`).

    Input: for every expert in the fixed order ``experts``, ``[p_buy, p_sell, p_hold,
    confidence, present]`` (zeros and ``present = 0`` for an expert that did not vote),
    concatenated → ``Linear(hidden)`` → ReLU → ``Linear(len(experts))`` → logits. The log of
    the ``prior`` weight (default 1 each) is added, absent experts are masked to ``-inf`` and a
    softmax gives the gate weights ``g``; ``combined = Σ_m g_m p_m``. The last layer starts at
    zero, so the untrained gate is the prior-weighted average of the voters' probabilities.

    Training (:meth:`fit`) minimises the cross-entropy ``-log combined[label]`` of the outcome
    label (in ``VOTE_ACTIONS`` order) with Adam at ``learning_rate``, in shuffled mini-batches
    of :attr:`batch_size`. Initial weights and shuffling are seeded by ``seed`` (the global
    torch RNG is left untouched). :attr:`ready` turns True once :meth:`fit` has been given
    ``min_examples`` examples with at least one vote in total; that count is part of the
    snapshot, so a rolled-back fit does not count.

    Runs on the CPU in float32; :meth:`combine` runs under ``torch.inference_mode``.
    """

    name = "learned"
    batch_size = 32

    def __init__(
        self,
        experts: Sequence[str],
        *,
        hidden: int = 16,
        learning_rate: float = 0.01,
        min_examples: int = 64,
        seed: int = 0,
        prior: Mapping[str, float] | None = None,
    ) -> None:
        names = [str(e) for e in experts]
        if not names:
            raise ValueError("LearnedGate needs at least one expert name")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"LearnedGate expert names must be unique; repeated: {repeated}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        if not (isinstance(learning_rate, int | float) and 0 < learning_rate <= 1):
            raise ValueError(f"learning_rate must lie in (0, 1], got {learning_rate!r}")
        if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
            raise ValueError(f"min_examples must be an int >= 1, got {min_examples!r}")
        weights = _check_weights(prior, "learned gate prior")
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(
                f"learned gate prior names unknown experts {unknown}; experts: {names}"
            )
        self.experts: tuple[str, ...] = tuple(names)
        self.hidden = hidden
        self.learning_rate = float(learning_rate)
        self.min_examples = min_examples
        self.seed = seed
        self._index = {name: i for i, name in enumerate(self.experts)}
        self._log_prior = torch.tensor(
            [math.log(max(weights.get(n, 1.0), _PRIOR_FLOOR)) for n in self.experts],
            dtype=torch.float32,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = _GateNet(len(self.experts), hidden)
        nn.init.zeros_(self._net.out.weight)
        nn.init.zeros_(self._net.out.bias)
        self._net.eval()
        self._optimizer = torch.optim.Adam(self._net.parameters(), lr=self.learning_rate)
        self._shuffle = torch.Generator().manual_seed(seed)
        self._seen = 0
        self._x = np.zeros(FEATURES_PER_EXPERT * len(self.experts), dtype=np.float32)

    # ---- state -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once :meth:`fit` has seen at least ``min_examples`` voted examples in total."""
        return self._seen >= self.min_examples

    @property
    def examples_seen(self) -> int:
        """Examples with at least one vote that :meth:`fit` has trained on (each counted once,
        however many epochs)."""
        return self._seen

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of weights, optimizer state, shuffle RNG and example count."""
        return copy.deepcopy(self._state())

    def restore(self, snapshot: Any) -> None:
        """Put back a :meth:`snapshot` exactly (rollback of a rejected candidate)."""
        self.load_state_dict(snapshot)

    def state_dict(self) -> dict[str, Any]:
        """Everything to save with the orchestrator's checkpoints (``torch.save``-able: tensors,
        strings and numbers only)."""
        return copy.deepcopy(self._state())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict` of a gate with the same experts (same order) and width."""
        if not isinstance(state, Mapping):
            raise TypeError(f"gate state must be a mapping from state_dict(), got {type(state)}")
        missing = sorted({"experts", "hidden", "net", "optimizer", "shuffle", "seen"} - set(state))
        if missing:
            raise ValueError(f"gate state lacks {missing}; give a LearnedGate.state_dict()")
        experts = tuple(state["experts"])
        if experts != self.experts or int(state["hidden"]) != self.hidden:
            raise ValueError(
                f"gate state is for experts {list(experts)} with hidden={state['hidden']}, this "
                f"gate has experts {list(self.experts)} with hidden={self.hidden}; build the "
                "gate with the same experts (same order) and width"
            )
        self._net.load_state_dict(copy.deepcopy(dict(state["net"])))
        self._optimizer.load_state_dict(copy.deepcopy(dict(state["optimizer"])))
        self._shuffle.set_state(state["shuffle"].clone())
        self._seen = int(state["seen"])
        self._net.eval()

    def _state(self) -> dict[str, Any]:
        return {
            "experts": list(self.experts),
            "hidden": self.hidden,
            "net": self._net.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "shuffle": self._shuffle.get_state(),
            "seen": self._seen,
        }

    # ---- inference ---------------------------------------------------------------------

    def combine(self, votes: Votes) -> tuple[npt.NDArray[np.float64], dict[str, float]]:
        """``(combined (3,), gate weight per voter)``; ``ValueError`` on no votes or on a vote
        from an expert this gate was not built with."""
        if not votes:
            raise ValueError("no votes to combine: give at least one expert's vote")
        x = self._x
        x.fill(0.0)
        present = []
        for name, (probs, conf) in votes.items():
            i = self._index.get(name)
            if i is None:
                raise ValueError(
                    f"learned gate got a vote from unknown expert {name!r}; it was built for "
                    f"{list(self.experts)}"
                )
            base = FEATURES_PER_EXPERT * i
            x[base : base + 3] = probs
            x[base + 3] = conf
            x[base + 4] = 1.0
            present.append(i)
        with torch.inference_mode():
            logits = self._net(torch.from_numpy(x)) + self._log_prior
            g = torch.softmax(logits[present], dim=0).numpy().astype(np.float64)
        g /= g.sum()  # float32 softmax → weights that sum to 1 in float64
        combined = np.zeros(3, dtype=np.float64)
        weights: dict[str, float] = {}
        for k, (name, (probs, _)) in enumerate(votes.items()):
            w = float(g[k])
            weights[name] = w
            combined += w * probs
        return combined, weights

    # ---- training ----------------------------------------------------------------------

    def fit(self, examples: Sequence[GateExample], *, epochs: int = 1) -> float:
        """Train on ``examples`` for ``epochs`` passes; returns the mean cross-entropy of the
        last pass. Examples where no expert voted are skipped (nothing to weigh); when none
        is left nothing changes and the result is NaN. ``ValueError`` on an empty sequence."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        x, mask, probs, labels = self._batch(examples)
        n = len(labels)
        if n == 0:
            return float("nan")
        self._net.train()
        mean_loss = float("nan")
        for _ in range(epochs):
            order = torch.randperm(n, generator=self._shuffle)
            total = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                combined = self._combined(x[idx], mask[idx], probs[idx])
                picked = combined.gather(1, labels[idx].unsqueeze(1)).squeeze(1)
                loss = -torch.log(picked.clamp_min(_LOG_FLOOR)).mean()
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()
                total += float(loss.detach()) * len(idx)
            mean_loss = total / n
        self._net.eval()
        self._seen += n
        return mean_loss

    def score(self, examples: Sequence[GateExample]) -> float:
        """Accuracy in [0, 1] of ``argmax(combined)`` (ties: first in BUY, SELL, HOLD) against
        the outcome label; an example where no expert voted counts as a HOLD prediction (what
        the decision maker does). ``ValueError`` on an empty sequence."""
        x, mask, probs, labels = self._batch(examples)
        no_vote = [_label_index(e) for e in examples if not e.probabilities]
        correct = sum(1 for label in no_vote if label == 2)
        if len(labels):
            with torch.inference_mode():
                combined = self._combined(x, mask, probs)
                correct += int((combined.argmax(dim=1) == labels).sum())
        return correct / len(examples)

    def _combined(self, x: torch.Tensor, mask: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        logits = self._net(x) + self._log_prior
        logits = logits.masked_fill(~mask, float("-inf"))
        g = torch.softmax(logits, dim=1)
        return (g.unsqueeze(2) * probs).sum(dim=1)

    def _batch(
        self, examples: Sequence[GateExample]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tensors of the examples with at least one vote: inputs ``(n, 5·M)``, presence
        ``(n, M)``, probabilities ``(n, M, 3)`` and labels ``(n,)``."""
        if len(examples) == 0:
            raise ValueError("no gate examples given: pass at least one GateExample")
        m = len(self.experts)
        voted = [e for e in examples if e.probabilities]
        n = len(voted)
        probs = np.zeros((n, m, 3), dtype=np.float32)
        feats = np.zeros((n, m, FEATURES_PER_EXPERT), dtype=np.float32)
        mask = np.zeros((n, m), dtype=bool)
        labels = np.zeros(n, dtype=np.int64)
        for row, example in enumerate(voted):
            labels[row] = _label_index(example)
            for name, p in example.probabilities.items():
                i = self._index.get(name)
                if i is None:
                    raise ValueError(
                        f"gate example at {example.timestamp} has a vote from unknown expert "
                        f"{name!r}; this gate was built for {list(self.experts)}"
                    )
                if name not in example.confidences:
                    raise ValueError(
                        f"gate example at {example.timestamp} has a vote from {name!r} but no "
                        "confidence for it; give both or neither"
                    )
                vote = np.asarray(p, dtype=np.float64)
                conf = float(example.confidences[name])
                if (
                    vote.shape != (3,)
                    or not np.isfinite(vote).all()
                    or (vote < 0).any()
                    or vote.sum() <= 0
                ):
                    raise ValueError(
                        f"gate example at {example.timestamp}: vote of {name!r} must be 3 "
                        f"finite, non-negative BUY/SELL/HOLD probabilities, got {p!r}"
                    )
                if not math.isfinite(conf) or not 0.0 <= conf <= 1.0:
                    raise ValueError(
                        f"gate example at {example.timestamp}: confidence of {name!r} must lie "
                        f"in [0, 1], got {conf!r}"
                    )
                probs[row, i] = vote / vote.sum()
                feats[row, i, :3] = probs[row, i]
                feats[row, i, 3] = conf
                feats[row, i, 4] = 1.0
                mask[row, i] = True
        return (
            torch.from_numpy(feats.reshape(n, m * FEATURES_PER_EXPERT)),
            torch.from_numpy(mask),
            torch.from_numpy(probs),
            torch.from_numpy(labels),
        )


def _label_index(example: GateExample) -> int:
    label = example.outcome.label
    if label not in VOTE_ACTIONS:
        raise ValueError(
            f"gate example at {example.timestamp} has outcome label {label!r}; labels must be "
            "one of BUY, SELL, HOLD"
        )
    return VOTE_ACTIONS.index(label)
