"""`pivotal train / evaluate / optimize / models list` on a small planted market, as a user
runs them: real store, real checkpoints, real report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pivotal.core import Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli import run_cli
from pivotal.testing.planted import planted_candles

JOB = """
labels: {horizons: [1], dead_band: 0.0, pivot_levels: 0, extrema_window: 3, volume_horizon: 1}
hyperparameters: {channels: 8, head_size: 16}
training: {batch_size: 64, lr: 0.003}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-train")
    with open_store(root / "data") as store:
        key = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
        store.write_candles(key, planted_candles(2_500, seed=5))
    (root / "job.yaml").write_text(JOB)
    return root


def _train(home: Path, *extra: str):  # type: ignore[no-untyped-def]
    args = ["train", "cnn1d", "-s", "BTC/USDT", "-t", "1m", "--frames", "16", "--epochs", "2"]
    return run_cli([*args, "--job", "job.yaml", "-d", "data", *extra], cwd=home)


def test_train_keeps_checkpoints_writes_a_report_and_evaluate_agrees(home: Path) -> None:
    done = _train(home, "--html", "report.html")
    assert done.returncode == 0, done.stderr
    assert "best checkpoint:" in done.stdout
    assert "persistence" in done.stdout and "majority" in done.stdout  # baselines beside it
    checkpoints = sorted((home / "data" / "models" / "cnn1d").glob("*.pt"))
    assert 1 <= len(checkpoints) <= 5
    index = json.loads((home / "data/models/cnn1d/cnn1d.checkpoints.json").read_text())
    assert index  # the manager's index lists what it kept
    html = (home / "report.html").read_text()
    assert "plotly" in html.lower()
    assert list((home / "data" / "runs" / "cnn1d").rglob("events.out.tfevents*"))

    best = next(line for line in done.stdout.splitlines() if line.startswith("best checkpoint:"))
    path = best.split(":", 1)[1].strip()
    evaluated = run_cli(["evaluate", path, "-d", "data"], cwd=home)
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = [line for line in done.stdout.splitlines() if "│ accuracy" in line]
    assert accuracy and accuracy[0] in evaluated.stdout  # same numbers from the checkpoint alone

    listed = run_cli(["models", "list", "-d", "data"], cwd=home)
    assert listed.returncode == 0, listed.stderr
    for name in ("pivot_cnn", "transformer", "ensemble", "volume_lstm"):
        assert name in listed.stdout
    assert "cnn1d_e" in listed.stdout


def test_bad_input_gives_clear_errors(home: Path) -> None:
    unknown = run_cli(["train", "no_such_model", "-s", "BTC/USDT", "-d", "data"], cwd=home)
    assert unknown.returncode != 0
    assert "unknown model 'no_such_model'" in unknown.stderr
    assert "pivot_cnn" in unknown.stderr  # lists the registered names
    missing = run_cli(["train", "cnn1d", "-s", "ETH/USDT", "-d", "data"], cwd=home)
    assert missing.returncode == 1
    assert "no binance ETH/USDT 1m candles stored" in missing.stderr
    bad_param = _train(home, "-p", "no_such_param=3")
    assert bad_param.returncode != 0
    assert "no_such_param" in bad_param.stderr
    bad_job = run_cli(["train", "cnn1d", "-d", "data"], cwd=home)
    assert bad_job.returncode == 2
    assert "symbol" in bad_job.stderr


def test_optimize_runs_a_resumable_study(home: Path) -> None:
    args = ["optimize", "cnn1d", "--trials", "2", "-s", "BTC/USDT", "--frames", "16"]
    done = run_cli([*args, "--epochs", "1", "--job", "job.yaml", "-d", "data"], cwd=home)
    assert done.returncode == 0, done.stderr
    assert (home / "data" / "search" / "optuna.db").is_file()
    best = json.loads((home / "data" / "search" / "cnn1d.best.json").read_text())
    assert best
    again = run_cli([*args, "--epochs", "1", "--job", "job.yaml", "-d", "data"], cwd=home)
    assert again.returncode == 0, again.stderr
    assert "2 complete" in again.stdout  # resumed: the study already holds its 2 trials
