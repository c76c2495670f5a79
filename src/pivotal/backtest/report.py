"""A backtest as one self-contained HTML page (Plotly, opens offline).

The page, top to bottom:

1. a one-line verdict in plain words: return against buy-and-hold, the worst drawdown and
   the number of trades;
2. one interactive figure whose panels share the time axis: per symbol a candlestick chart
   with the fills (green ▲ long entries, red ▼ short entries and exits; hover shows time,
   price, size and the trade's PnL), then the equity curve beside buy-and-hold, then the
   drawdown in percent;
3. the metrics table (:func:`pivotal.backtest.metrics.format_metrics`);
4. the closed trades (the first and last 500 when there are more than 1,000, saying so),
   the gaps in the data (also shaded on the chart), the positions still open at the end, and
   the run's settings.

Buy-and-hold is ``benchmark_equity`` when given, else an equal-weight basket of the
symbols' closes on the run's timeline (each close taken as of the bar's open time, i.e.
the candle that opened then or the latest before it), scaled to the initial cash.

Long runs stay small: above :data:`MAX_DISPLAY_BARS` bars, the candles are resampled for
display to the smallest coarser "round" timeframe (5m, 15m, 1h, …) that brings them under
that limit, the equity and buy-and-hold curves keep each bucket's last value and the
drawdown each bucket's deepest value; the panel titles say so. Fill markers always keep
their exact times and prices. Times are drawn as UTC wall-clock strings. Trades of a
symbol without candles appear only in the tables. Plotly's JavaScript (~4.8 MB) is
embedded once, so the file is about 5–8 MB for a single symbol and any length of run.

The file is written atomically (temp file + rename): if building or serializing the page
fails, an existing report at ``path`` is left as it was.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from pivotal.backtest.export import json_safe
from pivotal.backtest.metrics import METRIC_LABELS, format_metrics, result_metrics
from pivotal.backtest.report_chart import (
    LONG_COLOR,
    MAX_DISPLAY_BARS,
    SHORT_COLOR,
    display_bucket_ms,
    fill_marker_traces,
    resample_candles,
    resample_series,
    span_text,
    time_text,
)
from pivotal.backtest.report_gaps import add_gap_bands, gap_section
from pivotal.backtest.report_page import TRADE_HEADERS, html_page, html_table, trade_text_columns
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.data.atomic import atomic_write_text

__all__ = [
    "CHART_DIV_ID",
    "LONG_COLOR",
    "MAX_DISPLAY_BARS",
    "SHORT_COLOR",
    "TABLE_EDGE_ROWS",
    "benchmark_curve",
    "build_figure",
    "display_bucket_ms",
    "report_metrics",
    "time_text",
    "verdict",
    "write_html",
]

TABLE_EDGE_ROWS = 500
CHART_DIV_ID = "pivotal-backtest-chart"


def write_html(
    result: BacktestResult,
    candles: Mapping[str, Candles],
    path: str | os.PathLike[str],
    *,
    title: str,
    benchmark_equity: npt.ArrayLike | None = None,
) -> Path:
    """Write the report of ``result`` to ``path`` (atomically) and return the path.

    ``candles`` maps each symbol to its candles (any span covering the run; only the run's
    time range is drawn). ``benchmark_equity`` (quote currency, one value per bar of
    ``result.timestamps``) replaces the buy-and-hold basket built from ``candles``.
    """
    bench = benchmark_curve(result, candles, benchmark_equity)
    metrics = report_metrics(result, bench)
    figure = build_figure(result, candles, benchmark_equity=bench)
    chart = pio.to_html(
        figure,
        include_plotlyjs=True,
        full_html=False,
        div_id=CHART_DIV_ID,
        config={"displaylogo": False, "responsive": True},
    )
    page = _page(result, metrics, chart, title)
    return atomic_write_text(path, page)


def benchmark_curve(
    result: BacktestResult,
    candles: Mapping[str, Candles],
    benchmark_equity: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64] | None:
    """Buy-and-hold equity on ``result.timestamps`` (see the module docstring), or None.

    NaN before the first bar with a price; None when there is neither a benchmark nor
    any candle.
    """
    n = len(result.timestamps)
    if benchmark_equity is not None:
        bench = np.asarray(benchmark_equity, dtype=np.float64)
        if bench.shape != (n,):
            raise ValueError(
                f"benchmark_equity must have one value per bar ({n}), got shape {bench.shape}"
            )
        return bench
    relative = []
    for symbol, series in candles.items():
        if not isinstance(series, Candles):
            raise TypeError(f"candles[{symbol!r}] must be a Candles, got {type(series).__name__}")
        if not len(series):
            continue
        at = np.searchsorted(series.timestamp, result.timestamps, side="right") - 1
        close = np.where(at >= 0, series.close[np.clip(at, 0, None)], np.nan)
        priced = np.flatnonzero(np.isfinite(close) & (close > 0))
        if len(priced):
            relative.append(close / close[priced[0]])
    if not relative:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bars before any symbol's first price
        basket = np.nanmean(np.vstack(relative), axis=0)
    return float(result.initial_cash) * basket


def report_metrics(
    result: BacktestResult, bench: npt.NDArray[np.float64] | None
) -> dict[str, float]:
    """The result's own metrics when complete, else computed with ``bench`` as buy-and-hold."""
    if all(key in result.metrics for key in METRIC_LABELS):
        return dict(result.metrics)
    if bench is None:
        return result_metrics(result)
    priced = np.flatnonzero(np.isfinite(bench) & (bench > 0))
    if not len(priced) or not np.isfinite(bench[-1]):
        return result_metrics(result)
    return result_metrics(result, closes=bench, first_trading_bar=int(priced[0]))


