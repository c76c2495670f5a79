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
in time order), and indexes would slow appends and deletes.

Payload format (version 1): ``PIH1`` | n (u32, little-endian) | header (n bytes) | arrays.
The header is UTF-8 JSON deflated by zlib at ``compression_level``: ``decision``, ``outputs``,
``input`` and, for ``hidden`` and ``tensors``, model → ``[[name, dtype.str, shape], ...]`` in
insertion order. The arrays part is one zlib stream (same level, run-length strategy):
arrays are grouped by element size (groups and members in header order) and each group is
stored as byte planes (byte 0 of every element of every member in C order, then byte 1, ...;
the HDF5/Blosc "shuffle" filter), a plane of at least 1 KiB closing its own deflate block so
that it gets its own Huffman code. On float32 tensors this is ~7-9% smaller than plain zlib
(exponent bytes compress, mantissa bytes barely) and deflates ~2x faster; runs (padding,
zeros) still collapse. Decoding parses JSON and calls
``np.frombuffer``; nothing is ever unpickled. Arrays come back with the same dtype (byte
order included), shape and bytes, writable, in C order (a Fortran-ordered array comes back
equal but C-contiguous).

JSON parts (``decision``, ``outputs``, ``input``) may hold mappings, lists, tuples, str, int,
float, bool, None, numpy scalars and numeric numpy arrays. They come back as JSON does:
tuples and arrays as lists, non-str mapping keys as strings. **Non-finite floats (NaN, ±inf)
are stored as ``null`` and come back as ``None``**: JSON has no NaN, and ``null`` keeps the
payload readable by any JSON tool.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pivotal.core.errors import DataError, OperationalError
from pivotal.core.types import Action
from pivotal.data.duckdb_store import DuckDBStore

__all__ = [
    "HISTORY_SCHEMA_VERSION",
    "InferenceHistory",
    "InferenceRecord",
    "RetentionReport",
]

log = logging.getLogger(__name__)

