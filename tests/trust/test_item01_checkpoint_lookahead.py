"""Item 1: no look-ahead through the learning loop's online checkpoints.

A backtest loads only online checkpoints whose newest learned candle closed before its first
learning bar (``learn_from``, else ``since``); it lists what it loaded and skipped, and why.
So the same run twice (same checkpoint folder) gives the same decisions, fills and equity,
and a run over a later period leaves an earlier run's results unchanged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.orchestrator.online_checkpoints import (
    LEARNED_UNTIL,
    TRAINED_UNTIL,
    iso_utc,
    parse_load_rule,
)
from pivotal.orchestrator.run import OrchestratedRun, run_backtest_mode
from pivotal.orchestrator.run_file import RunConfig, load_run_config
from pivotal.testing.orchestrator import GRID_START, TinyExperts, train_tiny_experts
from pivotal.testing.threads import one_torch_thread
from pivotal.training.checkpoints import read_checkpoint

M1 = Timeframe.parse("1m")
EARLY = {"learn_from": 300, "since": 450, "until": 600}  # minutes after GRID_START
LATE = {"learn_from": 750, "since": 900, "until": 1_050}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _config(tiny: TinyExperts, folder: Path, span: dict[str, int]) -> RunConfig:
    return RunConfig.model_validate(
        {
            "timeframe": "1m",
            **{k: GRID_START + v * M1.ms for k, v in span.items()},
            "warmup_bars": 50,
            "orchestrator": {
                "experts": tiny.experts(),
                "gate": {"buy_threshold": 0.0, "sell_threshold": 0.0},
                "history": {"enabled": False},
                "learning": {
                    "horizon_bars": 5,
                    "batch_size": 16,
                    "holdout": 16,
                    "epochs": 4,
                    "learning_rate": 0.05,
                    "keep_checkpoints": 100,  # none pruned: every saved one can be read
                    "checkpoint_dir": str(folder),
                },
            },
        }
    )


@dataclass(frozen=True)
class Runs:
    early: OrchestratedRun
    early_again: OrchestratedRun
    late: OrchestratedRun
    early_after_late: OrchestratedRun
    folder: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The early run, again, then a later run, then the early run again: one folder."""
    root = tmp_path_factory.mktemp("item01")
    tiny = train_tiny_experts(root / "experts")
    folder = root / "online"
    store = root / "store.duckdb"
    shutil.copyfile(tiny.store, store)

    def run(span: dict[str, int]) -> OrchestratedRun:
        with DuckDBStore(store, read_only=True) as s:
            return run_backtest_mode(s, _config(tiny, folder, span), history=False)

    early = run(EARLY)
    early_again = run(EARLY)
    late = run(LATE)
    return Runs(early, early_again, late, run(EARLY), folder)


def _same_results(a: OrchestratedRun, b: OrchestratedRun) -> None:
    pd.testing.assert_frame_equal(a.decisions, b.decisions)
    pd.testing.assert_frame_equal(a.result.fills, b.result.fills)
    assert a.result.equity.tolist() == b.result.equity.tolist()


def _online(run: OrchestratedRun) -> list[dict[str, Any]]:
    return list(run.checkpoints)


def test_the_early_run_learned_and_saved_checkpoints_with_their_learned_until(
    runs: Runs,
) -> None:
    saved = [e for e in runs.early.events if e["kind"] == "checkpoint_saved"]
    assert saved, "the early run saved no checkpoint: the test would prove nothing"
    first_bar = GRID_START + EARLY["learn_from"] * M1.ms
    last_bar_close = GRID_START + EARLY["until"] * M1.ms
    for event in saved:
        ckpt = read_checkpoint(event["message"])
        until = ckpt.metrics[LEARNED_UNTIL]
        assert first_bar < until <= last_bar_close  # learned inside the run, not before
        assert ckpt.metrics["newest_candle_open_ms"] == until - M1.ms
        assert ckpt.metrics["newest_outcome_matured_ms"] <= until


def test_the_same_run_twice_gives_the_same_decisions_fills_and_equity(runs: Runs) -> None:
    _same_results(runs.early, runs.early_again)
    assert not [e for e in runs.early_again.events if e["kind"] == "checkpoint_loaded"]


def test_a_later_run_leaves_the_earlier_runs_results_unchanged(runs: Runs) -> None:
    _same_results(runs.early, runs.early_after_late)


