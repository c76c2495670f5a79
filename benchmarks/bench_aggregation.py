"""Aggregation speed beside pandas in the same process: trades -> candles, 1s -> 1m candles.

Run ``python benchmarks/bench_aggregation.py``. Each figure is the best of 5 timed runs after
one warm-up run (best of 3 for the per-trade streaming row). Trades are the real Binance
BTC/USDT capture of ``../shared/data`` tiled to ~5 M rows (each copy shifted in time, its
prices and sizes perturbed), or simulated trades when that data is absent; the 1s candles
come from the seeded simulator (30 days).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pivotal.core import Timeframe
from pivotal.core.trades import Trades
from pivotal.data.resample import resample
from pivotal.data.simulator import SimulatorConfig, simulate_candles, simulate_trades
from pivotal.data.tick_aggregation import RealTimeTickAggregator, aggregate_trades
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of

N_TRADES = 5_000_000
N_SECONDS = 30 * 86_400  # 2,592,000 one-second candles
TRADES_FILE = "trades/binance-spot/BTC_USDT-trades-20240808T2354-20240809T0005.parquet"


def tiled_trades(n: int) -> tuple[Trades, str]:
    """About ``n`` trades: the real capture repeated with perturbations, or simulated ones."""
    data = shared_data_dir()
    if data is None:
        sim = simulate_candles(n // 20, SimulatorConfig(seed=1))
        return simulate_trades(sim).trades, f"simulated ({sim.source})"
    base = pd.read_parquet(data / TRADES_FILE)
    ts, price, qty = (base[c].to_numpy() for c in ("timestamp", "price", "qty"))
    copies = math.ceil(n / len(base))
    rng = np.random.default_rng(0)
    span = int(ts[-1] - ts[0]) + 1
    shift = np.repeat(np.arange(copies, dtype=np.int64) * span, len(base))
    level = np.repeat(np.exp(np.cumsum(rng.normal(0, 0.002, copies))), len(base))
    noise = np.exp(rng.normal(0, 2e-5, copies * len(base)))
    trades = Trades(
        np.tile(ts, copies) + shift,
        np.round(np.tile(price, copies) * level * noise, 2),
        np.tile(qty, copies) * rng.lognormal(0, 0.2, copies * len(base)),
        np.tile(base["is_buyer_maker"].to_numpy(), copies),
        np.arange(copies * len(base), dtype=np.int64),
    )
    return trades, f"real BTC/USDT trades x{copies}"


def pandas_bars(frame: pd.DataFrame, tf_ms: int) -> pd.DataFrame:
    """The peer: bars with trade count and taker-buy volume from a pandas groupby."""
    key = frame["timestamp"] - frame["timestamp"] % tf_ms
    buy = frame["qty"].where(~frame["is_buyer_maker"], 0.0)
    return (
        frame.assign(buy=buy)
        .groupby(key.to_numpy(), sort=False)
        .agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("qty", "sum"),
            trades=("price", "size"),
            buy=("buy", "sum"),
        )
    )


def pandas_resample(frame: pd.DataFrame) -> pd.DataFrame:
    ohlcv = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    return frame.resample("1min").agg(ohlcv)


def stream(trades: Trades) -> None:
    agg = RealTimeTickAggregator(Timeframe.S1)
    add = agg.add
    rows = zip(
        trades.timestamp.tolist(),
        trades.price.tolist(),
        trades.quantity.tolist(),
        trades.is_buyer_maker.tolist(),
        strict=True,
    )
    for row in rows:
        add(*row)
    agg.flush()


def main() -> None:
    rows: list[tuple[str, int, float, float | None]] = []
    trades, origin = tiled_trades(N_TRADES)
    frame = pd.DataFrame(
        {
            "timestamp": trades.timestamp,
            "price": trades.price,
            "qty": trades.quantity,
            "is_buyer_maker": trades.is_buyer_maker,
        }
    )
    for tf in (Timeframe.S1, Timeframe.M1):
        ours = aggregate_trades(trades, tf, fill_empty=False)
        peer = pandas_bars(frame, tf.ms)
        assert np.array_equal(ours.candles.high, peer["high"].to_numpy()), "results differ"
        assert np.array_equal(ours.trade_count, peer["trades"].to_numpy()), "results differ"
        t_ours = best_of(lambda tf=tf: aggregate_trades(trades, tf, fill_empty=False))
        t_peer = best_of(lambda tf=tf: pandas_bars(frame, tf.ms))
        rows.append((f"trades -> {tf} bars (aggregate_trades)", len(trades), t_ours, t_peer))
    t_fill = best_of(lambda: aggregate_trades(trades, Timeframe.S1, fill_empty=True))
    rows.append(("trades -> 1s bars, fill_empty=True", len(trades), t_fill, None))
    few = trades[:300_000]
    t_stream = best_of(lambda: stream(few), repeats=3)
    rows.append(("RealTimeTickAggregator.add, 1 call/trade", len(few), t_stream, None))

    candles = simulate_candles(N_SECONDS, SimulatorConfig(seed=3, timeframe=Timeframe.S1)).candles
    indexed = candles.to_frame(datetime_index=True)
    ours_m = resample(candles, Timeframe.S1, Timeframe.M1)
    assert np.array_equal(ours_m.low, pandas_resample(indexed)["low"].to_numpy()), "differ"
    t_ours = best_of(lambda: resample(candles, Timeframe.S1, Timeframe.M1))
    t_peer = best_of(lambda: pandas_resample(indexed))
    rows.append(("1s -> 1m candles (resample)", len(candles), t_ours, t_peer))
    report(rows, origin)


def report(rows: list[tuple[str, int, float, float | None]], origin: str) -> None:
    title = f"aggregation, best of 5 after a warm-up; trades: {origin}"
    header = ("case", "rows", "pivotal ms", "rows/s", "pandas ms", "pandas / pivotal")
    lines = [
        (
            case,
            f"{n:,}",
            f"{ours * 1e3:,.1f}",
            f"{n / ours / 1e6:,.1f} M",
            "-" if peer is None else f"{peer * 1e3:,.1f}",
            "-" if peer is None else f"{peer / ours:,.1f}x",
        )
        for case, n, ours, peer in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for line in (header, *lines):
            print("  ".join(f"{cell:>14}" for cell in line))
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for line in lines:
        table.add_row(*line)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