HISTORY_SCHEMA_VERSION = 1
_META_KEY = "inference_history_version"
_MAGIC = b"PIH1"
_TS_LIMIT = 2**62
_MAX_THREADS = 8  # compression threads for one append
_PER_THREAD = 16  # records per thread below which a batch is compressed inline
_PLANE_BLOCK = 1024  # byte planes at least this long get their own deflate block
_ARRAY_KINDS = frozenset("biufcmMSU")  # bool, ints, floats, complex, datetimes, fixed strings
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
    payload BLOB NOT NULL
);
"""
_SCHEMA = "CREATE SEQUENCE IF NOT EXISTS inference_history_id_seq;" + _TABLE.format(kind="TABLE")

ArrayParts = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True, slots=True, eq=False)
class InferenceRecord:
    """One orchestrator decision and everything behind it.

    ``symbol``: the traded symbol as the orchestrator names it (queries match it exactly).
    ``timestamp``: close time of the decision step's base bar, UTC ms (an int).
    ``action``: the decided action (BUY/SELL/HOLD/CLOSE; stored upper case).
    ``confidence``: the decision's confidence (finite). ``decision``: the gate's details
    (probabilities, gate, reason, contributions, skipped, ...). ``outputs``: per model, its
    output as plain data (model_type, confidence, action, predictions, metadata).
    ``hidden``: per model, its hidden states as arrays. ``tensors``: per model, the exact
    arrays its network read. ``input``: the input package summary (window bounds per
    timeframe, indicators, pivots, last predictions, microstructure). JSON parts follow the
    module's rules (NaN → ``None``); arrays must be numpy arrays of a numeric, bool,
    datetime or fixed-width string dtype. Built records are checked; their mappings are not
    copied, so do not mutate them afterwards.
    """

    symbol: str
    timestamp: int
    action: str
    confidence: float
    decision: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hidden: ArrayParts = field(default_factory=dict)
    tensors: ArrayParts = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(
                f"inference record: symbol must be a non-empty str, got {self.symbol!r}"
            )
        where = f"inference record {self.symbol}"
        ts = self.timestamp
        if isinstance(ts, bool | np.bool_) or not isinstance(ts, int | np.integer):
            raise ValueError(
                f"{where}: timestamp must be an int of UTC milliseconds, got "
                f"{type(ts).__name__} {ts!r}"
            )
        if not -_TS_LIMIT < int(ts) < _TS_LIMIT:
            raise ValueError(f"{where}: timestamp {ts} is out of range (UTC milliseconds)")
        object.__setattr__(self, "timestamp", int(ts))
        where = f"inference record {self.symbol} @ {self.timestamp}"
        try:
            object.__setattr__(self, "action", Action.parse(self.action).value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        conf = self.confidence
        if isinstance(conf, bool | np.bool_) or not isinstance(
            conf, int | float | np.integer | np.floating
        ):
            raise ValueError(
                f"{where}: confidence must be a number, got {type(conf).__name__} {conf!r}"
            )
        if not math.isfinite(float(conf)):
            raise ValueError(f"{where}: confidence must be finite, got {conf!r}")
        object.__setattr__(self, "confidence", float(conf))
        _check_parts(self, f"{where}: ")

    @property
    def models(self) -> tuple[str, ...]:
        """Models the record holds anything of: ``outputs`` keys, then new ``tensors`` and
        ``hidden`` keys, in order of first appearance."""
        return tuple(dict.fromkeys([*self.outputs, *self.tensors, *self.hidden]))


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
    ``OperationalError``. ``compression_level``: zlib level 0 (stored) to 9 (smallest).
    """

    def __init__(self, store: DuckDBStore, *, compression_level: int = 6) -> None:
        if (
            isinstance(compression_level, bool)
            or not isinstance(compression_level, int)
            or not 0 <= compression_level <= 9
        ):
            raise ValueError(f"compression_level must be an int in 0..9, got {compression_level!r}")
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
    def append(self, records: Sequence[InferenceRecord]) -> int:
        """Store ``records`` in one transaction (all or nothing); returns how many.

        Every record is checked and encoded before the transaction starts: a bad one raises
        ``ValueError`` naming its position, symbol, time and the offending field, and nothing
        is written. A failing insert rolls the whole batch back.
        """
        records = list(records)
        if not records:
            return 0
        self._writable()
        headers: list[bytes] = []
        for i, record in enumerate(records):
            if not isinstance(record, InferenceRecord):
                raise TypeError(
                    f"item {i} of the batch is a {type(record).__name__}, not an "
                    "InferenceRecord; nothing was written"
                )
            try:
                _check_parts(record, "")
                headers.append(_header(record))
            except ValueError as exc:
                raise ValueError(
                    f"inference record {i} of {len(records)} ({record.symbol} @ "
                    f"{record.timestamp}): {exc}; nothing was written"
                ) from None
        payloads = _pack_all(headers, records, self.compression_level)
        raw = [
            len(h) + sum(a.nbytes for a in _arrays(r))
            for h, r in zip(headers, records, strict=True)
        ]
        with self._store.transaction() as con:
            ids = sorted(
                int(r[0])
                for r in con.execute(
                    "SELECT nextval('inference_history_id_seq') FROM range(?)", [len(records)]
                ).fetchall()
            )
            # a failing insert rolls the transaction back
            con.from_arrow(_frame(ids, records, payloads, raw)).insert_into("inference_history")
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
        return [_decode(*row) for row in rows]

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


