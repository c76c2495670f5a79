"""Indicator speed beside TA-Lib in the same process: batch feature set and streaming updates.

Run ``python benchmarks/bench_indicators.py``. Batch figures are the best of 5 timed runs after
one warm-up run, on the first 1,000,000 bars of the real BTC/USDT 1m file of ``../shared/data``
(or a seeded random walk when it is absent), data already in memory:

- TA-Lib alone: the 8 indicators (SMA, EMA, WMA, RSI, MACD, BBANDS, STOCH, ATR; 13 outputs);
- our typed wrappers for the same 8 (input checks included), and the ratio to TA-Lib;
- the full feature set ``compute_indicator_features`` (24 columns: the 8 plus OBV, VWAP, log
  return, volatility, momentum and six time features), and its ratio to TA-Lib.

Streaming: the mean time of one ``StreamingIndicatorSet.update`` (all 24 columns) over 200,000
bars, plus the 99th percentile of single timed updates.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import talib

from pivotal.core import Candles
from pivotal.features.indicators import (
    StreamingIndicatorSet,
    atr,
    bollinger,
    compute_indicator_features,
    ema,
    macd,
    rsi,
    sma,
    stochastic,
    wma,
)
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of

N_BARS = 1_000_000
N_STREAM = 200_000


def load_candles(n: int) -> tuple[Candles, str]:
    data = shared_data_dir()
    if data is None:
        rng = np.random.default_rng(0)
        close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), 2)
        spread = np.abs(rng.normal(0, 5, n))
        ts = 1_600_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
        return Candles(ts, close, close + spread, close - spread, close, rng.uniform(1, 9, n)), (
            "seeded random walk"
        )
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet").iloc[:n]
    return Candles.from_frame(frame.reset_index(drop=True)), "real BTC/USDT 1m"


def talib_eight(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
    talib.SMA(c, 20)
    talib.EMA(c, 20)
    talib.WMA(c, 20)
    talib.RSI(c, 14)
    talib.MACD(c, 12, 26, 9)
    talib.BBANDS(c, 20, 2.0, 2.0, 0)
    talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    talib.ATR(h, lo, c, 14)


def our_eight(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
    sma(c, 20)
    ema(c, 20)
    wma(c, 20)
    rsi(c)
    macd(c)
    bollinger(c)
    stochastic(h, lo, c)
    atr(h, lo, c)


def streaming_times(candles: Candles) -> tuple[float, float]:
    """Mean µs per update over the bars, and the p99 of single timed updates (µs)."""
    bars = list(
        zip(
            candles.timestamp.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
            candles.volume.tolist(),
            strict=True,
        )
    )
    stream = StreamingIndicatorSet()
    update = stream.update
    start = time.perf_counter()
    for bar in bars:
        update(*bar)
    mean_us = (time.perf_counter() - start) / len(bars) * 1e6
    single = []
    clock = time.perf_counter_ns
    for bar in bars[:50_000]:
        t0 = clock()
        update(*bar)
        single.append(clock() - t0)
    return mean_us, float(np.percentile(single, 99)) / 1e3


def main() -> None:
    candles, source = load_candles(N_BARS)
    n = len(candles)
    h, lo, c = candles.high, candles.low, candles.close
    t_talib = best_of(lambda: talib_eight(h, lo, c))
    t_ours = best_of(lambda: our_eight(h, lo, c))
    t_set = best_of(lambda: compute_indicator_features(candles))
    print(f"batch, {n:,} bars ({source}), best of 5:")
    rate = n / t_talib / 1e6
    print(f"  TA-Lib, 8 indicators (13 outputs)     {t_talib:7.3f} s  {rate:5.1f} M bars/s")
    print(
        f"  ours, same 8 (typed, input checks)    {t_ours:7.3f} s  {n / t_ours / 1e6:5.1f} M bars/s"
        f"  ratio {t_ours / t_talib:4.2f}x"
    )
    print(
        f"  ours, full feature set (24 columns)   {t_set:7.3f} s  {n / t_set / 1e6:5.1f} M bars/s"
        f"  ratio {t_set / t_talib:4.2f}x"
    )
    mean_us, p99_us = streaming_times(candles[: min(N_STREAM, n)])
    print(f"streaming, full set (24 columns), {min(N_STREAM, n):,} bars:")
    print(f"  mean update {mean_us:6.2f} µs   p99 single update {p99_us:6.2f} µs")


if __name__ == "__main__":
    main()
