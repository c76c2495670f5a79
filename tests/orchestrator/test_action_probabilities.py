"""action_probabilities reads the vote without numpy round trips per value: for any
predictions it gives the same bits, or raises the same error, as the plain numpy reading
(kept here as the reference), and judge_output hands the gate exactly that vote."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, ModelOutput
from pivotal.orchestrator.contracts import VOTE_ACTIONS, Inference, action_probabilities
from pivotal.orchestrator.output_checks import judge_output, validate_output

SYM = Symbol("BTC", "USDT")


def _reference(output: ModelOutput) -> npt.NDArray[np.float64]:
    """The plain numpy reading (the implementation before the fast one)."""
    preds = output.predictions
    probs = preds.get("action_probabilities") or preds.get("probabilities")
    out = np.zeros(3, dtype=np.float64)
    if isinstance(probs, Mapping) and any(a.value in probs for a in VOTE_ACTIONS):
        for i, action in enumerate(VOTE_ACTIONS):
            out[i] = float(probs.get(action.value, 0.0))
        out[2] += float(probs.get(Action.CLOSE.value, 0.0))
    elif output.action is not None:
        action = output.action
        c = float(output.confidence)
        if action in VOTE_ACTIONS:
            out[VOTE_ACTIONS.index(action)] = c
            out[2] += 1.0 - c
        else:
            out[2] = 1.0
    else:
        raise ValueError(
            f"{output.model_name} output at {output.timestamp} states no action: give "
            "predictions['action_probabilities'], ['probabilities'] or ['action']"
        )
    if not np.isfinite(out).all() or (out < 0).any() or out.sum() <= 0:
        raise ValueError(
            f"{output.model_name} output at {output.timestamp} has invalid action "
            f"probabilities {out.tolist()} (NaN, negative or all zero)"
        )
    return out / out.sum()


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, -0.0, 1e308, 5e-324, 1.0, 1 / 3]),
    st.integers(-3, 3),
)
_probs = st.dictionaries(st.sampled_from(["BUY", "SELL", "HOLD", "CLOSE", "up"]), _value)


@st.composite
def _outputs(draw: st.DrawFn) -> ModelOutput:
    predictions: dict[str, Any] = {}
    for key in ("action_probabilities", "probabilities"):
        if draw(st.booleans()):
            predictions[key] = draw(_probs)
    if draw(st.booleans()):
        predictions["action"] = draw(st.sampled_from(["BUY", "SELL", "HOLD", "CLOSE"]))
    return ModelOutput(
        model_type="cnn",
        model_name="m",
        symbol=SYM,
        timestamp=60_000,
        confidence=draw(st.floats(0.0, 1.0)),
        predictions=predictions,
    )


def _outcome(read: Any, output: ModelOutput) -> tuple[str, Any]:
    try:
        value = read(output)
    except (ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)
    return "ok", (value.dtype, value.shape, value.tobytes())


@settings(max_examples=500, deadline=None)
@given(_outputs())
def test_same_bits_or_same_error_as_the_plain_reading(output: ModelOutput) -> None:
    assert _outcome(action_probabilities, output) == _outcome(_reference, output)


@settings(max_examples=200, deadline=None)
@given(_outputs())
def test_judge_output_hands_over_the_checked_vote(output: ModelOutput) -> None:
    problem, vote = judge_output(Inference(output), "m", SYM, 60_000)
    assert problem == validate_output(Inference(output), "m", SYM, 60_000)
    if problem is None:
        assert vote is not None and vote.tobytes() == _reference(output).tobytes()
        with pytest.raises(ValueError, match="read-only"):
            vote[0] = 1.0  # read-only: the gate reads what was checked
    else:
        assert vote is None


def test_close_mass_goes_to_hold_in_float64() -> None:
    output = ModelOutput(
        model_type="rl",
        model_name="m",
        symbol=SYM,
        timestamp=60_000,
        confidence=0.5,
        predictions={"probabilities": {"BUY": 0.1, "SELL": 0.2, "HOLD": 0.3, "CLOSE": 0.4}},
    )
    got = action_probabilities(output)
    assert got.tobytes() == _reference(output).tobytes()
    assert math.isclose(float(got.sum()), 1.0)
