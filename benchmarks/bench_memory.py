"""Memory of a pushed orchestrated run: does it plateau, whatever the run's length?

Run ``python benchmarks/bench_memory.py`` (about 10 minutes on a 2-core CPU; ``--quick``:
1 and 3 days, about 2 minutes). The experts and the store are those of
``bench_orchestrator.py`` (real BTC/USDT 1m bars with the 5m stream; the demo's model
sizes). Each case runs ``run_backtest_mode`` with ``accelerate: false``: every bar pushed
from the store through the runtime's replay feed (read in chunks) into the market frame,
learning and history on, decisions, events, fills and equity streamed to the run journal.
Cases: 10 days and 30 days (14,400 and 43,200 bars), each in a fresh store.

Measured: the process's resident memory (``/proc/self/statm``), sampled every 50 ms while
the run goes; the figure is the peak during the run minus the resident memory just before
it (torch, the experts and the store are loaded by then). The peer, in the same process: the
backtest engine running ``sma_cross`` on the same bars (its results are arrays of the run's
length, so it grows with it). A run whose memory plateaus has a 30-day figure close to its
10-day figure; the table prints their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from bench_orchestrator import (
    BASE,
    SEED,
    STREAM,
    SYMBOL,
    TRADING,
    Settings,
    host_line,
    load_candles,
    orchestrator_config,
    spans_of,
    train_experts,
)
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.strategies import make_strategy
from pivotal.orchestrator.run import run_backtest_mode
from pivotal.orchestrator.run_file import RunConfig
from pivotal.testing.training import store_candles

DAY_BARS = 1_440
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """The process's resident memory now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


def peak_growth(fn: Callable[[], Any]) -> tuple[Any, int, float]:
    """``fn()``'s result, its peak resident memory above the start (bytes, sampled every
    50 ms) and its wall time (s)."""
    start = resident_bytes()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], resident_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    began = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - began
        done.set()
        thread.join()
    peak[0] = max(peak[0], resident_bytes())
    return result, peak[0] - start, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 3 days")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    days = (1, 3) if args.quick else (10, 30)
    settings = Settings(run_bars=days[-1] * DAY_BARS, latency_warmup=1, latency_bars=1)
    candles = load_candles(settings.total_bars)
    if candles is None:
        print("real BTC/USDT 1m data not found (../shared/data): nothing measured")
        return 0
    spans = spans_of(candles, settings)
    rows: list[tuple[str, int, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        root = Path(tmp)
        with store_candles(
            root / "training.duckdb", candles, symbol=SYMBOL, streams=(str(STREAM),)
        ) as store:
            experts = train_experts(store, root / "experts", spans, settings)
        for n in days:
            until = spans.run_since + n * DAY_BARS * BASE.ms
            bars = candles.between(spans.run_since, until)
            _, grown, seconds = peak_growth(
                lambda bars=bars: run_backtest(
                    {SYMBOL: bars}, make_strategy("sma_cross"), timeframe=BASE, settings=TRADING
                )
            )
            rows.append((f"peer: BacktestEngine + sma_cross, {n} days", len(bars), seconds, grown))
            config = orchestrator_config(
                experts, learning=True, history=True, online_dir=root / f"online_{n}"
            )
            run = RunConfig(
                symbols=[SYMBOL],
                timeframe=str(BASE),
                since=spans.run_since,
                until=until,
                warmup_bars=600,
                seed=SEED,
                accelerate=False,
                settings=TRADING,
                orchestrator=config,
            )
            with store_candles(
                root / f"run_{n}.duckdb", candles, symbol=SYMBOL, streams=(str(STREAM),)
            ) as store:
                _, grown, seconds = peak_growth(
                    lambda run=run, store=store: run_backtest_mode(store, run)
                )
            rows.append((f"pushed orchestrated run, {n} days", len(bars), seconds, grown))
            print(f"{rows[-1][0]}: +{grown / 2**20:.0f} MiB peak, {seconds:.0f} s", flush=True)
    print(host_line())
    print(f"{'case':<46} {'bars':>7} {'seconds':>8} {'peak growth MiB':>16}")
    for case, bars, seconds, grown in rows:
        print(f"{case:<46} {bars:>7,} {seconds:>8.1f} {grown / 2**20:>16.1f}")
    short, long = rows[1][3], rows[3][3]
    peer_short, peer_long = rows[0][3], rows[2][3]
    print(
        f"pushed run: {days[1]} days / {days[0]} days peak growth = "
        f"{long / max(short, 1):.2f} (peer: {peer_long / max(peer_short, 1):.2f}) "
        f"for {days[1] / days[0]:.0f}x the bars"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