# -- validation -------------------------------------------------------------------------------
def _check_parts(record: InferenceRecord, where: str) -> None:
    for name in ("decision", "input"):
        if not isinstance(getattr(record, name), Mapping):
            raise ValueError(
                f"{where}{name} must be a mapping, got {type(getattr(record, name)).__name__}"
            )
    if not isinstance(record.outputs, Mapping):
        raise ValueError(f"{where}outputs must map model name → output mapping")
    for model, output in record.outputs.items():
        _check_name(model, f"{where}outputs")
        if not isinstance(output, Mapping):
            raise ValueError(
                f"{where}outputs[{model!r}] must be a mapping (model_type, confidence, "
                f"action, predictions, metadata), got {type(output).__name__}"
            )
    for part in ("hidden", "tensors"):
        models = getattr(record, part)
        if not isinstance(models, Mapping):
            raise ValueError(f"{where}{part} must map model name → {{name: numpy array}}")
        for model, arrays in models.items():
            _check_name(model, f"{where}{part}")
            if not isinstance(arrays, Mapping):
                raise ValueError(
                    f"{where}{part}[{model!r}] must map array name → numpy array, got "
                    f"{type(arrays).__name__}"
                )
            for name, array in arrays.items():
                _check_array(array, name, f"{where}{part}[{model!r}]")


def _check_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: keys must be non-empty str names, got {name!r}")


def _check_array(array: object, name: object, where: str) -> None:
    _check_name(name, where)
    if not isinstance(array, np.ndarray):
        raise ValueError(
            f"{where}[{name!r}] is a {type(array).__name__}, not a numpy array; convert it "
            "(np.asarray; a torch tensor: .detach().cpu().numpy())"
        )
    dtype = array.dtype
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise ValueError(
            f"{where}[{name!r}] has dtype {dtype}, which cannot be stored without pickling; "
            "use a numeric, bool, datetime or fixed-width string dtype"
        )


# -- payload codec ----------------------------------------------------------------------------
def _header(record: InferenceRecord) -> bytes:
    """The JSON header of one record's payload; ``ValueError`` naming the field that JSON
    cannot hold."""
    return _dumps(
        {
            "decision": record.decision,
            "outputs": record.outputs,
            "input": record.input,
            "hidden": _layout(record.hidden),
            "tensors": _layout(record.tensors),
        }
    )


def _arrays(record: InferenceRecord) -> list[np.ndarray]:
    return [
        a for part in (record.hidden, record.tensors) for m in part.values() for a in m.values()
    ]


def _pack(header: bytes, arrays: list[np.ndarray], level: int) -> bytes:
    """One payload (module docstring: format). Cannot fail on a checked record."""
    packed_header = zlib.compress(header, level)
    deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    body = [_MAGIC, len(packed_header).to_bytes(4, "little"), packed_header]
    for itemsize, members in _by_itemsize(arrays).items():
        flat = [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in members]
        planes = np.concatenate(flat).reshape(-1, itemsize).T.copy()
        for plane in planes:
            body.append(deflate.compress(plane))
            if len(plane) >= _PLANE_BLOCK:
                body.append(deflate.flush(zlib.Z_BLOCK))
    body.append(deflate.flush())
    return b"".join(body)


def _by_itemsize(arrays: list[Any]) -> dict[int, list[Any]]:
    """``arrays`` (or their slots) grouped by element size, groups and members in order of
    first appearance."""
    groups: dict[int, list[Any]] = {}
    for a in arrays:
        groups.setdefault(a.itemsize, []).append(a)
    return groups


