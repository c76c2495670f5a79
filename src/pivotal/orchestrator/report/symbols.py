"""One figure per symbol: the candles with the fills and the decisions, the models'
contribution shares, and the combined probabilities.

On the price panel the **fills** (entries and exits of the backtest) are shown by default.
The decisions are drawn twice: the *changes* (a BUY or SELL whose action differs from the
symbol's previous BUY/SELL; open triangles, shown) and every BUY/SELL decision (hidden,
toggled from the legend), so that thousands of repeated SELLs while flat do not cover the
chart. Decision markers sit at the last close known at the decision time and are never
thinned; hover shows the confidence, the combined probabilities, the gate, the reason and
every model's vote, gate weight and share.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pivotal.backtest.report_chart import (
    LONG_COLOR,
    SHORT_COLOR,
    fill_marker_traces,
    resample_candles,
    span_text,
    time_text,
)
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.orchestrator.report.common import (
    ACTIONS,
    PREFIXES,
    bucket_ms,
    layout,
    numbers,
    plot,
    texts,
    thin_positions,
    trade_symbols,
)


def decision_changes(actions: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """True at each BUY/SELL whose action differs from the previous BUY/SELL (HOLDs skipped);
    ``actions`` of one symbol in time order."""
    values = np.asarray(actions, dtype=object)
    out = np.zeros(len(values), dtype=bool)
    previous = None
    for i, action in enumerate(values):
        if action == "HOLD":
            continue
        out[i] = action != previous
        previous = action
    return out


def symbol_section(
    symbol: str,
    series: Candles | None,
    table: pd.DataFrame,
    result: BacktestResult,
    colors: Mapping[str, str],
    limits: tuple[float, float] | None,
    max_points: int,
    div_id: str,
) -> str:
    """The symbol's heading, decision counts and figure (panels without data left out)."""
    models = list(colors)
    rows = table[table["symbol"].to_numpy() == symbol].reset_index(drop=True)
    counts = {a: int((rows["action"] == a).sum()) for a in ACTIONS}
    changes = int(decision_changes(rows["action"].to_numpy()).sum())
    heading = f"<h2>{html.escape(symbol)}</h2>"
    notes = [
        f"{len(rows):,} decisions: {counts['BUY']:,} BUY, {counts['SELL']:,} SELL, "
        f"{counts['HOLD']:,} HOLD; {changes:,} changes of action drawn (every BUY/SELL "
        "decision is in the legend, hidden). Fills (entries ▲ and exits ▼) are shown."
    ]
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
    bucket = None
    if shown is not None:
        bucket = bucket_ms(shown.timestamp, max_points)
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
            x, o, h, low, c = resample_candles(shown, bucket)
            candle = go.Candlestick(x=x, open=o, high=h, low=low, close=c, name=symbol)
            figure.add_trace(candle.update(showlegend=False), row=1, col=1)
        for trace in fill_marker_traces(result, symbol, single=len(trade_symbols(result)) <= 1):
            figure.add_trace(trace, row=1, col=1)
        voted = [m for m in models if _voted(rows, m)]
        for trace in decision_markers(symbol, rows, series, voted):
            figure.add_trace(trace, row=1, col=1)
    _lines(figure, rows, figure_rows, share_cols, with_probs, limits, max_points)
    figure.update_xaxes(type="date", rangeslider_visible=False)
    figure.update_layout(**layout(int(sum(heights) * 150 + 150)))
    return heading + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + plot(figure, div_id)


def _lines(
    figure: go.Figure,
    rows: pd.DataFrame,
    figure_rows: Mapping[str, int],
    share_cols: Mapping[str, str],
    with_probs: bool,
    limits: tuple[float, float] | None,
    max_points: int,
) -> None:
    """The shares and probability lines: each time bucket's last decision plus every BUY/SELL."""
    at = thin_positions(
        rows["timestamp"].to_numpy(), rows["action"].to_numpy() != "HOLD", max_points
    )
    x = time_text(rows["timestamp"].to_numpy()[at]) if len(rows) else np.array([], dtype=str)
    if "shares" in figure_rows:
        for model, color in share_cols.items():
            share = np.nan_to_num(numbers(rows, f"share_{model}")[at], nan=0.0)
            area = go.Scatter(x=x, y=share, name=model, stackgroup="shares", mode="lines")
            area.update(line={"width": 0.5, "color": color}, legendgroup=model)
            area.update(hovertemplate=f"{html.escape(model)} share %{{y:.3f}}<extra></extra>")
            figure.add_trace(area, row=figure_rows["shares"], col=1)
    if with_probs:
        row = figure_rows["probs"]
        for column, color in (("p_buy", LONG_COLOR), ("p_sell", SHORT_COLOR), ("p_hold", "#999")):
            if column in rows.columns:
                line = go.Scatter(x=x, y=numbers(rows, column)[at], name=column, mode="lines")
                line.update(line={"width": 1, "color": color})
                line.update(visible="legendonly" if column == "p_hold" else True)
                figure.add_trace(line, row=row, col=1)
        if limits is not None:
            buy, sell = limits
            figure.add_hline(y=buy, line={"dash": "dash", "color": LONG_COLOR}, row=row, col=1)
            figure.add_hline(y=sell, line={"dash": "dot", "color": SHORT_COLOR}, row=row, col=1)
        figure.update_yaxes(range=[0, 1.02], row=row, col=1)


def _voted(rows: pd.DataFrame, model: str) -> bool:
    return any(f"{prefix}{model}" in rows.columns for prefix in PREFIXES)


def decision_markers(
    symbol: str, rows: pd.DataFrame, series: Candles, models: Sequence[str]
) -> list[go.Scatter]:
    """Per action: the changes of action (``SYMBOL BUY``, shown) and every decision
    (``SYMBOL every BUY``, hidden); at the last close known at each decision time."""
    traces = []
    changed = decision_changes(rows["action"].to_numpy())
    for action, shape, color in (
        ("BUY", "triangle-up-open", LONG_COLOR),
        ("SELL", "triangle-down-open", SHORT_COLOR),
    ):
        is_action = rows["action"].to_numpy() == action
        for name, mask, visible in (
            (f"{symbol} {action}", is_action & changed, True),
            (f"{symbol} every {action}", is_action, "legendonly"),
        ):
            part = rows[mask]
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
                    name=name,
                    visible=visible,
                    marker={"symbol": shape, "size": 9, "color": color, "line": {"width": 1.5}},
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
    conf, p_buy, p_sell = (numbers(part, c) for c in ("confidence", "p_buy", "p_sell"))
    gates, reasons = texts(part, "gate"), texts(part, "reason")
    votes = {m: texts(part, f"vote_{m}") for m in models}
    weights = {m: numbers(part, f"w_{m}") for m in models}
    shares = {m: numbers(part, f"share_{m}") for m in models}
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
    period = span_text(float(np.median(np.diff(ts[-100:])))) if len(ts) > 1 else "?"
    if bucket is None:
        return f"{symbol} — {period} candles, fills ▲▼, decision changes △▽"
    return (
        f"{symbol} — {len(ts):,} {period} candles resampled to {span_text(bucket)} for "
        "display; fills and decisions at exact times"
    )
