"""Stored COB snapshots: the ``cob_snapshots`` table and the :class:`COBData` ⇄ Arrow codec.

One row per (exchange, symbol, ts): every field of :class:`~pivotal.core.types.COBData` plus
the row's ``source`` (where the snapshot came from: ``import:<depth file>``, a live
collector, ...). Units as in ``COBData``: ``ts`` UTC ms (the snapshot's stamp), prices in the
quote currency, volumes in the base asset.

Layout (DuckDB lists, so any bucket count and window set fits and DuckDB compresses each list's
values as one column):

=========================  ===============  =================================================
column                     type             ``COBData`` field
=========================  ===============  =================================================
current_price, bucket_size DOUBLE           the same
bucket_prices, bid_volume, DOUBLE[]         the per-bucket arrays, lowest price first
ask_volume, imbalance,
volume_weighted_prices
ma_windows                 INTEGER[]        ``imbalance_ma`` keys (window seconds), in order
ma_values                  DOUBLE[][]       ``imbalance_ma`` values (NaN while warming up)
flow_names                 VARCHAR[]        ``order_flow_metrics`` keys, in order
flow_values                DOUBLE[]         ``order_flow_metrics`` values
=========================  ===============  =================================================

Values round-trip bit for bit (NaN included); the mappings keep their key order. An upsert
compares each incoming row with the stored one of the same key: equal rows (DuckDB compares
NaN as equal to NaN) are left untouched whatever their source, differing ones are replaced,
new ones inserted, all inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.data.series import WriteResult
from pivotal.data.upserts import drop_view

__all__ = [
    "COB_DDL",
    "COBArrays",
    "cob_symbols",
    "decode_cob",
    "decode_cob_arrays",
    "empty_cob_table",
    "encode_cob",
    "select_cob",
    "upsert_cob",
]

COB_DDL = """
CREATE TABLE IF NOT EXISTS cob_snapshots (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    current_price DOUBLE NOT NULL,
    bucket_size DOUBLE NOT NULL,
    bucket_prices DOUBLE[] NOT NULL,
    bid_volume DOUBLE[] NOT NULL,
    ask_volume DOUBLE[] NOT NULL,
    imbalance DOUBLE[] NOT NULL,
    volume_weighted_prices DOUBLE[] NOT NULL,
    ma_windows INTEGER[] NOT NULL,
    ma_values DOUBLE[][] NOT NULL,
    flow_names VARCHAR[] NOT NULL,
    flow_values DOUBLE[] NOT NULL,
    source VARCHAR NOT NULL DEFAULT ''
);
"""

_ARRAYS = ("bucket_prices", "bid_volume", "ask_volume", "imbalance", "volume_weighted_prices")
_VALUES = (
    "current_price",
    "bucket_size",
    *_ARRAYS,
    "ma_windows",
    "ma_values",
    "flow_names",
    "flow_values",
)
_COLUMNS = ("ts", *_VALUES)
_ARROW_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("current_price", pa.float64()),
        ("bucket_size", pa.float64()),
        *[(c, pa.list_(pa.float64())) for c in _ARRAYS],
        ("ma_windows", pa.list_(pa.int32())),
        ("ma_values", pa.list_(pa.list_(pa.float64()))),
        ("flow_names", pa.list_(pa.string())),
        ("flow_values", pa.list_(pa.float64())),
        ("source", pa.string()),
    ]
)


def empty_cob_table() -> pa.Table:
    """No rows, in the layout :func:`select_cob` returns (a store without the table)."""
    return _ARROW_SCHEMA.empty_table()


@dataclass(frozen=True, slots=True)
class COBArrays:
    """Stored snapshots of one symbol as arrays, one row per snapshot (oldest first).

    ``timestamp`` (n,) int64 UTC ms; ``current_price``/``bucket_size`` (n,); the per-bucket
    fields (n, buckets); ``imbalance_ma`` {window s: (n, central buckets)} with NaN while
    warming up; ``order_flow_metrics`` {name: (n,)} over the names of every row, NaN where a
    row lacks the name; ``source`` (n,) object array of labels. Every snapshot of a columnar
    read must share its bucket count and window set (a configuration change inside the range
    is refused: read it as a list with ``read_cob``). Arrays are read-only views of the
    columns read.
    """

    symbol: Symbol
    timestamp: npt.NDArray[np.int64]
    current_price: npt.NDArray[np.float64]
    bucket_size: npt.NDArray[np.float64]
    bucket_prices: npt.NDArray[np.float64]
    bid_volume: npt.NDArray[np.float64]
    ask_volume: npt.NDArray[np.float64]
    imbalance: npt.NDArray[np.float64]
    volume_weighted_prices: npt.NDArray[np.float64]
    imbalance_ma: dict[int, npt.NDArray[np.float64]]
    order_flow_metrics: dict[str, npt.NDArray[np.float64]]
    source: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.timestamp)


# -- encoding -----------------------------------------------------------------------------
def _list(values: npt.NDArray, lengths: npt.NDArray[np.int64], value_type: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _float_list(arrays: Sequence[npt.NDArray[np.float64]]) -> pa.Array:
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return _list(flat.astype(np.float64, copy=False), lengths, pa.float64())


def _ma_vectors(snap: COBData) -> list[npt.NDArray[np.float64]]:
    out = []
    for window, values in snap.imbalance_ma.items():
        array = values
        if type(array) is not np.ndarray or array.dtype != np.float64:
            array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise DataError(
                f"COB snapshot {snap.symbol} at {snap.timestamp}: imbalance_ma[{window}] must be "
                f"a 1-D array, got shape {array.shape}"
            )
        out.append(array)
    return out


def encode_cob(symbol: Symbol, snapshots: Sequence[COBData]) -> pa.Table:
    """Validate ``snapshots`` of ``symbol`` and lay them out as the table's columns (sorted by
    time). Raises ``DataError`` for an object that is not ``COBData``, a snapshot of another
    symbol, two snapshots with one timestamp, or an ``imbalance_ma`` value that is not 1-D."""
    for i, snap in enumerate(snapshots):
        if not isinstance(snap, COBData):
            raise DataError(f"COB snapshot {i} is a {type(snap).__name__}, not COBData")
        if snap.symbol != symbol:
            raise DataError(
                f"COB snapshot at {snap.timestamp} is of {snap.symbol}, written under {symbol}; "
                "write each symbol's snapshots under its own symbol"
            )
    ts = np.fromiter((s.timestamp for s in snapshots), dtype=np.int64, count=len(snapshots))
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    repeated = np.flatnonzero(ts[1:] == ts[:-1])
    if len(repeated):
        raise DataError(
            f"{len(repeated)} COB snapshots of {symbol} repeat a timestamp (first "
            f"{ts[repeated[0]]}); write one snapshot per timestamp"
        )
    snaps = [snapshots[i] for i in order]
    columns: dict[str, pa.Array | npt.NDArray] = {"ts": ts}
    columns["current_price"] = np.array([s.current_price for s in snaps], dtype=np.float64)
    columns["bucket_size"] = np.array([s.bucket_size for s in snaps], dtype=np.float64)
    for name in _ARRAYS:
        columns[name] = _float_list([getattr(s, name) for s in snaps])
    ma = [_ma_vectors(s) for s in snaps]
    counts = np.fromiter((len(m) for m in ma), dtype=np.int64, count=len(ma))
    windows = np.fromiter((w for s in snaps for w in s.imbalance_ma), dtype=np.int64)
    columns["ma_windows"] = _list(windows.astype(np.int32), counts, pa.int32())
    inner = _float_list([v for m in ma for v in m])
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    columns["ma_values"] = pa.ListArray.from_arrays(pa.array(offsets), inner)
    flow_counts = np.fromiter(
        (len(s.order_flow_metrics) for s in snaps), dtype=np.int64, count=len(snaps)
    )
    names = [str(k) for s in snaps for k in s.order_flow_metrics]
    values = np.fromiter(
        (float(v) for s in snaps for v in s.order_flow_metrics.values()), dtype=np.float64
    )
    columns["flow_names"] = _list(names, flow_counts, pa.string())  # type: ignore[arg-type]
    columns["flow_values"] = _list(values, flow_counts, pa.float64())
    return pa.table(columns)


# -- writing ------------------------------------------------------------------------------
def upsert_cob(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: Symbol, incoming: pa.Table, source: str
) -> WriteResult:
    """Upsert the encoded snapshots inside the caller's open transaction (see the module
    docstring); the caller commits or rolls back."""
    if not incoming.num_rows:
        return WriteResult(0, 0, 0)
    ts = incoming.column("ts").to_numpy()
    key = [exchange, str(symbol)]
    differs = " OR ".join(f"i.{c} IS DISTINCT FROM s.{c}" for c in _VALUES)
    con.register("incoming_cob", incoming)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE stored_cob AS SELECT * FROM cob_snapshots "
            "WHERE exchange = ? AND symbol = ? AND ts BETWEEN ? AND ?",
            [*key, int(ts[0]), int(ts[-1])],
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE judged_cob AS SELECT i.ts, CASE "
            f"WHEN s.ts IS NULL THEN 'new' WHEN ({differs}) THEN 'changed' ELSE 'same' END "
            f"AS verdict FROM incoming_cob i LEFT JOIN stored_cob s USING (ts)"
        )
        counts = dict(
            con.execute("SELECT verdict, count(*) FROM judged_cob GROUP BY verdict").fetchall()
        )
        if counts.get("changed"):
            con.execute(
                "DELETE FROM cob_snapshots WHERE exchange = ? AND symbol = ? AND ts IN "
                "(SELECT ts FROM judged_cob WHERE verdict = 'changed')",
                key,
            )
        if counts.get("new") or counts.get("changed"):
            cols = ", ".join(f"i.{c}" for c in _COLUMNS)
            con.execute(
                f"INSERT INTO cob_snapshots (exchange, symbol, {', '.join(_COLUMNS)}, source) "
                f"SELECT ?, ?, {cols}, ? FROM incoming_cob i JOIN judged_cob j USING (ts) "
                "WHERE j.verdict IN ('new', 'changed') ORDER BY i.ts",
                [*key, source],
            )
        con.execute("DROP TABLE stored_cob")
        con.execute("DROP TABLE judged_cob")
        con.unregister("incoming_cob")
    except BaseException:
        drop_view(con, "incoming_cob")
        raise
    return WriteResult(
        inserted=int(counts.get("new", 0)),
        updated=int(counts.get("changed", 0)),
        unchanged=int(counts.get("same", 0)),
    )


# -- reading ------------------------------------------------------------------------------
def select_cob(
    con: duckdb.DuckDBPyConnection,
    exchange: str,
    symbol: Symbol,
    lo: int,
    hi: int,
    last: int | None = None,
) -> pa.Table:
    """Stored rows with ``lo <= ts < hi``, oldest first (only the newest ``last`` of them when
    given), as Arrow: the columns of the module docstring plus ``source``."""
    cols = ", ".join((*_COLUMNS, "source"))
    where = "exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4"
    params: list[object] = [exchange, str(symbol), lo, hi]
    if last is None:
        sql = f"SELECT {cols} FROM cob_snapshots WHERE {where} ORDER BY ts"
    else:
        if last < 0:
            raise ValueError(f"last must be >= 0, got {last}")
        sql = (
            f"SELECT * FROM (SELECT {cols} FROM cob_snapshots WHERE {where} "
            f"ORDER BY ts DESC LIMIT {int(last)}) ORDER BY ts"
        )
    return con.sql(sql, params=params).to_arrow_table()


@dataclass(frozen=True, slots=True)
class _Lists:
    """One list column: flat values and per-row offsets (``offsets[i]:offsets[i + 1]``)."""

    values: np.ndarray
    offsets: npt.NDArray[np.int64]

    @classmethod
    def of(cls, column: pa.ChunkedArray | pa.Array) -> _Lists:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = array.offsets.to_numpy().astype(np.int64)
        flat = array.flatten()
        values = (
            flat.to_numpy(zero_copy_only=False)
            if not pa.types.is_list(flat.type)
            else _Lists.of(flat)
        )
        return cls(values, offsets - offsets[0])  # type: ignore[arg-type]

    def rows(self) -> Iterator[np.ndarray]:
        """Each row's values (views), uniform widths reshaped in one step."""
        n = len(self.offsets) - 1
        lengths = np.diff(self.offsets)
        if n and (lengths == lengths[0]).all():
            yield from (
                self.values.reshape(n, int(lengths[0])) if lengths[0] else [self.values[:0]] * n
            )
            return
        for i in range(n):
            yield self.values[self.offsets[i] : self.offsets[i + 1]]

    def width(self, what: str) -> int:
        """The one length of every row; ``DataError`` when their lengths differ."""
        lengths = np.diff(self.offsets)
        if len(lengths) and not (lengths == lengths[0]).all():
            raise DataError(
                f"stored COB snapshots differ in their {what} ({sorted(set(lengths.tolist()))}) "
                "within the range; read them as a list (read_cob) or narrow the range"
            )
        return int(lengths[0]) if len(lengths) else 0

    def matrix(self, what: str) -> np.ndarray:
        """The rows as one 2-D array; ``DataError`` when their lengths differ."""
        return self.values.reshape(len(self.offsets) - 1, self.width(what))  # type: ignore[union-attr]


