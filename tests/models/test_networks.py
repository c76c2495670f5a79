"""Every registered network: output shapes, learning on real candles, save/load, seeding, errors."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from pivotal.core.candles import Candles
from pivotal.features.inputs import EncodedInputDataset, InputSpec
from pivotal.models import InputShape, PivotalModel, TargetSpec, available, create, networks
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

# tiny sizes so the whole file runs in seconds on a 2-core CPU
TINY: dict[str, dict[str, Any]] = {
    "price_prediction": {"lstm_size": 16, "num_layers": 2},
    "transformer": {"d_model": 16, "nhead": 2, "num_layers": 1, "head_size": 16},
    "lstm_attention": {"lstm_size": 16, "num_layers": 1, "num_heads": 2, "head_size": 16},
    "cnn1d": {"channels": 8, "head_size": 16},
    "ensemble": {
        "transformer": {"d_model": 8, "nhead": 2, "num_layers": 1, "head_size": 8},
        "lstm_attention": {"lstm_size": 8, "num_layers": 1, "num_heads": 2, "head_size": 8},
        "cnn1d": {"channels": 4, "kernel_sizes": [3, 5], "head_size": 8},
    },
    "hybrid": {
        "conv_channels": 8,
        "lstm_size": 16,
        "num_heads": 2,
        "technical_size": 8,
        "predictor_size": 16,
    },
    "volume_lstm": {"lookback": 16, "lstm_size": 8, "head_size": 8},
    "pivot_cnn": {
        "conv_channels": [8, 8],
        "recurrent_size": 8,
        "context_size": 4,
        "fusion_size": 16,
    },
}
NAMES = sorted(TINY)
SHAPE = InputShape(streams=2, frames=32, channels=9)
SHAPE_CTX = InputShape(streams=2, frames=32, channels=9, context=6)
BOTH = TargetSpec(regression=("ret_1", "ret_5"), classes=("up", "down", "flat"))
REGRESSION = TargetSpec(regression=("ret_1",))
CLASSES = TargetSpec(classes=("BUY", "SELL", "HOLD"))

# model-specific outputs: name -> {key: width}, "levels" standing for PivotCNN's levels (5)
EXTRA: dict[str, dict[str, int]] = {
    "price_prediction": {"prices": 5, "extrema": 2},
    "volume_lstm": {"volume": 1},
    "pivot_cnn": {
        "pivot_price": 5,
        "pivot_time": 5,
        "pivot_confidence": 5,
        "action_logits": 3,
        "conv_features": 2 * 8,
        "recurrent_state": 8,
    },
}


def build(name: str, shape: InputShape = SHAPE, targets: TargetSpec = BOTH, seed: int = 0):
    torch.manual_seed(seed)
    return create(name, shape, targets, **TINY[name])


def inputs(shape: InputShape, batch: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, shape.streams, shape.frames, shape.channels, generator=gen)
    context = torch.randn(batch, shape.context, generator=gen) if shape.context else None
    return x, context


def test_every_network_in_the_package_is_registered_and_tested() -> None:
    classes = [getattr(networks, n) for n in networks.__all__]
    registered = {c.registry_name for c in classes if isinstance(c, type)}
    assert registered == set(TINY)
    assert set(TINY) <= set(available())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [SHAPE, SHAPE_CTX], ids=["no-context", "context-6"])
@pytest.mark.parametrize("targets", [BOTH, REGRESSION, CLASSES], ids=["both", "reg", "cls"])
def test_output_shapes(name: str, shape: InputShape, targets: TargetSpec) -> None:
    model = build(name, shape, targets).eval()
    x, context = inputs(shape)
    with torch.no_grad():
        out = model(x, context)
    expected = {"hidden": model.hidden_size, **EXTRA.get(name, {})}
    if targets.regression:
        expected["regression"] = len(targets.regression)
    if targets.classes:
        expected["logits"] = len(targets.classes)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (4, w) for k, w in expected.items()}
    assert all(torch.isfinite(v).all() for v in out.values())
    if name == "pivot_cnn":
        assert ((out["pivot_confidence"] > 0) & (out["pivot_confidence"] < 1)).all()
        assert (out["pivot_time"] >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_context_changes_the_output(name: str) -> None:
    model = build(name, SHAPE_CTX).eval()
    x, context = inputs(SHAPE_CTX)
    assert context is not None
    with torch.no_grad():
        a = model(x, context)["regression"]
        b = model(x, context + 1.0)["regression"]
    assert not torch.allclose(a, b)


@pytest.fixture(scope="module")
def real_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 encoded BTC 1m windows (32 frames) and their next-bar log return × 100."""
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    path = data / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet"
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    frame = pd.read_parquet(path, columns=columns).iloc[-4000:].reset_index(drop=True)
    candles = Candles.from_frame(frame)
    spec = InputSpec.candles(["1m"], frames=32, min_frames=32)
    ts = candles.timestamp
    ds = EncodedInputDataset(spec, {"1m": candles}, int(ts[0]), int(ts[-1]))  # next bar exists
    idx = np.linspace(0, len(ds) - 1, 64).astype(np.int64)
    t = ds.times(idx)
    row = np.searchsorted(ts, t - 60_000)  # the candle closing at t
    assert (ts[row] == t - 60_000).all() and (row + 1 < len(candles)).all()
    target = 100.0 * np.log(candles.close[row + 1] / candles.close[row])
    return ds.get_batch(idx), torch.tensor(target, dtype=torch.float32)[:, None]


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adam_steps_reduce_the_loss_on_real_candles(
    name: str, real_batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = real_batch
    shape = InputShape(streams=1, frames=32, channels=x.shape[-1])
    model = build(name, shape, TargetSpec(regression=("next_log_return_pct",)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(x)["regression"], y))

    before = loss()
    model.train()
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x)["regression"], y).backward()
        optimizer.step()
    after = loss()
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_outputs(name: str) -> None:
    model = build(name, SHAPE_CTX)
    x, context = inputs(SHAPE_CTX)
    model.train()
    with torch.no_grad():
        model(x, context)  # moves BatchNorm running statistics away from their initial values
    buffer = io.BytesIO()
    torch.save({"state": model.state_dict(), "config": json.dumps(model.config())}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    config = json.loads(saved["config"])
    torch.manual_seed(123)  # a different initialisation, overwritten by the state
    clone = create(
        name,
        InputShape(**config["shape"]),
        TargetSpec.from_dict(config["targets"]),
        **config["hyperparameters"],
    )
    clone.load_state_dict(saved["state"])
    assert clone.config() == model.config()
    model.eval()
    clone.eval()
    with torch.no_grad():
        a, b = model(x, context), clone(x, context)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_initial_outputs(name: str) -> None:
    x, context = inputs(SHAPE_CTX)

    def first_outputs(seed: int) -> dict[str, torch.Tensor]:
        model = build(name, SHAPE_CTX, seed=seed).eval()
        with torch.no_grad():
            return model(x, context)

    a, b, c = first_outputs(5), first_outputs(5), first_outputs(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["regression"], c["regression"])


def _model(name: str, shape: InputShape = SHAPE) -> PivotalModel:
    return build(name, shape).eval()


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_value_error(name: str) -> None:
    model = _model(name)
    x, _ = inputs(SHAPE)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, 32, 9\)"):
        model(x[:, :, 1:])
    with pytest.raises(ValueError, match="x must have shape"):
        model(x[0])
    bad = x.clone()
    bad[1, 0, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="context=0"):
        model(x, torch.zeros(4, 3))
    with_context = _model(name, SHAPE_CTX)
    with pytest.raises(ValueError, match=r"context must have shape \(batch, 6\)"):
        with_context(x)
    with pytest.raises(ValueError, match=r"context must have shape \(batch, 6\)"):
        with_context(x, torch.zeros(4, 5))
    with pytest.raises(ValueError, match="context contains NaN"):
        with_context(x, torch.full((4, 6), float("nan")))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyperparameter_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="bogus"):
        create(name, SHAPE, BOTH, **TINY[name], bogus=1)


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "price_prediction": ({"lstm_size": 0}, "lstm_size must be a positive int"),
    "transformer": ({"d_model": 10, "nhead": 3}, "divisible"),
    "lstm_attention": ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
    "cnn1d": ({"kernel_sizes": [3, 33]}, "longer than the input's 32 frames"),
    "ensemble": ({"cnn1d": {"bogus": 1}}, "ensemble member 'cnn1d'.*bogus"),
    "hybrid": ({"num_heads": 3}, "divisible"),
    "volume_lstm": ({"lookback": 33}, "exceeds the input's 32 frames"),
    "pivot_cnn": ({"recurrent": "rnn"}, r"recurrent must be one of \['gru', 'lstm'\]"),
}


