"""Smoke test of benchmarks/bench_api.py: its data dir is served, the latency run prints
the three rows and the ratio, the streaming run measures a ``pivotal serve`` process. Short
sizes; no wall-clock thresholds."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.network

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_api", BENCHMARKS / "bench_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_api", module)
    spec.loader.exec_module(module)
    return module


def test_quick_figures_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load(monkeypatch)
    root = bench.make_data_dir(tmp_path / "data", 1600)
    bench.latency(root, 10)
    bench.streaming_cpu(root, 1.0)
    out = capsys.readouterr().out
    assert "1,500 bars" in out
    for row in ("HTTP (uvicorn, 127.0.0.1)", "view.candles in process", "raw store read"):
        assert re.search(re.escape(row) + r"\s+p50\s+[\d.]+ ms\s+p99\s+[\d.]+ ms", out), out
    assert re.search(r"ratio HTTP / raw read \(p99\): [\d.]+x", out), out
    assert re.search(r"= [\d.]+ % of one core", out), out
