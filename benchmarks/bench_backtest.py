"""Backtest speed beside backtesting.py and vectorbt, in the same process, on the same signals.

Run ``python benchmarks/bench_backtest.py``. Data: the real BTC/USDT 1m file of
``../shared/data`` (1.58 M bars), or a seeded random walk of the same length when it is
absent (the table title says which). Strategy: the classic long-only SMA(10)/SMA(30) cross,
signals from :func:`pivotal.backtest.signals.sma_cross` (TA-Lib SMAs of the raw close),
100,000 USDT, 0.1 % fee per side, fills at the next bar's open. Every row is the best of
``REPEATS`` timed runs after one untimed warm-up run, data and signals already in memory:

- backtesting.py ``FractionalBacktest.run()`` (satoshi lots, its statistics included) on a
  **200,000-bar slice** only, because it runs about 90 k bars/s (the full series would take
  ~17 s per run); its rate in bars/s is what the other rows are compared with;
- vectorbt ``Portfolio.from_signals`` (price = the next bar's open, ``size=np.inf``) plus
  ``.value()`` and ``.trades.records_readable``, full series; its numba compilation happens
  in the warm-up run and is **not** timed;
- ours, :func:`pivotal.backtest.vectorized.run_signals`, full series; goal: at least 1.0x
  vectorbt's bars/s;
- the event-driven engine, added by :func:`engine_rows` once
  ``pivotal.backtest.engine.run_backtest`` exists; goal: at least 500,000 bars/s and 5x
  backtesting.py.

Cross-checks (printed, not timed): ours and backtesting.py make the same trades on the
slice; ours and vectorbt make the same number of trades at the same bars (vectorbt sizes
differently — fractional units, fees inside the size — so only counts and bars compare).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pivotal.backtest.signals import Signals, sma_cross
from pivotal.backtest.vectorized import run_signals
from pivotal.core import Candles
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of

N_BARS = 1_578_160  # the length of the real BTC/USDT 1m file
N_BT = 200_000
REPEATS = 3
CASH, FEE = 100_000.0, 0.001
#: backtesting.py's ``buy()`` spends this fraction of equity (1 - machine epsilon)
BT_ALL_IN = 1 - sys.float_info.epsilon
ENGINE_GOAL_RATE, ENGINE_GOAL_VS_BT = 500_000.0, 5.0


@dataclass(frozen=True)
class Row:
    """One timed case: ``bars`` processed in ``seconds`` (best run), compared with a peer."""

    case: str
    bars: int
    seconds: float
    peer: str | None = None  # the name of the row this one is compared with
    goal: str = ""
    met: bool | None = None

    @property
    def rate(self) -> float:
        return self.bars / self.seconds


def load_candles() -> tuple[Candles, str]:
    data = shared_data_dir()
    if data is None:
        rng = np.random.default_rng(0)
        close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, N_BARS))), 2)
        open_ = np.round(np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 2e-4, N_BARS)), 2)
        spread = np.abs(rng.normal(0, 5, N_BARS))
        ts = 1_600_000_000_000 + 60_000 * np.arange(N_BARS, dtype=np.int64)
        high, low = np.maximum(open_, close) + spread, np.minimum(open_, close) - spread
        candles = Candles(ts, open_, high, low, close, rng.uniform(1, 9, N_BARS))
        return candles, "seeded random walk (shared data not found)"
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet")
    return Candles.from_frame(frame.reset_index(drop=True)), "real BTC/USDT 1m"


# -- backtesting.py ---------------------------------------------------------------------------
def backtesting_runner(candles: Candles) -> Callable[[], pd.Series]:
    """``FractionalBacktest(...).run`` for the SmaCross strategy, SMAs of the raw close passed
    in as data columns (FractionalBacktest rescales OHLC by 1e-8, see conventions.md)."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar inside the timings
    import talib
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover

    class SmaCross(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            if not self.position and crossover(self.data.Fast, self.data.Slow):
                self.buy()
            elif self.position and crossover(self.data.Slow, self.data.Fast):
                self.position.close()

    frame = pd.DataFrame(
        {
            "Open": candles.open,
            "High": candles.high,
            "Low": candles.low,
            "Close": candles.close,
            "Volume": candles.volume,
            "Fast": talib.SMA(candles.close, 10),
            "Slow": talib.SMA(candles.close, 30),
        },
        index=pd.to_datetime(candles.timestamp, unit="ms"),
    )
    bt = FractionalBacktest(frame, SmaCross, cash=CASH, commission=FEE, finalize_trades=False)

    def run() -> pd.Series:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bt.run()

    return run


# -- vectorbt ---------------------------------------------------------------------------------
def vectorbt_runner(candles: Candles, signals: Signals) -> Callable[[], Any] | None:
    """vectorbt's from_signals + value + readable trades, or None when it is not installed.

    A decision at bar i fills at open[i+1]: the price series is the open shifted back one bar,
    and signals on the last bar are dropped (they never fill in ours either). Inputs are
    plain numpy arrays: with a DatetimeIndex, vectorbt 1.2's ``records_readable`` turns the
    whole index into a dict, which takes ~10 s per call under pandas 3 (not its engine's cost).
    """
    try:
        import vectorbt as vbt
    except ImportError:
        return None
    close = candles.close
    price = np.r_[candles.open[1:], candles.close[-1:]]
    entries, exits = signals.entries.copy(), signals.exits.copy()
    entries[-1] = exits[-1] = False

    def run() -> Any:
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=price, fees=FEE, init_cash=CASH, size=np.inf
        )
        pf.value()
        _ = pf.trades.records_readable
        return pf

    return run


