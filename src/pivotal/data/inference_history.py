"""Inference history: every orchestrator decision with its complete input package, the models'
outputs, confidences and hidden states, compressed, in the market-data store's DuckDB file
(seed 003 §4.5 "Inference History Storage" and "Storage Management").

Table ``inference_history``, one row per record: ``id`` (append order), ``symbol``, ``ts``
(decision step close time, UTC ms), ``action``, ``confidence``, ``models`` (``VARCHAR[]``;
a query by model filters it in SQL with ``list_contains``), ``bytes`` (payload length, what
retention counts), ``raw_bytes`` (before compression) and ``payload``. Its schema version is
the ``inference_history_version`` key of the store's ``meta`` table. Records are appended,
never replaced: deciding the same step twice (a re-run) stores two records, ordered by
append order. No index: the time filter uses DuckDB's per-row-group min/max (records arrive
in time order), and indexes would slow appends and deletes. The payload column is stored
uncompressed by DuckDB (``USING COMPRESSION uncompressed``, tables created since issue 14):
payloads are compressed already, and DuckDB's own zstd pass over them at every checkpoint
cost more CPU than the rest of the insert and saved nothing.

Payloads: :mod:`pivotal.data.inference_payload` (format version 2: a JSON header and the
arrays as byte planes, zstd-compressed; version 1, zlib, is still read; nothing is ever
unpickled). Records and their rules:
:mod:`pivotal.data.inference_record` (non-finite floats of the JSON parts come back as
``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pivotal.core.errors import OperationalError
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_payload import (
    MAX_LEVEL,
    EncodedRecord,
    decode_payload,
    pack_bodies,
    payload_bodies,
    payload_header,
    record_arrays,
)
from pivotal.data.inference_record import InferenceRecord, check_record

__all__ = [
    "HISTORY_SCHEMA_VERSION",
    "InferenceHistory",
    "InferenceRecord",
    "RetentionReport",
]

log = logging.getLogger(__name__)

HISTORY_SCHEMA_VERSION = 1
_META_KEY = "inference_history_version"
_SUMMARY = "ts AS timestamp, symbol, action, confidence, models, bytes, raw_bytes"

# records whose newer-or-same records (by time, then append order) exceed the byte budget
_OVER_BUDGET = (
    "id IN (SELECT id FROM (SELECT id, sum(bytes) OVER (ORDER BY ts DESC, id DESC ROWS BETWEEN "
    "UNBOUNDED PRECEDING AND CURRENT ROW) AS newer FROM inference_history) WHERE newer > ?)"
)

_TABLE = """
CREATE {kind} IF NOT EXISTS inference_history (
    id BIGINT NOT NULL,
    symbol VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    action VARCHAR NOT NULL,
    confidence DOUBLE NOT NULL,
    models VARCHAR[] NOT NULL,
    bytes BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    payload BLOB USING COMPRESSION uncompressed NOT NULL
);
"""
_SCHEMA = "CREATE SEQUENCE IF NOT EXISTS inference_history_id_seq;" + _TABLE.format(kind="TABLE")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What :meth:`InferenceHistory.apply_retention` did. Bytes are payload bytes."""

    deleted_by_age: int
    deleted_by_size: int
    kept: int
    bytes_kept: int
    bytes_freed: int

    @property
    def deleted(self) -> int:
        return self.deleted_by_age + self.deleted_by_size


