"""The gates: a hand-computed confidence-weighted vote, and a learned gate that learns to trust
the expert that is right, deterministically, with exact snapshots and state round trips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pivotal.core.types import Action
from pivotal.orchestrator.contracts import VOTE_ACTIONS, GateExample, Outcome, TrainableGate
from pivotal.orchestrator.gate import ConfidenceWeightedVote, LearnedGate
from pivotal.testing.threads import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _p(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# ---- confidence-weighted vote ---------------------------------------------------------------


def test_vote_matches_hand_computation_with_weights_and_confidences() -> None:
    vote = ConfidenceWeightedVote({"a": 2.0, "b": 1.0})  # c: default weight 1
    votes = {
        "a": (_p(0.5, 0.25, 0.25), 0.5),  # 2 × 0.5 = 1.0
        "b": (_p(0.25, 0.5, 0.25), 0.8),  # 1 × 0.8 = 0.8
        "c": (_p(0.0, 0.0, 1.0), 0.2),  # 1 × 0.2 = 0.2  → total 2.0
    }
    combined, weights = vote.combine(votes)
    assert weights == pytest.approx({"a": 0.5, "b": 0.4, "c": 0.1})
    # BUY: .5·.5 + .4·.25 = .35; SELL: .5·.25 + .4·.5 = .325; HOLD: .125 + .1 + .1 = .325
    np.testing.assert_allclose(combined, [0.35, 0.325, 0.325])
    assert sum(weights.values()) == pytest.approx(1.0)


def test_vote_two_experts_default_weights() -> None:
    combined, weights = ConfidenceWeightedVote().combine(
        {"x": (_p(1.0, 0.0, 0.0), 0.75), "y": (_p(0.0, 1.0, 0.0), 0.25)}
    )
    assert weights == pytest.approx({"x": 0.75, "y": 0.25})
    np.testing.assert_allclose(combined, [0.75, 0.25, 0.0])


def test_vote_is_uniform_when_every_weighted_confidence_is_zero() -> None:
    combined, weights = ConfidenceWeightedVote({"b": 0.0}).combine(
        {"a": (_p(1.0, 0.0, 0.0), 0.0), "b": (_p(0.0, 0.0, 1.0), 0.9)}
    )
    assert weights == pytest.approx({"a": 0.5, "b": 0.5})
    np.testing.assert_allclose(combined, [0.5, 0.0, 0.5])


def test_vote_zero_prior_weight_silences_an_expert() -> None:
    _, weights = ConfidenceWeightedVote({"b": 0.0}).combine(
        {"a": (_p(1.0, 0.0, 0.0), 0.3), "b": (_p(0.0, 0.0, 1.0), 0.9)}
    )
    assert weights == pytest.approx({"a": 1.0, "b": 0.0})


def test_vote_weight_for_an_absent_expert_is_fine() -> None:
    combined, weights = ConfidenceWeightedVote({"absent": 5.0}).combine(
        {"a": (_p(0.25, 0.25, 0.5), 0.4)}
    )
    assert weights == {"a": 1.0}
    np.testing.assert_allclose(combined, [0.25, 0.25, 0.5])


def test_vote_refuses_no_votes_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="no votes"):
        ConfidenceWeightedVote().combine({})
    with pytest.raises(ValueError, match=">= 0"):
        ConfidenceWeightedVote({"a": -1.0})
    with pytest.raises(ValueError, match="finite"):
        ConfidenceWeightedVote({"a": float("nan")})
    with pytest.raises(TypeError, match="number"):
        ConfidenceWeightedVote({"a": "1"})  # type: ignore[dict-item]


# ---- learned gate: synthetic experts ---------------------------------------------------------

GOOD_P, BAD_P = 0.6, 0.9  # the good expert is right 90% but mild; the bad one loud and wrong


def _vote_of(action: int, peak: float) -> tuple[float, float, float]:
    rest = (1.0 - peak) / 2
    return tuple(peak if i == action else rest for i in range(3))  # type: ignore[return-value]


def _examples(n: int, seed: int, *, good_right: float = 0.9, bad_right: float = 0.3):
    """``good`` is right with probability ``good_right`` (mild, confidence 0.6), ``bad`` with
    ``bad_right`` (peaked, confidence 0.9): the confidence-weighted vote follows ``bad``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        label = int(rng.integers(3))

        def pick(p_right: float, label: int = label) -> int:
            if rng.random() < p_right:
                return label
            return int(rng.choice([a for a in range(3) if a != label]))

        good, bad = pick(good_right), pick(bad_right)
        out.append(
            GateExample(
                symbol="BTC/USDT",
                timestamp=60_000 * k,
                probabilities={"good": _vote_of(good, GOOD_P), "bad": _vote_of(bad, BAD_P)},
                confidences={"good": GOOD_P, "bad": BAD_P},
                outcome=Outcome(
                    symbol="BTC/USDT",
                    timestamp=60_000 * k,
                    matured_at=60_000 * (k + 12),
                    horizon_bars=12,
                    realized_return=0.0,
                    label=VOTE_ACTIONS[label],
                ),
            )
        )
    return out


