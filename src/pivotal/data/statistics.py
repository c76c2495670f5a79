"""Descriptive statistics of a candle series (for summaries; columnar, no per-bar Python)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe

_MS_PER_YEAR = 365 * 86_400_000  # crypto trades every day of the year


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """Statistics over a whole series.

    ``total_return`` is last close / first open - 1. ``annual_volatility`` is the standard
    deviation (ddof=1) of close-to-close log returns between adjacent candles (pairs across a
    gap are skipped) scaled by sqrt(candles per 365-day year). ``max_drawdown`` is the largest
    peak-to-trough fall of the close, as a positive fraction.
    """

    candles: int
    first_open: float
    last_close: float
    low: float
    high: float
    total_return: float
    annual_volatility: float
    max_drawdown: float
    mean_volume: float
    zero_volume_candles: int


def series_stats(candles: Candles, timeframe: Timeframe) -> SeriesStats:
    if not len(candles):
        raise ValueError("cannot describe an empty series")
    close = candles.close
    adjacent = np.diff(candles.timestamp) == timeframe.ms
    log_returns = np.diff(np.log(close))[adjacent]
    vol = float(np.std(log_returns, ddof=1)) if len(log_returns) > 1 else math.nan
    running_peak = np.maximum.accumulate(close)
    return SeriesStats(
        candles=len(candles),
        first_open=float(candles.open[0]),
        last_close=float(close[-1]),
        low=float(candles.low.min()),
        high=float(candles.high.max()),
        total_return=float(close[-1] / candles.open[0] - 1.0),
        annual_volatility=vol * math.sqrt(_MS_PER_YEAR / timeframe.ms),
        max_drawdown=float(np.max(1.0 - close / running_peak)),
        mean_volume=float(candles.volume.mean()),
        zero_volume_candles=int(np.count_nonzero(candles.volume == 0)),
    )
