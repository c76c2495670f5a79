"""The DQN job end to end on planted markets: it learns a predictable sine and beats
buy-and-hold and a random agent on the held-out part; on shuffled returns it finds no edge;
the backtester sees exactly the fills the environment produced; evaluation reproduces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.rl.dqn import DQNAgent
from pivotal.rl.env import TradingEnv
from pivotal.rl.run import (
    DQNJob,
    DQNOutcome,
    build_observations,
    evaluate_agent,
    split_steps,
    train_dqn_job,
)
from pivotal.testing.threads import one_torch_thread

BARS = 6_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _sine_market(shuffled: bool, seed: int = 0) -> Candles:
    """A noisy sine (period 40 bars, ±2 %): its turns are predictable from recent returns.
    ``shuffled`` keeps the same returns in a random order, which removes the pattern."""
    rng = np.random.default_rng(seed)
    i = np.arange(BARS)
    logp = 0.02 * np.sin(2 * np.pi * i / 40) + rng.normal(0, 0.0005, BARS)
    if shuffled:
        steps = np.diff(logp)
        rng.shuffle(steps)
        logp = np.concatenate([[0.0], np.cumsum(steps)])
    close = 100 * np.exp(logp)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high, low = np.maximum(open_, close) * 1.0002, np.minimum(open_, close) * 0.9998
    start = 1_700_000_000_000 // 60_000 * 60_000
    return Candles(start + i * 60_000, open_, high, low, close, np.ones(BARS))


def _job() -> DQNJob:
    return DQNJob.model_validate(
        {
            "envs": 4,
            "eval_every": 2_000,
            "env": {
                "symbol": "BTC/USDT",
                "timeframe": "1m",
                "frames": 8,
                "episode_length": 200,
                "settings": {"broker": {"fees": {"maker": 0.0002, "taker": 0.0002}}},
            },
            "dqn": {
                "total_steps": 8_000,
                "hidden": 32,
                "heads": 2,
                "learning_starts": 500,
                "buffer_size": 20_000,
                "learning_rate": 1e-3,
                "target_update_interval": 250,
                "gamma": 0.9,
                "exploration_fraction": 0.3,
                "seed": 0,
            },
        }
    )


def _train(root: Path, shuffled: bool) -> DQNOutcome:
    with open_store(root / "data") as store:
        key = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
        store.write_candles(key, _sine_market(shuffled))
    with open_store(root / "data", read_only=True) as store:
        return train_dqn_job(store, _job(), root / "models")


def _returns(outcome: DQNOutcome) -> tuple[float, float, float]:
    e = outcome.evaluation
    return tuple(  # type: ignore[return-value]
        r.metrics["total_return_pct"] for r in (e.agent, e.buy_and_hold, e.random)
    )


def test_dqn_on_the_planted_sine(tmp_path: Path) -> None:
    """One trained agent (training dominates the cost), three checks: it beats both
    baselines on the held-out part; the backtester saw exactly the environment's fills;
    evaluating the saved checkpoint reproduces the training-time evaluation."""
    outcome = _train(tmp_path, shuffled=False)
    _beats_both_baselines(outcome)
    _backtester_sees_the_environments_fills(tmp_path, outcome)
    _evaluation_reproduces(tmp_path, outcome)


def _beats_both_baselines(outcome: DQNOutcome) -> None:
    agent, hold, random = _returns(outcome)
    assert agent > hold + 20.0, (agent, hold)
    assert agent > random + 20.0, (agent, random)
    assert outcome.best_checkpoint is not None and outcome.best_checkpoint.is_file()
    assert outcome.evaluation.agent.metrics["n_trades"] > 5


def _backtester_sees_the_environments_fills(root: Path, outcome: DQNOutcome) -> None:
    job = outcome.job
    with open_store(root / "data", read_only=True) as store:
        key = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
        observations = build_observations({Timeframe.M1: store.read_candles(key)}, job)
    train_stop, _, _, test_start = split_steps(observations, job)
    observations.fit_scaler(int(observations.times[train_stop]))
    assert outcome.best_checkpoint is not None
    agent = DQNAgent.load(outcome.best_checkpoint)
    config = job.env.model_copy(
        update={"episode_length": len(observations) - test_start - 1, "random_start": False}
    )
    env = TradingEnv(observations, config, start=test_start)
    obs, _ = env.reset(seed=0, options={"start": test_start})
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(int(agent.act(obs[None])[0]))
        done = terminated or truncated
    ours = env.broker.fills_frame()
    theirs = outcome.evaluation.agent.fills
    assert len(ours) == len(theirs) > 5
    np.testing.assert_array_equal(ours["timestamp"], theirs["timestamp"])
    np.testing.assert_allclose(ours["price"], theirs["price"], rtol=1e-12)
    np.testing.assert_allclose(ours["quantity"], theirs["quantity"], rtol=1e-12)
    np.testing.assert_allclose(ours["fee"], theirs["fee"], rtol=1e-12)


def _evaluation_reproduces(root: Path, outcome: DQNOutcome) -> None:
    assert outcome.best_checkpoint is not None
    with open_store(root / "data", read_only=True) as store:
        again = evaluate_agent(store, outcome.best_checkpoint)
    assert again.agent.final_equity == outcome.evaluation.agent.final_equity
    assert len(again.agent.trades) == len(outcome.evaluation.agent.trades)


def test_on_shuffled_returns_it_finds_no_edge(tmp_path: Path) -> None:
    agent, hold, _ = _returns(_train(tmp_path, shuffled=True))
    assert agent < hold + 2.0, (agent, hold)


def test_a_range_too_short_for_an_episode_is_refused(tmp_path: Path) -> None:
    candles = _sine_market(False)[:260]
    job = _job()
    observations = build_observations({Timeframe.M1: candles}, job)
    with pytest.raises(ValueError, match="fewer than one episode"):
        split_steps(observations, job)


def test_a_job_that_would_never_learn_is_refused() -> None:
    with pytest.raises(ValidationError, match="never learn"):
        DQNJob.model_validate({"dqn": {"total_steps": 1_000, "learning_starts": 5_000}})
