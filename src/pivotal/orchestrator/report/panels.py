"""The equity beside each benchmark with the drawdowns, and each model's rolling accuracy
with the fault and learning events along its edges."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pivotal.backtest.report_chart import resample_series, time_text
from pivotal.backtest.result import BacktestResult
from pivotal.orchestrator.report.common import (
    DASHES,
    DIV,
    EQUITY_COLORS,
    FAULT_KINDS,
    LEARNING_KINDS,
    bucket_ms,
    layout,
    missing,
    numbers,
    plot,
    texts,
    thin_positions,
)


def equity_figure(
    result: BacktestResult, benchmarks: Mapping[str, BacktestResult], max_points: int
) -> go.Figure:
    """The strategy's equity and each benchmark's (scaled to the same initial cash), and
    their drawdowns in percent."""
    lines: list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]] = [
        ("strategy", result.timestamps, np.asarray(result.equity, dtype=np.float64))
    ]
    for name, other in benchmarks.items():
        scale = float(result.initial_cash) / float(other.initial_cash)
        label = name if scale == 1.0 else f"{name} (scaled to the same initial cash)"
        lines.append((label, other.timestamps, np.asarray(other.equity, dtype=float) * scale))
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[2.0, 1.0],
        subplot_titles=["Equity [quote]", "Drawdown [%]"],
    )
    for i, (name, ts, equity) in enumerate(lines):
        bucket = bucket_ms(np.asarray(ts, dtype=np.int64), max_points)
        color = EQUITY_COLORS[i % len(EQUITY_COLORS)]
        style = {
            "width": 1.5 if i == 0 else 1,
            "color": color,
            "dash": "solid" if i == 0 else "dot",
        }
        x, y = resample_series(np.asarray(ts, dtype=np.int64), equity, bucket, "last")
        figure.add_trace(go.Scatter(x=x, y=y, name=name, line=style), row=1, col=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.fmax.accumulate(equity)
            drawdown = -(1 - equity / peak) * 100
        dx, dy = resample_series(np.asarray(ts, dtype=np.int64), drawdown, bucket, "min")
        fill = {"fill": "tozeroy"} if i == 0 else {}
        figure.add_trace(
            go.Scatter(x=dx, y=dy, name=f"{name} drawdown", line=style, showlegend=False, **fill),
            row=2,
            col=1,
        )
    figure.update_xaxes(type="date")
    figure.update_yaxes(title_text="%", row=2, col=1)
    figure.update_layout(**layout(600))
    return figure


def accuracy_section(
    accuracy: pd.DataFrame | None,
    events: Sequence[Mapping[str, Any]],
    colors: Mapping[str, str],
    max_points: int,
) -> str:
    if accuracy is None or accuracy.empty:
        return "<p>No accuracy was recorded: no prediction matured during the run.</p>"
    absent = [c for c in ("timestamp", "model", "accuracy") if c not in accuracy.columns]
    if absent:
        raise ValueError(f"accuracy lacks columns {absent}; give timestamp, model, accuracy")
    table = accuracy.sort_values("timestamp", kind="stable").reset_index(drop=True)
    values = numbers(table, "accuracy")
    if np.any((values < 0) | (values > 1)):
        raise ValueError("accuracy must be a fraction in [0, 1]; divide percentages by 100")
    symbol_key = pd.Series(texts(table, "symbol"), index=table.index)
    symbols = list(dict.fromkeys(symbol_key))
    figure = go.Figure()
    for (model, symbol), part in table.groupby(
        [table["model"].astype(str), symbol_key], sort=False
    ):
        ts = part["timestamp"].to_numpy(dtype=np.int64)
        at = thin_positions(ts, np.zeros(len(ts), dtype=bool), max_points)
        color = colors.get(model, "#333")
        dash = DASHES[symbols.index(symbol) % len(DASHES)]
        name = model if len(symbols) <= 1 else f"{model} · {symbol}"
        figure.add_trace(
            go.Scatter(
                x=time_text(ts[at]),
                y=numbers(part, "accuracy")[at],
                customdata=numbers(part, "n")[at],
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
    figure.update_layout(**layout(460))
    note = (
        '<p class="meta">Learning events are marked along the top edge, faults along the '
        "bottom edge (hover for the message).</p>"
    )
    return plot(figure, f"{DIV}accuracy") + (note if events else "")


def event_rows(events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The events as a frame: timestamp (nullable), kind, symbol, model, message."""
    records = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise TypeError(f"events[{i}] must be a mapping, got {type(event).__name__}")
        if not event.get("kind"):
            raise ValueError(f"events[{i}] has no 'kind'; every event needs one")
        stamp = event.get("timestamp")
        records.append(
            {
                "timestamp": None if missing(stamp) else int(stamp),
                "kind": str(event["kind"]),
                "symbol": "" if missing(event.get("symbol")) else str(event.get("symbol")),
                "model": "" if missing(event.get("model")) else str(event.get("model")),
                "message": "" if missing(event.get("message")) else str(event.get("message")),
            }
        )
    columns = ["timestamp", "kind", "symbol", "model", "message"]
    return pd.DataFrame.from_records(records, columns=columns).astype({"timestamp": "Int64"})


def category(kind: str) -> str:
    return "fault" if kind in FAULT_KINDS else "learning" if kind in LEARNING_KINDS else "other"


def _event_markers(events: Sequence[Mapping[str, Any]], max_points: int) -> list[go.Scatter]:
    rows = event_rows(events)
    rows = rows[rows["timestamp"].notna()]
    traces = []
    for kind, part in rows.groupby("kind", sort=True):
        ts = part["timestamp"].to_numpy(dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        at = order[thin_positions(ts[order], np.zeros(len(ts), dtype=bool), max_points)]
        kind_category = category(str(kind))
        y = -0.04 if kind_category == "fault" else 1.04
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
                marker={"symbol": "x" if kind_category == "fault" else "star", "size": 8},
                text=text,
                hovertemplate="%{x} UTC<br>%{text}<extra></extra>",
            )
        )
    return traces
