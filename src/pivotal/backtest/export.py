"""A backtest result as JSON: for other tools, dashboards and regression files.

Layout of the document (``format`` = ``"pivotal-backtest"``, ``version`` = 1)::

    {
      "format": "pivotal-backtest", "version": 1,
      "engine": "event",                   # which engine produced the result
      "initial_cash": 100000.0, "final_equity": 101234.5, "fees_paid": 123.4,
      "metrics": {...},                    # metrics.METRIC_LABELS keys; NaN/inf -> null
      "settings": {...},                   # the run's settings, made JSON-safe
      "equity": {"n_points": 20000, "first_time_ms": ..., "last_time_ms": ...,
                 "first_time": "...Z", "last_time": "...Z"},
      "trades": [{...}, ...],              # closed round trips, TRADE_KEYS each
      "open_trades": [{...}, ...],         # still open at the end, same keys
      "gaps": [{...}, ...]                 # the gaps in the data the run met (see below)
    }

A trade is ``{"symbol", "side", "entry_time", "exit_time", "entry_time_ms",
"exit_time_ms", "entry_price", "exit_price", "size", "pnl", "fees", "return_pct",
"exit_reason"}`` (``exit_reason``: ``exit``, ``stop``, ``take_profit``, ``gap``…, null while
open; files written before it existed lack it and still read). A gap is ``{"symbol",
"timeframe", "last_before", "first_after", "last_before_ms", "first_after_ms",
"missing_bars"}`` (:meth:`pivotal.core.gaps.SeriesGap.as_dict`). Times are
ISO-8601 UTC strings with milliseconds (``2025-05-20T00:00:00.000Z``) and as int UTC ms,
prices and money in the quote currency, ``size`` in base units, ``return_pct`` in percent.
A missing or non-finite number is ``null``. The full equity curve is not stored (it is the
bulky part; the HTML report plots it); the summary says how many points it had.

Files are written atomically: a temporary file in the target directory, flushed and
fsynced, then renamed over the target, so a reader never sees half a file and a failed
write leaves the previous file as it was.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pivotal.backtest.result import BacktestResult
from pivotal.data.atomic import atomic_write_text

FORMAT = "pivotal-backtest"
FORMAT_VERSION = 1
TRADE_KEYS: tuple[str, ...] = (
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "entry_time_ms",
    "exit_time_ms",
    "entry_price",
    "exit_price",
    "size",
    "pnl",
    "fees",
    "return_pct",
    "exit_reason",
)
_OPTIONAL_TRADE_KEYS = frozenset({"exit_reason"})
TOP_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "engine",
    "initial_cash",
    "final_equity",
    "fees_paid",
    "metrics",
    "settings",
    "equity",
    "trades",
    "open_trades",
)
EQUITY_KEYS: tuple[str, ...] = (
    "n_points",
    "first_time_ms",
    "last_time_ms",
    "first_time",
    "last_time",
)
_NUMBER_COLUMNS = ("entry_price", "exit_price", "size", "pnl", "fees", "return_pct")


def to_json_dict(result: BacktestResult) -> dict[str, Any]:
    """The result as plain JSON values (see the module docstring for the layout).

    ``metrics`` are the result's own; when the result carries none (and has bars) they are
    computed from its equity and trades (:func:`pivotal.backtest.metrics.result_metrics`,
    without a buy-and-hold benchmark, so ``buy_and_hold_return_pct`` is null).
    """
    metrics: Mapping[str, Any] = result.metrics
    if not metrics and len(result.timestamps):
        from pivotal.backtest.metrics import result_metrics

        metrics = result_metrics(result)
    ts = np.asarray(result.timestamps, dtype=np.int64)
    equity = {
        "n_points": len(ts),
        "first_time_ms": int(ts[0]) if len(ts) else None,
        "last_time_ms": int(ts[-1]) if len(ts) else None,
        "first_time": iso_utc(ts[:1])[0] if len(ts) else None,
        "last_time": iso_utc(ts[-1:])[0] if len(ts) else None,
    }
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "engine": str(result.engine),
        "initial_cash": _number(result.initial_cash),
        "final_equity": _number(result.final_equity),
        "fees_paid": _number(result.fees_paid),
        "metrics": {str(k): _number(v) for k, v in metrics.items()},
        "settings": json_safe(result.settings),
        "equity": equity,
        "trades": trade_records(result.trades),
        "open_trades": trade_records(result.open_trades),
        "gaps": json_safe([dict(g) for g in result.gaps]),
    }


def write_json(result: BacktestResult, path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_json_dict` of ``result`` to ``path`` atomically; returns the path."""
    text = json.dumps(to_json_dict(result), indent=1, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`write_json`, checking its layout.

    Raises ``ValueError`` naming what is missing or wrong (format, version, top-level keys,
    equity summary keys, or the keys of the first incomplete trade).
    """
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{source} holds a {type(document).__name__}, not a backtest object")
    missing = [k for k in TOP_KEYS if k not in document]
    if missing:
        raise ValueError(
            f"{source} is missing {missing}; is it a file written by pivotal.backtest.export?"
        )
    if document["format"] != FORMAT or document["version"] != FORMAT_VERSION:
        raise ValueError(
            f"{source} has format {document['format']!r} version {document['version']!r}; "
            f"this reader understands {FORMAT!r} version {FORMAT_VERSION}"
        )
    for name in ("metrics", "settings", "equity"):
        if not isinstance(document[name], dict):
            raise ValueError(f"{source}: {name!r} must be an object")
    missing = [k for k in EQUITY_KEYS if k not in document["equity"]]
    if missing:
        raise ValueError(f"{source}: the equity summary is missing {missing}")
    for name in ("trades", "open_trades"):
        records = document[name]
        if not isinstance(records, list):
            raise ValueError(f"{source}: {name!r} must be a list of trades")
        for i, record in enumerate(records):
            absent = [
                k
                for k in TRADE_KEYS
                if k not in _OPTIONAL_TRADE_KEYS
                and (not isinstance(record, dict) or k not in record)
            ]
            if absent:
                raise ValueError(f"{source}: {name}[{i}] is missing {absent}")
    return document


# --- helpers shared with the HTML report -------------------------------------------------


def iso_utc(ms: Any) -> list[str]:
    """UTC milliseconds as ISO-8601 strings with milliseconds and a ``Z``."""
    stamps = np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")
    return [f"{s}Z" for s in np.datetime_as_string(stamps, unit="ms")]


def trade_records(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a trade table as JSON dicts with :data:`TRADE_KEYS` (missing values null)."""
    if trades is None or trades.empty:
        return []
    n = len(trades)
    columns: dict[str, list[Any]] = {}
    for key in ("symbol", "side", "exit_reason"):
        values = trades[key] if key in trades.columns else pd.Series([None] * n)
        columns[key] = [None if _missing(v) or v == "" else str(v) for v in values]
    for key in ("entry_time", "exit_time"):
        values = (
            pd.to_numeric(trades[key], errors="coerce").to_numpy(dtype=np.float64)
            if key in trades.columns
            else np.full(n, np.nan)
        )
        known = np.isfinite(values) & (values >= 0)  # an open trade's exit time is -1
        whole = np.where(known, values, 0).astype(np.int64)
        iso = iso_utc(whole)
        columns[key] = [t if k else None for t, k in zip(iso, known, strict=True)]
        columns[f"{key}_ms"] = [int(m) if k else None for m, k in zip(whole, known, strict=True)]
    for key in _NUMBER_COLUMNS:
        values = (
            pd.to_numeric(trades[key], errors="coerce").to_numpy(dtype=np.float64)
            if key in trades.columns
            else np.full(n, np.nan)
        )
        columns[key] = [_number(v) for v in values]
    return [{key: columns[key][i] for key in TRADE_KEYS} for i in range(n)]


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars unwrapped, NaN/inf null, paths and enums text."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(v) for v in items]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "model_dump"):  # pydantic settings
        return json_safe(value.model_dump(mode="json"))
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | int | None:
    """A finite number as a Python number; NaN, inf and None as None."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None
