"""The report's text parts: the headline, the metrics table, the events (counts, details
folded), the trades with their exit reasons, the gaps met and the checkpoints loaded."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pivotal.backtest.export import json_safe
from pivotal.backtest.metrics import METRIC_LABELS, format_metrics
from pivotal.backtest.report import verdict
from pivotal.backtest.report_chart import time_text
from pivotal.backtest.report_page import TRADE_HEADERS, html_table, trade_text_columns
from pivotal.backtest.result import BacktestResult
from pivotal.orchestrator.benchmark import (
    BUY_AND_HOLD_TEXT,
    DAILY_RISK_LABELS,
    edge_note,
    in_market_pct,
)
from pivotal.orchestrator.report.common import (
    ACTIONS,
    MAX_TABLE_ROWS,
    missing,
    texts,
    utc_text,
)
from pivotal.orchestrator.report.panels import category, event_rows

#: Display words for the ``exit_reason`` of a trade (the closing fill's tag).
EXIT_WORDS = {
    "exit": "signal",
    "reversal": "signal (reversal)",
    "stop": "stop-loss",
    "take_profit": "take-profit",
    "gap": "gap",
    "end of data": "end of data",
}
#: backtesting.py's geometric volatility and Sharpe rows, replaced by the daily-return ones.
_REPLACED = {"volatility_ann_pct": "volatility_daily_ann_pct", "sharpe": "sharpe_daily"}


def exit_reasons(trades: pd.DataFrame | None, fills: pd.DataFrame | None = None) -> list[str]:
    """Why each trade closed, in words (:data:`EXIT_WORDS`): its ``exit_reason`` column, else
    the tag of the last opposite-side fill at its exit time; empty when unknown."""
    if trades is None or trades.empty:
        return []
    if "exit_reason" in trades.columns:
        raw = ["" if missing(v) else str(v) for v in trades["exit_reason"]]
    else:
        raw = _reasons_from_fills(trades, fills)
    return [EXIT_WORDS.get(r, r.replace("_", " ")) for r in raw]


def _reasons_from_fills(trades: pd.DataFrame, fills: pd.DataFrame | None) -> list[str]:
    if fills is None or fills.empty or "tag" not in fills.columns:
        return [""] * len(trades)
    last: dict[tuple[str, int, str], str] = {}
    for symbol, ms, side, tag in fills[["symbol", "timestamp", "side", "tag"]].itertuples(
        index=False
    ):
        reason = str(tag).rsplit(":", 1)[-1] if not missing(tag) else ""
        last[(str(symbol), int(ms), str(getattr(side, "value", side)).lower())] = (
            "reversal" if reason == "entry" else reason
        )
    out = []
    for symbol, side, ms in trades[["symbol", "side", "exit_time"]].itertuples(index=False):
        closing = "sell" if str(side).lower() in ("long", "buy") else "buy"
        out.append(last.get((str(symbol), int(ms), closing), "") if ms >= 0 else "")
    return out


def header(
    title: str,
    data_note: str,
    result: BacktestResult,
    metrics: Mapping[str, Any],
    hold: BacktestResult | None,
    table: pd.DataFrame,
    models: Sequence[str],
) -> str:
    """The title, the data note, the verdict (return vs buy-and-hold, drawdown, trades), the
    buy-and-hold definition, the plain note on a falling market, and the run's span."""
    n_open = 0 if result.open_trades is None else len(result.open_trades)
    counts = {a: int((table["action"] == a).sum()) for a in ACTIONS}
    gates = ", ".join(
        f"{g} ×{n:,}" for g, n in pd.Series(texts(table, "gate")).value_counts().items() if g
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
    in_market = in_market_pct(result)
    lines = [verdict(metrics, n_open=n_open), decided]
    if hold is not None:
        exposure = f"In the market {in_market:.1f} % of the time (open positions included)."
        lines.append(f"{exposure} {BUY_AND_HOLD_TEXT[0].upper()}{BUY_AND_HOLD_TEXT[1:]}.")
        note = edge_note(
            float(metrics.get("total_return_pct", math.nan)),
            float(hold.metrics.get("total_return_pct", math.nan)),
            in_market,
        )
        if note:
            lines.append(note)
    data = f'<p class="meta">Data: {html.escape(data_note)}</p>' if data_note else ""
    return (
        f"<h1>{html.escape(title)}</h1>{data}"
        f'<p class="verdict">{"<br>".join(html.escape(line) for line in lines)}</p>'
        f'<p class="meta">{html.escape(meta)}</p>'
    )


def metrics_table(metrics: Mapping[str, Any], benchmarks: Mapping[str, BacktestResult]) -> str:
    """The strategy beside each benchmark; volatility and Sharpe from daily returns."""
    columns = {"strategy": _metric_rows(metrics)}
    for name, other in benchmarks.items():
        columns[name] = _metric_rows(other.metrics)
    labels = list(dict.fromkeys(label for values in columns.values() for label in values))
    rows = [[label, *(values.get(label, "") for values in columns.values())] for label in labels]
    note = (
        '<p class="meta">Definitions: pivotal.backtest.metrics (backtesting.py\'s), except the '
        "volatility and Sharpe ratio, taken from daily simple returns (√365 a year; n/a "
        "with less than a week of them): "
        "backtesting.py's geometric figures are ill-conditioned when prices fall steeply and "
        "stay in the JSON export as volatility_ann_pct and sharpe. Exposure counts closed "
        "trades only.</p>"
    )
    return html_table(["Metric", *columns], rows, text_cols=1) + note


def _metric_rows(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Label → text in :data:`METRIC_LABELS` order, the geometric volatility and Sharpe
    replaced by the daily-return ones."""
    keys = [k for k in METRIC_LABELS if k in metrics]
    keys += [k for k in metrics if k not in METRIC_LABELS and k not in DAILY_RISK_LABELS]
    out: dict[str, str] = {}
    for key in keys:
        if key in _REPLACED:
            value = metrics.get(_REPLACED[key])
            known = value is not None and math.isfinite(float(value))
            out[DAILY_RISK_LABELS[_REPLACED[key]]] = f"{float(value):.2f}" if known else "n/a"
        else:
            out.update(dict(format_metrics({key: metrics[key]})))
    return out


def events_section(events: Sequence[Mapping[str, Any]]) -> str:
    """The events counted by kind; the list (first :data:`MAX_TABLE_ROWS`) folded."""
    rows = event_rows(events)
    if rows.empty:
        return "<p>No fault or learning event was recorded.</p>"
    counts = []
    for kind, part in rows.groupby("kind", sort=True):
        known = part["timestamp"].dropna().to_numpy(dtype=np.int64)
        span = [utc_text(known.min()), utc_text(known.max())] if len(known) else ["", ""]
        counts.append([str(kind), category(str(kind)), f"{len(part):,}", *span])
    rows = rows.sort_values("timestamp", kind="stable", na_position="last")
    shown = rows.head(MAX_TABLE_ROWS)
    listed = [
        [utc_text(t) if not pd.isna(t) else "", k, s, m, msg]
        for t, k, s, m, msg in shown.itertuples(index=False)
    ]
    note = f"{len(rows):,} events" + (
        f"; the first {MAX_TABLE_ROWS} in time order" if len(rows) > MAX_TABLE_ROWS else ""
    )
    return "".join(
        [
            html_table(
                ["Kind", "Category", "Count", "First (UTC)", "Last (UTC)"], counts, text_cols=2
            ),
            f"<details><summary>{html.escape(note)} (click to list)</summary>",
            html_table(["Time (UTC)", "Kind", "Symbol", "Model", "Message"], listed, text_cols=5),
            "</details>",
        ]
    )


def trade_table(trades: pd.DataFrame | None, fills: pd.DataFrame | None) -> str:
    """The first :data:`MAX_TABLE_ROWS` trades with their exit reasons."""
    if trades is None or trades.empty:
        return "<p>None.</p>"
    part = trades.iloc[:MAX_TABLE_ROWS]
    reasons = exit_reasons(part, fills)
    columns = trade_text_columns(part)[:-1]  # the raw exit_reason: replaced by its words
    rows = [
        [str(i + 1), *(col[i] for col in columns), reasons[i] if reasons else ""]
        for i in range(len(part))
    ]
    return html_table(["#", *TRADE_HEADERS], rows, text_cols=5)


def trade_sections(result: BacktestResult) -> list[str]:
    n = len(result.trades)
    reasons = Counter(r or "unknown" for r in exit_reasons(result.trades, result.fills))
    by_reason = ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items()))
    note = f"{n:,} closed trades" + (f" (exit reasons: {by_reason})" if n else "")
    note += f"; the first {MAX_TABLE_ROWS}." if n > MAX_TABLE_ROWS else "."
    n_open = 0 if result.open_trades is None else len(result.open_trades)
    settings = json.dumps(json_safe(result.settings), indent=1, sort_keys=True)
    return [
        "<h2>Trades</h2>",
        f"<p>{html.escape(note)}</p>",
        trade_table(result.trades, result.fills),
        "<h2>Open positions at the end</h2>",
        trade_table(result.open_trades, None) if n_open else "<p>None.</p>",
        f"<details><summary>Settings</summary><pre>{html.escape(settings)}</pre></details>",
    ]


def records_section(
    title: str, records: Sequence[Mapping[str, Any]], empty: str, note: str = ""
) -> str:
    """A heading and a table of plain records (gaps, checkpoints): one column per key, in
    order of first appearance (a ``x_ms`` key left out beside ``x``); times in UTC ms shown
    as dates; the first :data:`MAX_TABLE_ROWS` records."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if not records:
        return parts[0] + f"<p>{html.escape(empty)}</p>"
    keys = list(dict.fromkeys(str(k) for record in records for k in record))
    keys = [k for k in keys if not (k.endswith("_ms") and k.removesuffix("_ms") in keys)]
    rows = [[_cell(k, record.get(k)) for k in keys] for record in records[:MAX_TABLE_ROWS]]
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    parts.append(html_table([k.replace("_", " ") for k in keys], rows, text_cols=len(keys)))
    return "".join(parts)


def _cell(key: str, value: Any) -> str:
    if missing(value):
        return ""
    timeish = any(w in key for w in ("time", "start", "end", "since", "until", "from", "_ms"))
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if is_int and timeish and int(value) > 10**11:  # UTC ms
        return utc_text(int(value))
    if isinstance(value, float):
        return f"{value:,.6g}"
    safe = json_safe(value)
    return safe if isinstance(safe, str) else json.dumps(safe)
