"""Plotly pieces every pivotal report draws with: UTC time axes, display resampling of long
series, and the fill markers of a backtest's trades.

Shared by the backtest report (:mod:`pivotal.backtest.report`) and the orchestrator report
(:mod:`pivotal.orchestrator.report`), so both draw times, buckets and fills the same way.

Times are UTC milliseconds everywhere; on a chart they are naive ISO strings
(:func:`time_text`), which Plotly draws as written (epoch numbers would be shifted into the
viewer's time zone). A long series is drawn per display bucket (:func:`display_bucket_ms`):
candles as OHLC of the bucket, a curve as the bucket's last (or deepest) value; fill markers
always keep their exact times and prices.
"""

from __future__ import annotations

import html
import math

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go

from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles

__all__ = [
    "LONG_COLOR",
    "MAX_DISPLAY_BARS",
    "SHORT_COLOR",
    "display_bucket_ms",
    "fill_marker_traces",
    "numeric_column",
    "resample_candles",
    "resample_series",
    "span_text",
    "time_text",
]

#: Above this many bars a chart is resampled for display (:func:`display_bucket_ms`).
MAX_DISPLAY_BARS = 20_000
LONG_COLOR = "#2ca02c"
SHORT_COLOR = "#d62728"
_NICE_SECONDS = (1, 5, 15, 30, 60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200)
_NICE_BUCKETS_MS = tuple(1000 * s for s in (*_NICE_SECONDS, 86400, 259200, 604800))  # 1s … 1w
_LONG_SIDES = frozenset({"long", "buy"})
_SHORT_SIDES = frozenset({"short", "sell"})


# --- time axes and display buckets ----------------------------------------------------------


def time_text(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """UTC ms as naive ISO strings for Plotly's date axes, as short as exactness allows.

    Plotly draws date strings as written, while it would shift epoch numbers into the
    viewer's time zone; minutes (``2025-01-01T00:00``) when every value is on a minute,
    else seconds, else milliseconds.
    """
    values = np.asarray(ms, dtype=np.int64)
    unit = "m" if not np.any(values % 60_000) else "s" if not np.any(values % 1_000) else "ms"
    return np.datetime_as_string(values.astype("datetime64[ms]"), unit=unit)


def display_bucket_ms(
    period_ms: float, n_bars: int, span_ms: int, max_bars: int = MAX_DISPLAY_BARS
) -> int | None:
    """The display bucket (ms) for ``n_bars`` bars spaced ``period_ms``; None to draw every bar.

    ``k * period`` with the smallest ``k`` that leaves at most ``max_bars``
    buckets over ``span_ms``, replaced by the smallest round timeframe (1s … 1w) that is a
    multiple of the bar spacing, also fits, and is at most four times as coarse.
    """
    if n_bars <= max_bars:
        return None
    step = max(int(period_ms), 1)
    minimal = (span_ms // (step * max_bars) + 1) * step
    for bucket in _NICE_BUCKETS_MS:
        fits = bucket >= minimal and span_ms // bucket + 1 <= max_bars
        if fits and bucket % step == 0 and bucket <= 4 * minimal:
            return bucket
    return minimal


def span_text(ms: float | None) -> str:
    """A duration in ms as the largest whole unit: ``5m``, ``1h``, ``3d``; ``?`` when unknown."""
    if ms is None or not math.isfinite(ms) or ms <= 0:
        return "?"
    for unit, name in (
        (604_800_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ):
        if ms % unit == 0:
            return f"{int(ms // unit)}{name}"
    return f"{ms:g}ms"


def _starts(
    ts: npt.NDArray[np.int64], bucket: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    keys = ts // bucket
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts] * bucket, starts


def resample_candles(candles: Candles, bucket: int | None) -> tuple[npt.NDArray[np.float64], ...]:
    """``(x, open, high, low, close)`` to draw: every candle when ``bucket`` is None, else one
    per bucket of ``bucket`` ms (first open, highest high, lowest low, last close), ``x`` the
    bucket's start as :func:`time_text`."""
    ts = candles.timestamp
    if bucket is None:
        return (
            time_text(ts),
            candles.open,
            candles.high,
            candles.low,
            candles.close,
        )
    x, starts = _starts(ts, bucket)
    ends = np.r_[starts[1:], len(ts)] - 1
    return (
        time_text(x),
        candles.open[starts],
        np.fmax.reduceat(candles.high, starts),
        np.fmin.reduceat(candles.low, starts),
        candles.close[ends],
    )


def resample_series(
    ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64], bucket: int | None, how: str
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float64]]:
    """``(x, y)`` to draw a curve of ``values`` at ``ts`` (UTC ms, ascending): every point when
    ``bucket`` is None, else one per bucket: its last value (``how="last"``) or its lowest
    (``how="min"``, e.g. a drawdown's deepest)."""
    if how not in ("last", "min"):
        raise ValueError(f"how must be 'last' or 'min', got {how!r}")
    if bucket is None:
        return time_text(ts), values
    x, starts = _starts(ts, bucket)
    if how == "min":
        return time_text(x), np.fmin.reduceat(values, starts)
    ends = np.r_[starts[1:], len(ts)] - 1
    return time_text(x), values[ends]


def numeric_column(table: pd.DataFrame, name: str) -> npt.NDArray[np.float64]:
    """Column ``name`` of ``table`` as float64 (unparseable values NaN); all NaN when absent."""
    if name not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)


