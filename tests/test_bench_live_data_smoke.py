"""Smoke test of benchmarks/bench_live_data.py: a ``--quick`` run (the local exchange in a
subprocess, a real ccxt.pro client and the collector over 127.0.0.1) prints every row with
samples and one verdict per goal; and the looped flows it serves keep ids contiguous and
reset the book each loop. No wall-clock thresholds."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pivotal.localexchange.flow import DepthDiff, TradePrint
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.testing.planted import planted_candles

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the bench imports its server module
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_looped_flow_keeps_ids_contiguous_and_resets_the_book(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = _load("live_exchange_proc", monkeypatch)
    candles = planted_candles(40, seed=3, scale=0.001, start_price=100.0, bar_ms=1000)
    flow = synthetic_flow(candles, "1s", "BTC/USDT", seed=3)
    loops = proc.looped(flow, 3)
    period = ((flow.end_ms - flow.start_ms) // 1000 + 2) * 1000
    assert loops.end_ms == flow.end_ms + 2 * period

    market = MarketState(loops)  # refuses a broken update-id sequence or time order
    trade_ids, resets = [], 0
    for event in loops.events():
        market.apply(event)
        if isinstance(event, TradePrint):
            trade_ids.append(event.trade_id)
        elif (
            isinstance(event, DepthDiff) and event.time_ms == flow.start_ms + (resets + 1) * period
        ):
            resets += 1
            book = market.depth(10_000)  # right after the reset: the flow's snapshot again
            assert book.bids == flow.snapshot.bids
            assert book.asks == flow.snapshot.asks
    assert resets == 2
    assert np.all(np.diff(trade_ids) == 1)
    assert len(trade_ids) == 3 * sum(isinstance(e, TradePrint) for e in flow.events())


@pytest.mark.network
def test_bench_live_data_runs_and_reports(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load("bench_live_data", monkeypatch)
    bench.main(["--quick"])
    out = capsys.readouterr().out
    lines = out.splitlines()

    def row(name: str) -> list[str]:
        found = [line for line in lines if line.startswith(name)]
        assert found, f"no row {name!r} in:\n{out}"
        return found[0][len(name) :].split()

    for name in (
        "live: socket -> SymbolPipeline.on_book",
        "  of which socket -> Collector.handle",
        "ccxt decode + handle, per depth message",
        "live: socket -> MarketFrame (visible)",
        "  of which socket -> CandleClosed published",
        "ccxt decode + handle, per trade message",
    ):
        n, p50, p99, worst = row(name)[:4]
        assert int(n) > 0, name  # the run produced samples
        assert 0 <= float(p50) <= float(p99) <= float(worst), name
    for name in (
        "batch iter_cob, per depth event",
        "batch iter_cob, per snapshot",
        "ccxt µs per depth level changed",
        "batch aggregate_trades + frame, per candle",
    ):
        assert float(row(name)[0]) > 0, name
    steps = [line for line in lines if re.match(r"^\s*\d+x ", line)]
    assert steps, out
    for goal in ("COB snapshot p99 <", "1s candle visible p99 <", "sustained >="):
        verdicts = [line for line in lines if line.startswith("goal:") and goal in line]
        assert len(verdicts) == 1 and verdicts[0].endswith(("PASS", "FAIL")), goal
