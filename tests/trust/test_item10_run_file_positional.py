"""Item 10 (``pivotal run``): the run file is the positional RUN_FILE and ``-c/--config`` is
pivotal's own config file, as for every other command; every option says what it does and
its default, with no internal jargon; the old ``--config RUN_FILE`` form gets a clear
pointer instead of a traceback."""

from __future__ import annotations

import re
from pathlib import Path

from pivotal.testing.cli import run_cli


def _words(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_help_names_run_file_and_every_option_with_its_default(tmp_path: Path) -> None:
    done = run_cli(["run", "--help"], cwd=tmp_path, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    text = _words(done.stdout)
    assert "RUN_FILE" in text
    for option, words in (
        ("--mode", "the run file's mode"),
        ("--report", "default: no report"),
        ("--json", "default: no JSON"),
        ("--no-history", "default: stored"),
        ("--config", "pivotal.yaml"),
        ("--data-dir", "PIVOTAL_DATA_DIR"),
    ):
        assert option in text and words in text, option
    assert not re.search(r"stage \d|seed \d{3}", text, flags=re.IGNORECASE)


def test_a_run_file_given_as_config_is_pointed_at_the_argument(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("mode: backtest\norchestrator:\n  experts: []\n")
    done = run_cli(["run", "--config", "run.yaml"], cwd=tmp_path)
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "looks like a run file" in message and "pivotal run run.yaml" in message, message
    assert "Traceback" not in done.stderr


def test_without_a_run_file_the_message_says_what_to_give(tmp_path: Path) -> None:
    done = run_cli(["run"], cwd=tmp_path)
    assert done.returncode == 2
    assert "pivotal run RUN_FILE" in _words(done.stderr)
    missing = run_cli(["run", "nope.yaml"], cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope.yaml is not a file" in _words(missing.stderr)
    assert "Traceback" not in missing.stderr


def test_config_is_pivotals_own_config(tmp_path: Path) -> None:
    """``-c`` is read as pivotal's config file: a typo in it is reported by key and file."""
    (tmp_path / "pivotal.yaml").write_text("no_such_key: 1\n")
    (tmp_path / "run.yaml").write_text("mode: backtest\n")
    done = run_cli(["run", "run.yaml", "-c", "pivotal.yaml"], cwd=tmp_path)
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "pivotal.yaml" in message and "no_such_key" in message, message
    assert "Traceback" not in done.stderr