def build_figure(
    result: BacktestResult,
    candles: Mapping[str, Candles],
    *,
    benchmark_equity: npt.ArrayLike | None = None,
) -> go.Figure:
    """The report's figure: candles with fills per symbol, equity vs buy-and-hold, drawdown."""
    ts = np.asarray(result.timestamps, dtype=np.int64)
    if len(ts) == 0:
        raise ValueError("the result has no bars; there is nothing to plot")
    bench = benchmark_curve(result, candles, benchmark_equity)
    period = float(np.median(np.diff(ts[-100:]))) if len(ts) > 1 else 60_000.0
    shown = {s: c.between(int(ts[0]), int(ts[-1]) + 1) for s, c in candles.items()}
    longest = max([len(ts), *(len(c) for c in shown.values())])
    bucket = display_bucket_ms(period, longest, int(ts[-1] - ts[0]))

    symbols = list(shown)
    rows = len(symbols) + 2
    titles = [_candle_title(s, period, bucket, len(shown[s])) for s in symbols]
    suffix = f" (last value per {span_text(bucket)})" if bucket else ""
    titles += [f"Equity vs buy & hold [quote]{suffix}", _drawdown_title(bucket)]
    figure = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=min(0.06, 0.25 / rows),
        row_heights=[3.0] * len(symbols) + [2.0, 1.2],
        subplot_titles=titles,
    )
    for row, symbol in enumerate(symbols, start=1):
        series = shown[symbol]
        if len(series):
            x, o, h, lo, c = resample_candles(series, bucket)
            figure.add_trace(
                go.Candlestick(x=x, open=o, high=h, low=lo, close=c, name=symbol, showlegend=False),
                row=row,
                col=1,
            )
        for trace in fill_marker_traces(result, symbol, single=len(symbols) == 1):
            figure.add_trace(trace, row=row, col=1)

    eq_x, eq_y = resample_series(ts, np.asarray(result.equity, dtype=np.float64), bucket, "last")
    figure.add_trace(
        go.Scatter(x=eq_x, y=eq_y, name="equity", line={"color": "#1f77b4", "width": 1.5}),
        row=rows - 1,
        col=1,
    )
    if bench is not None:
        bx, by = resample_series(ts, bench, bucket, "last")
        figure.add_trace(
            go.Scatter(
                x=bx, y=by, name="buy & hold", line={"color": "#7f7f7f", "width": 1, "dash": "dot"}
            ),
            row=rows - 1,
            col=1,
        )
    equity = np.asarray(result.equity, dtype=np.float64)
    drawdown = -(1 - equity / np.maximum.accumulate(equity)) * 100
    dx, dy = resample_series(ts, drawdown, bucket, "min")
    figure.add_trace(
        go.Scatter(
            x=dx,
            y=dy,
            name="drawdown [%]",
            fill="tozeroy",
            line={"color": SHORT_COLOR, "width": 1},
            showlegend=False,
        ),
        row=rows,
        col=1,
    )
    add_gap_bands(figure, result.gaps, round(period))
    figure.update_xaxes(type="date", rangeslider_visible=False)
    figure.update_yaxes(title_text="%", row=rows, col=1)
    figure.update_layout(
        height=380 * len(symbols) + 460,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        hovermode="closest",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        template="plotly_white",
    )
    return figure