# --- fill markers ---------------------------------------------------------------------------


def fill_marker_traces(result: BacktestResult, symbol: str, *, single: bool) -> list[go.Scatter]:
    """The entry and exit markers of ``symbol``'s trades (closed and still open): green ▲ long
    entries, red ▼ short entries and exits; hover shows time, price, size and the trade's
    PnL. ``single``: the run has one symbol, so trades without a ``symbol`` column are its."""
    closed = _for_symbol(result.trades, symbol, single)
    still_open = _for_symbol(result.open_trades, symbol, single)
    traces = []
    for label, table, is_open in (("", closed, False), ("open ", still_open, True)):
        if table.empty:
            continue
        side = table["side"].astype(str).str.lower()
        unknown = sorted(set(side) - _LONG_SIDES - _SHORT_SIDES)
        if unknown:
            raise ValueError(f"trade side must be long/short (or buy/sell), got {unknown}")
        for is_long in (True, False):
            part = table[side.isin(_LONG_SIDES if is_long else _SHORT_SIDES).to_numpy()]
            if part.empty:
                continue
            name = f"{label}{'long' if is_long else 'short'} entries"
            traces.append(
                _markers(
                    part,
                    "entry",
                    f"{symbol} {name}",
                    ("triangle-up", LONG_COLOR, "#fff")
                    if is_long
                    else ("triangle-down", SHORT_COLOR, "#000"),
                    symbol,
                )
            )
        if not is_open:
            traces.append(
                _markers(
                    table, "exit", f"{symbol} exits", ("triangle-down", SHORT_COLOR, "#fff"), symbol
                )
            )
    return traces


def _markers(
    table: pd.DataFrame, which: str, name: str, style: tuple[str, str, str], symbol: str
) -> go.Scatter:
    """Markers at the ``which`` ("entry"/"exit") fills; ``style`` = (shape, fill, outline)."""
    shape, color, outline = style
    x = time_text(table[f"{which}_time"].to_numpy(dtype=np.int64))
    y = table[f"{which}_price"].to_numpy(dtype=np.float64)
    custom = np.column_stack(
        [
            numeric_column(table, "size"),
            numeric_column(table, "pnl"),
            numeric_column(table, "return_pct"),
        ]
    )
    return go.Scatter(
        x=x,
        y=y,
        mode="markers",
        name=name,
        marker={
            "symbol": shape,
            "size": 10,
            "color": color,
            "line": {"width": 1, "color": outline},
        },
        customdata=custom,
        hovertemplate=(
            f"<b>{html.escape(name)}</b><br>%{{x|%Y-%m-%d %H:%M:%S}} UTC<br>price %{{y:,.8g}}"
            "<br>size %{customdata[0]:.8g}<br>trade pnl %{customdata[1]:,.2f}"
            f" (%{{customdata[2]:+.2f}} %)<extra>{html.escape(symbol)}</extra>"
        ),
    )


def _for_symbol(table: pd.DataFrame | None, symbol: str, single: bool) -> pd.DataFrame:
    if table is None or table.empty:
        return pd.DataFrame()
    if "symbol" not in table.columns:
        return table if single else pd.DataFrame()
    return table[table["symbol"].astype(str).to_numpy() == symbol]