def decode_cob(table: pa.Table, symbol: Symbol) -> list[COBData]:
    """The rows of :func:`select_cob` as ``COBData``. Their arrays are read-only views into
    the columns read (no copy per snapshot); copy one to change it."""
    n = table.num_rows
    if not n:
        return []
    ts = table.column("ts").to_numpy()
    price = table.column("current_price").to_numpy()
    size = table.column("bucket_size").to_numpy()
    arrays = [_Lists.of(table.column(c)).rows() for c in _ARRAYS]
    windows = _Lists.of(table.column("ma_windows"))
    ma = _Lists.of(table.column("ma_values"))
    ma_rows = ma.values.rows()  # type: ignore[union-attr]  # nested lists
    names = _Lists.of(table.column("flow_names"))
    values = _Lists.of(table.column("flow_values"))
    win_list = windows.values.tolist()
    name_list = names.values.tolist()
    value_list = values.values.tolist()
    out = []
    for i in range(n):
        a, b = int(windows.offsets[i]), int(windows.offsets[i + 1])
        f, g = int(names.offsets[i]), int(names.offsets[i + 1])
        out.append(
            COBData(
                symbol=symbol,
                timestamp=int(ts[i]),
                current_price=float(price[i]),
                bucket_size=float(size[i]),
                bucket_prices=next(arrays[0]),
                bid_volume=next(arrays[1]),
                ask_volume=next(arrays[2]),
                imbalance=next(arrays[3]),
                volume_weighted_prices=next(arrays[4]),
                imbalance_ma={w: next(ma_rows) for w in win_list[a:b]},
                order_flow_metrics=dict(zip(name_list[f:g], value_list[f:g], strict=True)),
            )
        )
    return out


