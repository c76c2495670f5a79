"""The decision maker: thresholds at their boundaries, the minimum confidence, no-voter HOLDs,
contributions whose shares add up to the confidence, live thresholds, the learned gate's
fallback to the vote, and the decisions frame."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import pytest

from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, ModelOutput
from pivotal.orchestrator.config import GateConfig
from pivotal.orchestrator.contracts import (
    VOTE_ACTIONS,
    GateExample,
    Outcome,
    action_probabilities,
)
from pivotal.orchestrator.decisions import (
    NOT_READY_GATE,
    DecisionMaker,
    Thresholds,
    decisions_frame,
)
from pivotal.orchestrator.gate import ConfidenceWeightedVote, LearnedGate
from pivotal.testing.threads import one_torch_thread

SYMBOL = "BTC/USDT"
T0 = 1_700_000_000_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _out(name: str, buy: float, sell: float, hold: float, confidence: float = 0.5) -> ModelOutput:
    return ModelOutput(
        model_type="cnn",
        model_name=name,
        symbol=Symbol.parse(SYMBOL),
        timestamp=T0,
        confidence=confidence,
        predictions={"action_probabilities": {"BUY": buy, "SELL": sell, "HOLD": hold}},
    )


def _maker(experts: tuple[str, ...] = ("cnn", "dqn"), **config: object) -> DecisionMaker:
    return DecisionMaker(GateConfig(**config), experts)  # type: ignore[arg-type]


def _decide(maker: DecisionMaker, outputs: Mapping[str, ModelOutput], **kw: object):
    return maker.decide(SYMBOL, T0, outputs, **kw)  # type: ignore[arg-type]


# ---- the rule at its boundaries ----------------------------------------------------------------


def test_buy_at_exactly_the_buy_threshold() -> None:
    maker = _maker(buy_threshold=0.625)
    d = _decide(maker, {"cnn": _out("cnn", 0.625, 0.25, 0.125)})
    assert d.action is Action.BUY
    assert d.confidence == 0.625
    assert d.reason == "BUY: p=0.62 >= buy threshold 0.62"
    assert d.gate == "vote"
    assert d.trading_action() is not None


def test_hold_just_below_the_buy_threshold() -> None:
    maker = _maker(buy_threshold=0.75)
    d = _decide(maker, {"cnn": _out("cnn", 0.625, 0.25, 0.125)})
    assert d.action is Action.HOLD
    assert d.confidence == 0.125
    assert "p_buy=0.62 < buy threshold 0.75" in d.reason
    assert d.trading_action() is None


def test_sell_at_exactly_the_sell_threshold_and_the_buy_threshold_does_not_matter() -> None:
    maker = _maker(buy_threshold=0.0, sell_threshold=0.5)
    d = _decide(maker, {"cnn": _out("cnn", 0.25, 0.5, 0.25)})
    assert d.action is Action.SELL
    assert d.confidence == 0.5
    assert d.reason == "SELL: p=0.50 >= sell threshold 0.50"


def test_tie_between_buy_and_sell_holds() -> None:
    maker = _maker(buy_threshold=0.25, sell_threshold=0.25)
    d = _decide(maker, {"cnn": _out("cnn", 0.375, 0.375, 0.25)})
    assert d.action is Action.HOLD
    assert "not above" in d.reason


def test_min_confidence_turns_a_weak_buy_into_hold() -> None:
    maker = _maker(buy_threshold=0.4, min_confidence=0.5)
    d = _decide(maker, {"cnn": _out("cnn", 0.41, 0.30, 0.29)})
    assert d.action is Action.HOLD
    assert "confidence 0.41 below minimum 0.50" in d.reason
    assert d.confidence == pytest.approx(0.29)


def test_min_confidence_is_met_at_equality() -> None:
    maker = _maker(buy_threshold=0.5, min_confidence=0.625)
    assert _decide(maker, {"cnn": _out("cnn", 0.625, 0.25, 0.125)}).action is Action.BUY
    maker.set_thresholds(min_confidence=0.75)
    d = _decide(maker, {"cnn": _out("cnn", 0.625, 0.25, 0.125)})
    assert d.action is Action.HOLD
    assert "BUY confidence 0.62 below minimum 0.75" in d.reason


def test_min_confidence_applies_to_sell_too() -> None:
    maker = _maker(sell_threshold=0.25, min_confidence=0.5)
    d = _decide(maker, {"cnn": _out("cnn", 0.25, 0.375, 0.375)})
    assert d.action is Action.HOLD
    assert "SELL confidence 0.38 below minimum 0.50" in d.reason


# ---- voters --------------------------------------------------------------------------------


def test_no_voter_is_a_hold_with_zero_confidence_and_the_skipped_reasons() -> None:
    maker = _maker()
    d = _decide(maker, {}, skipped={"dqn": "timeout after 2000 ms"})
    assert d.action is Action.HOLD
    assert d.confidence == 0.0
    assert d.probabilities == (0.0, 0.0, 0.0)
    assert d.contributions == ()
    assert d.reason.startswith("no expert voted")
    assert "dqn: timeout after 2000 ms" in d.reason
    assert d.skipped == {"dqn": "timeout after 2000 ms"}
    assert _decide(maker, {}).reason == "no expert voted"


def test_invalid_probabilities_count_as_no_vote() -> None:
    maker = _maker()
    broken = _out("dqn", float("nan"), 0.5, 0.5)
    silent = ModelOutput("rl", "dqn", Symbol.parse(SYMBOL), T0, 0.5, predictions={})
    d = _decide(maker, {"cnn": _out("cnn", 0.75, 0.125, 0.125), "dqn": broken})
    assert [c.model for c in d.contributions] == ["cnn"]
    assert d.action is Action.BUY
    assert "invalid probabilities" in d.skipped["dqn"]
    d = _decide(maker, {"dqn": silent})
    assert d.action is Action.HOLD and d.confidence == 0.0
    assert "states no action" in d.reason


def test_two_experts_hand_computed_contributions() -> None:
    maker = _maker(weights={"cnn": 3.0})
    d = _decide(
        maker,
        {
            "dqn": _out("dqn", 0.0, 1.0, 0.0, confidence=0.5),  # 1 × 0.5
            "cnn": _out("cnn", 0.75, 0.0, 0.25, confidence=0.5),  # 3 × 0.5
        },
    )
    # weights 0.75 / 0.25; BUY = .75·.75 = .5625, SELL = .25, HOLD = .1875
    assert d.probabilities == pytest.approx((0.5625, 0.25, 0.1875))
    assert d.action is Action.BUY
    assert [c.model for c in d.contributions] == ["cnn", "dqn"]  # experts' order
    cnn, dqn = d.contributions
    assert (cnn.weight, dqn.weight) == pytest.approx((0.75, 0.25))
    assert (cnn.action, dqn.action) == (Action.BUY, Action.SELL)
    assert (cnn.share, dqn.share) == pytest.approx((0.5625, 0.0))
    assert cnn.probabilities == (0.75, 0.0, 0.25)
    assert cnn.confidence == 0.5


def test_an_expert_named_in_weights_but_absent_from_the_step_is_fine() -> None:
    maker = _maker(weights={"dqn": 10.0})
    d = _decide(maker, {"cnn": _out("cnn", 0.75, 0.125, 0.125)})
    assert d.action is Action.BUY
    assert [(c.model, c.weight) for c in d.contributions] == [("cnn", 1.0)]


def test_shares_sum_to_confidence_and_weights_to_one() -> None:
    rng = np.random.default_rng(0)
    maker = _maker(("a", "b", "c"), weights={"a": 0.5, "b": 2.0}, buy_threshold=0.4)
    actions = set()
    for _ in range(200):
        outputs = {}
        for name in ("a", "b", "c"):
            if rng.random() < 0.8:
                p = rng.dirichlet([1.0, 1.0, 1.0])
                outputs[name] = _out(name, *p, confidence=float(rng.random()))
        d = _decide(maker, outputs)
        actions.add(d.action)
        if not d.contributions:
            continue
        assert sum(c.weight for c in d.contributions) == pytest.approx(1.0)
        assert sum(c.share for c in d.contributions) == pytest.approx(d.confidence)
        assert sum(d.probabilities) == pytest.approx(1.0)
        assert d.confidence == d.probabilities[VOTE_ACTIONS.index(d.action)]
    assert actions == {Action.BUY, Action.SELL, Action.HOLD}


@pytest.mark.parametrize("kind", ["vote", "learned"])
def test_votes_the_coordinator_computed_give_the_same_decision(kind: str) -> None:
    rng = np.random.default_rng(3)
    maker = _maker(kind=kind, weights={"cnn": 2.0})
    for _ in range(50):
        p = rng.dirichlet(np.ones(3), size=2)
        outputs = {
            "cnn": _out("cnn", *p[0], confidence=float(rng.random())),
            "dqn": _out("dqn", *p[1], confidence=float(rng.random())),
        }
        votes = {name: action_probabilities(out) for name, out in outputs.items()}
        plain = _decide(maker, outputs)
        assert _decide(maker, outputs, votes=votes) == plain
        assert _decide(maker, outputs, votes={"dqn": votes["dqn"]}) == plain  # cnn computed
    # the votes given are what the gate reads (the caller's promise: of these outputs)
    given = {"cnn": np.array([0.0, 0.0, 1.0])}
    assert _decide(maker, outputs, votes=given).contributions[0].probabilities == (0, 0, 1)


def test_unknown_expert_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown expert 'lstm'"):
        _decide(_maker(), {"lstm": _out("lstm", 1.0, 0.0, 0.0)})
    with pytest.raises(ValueError, match="unique"):
        _maker(("a", "a"))


# ---- live thresholds -------------------------------------------------------------------------


def test_set_thresholds_changes_the_next_decision_and_validates() -> None:
    maker = _maker(buy_threshold=0.75)
    outputs = {"cnn": _out("cnn", 0.625, 0.25, 0.125)}
    assert _decide(maker, outputs).action is Action.HOLD
    maker.set_thresholds(buy=0.625)
    assert maker.thresholds == Thresholds(buy=0.625, sell=0.5, min_confidence=0.0)
    assert _decide(maker, outputs).action is Action.BUY
    for bad in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            maker.set_thresholds(sell=bad)
    for wrong in ("0.5", True):
        with pytest.raises(TypeError, match="number"):
            maker.set_thresholds(min_confidence=wrong)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sell threshold"):
        maker.set_thresholds(buy=0.1, sell=2.0)  # refused as a whole: buy stays 0.625
    assert maker.thresholds == Thresholds(buy=0.625, sell=0.5, min_confidence=0.0)
    maker.set_thresholds(buy=0, sell=1, min_confidence=1)
    assert maker.thresholds == Thresholds(buy=0.0, sell=1.0, min_confidence=1.0)


# ---- learned gate ---------------------------------------------------------------------------


def _gate_examples(n: int) -> list[GateExample]:
    rng = np.random.default_rng(1)
    out = []
    for k in range(n):
        label = int(rng.integers(3))
        probs = {"cnn": tuple(0.8 if i == label else 0.1 for i in range(3))}
        outcome = Outcome(SYMBOL, T0 + k, T0 + k + 1, 1, 0.0, VOTE_ACTIONS[label])
        out.append(GateExample(SYMBOL, T0 + k, probs, {"cnn": 0.8}, outcome))  # type: ignore[arg-type]
    return out


def test_vote_kind_has_no_learned_gate() -> None:
    maker = _maker()
    assert isinstance(maker.gate, ConfidenceWeightedVote)
    assert maker.learned_gate is None


def test_learned_gate_not_ready_falls_back_to_the_vote_then_takes_over() -> None:
    config = {"kind": "learned", "learned_min_examples": 8, "weights": {"cnn": 2.0}}
    maker = _maker(**config)
    vote = _maker(weights={"cnn": 2.0})
    outputs = {"cnn": _out("cnn", 0.5, 0.25, 0.25, 0.2), "dqn": _out("dqn", 0.0, 0.5, 0.5, 0.9)}
    learned = maker.learned_gate
    assert isinstance(learned, LearnedGate)
    assert learned.experts == ("cnn", "dqn")
    assert isinstance(maker.gate, ConfidenceWeightedVote)
    d = _decide(maker, outputs)
    assert d.gate == NOT_READY_GATE
    assert d.probabilities == _decide(vote, outputs).probabilities
    learned.fit(_gate_examples(8))
    assert learned.ready
    assert maker.gate is learned
    d = _decide(maker, outputs)
    assert d.gate == "learned"
    combined, weights = learned.combine(
        {
            name: (np.asarray(c.probabilities), c.confidence)
            for name, c in zip(("cnn", "dqn"), d.contributions, strict=True)
        }
    )
    assert d.probabilities == pytest.approx(tuple(combined))
    assert [c.weight for c in d.contributions] == pytest.approx([weights["cnn"], weights["dqn"]])
    assert sum(c.share for c in d.contributions) == pytest.approx(d.confidence)


def test_learned_decision_maker_is_seeded() -> None:
    config = GateConfig(kind="learned", learned_min_examples=4)
    a, b = (
        DecisionMaker(config, ["cnn", "dqn"], seed=3),
        DecisionMaker(config, ["cnn", "dqn"], seed=3),
    )
    examples = _gate_examples(16)
    assert a.learned_gate is not None and b.learned_gate is not None
    assert a.learned_gate.fit(examples) == b.learned_gate.fit(examples)
    outputs = {"cnn": _out("cnn", 0.5, 0.25, 0.25, 0.7), "dqn": _out("dqn", 0.25, 0.5, 0.25, 0.4)}
    assert _decide(a, outputs) == _decide(b, outputs)


def test_config_must_be_a_gate_config() -> None:
    with pytest.raises(TypeError, match="GateConfig"):
        DecisionMaker({"kind": "vote"}, ["cnn"])  # type: ignore[arg-type]


# ---- decisions frame ------------------------------------------------------------------------


def test_decisions_frame_columns_dtypes_and_absent_experts() -> None:
    maker = _maker(buy_threshold=0.5)
    decisions = [
        _decide(maker, {"cnn": _out("cnn", 0.75, 0.125, 0.125)}),
        _decide(maker, {"cnn": _out("cnn", 0.25, 0.5, 0.25), "dqn": _out("dqn", 0, 1.0, 0)}),
        _decide(maker, {}, skipped={"cnn": "stale input"}),
    ]
    frame = decisions_frame(decisions)
    assert list(frame.columns) == [
        "timestamp", "symbol", "action", "confidence", "p_buy", "p_sell", "p_hold", "gate",
        "reason", "w_cnn", "share_cnn", "vote_cnn", "w_dqn", "share_dqn", "vote_dqn",
    ]  # fmt: skip
    assert frame["timestamp"].dtype == np.int64
    for col in ("confidence", "p_buy", "p_sell", "p_hold", "w_cnn", "share_dqn"):
        assert frame[col].dtype == np.float64
    for col in ("symbol", "action", "gate", "reason", "vote_cnn", "vote_dqn"):
        assert pd.api.types.is_string_dtype(frame[col])
    assert frame["action"].tolist() == ["BUY", "SELL", "HOLD"]
    assert frame["vote_dqn"].tolist() == ["", "SELL", ""]
    assert frame["vote_cnn"].tolist() == ["BUY", "SELL", ""]
    assert frame["w_dqn"].iloc[0] == 0.0 and frame["share_cnn"].iloc[2] == 0.0
    assert frame["w_cnn"].iloc[0] == 1.0
    shares = frame["share_cnn"] + frame["share_dqn"]
    np.testing.assert_allclose(shares.to_numpy(), frame["confidence"].to_numpy())
    assert frame["reason"].iloc[2].startswith("no expert voted")


def test_decisions_frame_of_nothing_has_the_base_columns() -> None:
    frame = decisions_frame([])
    assert list(frame.columns) == [
        "timestamp", "symbol", "action", "confidence", "p_buy", "p_sell", "p_hold", "gate",
        "reason",
    ]  # fmt: skip
    assert len(frame) == 0
    assert frame["timestamp"].dtype == np.int64
    assert frame["p_buy"].dtype == np.float64
