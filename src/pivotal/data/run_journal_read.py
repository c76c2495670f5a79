"""Reading the run journal back: runs, equity curves and record streams as pandas frames.

The tables are written by :class:`pivotal.data.run_journal.RunJournal` (its module docstring
describes them). Every reader runs one query in one store transaction under the store's lock,
so reading may share the store with a journal that is writing. A store without journal tables
(a read-only store that never held a run) reads as empty.

Record frames: one row per record in the order it was recorded, one column per key (in order
of first appearance; a key a record lacks reads as ``None``). Column types come from the
values: a column of ints is ``int64``, of floats (or ints and floats) ``float64``, of bools
``bool``; any other column (strings, ``None``, nested lists and mappings, mixed types) is
``object`` (as the broker's fill frames keep strings) holding the values exactly as JSON gave
them back, so ``None`` stays ``None`` and a timestamp column of UTC ms ints stays ``int64``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import numpy as np
import pandas as pd

from pivotal.data.duckdb_store import DuckDBStore

__all__ = ["STREAMS", "JournalCounts", "RunInfo", "RunJournalReader", "records_frame"]

RUNS_TABLE: Final = "journal_runs"
EQUITY_TABLE: Final = "journal_equity"
# record stream name -> table
STREAMS: Final[Mapping[str, str]] = {
    "decisions": "journal_decisions",
    "events": "journal_events",
    "fills": "journal_fills",
}
_EXACT_FLOAT = 2**53  # ints above this are not exact as float64


@dataclass(frozen=True, slots=True)
class JournalCounts:
    """Rows per journal stream: equity points, decisions, events, fills."""

    equity: int = 0
    decisions: int = 0
    events: int = 0
    fills: int = 0

    @property
    def total(self) -> int:
        return self.equity + self.decisions + self.events + self.fills

    def __add__(self, other: JournalCounts) -> JournalCounts:
        return JournalCounts(
            self.equity + other.equity,
            self.decisions + other.decisions,
            self.events + other.events,
            self.fills + other.fills,
        )


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One journaled run as :meth:`RunJournalReader.runs` lists it.

    ``status``: ``"open"`` (being written, or the process died before closing it: the rows
    flushed before a crash are all there), ``"closed"`` (closed normally) or ``"failed"``
    (closed while an exception was propagating). ``meta``: what the run was opened with.
    ``rows``: stored rows per stream. ``first``/``last``: the earliest and latest timestamp
    (UTC ms) over the stored equity points and records, None while nothing is stored.
    """

    run_id: str
    status: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    rows: JournalCounts = field(default_factory=JournalCounts)
    first: int | None = None
    last: int | None = None