def verdict(metrics: Mapping[str, Any], *, n_open: int = 0) -> str:
    """One plain-language sentence on return vs buy-and-hold, drawdown and trade count."""
    ret = _finite(metrics.get("total_return_pct"))
    bench = _finite(metrics.get("buy_and_hold_return_pct"))
    depth = _finite(metrics.get("max_drawdown_pct"))
    n = int(metrics.get("n_trades", 0) or 0)
    parts = []
    if ret is None:
        parts.append("Return unknown.")
    elif bench is None:
        parts.append(f"Return {ret:+.2f} % (no buy-and-hold benchmark).")
    else:
        gap = ret - bench
        if gap > 0:
            how = f"beat buy-and-hold by {gap:.2f} points"
        elif gap < 0:
            how = f"trailed buy-and-hold by {-gap:.2f} points"
        else:
            how = "matched buy-and-hold"
        parts.append(f"Return {ret:+.2f} % against buy-and-hold {bench:+.2f} %: it {how}.")
    if depth is not None:
        parts.append(f"Worst drawdown {depth:.2f} %.")
    trades = f"{n:,} closed trade{'s' if n != 1 else ''}"
    parts.append(f"{trades}, {n_open:,} still open." if n_open else f"{trades}.")
    return " ".join(parts)


# --- titles ------------------------------------------------------------------------------


def _candle_title(symbol: str, period: float, bucket: int | None, n: int) -> str:
    if bucket is None:
        return f"{symbol} — {span_text(period)} candles"
    return (
        f"{symbol} — {n:,} {span_text(period)} candles resampled to {span_text(bucket)} "
        "for display; markers at exact fill times"
    )


def _drawdown_title(bucket: int | None) -> str:
    if bucket is None:
        return "Drawdown [%]"
    return f"Drawdown [%] (deepest per {span_text(bucket)})"


# --- the page ----------------------------------------------------------------------------


def _page(result: BacktestResult, metrics: Mapping[str, Any], chart: str, title: str) -> str:
    n_open = 0 if result.open_trades is None else len(result.open_trades)
    ts = result.timestamps
    first, last = (t.replace("T", " ") for t in time_text(ts[[0, -1]]))
    meta = (
        f"Engine {result.engine} · {len(ts):,} bars from {first} to {last} UTC · initial cash "
        f"{result.initial_cash:,.2f} · final equity {result.final_equity:,.2f} · fees paid "
        f"{result.fees_paid:,.2f}"
    )
    n = len(result.trades)
    if n > 2 * TABLE_EDGE_ROWS:
        note = (
            f"{n:,} closed trades; showing the first {TABLE_EDGE_ROWS} and the last "
            f"{TABLE_EDGE_ROWS}. The JSON export (pivotal.backtest.export) has them all."
        )
    else:
        note = f"{n:,} closed trades."
    settings = json.dumps(json_safe(result.settings), indent=1, sort_keys=True)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="verdict">{html.escape(verdict(metrics, n_open=n_open))}</p>',
        f'<p class="meta">{html.escape(meta)}</p>',
        chart,
        "<h2>Metrics</h2>",
        html_table(["Metric", "Value"], [list(r) for r in format_metrics(metrics)], text_cols=1),
        '<p class="meta">Definitions: the docstring of pivotal.backtest.metrics '
        "(backtesting.py's conventions).</p>",
        "<h2>Trades</h2>",
        f"<p>{html.escape(note)}</p>",
        _trade_table(result.trades, edge=TABLE_EDGE_ROWS),
        gap_section(result.gaps, result.trades),
        "<h2>Open positions at the end</h2>",
        _trade_table(result.open_trades, edge=TABLE_EDGE_ROWS) if n_open else "<p>None.</p>",
        "<h2>Settings</h2>",
        f"<pre>{html.escape(settings)}</pre>",
    ]
    return html_page(title, body)


def _trade_table(trades: pd.DataFrame, *, edge: int) -> str:
    n = len(trades)
    if n == 0:
        return "<p>None.</p>"
    positions = np.arange(n)
    if n > 2 * edge:
        positions = np.r_[positions[:edge], positions[-edge:]]
    part = trades.iloc[positions]
    cols = trade_text_columns(part)
    rows = [[str(p + 1), *(col[i] for col in cols)] for i, p in enumerate(positions)]
    if n > 2 * edge:
        gap = f"… {n - 2 * edge:,} trades not shown …"
        rows.insert(edge, [gap])
    return html_table(["#", *TRADE_HEADERS], rows, text_cols=5)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
