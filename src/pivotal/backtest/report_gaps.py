"""The gaps in the data, in the HTML report: shaded bands on the chart and a small table.

A band covers each gap from the close of the last bar before it to the open of the first
bar after it, across every panel, so a flat stretch of the equity curve over a hole in the
data is not read as a quiet market. At most :data:`MAX_BANDS` (the longest) are drawn; the
table lists them all, longest first, with the trades the ``close`` policy ended there.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pivotal.backtest.report_page import html_table
from pivotal.core.gaps import SeriesGap
from pivotal.core.timeframes import Timeframe

__all__ = ["MAX_BANDS", "add_gap_bands", "gap_section"]

MAX_BANDS = 200
GAP_COLOR = "rgba(255, 165, 0, 0.18)"


def _longest_first(gaps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(gaps, key=lambda g: int(g["last_before_ms"]) - int(g["first_after_ms"]))


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms").astype("datetime64[m]"))


def add_gap_bands(figure: go.Figure, gaps: Sequence[Mapping[str, Any]], bar_ms: int) -> None:
    """Shade each gap (the longest :data:`MAX_BANDS`) on every panel of ``figure``; a gap's
    band starts at the close of its last bar (its ``timeframe``, else ``bar_ms`` long)."""
    for gap in _longest_first(gaps)[:MAX_BANDS]:
        try:
            step = Timeframe.parse(str(gap.get("timeframe", ""))).ms
        except ValueError:
            step = bar_ms
        figure.add_vrect(
            x0=_iso(int(gap["last_before_ms"]) + step),
            x1=_iso(int(gap["first_after_ms"])),
            fillcolor=GAP_COLOR,
            line_width=0,
            layer="below",
            row="all",
            col=1,
        )


def gap_section(gaps: Sequence[Mapping[str, Any]], trades: pd.DataFrame | None) -> str:
    """The report's "Gaps in the data" section (HTML)."""
    if not gaps:
        return "<h2>Gaps in the data</h2><p>None: every series is contiguous.</p>"
    closed = 0
    if trades is not None and "exit_reason" in trades.columns:
        closed = int((trades["exit_reason"] == "gap").sum())
    rows = []
    for gap in _longest_first(gaps):
        span = SeriesGap(
            int(gap["last_before_ms"]), int(gap["first_after_ms"]), int(gap["missing_bars"])
        ).describe(str(gap.get("timeframe", "")))
        rows.append([str(gap.get("symbol", "")), span])
    note = (
        f"{len(gaps)} gap(s) in the data (shaded on the chart); {closed} trade(s) were closed "
        "at the last bar before one (exit reason gap)."
    )
    return f"<h2>Gaps in the data</h2><p>{html.escape(note)}</p>" + html_table(
        ["Symbol", "Gap (UTC)"], rows, text_cols=2
    )