def compare_with_vectorbt(ours: Any, pf: Any) -> str:
    """Same trades at the same bars? vectorbt books a fill at the decision bar (ours at the
    next bar) and sizes in fractional units with the fee inside the size, so only the count
    and the bars compare; where they part, say where and how much equity was left."""
    records = pf.trades.values
    closed = records[records["status"] == 1]
    n_open = int(np.sum(records["status"] == 0))
    theirs = np.column_stack([closed["entry_idx"] + 1, closed["exit_idx"] + 1])
    mine = ours.trades[["entry_bar", "exit_bar"]].to_numpy()
    head = min(len(theirs), len(mine))
    differ = np.flatnonzero(np.any(theirs[:head] != mine[:head], axis=1))
    if not len(differ) and len(theirs) == len(mine) and n_open == len(ours.open_trades):
        return f"same {len(mine)} closed + {n_open} open trades at the same bars"
    k = int(differ[0]) if len(differ) else head
    bar = int(mine[k, 0]) if k < len(mine) else int(theirs[k, 0])
    return (
        f"DIFFERENT counts: vectorbt {len(closed)} closed + {n_open} open trades, ours "
        f"{len(mine)} + {len(ours.open_trades)}; the first {k:,} trades are at the same bars, "
        f"they part at bar {bar:,} where ours had {ours.equity[bar - 1]:.3g} USDT of equity "
        f"(vectorbt {float(np.asarray(pf.value())[bar - 1]):.3g}) — dust left by the 0.2 % "
        "round-trip fees, where satoshi lots and fractional sizes decide differently"
    )


