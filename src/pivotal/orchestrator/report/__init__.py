"""An orchestrated backtest as one self-contained HTML page (Plotly, opens offline).

The page, top to bottom:

1. the title, the data note, the verdict (return against buy-and-hold, drawdown, trades),
   the decisions counted by action and gate, the share of time in the market, the
   buy-and-hold definition (:data:`pivotal.orchestrator.benchmark.BUY_AND_HOLD_TEXT`), a
   plain sentence when the edge comes mostly from staying out of a falling market, and the
   run's span;
2. the metrics table, the strategy beside each benchmark (volatility and Sharpe from daily
   returns, see :mod:`pivotal.orchestrator.benchmark`);
3. per symbol, one figure (:mod:`.symbols`): candles with the fills shown and the decision
   changes, every decision in the legend; contribution shares; combined probabilities;
4. the equity beside each benchmark, and the drawdowns in percent (:mod:`.panels`);
5. each model's rolling accuracy over time, with the fault and learning events as markers;
6. the events counted by kind (the list folded), the gaps in the data met by the run, the
   checkpoints loaded or skipped at the start, the first :data:`MAX_TABLE_ROWS` closed trades
   with their exit reasons, the positions open at the end, the settings (:mod:`.tables`).

Buy-and-hold is **one** figure everywhere: the ``buy and hold`` benchmark when given (a
:class:`OrchestratedRun` carries it), else the equal-weight basket built from ``candles``;
the headline, the table and the curve all read it. A part with nothing to show reads as one
plain sentence. Long series are thinned to about ``max_points`` points per trace (candles
resampled to a round bucket, equity each bucket's last value, drawdown its deepest); markers
keep exact times. Plotly's JavaScript is embedded once; the file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from plotly.offline import get_plotlyjs

from pivotal.backtest.metrics import result_metrics
from pivotal.backtest.report import report_metrics
from pivotal.backtest.report_page import html_page
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.data.atomic import atomic_write_text
from pivotal.orchestrator.benchmark import BUY_AND_HOLD, buy_and_hold, daily_risk, with_benchmark
from pivotal.orchestrator.report.common import (
    DIV,
    FAULT_KINDS,
    LEARNING_KINDS,
    MAX_TABLE_ROWS,
    MODEL_COLORS,
    decision_table,
    expert_names,
    plot,
    settings_thresholds,
    thin_positions,
    trade_symbols,
)
from pivotal.orchestrator.report.panels import accuracy_section, equity_figure
from pivotal.orchestrator.report.symbols import symbol_section
from pivotal.orchestrator.report.tables import (
    events_section,
    exit_reasons,
    header,
    metrics_table,
    records_section,
    trade_sections,
)

if TYPE_CHECKING:
    from pivotal.orchestrator.run import OrchestratedRun

__all__ = [
    "FAULT_KINDS",
    "LEARNING_KINDS",
    "MAX_TABLE_ROWS",
    "exit_reasons",
    "expert_names",
    "thin_positions",
    "write_orchestrator_report",
    "write_run_report",
]


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
    gaps: Sequence[Mapping[str, Any]] = (),
    checkpoints: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the report (module docstring) to ``path`` atomically and return the path.

    ``result``: the orchestrated run (metrics computed here when missing). ``candles``: symbol
    → base-timeframe candles. ``decisions``: one row per decision with ``timestamp`` (UTC
    ms), ``symbol``, ``action`` (BUY/SELL/HOLD) and optionally ``confidence``, ``p_buy``,
    ``p_sell``, ``p_hold``, ``gate``, ``reason`` and per expert ``m``: ``w_<m>`` (gate weight),
    ``share_<m>``, ``vote_<m>``. ``accuracy``: ``timestamp``, ``model``, ``accuracy`` (a
    fraction in [0, 1]) and optionally ``symbol``, ``n``. ``events``: mappings with ``kind``
    and optionally ``timestamp``, ``symbol``, ``model``, ``message``. ``benchmark``: name →
    result (equity scaled to ``result``'s initial cash); its ``buy and hold`` entry is the
    buy-and-hold figure, else the equal-weight basket of ``candles`` is added under that
    name. ``thresholds``: (buy, sell) drawn on the probability panel; default
    ``result.settings["gate"]``'s ``buy_threshold``/``sell_threshold`` if any. ``gaps`` and
    ``checkpoints``: plain records listed in their own sections.
    """
    if int(max_points) < 10:
        raise ValueError(f"max_points must be at least 10, got {max_points}")
    if len(result.timestamps) == 0:
        raise ValueError("the result has no bars; run a backtest over at least one bar")
    for symbol, series in candles.items():
        if not isinstance(series, Candles):
            raise TypeError(f"candles[{symbol!r}] must be a Candles, got {type(series).__name__}")
    table = decision_table(decisions)
    events = tuple(events)
    models = expert_names(table)
    benchmarks = _benchmarks(result, candles, benchmark)
    hold = benchmarks.get(BUY_AND_HOLD)
    own = dataclasses.replace(result, metrics=report_metrics(result, None))
    if hold is not None:
        metrics = dict(with_benchmark(own, hold).metrics)
    else:
        metrics = {**own.metrics, **daily_risk(result.timestamps, result.equity, own.initial_cash)}
    limits = thresholds if thresholds is not None else settings_thresholds(result.settings)
    named = [
        *models,
        *([] if accuracy is None or "model" not in accuracy else map(str, accuracy["model"])),
    ]
    colors = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(dict.fromkeys(named))}

    symbols = list(candles)
    for extra in (*table["symbol"].unique(), *trade_symbols(result)):
        if extra not in symbols:
            symbols.append(str(extra))
    charts = [
        symbol_section(
            s, candles.get(s), table, result, colors, limits, int(max_points), f"{DIV}symbol-{i}"
        )
        for i, s in enumerate(symbols)
    ]
    parts = [
        header(title, data_note, result, metrics, hold, table, models),
        "<h2>Metrics</h2>",
        metrics_table(metrics, benchmarks),
        *charts,
        "<h2>Equity</h2>",
        plot(equity_figure(result, benchmarks, int(max_points)), f"{DIV}equity"),
        "<h2>Model accuracy over time</h2>",
        accuracy_section(accuracy, events, colors, int(max_points)),
        "<h2>Fault and learning events</h2>",
        events_section(events),
        records_section(
            "Gaps in the data",
            list(gaps),
            "No gap met: every symbol's candles were continuous over the run.",
            f"{len(gaps):,} gap(s) in the candles of the run (longer runs of missing bars than "
            "the run's max_missing_bars); see the settings for what the run did at each.",
        ),
        records_section(
            "Checkpoints at the start",
            list(checkpoints),
            "No online checkpoint was loaded or skipped at the start.",
        ),
        *trade_sections(result),
    ]
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return atomic_write_text(path, html_page(title, parts, head=[script]))