def _votes(example: GateExample) -> dict[str, tuple[np.ndarray, float]]:
    return {
        name: (np.asarray(p, dtype=np.float64), example.confidences[name])
        for name, p in example.probabilities.items()
    }


def _accuracy(gate: ConfidenceWeightedVote | LearnedGate, examples: list[GateExample]) -> float:
    hits = 0
    for e in examples:
        combined, _ = gate.combine(_votes(e))
        hits += VOTE_ACTIONS[int(np.argmax(combined))] is e.outcome.label
    return hits / len(examples)


def _gate(**kwargs: object) -> LearnedGate:
    params: dict[str, object] = {"learning_rate": 0.05, "min_examples": 64, "seed": 7}
    params.update(kwargs)
    return LearnedGate(["good", "bad"], **params)  # type: ignore[arg-type]


def test_learned_gate_is_a_trainable_gate() -> None:
    assert isinstance(_gate(), TrainableGate)


def test_learned_gate_learns_to_trust_the_good_expert() -> None:
    train, test = _examples(512, seed=1), _examples(400, seed=2)
    vote_accuracy = _accuracy(ConfidenceWeightedVote(), test)
    gate = _gate()
    before = gate.score(test)
    losses = [gate.fit(train, epochs=1) for _ in range(15)]
    after = gate.score(test)
    assert losses[-1] < losses[0]
    assert after > vote_accuracy + 0.2, (vote_accuracy, before, after)
    assert after > before
    assert after == pytest.approx(_accuracy(gate, test))  # score == combine's argmax
    weights = [gate.combine(_votes(e))[1] for e in test[:100]]
    mean_good = float(np.mean([w["good"] for w in weights]))
    assert mean_good > 0.7
    assert all(sum(w.values()) == pytest.approx(1.0) for w in weights)


