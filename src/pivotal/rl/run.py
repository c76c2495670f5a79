"""From stored candles to a trained DQN agent, and its evaluation through the backtester.

A :class:`DQNJob` names the market, the range and every setting. The range is split in
time: the agent trains on the first part (random episodes), is validated on the next part
(one greedy pass; the best agents by validation return are kept by the CheckpointManager)
and is evaluated on the last, held-out part **through the backtester** (the same simulated
broker and risk manager), beside buy-and-hold and a seeded random agent with the same fees.
Input scaling is fitted on the training part only; a purge of ``frames`` bars separates the
parts so no input window straddles two of them. The job is written next to the checkpoints
(``dqn.job.json``) so ``pivotal evaluate`` rebuilds everything from the checkpoint alone, and
so is the observation scaler fitted on the training part with the observation's feature
names (``dqn.scaler.json``), so the agent can observe other data (the orchestrator) exactly
as it was trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from pivotal.backtest.api import attach_metrics
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.result import BacktestResult
from pivotal.backtest.strategies import make_strategy
from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.errors import ModelError
from pivotal.core.timeframes import Timeframe
from pivotal.data.atomic import atomic_write_text
from pivotal.data.store import MarketDataStore
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.scalers import StandardScaler, scaler_from_state
from pivotal.rl.cnn_features import cnn_features
from pivotal.rl.config import EnvConfig
from pivotal.rl.dqn import DQNAgent, DQNConfig, DQNResult, train_dqn
from pivotal.rl.env import TradingEnv
from pivotal.rl.observations import MarketObservations
from pivotal.rl.source import PolicySource, random_policy
from pivotal.rl.vector import VectorTradingEnv
from pivotal.training.checkpoint_manager import CheckpointManager
from pivotal.training.pipeline import read_streams

__all__ = [
    "JOB_FILE",
    "SCALER_FILE",
    "DQNEvaluation",
    "DQNJob",
    "DQNOutcome",
    "build_observations",
    "evaluate_agent",
    "job_as_saved",
    "read_feature_names",
    "read_job",
    "read_scaler",
    "refit_scaler",
    "split_steps",
    "train_dqn_job",
    "write_scaler",
]

JOB_FILE = "dqn.job.json"
SCALER_FILE = "dqn.scaler.json"
SCALER_FORMAT = 1


class DQNJob(StrictModel):
    """Everything that decides a DQN run besides the seed inside ``dqn``."""

    exchange: str = "binance"
    since: int | None = None
    until: int | None = None
    train_fraction: float = Field(default=0.7, gt=0, lt=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    envs: int = Field(default=4, ge=1, le=256)
    eval_every: int = Field(default=5_000, ge=1)
    cnn_checkpoint: str | None = None
    env: EnvConfig = Field(default_factory=EnvConfig)
    dqn: DQNConfig = Field(default_factory=DQNConfig)

    @field_validator("validation_fraction")
    @classmethod
    def _fractions(cls, value: float, info: Any) -> float:
        train = info.data.get("train_fraction", 0.7)
        if train + value >= 1:
            raise ValueError(
                f"train_fraction {train} + validation_fraction {value} leave no test range; "
                "their sum must be below 1"
            )
        return value

    @model_validator(mode="after")
    def _learns(self) -> DQNJob:
        if self.dqn.total_steps <= self.dqn.learning_starts:
            raise ValueError(
                f"total_steps {self.dqn.total_steps} is not above learning_starts "
                f"{self.dqn.learning_starts}: the agent would never learn; raise --steps or "
                "lower dqn.learning_starts"
            )
        return self

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return tuple(Timeframe.parse(t) for t in self.env.timeframes)

    @property
    def warmup_bars(self) -> int:
        return self.env.frames + 100  # indicator warm-up before the first window


@dataclass(frozen=True)
class DQNOutcome:
    result: DQNResult
    job: DQNJob
    folder: Path
    best_checkpoint: Path | None
    evaluation: DQNEvaluation


@dataclass(frozen=True)
class DQNEvaluation:
    """The agent, buy-and-hold and a random agent on the held-out range (backtester)."""

    agent: BacktestResult
    buy_and_hold: BacktestResult
    random: BacktestResult
    candles: Mapping[str, Candles]
    start_ms: int
    end_ms: int

    def table(self) -> list[tuple[str, float, float, float]]:
        keys = (
            "total_return_pct",
            "max_drawdown_pct",
            "exposure_time_pct",
            "n_trades",
            "win_rate_pct",
            "fees_paid",
        )
        return [
            (k, self.agent.metrics[k], self.buy_and_hold.metrics[k], self.random.metrics[k])
            for k in keys
        ]


def _read(store: MarketDataStore, job: DQNJob) -> dict[Timeframe, Candles]:
    return read_streams(
        store, job.exchange, job.env.symbol, job.timeframes, job.since, job.until, job.warmup_bars
    )


def build_observations(candles: Mapping[Timeframe, Candles], job: DQNJob) -> MarketObservations:
    """The market observations of the job (CNN features joined when it names a checkpoint)."""
    spec = InputSpec.candles(list(job.timeframes), frames=job.env.frames, min_frames=job.env.frames)
    extra = None
    if job.cnn_checkpoint is not None:
        if not Path(job.cnn_checkpoint).is_file():
            raise ModelError(
                f"the DQN job reads PivotCNN features from {job.cnn_checkpoint}, which does not "
                "exist; put that checkpoint back, or set cnn_checkpoint in the dqn.job.json "
                "beside the DQN checkpoint to its path (relative to that folder)"
            )
        features = cnn_features(job.cnn_checkpoint, candles)
        extra = (features.times, features.values, features.names)
    # windows across a gap are invalid under the environment's own gap definition
    gap_bars = job.env.settings.max_missing_bars
    return MarketObservations(candles, spec, extra=extra, max_missing_bars=gap_bars)


def split_steps(observations: MarketObservations, job: DQNJob) -> tuple[int, int, int, int]:
    """``(train_stop, val_start, val_stop, test_start)`` step indices, purged by ``frames``."""
    times = observations.times
    first = 0 if job.since is None else int(np.searchsorted(times, job.since))
    n = len(times) - first
    purge = job.env.frames
    train_stop = first + int(n * job.train_fraction)
    val_start = train_stop + purge
    val_stop = first + int(n * (job.train_fraction + job.validation_fraction))
    test_start = val_stop + purge
    if val_stop - val_start < 2 or len(times) - test_start < 2:
        raise ValueError(
            f"{n:,} steps are too few for train/validation/test parts with a {purge}-bar purge; "
            "widen --since/--until or reduce --frames"
        )
    if train_stop - first < job.env.episode_length + 1:
        raise ValueError(
            f"the training part has {train_stop - first:,} steps, fewer than one episode of "
            f"{job.env.episode_length}; reduce --episode-length or widen the range"
        )
    return train_stop, val_start, val_stop, test_start


def _greedy_return(observations: MarketObservations, job: DQNJob, start: int, stop: int):  # type: ignore[no-untyped-def]
    """A function scoring an agent by its equity return over ``[start, stop)`` (greedy)."""
    config = job.env.model_copy(update={"episode_length": stop - start - 1, "random_start": False})

    def score(agent: DQNAgent) -> float:
        env = TradingEnv(observations, config, start=start, stop=stop)
        obs, info = env.reset(seed=0, options={"start": start})
        done = False
        while not done:
            action = int(agent.act(obs[None])[0])
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        return float(info["equity"]) / float(job.env.settings.broker.initial_cash) - 1.0

    return score


def train_dqn_job(
    store: MarketDataStore,
    job: DQNJob,
    folder: Path,
    *,
    keep: int = 5,
    log_dir: Path | None = None,
    progress: bool = False,
) -> DQNOutcome:
    """Train, keep the best agents by validation return, evaluate the best on the test part."""
    candles = _read(store, job)
    observations = build_observations(candles, job)
    train_stop, val_start, val_stop, test_start = split_steps(observations, job)
    observations.fit_scaler(int(observations.times[train_stop]))
    first = 0 if job.since is None else int(np.searchsorted(observations.times, job.since))
    envs = VectorTradingEnv(observations, job.env, job.envs, start=first, stop=train_stop)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / JOB_FILE, job_as_saved(job, folder).model_dump_json(indent=2) + "\n")
    write_scaler(folder, observations)
    manager = CheckpointManager(folder, "dqn", keep=keep, metric="val_return", mode="max")
    result = train_dqn(
        envs,
        job.dqn,
        eval_fn=_greedy_return(observations, job, val_start, val_stop),
        eval_every=job.eval_every,
        log_dir=log_dir,
        checkpoints=manager,
        progress=progress,
    )
    best = result.best_path
    agent = DQNAgent.load(best) if best is not None else result.agent
    evaluation = _evaluate(agent, observations, candles, job, test_start)
    return DQNOutcome(result, job, folder, best, evaluation)


def job_as_saved(job: DQNJob, folder: Path) -> DQNJob:
    """The job as written to ``folder/dqn.job.json``: a relative PivotCNN checkpoint path
    (relative to the training's working directory) made relative to ``folder``, so the
    checkpoints work from any working directory and when the data folder moves whole; an
    absolute path is kept."""
    if job.cnn_checkpoint is None or Path(job.cnn_checkpoint).expanduser().is_absolute():
        return job
    where = os.path.relpath(Path(job.cnn_checkpoint).resolve(), Path(folder).resolve())
    return job.model_copy(update={"cnn_checkpoint": where})


def read_job(checkpoint: Path) -> DQNJob:
    """The job saved beside a DQN checkpoint (``dqn.job.json`` in its folder).

    A relative ``cnn_checkpoint`` in it is relative to that folder (where training writes it),
    so the checkpoint works from any working directory; the job returned holds the resolved
    path. Files written before this rule held a path relative to the training's working
    directory: one that exists only that way is still found. ``ModelError`` when the job is
    missing; a missing PivotCNN checkpoint is refused where it is read
    (:func:`build_observations`), since the orchestrator's DQN expert does not read it.
    """
    path = Path(checkpoint).parent / JOB_FILE
    if not path.is_file():
        raise ModelError(
            f"{path} not found: a DQN checkpoint is evaluated with the job saved beside it by "
            "`pivotal train dqn`; keep the checkpoint in its folder"
        )
    job = DQNJob.model_validate(json.loads(path.read_text()))
    if job.cnn_checkpoint is None:
        return job
    named = Path(job.cnn_checkpoint).expanduser()
    beside = named if named.is_absolute() else path.parent / named
    found = next((p for p in (beside, named) if p.is_file()), beside)
    return job.model_copy(update={"cnn_checkpoint": str(found.resolve())})


def write_scaler(folder: Path, observations: MarketObservations) -> Path:
    """Atomically write the fitted observation scaler of ``observations`` and the names of
    an observation's features (market, position state, extra) to ``folder/dqn.scaler.json``.
    ``ValueError`` when no scaler is fitted."""
    if observations.scaler is None:
        raise ValueError("the observations have no fitted scaler: call fit_scaler(...) first")
    payload = {
        "format": SCALER_FORMAT,
        "scaler": observations.scaler.state_dict(),
        "feature_names": list(observations.feature_names),
    }
    return atomic_write_text(Path(folder) / SCALER_FILE, json.dumps(payload, indent=2) + "\n")


def _scaler_payload(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint).parent / SCALER_FILE
    if not path.is_file():
        raise ValueError(
            f"{path} not found: the DQN in {Path(checkpoint).parent} was trained by a pivotal "
            "that did not save its observation scaler; retrain it with this version, or write "
            "the scaler from the job's data with pivotal.rl.run.refit_scaler(store, checkpoint)"
        )
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict) or payload.get("format") != SCALER_FORMAT:
        raise ValueError(
            f"{path} is not a DQN scaler file of format {SCALER_FORMAT}; rewrite it with "
            "pivotal.rl.run.refit_scaler(store, checkpoint)"
        )
    return payload


def read_scaler(checkpoint: Path) -> StandardScaler:
    """The observation scaler saved beside a DQN checkpoint (``dqn.scaler.json``), fitted on
    the job's training part. ``ValueError`` (saying how to get one) when there is none."""
    payload = _scaler_payload(Path(checkpoint))
    scaler = scaler_from_state(payload["scaler"])
    if not isinstance(scaler, StandardScaler):
        raise ValueError(f"the scaler beside {checkpoint} is a {scaler.kind} scaler, not standard")
    return scaler


def read_feature_names(checkpoint: Path) -> tuple[str, ...]:
    """Names of the features of the observations the DQN beside ``checkpoint`` was trained
    on (last axis: market, position state, then extra such as the CNN features)."""
    return tuple(_scaler_payload(Path(checkpoint))["feature_names"])


def refit_scaler(store: MarketDataStore, checkpoint: Path) -> Path:
    """Rebuild the job's data from ``store``, refit the scaler on its training part exactly
    as training did (deterministic) and write it beside ``checkpoint``; returns the file."""
    job = read_job(checkpoint)
    observations = build_observations(_read(store, job), job)
    train_stop = split_steps(observations, job)[0]
    observations.fit_scaler(int(observations.times[train_stop]))
    return write_scaler(Path(checkpoint).parent, observations)


def evaluate_agent(store: MarketDataStore, checkpoint: Path) -> DQNEvaluation:
    """Rebuild the job's data, refit the scaler on its training part (deterministic), and
    backtest the agent greedily on the held-out part beside the two baselines."""
    job = read_job(checkpoint)
    candles = _read(store, job)
    observations = build_observations(candles, job)
    train_stop, _, _, test_start = split_steps(observations, job)
    observations.fit_scaler(int(observations.times[train_stop]))
    shape = (observations.frames, observations.width)
    agent = DQNAgent.load(checkpoint, observation_shape=shape)
    return _evaluate(agent, observations, candles, job, test_start)


def _evaluate(
    agent: DQNAgent,
    observations: MarketObservations,
    candles: Mapping[Timeframe, Candles],
    job: DQNJob,
    test_start: int,
) -> DQNEvaluation:
    anchor = job.timeframes[0]
    start_ms = int(observations.times[test_start]) - anchor.ms  # open of the first test bar
    bars = candles[anchor].between(start_ms, None)
    symbol = job.env.symbol
    market = {symbol: bars}
    settings = job.env.settings
    common = {
        "observations": observations,
        "symbol": symbol,
        "episode_length": job.env.episode_length,
        "initial_cash": settings.broker.initial_cash,
    }

    def greedy(obs: np.ndarray) -> int:
        return int(agent.act(obs)[0])

    runs = {
        "agent": PolicySource(greedy, name="dqn", **common),  # type: ignore[arg-type]
        "random": PolicySource(random_policy(job.dqn.seed), name="random", **common),  # type: ignore[arg-type]
        "buy_and_hold": make_strategy("buy_and_hold", {}),
    }
    results = {
        name: attach_metrics(
            run_backtest(market, source, timeframe=anchor, settings=settings), market, anchor
        )
        for name, source in runs.items()
    }
    return DQNEvaluation(
        agent=results["agent"],
        buy_and_hold=results["buy_and_hold"],
        random=results["random"],
        candles=market,
        start_ms=start_ms,
        end_ms=int(bars.timestamp[-1]) + anchor.ms,
    )
