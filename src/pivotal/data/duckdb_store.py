"""The embedded market-data store: one DuckDB file, no server to start.

Layout: ``series`` (one row per exchange/symbol/timeframe), ``candles`` (series id, open
time, OHLCV and the row's ``source``: where that candle came from), ``trades`` (with each
row's ``source``) and ``cob_snapshots`` (1s order-book snapshots, :mod:`pivotal.data.cob_store`).
Upserts
stage the batch as an Arrow table, compare it with what is stored for the same keys, and in
one transaction insert new rows and replace changed ones; rows that are already stored
(within :data:`~pivotal.data.series.CHANGE_TOLERANCE`) are not touched, so re-importing a file
changes nothing. A derived candle (resampled, aggregated) never replaces one the exchange
published unless the write asks to overwrite.

Schema version 2 moved provenance from the series to each candle; version 3 added
``trades.source`` ('' for the rows stored before) and the ``cob_snapshots`` table. Opening an
older store for writing migrates it in place in one transaction (every candle keeping its
series' label); a failure leaves it as it was. Read-only, an older store is read as it is.

:meth:`DuckDBStore.write_batch` writes candles, trades and COB snapshots of a
:class:`~pivotal.data.batch_writer.MarketBatch` in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pyarrow as pa

from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.errors import OperationalError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, find_series_gaps
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import TRADE_COLUMNS, Trades
from pivotal.core.types import COBData
from pivotal.data.batch_writer import BatchResult, MarketBatch
from pivotal.data.cob_store import (
    COB_DDL,
    COBArrays,
    cob_symbols,
    decode_cob,
    decode_cob_arrays,
    empty_cob_table,
    encode_cob,
    select_cob,
    upsert_cob,
)
from pivotal.data.series import (
    Gap,
    SeriesInfo,
    SeriesKey,
    SourceRange,
    SourceShare,
    WriteResult,
    describe_sources,
    normalize_exchange,
)
from pivotal.data.upserts import STAGING_VIEWS, upsert_candles, upsert_trades

SCHEMA_VERSION = 3
STORE_FILE_NAME = "pivotal.duckdb"

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE SEQUENCE IF NOT EXISTS series_id_seq;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY DEFAULT nextval('series_id_seq'),
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    step_ms BIGINT NOT NULL,
    source VARCHAR NOT NULL DEFAULT '',
    UNIQUE (exchange, symbol, timeframe)
);
CREATE TABLE IF NOT EXISTS candles (
    series_id INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL,
    close DOUBLE NOT NULL, volume DOUBLE NOT NULL,
    source VARCHAR DEFAULT ''
);
CREATE TABLE IF NOT EXISTS trades (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    trade_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    price DOUBLE NOT NULL,
    quantity DOUBLE NOT NULL,
    is_buyer_maker BOOLEAN NOT NULL,
    source VARCHAR DEFAULT ''
);
"""
    + COB_DDL
)

MEMORY_LIMIT = "512MB"
"""DuckDB's buffer-pool limit per store connection. DuckDB's own default (80 % of the RAM)
lets the cache of everything a long run writes (inference history, run journal) grow the
process for as long as it runs; with a limit its pages are evicted (and large operations
spill to a temporary folder beside the file), so a run's memory plateaus."""


