"""Per-bar cost of the incremental market frame, beside the batch computation of the same bars.

Run ``python benchmarks/bench_frame.py`` (``--bars 20000`` to change the length, ``--quick``
for 5,000 bars; the default 30,000 base bars take about a minute on a 2-core CPU). The bars
are real BTC/USDT 1m candles from ``../shared/data`` (seeded planted candles when the data is
absent: the first line says which), with 5m and 1h candles resampled from them. Three
timeframes (1m, 5m, 1h) are pushed into a :class:`~pivotal.orchestrator.frame.MarketFrame`
(capacity 1,500, the default) as a live feed would: at each 1m close every candle that has
just closed (the 1m one, a 5m one every 5th bar, a 1h one every 60th) is appended, then the
cursor advances. Each append folds the candle into its rolling window: the 24 raw indicators,
their 24 scale-free columns and the 5-level Williams pivots with their 20 newest-pivot
columns, by the streaming twins. Rows (µs per base bar; p50/p99 over single bars):

- ``frame update``: append + advance (the goal: under 100 µs per base bar, PASS/FAIL);
- ``+ input``: the same plus :meth:`~pivotal.orchestrator.frame.MarketFrame.input` of a
  3-timeframe 300-frame spec (what a decision step reads);
- ``+ observe``: update plus :meth:`~pivotal.orchestrator.frame.MarketFrame.observe` of the
  same spec (the encoded ``(3, 300, 51)`` tensor);
- ``batch, whole run``: the batch functions over all bars at once, in the same process
  (``compute_indicator_features`` + ``candle_columns`` with those raw values + ``williams_pivots``
  on each timeframe), divided by the number of base bars: the floor an accelerated replay
  pays; ``ratio`` = frame update ÷ this;
- ``batch per bar, window``: the same batch functions over the newest 1,500 candles of each
  timeframe at every bar (what a frame that recomputes its window per bar would pay;
  measured on every 100th bar).

The first and last lines give the host's 1-minute load average: other processes on a small
host slow every figure, so compare runs at low load.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import resample
from pivotal.features.indicators.feature_set import compute_indicator_features
from pivotal.features.inputs import InputSpec
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.pivots.williams import williams_pivots
from pivotal.orchestrator.frame import MarketFrame
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import shared_data_dir

TFS = (Timeframe.M1, Timeframe.M5, Timeframe.H1)
SYMBOL = "BTC/USDT"
GOAL_US = 100.0
CAPACITY = 1_500


def _load(bars: int) -> tuple[Candles, str]:
    data = shared_data_dir()
    path = None if data is None else data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet"
    if path is not None and path.is_file():
        frame = pd.read_parquet(
            path, columns=["timestamp", "open", "high", "low", "close", "volume"]
        )
        candles = Candles.from_frame(frame.tail(bars).reset_index(drop=True))
        return candles, f"real BTC/USDT 1m from {path}"
    return planted_candles(bars, seed=1, scale=0.004), "planted candles (shared data absent)"


def _load_avg() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def _schedule(data: dict[Timeframe, Candles]) -> list[tuple[int, list[tuple[Timeframe, Candles]]]]:
    """Per 1m close: the one-row candles of every timeframe that close then."""
    m1 = data[Timeframe.M1]
    closes = {tf: (c.timestamp + tf.ms).tolist() for tf, c in data.items()}
    pos = dict.fromkeys(TFS, 0)
    out = []
    for t in (m1.timestamp + Timeframe.M1.ms).tolist():
        rows = []
        for tf in TFS:
            i = pos[tf]
            while i < len(closes[tf]) and closes[tf][i] <= t:
                rows.append((tf, data[tf].rows(i, i + 1)))
                i += 1
            pos[tf] = i
        out.append((t, rows))
    return out


def _push(
    schedule: list[tuple[int, list[tuple[Timeframe, Candles]]]],
    extra: Callable[[MarketFrame, int], object] | None = None,
) -> np.ndarray:
    """Seconds per base bar of pushing ``schedule`` into a fresh frame (plus ``extra``)."""
    frame = MarketFrame(capacity=CAPACITY)
    out = np.empty(len(schedule))
    clock = time.perf_counter
    for k, (t, rows) in enumerate(schedule):
        start = clock()
        for tf, candle in rows:
            frame.append_candles(SYMBOL, tf, candle)
        frame.advance(SYMBOL, t)
        if extra is not None:
            extra(frame, t)
        out[k] = clock() - start
    return out


def _batch(data: dict[Timeframe, Candles]) -> None:
    config = ColumnsConfig()
    for tf, candles in data.items():
        raw = compute_indicator_features(candles, allow_short=True, step_ms=tf.ms)
        pivots = williams_pivots(
            candles.high, candles.low, levels=5, strength=2, timestamps=candles.timestamp,
            step_ms=tf.ms,
        )  # fmt: skip
        candle_columns(candles, tf, config, indicators=raw, pivots=pivots)


def _window_batch(data: dict[Timeframe, Candles], every: int = 100) -> float:
    """Seconds per bar of the batch functions over the newest CAPACITY candles per timeframe."""
    m1 = data[Timeframe.M1]
    times = []
    for i in range(CAPACITY, len(m1), every):
        t = int(m1.timestamp[i]) + Timeframe.M1.ms
        window = {}
        for tf, candles in data.items():
            end = int(np.searchsorted(candles.timestamp + tf.ms, t, side="right"))
            window[tf] = candles[max(0, end - CAPACITY) : end]
        start = time.perf_counter()
        _batch(window)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) if times else float("nan")


def _row(name: str, per_bar: np.ndarray | float, batch: float | None = None) -> None:
    if isinstance(per_bar, np.ndarray):
        mean, p50, p99 = per_bar.mean() * 1e6, *(np.percentile(per_bar, [50, 99]) * 1e6)
        text = f"{mean:10.1f} {p50:9.1f} {p99:9.1f}"
    else:
        text = f"{per_bar * 1e6:10.1f} {'':>9} {'':>9}"
    ratio = (
        ""
        if batch is None
        else f"{(per_bar.mean() if isinstance(per_bar, np.ndarray) else per_bar) / batch:8.1f}x"
    )
    print(f"{name:<28}{text} {ratio}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=30_000, help="1m base bars to push")
    parser.add_argument("--quick", action="store_true", help="5,000 bars")
    args = parser.parse_args(argv)
    bars = 5_000 if args.quick else args.bars
    print(f"load average (1 min): {_load_avg()}")
    m1, source = _load(bars)
    data = {tf: m1 if tf is Timeframe.M1 else resample(m1, Timeframe.M1, tf) for tf in TFS}
    print(f"bars: {source}; {len(m1):,} 1m, {len(data[Timeframe.M5]):,} 5m, "
          f"{len(data[Timeframe.H1]):,} 1h; capacity {CAPACITY:,}")  # fmt: skip
    schedule = _schedule(data)
    spec = InputSpec.candles(["1m", "5m", "1h"], frames=300, min_frames=50)
    builder = ObservationBuilder(spec)

    _push(schedule[: min(500, len(schedule))])  # warm-up: imports, first allocations
    update = _push(schedule)
    with_input = _push(schedule, lambda frame, t: frame.input(SYMBOL, spec))
    with_observe = _push(schedule, lambda frame, t: frame.observe(SYMBOL, builder, t))
    _batch(data)
    start = time.perf_counter()
    _batch(data)
    batch = (time.perf_counter() - start) / len(m1)
    window = _window_batch(data)

    print(f"\n{'µs per base bar':<28}{'mean':>10} {'p50':>9} {'p99':>9} {'ratio':>9}")
    _row("frame update", update, batch)
    _row("+ input (3 × 300 frames)", with_input, batch)
    _row("+ observe (3 × 300 × 51)", with_observe, batch)
    _row("batch, whole run", batch)
    _row("batch per bar, window", window)
    verdict = "PASS" if update.mean() * 1e6 < GOAL_US else "FAIL"
    print(
        f"\ngoal: frame update < {GOAL_US:.0f} µs per base bar (24 indicators + 5-level pivots "
        f"on 1m/5m/1h): {update.mean() * 1e6:.1f} µs {verdict}"
    )
    print(f"load average (1 min): {_load_avg()}")


if __name__ == "__main__":
    main()