# -- the event-driven engine (the lead adds its row here) -------------------------------------
def engine_rows(candles: Candles, ours: Any, t_bt_slice: float) -> list[Row]:
    """The event engine beside backtesting.py on the same bars, twice.

    Goal: >= 500,000 bars/s and >= 5x backtesting.py. The engine runs the same ``sma_cross``
    strategy through ``run_backtest`` with default settings (100,000 cash, 0.1 % taker fee,
    satoshi lots, next-open fills, all-in): on the trade-dense 200,000-bar slice (one trade
    per ~50 bars, where its per-trade cost dominates) against the slice row above, and on
    the full series against one timed backtesting.py run on the full series (~17 s).
    """
    from pivotal.backtest.engine import run_backtest
    from pivotal.backtest.strategies import make_strategy

    def run(bars: Candles) -> Any:
        return run_backtest(
            {"BTC/USDT": bars}, make_strategy("sma_cross", {}), timeframe="1m", progress=False
        )

    goal = ">= 500k bars/s and >= 5x backtesting.py"
    head = candles[:N_BT]
    t_slice = best_of(lambda: run(head), repeats=REPEATS)
    t_full = best_of(lambda: run(candles), repeats=REPEATS)
    t_bt_full = best_of(backtesting_runner(candles), repeats=1, warmup=False)
    result = run(candles)
    same = len(result.trades) == len(ours.trades) and np.array_equal(
        result.trades["entry_bar"].to_numpy(), ours.trades["entry_bar"].to_numpy()
    )
    verdict = "same" if same else "DIFFERENT"
    print(f"event engine vs vectorized path on the full series: {verdict} trades")
    rate_full = len(candles) / t_full
    bt_full = len(candles) / t_bt_full
    return [
        Row(f"event engine run_backtest, {N_BT:,}-bar slice", N_BT, t_slice,
            peer="backtesting.py", goal=goal,
            met=N_BT / t_slice >= ENGINE_GOAL_RATE
            and N_BT / t_slice >= ENGINE_GOAL_VS_BT * (N_BT / t_bt_slice)),
        Row("backtesting.py FractionalBacktest.run, full series (1 run)", len(candles), t_bt_full),
        Row("event engine run_backtest, full series", len(candles), t_full,
            peer="backtesting.py full", goal=goal,
            met=rate_full >= ENGINE_GOAL_RATE and rate_full >= ENGINE_GOAL_VS_BT * bt_full),
    ]  # fmt: skip


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    candles, origin = load_candles()
    n = len(candles)
    rows: list[Row] = []
    notes: list[str] = []

    t_signals = best_of(lambda: sma_cross(candles.close), repeats=REPEATS)
    signals = sma_cross(candles.close)
    rows.append(Row("ours: sma_cross signals (TA-Lib SMAs + crosses)", n, t_signals))

    head = candles[:N_BT]
    bt_run = backtesting_runner(head)
    stats = bt_run()  # the warm-up run, kept for the cross-check
    t_bt = best_of(bt_run, repeats=REPEATS, warmup=False)
    rows.append(
        Row(f"backtesting.py FractionalBacktest.run, {len(head):,}-bar slice", len(head), t_bt)
    )
    mine = run_signals(head, sma_cross(head.close), fraction=BT_ALL_IN)
    same_bt = len(stats["_trades"]) == len(mine.trades) and np.array_equal(
        stats["_trades"]["EntryBar"].to_numpy(), mine.trades["entry_bar"].to_numpy()
    )
    notes.append(
        f"ours vs backtesting.py on the slice: {len(mine.trades)} vs {len(stats['_trades'])} "
        f"trades, {'same' if same_bt else 'DIFFERENT'} entry bars; final equity "
        f"{mine.final_equity:,.6f} vs {stats['Equity Final [$]']:,.6f}"
    )

    def ours_run() -> Any:
        return run_signals(candles, signals, cash=CASH, fee=FEE)

    t_ours = best_of(ours_run, repeats=REPEATS)
    ours = ours_run()

    vbt_run = vectorbt_runner(candles, signals)
    if vbt_run is None:
        notes.append("vectorbt is not installed (pip install -e '.[bench]'): its row is skipped")
    else:
        start = time.perf_counter()
        pf = vbt_run()  # warm-up: includes numba compilation, not timed
        compile_s = time.perf_counter() - start
        t_vbt = best_of(vbt_run, repeats=REPEATS, warmup=False)
        rows.append(
            Row("vectorbt from_signals + value + trades, full series", n, t_vbt, "backtesting.py")
        )
        notes.append(f"vectorbt warm-up incl. numba compilation: {compile_s:.1f} s (not timed)")
        notes.append(f"ours vs vectorbt: {compare_with_vectorbt(ours, pf)}")
    vbt_rate = n / t_vbt if vbt_run is not None else None
    rows.append(
        Row(
            "ours: run_signals (vectorized), full series",
            n,
            t_ours,
            peer="vectorbt" if vbt_rate else "backtesting.py",
            goal=">= 1.0x vectorbt" if vbt_rate else "",
            met=(n / t_ours >= vbt_rate) if vbt_rate else None,
        )
    )
    rows.extend(engine_rows(candles, ours, t_bt))
    report(rows, origin, notes)


def report(rows: list[Row], origin: str, notes: list[str]) -> None:
    rates = {"backtesting.py": next(r.rate for r in rows if r.case.startswith("backtesting"))}
    for row in rows:
        if row.case.startswith("vectorbt"):
            rates["vectorbt"] = row.rate
        if row.case.startswith("backtesting.py") and "full series" in row.case:
            rates["backtesting.py full"] = row.rate
    title = f"backtest speed, SMA 10/30, best of {REPEATS} after a warm-up; data: {origin}"
    header = ("case", "bars", "best s", "bars/s", "x backtesting.py", "x peer", "goal", "met")
    lines = []
    for row in rows:
        vs_bt = row.rate / rates["backtesting.py"]
        vs_peer = f"{row.rate / rates[row.peer]:,.2f}x {row.peer}" if row.peer else "-"
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            (
                row.case,
                f"{row.bars:,}",
                f"{row.seconds:,.3f}",
                f"{row.rate / 1e6:,.2f} M" if row.rate >= 1e6 else f"{row.rate / 1e3:,.0f} k",
                f"{vs_bt:,.1f}x",
                vs_peer,
                row.goal or "-",
                met,
            )
        )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for line in (header, *lines):
            print("  ".join(f"{cell:>16}" for cell in line))
    else:
        table = Table(title=title)
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for line in lines:
            table.add_row(*line)
        Console(width=180).print(table)
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
