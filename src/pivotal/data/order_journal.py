"""The order journal on SQLite: :class:`SqliteOrderJournal`, the ``OrderJournal`` port of
:mod:`pivotal.core.journal` that paper and live nodes write before they act.

One file per journal (a node's ``orders.sqlite``), the standard library's ``sqlite3``:

- **One transaction per** :meth:`SqliteOrderJournal.append`: a batch is stored whole or not at
  all (an error or an interrupt mid-batch rolls it back; the journal stays usable).
- **WAL mode, ``synchronous=NORMAL``** (the default): a commit is in the write-ahead log, in
  the operating system's page cache, when ``append`` returns, so it survives the *process*
  being killed at any instant (SIGKILL, OOM kill, a crash), which is the failure a trading
  node has to survive and what the tests do. What it does not promise: after a *power loss
  or kernel crash*, the last transactions before it may be rolled back (never torn; the
  file stays consistent), because the WAL is fsynced only at checkpoints. Pass
  ``synchronous="full"`` to fsync the WAL at every commit and close that window too, at the
  cost of one fsync per append (milliseconds on most disks instead of tens of µs).
- ``seq`` is an ``INTEGER PRIMARY KEY AUTOINCREMENT``: 1, 2, 3, ... in append order across
  the whole file, never reused (a rolled-back batch leaves no gap a reader could see).
- **One writer, many readers.** A writer holds an exclusive lock on ``<file>.lock`` (with
  its process id in it) for as long as it is open: a second node pointed at the same
  journal is refused at open instead of interleaving its entries. Readers
  (:meth:`SqliteOrderJournal.open_readonly`, e.g. ``pivotal orders`` while the node runs)
  take no lock and read consistent snapshots while the writer writes (WAL). A journal object
  may be used from several threads (calls are serialized), but it is meant for the node's
  one loop thread.

Table ``entries``: ``seq``, ``ts`` (UTC ms), ``kind`` (:data:`pivotal.core.journal.KINDS`),
``client_order_id``, ``symbol``, ``session`` (the session the writer had opened with
:meth:`SqliteOrderJournal.open_session` when the entry was appended, NULL before any) and
``data`` (the entry's data as JSON text; NaN and ±inf are allowed and stored as the
``NaN``/``Infinity`` tokens Python's json reads back, as in the run journal, so a decision
record holding a NaN score is journaled rather than crashing the node; SQLite's own JSON
functions do not read such rows). Table ``journal_meta`` holds ``format`` =
``pivotal-order-journal`` and ``schema_version``; the file's SQLite ``application_id`` is
:data:`APPLICATION_ID`. A file that is not such a journal, or one of a newer schema, is
refused with a :class:`~pivotal.core.errors.DataError` that names it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import numpy as np

from pivotal.core.errors import DataError, OperationalError
from pivotal.core.journal import KINDS, JournalEntry, NewEntry

__all__ = [
    "APPLICATION_ID",
    "JOURNAL_FORMAT",
    "ORDER_JOURNAL_SCHEMA_VERSION",
    "SessionInfo",
    "SqliteOrderJournal",
]

ORDER_JOURNAL_SCHEMA_VERSION: Final = 1
JOURNAL_FORMAT: Final = "pivotal-order-journal"
#: SQLite ``PRAGMA application_id`` of an order journal ("PVOJ").
APPLICATION_ID: Final = 0x50564F4A
_PAGE: Final = 2_000  # rows per read query (entries() pages by seq: no long read transaction)
_MAX_SESSION: Final = 200

_SCHEMA = """
CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    client_order_id TEXT,
    symbol TEXT,
    session TEXT,
    data TEXT NOT NULL
);
CREATE INDEX entries_client_order_id ON entries (client_order_id)
    WHERE client_order_id IS NOT NULL;
CREATE INDEX entries_session ON entries (session, seq) WHERE session IS NOT NULL;
"""
_INSERT = (
    "INSERT INTO entries (ts, kind, client_order_id, symbol, session, data) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "seq, ts, kind, data, client_order_id, symbol"

# an encoded row: ts, kind, client_order_id, symbol, JSON text (the session is added at write)
_Row = tuple[int, str, str | None, str | None, str]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session of a journal: the entries appended while it was open.

    ``started_ms``/``last_ms``: the smallest and largest entry ``ts`` (UTC ms) of the
    session; ``meta``: the data of its first ``session`` entry (what
    :meth:`SqliteOrderJournal.open_session` was given); ``stopped``: whether its last
    ``session`` entry is a ``stop`` (False for a session whose node died).
    """

    session_id: str
    first_seq: int
    last_seq: int
    started_ms: int
    last_ms: int
    entries: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    stopped: bool = False


