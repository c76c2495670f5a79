"""Checkpoints round-trip, write atomically, refuse other layouts; the manager keeps the best."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pivotal.core.errors import ModelError
from pivotal.features.inputs import BASE_CHANNELS, InputEncoder, InputSpec
from pivotal.features.scalers import FeatureLayout, StandardScaler
from pivotal.models import InputShape, PivotalModel, TargetSpec, available, model_class, register
from pivotal.training.checkpoint_manager import CheckpointCallback, CheckpointManager
from pivotal.training.checkpoints import (
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from pivotal.training.config import TrainingConfig
from pivotal.training.data import TensorSupervisedDataset
from pivotal.training.trainer import Trainer

NAME = "test_tiny_mlp_checkpoints"


class TinyMLP(PivotalModel):
    """Flatten → Linear → ReLU → heads, with a tuple hyperparameter to round-trip."""

    model_type = "mlp"

    def __init__(
        self,
        shape: InputShape,
        targets: TargetSpec,
        hidden_size: int = 8,
        tags: tuple[str, ...] = ("a",),
    ) -> None:
        super().__init__(shape, targets)
        self._hidden = hidden_size
        self.tags = tuple(tags)
        width = shape.streams * shape.frames * shape.channels + shape.context
        self.body = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU())
        self.reg = nn.Linear(hidden_size, len(targets.regression))
        self.cls = nn.Linear(hidden_size, len(targets.classes))

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden_size": self._hidden, "tags": self.tags}

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        hidden = self.body(x.flatten(1))
        return {"hidden": hidden, "regression": self.reg(hidden), "logits": self.cls(hidden)}


if NAME not in available():
    register(NAME)(TinyMLP)
TINY = model_class(NAME)
SPEC = InputSpec.candles(["1m", "1h"], frames=4, min_frames=4)
EXTRA = FeatureLayout(("rsi_14", "atr_14"))
LAYOUT = InputEncoder(SPEC, EXTRA).layout  # 2 streams x 4 frames x 9 channels
SHAPE = InputShape(*LAYOUT.shape)
TARGETS = TargetSpec(regression=("ret_1",), classes=("down", "flat", "up"))
CONFIG = TrainingConfig(epochs=2, batch_size=16, progress=False, device="cpu", lr=1e-2)
SPAN = {
    "symbol": "BTC/USDT",
    "exchange": "binance",
    "timeframe": "1m",
    "start": 1_700_000_000_000,
    "end": 1_700_086_400_000,
}


def data(n: int = 64, seed: int = 0) -> TensorSupervisedDataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *LAYOUT.shape)).astype(np.float32)
    return TensorSupervisedDataset(
        x, regression=rng.standard_normal((n, 1)), labels=rng.integers(0, 3, n)
    )


def trained(seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    trainer = Trainer(TINY(SHAPE, TARGETS, hidden_size=8, tags=("x", "y")), CONFIG)
    trainer.fit(data(seed=seed))
    return trainer


def scaler_state() -> dict[str, Any]:
    matrix = np.random.default_rng(1).standard_normal((50, 2))
    return StandardScaler().fit(matrix, EXTRA, slice(0, 40)).state_dict()


def save(path: Path, trainer: Trainer, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "model": trainer.model,
        "optimizer": trainer.optimizer,
        "training_config": trainer.config,
        "scaler_state": scaler_state(),
        "feature_layout": LAYOUT,
        "input_spec": SPEC,
        "metrics": {"val_loss": 0.5, "accuracy": np.float64(0.6)},
        "data_span": SPAN,
        "epoch": 2,
    }
    return save_checkpoint(path, **{**args, **kw})


def test_round_trip_gives_identical_outputs_optimizer_state_and_metadata(tmp_path: Path) -> None:
    trainer = trained()
    path = tmp_path / "ckpt.pt"
    save(path, trainer)
    model, ckpt = load_checkpoint(path, expected_layout=LAYOUT)
    assert type(model) is TINY and not model.training
    assert model.config() == trainer.model.config()
    assert model.hyperparameters()["tags"] == ("x", "y")  # tuples survive
    x = data(8, seed=9).get_batch(np.arange(8))["x"]
    trainer.model.eval()
    with torch.no_grad():
        before, after = trainer.model(x), model(x)
    for key in ("hidden", "regression", "logits"):
        assert torch.equal(before[key], after[key]), key
    # the optimizer resumes exactly
    assert ckpt.optimizer_state is not None
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG.lr)
    optimizer.load_state_dict(ckpt.optimizer_state)
    saved, restored = trainer.optimizer.state_dict(), optimizer.state_dict()
    assert saved["param_groups"] == restored["param_groups"]
    for k, state in saved["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored["state"][k][name]))
    # metadata
    assert ckpt.model_name == NAME and ckpt.epoch == 2
    assert ckpt.metrics == {"val_loss": 0.5, "accuracy": 0.6}
    assert ckpt.data_span == SPAN
    assert ckpt.training() == CONFIG
    assert ckpt.feature_layout == {
        "kind": "input",
        "streams": ["1m", "1h"],
        "frames": 4,
        "channels": [*BASE_CHANNELS, "rsi_14", "atr_14"],
    }
    assert ckpt.input_spec is not None and ckpt.input_spec["timeframes"] == ["1m", "1h"]
    scaler = ckpt.scaler()
    assert isinstance(scaler, StandardScaler)
    np.testing.assert_array_equal(scaler.mean, np.asarray(scaler_state()["mean"]))
    assert ckpt.package_version and ckpt.created_at_ms > 1_600_000_000_000


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: Any) -> None:
    trainer = trained()
    path = tmp_path / "ckpt.pt"
    save(path, trainer, metrics={"val_loss": 0.1})
    good = path.read_bytes()

    def half_then_fail(obj: Any, fh: Any, *args: Any, **kwargs: Any) -> None:
        fh.write(b"PK\x03\x04 partial checkpoint bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save(path, trainer, metrics={"val_loss": 0.2})
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "new.pt", trainer)
    monkeypatch.undo()
    assert path.read_bytes() == good  # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp, no partial
    assert read_checkpoint(path).metrics == {"val_loss": 0.1}


def test_another_feature_layout_is_refused_with_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save(path, trained())
    other = InputEncoder(SPEC, FeatureLayout(("rsi_14", "macd"))).layout
    with pytest.raises(ValueError, match=r"not in the checkpoint: \['macd'\]") as err:
        load_checkpoint(path, expected_layout=other)
    assert "in the checkpoint but not expected: ['atr_14']" in str(err.value)
    reordered = InputEncoder(SPEC, FeatureLayout(("atr_14", "rsi_14"))).layout
    with pytest.raises(ValueError, match="another order"):
        load_checkpoint(path, expected_layout=reordered)
    longer = InputEncoder(InputSpec.candles(["1m", "1d"], frames=8, min_frames=4), EXTRA).layout
    with pytest.raises(ValueError, match=r"frames: checkpoint 4, expected 8") as err:
        load_checkpoint(path, expected_layout=longer)
    assert "['1d']" in str(err.value)
    save(tmp_path / "flat.pt", trained(), feature_layout=EXTRA)
    with pytest.raises(ValueError, match="features layout, expected input"):
        load_checkpoint(tmp_path / "flat.pt", expected_layout=LAYOUT)
    model, _ = load_checkpoint(path, expected_layout=InputEncoder(SPEC, EXTRA).layout)
    assert isinstance(model, TINY)


def test_missing_corrupt_and_unknown_model_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="corrupt or not a checkpoint"):
        load_checkpoint(garbage)
    good = tmp_path / "good.pt"
    save(good, trained())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ModelError, match="not a pivotal checkpoint"):
        load_checkpoint(foreign)
    unknown = tmp_path / "unknown.pt"
    save(unknown, trained(), model_name="no_such_model")
    with pytest.raises(ModelError, match=r"'no_such_model', which is not registered"):
        load_checkpoint(unknown)


def test_unregistered_model_and_bad_metadata_are_refused_at_save(tmp_path: Path) -> None:
    class Loose(TINY):  # type: ignore[misc,valid-type]
        pass

    loose = Loose(SHAPE, TARGETS)
    loose.registry_name = ""  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not registered"):
        save_checkpoint(tmp_path / "x.pt", model=loose, training_config=CONFIG)
    with pytest.raises(TypeError, match=r"metrics\.obj"):
        save(tmp_path / "y.pt", trained(), metrics={"obj": object()})
    with pytest.raises(ValueError, match="missing"):
        save(tmp_path / "z.pt", trained(), data_span={"symbol": "BTC/USDT"})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("mode", ["min", "max"])
def test_manager_keeps_the_best_five_of_eight(tmp_path: Path, mode: str) -> None:
    manager = CheckpointManager(tmp_path, "tiny", keep=5, metric="val_loss", mode=mode)
    assert manager.best_path() is None and manager.load_best() is None
    values = [0.5, 0.3, 0.9, 0.1, 0.7, 0.2, 0.8, 0.4]
    trainer = trained()
    weights: dict[int, torch.Tensor] = {}
    for epoch, value in enumerate(values, start=1):
        with torch.no_grad():  # each epoch's weights differ, so load_best can be checked
            trainer.model.reg.bias.fill_(float(epoch))
        weights[epoch] = trainer.model.reg.bias.clone()
        manager.save(
            model=trainer.model,
            epoch=epoch,
            metrics={"val_loss": value, "train_loss": 1.0},
            training_config=CONFIG,
            feature_layout=LAYOUT,
        )
    ranked = sorted(values, reverse=mode == "max")[:5]
    kept = manager.list()
    assert [e.value for e in kept] == ranked
    assert [e.epoch for e in kept] == [values.index(v) + 1 for v in ranked]
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert files == sorted(e.path.name for e in kept) and len(files) == 5
    assert all(name.startswith("tiny_e") and "val_loss" in name for name in files)
    index = json.loads((tmp_path / "tiny.checkpoints.json").read_text())
    assert index["metric"] == "val_loss" and index["mode"] == mode
    assert [c["value"] for c in index["checkpoints"]] == ranked
    assert [c["metrics"]["val_loss"] for c in index["checkpoints"]] == ranked
    best_epoch = values.index(ranked[0]) + 1
    assert manager.best_path() == kept[0].path
    loaded = manager.load_best(expected_layout=LAYOUT)
    assert loaded is not None
    model, ckpt = loaded
    assert ckpt.epoch == best_epoch and ckpt.metrics["val_loss"] == ranked[0]
    assert torch.equal(model.reg.bias, weights[best_epoch])  # type: ignore[union-attr]
    # a new manager (start-up) reads the same index
    again = CheckpointManager(tmp_path, "tiny", keep=5, metric="val_loss", mode=mode)
    assert [e.path for e in again.list()] == [e.path for e in kept]
    # a worse checkpoint than the five kept is not even written
    worst = 10.0 if mode == "min" else -10.0
    skipped = manager.save(
        model=trainer.model, epoch=9, metrics={"val_loss": worst}, training_config=CONFIG
    )
    assert skipped is None
    assert len(list(tmp_path.glob("*.pt"))) == 5


def test_manager_rebuilds_a_lost_index_and_skips_corrupt_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "tiny", keep=3)
    trainer = trained()
    for epoch, value in enumerate([0.3, 0.1, 0.2], start=1):
        manager.save(
            model=trainer.model, epoch=epoch, metrics={"val_loss": value}, training_config=CONFIG
        )
    (tmp_path / "tiny.checkpoints.json").unlink()
    rebuilt = CheckpointManager(tmp_path, "tiny", keep=3)
    assert [e.value for e in rebuilt.list()] == [0.1, 0.2, 0.3]
    best = rebuilt.best_path()
    assert best is not None
    best.write_bytes(b"corrupted")
    loaded = rebuilt.load_best()
    assert loaded is not None and loaded[1].metrics["val_loss"] == 0.2
    with pytest.raises(ValueError, match="ranks by val_loss"):
        CheckpointManager(tmp_path, "tiny", keep=3, metric="val_loss", mode="max")
    with pytest.raises(ValueError, match="metrics must contain"):
        rebuilt.save(model=trainer.model, epoch=4, metrics={"loss": 1.0}, training_config=CONFIG)
    with pytest.raises(ValueError, match="file name"):
        CheckpointManager(tmp_path, "../escape")


def test_trainer_callback_saves_through_the_manager(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpts", "tiny", keep=2)
    callback = CheckpointCallback(manager, feature_layout=LAYOUT, data_span=SPAN)
    torch.manual_seed(0)
    trainer = Trainer(TINY(SHAPE, TARGETS), CONFIG.model_copy(update={"epochs": 4, "lr": 5e-2}))
    result = trainer.fit(data(seed=1), data(32, seed=2), callbacks=[callback])
    assert callback.saved  # at least the first epoch was saved
    kept = manager.list()
    assert len(kept) == min(2, result.epochs_run)
    assert kept[0].epoch == result.best_epoch
    assert kept[0].value == pytest.approx(result.best_val_loss)
    assert set(kept[0].metrics) >= {"train_loss", "val_loss", "val_accuracy"}
    loaded = manager.load_best(expected_layout=LAYOUT)
    assert loaded is not None and loaded[1].data_span == SPAN
    assert loaded[1].optimizer_state is not None
