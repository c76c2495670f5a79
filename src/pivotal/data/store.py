"""The market-data store interface. Callers depend on this protocol, never on a backend.

The default backend is :class:`pivotal.data.duckdb_store.DuckDBStore` (an embedded file,
no server). A PostgreSQL/TimescaleDB backend implements the same protocol.

Semantics every backend keeps:
- Upserts are idempotent: writing rows that are already stored changes nothing; a row with
  an existing key and different values (beyond ``CHANGE_TOLERANCE``, relative) replaces the
  stored one (the newer download wins, e.g. a candle that was still open when first fetched).
- Every candle keeps its own source label. A derived candle (``resampled:…``,
  ``aggregated:…``) never replaces an exchange candle unless the write passes ``overwrite``.
- One write is one transaction: it lands whole or not at all.
- Reads return columnar containers sorted by time; ranges are ``start <= t < end``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
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

    def write_trades(self, exchange: str, symbol: Symbol, trades: Trades) -> WriteResult:
        """Upsert trades keyed by ``trade_id`` in one transaction."""
        ...

    def read_trades(
        self, exchange: str, symbol: Symbol, start: int | None = None, end: int | None = None
    ) -> Trades: ...

    def close(self) -> None: ...
