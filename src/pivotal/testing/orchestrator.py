"""Tiny trained experts for orchestrator tests and benchmarks: a PivotCNN and a DQN that reads
its features, trained in seconds on planted (or given) 1m candles with a 5m stream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivotal.core.candles import Candles
from pivotal.rl.run import DQNJob, train_dqn_job
from pivotal.testing.planted import planted_candles
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.run import train_job

__all__ = ["GRID_START", "TinyExperts", "train_tiny_experts"]

GRID_START = 1_699_999_200_000
"""A start time on the 1m, 5m and 1h grids."""


@dataclass(frozen=True)
class TinyExperts:
    """Checkpoint paths and the store (closed) they were trained from."""

    cnn: Path
    dqn: Path
    store: Path
    candles: Candles

    def experts(self) -> list[dict[str, Any]]:
        """The run file's ``orchestrator.experts``: the PivotCNN and the DQN reading it."""
        return [
            {"name": "pivot_cnn", "kind": "pivot_cnn", "checkpoint": str(self.cnn)},
            {
                "name": "dqn",
                "kind": "dqn",
                "checkpoint": str(self.dqn),
                "depends_on": ["pivot_cnn"],
            },
        ]


def train_tiny_experts(
    root: Path,
    candles: Candles | None = None,
    *,
    symbol: str = "BTC/USDT",
    frames: int = 8,
    hidden: int = 16,
    seed: int = 0,
    timeframe: str = "1m",
    streams: tuple[str, ...] = ("5m",),
) -> TinyExperts:
    """Train a tiny ``pivot_cnn`` (``timeframe`` + ``streams``, ``frames`` frames) and a DQN
    over its features on ``candles`` (default: 1,200 planted 1m bars) in a new store under
    ``root``."""
    candles = (
        candles if candles is not None else planted_candles(1_200, seed=2, start_time=GRID_START)
    )
    training = tiny_job("pivot_cnn").training.model_copy(update={"epochs": 2, "seed": seed})
    cnn_job = tiny_job(
        "pivot_cnn",
        frames=frames,
        timeframe=timeframe,
        streams=streams,
        training=training,
        symbol=symbol,
    )
    dqn_job = DQNJob.model_validate(
        {
            "envs": 2,
            "eval_every": 100,
            "env": {
                "symbol": symbol,
                "frames": frames,
                "timeframe": timeframe,
                "streams": list(streams),
                "episode_length": 50,
            },
            "dqn": {
                "total_steps": 200,
                "learning_starts": 100,
                "hidden": hidden,
                "heads": 2,
                "batch_size": 16,
                "buffer_size": 1_000,
                "seed": seed,
                "device": "cpu",
            },
        }
    )
    path = root / "store.duckdb"
    with store_candles(path, candles, symbol=symbol, timeframe=timeframe, streams=streams) as store:
        cnn = train_job(store, cnn_job, root / "cnn", keep=1).best_checkpoint
        job = dqn_job.model_copy(update={"cnn_checkpoint": str(cnn)})
        outcome = train_dqn_job(store, job, root / "dqn", keep=1)
    if outcome.best_checkpoint is None:
        raise RuntimeError("the tiny DQN kept no checkpoint")
    return TinyExperts(cnn, outcome.best_checkpoint, path, candles)