class RunJournalReader:
    """The journaled runs in ``store``'s database, read as pandas frames (module docstring)."""

    def __init__(self, store: DuckDBStore) -> None:
        if not isinstance(store, DuckDBStore):
            raise TypeError(
                f"store must be a pivotal.data.duckdb_store.DuckDBStore, got {type(store).__name__}"
            )
        self.store = store

    def runs(self) -> list[RunInfo]:
        """Every run in the store, in the order they were first opened."""
        if not self._has_tables():
            return []
        parts = [
            f"SELECT run_id, '{name}' AS stream, count(*) AS n, min(ts) AS lo, max(ts) AS hi "
            f"FROM {table} GROUP BY run_id"
            for name, table in {"equity": EQUITY_TABLE, **STREAMS}.items()
        ]
        with self.store.transaction() as con:
            runs = con.execute(
                f"SELECT run_id, status, meta FROM {RUNS_TABLE} ORDER BY ordinal"
            ).fetchall()
            stats = con.execute(" UNION ALL ".join(parts)).fetchall()
        per_run: dict[str, dict[str, tuple[int, int | None, int | None]]] = {}
        for run_id, stream, n, lo, hi in stats:
            per_run.setdefault(run_id, {})[stream] = (int(n), lo, hi)
        infos = []
        for run_id, status, meta in runs:
            streams = per_run.get(run_id, {})
            los = [int(s[1]) for s in streams.values() if s[1] is not None]
            his = [int(s[2]) for s in streams.values() if s[2] is not None]
            infos.append(
                RunInfo(
                    run_id=run_id,
                    status=status,
                    meta=json.loads(meta),
                    rows=JournalCounts(**{k: v[0] for k, v in streams.items()}),
                    first=min(los) if los else None,
                    last=max(his) if his else None,
                )
            )
        return infos

    def run(self, run_id: str) -> RunInfo:
        """The run ``run_id``; ``KeyError`` (listing the stored runs) when there is none."""
        runs = self.runs()
        for info in runs:
            if info.run_id == run_id:
                return info
        known = ", ".join(r.run_id for r in runs[-10:]) or "none"
        raise KeyError(f"no run {run_id!r} in the journal {self.store.path} (latest runs: {known})")

    def equity_frame(
        self, run_id: str, *, since: int | None = None, until: int | None = None
    ) -> pd.DataFrame:
        """The run's equity curve: ``timestamp`` (UTC ms, int64) and ``equity`` (quote
        currency, float64), in recorded order; with ``since``/``until``, only points with
        ``since <= timestamp < until``."""
        if not self._has_tables():
            return pd.DataFrame(
                {"timestamp": np.empty(0, np.int64), "equity": np.empty(0, np.float64)}
            )
        sql, params = _where(run_id, since, until)
        with self.store.transaction() as con:
            table = con.sql(
                f"SELECT ts AS timestamp, equity FROM {EQUITY_TABLE} {sql} ORDER BY seq",
                params=params,
            ).to_arrow_table()
        return pd.DataFrame(
            {
                "timestamp": table.column("timestamp").to_numpy().astype(np.int64),
                "equity": table.column("equity").to_numpy().astype(np.float64),
            }
        )

    def decisions_frame(
        self, run_id: str, *, since: int | None = None, until: int | None = None
    ) -> pd.DataFrame:
        """The run's decision records (module docstring for the columns)."""
        return self._records("decisions", run_id, since, until)

    def events_frame(
        self, run_id: str, *, since: int | None = None, until: int | None = None
    ) -> pd.DataFrame:
        """The run's event records: order changes, risk alerts, refusals, ..."""
        return self._records("events", run_id, since, until)

    def fills_frame(
        self, run_id: str, *, since: int | None = None, until: int | None = None
    ) -> pd.DataFrame:
        """The run's fill records."""
        return self._records("fills", run_id, since, until)

    def delete_run(self, run_id: str) -> JournalCounts:
        """Delete the run and every row of it in one transaction; returns the rows deleted
        (``KeyError`` when there is no such run)."""
        info = self.run(run_id)
        with self.store.transaction() as con:
            for table in (EQUITY_TABLE, *STREAMS.values()):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute(f"DELETE FROM {RUNS_TABLE} WHERE run_id = ?", [run_id])
        return info.rows

    # -- helpers --------------------------------------------------------------------------
    def _records(
        self, stream: str, run_id: str, since: int | None, until: int | None
    ) -> pd.DataFrame:
        if not self._has_tables():
            return pd.DataFrame()
        sql, params = _where(run_id, since, until)
        with self.store.transaction() as con:
            rows = con.execute(
                f"SELECT record FROM {STREAMS[stream]} {sql} ORDER BY seq", params
            ).fetchall()
        return records_frame([json.loads(r[0]) for r in rows])

    def _has_tables(self) -> bool:
        with self.store.transaction() as con:
            return has_journal_tables(con)


def has_journal_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the journal's tables exist in ``con``'s database (temporary ones included)."""
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [RUNS_TABLE]
    ).fetchall()
    return bool(rows[0][0])


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``records`` as a frame: one column per key in order of first appearance, typed as the
    module docstring says."""
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    return pd.DataFrame({key: _column([r.get(key) for r in records]) for key in keys})


def _column(values: list[Any]) -> Any:
    kinds = {type(v) for v in values}
    if kinds == {int} and all(-(2**63) <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    if kinds == {bool}:
        return np.array(values, dtype=bool)
    if kinds == {float} or (
        kinds == {int, float} and all(abs(v) <= _EXACT_FLOAT for v in values if type(v) is int)
    ):
        return np.array(values, dtype=np.float64)
    # object, not pandas' inferred ``str``: that would turn None into NaN
    return pd.Series(values, dtype=object)


def _where(run_id: str, since: int | None, until: int | None) -> tuple[str, list[Any]]:
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a str, got {type(run_id).__name__} {run_id!r}")
    sql = "WHERE run_id = ?"
    params: list[Any] = [run_id]
    if since is not None:
        sql += " AND ts >= ?"
        params.append(int(since))
    if until is not None:
        sql += " AND ts < ?"
        params.append(int(until))
    return sql, params