def write_run_report(
    path: str | os.PathLike[str],
    run: OrchestratedRun,
    *,
    title: str = "pivotal orchestrated backtest",
) -> Path:
    """:func:`write_orchestrator_report` of an :class:`OrchestratedRun` (its gate thresholds,
    benchmark, events, gaps and checkpoints)."""
    gate = run.config.orchestrator.gate
    return write_orchestrator_report(
        path,
        run.result,
        run.candles,
        run.decisions,
        accuracy=run.accuracy,
        events=run.events,
        benchmark=run.benchmark,
        title=title,
        data_note=run.data_note,
        thresholds=(gate.buy_threshold, gate.sell_threshold),
        gaps=list(getattr(run, "gaps", None) or []),
        checkpoints=list(getattr(run, "checkpoints", None) or []),
    )


def _benchmarks(
    result: BacktestResult,
    candles: Mapping[str, Candles],
    given: Mapping[str, BacktestResult] | None,
) -> dict[str, BacktestResult]:
    """The given benchmarks (metrics filled in), with buy-and-hold built when absent."""
    out: dict[str, BacktestResult] = {}
    for name, other in dict(given or {}).items():
        if not isinstance(other, BacktestResult) or not len(other.timestamps):
            raise TypeError(f"benchmark[{name!r}] must be a BacktestResult with bars")
        metrics = dict(other.metrics) if other.metrics else result_metrics(other)
        if "sharpe_daily" not in metrics:
            metrics.update(daily_risk(other.timestamps, other.equity, other.initial_cash))
        out[name] = dataclasses.replace(other, metrics=metrics)
    if BUY_AND_HOLD not in out and any(len(c) for c in candles.values()):
        with contextlib.suppress(ValueError):  # no symbol has a price: no buy-and-hold to show
            out[BUY_AND_HOLD] = buy_and_hold(result.timestamps, candles, result.initial_cash)
    return out
