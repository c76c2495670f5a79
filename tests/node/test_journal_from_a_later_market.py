"""A journal written against a later market (a local exchange that started its replay again)
is refused at start with what to do, not resumed with time going backwards."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from helpers.node_kit import NodeHome

pytestmark = pytest.mark.network


def test_a_session_refuses_a_journal_that_runs_past_the_venues_time(tmp_path: Path) -> None:
    first = NodeHome(tmp_path / "first", mode="paper", speed=120.0)
    try:
        child = first.start(duration_s=120)
        first.wait_for_steps(child, 5)
        first.kill(child, signal.SIGTERM)
    finally:
        first.close()
    again = NodeHome(tmp_path / "again", mode="paper")  # a fresh exchange: its replay restarts
    try:
        again.journal.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first.journal, again.journal)  # closed cleanly: one file
        child = again.start(duration_s=60)
        out, _ = child.communicate(timeout=120)
        assert child.returncode != 0, out
        assert "belongs to a later market" in out and "Move it away" in out, out
        assert "OperationalError" in out, out  # the CLI shows it as an error, not a crash
    finally:
        again.close()