class InferenceHistory:
    """The inference history in ``store``'s database (module docstring).

        Creates its table on first use (idempotent); every call runs in one store transaction
        under the store's lock, so it may share the store with candle reads and writes. On a
        read-only store that has no history yet, reads find nothing and writes raise
        ``OperationalError``. ``compression_level``: zstd level 0 (stored) to 22 (smallest); 3, the
    default, is fast and within a few per cent of the smallest on float windows.
    """

    def __init__(self, store: DuckDBStore, *, compression_level: int = 3) -> None:
        if (
            isinstance(compression_level, bool)
            or not isinstance(compression_level, int)
            or not 0 <= compression_level <= MAX_LEVEL
        ):
            raise ValueError(
                f"compression_level must be an int in 0..{MAX_LEVEL}, got {compression_level!r}"
            )
        self._store = store
        self.compression_level = compression_level
        self._read_only = False
        with store.transaction() as con:
            exists = _table_exists(con)
        if not exists:
            try:
                with store.transaction() as con:
                    con.execute(_SCHEMA)
                    con.execute(
                        "INSERT INTO meta VALUES (?, ?) ON CONFLICT DO NOTHING",
                        [_META_KEY, str(HISTORY_SCHEMA_VERSION)],
                    )
            except duckdb.InvalidInputException as exc:
                if "read-only" not in str(exc):
                    raise
                # a read-only store that never had a history: reads see an empty temp table
                self._read_only = True
                with store.transaction() as con:
                    con.execute(_TABLE.format(kind="TEMP TABLE"))
        with store.transaction() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", [_META_KEY]).fetchall()
        if row and int(row[0][0]) > HISTORY_SCHEMA_VERSION:
            raise OperationalError(
                f"the inference history in {store.path} has schema version {row[0][0]}, newer "
                f"than this pivotal understands ({HISTORY_SCHEMA_VERSION}); upgrade pivotal"
            )

    # -- writing --------------------------------------------------------------------------

    def appending(self) -> AbstractContextManager[None]:
        """The store's streaming-append block (:meth:`DuckDBStore.appending`), which a
        :class:`~pivotal.orchestrator.history_writer.HistoryWriter` holds while it writes."""
        return self._store.appending()

    def append(self, records: Sequence[InferenceRecord]) -> int:
        """Store ``records`` in one transaction (all or nothing); returns how many.

        Every record is checked and encoded before the transaction starts: a bad one raises
        ``ValueError`` naming its position, symbol, time and the offending field, and nothing
        is written. An :class:`~pivotal.data.inference_payload.EncodedRecord` was checked and
        its header encoded when it was built; it is stored as it was then. The batch's byte
        planes are made together and it is compressed in one call
        (:func:`~pivotal.data.inference_payload.pack_bodies`). A failing insert rolls the
        whole batch back.
        """
        records = list(records)
        if not records:
            return 0
        self._writable()
        headers: list[bytes] = []
        arrays: list[list[np.ndarray]] = []
        for i, record in enumerate(records):
            if not isinstance(record, InferenceRecord):
                raise TypeError(
                    f"item {i} of the batch is a {type(record).__name__}, not an "
                    "InferenceRecord; nothing was written"
                )
            if isinstance(record, EncodedRecord) and record.header is not None:
                headers.append(record.header)  # as it was built: checked and encoded then
                arrays.append(list(record.arrays))
                continue
            try:
                check_record(record)
                headers.append(payload_header(record))
            except ValueError as exc:
                raise ValueError(
                    f"inference record {i} of {len(records)} ({record.symbol} @ "
                    f"{record.timestamp}): {exc}; nothing was written"
                ) from None
            arrays.append(record_arrays(record))
        bodies = payload_bodies(headers, arrays)
        payloads, sizes = pack_bodies(bodies, self.compression_level)
        raw = [len(body) - 4 for body in bodies]  # header and arrays, before compression
        with self._store.transaction() as con:
            ids = sorted(
                int(r[0])
                for r in con.execute(
                    "SELECT nextval('inference_history_id_seq') FROM range(?)", [len(records)]
                ).fetchall()
            )
            # a failing insert rolls the transaction back
            table = _frame(ids, records, payloads, sizes, raw)
            con.from_arrow(table).insert_into("inference_history")
        return len(records)

    # -- reading --------------------------------------------------------------------------
    def query(
        self,
        *,
        symbol: str | None = None,
        model: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[InferenceRecord]:
        """Records matching every given filter, decoded: ``symbol`` (exact), ``model`` (the
        record holds an output, hidden state or tensor of it), decision time in ``[since,
        until)`` (UTC ms). Ordered by time then append order, oldest first (newest first when
        ``descending``); ``limit`` keeps the first ``limit`` of that order."""
        sql, params = _select(
            "symbol, ts, action, confidence, payload", symbol, model, since, until
        )
        sql += _order(limit, descending, params)
        with self._store.transaction() as con:
            rows = con.execute(sql, params).fetchall()
        return [decode_payload(*row) for row in rows]

    def summary(
        self,
        *,
        symbol: str | None = None,
        model: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> pd.DataFrame:
        """One row per matching record (filters and order as :meth:`query`) without decoding
        payloads: ``timestamp`` (UTC ms), ``symbol``, ``action``, ``confidence``, ``models``
        (tuple of names), ``bytes`` (stored payload) and ``raw_bytes`` (before compression)."""
        sql, params = _select(_SUMMARY, symbol, model, since, until)
        sql += _order(limit, descending, params)
        with self._store.transaction() as con:
            frame = con.execute(sql, params).df()
        frame["models"] = [tuple(m) for m in frame["models"]]
        return frame.astype({"timestamp": "int64", "bytes": "int64", "raw_bytes": "int64"})

    def count(
        self,
        *,
        symbol: str | None = None,
        model: str | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> int:
        """How many records match (filters as :meth:`query`)."""
        sql, params = _select("count(*)", symbol, model, since, until)
        with self._store.transaction() as con:
            return int(con.execute(sql, params).fetchall()[0][0])

    def spans(self, *, model: str | None = None) -> list[tuple[str, int, int, int]]:
        """What the history holds per symbol: ``(symbol, first ts, last ts, records)``,
        by symbol; with ``model``, only records that model took part in."""
        sql, params = _select("symbol, min(ts), max(ts), count(*)", None, model, None, None)
        with self._store.transaction() as con:
            rows = con.execute(sql + " GROUP BY symbol ORDER BY symbol", params).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def model_names(self, *, symbol: str | None = None) -> list[str]:
        """The models that took part in the stored records (of ``symbol``), sorted."""
        sql, params = _select("DISTINCT unnest(models)", symbol, None, None, None)
        with self._store.transaction() as con:
            rows = con.execute(sql, params).fetchall()
        return sorted(str(r[0]) for r in rows)

    def size_bytes(self) -> int:
        """Total stored payload bytes (what ``max_bytes`` retention counts). The database
        file is larger (row metadata) and does not shrink on delete: DuckDB reuses the
        freed blocks."""
        with self._store.transaction() as con:
            row = con.execute("SELECT coalesce(sum(bytes), 0) FROM inference_history").fetchall()
        return int(row[0][0])

    # -- storage management ---------------------------------------------------------------
    def apply_retention(
        self, *, now_ms: int, max_age_ms: int | None = None, max_bytes: int | None = None
    ) -> RetentionReport:
        """Delete records decided before ``now_ms - max_age_ms`` (a record exactly
        ``max_age_ms`` old is kept), then the oldest records until the payload bytes of the
        rest are at most ``max_bytes`` (the newest are kept; a record is never kept while an
        older one is deleted). One transaction. ``None`` disables a rule."""
        now_ms = _int(now_ms, "now_ms")
        if max_age_ms is not None and _int(max_age_ms, "max_age_ms") < 0:
            raise ValueError(f"max_age_ms must be >= 0 or None, got {max_age_ms}")
        if max_bytes is not None and _int(max_bytes, "max_bytes") < 0:
            raise ValueError(f"max_bytes must be >= 0 or None, got {max_bytes}")
        self._writable()
        totals = "SELECT count(*), coalesce(sum(bytes), 0) FROM inference_history"
        by_age = by_size = 0
        with self._store.transaction() as con:
            before = int(con.execute(totals).fetchall()[0][1])
            if max_age_ms is not None:
                by_age = _deleted(con, "ts < ?", now_ms - int(max_age_ms))
            if max_bytes is not None:
                by_size = _deleted(con, _OVER_BUDGET, int(max_bytes))
            kept, after = (int(v) for v in con.execute(totals).fetchall()[0])
        report = RetentionReport(by_age, by_size, kept, after, before - after)
        if report.deleted:
            log.info("inference history retention: %s", report)
        return report

    def _writable(self) -> None:
        if self._read_only:
            raise OperationalError(
                f"the store {self._store.path} was opened read-only and has no inference "
                "history yet; open it writable to store decisions or apply retention"
            )


# -- SQL helpers ------------------------------------------------------------------------------
def _deleted(con: duckdb.DuckDBPyConnection, condition: str, value: int) -> int:
    return int(
        con.execute(f"DELETE FROM inference_history WHERE {condition}", [value]).fetchall()[0][0]
    )


def _table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'inference_history'"
    ).fetchall()
    return bool(rows[0][0])


def _frame(
    ids: list[int],
    records: list[InferenceRecord],
    payloads: bytes,
    sizes: list[int],
    raw: list[int],
) -> pa.Table:
    """The rows to insert, columns in table order; the payload column is ``payloads`` (the
    records' payloads back to back, ``sizes`` bytes each) as it is (``pa.array`` of many
    ``bytes`` objects is several times slower)."""
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    payload = pa.Array.from_buffers(
        pa.large_binary(), len(sizes), [None, pa.py_buffer(offsets), pa.py_buffer(payloads)]
    )
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "symbol": pa.array([r.symbol for r in records], pa.string()),
            "ts": pa.array([r.timestamp for r in records], pa.int64()),
            "action": pa.array([r.action for r in records], pa.string()),
            "confidence": pa.array([r.confidence for r in records], pa.float64()),
            "models": pa.array([list(r.models) for r in records], pa.list_(pa.string())),
            "bytes": pa.array(sizes, pa.int64()),
            "raw_bytes": pa.array(raw, pa.int64()),
            "payload": payload,
        }
    )


def _select(
    columns: str, symbol: str | None, model: str | None, since: int | None, until: int | None
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for name, value, clause in (
        ("symbol", symbol, "symbol = ?"),
        ("model", model, "list_contains(models, ?)"),
    ):
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a str or None, got {type(value).__name__}")
            clauses.append(clause)
            params.append(value)
    if since is not None:
        clauses.append("ts >= ?")
        params.append(_int(since, "since"))
    if until is not None:
        clauses.append("ts < ?")
        params.append(_int(until, "until"))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT {columns} FROM inference_history{where}", params


def _order(limit: int | None, descending: bool, params: list[object]) -> str:
    direction = "DESC" if descending else "ASC"
    sql = f" ORDER BY ts {direction}, id {direction}"
    if limit is not None:
        if _int(limit, "limit") < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        sql += " LIMIT ?"
        params.append(int(limit))
    return sql


def _int(value: object, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int (UTC ms / count), got {type(value).__name__}")
    return int(value)
