"""Hyperparameter search with Optuna: TPE sampling, median pruning, a resumable SQLite study.

:func:`optimize` asks a :class:`SearchSpace` for each trial's parameters, hands them to
your *objective builder* (``params -> TrialSetup``: the model, training config and data of
that trial), trains with :class:`~pivotal.training.trainer.Trainer`, and minimises the best
monitored (validation) loss. Each epoch's loss is reported to Optuna, which prunes trials
that fall behind the median of earlier ones at the same epoch. The study lives in
``sqlite:///<directory>/optuna.db`` unless ``storage`` names another, so re-running with the
same ``study_name`` resumes it. The best trial's model and training config are written
atomically to ``<directory>/<study_name>.best.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna

from pivotal.core.errors import ModelError
from pivotal.models.base import PivotalModel
from pivotal.training.checkpoints import atomic_write_text
from pivotal.training.config import TrainingConfig
from pivotal.training.data import BatchDataset
from pivotal.training.losses import TaskLoss
from pivotal.training.trainer import Callback, EpochLog, Trainer

__all__ = [
    "MODEL_SPACE",
    "TRAINING_SPACE",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "PruningCallback",
    "SearchResult",
    "SearchSpace",
    "TrialReport",
    "TrialSetup",
    "default_search_space",
    "is_best_config",
    "load_best_config",
    "model_search_space",
    "optimize",
    "split_params",
]


@dataclass(frozen=True, slots=True)
class FloatParam:
    """A float in ``[low, high]``, sampled uniformly or (``log=True``) log-uniformly."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"FloatParam needs finite low < high, got {self.low}, {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale FloatParam needs low > 0, got {self.low}")

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True, slots=True)
class IntParam:
    """An int in ``[low, high]`` (inclusive) with ``step``, or log-uniform (step 1)."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        if self.low >= self.high or self.step < 1:
            raise ValueError(f"IntParam needs low < high and step >= 1, got {self}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError(f"a log-scale IntParam needs low >= 1 and step 1, got {self}")

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True, slots=True)
class CategoricalParam:
    """One of ``choices`` (None, bool, int, float or str)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if len(self.choices) < 1:
            raise ValueError("CategoricalParam needs at least one choice")
        bad = [c for c in self.choices if not isinstance(c, None | bool | int | float | str)]
        if bad:
            raise ValueError(f"categorical choices must be None/bool/int/float/str, got {bad}")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)


Param = FloatParam | IntParam | CategoricalParam
_KINDS: dict[str, type[Param]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """Hyperparameter names → ranges. Names that are ``TrainingConfig`` fields (``lr``,
    ``batch_size``, ...) tune training; the rest are model hyperparameters (``dropout``)."""

    params: Mapping[str, Param] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, param in self.params.items():
            if not isinstance(param, FloatParam | IntParam | CategoricalParam):
                raise TypeError(f"search parameter {name!r} must be a *Param, got {param!r}")
        object.__setattr__(self, "params", dict(self.params))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """One value per parameter, in declaration order."""
        return {name: param.suggest(trial, name) for name, param in self.params.items()}

    def __or__(self, other: SearchSpace) -> SearchSpace:
        """Both spaces; ``other`` wins on a shared name."""
        return SearchSpace({**self.params, **other.params})

    def without(self, *names: str) -> SearchSpace:
        """This space minus ``names`` (e.g. a model without dropout)."""
        return SearchSpace({k: v for k, v in self.params.items() if k not in names})

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
        """From config data: ``{"lr": {"type": "float", "low": 1e-4, "high": 1e-2,
        "log": true}, "batch_size": {"type": "categorical", "choices": [64, 128]}}``."""
        params: dict[str, Param] = {}
        for name, spec in data.items():
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in _KINDS:
                raise ValueError(f"search parameter {name!r}: type must be one of {list(_KINDS)}")
            try:
                params[name] = _KINDS[kind](**spec)
            except TypeError as exc:
                raise ValueError(f"search parameter {name!r}: {exc}") from None
        return cls(params)


TRAINING_SPACE = SearchSpace(
    {
        "lr": FloatParam(1e-4, 1e-2, log=True),
        "weight_decay": FloatParam(1e-6, 1e-2, log=True),
        "batch_size": CategoricalParam((64, 128, 256, 512)),
    }
)
"""Default training ranges: learning rate, weight decay, batch size."""

MODEL_SPACE = SearchSpace(
    {
        "dropout": FloatParam(0.0, 0.5),
        "hidden_size": CategoricalParam((32, 64, 128, 256)),
    }
)
"""Default model ranges for networks that take ``dropout`` and ``hidden_size``."""


def default_search_space() -> SearchSpace:
    """``TRAINING_SPACE | MODEL_SPACE``: lr, weight_decay, batch_size, dropout, hidden_size."""
    return TRAINING_SPACE | MODEL_SPACE


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_hyperparameters, training_overrides)``: training names are config fields."""
    training_fields = set(TrainingConfig.model_fields)
    model = {k: v for k, v in params.items() if k not in training_fields}
    training = {k: v for k, v in params.items() if k in training_fields}
    return model, training


@dataclass(slots=True)
class TrialSetup:
    """What one trial trains: returned by the objective builder for the trial's params."""

    model: PivotalModel
    config: TrainingConfig
    train_data: BatchDataset
    val_data: BatchDataset
    loss: TaskLoss | None = None
    model_name: str | None = None  # default: the model's registered name
    job: Mapping[str, Any] | None = None  # the whole TrainJob (JSON): best.json carries it


