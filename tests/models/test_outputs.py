"""Network outputs → seed 003's ModelOutput, one per sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pivotal.core import Symbol
from pivotal.core.types import Action, ModelOutput
from pivotal.models import InputShape, TargetSpec, available, create, to_model_outputs
from pivotal.models.outputs import NEUTRAL_CONFIDENCE

# the shipped networks (other test modules register tiny models named test_* when imported first)
ZOO = [name for name in available() if not name.startswith("test_")]

SHAPE = InputShape(streams=2, frames=32, channels=9, context=3)
BOTH = TargetSpec(regression=("ret_1", "ret_5"), classes=("up", "down", "flat"))
REGRESSION = TargetSpec(regression=("ret_1",))
ACTIONS = TargetSpec(classes=("BUY", "SELL", "HOLD"))
BATCH = 3
TIMES = [1_700_000_000_000, 1_700_000_060_000, 1_700_000_120_000]
SYMBOLS = ["ETH/USDT", "BTC/USDT", Symbol("SOL", "USDT")]


def run(name: str, targets: TargetSpec):
    torch.manual_seed(0)
    model = create(name, SHAPE, targets).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, SHAPE.streams, SHAPE.frames, SHAPE.channels, generator=gen)
    context = torch.randn(BATCH, SHAPE.context, generator=gen)
    with torch.no_grad():
        return model, model(x, context)


@pytest.mark.parametrize("name", ZOO)
def test_one_model_output_per_sample_with_probabilities_and_hidden_state(name: str) -> None:
    model, out = run(name, BOTH)
    results = to_model_outputs(
        model, out, model_name=f"{name}_v1", symbols=SYMBOLS, timestamps=TIMES
    )
    assert len(results) == BATCH
    probs = torch.softmax(out["logits"].double(), dim=1).numpy()
    for i, result in enumerate(results):
        assert isinstance(result, ModelOutput)
        assert result.model_type == model.model_type
        assert result.model_name == f"{name}_v1"
        assert result.symbol == Symbol.parse(SYMBOLS[i])
        assert result.timestamp == TIMES[i]
        assert dict(result.metadata) == {"model_type": model.model_type, "registry_name": name}
        p = result.predictions
        assert list(p["regression"]) == ["ret_1", "ret_5"]
        assert p["regression"]["ret_5"] == pytest.approx(float(out["regression"][i, 1]))
        assert list(p["probabilities"]) == ["up", "down", "flat"]
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert list(p["probabilities"].values()) == pytest.approx(probs[i].tolist())
        assert p["predicted_class"] == BOTH.classes[int(probs[i].argmax())]
        assert result.confidence == pytest.approx(probs[i].max())
        assert "action" not in p or name == "pivot_cnn"  # up/down/flat are not actions
        hidden = result.hidden_states["hidden"]
        assert isinstance(hidden, np.ndarray) and hidden.dtype == np.float32
        assert hidden.shape == (model.hidden_size,)
        np.testing.assert_array_equal(hidden, out["hidden"][i].numpy())


@pytest.mark.parametrize("name", ZOO)
def test_regression_only_models_state_the_neutral_confidence(name: str) -> None:
    model, out = run(name, REGRESSION)
    (result, *_) = to_model_outputs(model, out, model_name=name, symbols="ETH/USDT", timestamps=0)
    assert "probabilities" not in result.predictions
    if name == "pivot_cnn":  # its action head gives the confidence
        probs = result.predictions["action_probabilities"]
        assert result.confidence == pytest.approx(max(probs.values()))
    else:
        assert result.confidence == NEUTRAL_CONFIDENCE


def test_action_classes_fill_the_seed_action_fields() -> None:
    model, out = run("transformer", ACTIONS)
    for result in to_model_outputs(
        model, out, model_name="t", symbols="ETH/USDT", timestamps=TIMES
    ):
        p = result.predictions
        best = max(p["probabilities"], key=p["probabilities"].get)
        assert result.action == Action(best)
        assert p["action_confidence"] == pytest.approx(result.confidence)


def test_pivot_cnn_gives_pivot_points_actions_and_its_hidden_states() -> None:
    model, out = run("pivot_cnn", BOTH)
    results = to_model_outputs(model, out, model_name="cnn", symbols="ETH/USDT", timestamps=TIMES)
    for i, result in enumerate(results):
        p = result.predictions
        assert [pp["level"] for pp in p["pivot_points"]] == [1, 2, 3, 4, 5]
        first = p["pivot_points"][0]
        assert first["relative_price"] == pytest.approx(float(out["pivot_price"][i, 0]))
        assert first["log_bars"] == pytest.approx(float(out["pivot_time"][i, 0]))
        assert first["bars"] == pytest.approx(math.exp(first["log_bars"]))
        assert all(0 < pp["confidence"] < 1 for pp in p["pivot_points"])
        assert list(p["action_probabilities"]) == ["BUY", "SELL", "HOLD"]
        assert sum(p["action_probabilities"].values()) == pytest.approx(1.0)
        assert p["action"] == max(p["action_probabilities"], key=p["action_probabilities"].get)
        assert result.action in (Action.BUY, Action.SELL, Action.HOLD)
        states = result.hidden_states
        assert set(states) == {"hidden", "conv_features", "recurrent_state"}
        assert states["recurrent_state"].shape == (model.recurrent_size,)
        np.testing.assert_array_equal(states["conv_features"], out["conv_features"][i].numpy())


def test_price_and_volume_extras() -> None:
    model, out = run("price_prediction", REGRESSION)
    (result, *_) = to_model_outputs(model, out, model_name="p", symbols="ETH/USDT", timestamps=0)
    assert len(result.predictions["prices"]) == 5
    extrema = result.predictions["extrema"]
    assert set(extrema) == {"local_max", "local_min"}
    assert all(0 < v < 1 for v in extrema.values())
    assert extrema["local_max"] == pytest.approx(float(torch.sigmoid(out["extrema"][0, 0])))
    model, out = run("volume_lstm", REGRESSION)
    (result, *_) = to_model_outputs(model, out, model_name="v", symbols="ETH/USDT", timestamps=0)
    assert result.predictions["volume"] == pytest.approx(float(out["volume"][0, 0]))


def test_outputs_that_do_not_fit_are_refused() -> None:
    model, out = run("cnn1d", BOTH)
    kw = {"model_name": "c", "timestamps": TIMES}
    with pytest.raises(ValueError, match="symbols has 2 entries for a batch of 3"):
        to_model_outputs(model, out, symbols=SYMBOLS[:2], **kw)
    with pytest.raises(ValueError, match="timestamps has 1 entries"):
        to_model_outputs(model, out, model_name="c", symbols="ETH/USDT", timestamps=TIMES[:1])
    with pytest.raises(ValueError, match="lack 'hidden'"):
        to_model_outputs(
            model, {k: v for k, v in out.items() if k != "hidden"}, symbols=SYMBOLS, **kw
        )
    with pytest.raises(ValueError, match="NaN"):
        to_model_outputs(model, {**out, "logits": out["logits"] * math.nan}, symbols=SYMBOLS, **kw)
    with pytest.raises(ValueError, match=r"tensor of batch 3, got \(2, 3\)"):
        to_model_outputs(model, {**out, "logits": out["logits"][:2]}, symbols=SYMBOLS, **kw)
    other, _ = run("cnn1d", REGRESSION)
    with pytest.raises(ValueError, match="declares 1"):
        to_model_outputs(other, out, symbols=SYMBOLS, **kw)
    with pytest.raises(ValueError, match="outputs lack 'logits'"):
        to_model_outputs(
            model, {"hidden": out["hidden"], "regression": out["regression"]}, symbols=SYMBOLS, **kw
        )
    with pytest.raises(ValueError, match="symbol"):
        to_model_outputs(model, out, symbols="not a symbol", **kw)
