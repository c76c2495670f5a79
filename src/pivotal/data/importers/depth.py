"""Recorded order-book depth files in an import: recognising them and naming their market.

A depth file (the layout of ``../shared/data/orderbook``: one row per level change of a REST
snapshot and every diff-depth event) is imported as its 1s COB snapshots. Turning depth into
COB is feature code, above this layer, so :func:`~pivotal.data.importers.ingest.import_files`
takes it as a function (:data:`DepthToCOB`); ``pivotal data import`` passes
:func:`pivotal.features.orderbook.recorded.cob_from_depth_files`.

Recognised by content: a Parquet file whose columns include :data:`DEPTH_COLUMNS`. Its symbol
comes from the name (``BTC_USDT-depth-20240808T2354-20240809T0005.parquet``,
``BTCUSDT-depth-...``) unless ``--symbol`` is given; its exchange from the folders as for
candle files (``orderbook/binance-spot/`` → binance) unless ``--exchange`` is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.data.importers.naming import infer_exchange

__all__ = ["DEPTH_COLUMNS", "DepthToCOB", "depth_market", "is_depth_file"]

DEPTH_COLUMNS: tuple[str, ...] = (
    "local_ts_ns",
    "event_time",
    "first_update_id",
    "final_update_id",
    "prev_final_update_id",
    "side",
    "price",
    "qty",
    "is_snapshot",
)

DepthToCOB = Callable[[Sequence[Path], Symbol], Sequence[COBData]]
"""Depth files of one symbol (replayed in the order given) → their 1s COB snapshots; raises
``DataError`` naming the file when they cannot be replayed."""

_NAME = re.compile(r"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){0,2})[-_]depth(?:[-_.].*)?$", re.I)


def is_depth_file(path: Path) -> bool:
    """Whether ``path`` is a Parquet file with the depth columns (reads only its footer)."""
    if not path.name.lower().endswith((".parquet", ".pq")):
        return False
    try:
        names = set(pq.read_schema(path).names)
    except (OSError, ValueError):
        return False
    return names.issuperset(DEPTH_COLUMNS)


def _symbol_of(path: Path) -> Symbol | None:
    match = _NAME.match(path.name)
    if not match:
        return None
    parts = match["pair"].upper().split("_")
    try:
        if len(parts) == 1:
            return Symbol.from_exchange_id(parts[0])
        return Symbol(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
    except ValueError:
        return None


def depth_market(
    path: Path, exchange: str | None = None, symbol: Symbol | None = None
) -> tuple[str, Symbol]:
    """The (exchange, symbol) of a depth file: the flags first, then what the path says.
    Raises ``DataError`` naming the flag to pass."""
    exchange = exchange or infer_exchange(path)
    symbol = symbol or _symbol_of(path)
    missing = []
    if exchange is None:
        missing.append(
            "the exchange (no parent folder is named after one): pass --exchange, e.g. "
            "--exchange binance"
        )
    if symbol is None:
        missing.append(
            "the symbol (the name is not like BTC_USDT-depth-...): pass --symbol, e.g. "
            "--symbol BTC/USDT"
        )
    if missing or exchange is None or symbol is None:
        why = "; nor ".join(missing)
        raise DataError(f"{path}: an order-book depth file, but cannot tell {why}")
    return exchange, symbol
