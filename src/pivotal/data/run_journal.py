"""The run journal: a run's equity curve, decisions, events and fills streamed to DuckDB.

A run (backtest, replay, paper or live) records through :class:`RunJournal` instead of
growing lists, so its memory stays flat however long it runs. The journal is the store-backed
``RunRecorder`` of :mod:`pivotal.runtime.recorder` (it matches that protocol structurally;
``data`` does not import ``runtime``).

Writing: rows are encoded when recorded (a bad record raises at the call that recorded it)
and buffered. Every pending row goes to the store in ONE transaction (all streams together,
all or nothing) on :meth:`RunJournal.flush` / :meth:`RunJournal.close`, and by itself once
``batch_size`` rows are pending, at the next equity point: the kernel records equity at the
end of a step, after that step's orders went out, so a write never sits between a decision
and its orders (a run that records no equity writes at ``2 * batch_size`` pending rows).
A crash therefore loses at most the rows recorded since the last write (fewer than
``2 * batch_size``; :attr:`RunJournal.pending` says how many are at risk), never part of a
batch, and the run keeps status ``"open"``. Memory: at most ``2 * batch_size`` encoded rows
are held.

Tables, in the store's database (any :class:`~pivotal.data.duckdb_store.DuckDBStore`; by
default a journal file ``runs.duckdb`` beside the market-data store, see
:func:`open_journal_store`), every row keyed by ``run_id`` and ordered by ``seq`` (its
position in its stream, from 0):

- ``journal_runs``: ``run_id`` (primary key), ``ordinal`` (opening order), ``status``
  (``open`` / ``closed`` / ``failed``), ``meta`` (JSON: what the run was opened with);
- ``journal_equity``: ``run_id``, ``seq``, ``ts`` (UTC ms), ``equity`` (quote currency);
- ``journal_decisions``, ``journal_events``, ``journal_fills``: ``run_id``, ``seq``, ``ts``
  (the record's ``timestamp``, UTC ms, NULL when it has none), ``symbol`` (the record's
  ``symbol`` when a str, else NULL) and ``record`` (the whole record as JSON text).

Records are mappings with str keys whose values are JSON data: str, int, float (NaN and
±inf included: they are written as the ``NaN``/``Infinity`` tokens Python's json reads back),
bool, None, lists/tuples and mappings of those, numpy scalars and arrays (stored as their
Python values and lists). Times are ints of UTC milliseconds, as everywhere in pivotal; a
datetime or pandas Timestamp is refused (convert it with ``Timeframe``/``to_ms`` helpers
first) rather than stored in a form that would not read back as it went in. Tuples read back
as lists. Readers: :mod:`pivotal.data.run_journal_read` (frames, run listing, deletion).

Schema version: ``run_journal_version`` in the store's ``meta`` table.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pivotal.core.errors import OperationalError
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.run_journal_read import (
    EQUITY_TABLE,
    RUNS_TABLE,
    STREAMS,
    JournalCounts,
    RunInfo,
    RunJournalReader,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "JOURNAL_FILE_NAME",
    "JOURNAL_SCHEMA_VERSION",
    "JournalCounts",
    "RunInfo",
    "RunJournal",
    "RunJournalReader",
    "open_journal_store",
]

log = logging.getLogger(__name__)

JOURNAL_SCHEMA_VERSION: Final = 1
JOURNAL_FILE_NAME: Final = "runs.duckdb"
DEFAULT_BATCH_SIZE: Final = 2000
_META_KEY: Final = "run_journal_version"
_TS_LIMIT: Final = 2**62
_MAX_RUN_ID: Final = 200

_RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT,
    symbol VARCHAR,
    record VARCHAR NOT NULL
);
"""
_SCHEMA = f"""
CREATE SEQUENCE IF NOT EXISTS journal_run_ordinal;
CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
    run_id VARCHAR PRIMARY KEY,
    ordinal BIGINT NOT NULL DEFAULT nextval('journal_run_ordinal'),
    status VARCHAR NOT NULL,
    meta VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS {EQUITY_TABLE} (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    equity DOUBLE NOT NULL
);
""" + "".join(_RECORD_TABLE.format(table=t) for t in STREAMS.values())
_RECORD_SCHEMA = pa.schema(
    [("run_id", pa.string()), ("seq", pa.int64()), ("ts", pa.int64()),
     ("symbol", pa.string()), ("record", pa.string())]
)  # fmt: skip
_EQUITY_SCHEMA = pa.schema(
    [("run_id", pa.string()), ("seq", pa.int64()), ("ts", pa.int64()), ("equity", pa.float64())]
)

