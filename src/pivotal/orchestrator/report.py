"""An orchestrated backtest as one self-contained HTML page (Plotly, opens offline).

The page, top to bottom:

1. the title, the data note, a summary (return against buy-and-hold, drawdown, trades, and
   the decisions counted by action and gate) and the run's span;
2. the metrics table, the strategy beside each benchmark (``format_metrics`` rows);
3. per symbol, one figure with a shared time axis: the candles with the decisions (green ▲
   BUY, red ▼ SELL at the last close known at the decision time; hover shows the
   confidence, the combined probabilities, the gate, the reason and every model's vote,
   gate weight and share), the fills of the backtest (hidden, toggled from the legend),
   then the per-model contribution shares stacked (``share_<m>`` = gate weight × the
   model's probability of the decided action; they add up to the decision's confidence),
   then the combined ``p_buy`` / ``p_sell`` with the buy and sell thresholds when known;
4. the equity beside each benchmark (buy-and-hold), and the drawdowns in percent;
5. each model's rolling accuracy over time, with the fault and learning events as markers
   along the top (learning) and bottom (faults) edges;
6. the events counted by kind, then the first :data:`MAX_TABLE_ROWS`; the first
   :data:`MAX_TABLE_ROWS` closed trades, the positions open at the end, the settings.

A part with nothing to show (no BUY/SELL decision, no accuracy, no events) reads as one
plain sentence instead of an empty chart.

Long series are thinned for the browser to about ``max_points`` points per trace: candles
are resampled to a round bucket (5m, 1h, …; the panel title says so), equity keeps each
bucket's last value and drawdown its deepest, decision-derived lines keep each bucket's
last row **plus every BUY/SELL row**; decision markers are never thinned. Times are bar or
decision times in UTC milliseconds, drawn as UTC wall-clock strings. Plotly's JavaScript
(from the installed wheel, ~4.8 MB) is embedded once in the page head, so the file works
without a network. The file is written atomically; a missing parent folder is created.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from pivotal.backtest.export import json_safe
from pivotal.backtest.metrics import format_metrics, result_metrics
from pivotal.backtest.report import (
    _NICE_BUCKETS_MS,
    _STYLE,
    LONG_COLOR,
    SHORT_COLOR,
    _marker_traces,
    _resample,
    _resample_candles,
    _span_text,
    _table,
    _trade_table,
    benchmark_curve,
    report_metrics,
    time_text,
    verdict,
)
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.data.atomic import atomic_write_text

__all__ = [
    "FAULT_KINDS",
    "LEARNING_KINDS",
    "MAX_TABLE_ROWS",
    "expert_names",
    "thin_positions",
    "write_orchestrator_report",
]

MAX_TABLE_ROWS = 200
FAULT_KINDS = frozenset({"skipped", "failed", "timeout", "isolated", "fallback"})
LEARNING_KINDS = frozenset(
    {"promoted", "rolled_back", "degradation", "retrained", "checkpoint", "gate_promoted"}
)
_ACTIONS = ("BUY", "SELL", "HOLD")
_PREFIXES = ("w_", "share_", "vote_")
_MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_EQUITY_COLORS = ("#1f77b4", "#7f7f7f", "#8c564b", "#e377c2", "#bcbd22")  # strategy first
_DASHES = ("solid", "dot", "dash", "dashdot", "longdash")
_DIV = "pivotal-orchestrator-"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_MARGIN = {"l": 60, "r": 20, "t": 70, "b": 40}


def _layout(height: int) -> dict[str, Any]:
    """Shared layout; the legend sits 30 px above the plot area, clear of the panel titles."""
    above = 1 + 30 / max(height - _MARGIN["t"] - _MARGIN["b"], 100)
    legend = {"orientation": "h", "y": above, "yanchor": "bottom", "x": 0}
    return {
        "height": height,
        "margin": _MARGIN,
        "hovermode": "closest",
        "legend": legend,
        "template": "plotly_white",
    }


def write_orchestrator_report(
    path: str | os.PathLike[str],
    result: BacktestResult,
    candles: Mapping[str, Candles],
    decisions: pd.DataFrame,
    accuracy: pd.DataFrame | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    benchmark: Mapping[str, BacktestResult] | None = None,
    title: str = "pivotal orchestrated backtest",
    data_note: str = "",
    max_points: int = 5_000,
    *,
    thresholds: tuple[float, float] | None = None,
) -> Path:
    """Write the report (module docstring) to ``path`` atomically and return the path.

    ``result``: the orchestrated run (metrics computed here when missing). ``candles``: symbol
    → base-timeframe candles. ``decisions``: one row per decision with ``timestamp`` (UTC
    ms), ``symbol``, ``action`` (BUY/SELL/HOLD) and optionally ``confidence``, ``p_buy``,
    ``p_sell``, ``p_hold``, ``gate``, ``reason`` and per expert ``m``: ``w_<m>`` (gate weight),
    ``share_<m>``, ``vote_<m>``. ``accuracy``: ``timestamp``, ``model``, ``accuracy`` (a
    fraction in [0, 1]) and optionally ``symbol``, ``n``. ``events``: mappings with ``kind``
    and optionally ``timestamp``, ``symbol``, ``model``, ``message``. ``benchmark``: name →
    result (equity scaled to ``result``'s initial cash); without it, the equal-weight
    buy-and-hold basket of ``candles``. ``thresholds``: (buy, sell) drawn on the probability
    panel; default ``result.settings["gate"]``'s ``buy_threshold``/``sell_threshold`` if any.
    """
    if int(max_points) < 10:
        raise ValueError(f"max_points must be at least 10, got {max_points}")
    if len(result.timestamps) == 0:
        raise ValueError("the result has no bars; run a backtest over at least one bar")
    for symbol, series in candles.items():
        if not isinstance(series, Candles):
            raise TypeError(f"candles[{symbol!r}] must be a Candles, got {type(series).__name__}")
    table = _decision_table(decisions)
    events = tuple(events)
    models = expert_names(table)
    benchmarks = dict(benchmark or {})
    basket = benchmark_curve(result, candles)
    metrics = report_metrics(result, basket)
    limits = thresholds if thresholds is not None else _settings_thresholds(result.settings)
    named = [
        *models,
        *([] if accuracy is None or "model" not in accuracy else map(str, accuracy["model"])),
    ]
    colors = {m: _MODEL_COLORS[i % len(_MODEL_COLORS)] for i, m in enumerate(dict.fromkeys(named))}

    symbols = list(candles)
    for extra in (*table["symbol"].unique(), *_trade_symbols(result)):
        if extra not in symbols:
            symbols.append(str(extra))
    charts = [
        _symbol_section(
            s, candles.get(s), table, result, colors, limits, int(max_points), f"{_DIV}symbol-{i}"
        )
        for i, s in enumerate(symbols)
    ]
    parts = [
        _header(title, data_note, result, metrics, table, models),
        "<h2>Metrics</h2>",
        _metrics_table(metrics, benchmarks),
        *charts,
        "<h2>Equity</h2>",
        _plot(_equity_figure(result, benchmarks, basket, int(max_points)), f"{_DIV}equity"),
        "<h2>Model accuracy over time</h2>",
        _accuracy_section(accuracy, events, colors, int(max_points)),
        "<h2>Fault and learning events</h2>",
        _events_section(events),
        *_trade_sections(result),
    ]
    return atomic_write_text(path, _page(title, parts))


def expert_names(decisions: pd.DataFrame) -> list[str]:
    """The expert names of a decision frame (``w_<m>``/``share_<m>``/``vote_<m>`` columns),
    in order of first appearance."""
    names: list[str] = []
    for column in map(str, decisions.columns):
        for prefix in _PREFIXES:
            if column.startswith(prefix) and len(column) > len(prefix):
                name = column[len(prefix) :]
                if name not in names:
                    names.append(name)
    return names


def thin_positions(
    timestamps: npt.ArrayLike, keep: npt.ArrayLike, max_points: int
) -> npt.NDArray[np.intp]:
    """Row positions to draw of a time-sorted series: all when at most ``max_points``, else
    the last row of each of about ``max_points`` equal time buckets plus every row where
    ``keep`` is true (BUY/SELL decisions), in time order."""
    ts = np.asarray(timestamps, dtype=np.int64)
    flags = np.asarray(keep, dtype=bool)
    if flags.shape != ts.shape:
        raise ValueError(f"keep has shape {flags.shape}, timestamps {ts.shape}; give one per row")
    if len(ts) <= max_points:
        return np.arange(len(ts))
    if np.any(np.diff(ts) < 0):
        raise ValueError("timestamps must be sorted ascending to be thinned")
    bucket = max(-(-int(ts[-1] - ts[0] + 1) // int(max_points)), 1)
    keys = (ts - ts[0]) // bucket
    last = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True])
    return np.union1d(last, np.flatnonzero(flags))


# --- inputs ------------------------------------------------------------------------------


def _decision_table(decisions: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(decisions, pd.DataFrame):
        raise TypeError(f"decisions must be a pandas DataFrame, got {type(decisions).__name__}")
    missing = [c for c in ("timestamp", "symbol", "action") if c not in decisions.columns]
    if missing and len(decisions):
        raise ValueError(f"decisions lacks columns {missing}; give timestamp, symbol and action")
    table = decisions.reset_index(drop=True).copy()
    for column in missing:
        table[column] = pd.Series(dtype=object)
    if table["timestamp"].isna().any():
        raise ValueError("decisions has missing timestamps; every decision needs its UTC ms")
    table["timestamp"] = table["timestamp"].to_numpy(dtype=np.int64)
    table["symbol"] = table["symbol"].astype(str)
    table["action"] = [str(getattr(a, "value", a)).upper() for a in table["action"]]
    unknown = sorted(set(table["action"]) - set(_ACTIONS))
    if unknown:
        raise ValueError(f"decision actions must be BUY, SELL or HOLD, got {unknown}")
    return table.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _settings_thresholds(settings: Mapping[str, Any]) -> tuple[float, float] | None:
    gate = settings.get("gate")
    source = gate if isinstance(gate, Mapping) else settings
    buy, sell = source.get("buy_threshold"), source.get("sell_threshold")
    if buy is None or sell is None:
        return None
    return float(buy), float(sell)


def _trade_symbols(result: BacktestResult) -> list[str]:
    found: list[str] = []
    for table in (result.trades, result.open_trades):
        if table is not None and "symbol" in table.columns:
            found += [str(s) for s in table["symbol"].unique() if str(s) not in found]
    return found


def _numbers(table: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    if column not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)


def _texts(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table.columns:
        return [""] * len(table)
    return ["" if _missing(v) else str(getattr(v, "value", v)) for v in table[column]]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- per symbol --------------------------------------------------------------------------


def _symbol_section(
    symbol: str,
    series: Candles | None,
    table: pd.DataFrame,
    result: BacktestResult,
    colors: Mapping[str, str],
    limits: tuple[float, float] | None,
    max_points: int,
    div_id: str,
) -> str:
    """The symbol's heading, decision counts and figure: price with decisions, contribution
    shares, combined probabilities (panels without data left out)."""
    models = list(colors)
    rows = table[table["symbol"].to_numpy() == symbol].reset_index(drop=True)
    counts = {a: int((rows["action"] == a).sum()) for a in _ACTIONS}
    heading = f"<h2>{html.escape(symbol)}</h2>"
    summary = (
        f"{len(rows):,} decisions: {counts['BUY']:,} BUY, {counts['SELL']:,} SELL, "
        f"{counts['HOLD']:,} HOLD."
    )
    notes = [summary]
    if counts["BUY"] + counts["SELL"] == 0:
        notes.append("No BUY or SELL decision for this symbol: there are no markers to draw.")
    share_cols = {m: colors[m] for m in models if f"share_{m}" in rows.columns}
    with_probs = len(rows) > 0 and ("p_buy" in rows.columns or "p_sell" in rows.columns)
    panels = ["price"] * (series is not None) + ["shares"] * bool(len(rows) and share_cols)
    panels += ["probs"] * with_probs
    if series is None:
        notes.append("No candles for this symbol: decisions are listed but not drawn on prices.")
    if not panels:
        return heading + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    ts = result.timestamps
    lo = int(min(ts[0], rows["timestamp"].min() if len(rows) else ts[0]))
    hi = int(max(ts[-1], rows["timestamp"].max() if len(rows) else ts[-1])) + 1
    titles, heights = [], []
    figure_rows = {name: i for i, name in enumerate(panels, start=1)}
    shown = series.between(lo, hi) if series is not None else None
    if shown is not None:
        bucket = _bucket_ms(shown.timestamp, max_points)
        titles.append(_candle_title(symbol, shown, bucket))
        heights.append(3.0)
    if "shares" in figure_rows:
        titles.append("Model contributions (gate weight × probability of the decided action)")
        heights.append(1.6)
    if with_probs:
        titles.append("Combined probabilities" + (" and thresholds" if limits else ""))
        heights.append(1.4)
    figure = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.07,
        row_heights=heights,
        subplot_titles=titles,
    )
    if shown is not None and series is not None:
        if len(shown):
            x, o, h, low, c = _resample_candles(shown, bucket)
            candle = go.Candlestick(x=x, open=o, high=h, low=low, close=c, name=symbol)
            figure.add_trace(candle.update(showlegend=False), row=1, col=1)
        for trace in _marker_traces(result, symbol, single=len(_trade_symbols(result)) <= 1):
            figure.add_trace(trace.update(visible="legendonly"), row=1, col=1)
        for trace in _decision_markers(
            symbol, rows, series, [m for m in models if _voted(rows, m)]
        ):
            figure.add_trace(trace, row=1, col=1)
    # the lines: each time bucket's last decision plus every BUY/SELL
    at = thin_positions(
        rows["timestamp"].to_numpy(), rows["action"].to_numpy() != "HOLD", max_points
    )
    x = time_text(rows["timestamp"].to_numpy()[at]) if len(rows) else np.array([], dtype=str)
    if "shares" in figure_rows:
        for model, color in share_cols.items():
            share = np.nan_to_num(_numbers(rows, f"share_{model}")[at], nan=0.0)
            area = go.Scatter(x=x, y=share, name=model, stackgroup="shares", mode="lines")
            area.update(line={"width": 0.5, "color": color}, legendgroup=model)
            area.update(hovertemplate=f"{html.escape(model)} share %{{y:.3f}}<extra></extra>")
            figure.add_trace(area, row=figure_rows["shares"], col=1)
    if with_probs:
        row = figure_rows["probs"]
        for column, color in (("p_buy", LONG_COLOR), ("p_sell", SHORT_COLOR), ("p_hold", "#999")):
            if column in rows.columns:
                line = go.Scatter(x=x, y=_numbers(rows, column)[at], name=column, mode="lines")
                line.update(line={"width": 1, "color": color})
                line.update(visible="legendonly" if column == "p_hold" else True)
                figure.add_trace(line, row=row, col=1)
        if limits is not None:
            buy, sell = limits
            figure.add_hline(y=buy, line={"dash": "dash", "color": LONG_COLOR}, row=row, col=1)
            figure.add_hline(y=sell, line={"dash": "dot", "color": SHORT_COLOR}, row=row, col=1)
        figure.update_yaxes(range=[0, 1.02], row=row, col=1)
    figure.update_xaxes(type="date", rangeslider_visible=False)
    figure.update_layout(**_layout(int(sum(heights) * 150 + 150)))
    return heading + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + _plot(figure, div_id)


def _voted(rows: pd.DataFrame, model: str) -> bool:
    return any(f"{prefix}{model}" in rows.columns for prefix in _PREFIXES)


def _decision_markers(
    symbol: str, rows: pd.DataFrame, series: Candles, models: Sequence[str]
) -> list[go.Scatter]:
    """BUY/SELL markers at the last close known at each decision time (never thinned)."""
    traces = []
    for action, shape, color in (
        ("BUY", "triangle-up", LONG_COLOR),
        ("SELL", "triangle-down", SHORT_COLOR),
    ):
        part = rows[rows["action"].to_numpy() == action]
        if part.empty:
            continue
        ts = part["timestamp"].to_numpy(dtype=np.int64)
        at = np.searchsorted(series.timestamp, ts, side="left") - 1
        price = np.where(at >= 0, series.close[np.clip(at, 0, None)], np.nan)
        traces.append(
            go.Scatter(
                x=time_text(ts),
                y=price,
                mode="markers",
                name=f"{symbol} {action}",
                marker={"symbol": shape, "size": 11, "color": color, "line": {"width": 1}},
                text=_hover_texts(action, symbol, part, price, models),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    return traces


def _hover_texts(
    action: str,
    symbol: str,
    part: pd.DataFrame,
    price: npt.NDArray[np.float64],
    models: Sequence[str],
) -> list[str]:
    when = [t.replace("T", " ") for t in time_text(part["timestamp"].to_numpy())]
    conf, p_buy, p_sell = (_numbers(part, c) for c in ("confidence", "p_buy", "p_sell"))
    gates, reasons = _texts(part, "gate"), _texts(part, "reason")
    votes = {m: _texts(part, f"vote_{m}") for m in models}
    weights = {m: _numbers(part, f"w_{m}") for m in models}
    shares = {m: _numbers(part, f"share_{m}") for m in models}
    out = []
    for i in range(len(part)):
        lines = [
            f"<b>{action}</b> {html.escape(symbol)} · {when[i]} UTC · price {price[i]:,.8g}",
            f"confidence {conf[i]:.3f} (p_buy {p_buy[i]:.3f}, p_sell {p_sell[i]:.3f})",
        ]
        if gates[i]:
            lines.append(f"gate {html.escape(gates[i])}")
        if reasons[i]:
            lines.append(f"reason: {html.escape(reasons[i][:200])}")
        for m in models:
            vote = votes[m][i] or ("no vote" if math.isnan(weights[m][i]) else "?")
            lines.append(
                f"{html.escape(m)}: {html.escape(vote)} "
                f"(weight {weights[m][i]:.3f}, share {shares[m][i]:.3f})"
            )
        out.append("<br>".join(lines))
    return out


def _candle_title(symbol: str, shown: Candles, bucket: int | None) -> str:
    ts = shown.timestamp
    period = _span_text(float(np.median(np.diff(ts[-100:])))) if len(ts) > 1 else "?"
    if bucket is None:
        return f"{symbol} — {period} candles, decisions ▲ BUY ▼ SELL"
    return (
        f"{symbol} — {len(ts):,} {period} candles resampled to {_span_text(bucket)} for "
        "display; decisions at exact times"
    )


def _bucket_ms(ts: npt.NDArray[np.int64], max_points: int) -> int | None:
    """None when ``ts`` has at most ``max_points`` bars, else the smallest round bucket (a
    multiple of the bar spacing, at most four times the minimal one) leaving at most
    ``max_points`` buckets."""
    if len(ts) <= max_points:
        return None
    span = int(ts[-1] - ts[0])
    step = max(int(np.median(np.diff(ts[-100:]))), 1)
    minimal = (span // (step * max_points) + 1) * step
    for bucket in _NICE_BUCKETS_MS:
        fits = bucket >= minimal and span // bucket + 1 <= max_points
        if fits and bucket % step == 0 and bucket <= 4 * minimal:
            return bucket
    return minimal


# --- equity, accuracy --------------------------------------------------------------------


def _equity_figure(
    result: BacktestResult,
    benchmarks: Mapping[str, BacktestResult],
    basket: npt.NDArray[np.float64] | None,
    max_points: int,
) -> go.Figure:
    lines: list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]] = [
        ("strategy", result.timestamps, np.asarray(result.equity, dtype=np.float64))
    ]
    for name, other in benchmarks.items():
        if not isinstance(other, BacktestResult) or not len(other.timestamps):
            raise TypeError(f"benchmark[{name!r}] must be a BacktestResult with bars")
        scale = float(result.initial_cash) / float(other.initial_cash)
        label = name if scale == 1.0 else f"{name} (scaled to the same initial cash)"
        lines.append((label, other.timestamps, np.asarray(other.equity, dtype=float) * scale))
    if not benchmarks and basket is not None:
        lines.append(("buy and hold (equal-weight basket)", result.timestamps, basket))
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[2.0, 1.0],
        subplot_titles=["Equity [quote]", "Drawdown [%]"],
    )
    for i, (name, ts, equity) in enumerate(lines):
        bucket = _bucket_ms(np.asarray(ts, dtype=np.int64), max_points)
        color = _EQUITY_COLORS[i % len(_EQUITY_COLORS)]
        style = {
            "width": 1.5 if i == 0 else 1,
            "color": color,
            "dash": "solid" if i == 0 else "dot",
        }
        x, y = _resample(np.asarray(ts, dtype=np.int64), equity, bucket, "last")
        figure.add_trace(go.Scatter(x=x, y=y, name=name, line=style), row=1, col=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.fmax.accumulate(equity)
            drawdown = -(1 - equity / peak) * 100
        dx, dy = _resample(np.asarray(ts, dtype=np.int64), drawdown, bucket, "min")
        fill = {"fill": "tozeroy"} if i == 0 else {}
        figure.add_trace(
            go.Scatter(x=dx, y=dy, name=f"{name} drawdown", line=style, showlegend=False, **fill),
            row=2,
            col=1,
        )
    figure.update_xaxes(type="date")
    figure.update_yaxes(title_text="%", row=2, col=1)
    figure.update_layout(**_layout(600))
    return figure


def _accuracy_section(
    accuracy: pd.DataFrame | None,
    events: Sequence[Mapping[str, Any]],
    colors: Mapping[str, str],
    max_points: int,
) -> str:
    if accuracy is None or accuracy.empty:
        return "<p>No accuracy was recorded: no prediction matured during the run.</p>"
    missing = [c for c in ("timestamp", "model", "accuracy") if c not in accuracy.columns]
    if missing:
        raise ValueError(f"accuracy lacks columns {missing}; give timestamp, model, accuracy")
    table = accuracy.sort_values("timestamp", kind="stable").reset_index(drop=True)
    values = _numbers(table, "accuracy")
    if np.any((values < 0) | (values > 1)):
        raise ValueError("accuracy must be a fraction in [0, 1]; divide percentages by 100")
    symbol_key = pd.Series(_texts(table, "symbol"), index=table.index)
    symbols = list(dict.fromkeys(symbol_key))
    figure = go.Figure()
    for (model, symbol), part in table.groupby(
        [table["model"].astype(str), symbol_key], sort=False
    ):
        ts = part["timestamp"].to_numpy(dtype=np.int64)
        at = thin_positions(ts, np.zeros(len(ts), dtype=bool), max_points)
        color = colors.get(model, "#333")
        dash = _DASHES[symbols.index(symbol) % len(_DASHES)]
        name = model if len(symbols) <= 1 else f"{model} · {symbol}"
        figure.add_trace(
            go.Scatter(
                x=time_text(ts[at]),
                y=_numbers(part, "accuracy")[at],
                customdata=_numbers(part, "n")[at],
                name=name,
                mode="lines",
                line={"color": color, "dash": dash, "width": 1.5},
                hovertemplate=f"{html.escape(name)}<br>%{{x}} UTC<br>accuracy %{{y:.1%}}"
                " over %{customdata:.0f} predictions<extra></extra>",
            )
        )
    for trace in _event_markers(events, max_points):
        figure.add_trace(trace)
    figure.update_xaxes(type="date")
    figure.update_yaxes(range=[-0.08, 1.08], tickformat=".0%", title_text="rolling accuracy")
    figure.update_layout(**_layout(460))
    note = (
        '<p class="meta">Learning events are marked along the top edge, faults along the '
        "bottom edge (hover for the message).</p>"
    )
    return _plot(figure, f"{_DIV}accuracy") + (note if events else "")


def _event_markers(events: Sequence[Mapping[str, Any]], max_points: int) -> list[go.Scatter]:
    rows = _event_rows(events)
    rows = rows[rows["timestamp"].notna()]
    traces = []
    for kind, part in rows.groupby("kind", sort=True):
        ts = part["timestamp"].to_numpy(dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        at = order[thin_positions(ts[order], np.zeros(len(ts), dtype=bool), max_points)]
        category = _category(str(kind))
        y = -0.04 if category == "fault" else 1.04
        text = [
            html.escape(f"{kind} {s} {m}: {msg}"[:300])
            for s, m, msg in part[["symbol", "model", "message"]].to_numpy()[at]
        ]
        traces.append(
            go.Scatter(
                x=time_text(ts[at]),
                y=np.full(len(at), y),
                mode="markers",
                name=str(kind),
                marker={"symbol": "x" if category == "fault" else "star", "size": 8},
                text=text,
                hovertemplate="%{x} UTC<br>%{text}<extra></extra>",
            )
        )
    return traces


# --- tables and the page -----------------------------------------------------------------


def _event_rows(events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    records = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise TypeError(f"events[{i}] must be a mapping, got {type(event).__name__}")
        if not event.get("kind"):
            raise ValueError(f"events[{i}] has no 'kind'; every event needs one")
        stamp = event.get("timestamp")
        records.append(
            {
                "timestamp": None if _missing(stamp) else int(stamp),
                "kind": str(event["kind"]),
                "symbol": "" if _missing(event.get("symbol")) else str(event.get("symbol")),
                "model": "" if _missing(event.get("model")) else str(event.get("model")),
                "message": "" if _missing(event.get("message")) else str(event.get("message")),
            }
        )
    columns = ["timestamp", "kind", "symbol", "model", "message"]
    return pd.DataFrame.from_records(records, columns=columns).astype({"timestamp": "Int64"})


def _category(kind: str) -> str:
    return "fault" if kind in FAULT_KINDS else "learning" if kind in LEARNING_KINDS else "other"


def _events_section(events: Sequence[Mapping[str, Any]]) -> str:
    rows = _event_rows(events)
    if rows.empty:
        return "<p>No fault or learning event was recorded.</p>"
    counts = []
    for kind, part in rows.groupby("kind", sort=True):
        known = part["timestamp"].dropna().to_numpy(dtype=np.int64)
        span = [_time(known.min()), _time(known.max())] if len(known) else ["", ""]
        counts.append([str(kind), _category(str(kind)), f"{len(part):,}", *span])
    rows = rows.sort_values("timestamp", kind="stable", na_position="last")
    shown = rows.head(MAX_TABLE_ROWS)
    listed = [
        [_time(t) if not pd.isna(t) else "", k, s, m, msg]
        for t, k, s, m, msg in shown.itertuples(index=False)
    ]
    note = f"{len(rows):,} events" + (
        f"; the first {MAX_TABLE_ROWS} in time order:" if len(rows) > MAX_TABLE_ROWS else ":"
    )
    return "".join(
        [
            _table(["Kind", "Category", "Count", "First (UTC)", "Last (UTC)"], counts, text_cols=2),
            f"<p>{html.escape(note)}</p>",
            _table(["Time (UTC)", "Kind", "Symbol", "Model", "Message"], listed, text_cols=5),
        ]
    )


def _trade_sections(result: BacktestResult) -> list[str]:
    n = len(result.trades)
    note = f"{n:,} closed trades" + (
        f"; the first {MAX_TABLE_ROWS}." if n > MAX_TABLE_ROWS else "."
    )
    n_open = 0 if result.open_trades is None else len(result.open_trades)
    settings = json.dumps(json_safe(result.settings), indent=1, sort_keys=True)
    return [
        "<h2>Trades</h2>",
        f"<p>{html.escape(note)}</p>",
        _trade_table(result.trades.iloc[:MAX_TABLE_ROWS], edge=MAX_TABLE_ROWS),
        "<h2>Open positions at the end</h2>",
        _trade_table(result.open_trades, edge=MAX_TABLE_ROWS) if n_open else "<p>None.</p>",
        f"<details><summary>Settings</summary><pre>{html.escape(settings)}</pre></details>",
    ]


def _metrics_table(metrics: Mapping[str, Any], benchmarks: Mapping[str, BacktestResult]) -> str:
    columns = {"strategy": dict(format_metrics(metrics))}
    for name, other in benchmarks.items():
        if not isinstance(other, BacktestResult):
            raise TypeError(f"benchmark[{name!r}] must be a BacktestResult")
        own = other.metrics if other.metrics else result_metrics(other)
        columns[name] = dict(format_metrics(own))
    labels = list(dict.fromkeys(label for values in columns.values() for label in values))
    rows = [[label, *(values.get(label, "") for values in columns.values())] for label in labels]
    return _table(["Metric", *columns], rows, text_cols=1)


def _header(
    title: str,
    data_note: str,
    result: BacktestResult,
    metrics: Mapping[str, Any],
    table: pd.DataFrame,
    models: Sequence[str],
) -> str:
    n_open = 0 if result.open_trades is None else len(result.open_trades)
    counts = {a: int((table["action"] == a).sum()) for a in _ACTIONS}
    gates = ", ".join(
        f"{g} ×{n:,}" for g, n in pd.Series(_texts(table, "gate")).value_counts().items() if g
    )
    decided = (
        f"{len(table):,} decisions by {len(models)} model(s) ({', '.join(models) or 'none'}): "
        f"{counts['BUY']:,} BUY, {counts['SELL']:,} SELL, {counts['HOLD']:,} HOLD"
        + (f"; gate {gates}." if gates else ".")
    )
    first, last = (t.replace("T", " ") for t in time_text(result.timestamps[[0, -1]]))
    meta = (
        f"{len(result.timestamps):,} bars from {first} to {last} UTC · initial cash "
        f"{result.initial_cash:,.2f} · final equity {result.final_equity:,.2f} · fees paid "
        f"{result.fees_paid:,.2f}"
    )
    note = f'<p class="meta">Data: {html.escape(data_note)}</p>' if data_note else ""
    return (
        f"<h1>{html.escape(title)}</h1>{note}"
        f'<p class="verdict">{html.escape(verdict(metrics, n_open=n_open))}<br>'
        f"{html.escape(decided)}</p>"
        f'<p class="meta">{html.escape(meta)}</p>'
    )


def _plot(figure: go.Figure, div_id: str) -> str:
    """The figure's div; fixed ids keep the page byte-identical for the same inputs."""
    return pio.to_html(
        figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG
    )


def _time(ms: Any) -> str:
    return str(time_text(np.asarray([int(ms)], dtype=np.int64))[0]).replace("T", " ")


def _page(title: str, parts: Sequence[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head>",
            "<body>",
            *parts,
            "</body>",
            "</html>",
            "",
        ]
    )
