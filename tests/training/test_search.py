"""Optuna search: quick trials on a tiny model, SQLite study, pruning, best config, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from pivotal.models import (
    InputShape,
    PivotalModel,
    TargetSpec,
    available,
    create,
    model_class,
    register,
)
from pivotal.training.config import TrainingConfig
from pivotal.training.data import TensorSupervisedDataset
from pivotal.training.search import (
    CategoricalParam,
    FloatParam,
    IntParam,
    PruningCallback,
    SearchSpace,
    TrialSetup,
    default_search_space,
    load_best_config,
    optimize,
    split_params,
)
from pivotal.training.trainer import EpochLog

NAME = "test_tiny_mlp_search"


class TinyMLP(PivotalModel):
    model_type = "mlp"

    def __init__(
        self, shape: InputShape, targets: TargetSpec, hidden_size: int = 8, dropout: float = 0.0
    ) -> None:
        super().__init__(shape, targets)
        self._hidden, self.dropout = hidden_size, dropout
        width = shape.streams * shape.frames * shape.channels
        self.body = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.cls = nn.Linear(hidden_size, len(targets.classes))

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden_size": self._hidden, "dropout": self.dropout}

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        hidden = self.body(x.flatten(1))
        return {"hidden": hidden, "logits": self.cls(hidden)}


if NAME not in available():
    register(NAME)(TinyMLP)
SHAPE = InputShape(1, 6, 2)
TARGETS = TargetSpec(classes=("down", "up"))
BASE = TrainingConfig(epochs=3, batch_size=32, progress=False, device="cpu", seed=0)
SPACE = SearchSpace(
    {
        "lr": FloatParam(1e-3, 3e-2, log=True),
        "batch_size": CategoricalParam((32, 64)),
        "hidden_size": IntParam(4, 16, step=4),
        "dropout": FloatParam(0.0, 0.3),
    }
)


def planted(n: int, seed: int) -> TensorSupervisedDataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 6, 2)).astype(np.float32)
    w = np.random.default_rng(99).standard_normal(12)
    return TensorSupervisedDataset(x, labels=(x.reshape(n, -1) @ w > 0).astype(np.int64))


TRAIN, VAL = planted(256, 1), planted(128, 2)


def builder(params: dict[str, Any]) -> TrialSetup:
    model_params, training = split_params(params)
    torch.manual_seed(0)
    model = create(NAME, SHAPE, TARGETS, **model_params)
    return TrialSetup(model, BASE.model_copy(update=training), TRAIN, VAL)


def test_quick_search_writes_sqlite_and_a_loadable_best_config(tmp_path: Path) -> None:
    result = optimize(builder, n_trials=3, study_name="tiny", space=SPACE, directory=tmp_path)
    assert (tmp_path / "optuna.db").is_file()
    assert result.storage == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"
    assert result.n_complete + result.n_pruned == 3 and result.n_failed == 0
    study = optuna.load_study(study_name="tiny", storage=result.storage)
    values = [t.value for t in study.trials if t.value is not None]
    assert result.best_value == min(values)
    # every trial reported one loss per epoch: the pruning callback ran
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == min(trial.intermediate_values.values())
    # the best config file: model + training config, loadable and rebuildable
    assert result.config_path == tmp_path / "tiny.best.json"
    saved = json.loads(result.config_path.read_text())
    assert saved["params"] == result.best_params and saved["trial"] == result.best_trial
    model_section, training = load_best_config(result.config_path)
    assert training.lr == pytest.approx(result.best_params["lr"])
    assert training.batch_size == result.best_params["batch_size"]
    assert training.epochs == BASE.epochs
    assert model_section["hyperparameters"] == {
        "hidden_size": result.best_params["hidden_size"],
        "dropout": pytest.approx(result.best_params["dropout"]),
    }
    model = create(
        model_section["name"],
        InputShape(**model_section["shape"]),
        TargetSpec.from_dict(model_section["targets"]),
        **model_section["hyperparameters"],
    )
    assert isinstance(model, model_class(NAME))
    assert not list(tmp_path.glob("*.tmp"))


def test_study_resumes_from_its_sqlite_file(tmp_path: Path) -> None:
    first = optimize(builder, n_trials=2, study_name="resume", space=SPACE, directory=tmp_path)
    assert first.n_complete + first.n_pruned == 2
    second = optimize(builder, n_trials=3, study_name="resume", space=SPACE, directory=tmp_path)
    study = optuna.load_study(study_name="resume", storage=second.storage)
    assert len(study.trials) == 3  # one more, not three more
    assert second.best_value <= first.best_value
    third = optimize(builder, n_trials=3, study_name="resume", space=SPACE, directory=tmp_path)
    assert len(optuna.load_study(study_name="resume", storage=third.storage).trials) == 3
    assert third.best_trial == second.best_trial


class OddTrialsPruner(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its second report."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1 and len(trial.intermediate_values) >= 2


def test_pruned_trials_stop_early_and_are_recorded(tmp_path: Path) -> None:
    result = optimize(
        builder,
        n_trials=3,
        study_name="prune",
        space=SPACE,
        directory=tmp_path,
        pruner=OddTrialsPruner(),
    )
    assert result.n_pruned == 1 and result.n_complete == 2
    study = optuna.load_study(study_name="prune", storage=result.storage)
    for trial in study.trials:
        epochs = len(trial.intermediate_values)
        if trial.number % 2:
            assert trial.state == optuna.trial.TrialState.PRUNED and epochs == 2
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE and epochs == 3
    assert result.best_trial % 2 == 0


def test_pruning_callback_reports_and_raises_when_told() -> None:
    class FakeTrial:
        number = 7

        def __init__(self, prune: bool) -> None:
            self.prune, self.reports = prune, []

        def report(self, value: float, step: int) -> None:
            self.reports.append((step, value))

        def should_prune(self) -> bool:
            return self.prune

    log = EpochLog(epoch=3, train_loss=1.0, val_loss=0.5, lr=1e-3)
    keep = FakeTrial(prune=False)
    PruningCallback(keep).on_epoch_end(None, log)  # type: ignore[arg-type]
    assert keep.reports == [(3, 0.5)]
    with pytest.raises(optuna.TrialPruned, match="trial 7 pruned at epoch 3"):
        PruningCallback(FakeTrial(prune=True)).on_epoch_end(None, log)  # type: ignore[arg-type]


def test_search_space_definitions() -> None:
    space = default_search_space()
    assert set(space.params) == {"lr", "weight_decay", "batch_size", "dropout", "hidden_size"}
    model, training = split_params({"lr": 1e-3, "batch_size": 64, "dropout": 0.1})
    assert model == {"dropout": 0.1} and training == {"lr": 1e-3, "batch_size": 64}
    parsed = SearchSpace.from_dict(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "layers": {"type": "int", "low": 1, "high": 4},
            "act": {"type": "categorical", "choices": ["relu", "gelu"]},
        }
    )
    assert parsed.params["lr"] == FloatParam(1e-4, 1e-2, log=True)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    params = parsed.suggest(study.ask())
    assert 1e-4 <= params["lr"] <= 1e-2 and params["layers"] in range(1, 5)
    assert params["act"] in ("relu", "gelu")
    with pytest.raises(ValueError, match="log-scale"):
        FloatParam(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="type must be"):
        SearchSpace.from_dict({"x": {"type": "normal"}})
    with pytest.raises(ValueError, match="study_name"):
        optimize(builder, n_trials=1, study_name="bad name/..")