def decode_cob_arrays(table: pa.Table, symbol: Symbol) -> COBArrays:
    """The rows of :func:`select_cob` as :class:`COBArrays` (see its docstring)."""
    n = table.num_rows
    matrices = {c: _Lists.of(table.column(c)).matrix("bucket counts") for c in _ARRAYS}
    windows = _Lists.of(table.column("ma_windows")).matrix("imbalance windows")
    if n and not (windows == windows[0]).all():
        raise DataError(
            "stored COB snapshots differ in their imbalance windows within the range; read "
            "them as a list (read_cob) or narrow the range"
        )
    ma = _Lists.of(table.column("ma_values"))
    count = ma.width("imbalance windows")
    inner: _Lists = ma.values  # type: ignore[assignment]  # nested lists
    flat = inner.matrix("central bucket counts")  # (n * windows, central buckets)
    stacked = flat.reshape(n, count, flat.shape[1])
    imbalance_ma = {int(w): stacked[:, j, :] for j, w in enumerate(windows[0] if n else [])}
    names = _Lists.of(table.column("flow_names"))
    values = _Lists.of(table.column("flow_values"))
    row_of = np.repeat(np.arange(n), np.diff(names.offsets))
    flow: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(names.values.tolist()):
        pick = names.values == name
        column = np.full(n, np.nan)
        column[row_of[pick]] = values.values[pick]
        flow[str(name)] = column
    return COBArrays(
        symbol=symbol,
        timestamp=table.column("ts").to_numpy(),
        current_price=table.column("current_price").to_numpy(),
        bucket_size=table.column("bucket_size").to_numpy(),
        imbalance_ma=imbalance_ma,
        order_flow_metrics=flow,
        source=table.column("source").to_numpy(zero_copy_only=False).astype(object),
        **matrices,
    )


def cob_symbols(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, int, int]]:
    """(exchange, symbol, snapshots, first, last) for every stored COB series."""
    rows = con.execute(
        "SELECT exchange, symbol, count(*), min(ts), max(ts) FROM cob_snapshots "
        "GROUP BY exchange, symbol ORDER BY exchange, symbol"
    ).fetchall()
    return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]
