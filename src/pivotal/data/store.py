"""The market-data store interface. Callers depend on this protocol, never on a backend.

The default backend is :class:`pivotal.data.duckdb_store.DuckDBStore` (an embedded file,
no server). A PostgreSQL/TimescaleDB backend implements the same protocol.

Semantics every backend keeps:
- Upserts are idempotent: writing rows that are already stored changes nothing; a row with
  an existing key and different values (beyond ``CHANGE_TOLERANCE``, relative) replaces the
  stored one (the newer download wins, e.g. a candle that was still open when first fetched).
- Every candle keeps its own source label. A derived candle (``resampled:…``,
  ``aggregated:…``) never replaces an exchange candle unless the write passes ``overwrite``.
- One write is one transaction: it lands whole or not at all. ``write_batch`` makes several
  parts (candles of several series, trades, COB snapshots) one transaction.
- Trades and COB snapshots carry a ``source`` label per row, like candles.
- Reads return columnar containers sorted by time; ranges are ``start <= t < end``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.batch_writer import BatchResult, MarketBatch
from pivotal.data.cob_store import COBArrays
from pivotal.data.series import Gap, SeriesInfo, SeriesKey, SourceRange, WriteResult


@runtime_checkable
class MarketDataStore(Protocol):
    def write_candles(
        self, key: SeriesKey, candles: Candles, source: str = "", *, overwrite: bool = False
    ) -> WriteResult:
        """Upsert candles (already validated) in one transaction."""
        ...

    def read_candles(
        self, key: SeriesKey, start: int | None = None, end: int | None = None
    ) -> Candles:
        """Candles with ``start <= timestamp < end``, sorted; empty when none are stored."""
        ...

    def last_timestamp(self, key: SeriesKey) -> int | None:
        """Open time of the newest stored candle, or None."""
        ...

    def series(self) -> list[SeriesInfo]:
        """Every stored candle series with row counts, span and gap counts."""
        ...

    def source_ranges(
        self, key: SeriesKey, start: int | None = None, end: int | None = None
    ) -> list[SourceRange]:
        """Runs of consecutive stored candles that came from one source, oldest first."""
        ...

    def gaps(self, key: SeriesKey, start: int | None = None, end: int | None = None) -> list[Gap]:
        """Runs of missing candles between the first and last stored ones."""
        ...

    def write_trades(
        self, exchange: str, symbol: Symbol, trades: Trades, source: str = ""
    ) -> WriteResult:
        """Upsert trades keyed by ``trade_id``, labelled ``source``, in one transaction."""
        ...

    def read_trades(
        self, exchange: str, symbol: Symbol, start: int | None = None, end: int | None = None
    ) -> Trades: ...

    def write_cob(
        self, exchange: str, symbol: Symbol | str, snapshots: Sequence[COBData], source: str = ""
    ) -> WriteResult:
        """Upsert COB snapshots keyed by timestamp, labelled ``source``, in one transaction
        (equal rows untouched, changed rows replaced)."""
        ...

    def read_cob(
        self,
        exchange: str,
        symbol: Symbol | str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> list[COBData]:
        """Snapshots with ``start <= timestamp < end``, oldest first (the newest ``last`` of
        them when given); bit for bit what was written."""
        ...

    def read_cob_arrays(
        self,
        exchange: str,
        symbol: Symbol | str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> COBArrays:
        """:meth:`read_cob` as 2-D arrays, one row per snapshot."""
        ...

    def write_batch(self, batch: MarketBatch) -> BatchResult:
        """Every part of ``batch`` in one transaction: all of it or nothing."""
        ...

    def close(self) -> None: ...