def _pack_all(headers: list[bytes], records: list[InferenceRecord], level: int) -> list[bytes]:
    """Payloads of a batch; large batches on a few threads (zlib and numpy copies release the
    GIL). The bytes are the same either way."""
    jobs = [(h, _arrays(r), level) for h, r in zip(headers, records, strict=True)]
    workers = min(_MAX_THREADS, os.cpu_count() or 1, len(jobs) // _PER_THREAD)
    if workers < 2:
        return [_pack(*job) for job in jobs]
    with ThreadPoolExecutor(workers, thread_name_prefix="inference-history") as pool:
        return list(pool.map(lambda job: _pack(*job), jobs))


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a stored array goes back: ``part[model][name]``, its dtype and shape."""

    part: str
    model: str
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def _unpack_arrays(
    header: dict[str, Any], data: bytes, where: str
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    parts: dict[str, dict[str, dict[str, np.ndarray]]] = {"hidden": {}, "tensors": {}}
    slots = []
    for part, models in parts.items():
        for model, layout in header[part].items():
            models[model] = dict.fromkeys(name for name, _, _ in layout)  # keeps the order
            for name, dtype, shape in layout:
                slots.append(_Slot(part, model, name, np.dtype(dtype), tuple(shape)))
    offset = 0
    for itemsize, members in _by_itemsize(slots).items():
        total = sum(m.count for m in members)
        if offset + total * itemsize > len(data):
            raise DataError(f"{where} is corrupt: the arrays are cut short")
        planes = np.frombuffer(data, np.uint8, total * itemsize, offset).reshape(itemsize, total)
        offset += total * itemsize
        start = 0
        for m in members:
            flat = planes[:, start : start + m.count].T.copy()
            parts[m.part][m.model][m.name] = flat.view(m.dtype).reshape(m.shape)
            start += m.count
    if offset != len(data):
        raise DataError(f"{where} is corrupt: {len(data) - offset} bytes after the last array")
    return parts


def _layout(part: ArrayParts) -> dict[str, list[list[Any]]]:
    return {
        model: [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
        for model, arrays in part.items()
    }


def _dumps(header: dict[str, Any]) -> bytes:
    """Compact JSON; the slow path replaces non-finite floats with null and names the
    offending field of anything that is not JSON-able."""
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"), default=_json_default)
    except (ValueError, TypeError):
        clean = {key: _finite(value, key) for key, value in header.items()}
        text = json.dumps(clean, allow_nan=False, separators=(",", ":"))
    return text.encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    raise TypeError(type(value).__name__)


def _finite(value: Any, path: str) -> Any:
    """``value`` with every non-finite float as None; ``ValueError`` naming ``path`` for
    anything JSON cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key is not None and not isinstance(key, str | int | float | bool):
                raise ValueError(
                    f"{path} has key {key!r} ({type(key).__name__}); JSON keys must be str"
                )
            out[key] = _finite(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_finite(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return _finite(value.tolist(), path)
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return _finite(value.item(), path)
    raise ValueError(
        f"{path} is a {type(value).__name__}, which is not JSON-able; give plain numbers, "
        "str, lists and mappings (arrays belong in hidden or tensors)"
    )


def _decode(
    symbol: str, ts: int, action: str, confidence: float, payload: bytes
) -> InferenceRecord:
    where = f"inference history payload of {symbol} @ {ts}"
    if payload[:4] != _MAGIC:
        raise DataError(f"{where} has unknown format {payload[:4]!r}; written by a newer pivotal?")
    try:
        end = 8 + int.from_bytes(payload[4:8], "little")
        header = json.loads(zlib.decompress(payload[8:end]))
        data = zlib.decompress(payload[end:])
    except (zlib.error, ValueError) as exc:
        raise DataError(f"{where} is corrupt: {exc}") from exc
    try:
        parts = _unpack_arrays(header, data, where)
        return InferenceRecord(
            symbol=symbol,
            timestamp=int(ts),
            action=action,
            confidence=float(confidence),
            decision=header["decision"],
            outputs=header["outputs"],
            hidden=parts["hidden"],
            tensors=parts["tensors"],
            input=header["input"],
        )
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where} is corrupt: {exc!r}") from exc


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
    ids: list[int], records: list[InferenceRecord], payloads: list[bytes], raw: list[int]
) -> pa.Table:
    """The rows to insert, columns in table order; the payload column is built from one
    buffer (``pa.array`` of many ``bytes`` objects is several times slower)."""
    sizes = np.fromiter(map(len, payloads), np.int64, len(payloads))
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    payload = pa.Array.from_buffers(
        pa.large_binary(),
        len(sizes),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(payloads))],
    )
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "symbol": pa.array([r.symbol for r in records], pa.string()),
            "ts": pa.array([r.timestamp for r in records], pa.int64()),
            "action": pa.array([r.action for r in records], pa.string()),
            "confidence": pa.array([r.confidence for r in records], pa.float64()),
            "models": pa.array([list(r.models) for r in records], pa.list_(pa.string())),
            "bytes": pa.array(sizes),
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
