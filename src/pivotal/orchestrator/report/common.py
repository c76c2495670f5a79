"""What every part of the orchestrator report shares: limits, colours, the decision table's
checks, number and text columns, time thinning and the Plotly layout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from pivotal.backtest.report_chart import display_bucket_ms, numeric_column, time_text
from pivotal.backtest.result import BacktestResult

MAX_TABLE_ROWS = 200
FAULT_KINDS = frozenset({"skipped", "failed", "timeout", "isolated", "fallback"})
LEARNING_KINDS = frozenset(
    {"promoted", "rolled_back", "degradation", "retrained", "checkpoint", "gate_promoted"}
)
ACTIONS = ("BUY", "SELL", "HOLD")
PREFIXES = ("w_", "share_", "vote_")
MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
EQUITY_COLORS = ("#1f77b4", "#7f7f7f", "#8c564b", "#e377c2", "#bcbd22")  # strategy first
DASHES = ("solid", "dot", "dash", "dashdot", "longdash")
DIV = "pivotal-orchestrator-"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_MARGIN = {"l": 60, "r": 20, "t": 70, "b": 40}


def layout(height: int) -> dict[str, Any]:
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


def plot(figure: go.Figure, div_id: str) -> str:
    """The figure's div; fixed ids keep the page byte-identical for the same inputs."""
    return pio.to_html(
        figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG
    )


def expert_names(decisions: pd.DataFrame) -> list[str]:
    """The expert names of a decision frame (``w_<m>``/``share_<m>``/``vote_<m>`` columns),
    in order of first appearance."""
    names: list[str] = []
    for column in map(str, decisions.columns):
        for prefix in PREFIXES:
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


def bucket_ms(ts: npt.NDArray[np.int64], max_points: int) -> int | None:
    """None when ``ts`` has at most ``max_points`` bars, else the smallest round bucket (a
    multiple of the bar spacing, at most four times the minimal one) leaving at most
    ``max_points`` buckets."""
    step = max(int(np.median(np.diff(ts[-100:]))), 1) if len(ts) > 1 else 1
    return display_bucket_ms(step, len(ts), int(ts[-1] - ts[0]), max_points)


def decision_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decisions checked and sorted by time (UTC ms ints, upper-case actions)."""
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
    unknown = sorted(set(table["action"]) - set(ACTIONS))
    if unknown:
        raise ValueError(f"decision actions must be BUY, SELL or HOLD, got {unknown}")
    return table.sort_values("timestamp", kind="stable").reset_index(drop=True)


def settings_thresholds(settings: Mapping[str, Any]) -> tuple[float, float] | None:
    gate = settings.get("gate")
    source = gate if isinstance(gate, Mapping) else settings
    buy, sell = source.get("buy_threshold"), source.get("sell_threshold")
    if buy is None or sell is None:
        return None
    return float(buy), float(sell)


def trade_symbols(result: BacktestResult) -> list[str]:
    found: list[str] = []
    for table in (result.trades, result.open_trades):
        if table is not None and "symbol" in table.columns:
            found += [str(s) for s in table["symbol"].unique() if str(s) not in found]
    return found


def numbers(table: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """Column ``column`` as float64, NaN where missing (:func:`numeric_column`)."""
    return numeric_column(table, column)


def texts(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table.columns:
        return [""] * len(table)
    return ["" if missing(v) else str(getattr(v, "value", v)) for v in table[column]]


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def utc_text(ms: Any) -> str:
    """One UTC ms time as ``YYYY-MM-DD HH:MM``."""
    return str(time_text(np.asarray([int(ms)], dtype=np.int64))[0]).replace("T", " ")