class SqliteOrderJournal:
    """A durable, append-only order journal in the SQLite file ``path`` (module docstring).

    Opens for writing, creating the file (and its folder) when missing unless ``create`` is
    False. ``synchronous``: ``"normal"`` (survives a killed process; the last commits may be
    lost to a power cut) or ``"full"`` (survives a power cut too; one fsync per append).
    Raises :class:`DataError` for a file that is not an order journal or has a newer schema,
    :class:`OperationalError` when the file is missing (``create=False``), another process
    writes the journal, or SQLite cannot open it. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        synchronous: Literal["normal", "full"] = "normal",
        _read_only: bool = False,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        self.path = Path(path)
        self.read_only = _read_only
        self._lock = threading.RLock()
        self._session: str | None = None
        self._lock_fd: int | None = None
        self._con: sqlite3.Connection | None = None
        if not self.path.exists() and (_read_only or not create):
            raise OperationalError(
                f"no order journal at {self.path}: nothing has been journaled there yet "
                "(start a paper or live node first, or point to the node's journal file)"
            )
        try:
            if _read_only:
                uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
                self._con = _connect(uri, uri=True)
                self._check_format(allow_new=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._take_writer_lock()
                self._con = _connect(str(self.path), uri=False)
                self._check_format(allow_new=True)
                mode = self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OperationalError(
                        f"the order journal {self.path} could not switch to WAL mode (SQLite "
                        f"answered {mode!r}); put the journal on a local file system"
                    )
                self._con.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        except BaseException:
            self._release()
            raise

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> SqliteOrderJournal:
        """Open an existing journal to read it, also while its writer is appending (WAL);
        :meth:`append` and :meth:`open_session` then raise ``OperationalError``."""
        return cls(path, create=False, _read_only=True)

    # -- opening ------------------------------------------------------------------------
    def _take_writer_lock(self) -> None:
        lock_path = Path(f"{self.path}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OperationalError(
                f"the order journal {self.path} is open for writing by another process (pid "
                f"{holder}); a journal has one writer: stop that node, or give this one its "
                "own journal file. Readers use SqliteOrderJournal.open_readonly"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._lock_fd = fd

    def _check_format(self, *, allow_new: bool) -> None:
        con = self._connection()
        what = f"{self.path} is not a pivotal order journal"
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            listing = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {row[0] for row in listing}
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"{what} (SQLite cannot read it: {exc}); point to the node's order journal "
                "(<data dir>/trading/<run file>.<mode>.journal), or move this file away to "
                "start a new journal there"
            ) from None
        if not tables and app_id == 0 and allow_new:
            self._create_schema()
            return
        if not tables and app_id == 0:
            raise DataError(
                f"{what} yet: the file is empty (a node may be creating it this moment: try "
                "again; else it is not a journal)"
            )
        if "journal_meta" not in tables or "entries" not in tables:
            found = ", ".join(sorted(tables)) or "no tables"
            raise DataError(
                f"{what}: it is a SQLite database with {found} but no order journal tables; "
                "point to the node's order journal (<data dir>/trading/<run file>.<mode>.journal), "
                "or choose a new path for a new journal"
            )
        meta = dict(con.execute("SELECT key, value FROM journal_meta").fetchall())
        if meta.get("format") != JOURNAL_FORMAT or app_id != APPLICATION_ID:
            raise DataError(
                f"{what}: its journal_meta says format {meta.get('format')!r} (application_id "
                f"{app_id:#x}), expected {JOURNAL_FORMAT!r}; point to the node's order journal"
            )
        version = int(meta.get("schema_version", "0"))
        if version > ORDER_JOURNAL_SCHEMA_VERSION:
            raise DataError(
                f"the order journal {self.path} has schema version {version}, newer than this "
                f"pivotal understands ({ORDER_JOURNAL_SCHEMA_VERSION}); upgrade pivotal to read it"
            )
        if version < 1:
            raise DataError(
                f"the order journal {self.path} has no valid schema_version ({version}); the "
                "file is damaged: restore it from a backup or start a new journal elsewhere"
            )

    def _create_schema(self) -> None:
        con = self._connection()
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.executemany(
                "INSERT INTO journal_meta VALUES (?, ?)",
                [
                    ("format", JOURNAL_FORMAT),
                    ("schema_version", str(ORDER_JOURNAL_SCHEMA_VERSION)),
                ],
            )
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- the OrderJournal port ----------------------------------------------------------
    @property
    def session(self) -> str | None:
        """The session new entries are stamped with (None before :meth:`open_session`)."""
        return self._session

    def append(self, entries: Sequence[NewEntry]) -> list[int]:
        """Write ``entries`` in one transaction (all or nothing) and return their seqs, in
        order; durable (module docstring) when this returns. A refused entry raises
        ``TypeError`` before anything is written; a failed write raises
        ``OperationalError`` with nothing of the batch written."""
        rows = [_encode(entry, i) for i, entry in enumerate(entries)]
        if not rows:
            return []
        with self._lock:
            con = self._writable()
            session = self._session
            seqs: list[int] = []
            try:
                con.execute("BEGIN IMMEDIATE")
                for ts, kind, client_order_id, symbol, text in rows:
                    cur = con.execute(_INSERT, (ts, kind, client_order_id, symbol, session, text))
                    seqs.append(int(cur.lastrowid or 0))
                con.execute("COMMIT")
            except BaseException as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise OperationalError(
                        f"the order journal {self.path}: writing {len(rows)} entries failed "
                        f"({exc}); nothing of this batch was written. Free disk space or fix "
                        "the file, then retry; do not act on what was not journaled"
                    ) from exc
                raise
        return seqs

    def entries(
        self,
        *,
        since_seq: int = 0,
        kinds: Sequence[str] | None = None,
        client_order_id: str | None = None,
        session: str | None = None,
    ) -> Iterator[JournalEntry]:
        """Entries with ``seq > since_seq``, in seq order, optionally only those of ``kinds``,
        of one ``client_order_id`` and/or appended in ``session``. Read in pages of
        2,000 rows (no read transaction stays open between pages, so a long iteration never
        holds the WAL back); entries appended during the iteration are included."""
        if isinstance(since_seq, bool) or not isinstance(since_seq, int):
            raise TypeError(f"since_seq must be an int, got {since_seq!r}")
        where = ["seq > ?"]
        params: list[Any] = []
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            unknown = [k for k in kinds if k not in KINDS]
            if unknown:
                raise ValueError(
                    f"journal kinds {unknown} are not among {', '.join(KINDS)}; fix the filter"
                )
            if not kinds:
                return iter(())
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params += kinds
        if client_order_id is not None:
            where.append("client_order_id = ?")
            params.append(client_order_id)
        if session is not None:
            where.append("session = ?")
            params.append(session)
        sql = f"SELECT {_COLUMNS} FROM entries WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        return self._pages(sql, since_seq, params)

    def session_entries(self, session: str) -> list[JournalEntry]:
        """Every entry appended while ``session`` was open, in seq order."""
        return list(self.entries(session=session))

    def last_seq(self) -> int:
        """The largest seq in the journal; 0 when it is empty."""
        with self._lock:
            row = self._connection().execute("SELECT coalesce(max(seq), 0) FROM entries")
            return int(row.fetchone()[0])

    def sessions(self) -> list[SessionInfo]:
        """Every session of the journal, in the order they were first opened."""
        with self._lock:
            con = self._connection()
            groups = con.execute(
                "SELECT session, min(seq), max(seq), min(ts), max(ts), count(*) FROM entries "
                "WHERE session IS NOT NULL GROUP BY session ORDER BY min(seq)"
            ).fetchall()
            out = []
            for session, first, last, t0, t1, n in groups:
                marks = con.execute(
                    "SELECT seq, data FROM entries WHERE session = ? AND kind = 'session' "
                    "ORDER BY seq",
                    (session,),
                ).fetchall()
                meta = _decode(self.path, marks[0][0], marks[0][1]) if marks else {}
                stopped = bool(marks) and _decode(self.path, *marks[-1]).get("event") == "stop"
                out.append(SessionInfo(session, first, last, t0, t1, n, meta, stopped))
            return out

    def open_session(
        self, session_id: str, meta: Mapping[str, Any] | None = None, *, ts: int | None = None
    ) -> int:
        """Start stamping new entries with ``session_id`` and journal a ``session`` entry
        ``{"event": "start", **meta, "session": session_id}`` (``meta`` may set ``event``,
        e.g. ``"restart"``, and ``balances``: see :mod:`pivotal.trading.journal_state`);
        ``ts``: UTC ms, the wall clock when None. Returns the entry's seq."""
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        if len(session_id) > _MAX_SESSION:
            raise ValueError(f"session_id is longer than {_MAX_SESSION} characters")
        data = {"event": "start", **dict(meta or {}), "session": session_id}
        with self._lock:
            self._writable()
            previous, self._session = self._session, session_id
            try:
                return self.append([NewEntry(_now(ts), "session", data)])[0]
            except BaseException:
                self._session = previous
                raise

    def end_session(self, *, ts: int | None = None, reason: str = "") -> int | None:
        """Journal ``{"event": "stop", "session": ..., "reason": reason}`` for the open
        session and stop stamping entries with it; returns the seq (None if none was open)."""
        with self._lock:
            if self._session is None:
                return None
            data = {"event": "stop", "session": self._session, "reason": reason}
            seq = self.append([NewEntry(_now(ts), "session", data)])[0]
            self._session = None
            return seq

    def close(self) -> None:
        """Close the file and release the writer lock; closing again does nothing."""
        with self._lock:
            self._release()

    @property
    def closed(self) -> bool:
        return self._con is None

    def __enter__(self) -> SqliteOrderJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        return f"SqliteOrderJournal({str(self.path)!r}, {mode}, session={self._session!r})"

    # -- internals ------------------------------------------------------------------------
    def _pages(self, sql: str, since_seq: int, params: list[Any]) -> Iterator[JournalEntry]:
        last = since_seq
        while True:
            with self._lock:
                rows = self._connection().execute(sql, [last, *params, _PAGE]).fetchall()
            for seq, ts, kind, text, client_order_id, symbol in rows:
                yield JournalEntry(
                    seq, ts, kind, _decode(self.path, seq, text), client_order_id, symbol
                )
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError(f"the order journal {self.path} is closed; open it again to use it")
        return self._con

    def _writable(self) -> sqlite3.Connection:
        con = self._connection()
        if self.read_only:
            raise OperationalError(
                f"the order journal {self.path} was opened read-only; only the node that runs "
                "the session writes it (open it with SqliteOrderJournal(path) to write)"
            )
        return con

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def writer_pid(path: str | os.PathLike[str]) -> int | None:
    """The pid of the process writing the journal at ``path``, None when nobody holds its
    writer lock (a killed writer releases it: no stale pid is ever reported)."""
    lock_path = Path(f"{os.fspath(path)}.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _connect(target: str, *, uri: bool) -> sqlite3.Connection:
    try:
        # autocommit mode: append() issues BEGIN IMMEDIATE/COMMIT itself
        return sqlite3.connect(
            target, uri=uri, isolation_level=None, check_same_thread=False, timeout=10.0
        )
    except sqlite3.Error as exc:
        raise OperationalError(
            f"cannot open the order journal {target}: {exc}; check the path and its permissions"
        ) from exc


def _now(ts: int | None) -> int:
    return time.time_ns() // 1_000_000 if ts is None else ts


def _json_default(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    raise TypeError(
        f"a {type(value).__name__} ({value!r}) is not JSON data: journal str, int, float, "
        "bool, None, lists or mappings (times as ints of UTC ms)"
    )


def _encode(entry: NewEntry, index: int) -> _Row:
    where = f"journal entry {index} ({getattr(entry, 'kind', '?')})"
    if not isinstance(entry, NewEntry):
        raise TypeError(f"{where}: append takes NewEntry values, got {type(entry).__name__}")
    if not isinstance(entry.data, Mapping):
        raise TypeError(f"{where}: data must be a mapping, got {type(entry.data).__name__}")
    for name in ("client_order_id", "symbol"):
        value = getattr(entry, name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{where}: {name} must be a str or None, got {value!r}")
    try:
        text = json.dumps(
            dict(entry.data), default=_json_default, allow_nan=True, separators=(",", ":")
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} cannot be journaled: {exc}") from None
    return entry.ts, entry.kind, entry.client_order_id, entry.symbol, text


def _decode(path: Path, seq: int, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(
            f"the order journal {path}: entry {seq} holds data that is not JSON ({exc}); the "
            "file was changed outside pivotal: restore it from a backup"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"the order journal {path}: entry {seq} data is not a JSON object")
    return data
