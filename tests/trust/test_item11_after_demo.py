"""Item 11: after the demo, its checkpoints are where ``pivotal models list --data-dir`` looks
(the DQN listed too), its run file sits beside its report and repeats the run, and the three
commands it prints carry the right ``--data-dir`` and each runs.

A tiny stand-in for the demo's output (checkpoints under ``D/models``, the store in ``D``,
the run file written by the demo's writer in ``D/reports``) keeps this fast; the real demo
is checked by tests/apps/test_demo.py."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pivotal.apps.cli.demo_orchestrator import run_file_path
from pivotal.apps.cli.demo_steps import next_commands
from pivotal.data.duckdb_store import STORE_FILE_NAME
from pivotal.orchestrator.run_file import RunConfig, load_run_config, write_run_file
from pivotal.testing.cli import run_cli
from pivotal.testing.orchestrator import GRID_START, train_tiny_experts
from pivotal.testing.threads import one_torch_thread

MINUTE = 60_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunConfig]:
    """``cwd/out/demo`` laid out as the demo leaves it, and the run it describes."""
    cwd = tmp_path_factory.mktemp("item11")
    data = cwd / "out" / "demo"
    tiny = train_tiny_experts(data / "models")
    shutil.move(tiny.store, data / STORE_FILE_NAME)
    config = RunConfig.model_validate(
        {
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "since": GRID_START + 700 * MINUTE,
            "until": GRID_START + 800 * MINUTE,
            "learn_from": GRID_START + 650 * MINUTE,
            "warmup_bars": 50,
            "orchestrator": {
                "experts": tiny.experts(),
                "learning": {
                    "horizon_bars": 5,
                    "batch_size": 16,
                    "holdout": 16,
                    "checkpoint_dir": str(data / "reports" / "orchestrator" / "online"),
                },
            },
        }
    )
    write_run_file(config, run_file_path(data / "reports"))
    return cwd, config


def test_models_list_finds_the_cnn_and_the_dqn(demo_out: tuple[Path, RunConfig]) -> None:
    cwd, _ = demo_out
    done = run_cli(["models", "list", "--data-dir", "out/demo"], cwd=cwd, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if ".pt" in line]
    assert any("pivot_cnn" in r and "val_loss" in r for r in rows), done.stdout
    assert any("dqn" in r and "val_return" in r and "BTC/USDT" in r for r in rows), done.stdout


def test_the_run_file_sits_beside_the_report_and_reads_back_as_the_same_run(
    demo_out: tuple[Path, RunConfig],
) -> None:
    cwd, config = demo_out
    run_file = run_file_path(cwd / "out" / "demo" / "reports")
    assert run_file.parent.name == "reports" and run_file.suffix == ".yaml"
    text = run_file.read_text(encoding="utf-8")
    assert "../models/" in text  # checkpoints relative to the run file's folder
    again = load_run_config(run_file)
    assert _normal(again) == _normal(config)


def _normal(config: RunConfig) -> dict:
    """The config as JSON with its paths resolved (``reports/../models`` = ``models``)."""
    dump = config.model_dump(mode="json")
    for expert in dump["orchestrator"]["experts"]:
        expert["checkpoint"] = str(Path(expert["checkpoint"]).resolve())
    learning = dump["orchestrator"]["learning"]
    learning["checkpoint_dir"] = str(Path(learning["checkpoint_dir"]).resolve())
    return dump


def test_the_printed_commands_use_the_data_dir_and_each_runs(
    demo_out: tuple[Path, RunConfig],
) -> None:
    cwd, _ = demo_out
    run_file = run_file_path(Path("out/demo") / "reports")
    commands = next_commands("out/demo", run_file)
    assert len(commands) == 3
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "pivotal"
        assert words[words.index("--data-dir") + 1] == "out/demo", command
        done = run_cli(words[1:], cwd=cwd)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    assert (cwd / "out" / "demo" / "reports" / "rerun.html").is_file()
    without_run = next_commands("out/demo", None)
    assert all("--data-dir out/demo" in c for c in without_run)
