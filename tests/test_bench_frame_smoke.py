"""Smoke test of benchmarks/bench_frame.py: a short run prints every row and a verdict; no
wall-clock thresholds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_frame.py"


def test_bench_frame_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_frame", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--bars", "1600"])
    out = capsys.readouterr().out
    for row in ("frame update", "+ input", "+ observe", "batch, whole run", "batch per bar"):
        assert row in out, row
    assert "goal: frame update < 100 µs per base bar" in out
    assert ("PASS" in out) != ("FAIL" in out)
