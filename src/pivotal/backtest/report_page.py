"""The HTML page shell every pivotal report shares: the page with its style sheet, tables, and
the trade table's text columns.

Used by the backtest report (:mod:`pivotal.backtest.report`) and the orchestrator report
(:mod:`pivotal.orchestrator.report`): one look, one escaping rule. Every text that reaches the
page goes through :func:`html.escape` here; callers pass plain strings (the ``body`` and
``head`` parts of :func:`html_page` are HTML already and are inserted as given).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pivotal.backtest.report_chart import numeric_column, time_text

__all__ = ["PAGE_STYLE", "TRADE_HEADERS", "html_page", "html_table", "trade_text_columns"]

#: The style sheet of every report page (``.verdict``, ``.meta``, tables, ``tr.gap`` rows).
PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{margin-bottom:0.2em}h2{margin-top:1.5em}"
    ".verdict{font-size:1.15em;padding:0.6em;background:#f4f6f8;border-left:4px solid #888}"
    ".meta{color:#555}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f0f0f0}td.text,th.text{text-align:left}"
    "tr.gap td{text-align:center;color:#777;font-style:italic}"
    "pre{background:#f7f7f7;padding:0.6em;overflow-x:auto}"
)

#: Headers of :func:`trade_text_columns` (one column each), after a leading ``#``.
TRADE_HEADERS: tuple[str, ...] = (
    "Symbol",
    "Side",
    "Entry (UTC)",
    "Exit (UTC)",
    "Entry price",
    "Exit price",
    "Size",
    "PnL",
    "Fees",
    "Return [%]",
    "Exit reason",
)


def html_page(title: str, body: Sequence[str], *, head: Sequence[str] = ()) -> str:
    """A complete HTML5 page: ``title`` (plain text, escaped) in ``<title>``, the report style
    sheet, then ``head`` (HTML, e.g. a ``<script>``) and ``body`` (HTML parts), one per line."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{PAGE_STYLE}</style>",
            *head,
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_cols: int) -> str:
    """An HTML table of plain-text cells (escaped); the first ``text_cols`` columns
    left-aligned; a one-cell row (a note such as "… 12 trades not shown …") spans the table."""

    def cell(tag: str, value: str, i: int) -> str:
        cls = ' class="text"' if i < text_cols else ""
        return f"<{tag}{cls}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    body = []
    for row in rows:
        if len(row) == 1 and len(headers) > 1:
            body.append(
                f'<tr class="gap"><td colspan="{len(headers)}">{html.escape(row[0])}</td></tr>'
            )
        else:
            body.append("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def trade_text_columns(part: pd.DataFrame) -> list[list[str]]:
    """The cells of a trade table (:data:`pivotal.backtest.result.TRADE_COLUMNS` rows), one
    list per :data:`TRADE_HEADERS` column: times as ``YYYY-MM-DD HH:MM`` UTC, prices and sizes
    to 8 significant digits, money to cents, returns in percent; missing values empty."""

    def text(name: str) -> list[str]:
        if name not in part.columns:
            return [""] * len(part)
        return ["" if v is None or v is pd.NA or v != v else str(v) for v in part[name].tolist()]

    def times(name: str) -> list[str]:
        values = numeric_column(part, name)
        known = np.isfinite(values)
        text = time_text(np.where(known, values, 0).astype(np.int64))
        return [t.replace("T", " ") if k else "" for t, k in zip(text, known, strict=True)]

    def numbers(name: str, fmt: str) -> list[str]:
        return ["" if not math.isfinite(v) else format(v, fmt) for v in numeric_column(part, name)]

    return [
        text("symbol"),
        text("side"),
        times("entry_time"),
        times("exit_time"),
        numbers("entry_price", ",.8g"),
        numbers("exit_price", ",.8g"),
        numbers("size", ".8g"),
        numbers("pnl", ",.2f"),
        numbers("fees", ",.2f"),
        numbers("return_pct", "+.3f"),
        text("exit_reason"),
    ]
