"""An orchestrated run as JSON (``pivotal run --json FILE``), beside ``pivotal backtest``'s.

Layout (``format`` = ``"pivotal-run"``, ``version`` = 1)::

    {
      "format": "pivotal-run", "version": 1,
      "data": "binance: BTC/USDT 5m 2026-01-20..2026-02-19 (8,640 bars), ...",
      "run": {...},                        # the run file's settings, JSON-safe
      "buy_and_hold": "buy-and-hold = ...",  # the benchmark's definition, in words
      "in_market_pct": 12.3,               # bars with a position open (open ones included)
      "result": {...},                     # pivotal.backtest.export layout (metrics, trades)
      "benchmark": {"buy and hold": {...}},  # the same layout per benchmark
      "decisions": [{...}, ...],           # one per decision: time, symbol, action, ...
      "events": [{...}, ...],              # learning and fault events
      "gaps": [{...}, ...],                # the gaps in the data the run met
      "checkpoints": [{...}, ...],         # online checkpoints loaded or skipped at the start
      "seconds": 12.5
    }

Trades (in ``result`` and ``benchmark``) carry ``exit_reason`` in words (signal, stop-loss,
take-profit, gap, end of data, ...); open trades have a null exit. ``metrics`` hold
backtesting.py's figures plus ``volatility_daily_ann_pct`` and ``sharpe_daily``
(:mod:`pivotal.orchestrator.benchmark`); ``buy_and_hold_return_pct`` equals the
``buy and hold`` benchmark's ``total_return_pct``.
A decision has ``time`` (ISO UTC) and ``timestamp`` (UTC ms) and every column of the
decision frame; NaN is null. Written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pivotal.backtest.export import iso_utc, json_safe, to_json_dict
from pivotal.backtest.result import BacktestResult
from pivotal.data.atomic import atomic_write_text
from pivotal.orchestrator.benchmark import BUY_AND_HOLD_TEXT, in_market_pct
from pivotal.orchestrator.report.tables import exit_reasons

if TYPE_CHECKING:
    from pivotal.orchestrator.run import OrchestratedRun

__all__ = ["FORMAT", "FORMAT_VERSION", "run_json_dict", "write_run_json"]

FORMAT = "pivotal-run"
FORMAT_VERSION = 1


def run_json_dict(run: OrchestratedRun) -> dict[str, Any]:
    """The run as plain JSON values (module docstring)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "data": run.data_note,
        "run": json_safe(run.config.model_dump(mode="json")),
        "buy_and_hold": BUY_AND_HOLD_TEXT,
        "in_market_pct": json_safe(in_market_pct(run.result)),
        "result": result_dict(run.result),
        "benchmark": {name: result_dict(b) for name, b in run.benchmark.items()},
        "decisions": decision_records(run.decisions),
        "events": json_safe(list(run.events)),
        "gaps": json_safe(list(getattr(run, "gaps", None) or [])),
        "checkpoints": json_safe(list(getattr(run, "checkpoints", None) or [])),
        "seconds": json_safe(run.seconds),
    }


def write_run_json(run: OrchestratedRun, path: str | os.PathLike[str]) -> Path:
    """Write :func:`run_json_dict` of ``run`` to ``path`` atomically; returns the path."""
    text = json.dumps(run_json_dict(run), indent=1, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def result_dict(result: BacktestResult) -> dict[str, Any]:
    """``pivotal.backtest.export``'s layout with each trade's ``exit_reason`` in words."""
    document = to_json_dict(result)
    for key, table, fills in (
        ("trades", result.trades, result.fills),
        ("open_trades", result.open_trades, None),
    ):
        reasons = exit_reasons(table, fills) if key == "trades" else [""] * len(document[key])
        for record, reason in zip(document[key], reasons, strict=True):
            record["exit_reason"] = reason or None
            if key == "open_trades":  # still open: no exit yet (the table marks it -1)
                record.update(exit_time=None, exit_time_ms=None, exit_price=None)
    return document


def decision_records(decisions: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON record per decision, ``time`` first."""
    if decisions is None or decisions.empty:
        return []
    ts = decisions["timestamp"].to_numpy(dtype=np.int64)
    times = iso_utc(ts)
    columns = [str(c) for c in decisions.columns]
    rows = decisions.to_dict(orient="records")
    return [
        {"time": when, **{c: json_safe(row[c]) for c in columns}}
        for when, row in zip(times, rows, strict=True)
    ]
