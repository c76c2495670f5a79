"""Smoke test of benchmarks/bench_orchestrator.py: its settings checks, its spans, and a run
on real data (``--quick`` sizes, or smaller) that reports sane figures; no wall-clock
thresholds."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.threads import one_torch_thread

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_orchestrator.py"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_orchestrator", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_orchestrator"] = module  # dataclasses look their module up while building
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("bench_orchestrator", None)
    return module


def positive_finite(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_bad_settings_are_refused(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="run_bars"):
        bench.Settings(run_bars=100, latency_warmup=10, latency_bars=100)
    with pytest.raises(ValueError, match="dqn_learning_starts"):
        bench.Settings(dqn_steps=100, dqn_learning_starts=100)
    with pytest.raises(ValueError, match="train_bars"):
        bench.Settings(train_bars=0)
    assert bench.parse_args(["--quick"]).quick
    assert not bench.parse_args([]).profile


def test_spans_split_the_newest_bars(bench: ModuleType) -> None:
    settings = bench.Settings(
        pre_bars=10, train_bars=20, run_bars=50, latency_warmup=5, latency_bars=10
    )
    candles = planted_candles(100, seed=1)
    spans = bench.spans_of(candles, settings)
    ts = candles.timestamp
    assert spans.run_since == ts[50]  # the newest 50 bars are measured
    assert spans.train_since == ts[30]  # the 20 before them train
    assert spans.latency_until == ts[65]  # warm-up + timed decisions from the run's start
    assert spans.until == ts[-1] + 60_000
    with pytest.raises(ValueError, match="need"):
        bench.spans_of(candles[:60], settings)


@pytest.mark.slow
def test_a_small_run_on_real_data_reports_sane_figures(bench: ModuleType) -> None:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    settings = bench.Settings(
        pre_bars=1_500,
        train_bars=3_000,
        run_bars=400,
        latency_warmup=10,
        latency_bars=150,
        dqn_steps=150,
        dqn_learning_starts=50,
    )
    candles = bench.load_candles(settings.total_bars, data)
    if candles is None:
        pytest.skip("the shared data holds no BTC/USDT 1m file")
    report = bench.run_bench(settings, candles)

    paced, full, bare = report.latency
    assert (paced.case, full.case, bare.case) == (
        "learning on, history on, paced as live",
        "learning on, history on",
        "learning off, history off",
    )
    for lat in (paced, full, bare):
        assert lat.decisions == settings.latency_bars
        assert lat.total.shape == (settings.latency_bars,)
        assert all(positive_finite(v) for v in lat.total)
        for name in bench.COMPONENTS:
            assert np.all(np.isfinite(lat.parts[name]))
        assert np.all(lat.parts["experts"] > 0)  # both models ran at every timed decision
        assert np.allclose(sum(lat.parts[c] for c in bench.COMPONENTS), lat.total)
        assert lat.percentile(50) <= lat.percentile(99) <= float(lat.total.max())
    assert np.all(full.parts["history"] > 0) and np.all(paced.parts["history"] > 0)
    assert not np.any(bare.parts["learning"]) and not np.any(bare.parts["history"])

    rows = {r.case: r for r in report.runs}
    peer = next(r for r in report.runs if r.peer)
    assert peer.bars == settings.run_bars
    orchestrated = [r for r in report.runs if not r.peer]
    assert len(orchestrated) == 3
    for row in orchestrated:
        assert row.bars == settings.run_bars
        assert row.decisions == settings.run_bars  # the orchestrator decides on every bar
        assert positive_finite(row.seconds)
    assert rows["orchestrated: PivotCNN + DQN, learning on, history on"].stored == settings.run_bars
    assert (
        rows["orchestrated: PivotCNN + DQN, learning off, history on"].stored == settings.run_bars
    )
    assert rows["orchestrated: PivotCNN + DQN, learning off, history off"].stored == 0
    assert rows["orchestrated: PivotCNN + DQN, learning off, history on"].learning_events == 0
    assert positive_finite(report.experts.cnn_seconds)
    assert report.experts.cnn.is_absolute()


@pytest.mark.slow
def test_quick_main_prints_both_tables(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    if shared_data_dir() is None:
        pytest.skip(SKIP_REASON)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    if out.startswith("skipped"):
        pytest.skip(out.strip())
    assert "1. decision latency" in out
    assert "2. 2,000 1m bars" in out
    assert "peer: BacktestEngine + sma_cross" in out
    assert "learning off, history off" in out
    assert "CPUs" in out
