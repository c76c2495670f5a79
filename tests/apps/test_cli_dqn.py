"""`pivotal train dqn` and `pivotal evaluate` of its checkpoint, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli import run_cli

JOB = """
env: {settings: {broker: {fees: {maker: 0.0002, taker: 0.0002}}}}
dqn: {hidden: 16, heads: 2, learning_starts: 200, buffer_size: 5000, target_update_interval: 100}
eval_every: 500
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-dqn")
    n = 3_000
    i = np.arange(n)
    close = 100 * np.exp(0.02 * np.sin(2 * np.pi * i / 40))
    open_ = np.concatenate([[close[0]], close[:-1]])
    start = 1_700_000_000_000 // 60_000 * 60_000
    candles = Candles(
        start + i * 60_000,
        open_,
        np.maximum(open_, close) * 1.0002,
        np.minimum(open_, close) * 0.9998,
        close,
        np.ones(n),
    )
    with open_store(root / "data") as store:
        store.write_candles(SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1), candles)
    (root / "job.yaml").write_text(JOB)
    return root


def test_train_dqn_then_evaluate_its_checkpoint(home: Path) -> None:
    done = run_cli(
        ["train", "dqn", "-s", "BTC/USDT", "-t", "1m", "--frames", "8", "--steps", "1000",
         "--envs", "2", "--episode-length", "200", "--job", "job.yaml", "-d", "data",
         "--html", "dqn.html", "--no-tensorboard"],
        cwd=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "held-out range" in done.stdout and "buy and hold" in done.stdout
    assert (home / "dqn.html").is_file()
    checkpoints = sorted((home / "data" / "models" / "dqn").glob("dqn_*.pt"))
    assert checkpoints
    again = run_cli(["evaluate", str(checkpoints[0]), "-d", "data"], cwd=home)
    assert again.returncode == 0, again.stderr
    assert "held-out range" in again.stdout


def test_options_of_other_models_are_refused_for_dqn(home: Path) -> None:
    done = run_cli(["train", "dqn", "--epochs", "3", "-d", "data"], cwd=home)
    assert done.returncode != 0
    assert "--epochs does not apply to dqn" in done.stderr