# a buffered record row: (seq, ts, symbol, JSON text)
_Row = tuple[int, int | None, str | None, str]


def open_journal_store(data_dir: str | Path, *, read_only: bool = False) -> DuckDBStore:
    """The journal file ``runs.duckdb`` under ``data_dir`` (beside the market-data store),
    created when missing unless ``read_only``.

    Runs get their own file so that a long paper/live run writing its journal never holds
    the market-data store's single-writer lock (downloads and imports keep working) and a
    replay may open the market data read-only.
    """
    path = Path(data_dir) / JOURNAL_FILE_NAME
    if read_only and not path.exists():
        raise OperationalError(
            f"no run journal at {path}: no run has been journaled under {data_dir} yet "
            "(run a backtest or a paper run first, or point --data-dir elsewhere)"
        )
    return DuckDBStore(path, read_only=read_only)


class RunJournal:
    """Records one run into ``store`` (module docstring): the store-backed ``RunRecorder``.

    ``run_id``: the run's key (a non-empty str up to 200 characters; None draws a random
    16-hex-digit one, so two runs never collide: pass an id for a name a person can read,
    see :attr:`run_id`). A run id already in the store is refused unless ``resume``, which
    appends to it (after a crash, say; the run's stored ``meta`` is kept), its streams
    continuing their ``seq``; :attr:`RunInfo.last` says where the stored rows end.
    ``batch_size``: rows buffered before they are written (one transaction each, at the
    next equity point, module docstring); 1 writes at every equity point (what a live run
    recording a few rows a minute may want), larger batches cost less per row (measured:
    ~1.7 ms per one-row transaction; ~6 µs per row, encoding included, in batches of
    2,000). ``meta``: JSON data describing the run (strategy, symbols, config...), stored
    with it. Use as a context manager or call :meth:`close`; not
    thread-safe (record from the thread that runs the loop).
    """

    def __init__(
        self,
        store: DuckDBStore,
        run_id: str | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        meta: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        if not isinstance(store, DuckDBStore):
            raise TypeError(
                f"store must be a pivotal.data.duckdb_store.DuckDBStore, got {type(store).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int of at least 1, got {batch_size!r}")
        if run_id is None:
            run_id = uuid.uuid4().hex[:16]
        if not isinstance(run_id, str) or not run_id.strip() or len(run_id) > _MAX_RUN_ID:
            raise ValueError(
                f"run_id must be a non-empty str of at most {_MAX_RUN_ID} characters, "
                f"got {run_id!r}"
            )
        meta_text = _encode_json(dict(meta or {}), "the run's meta")
        self.store = store
        self.run_id = run_id
        self.batch_size = batch_size
        self._reader = RunJournalReader(store)
        self._equity: list[tuple[int, int, float]] = []
        self._records: dict[str, list[_Row]] = {name: [] for name in STREAMS}
        self._pending = 0
        self._written = JournalCounts()
        self._closed = False
        try:
            self._open(meta_text, resume)
        except duckdb.Error as exc:
            raise OperationalError(
                f"cannot open run {run_id!r} in the journal {store.path}: {exc}. Is the store "
                "read-only? Open the journal file for writing (open_journal_store)."
            ) from exc

    def _open(self, meta_text: str, resume: bool) -> None:
        with self.store.transaction() as con:
            con.execute(_SCHEMA)
            con.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT DO NOTHING",
                [_META_KEY, str(JOURNAL_SCHEMA_VERSION)],
            )
            version = con.execute("SELECT value FROM meta WHERE key = ?", [_META_KEY]).fetchall()
            if int(version[0][0]) > JOURNAL_SCHEMA_VERSION:
                raise OperationalError(
                    f"the run journal in {self.store.path} has schema version {version[0][0]}, "
                    f"newer than this pivotal understands ({JOURNAL_SCHEMA_VERSION}); "
                    "upgrade pivotal"
                )
            exists = con.execute(
                f"SELECT count(*) FROM {RUNS_TABLE} WHERE run_id = ?", [self.run_id]
            ).fetchall()[0][0]
            if exists and not resume:
                raise ValueError(
                    f"run {self.run_id!r} is already in the journal {self.store.path}; pick "
                    "another run_id, pass resume=True to append to it, or delete it "
                    "(RunJournalReader.delete_run)"
                )
            if exists:
                con.execute(
                    f"UPDATE {RUNS_TABLE} SET status = 'open' WHERE run_id = ?", [self.run_id]
                )
            else:
                con.execute(
                    f"INSERT INTO {RUNS_TABLE} (run_id, status, meta) VALUES (?, 'open', ?)",
                    [self.run_id, meta_text],
                )
            self._next: dict[str, int] = {}
            for name, table in {"equity": EQUITY_TABLE, **STREAMS}.items():
                row = con.execute(
                    f"SELECT coalesce(max(seq) + 1, 0) FROM {table} WHERE run_id = ?",
                    [self.run_id],
                ).fetchall()
                self._next[name] = int(row[0][0])

    # -- state ----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Rows recorded but not yet written (what a crash now would lose)."""
        return self._pending

    @property
    def written(self) -> JournalCounts:
        """Rows this journal has written so far, per stream."""
        return self._written

    @property
    def closed(self) -> bool:
        return self._closed

    def __del__(self) -> None:
        pending = getattr(self, "_pending", 0)
        if pending and not getattr(self, "_closed", True):
            log.warning(
                "run journal %s was dropped without close(): %d recorded rows were never "
                "written to %s",
                self.run_id, pending, self.store.path,
            )  # fmt: skip

    # -- recording (the RunRecorder protocol) ---------------------------------------------
    def equity(self, t_ms: int, value: float) -> None:
        """Record the account equity ``value`` (quote currency) at ``t_ms`` (UTC ms)."""
        self._check_open()
        ts = _timestamp(t_ms, f"run {self.run_id}: equity point")
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"run {self.run_id}: equity at {ts} must be a number (quote currency), got "
                f"{type(value).__name__} {value!r}"
            )
        seq = self._next["equity"]
        self._next["equity"] = seq + 1
        self._equity.append((seq, ts, float(value)))
        self._pending += 1
        if self._pending >= self.batch_size:
            self._write(None)

    def decision(self, record: Mapping[str, Any]) -> None:
        """Record one decision (a mapping of JSON data, module docstring)."""
        self._record("decisions", record)

    def event(self, record: Mapping[str, Any]) -> None:
        """Record one event: an order change, a risk alert or refusal, ..."""
        self._record("events", record)

    def fill(self, record: Mapping[str, Any]) -> None:
        """Record one fill."""
        self._record("fills", record)

    def flush(self) -> JournalCounts:
        """Write every pending row in one transaction; returns how many per stream. A failed
        write raises ``OperationalError``, writes nothing and keeps the rows pending."""
        if not self._pending:
            return JournalCounts()
        return self._write(None)

    def close(self, *, failed: bool = False) -> JournalCounts:
        """Flush, mark the run ``closed`` (``failed`` when asked) in the same transaction,
        and return every row this journal wrote, per stream. Closing again returns the
        same counts."""
        if self._closed:
            return self._written
        self._write("failed" if failed else "closed")
        self._closed = True
        w = self._written
        log.info(
            "run journal %s: wrote %d rows to %s (equity %d, decisions %d, events %d, fills %d)",
            self.run_id, w.total, self.store.path, w.equity, w.decisions, w.events, w.fills,
        )  # fmt: skip
        return w

    def __enter__(self) -> RunJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc_type is not None)

    # -- reading (this run; pending rows are flushed first) -------------------------------
    def runs(self) -> list[RunInfo]:
        """Every run in the store (this one included), in opening order."""
        return self._reader.runs()

    def equity_frame(self) -> pd.DataFrame:
        """This run's equity curve (see :meth:`RunJournalReader.equity_frame`)."""
        self._flush_for_read()
        return self._reader.equity_frame(self.run_id)

    def decisions_frame(self) -> pd.DataFrame:
        self._flush_for_read()
        return self._reader.decisions_frame(self.run_id)

    def events_frame(self) -> pd.DataFrame:
        self._flush_for_read()
        return self._reader.events_frame(self.run_id)

    def fills_frame(self) -> pd.DataFrame:
        self._flush_for_read()
        return self._reader.fills_frame(self.run_id)

    # -- internals ------------------------------------------------------------------------
    def _record(self, stream: str, record: Mapping[str, Any]) -> None:
        self._check_open()
        where = f"run {self.run_id}: {stream[:-1]} record"
        if not isinstance(record, Mapping):
            raise TypeError(f"{where} must be a mapping, got {type(record).__name__}")
        for key in record:
            if type(key) is not str:
                raise TypeError(f"{where}: keys must be str, got {type(key).__name__} {key!r}")
        raw_ts = record.get("timestamp")
        ts = None if raw_ts is None else _timestamp(raw_ts, where)
        symbol = record.get("symbol")
        text = _encode_json(record, where)
        seq = self._next[stream]
        self._next[stream] = seq + 1
        self._records[stream].append((seq, ts, symbol if isinstance(symbol, str) else None, text))
        self._pending += 1
        if self._pending >= 2 * self.batch_size:  # no equity point came to close the batch
            self._write(None)

    def _write(self, status: str | None) -> JournalCounts:
        run = self.run_id
        counts = {"equity": len(self._equity)} | {s: len(r) for s, r in self._records.items()}
        try:
            with self.store.transaction() as con:
                if self._equity:
                    seq, ts, value = zip(*self._equity, strict=True)
                    _insert(con, EQUITY_TABLE, _EQUITY_SCHEMA, run, [seq, ts, value])
                for stream, rows in self._records.items():
                    if rows:
                        _insert(
                            con, STREAMS[stream], _RECORD_SCHEMA, run, list(zip(*rows, strict=True))
                        )
                if status is not None:
                    con.execute(
                        f"UPDATE {RUNS_TABLE} SET status = ? WHERE run_id = ?", [status, run]
                    )
        except duckdb.Error as exc:
            raise OperationalError(
                f"run journal {run}: writing {self._pending} rows to {self.store.path} failed "
                f"({exc}); nothing of this batch was written and the rows stay pending. Free "
                "disk space or fix the store, then flush again (or stop the run)."
            ) from exc
        self._equity = []
        self._records = {name: [] for name in STREAMS}
        self._pending = 0
        written = JournalCounts(**counts)
        self._written = self._written + written
        return written

    def _flush_for_read(self) -> None:
        if self._pending and not self._closed:
            self._write(None)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"run journal {self.run_id} is closed; open a new RunJournal (resume=True to "
                "append to this run)"
            )


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    schema: pa.Schema,
    run_id: str,
    columns: list[Any],
) -> None:
    """Append ``columns`` (all but ``run_id``, in table order) to ``table`` via Arrow."""
    n = len(columns[0])
    arrays = [pa.array([run_id] * n, pa.string())]
    arrays += [pa.array(c, type=f.type) for c, f in zip(columns, list(schema)[1:], strict=True)]
    con.from_arrow(pa.Table.from_arrays(arrays, schema=schema)).insert_into(table)


def _timestamp(value: Any, where: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{where}: a timestamp is an int of UTC milliseconds, got {type(value).__name__} "
            f"{value!r}"
        )
    ts = int(value)
    if not -_TS_LIMIT < ts < _TS_LIMIT:
        raise ValueError(f"{where}: timestamp {ts} is out of range (UTC milliseconds)")
    return ts


def _json_default(value: Any) -> Any:
    """JSON for the numpy values records may hold; anything else is refused."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    raise TypeError(
        f"a {type(value).__name__} ({value!r}) is not JSON data: record times as ints of UTC "
        "ms and other values as str, int, float, bool, None, lists or mappings"
    )


def _encode_json(value: Mapping[str, Any], where: str) -> str:
    try:
        return json.dumps(value, default=_json_default, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} cannot be journaled: {exc}") from None