def test_learned_gate_is_deterministic_for_a_seed() -> None:
    train = _examples(96, seed=3)
    a, b, c = _gate(seed=5), _gate(seed=5), _gate(seed=6)
    assert a.fit(train, epochs=2) == b.fit(train, epochs=2)
    sa, sb = a.state_dict()["net"], b.state_dict()["net"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c.fit(train, epochs=2)
    sc = c.state_dict()["net"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_untrained_learned_gate_is_the_prior_weighted_average() -> None:
    gate = LearnedGate(["a", "b", "c"], prior={"a": 3.0, "c": 0.0}, seed=1)
    combined, weights = gate.combine(
        {"a": (_p(1.0, 0.0, 0.0), 0.2), "b": (_p(0.0, 1.0, 0.0), 0.9), "c": (_p(0, 0, 1.0), 1.0)}
    )
    assert weights["a"] == pytest.approx(0.75, abs=1e-6)
    assert weights["b"] == pytest.approx(0.25, abs=1e-6)
    assert weights["c"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(combined, [0.75, 0.25, 0.0], atol=1e-6)
    # an absent expert takes no weight
    _, only_b = gate.combine({"b": (_p(0.0, 1.0, 0.0), 0.9)})
    assert only_b == {"b": pytest.approx(1.0)}


def test_learned_gate_ready_counts_voted_examples_once_per_fit() -> None:
    gate = _gate(min_examples=10)
    examples = _examples(10, seed=4)
    assert not gate.ready
    gate.fit(examples[:6], epochs=3)
    assert gate.examples_seen == 6 and not gate.ready
    no_vote = GateExample("BTC/USDT", 0, {}, {}, examples[0].outcome)
    assert np.isnan(gate.fit([no_vote, no_vote]))
    assert gate.examples_seen == 6
    gate.fit([*examples[6:], no_vote])
    assert gate.ready


def test_learned_gate_snapshot_restore_is_exact() -> None:
    train = _examples(80, seed=8)
    gate = _gate()
    gate.fit(train[:40])
    probe = _votes(train[0])
    snap = gate.snapshot()
    before = gate.combine(probe)
    first_loss = gate.fit(train[40:], epochs=2)
    after_first = gate.combine(probe)
    assert not np.array_equal(before[0], after_first[0])
    gate.restore(snap)
    assert np.array_equal(gate.combine(probe)[0], before[0])
    assert gate.examples_seen == 40
    # optimizer moments and shuffle RNG came back too: the same fit gives the same result
    assert gate.fit(train[40:], epochs=2) == first_loss
    assert np.array_equal(gate.combine(probe)[0], after_first[0])


def test_learned_gate_state_dict_round_trip_through_torch_save(tmp_path: Path) -> None:
    train = _examples(70, seed=9)
    gate = _gate()
    gate.fit(train, epochs=2)
    path = tmp_path / "gate.pt"
    torch.save(gate.state_dict(), path)
    other = _gate(seed=99)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert other.ready and gate.ready
    for e in train[:10]:
        np.testing.assert_array_equal(other.combine(_votes(e))[0], gate.combine(_votes(e))[0])
    assert other.fit(train) == gate.fit(train)
    with pytest.raises(ValueError, match="same experts"):
        LearnedGate(["bad", "good"]).load_state_dict(gate.state_dict())
    with pytest.raises(ValueError, match="same experts"):
        LearnedGate(["good", "bad"], hidden=8).load_state_dict(gate.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        gate.load_state_dict({"experts": ["good", "bad"]})


def test_learned_gate_refuses_bad_input() -> None:
    gate = _gate()
    with pytest.raises(ValueError, match="no votes"):
        gate.combine({})
    with pytest.raises(ValueError, match="unknown expert 'other'"):
        gate.combine({"other": (_p(1.0, 0.0, 0.0), 1.0)})
    with pytest.raises(ValueError, match="no gate examples"):
        gate.fit([])
    with pytest.raises(ValueError, match="no gate examples"):
        gate.score([])
    example = _examples(1, seed=0)[0]
    no_conf = GateExample("BTC/USDT", 0, example.probabilities, {"good": 0.5}, example.outcome)
    with pytest.raises(ValueError, match="no confidence"):
        gate.fit([no_conf])
    bad_probs = GateExample(
        "BTC/USDT", 0, {"good": (float("nan"), 0.0, 1.0)}, {"good": 0.5}, example.outcome
    )
    with pytest.raises(ValueError, match="finite"):
        gate.fit([bad_probs])
    with pytest.raises(ValueError, match="unique"):
        LearnedGate(["a", "a"])
    with pytest.raises(ValueError, match="unknown experts"):
        LearnedGate(["a"], prior={"b": 1.0})
    with pytest.raises(ValueError, match="epochs"):
        gate.fit(_examples(2, seed=0), epochs=0)


def test_learned_gate_score_counts_no_vote_examples_as_hold() -> None:
    gate = _gate()
    base = _examples(1, seed=0)[0].outcome
    hold = Outcome("BTC/USDT", 0, 1, 1, 0.0, Action.HOLD)
    buy = Outcome("BTC/USDT", 0, 1, 1, 0.01, Action.BUY)
    assert base.label in VOTE_ACTIONS
    examples = [GateExample("BTC/USDT", 0, {}, {}, hold), GateExample("BTC/USDT", 0, {}, {}, buy)]
    assert gate.score(examples) == 0.5