@pytest.mark.parametrize("name", NAMES)
def test_bad_hyperparameter_values_are_refused(name: str) -> None:
    change, message = BAD_VALUES[name]
    with pytest.raises(ValueError, match=message):
        create(name, SHAPE, BOTH, **{**TINY[name], **change})


def test_unknown_model_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'no_such_net'.*pivot_cnn"):
        create("no_such_net", SHAPE, BOTH)


def test_ensemble_weights_start_equal_and_hidden_concatenates_the_members() -> None:
    model = build("ensemble").eval()
    weights = model.mixture_weights()
    assert set(weights) == {"regression", "logits"}
    assert weights["regression"] == pytest.approx(
        {"transformer": 1 / 3, "lstm_attention": 1 / 3, "cnn1d": 1 / 3}
    )
    x, _ = inputs(SHAPE)
    with torch.no_grad():
        out = model(x)
        members = [m(x) for m in model.members.values()]
    assert torch.equal(out["hidden"], torch.cat([m["hidden"] for m in members], dim=1))
    mean = sum(m["regression"] for m in members) / 3
    assert torch.allclose(out["regression"], mean, atol=1e-6)


def test_hybrid_indicator_branch_reads_the_newest_frame_of_the_primary_stream() -> None:
    model = build("hybrid").eval()
    x, _ = inputs(SHAPE)
    seen: list[torch.Tensor] = []
    model.technical.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    assert torch.equal(seen[0], x[:, 0, -1, 7:])  # the indicator columns after 7 base ones
    no_indicators = create("hybrid", InputShape(2, 32, 7), BOTH, **TINY["hybrid"])
    assert no_indicators.indicators == slice(0, 7)