def test_checkpoints_learned_after_the_first_bar_are_skipped_with_the_reason(
    runs: Runs,
) -> None:
    first_bar = GRID_START + EARLY["learn_from"] * M1.ms
    online = _online(runs.early_after_late)
    assert online and all(c["status"] == "skipped" for c in online)
    for choice in online:
        assert choice["learned_until"] > iso_utc(first_bar)  # ISO UTC strings sort by time
        assert "after the run's first learning bar" in choice["reason"]
        assert set(choice) == {"path", "model", "learned_until", "status", "reason"}
    events = [e for e in runs.early_after_late.events if e["kind"] == "checkpoint_skipped"]
    assert len(events) == len(online)


def test_a_later_run_loads_the_best_checkpoint_learned_before_it(runs: Runs) -> None:
    online = _online(runs.late)
    loaded = [c for c in online if c["status"] == "loaded"]
    assert len(loaded) == 1 and loaded[0]["model"] == "pivot_cnn"
    assert loaded[0]["learned_until"] <= iso_utc(GRID_START + LATE["learn_from"] * M1.ms)
    assert [e for e in runs.late.events if e["kind"] == "checkpoint_loaded"]


def test_run_file_experts_trained_after_the_first_bar_are_warned_about(runs: Runs) -> None:
    # the tiny experts were trained on all 1,200 bars: after the early run's first bar
    warned = [e for e in runs.early.events if e["kind"] == "lookahead_warning"]
    assert [e["model"] for e in warned] == ["pivot_cnn"]  # the DQN's data end is unknown
    assert "after the run's first learning bar" in warned[0]["message"]
    assert {c["model"] for c in runs.early_again.checkpoints} == {"pivot_cnn"}  # online only


def test_a_checkpoint_without_learned_until_is_skipped_in_a_backtest(
    runs: Runs, tmp_path: Path
) -> None:
    folder = tmp_path / "old"
    shutil.copytree(runs.folder, folder)
    index = folder / "pivot_cnn.checkpoints.json"
    data = json.loads(index.read_text())
    for entry in data["checkpoints"]:  # as an older pivotal wrote them
        for key in (LEARNED_UNTIL, "newest_candle_open_ms"):
            entry["metrics"].pop(key, None)
    index.write_text(json.dumps(data))
    from pivotal.orchestrator.online_checkpoints import ExpertCheckpoints

    manager = ExpertCheckpoints(folder, "pivot_cnn", metric="holdout_accuracy", mode="max")
    expert = runs.early.orchestrator.coordinator.experts()["pivot_cnn"]
    loaded, choices = manager.load_best_into(expert, "before:9999999999999")
    assert loaded is None and choices
    assert all("records no learned-until time" in c.reason for c in choices)
    loaded, choices = manager.load_best_into(expert, "best")  # paper/live: the best
    assert loaded is not None and choices[0].status == "loaded"


def test_a_checkpoint_grown_from_a_later_base_model_is_skipped(runs: Runs, tmp_path: Path) -> None:
    folder = tmp_path / "other-base"
    shutil.copytree(runs.folder, folder)
    index = folder / "pivot_cnn.checkpoints.json"
    data = json.loads(index.read_text())
    for entry in data["checkpoints"]:  # as if grown from a model trained on later data
        entry["metrics"][TRAINED_UNTIL] = 9_999_999_999_999
    index.write_text(json.dumps(data))
    from pivotal.orchestrator.online_checkpoints import ExpertCheckpoints

    learned = max(e["metrics"][LEARNED_UNTIL] for e in data["checkpoints"])
    manager = ExpertCheckpoints(folder, "pivot_cnn", metric="holdout_accuracy", mode="max")
    expert = runs.early.orchestrator.coordinator.experts()["pivot_cnn"]
    loaded, choices = manager.load_best_into(expert, f"before:{int(learned)}")
    assert loaded is None and choices
    assert all("grown from another base model" in c.reason for c in choices)


def test_run_files_keep_their_online_checkpoints_apart(tmp_path: Path) -> None:
    for name in ("btc-2024", "btc-2025"):
        (tmp_path / f"{name}.yaml").write_text(
            'orchestrator: {learning: {checkpoint_dir: "models/online/{run}"}}\n'  # as README
        )
    folders = {
        load_run_config(tmp_path / f"{n}.yaml").orchestrator.learning.checkpoint_dir
        for n in ("btc-2024", "btc-2025")
    }
    assert folders == {tmp_path / "models/online/btc-2024", tmp_path / "models/online/btc-2025"}


def test_the_load_rule_is_checked() -> None:
    assert str(parse_load_rule("before:123")) == "before:123"
    assert parse_load_rule("best").kind == "best"
    with pytest.raises(ValueError, match="before:<UTC ms>"):
        parse_load_rule("after:5")
