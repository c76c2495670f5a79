"""Smoke test of benchmarks/bench_trading.py: the ``--quick`` path's functions run (local
exchange in a thread, real ccxt clients over 127.0.0.1, SQLite journals in tmp) and give
finite figures in the order the stamps must come in; the reconciliation of the seeded
account finds no difference once started; the reports print every row and one verdict per
goal. No wall-clock thresholds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.network

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BARS = 30


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_trading", BENCHMARKS / "bench_trading.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_trading", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def _finite(values: np.ndarray, n: int) -> None:
    assert len(values) == n
    assert np.all(np.isfinite(values)) and np.all(values >= 0)


def test_quick_path_gives_finite_figures_and_a_clean_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load(monkeypatch)
    live = bench.bench_wire(BARS, tmp_path)
    free = bench.bench_wire(BARS, tmp_path, throttle=False)
    sim = bench.bench_sim(BARS)
    for run in (live, free, sim):
        assert run.missed == 0  # every bar put one order on the wire
        for values in (run.fetch, run.wire, run.reply, run.step):
            _finite(values, BARS)
        # per bar: ccxt's fetch, then the engine's NEW, then submit returns, then the step ends
        assert np.all(run.fetch <= run.wire) and np.all(run.wire <= run.reply)
        assert np.all(run.reply <= run.step)

    appends = bench.bench_journal(2_000, tmp_path)
    assert set(appends) == {"normal", "full", "jsonl"}
    for values in appends.values():
        _finite(values, 2_000)

    result = bench.bench_reconcile(10, 100, tmp_path, repeats=1)
    symbols = len(bench.SYMBOLS)
    assert result.open_orders == 10 * symbols
    assert result.fills >= 100 * symbols
    assert result.first_booked == result.fills == result.venue_fills  # all read, all booked
    assert result.throttled is not None and result.free is not None
    # the first timed start may adopt base balances (journaled fills carry no fee asset);
    # after that the journal and the venue agree
    assert set(result.throttled.start_fields) <= {"balance", "position"}
    assert result.free.start_fields == []
    assert result.throttled.differences == result.free.differences == 0
    assert result.pure_differences == 0
    for phase in (result.throttled, result.free):
        requests, weight = phase.cost
        assert requests > 0 and 0 < weight + phase.start_cost[1] <= bench.BUDGET
        assert all(np.isfinite(phase.reconcile_s)) and np.isfinite(phase.start_s)
    for values in (result.venue_state_s, result.pure_s):
        assert len(values) == 1 and np.isfinite(values[0]) and values[0] > 0

    bench.report_wire(live, free, sim, BARS)
    bench.report_journal(appends)
    bench.report_reconcile(result)
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if line.startswith("goal:")]
    assert len(verdicts) == 3 and all(v.endswith(("met", "NOT met")) for v in verdicts)
    rows = (
        "live: bar -> engine NEW",
        "sim: bar -> SimulatedBroker.submit",
        "JSON lines",
        "broker.reconcile(), ccxt throttle on",
        "pure reconcile",
        "requests / weight",
    )
    for row in rows:
        assert row in out, row