class DuckDBStore:
    """:class:`~pivotal.data.store.MarketDataStore` on an embedded DuckDB file.

    ``memory_limit``: DuckDB's buffer-pool limit (:data:`MEMORY_LIMIT` by default; a DuckDB
    size such as ``"2GB"``; None leaves DuckDB's default)."""

    def __init__(
        self, path: str | Path, read_only: bool = False, *, memory_limit: str | None = MEMORY_LIMIT
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        #: series ids seen (ids never change; forgotten when a transaction rolls back, which
        #: may have created one): a read of a known series is one query, not two
        self._series_ids: dict[tuple[str, str, str], int] = {}
        self._appending = 0  # nested appending() blocks
        self._vacuum_tasks: int | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise OperationalError(
                f"no market-data store at {self.path}; import or download data first "
                "(pivotal data import / pivotal data download)"
            )
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise OperationalError(
                f"cannot open the market-data store {self.path}: {exc}. If another pivotal "
                "process is writing to it, wait for it to finish or point --data-dir elsewhere."
            ) from exc
        if memory_limit is not None:
            try:
                self._con.execute(f"SET memory_limit = '{memory_limit}'")
            except duckdb.Error as exc:
                self._con.close()
                raise ValueError(
                    f"memory_limit {memory_limit!r} is not a DuckDB size (e.g. '512MB', '2GB'): "
                    f"{exc}"
                ) from None
        stored = self._check_version()
        if not read_only and stored != SCHEMA_VERSION:
            self._prepare()
        self._row_sources = self._has_column("candles", "source")
        self._trade_sources = self._has_column("trades", "source")
        self._has_cob = bool(self._tables() & {"cob_snapshots"})

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _tables(self) -> set[str]:
        rows = self._con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_catalog = current_database()"
        ).fetchall()
        return {r[0] for r in rows}

    def _check_version(self) -> int | None:
        """The stored schema version (None for a new file); refuses a newer one."""
        if "meta" not in self._tables():
            return None
        rows = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        row = rows[0] if rows else None
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise OperationalError(
                f"store {self.path} has schema version {row[0]}, newer than this pivotal "
                f"understands ({SCHEMA_VERSION}); upgrade pivotal"
            )
        return None if row is None else int(row[0])

    def _has_column(self, table: str, column: str) -> bool:
        if table not in self._tables():
            return False
        columns = self._con.execute(f"PRAGMA table_info('{table}')").fetchall()
        return any(c[1] == column for c in columns)

    def _prepare(self) -> None:
        """Create what is missing and migrate an older store in place, in one transaction
        (a failure leaves the file as it was). Version 1 → 2: every stored candle gets its
        series' source label. Version 2 → 3: ``trades.source`` ('' for stored rows) and the
        ``cob_snapshots`` table."""
        tables = self._tables()
        old_candles = "candles" in tables and not self._has_column("candles", "source")
        old_trades = "trades" in tables and not self._has_column("trades", "source")
        with self.transaction() as con:
            con.execute(_SCHEMA)  # IF NOT EXISTS: only what is missing
            if old_candles:
                con.execute("ALTER TABLE candles ADD COLUMN source VARCHAR DEFAULT ''")
                con.execute(
                    "UPDATE candles SET source = s.source FROM series s "
                    "WHERE candles.series_id = s.id"
                )
            if old_trades:
                con.execute("ALTER TABLE trades ADD COLUMN source VARCHAR DEFAULT ''")
            con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(SCHEMA_VERSION)],
            )

    def _source_sql(self, candle: str, series: str) -> str:
        """The SQL expression for a candle's source (a read-only version-1 store has only the
        series' label)."""
        return f"{candle}.source" if self._row_sources else f"{series}.source"

    # -- series ---------------------------------------------------------------------------
    def _series_id(self, key: SeriesKey, create: bool, source: str = "") -> int | None:
        """The series' id (created, labelled with the first write's source, if asked).
        Provenance lives on each candle; ``series.source`` is only the creating write's."""
        name = (key.exchange, str(key.symbol), key.timeframe.value)
        known = self._series_ids.get(name)
        if known is not None:
            return known
        row = self._one(
            "SELECT id FROM series WHERE exchange = ? AND symbol = ? AND timeframe = ?",
            list(name),
        )
        if row is None:
            if not create:
                return None
            row = self._one(
                "INSERT INTO series (exchange, symbol, timeframe, step_ms, source) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                [*name, key.timeframe.ms, source],
            )
        sid = int(row[0])  # type: ignore[index]  # RETURNING always yields the new row
        self._series_ids[name] = sid
        return sid

    # -- candles --------------------------------------------------------------------------
    def write_candles(
        self, key: SeriesKey, candles: Candles, source: str = "", *, overwrite: bool = False
    ) -> WriteResult:
        """Upsert ``candles`` labelled ``source`` in one transaction.

        A stored row is replaced only when a value differs by more than
        :data:`~pivotal.data.series.CHANGE_TOLERANCE` (relative). When ``source`` is derived
        (:func:`~pivotal.data.series.is_derived_source`), stored candles from any other source
        are kept (counted in ``kept``) unless ``overwrite``; derived rows replace derived
        ones and fill holes freely. An exchange candle replaces a derived one even when the
        values agree, so each row's source stays true.
        """
        with self.transaction():
            return self._upsert_candles(key, candles, source, overwrite)

    def _upsert_candles(
        self, key: SeriesKey, candles: Candles, source: str, overwrite: bool
    ) -> WriteResult:
        """:meth:`write_candles` inside the caller's transaction (lock held)."""
        if not len(candles):
            return WriteResult(0, 0, 0)
        sid = self._series_id(key, create=True, source=source)
        assert sid is not None
        return upsert_candles(self._con, sid, candles, source, overwrite)

    def read_candles(
        self, key: SeriesKey, start: int | None = None, end: int | None = None
    ) -> Candles:
        with self._lock:
            sid = self._series_id(key, create=False)
            if sid is None:
                return Candles.empty()
            table = self._con.sql(
                "SELECT ts AS timestamp, open, high, low, close, volume FROM candles "
                "WHERE series_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
                params=[sid, _lo(start), _hi(end)],
            ).to_arrow_table()
        return Candles(*(table.column(c).to_numpy() for c in CANDLE_COLUMNS))

    def last_timestamp(self, key: SeriesKey) -> int | None:
        with self._lock:
            sid = self._series_id(key, create=False)
            if sid is None:
                return None
            row = self._one("SELECT max(ts) FROM candles WHERE series_id = ?", [sid])
        return None if row is None or row[0] is None else int(row[0])

    def series(self) -> list[SeriesInfo]:
        """Every stored series: rows, span, gaps (missing runs longer than
        :data:`~pivotal.core.gaps.DEFAULT_MAX_MISSING_BARS` bars), all missing bars and runs,
        and the rows per source."""
        with self._lock:
            rows = self._con.execute(
                f"""
                WITH steps AS (
                    SELECT c.series_id, c.ts,
                           c.ts - lag(c.ts) OVER (PARTITION BY c.series_id ORDER BY c.ts) AS d
                    FROM candles c
                ), agg AS (
                    SELECT st.series_id, count(*) AS n, min(st.ts) AS first, max(st.ts) AS last,
                           count(*) FILTER (
                               WHERE st.d // s.step_ms - 1 > {DEFAULT_MAX_MISSING_BARS}) AS gaps,
                           count(*) FILTER (WHERE st.d > s.step_ms) AS runs,
                           coalesce(sum(st.d // s.step_ms - 1) FILTER (WHERE st.d > s.step_ms), 0)
                               AS missing
                    FROM steps st JOIN series s ON s.id = st.series_id
                    GROUP BY st.series_id
                )
                SELECT s.exchange, s.symbol, s.timeframe, s.id,
                       coalesce(a.n, 0), a.first, a.last, coalesce(a.gaps, 0),
                       coalesce(a.missing, 0), coalesce(a.runs, 0)
                FROM series s LEFT JOIN agg a ON a.series_id = s.id
                ORDER BY s.exchange, s.symbol, s.step_ms
                """
            ).fetchall()
            shares: dict[int, list[SourceShare]] = {}
            for sid, label, n in self._con.execute(
                f"SELECT c.series_id, {self._source_sql('c', 's')}, count(*) FROM candles c "
                "JOIN series s ON s.id = c.series_id GROUP BY ALL ORDER BY 3 DESC, 2"
            ).fetchall():
                shares.setdefault(int(sid), []).append(SourceShare(label or "", int(n)))
        infos = []
        for r in rows:
            if not r[4]:
                continue
            sources = tuple(shares.get(int(r[3]), ()))
            infos.append(
                SeriesInfo(
                    key=SeriesKey(r[0], Symbol.parse(r[1]), Timeframe.parse(r[2])),
                    rows=int(r[4]),
                    first=None if r[5] is None else int(r[5]),
                    last=None if r[6] is None else int(r[6]),
                    gaps=int(r[7]),
                    missing=int(r[8]),
                    source=describe_sources(sources),
                    sources=sources,
                    missing_runs=int(r[9]),
                )
            )
        return infos

    def source_ranges(
        self, key: SeriesKey, start: int | None = None, end: int | None = None
    ) -> list[SourceRange]:
        """Runs of consecutive stored candles (``start <= ts < end``) that share a source,
        oldest first: where each stored range of the series came from."""
        with self._lock:
            sid = self._series_id(key, create=False)
            if sid is None:
                return []
            rows = self._con.execute(
                f"""
                WITH labelled AS (
                    SELECT c.ts, {self._source_sql("c", "s")} AS source,
                           row_number() OVER (ORDER BY c.ts) - row_number() OVER (
                               PARTITION BY {self._source_sql("c", "s")} ORDER BY c.ts) AS run
                    FROM candles c JOIN series s ON s.id = c.series_id
                    WHERE c.series_id = ? AND c.ts >= ? AND c.ts < ?
                )
                SELECT source, min(ts), max(ts), count(*) FROM labelled
                GROUP BY source, run ORDER BY 2
                """,
                [sid, _lo(start), _hi(end)],
            ).fetchall()
        return [SourceRange(r[0] or "", int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def gaps(self, key: SeriesKey, start: int | None = None, end: int | None = None) -> list[Gap]:
        ts = self.read_candles(key, start, end).timestamp
        return find_gaps(ts, key.timeframe)

    # -- trades ---------------------------------------------------------------------------
    def write_trades(
        self, exchange: str, symbol: Symbol, trades: Trades, source: str = ""
    ) -> WriteResult:
        """Upsert trades keyed by ``trade_id`` labelled ``source``, in one transaction. A
        stored trade is replaced (with the new label) when a value differs; an equal one is
        left as it is, except that a stored row without a label ('' from schema 2) takes the
        incoming label."""
        with self.transaction():
            return upsert_trades(self._con, exchange, symbol, trades, source)

    def read_trades(
        self, exchange: str, symbol: Symbol, start: int | None = None, end: int | None = None
    ) -> Trades:
        with self._lock:
            table = self._con.sql(
                "SELECT ts AS timestamp, price, quantity, is_buyer_maker, trade_id FROM trades "
                "WHERE exchange = $1 AND symbol = $2 AND ts >= $3 AND ts < $4 "
                "ORDER BY ts, trade_id",
                params=[normalize_exchange(exchange), str(symbol), _lo(start), _hi(end)],
            ).to_arrow_table()
        return Trades(*(table.column(c).to_numpy(zero_copy_only=False) for c in TRADE_COLUMNS))

    def trade_symbols(self) -> list[tuple[str, str, int, int, int]]:
        """(exchange, symbol, rows, first, last) for every stored trade series."""
        with self._lock:
            rows = self._con.execute(
                "SELECT exchange, symbol, count(*), min(ts), max(ts) FROM trades "
                "GROUP BY exchange, symbol ORDER BY exchange, symbol"
            ).fetchall()
        return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def trade_sources(self, exchange: str, symbol: Symbol) -> list[SourceShare]:
        """Stored trades of one (exchange, symbol) per source label, largest first."""
        if not self._trade_sources:
            return []
        with self._lock:
            rows = self._con.execute(
                "SELECT source, count(*) FROM trades WHERE exchange = ? AND symbol = ? "
                "GROUP BY source ORDER BY 2 DESC, 1",
                [normalize_exchange(exchange), str(symbol)],
            ).fetchall()
        return [SourceShare(r[0] or "", int(r[1])) for r in rows]

    # -- COB snapshots (pivotal.data.cob_store) -------------------------------------------
    def write_cob(
        self, exchange: str, symbol: Symbol | str, snapshots: Sequence[COBData], source: str = ""
    ) -> WriteResult:
        """Upsert COB snapshots of one (exchange, symbol) keyed by timestamp, labelled
        ``source``, in one transaction: equal rows untouched, changed rows replaced.
        ``DataError`` (nothing written) for a snapshot of another symbol or a repeated
        timestamp."""
        symbol = Symbol.parse(symbol)
        exchange = normalize_exchange(exchange)
        incoming = encode_cob(symbol, snapshots)
        with self.transaction() as con:
            return upsert_cob(con, exchange, symbol, incoming, source)

    def _select_cob(
        self, exchange: str, symbol: Symbol, start: int | None, end: int | None, last: int | None
    ) -> pa.Table:
        if not self._has_cob:  # a read-only store of schema 2
            return empty_cob_table()
        with self._lock:
            ex = normalize_exchange(exchange)
            return select_cob(self._con, ex, symbol, _lo(start), _hi(end), last)

    def read_cob(
        self,
        exchange: str,
        symbol: Symbol | str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> list[COBData]:
        """Stored snapshots with ``start <= timestamp < end``, oldest first; only the newest
        ``last`` of them when given (``last=1``: the newest snapshot before ``end``)."""
        symbol = Symbol.parse(symbol)
        return decode_cob(self._select_cob(exchange, symbol, start, end, last), symbol)

    def read_cob_arrays(
        self,
        exchange: str,
        symbol: Symbol | str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> COBArrays:
        """:meth:`read_cob` as 2-D arrays (:class:`~pivotal.data.cob_store.COBArrays`)."""
        symbol = Symbol.parse(symbol)
        return decode_cob_arrays(self._select_cob(exchange, symbol, start, end, last), symbol)

    def cob_symbols(self) -> list[tuple[str, str, int, int, int]]:
        """(exchange, symbol, snapshots, first, last) for every stored COB series."""
        if not self._has_cob:
            return []
        with self._lock:
            return cob_symbols(self._con)

    # -- batches --------------------------------------------------------------------------
    def write_batch(self, batch: MarketBatch) -> BatchResult:
        """Every part of ``batch`` in ONE transaction, in order (candles, trades, COB): all of
        it lands or none (a failure rolls back every part and re-raises). Each part keeps
        its own upsert rules; returns the results aligned with the batch's parts. COB parts
        are checked before anything is written."""
        encoded = [encode_cob(p.symbol, p.snapshots) for p in batch.cob]
        with self.transaction() as con:
            candles = tuple(
                self._upsert_candles(p.key, p.candles, p.source, p.overwrite) for p in batch.candles
            )
            trades = tuple(
                upsert_trades(con, p.exchange, p.symbol, p.trades, p.source) for p in batch.trades
            )
            cob = tuple(
                upsert_cob(con, p.exchange, p.symbol, table, p.source)
                for p, table in zip(batch.cob, encoded, strict=True)
            )
        return BatchResult(candles, trades, cob)

    # -- helpers --------------------------------------------------------------------------
    def _one(self, sql: str, params: list[object] | None = None) -> tuple[object, ...] | None:
        """First row of a query; the whole result is consumed (DuckDB requires it)."""
        rows = self._con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def _begin(self) -> None:
        self._con.execute("BEGIN TRANSACTION")

    @contextmanager
    def appending(self) -> Iterator[None]:
        """A stretch of streaming appends (a run's history and journal): DuckDB's checkpoint
        vacuum is off inside it and back to its previous setting when the outermost such
        block ends. Appended in batches, a table gains a small row group per commit, and the
        vacuum merges them again and again, rewriting ever larger parts of the table (a
        binary-counter pattern: a 830 MB table rewritten whole at its 96th batch); off, each
        checkpoint writes about what was appended. Deleted rows are reclaimed by the first
        checkpoint after the block (retention runs after it). Nests (counted)."""
        with self._lock:
            if self._appending == 0:
                row = self._one("SELECT current_setting('max_vacuum_tasks')")
                self._vacuum_tasks = int(row[0]) if row else None
                self._con.execute("SET max_vacuum_tasks = 0")
            self._appending += 1
        try:
            yield
        finally:
            with self._lock:
                self._appending -= 1
                if self._appending == 0 and self._vacuum_tasks is not None:
                    self._con.execute(f"SET max_vacuum_tasks = {self._vacuum_tasks}")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The store's connection inside one transaction, holding the store's lock: commits
        when the block ends, rolls back (and re-raises) when it raises. For modules that keep
        their own tables in this database (:mod:`pivotal.data.inference_history`); do not
        close the connection or commit inside the block."""
        with self._lock:
            self._begin()
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                self._series_ids.clear()  # a series created in it is gone again
                for name in STAGING_VIEWS:  # what a failed upsert could not unregister
                    self._con.unregister(name)
                raise
            self._con.execute("COMMIT")


def _lo(start: int | None) -> int:
    return -(2**62) if start is None else int(start)


def _hi(end: int | None) -> int:
    return 2**62 if end is None else int(end)


def find_gaps(timestamps: np.ndarray, timeframe: Timeframe) -> list[Gap]:
    """Every run of missing candles in sorted open times (between the first and last), as
    first and last missing open time: :func:`pivotal.core.gaps.find_series_gaps` with no run
    bridged."""
    ms = timeframe.ms
    return [
        Gap(start=g.last_before + ms, end=g.first_after - ms, missing=g.missing)
        for g in find_series_gaps(timestamps, ms, max_missing_bars=0)
    ]


def open_store(data_dir: str | Path, read_only: bool = False) -> DuckDBStore:
    """Open (creating if needed) the store file under ``data_dir``."""
    return DuckDBStore(Path(data_dir) / STORE_FILE_NAME, read_only=read_only)