def test_volume_lstm_reads_only_the_newest_lookback_frames_of_log_volume() -> None:
    model = build("volume_lstm").eval()  # lookback 16, volume_only
    x, _ = inputs(SHAPE)
    changed = x.clone()
    changed[:, :, :16] = 0.0  # older than the lookback
    changed[:, :, :, [0, 1, 2, 3, 5, 6, 7, 8]] = 0.0  # every channel but log_volume
    with torch.no_grad():
        assert torch.equal(model(x)["regression"], model(changed)["regression"])
        changed[:, 0, -1, 4] += 1.0
        assert not torch.equal(model(x)["regression"], model(changed)["regression"])


@pytest.mark.parametrize("shared", [True, False], ids=["shared-towers", "per-stream-towers"])
def test_pivot_cnn_reads_every_stream(shared: bool) -> None:
    model = create("pivot_cnn", SHAPE, BOTH, **TINY["pivot_cnn"], shared_towers=shared).eval()
    x, _ = inputs(SHAPE)
    with torch.no_grad():
        base = model(x)
        for stream in range(SHAPE.streams):
            changed = x.clone()
            changed[:, stream, -1] += 1.0
            assert not torch.equal(model(changed)["pivot_price"], base["pivot_price"])
    assert model.config()["hyperparameters"]["shared_towers"] is shared