@dataclass(frozen=True)
class TrialReport:
    """One finished trial, for progress output: its number (from 0), state (``complete``,
    ``pruned``, ``fail``), value (validation loss; None unless complete), and the study's
    best so far (value and trial number; None before any trial completes)."""

    number: int
    state: str
    value: float | None
    best_value: float | None
    best_trial: int | None
    finished: int
    n_trials: int


class PruningCallback(Callback):
    """Reports each epoch's monitored loss to the trial; raises ``TrialPruned`` when told."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.reported: list[tuple[int, float]] = []

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        self.trial.report(log.monitored, step=log.epoch)
        self.reported.append((log.epoch, log.monitored))
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned at epoch {log.epoch} "
                f"(loss {log.monitored:.6g} behind the median)"
            )


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The study's outcome: the best trial and the file its config was written to."""

    study_name: str
    storage: str
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: dict[str, Any]
    config_path: Path
    n_complete: int
    n_pruned: int
    n_failed: int


_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _objective(
    builder: Callable[[dict[str, Any]], TrialSetup],
    space: SearchSpace,
    trial_callbacks: tuple[Callback, ...],
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        setup = builder(params)
        if not isinstance(setup, TrialSetup):
            raise TypeError(
                f"the objective builder must return a TrialSetup, got {type(setup).__name__}"
            )
        name = setup.model_name or getattr(setup.model, "registry_name", None)
        trial.set_user_attr("model_name", name)
        trial.set_user_attr("model_config", setup.model.config())
        trial.set_user_attr("training_config", setup.config.model_dump(mode="json"))
        if setup.job is not None:
            trial.set_user_attr("job", dict(setup.job))
        trainer = Trainer(setup.model, setup.config, setup.loss)
        pruning = PruningCallback(trial)
        result = trainer.fit(
            setup.train_data, setup.val_data, callbacks=(pruning, *trial_callbacks)
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        return result.best_val_loss

    return objective


def optimize(
    objective_builder: Callable[[dict[str, Any]], TrialSetup],
    *,
    n_trials: int,
    study_name: str,
    space: SearchSpace | None = None,
    directory: str | Path = "search",
    storage: str | None = None,
    seed: int = 0,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    direction: Literal["minimize", "maximize"] = "minimize",
    callbacks: tuple[Callback, ...] = (),
    on_trial: Callable[[TrialReport], None] | None = None,
) -> SearchResult:
    """Run (or resume) study ``study_name`` until it holds ``n_trials`` finished trials.

    Finished trials (complete, pruned or failed) of an earlier run count toward
    ``n_trials``, so re-running the same call resumes an interrupted search. Defaults:
    ``space`` :func:`default_search_space`, sampler ``TPESampler(seed=seed)``, pruner
    ``MedianPruner(n_startup_trials=5, n_warmup_steps=1)``. ``callbacks`` are added to every
    trial's trainer; ``on_trial`` is called after each trial of this run with a
    :class:`TrialReport`. The best trial's file also holds its whole job (``job``) when the
    builder gave one: ``pivotal train MODEL --job <study>.best.json`` trains it again. Raises
    ``ValueError`` when no trial completes.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive int, got {n_trials!r}")
    if not _STUDY_NAME.match(study_name or ""):
        raise ValueError(
            f"study_name must be letters, digits, '_', '.', '-' (it names files), got "
            f"{study_name!r}"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'optuna.db').resolve()}"
    study = optuna.create_study(
        storage=url,
        sampler=sampler or optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
    )
    done = sum(1 for t in study.trials if t.state.is_finished())
    remaining = n_trials - done
    if remaining > 0:
        objective = _objective(objective_builder, space or default_search_space(), callbacks)
        # a diverging trial (ModelError: NaN loss) fails alone; the study goes on
        study.optimize(
            objective,
            n_trials=remaining,
            catch=(ModelError,),
            callbacks=[_reporter(on_trial, n_trials)] if on_trial else None,
        )
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    if not complete:
        raise ValueError(
            f"no trial of study {study_name!r} completed ({pruned} pruned, the rest failed); "
            "widen the search space or check the objective builder"
        )
    best = study.best_trial
    config = {
        "study": study_name,
        "trial": best.number,
        "value": best.value,
        "params": dict(best.params),
        "model": {
            "name": best.user_attrs.get("model_name"),
            **best.user_attrs.get("model_config", {}),
        },
        "training": best.user_attrs.get("training_config", {}),
        "best_epoch": best.user_attrs.get("best_epoch"),
    }
    if "job" in best.user_attrs:
        config["job"] = best.user_attrs["job"]
    path = atomic_write_text(
        folder / f"{study_name}.best.json", json.dumps(config, indent=2, sort_keys=True) + "\n"
    )
    return SearchResult(
        study_name=study_name,
        storage=url,
        best_trial=best.number,
        best_value=float(best.value),
        best_params=dict(best.params),
        best_config=config,
        config_path=path,
        n_complete=complete,
        n_pruned=pruned,
        n_failed=states.count(optuna.trial.TrialState.FAIL),
    )


def _reporter(
    on_trial: Callable[[TrialReport], None], n_trials: int
) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best: optuna.trial.FrozenTrial | None = study.best_trial
        except ValueError:  # no trial completed yet
            best = None
        on_trial(
            TrialReport(
                number=trial.number,
                state=trial.state.name.lower(),
                value=trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
                best_value=None if best is None else best.value,
                best_trial=None if best is None else best.number,
                finished=sum(1 for t in study.trials if t.state.is_finished()),
                n_trials=n_trials,
            )
        )

    return report


def is_best_config(data: Mapping[str, Any]) -> bool:
    """Whether a mapping read from a file is a best-config file written by :func:`optimize`."""
    return {"study", "trial", "params", "training"} <= set(data)


def load_best_config(path: str | Path) -> tuple[dict[str, Any], TrainingConfig]:
    """Read a best-config file: ``(model section, TrainingConfig)``.

    The model section holds ``name``, ``shape``, ``targets`` and ``hyperparameters`` (what
    :func:`pivotal.models.registry.create` needs).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no best-config file at {p}; run the search first")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return dict(data["model"]), TrainingConfig.model_validate(data["training"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{p} is not a best-config file written by optimize ({exc})") from exc


_MODEL_WIDTHS: dict[str, tuple[str, tuple[int, ...]]] = {
    "price_prediction": ("lstm_size", (32, 64, 128)),
    "transformer": ("d_model", (32, 64, 128)),
    "lstm_attention": ("lstm_size", (32, 64, 128)),
    "cnn1d": ("channels", (16, 32, 64)),
    "hybrid": ("lstm_size", (32, 64, 128)),
    "volume_lstm": ("lstm_size", (16, 32, 64)),
    "pivot_cnn": ("recurrent_size", (32, 64, 128)),
}


def model_search_space(model: str) -> SearchSpace:
    """The default space for a registered model: the training ranges, plus its width and
    dropout where the network has them (the ensemble tunes training settings only)."""
    if model not in _MODEL_WIDTHS:
        return TRAINING_SPACE
    width, values = _MODEL_WIDTHS[model]
    return TRAINING_SPACE | SearchSpace(
        {width: CategoricalParam(values), "dropout": FloatParam(0.0, 0.5)}
    )
