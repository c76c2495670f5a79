"""Market rows written together: :class:`MarketBatch` (one transaction) and the buffering
:class:`MarketBatchWriter` a live collector feeds.

A :class:`MarketBatch` holds parts: candles of one series, trades of one (exchange, symbol),
COB snapshots of one (exchange, symbol), each with the ``source`` its rows are labelled with.
``store.write_batch(batch)`` upserts every part, in order, inside ONE transaction: the batch
lands whole or not at all, and each part follows its own upsert rules (idempotent; a later
part wins over an earlier one where their rows differ).

:class:`MarketBatchWriter` buffers rows as they arrive and writes them as one batch when the
buffer holds ``max_rows`` rows, when its oldest row has waited ``max_delay_ms`` (by the
clock; checked on the next add or :meth:`~MarketBatchWriter.maybe_flush`), on
:meth:`~MarketBatchWriter.flush` and on :meth:`~MarketBatchWriter.close`. A row added again
before it is written replaces the buffered one (last wins; candles keyed by open time, trades
by trade id, snapshots by timestamp). A flush that fails puts its rows back (rows added
meanwhile win), counts the failure and raises (or reports to ``on_error``): nothing is lost,
the next flush tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.clock import Clock
from pivotal.core.errors import DataError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.series import SeriesKey, WriteResult, normalize_exchange

if TYPE_CHECKING:
    from pivotal.data.store import MarketDataStore

__all__ = [
    "BatchResult",
    "CandlePart",
    "COBPart",
    "MarketBatch",
    "MarketBatchWriter",
    "TradePart",
    "WriterStats",
]


@dataclass(frozen=True, slots=True)
class CandlePart:
    """Candles of one series labelled ``source`` (``overwrite`` as in ``write_candles``)."""

    key: SeriesKey
    candles: Candles
    source: str = ""
    overwrite: bool = False


@dataclass(frozen=True, slots=True)
class TradePart:
    """Trades of one (exchange, symbol) labelled ``source``."""

    exchange: str
    symbol: Symbol
    trades: Trades
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exchange", normalize_exchange(self.exchange))
        object.__setattr__(self, "symbol", Symbol.parse(self.symbol))


@dataclass(frozen=True, slots=True)
class COBPart:
    """COB snapshots of one (exchange, symbol) labelled ``source``."""

    exchange: str
    symbol: Symbol
    snapshots: Sequence[COBData]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exchange", normalize_exchange(self.exchange))
        object.__setattr__(self, "symbol", Symbol.parse(self.symbol))


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Parts written in one transaction, in this order: candles, trades, COB (each list in its
    own order)."""

    candles: tuple[CandlePart, ...] = ()
    trades: tuple[TradePart, ...] = ()
    cob: tuple[COBPart, ...] = ()

    def __post_init__(self) -> None:
        for name in ("candles", "trades", "cob"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def rows(self) -> int:
        """Rows over every part."""
        return (
            sum(len(p.candles) for p in self.candles)
            + sum(len(p.trades) for p in self.trades)
            + sum(len(p.snapshots) for p in self.cob)
        )

    def __bool__(self) -> bool:
        return bool(self.candles or self.trades or self.cob)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The store's account of each part of a batch, aligned with the batch's lists."""

    candles: tuple[WriteResult, ...] = ()
    trades: tuple[WriteResult, ...] = ()
    cob: tuple[WriteResult, ...] = ()

    def total(self, kind: str) -> WriteResult:
        """The results of one kind (``candles``, ``trades``, ``cob``) summed."""
        parts = getattr(self, kind)
        return WriteResult(
            sum(r.inserted for r in parts),
            sum(r.updated for r in parts),
            sum(r.unchanged for r in parts),
            sum(r.kept for r in parts),
        )


KINDS = ("candles", "trades", "cob")


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What a :class:`MarketBatchWriter` has done. Per kind (``candles``, ``trades``,
    ``cob``): ``written`` rows sent in successful flushes and ``inserted`` of them new to the
    store; ``replaced``: buffered rows replaced by a later add of the same key; ``flushes``
    (successful), ``failures`` (failed flushes), ``pending`` rows buffered now, ``last_error``
    the newest failure's message (None after a success)."""

    written: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    replaced: int = 0
    flushes: int = 0
    failures: int = 0
    pending: int = 0
    last_error: str | None = None


# A buffered row's key: kind, series/market, then the row's own key (open time, trade id,
# snapshot time). Value: (row, source, overwrite).
_Market = tuple[str, Symbol]
_Row = tuple[object, str, bool]


class MarketBatchWriter:
    """Buffers candles, trades and COB snapshots and writes them in batches (module docstring).

    ``store``: anything with ``write_batch``. ``clock``: the time source of the age rule.
    ``max_rows`` (>= 1): flush once this many rows are buffered. ``max_delay_ms`` (>= 0):
    flush once the oldest buffered row was added this long ago. ``on_error``: where failures
    of automatic flushes (from ``add_*``/``maybe_flush``) go; without it they raise from the
    call that triggered them. After a failure automatic flushes wait ``max_delay_ms`` before
    trying again; ``flush()`` always tries. Thread-safe: adds never wait for a write in
    progress unless they trigger a flush themselves; one flush runs at a time.
    """

    def __init__(
        self,
        store: MarketDataStore,
        clock: Clock,
        *,
        max_rows: int = 10_000,
        max_delay_ms: int = 1_000,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        self.store = store
        self.clock = clock
        self.max_rows = int(max_rows)
        self.max_delay_ms = int(max_delay_ms)
        self.on_error = on_error
        self._lock = threading.Lock()  # the buffer and counters
        self._flush_lock = threading.Lock()  # one write at a time
        self._candles: dict[SeriesKey, dict[int, _Row]] = {}
        self._trades: dict[_Market, dict[int, _Row]] = {}
        self._cob: dict[_Market, dict[int, _Row]] = {}
        self._pending = 0
        self._oldest_ms: int | None = None
        self._retry_at_ms: int | None = None
        self._closed = False
        self._written = dict.fromkeys(KINDS, 0)
        self._inserted = dict.fromkeys(KINDS, 0)
        self._replaced = 0
        self._flushes = 0
        self._failures = 0
        self._last_error: str | None = None

    # -- adding ---------------------------------------------------------------------------
    def add_candles(
        self, key: SeriesKey, candles: Candles, source: str = "", *, overwrite: bool = False
    ) -> BatchResult | None:
        """Buffer candles of ``key`` (already validated); returns the flush's result when this
        add triggered one."""
        rows = {
            int(ts): ((o, h, lo, c, v), source, overwrite)
            for ts, o, h, lo, c, v in zip(
                candles.timestamp.tolist(),
                candles.open.tolist(),
                candles.high.tolist(),
                candles.low.tolist(),
                candles.close.tolist(),
                candles.volume.tolist(),
                strict=True,
            )
        }
        return self._add(self._candles, key, rows)

    def add_trades(
        self, exchange: str, symbol: Symbol | str, trades: Trades, source: str = ""
    ) -> BatchResult | None:
        """Buffer trades (already validated), keyed by trade id."""
        rows = {
            int(tid): ((ts, p, q, m), source, False)
            for tid, ts, p, q, m in zip(
                trades.trade_id.tolist(),
                trades.timestamp.tolist(),
                trades.price.tolist(),
                trades.quantity.tolist(),
                trades.is_buyer_maker.tolist(),
                strict=True,
            )
        }
        return self._add(self._trades, self._market(exchange, symbol), rows)

    def add_cob(
        self,
        exchange: str,
        symbol: Symbol | str,
        snapshots: COBData | Sequence[COBData],
        source: str = "",
    ) -> BatchResult | None:
        """Buffer one snapshot or several, keyed by timestamp. ``DataError`` (nothing
        buffered) for an object that is not ``COBData`` or a snapshot of another symbol: a
        batch the store refuses would otherwise be retried for ever."""
        if isinstance(snapshots, COBData):
            snapshots = (snapshots,)
        market = self._market(exchange, symbol)
        for snap in snapshots:
            if not isinstance(snap, COBData) or snap.symbol != market[1]:
                what = type(snap).__name__ if not isinstance(snap, COBData) else snap.symbol
                raise DataError(f"add_cob for {market[1]} got a snapshot of {what}; nothing added")
        rows = {int(s.timestamp): (s, source, False) for s in snapshots}
        return self._add(self._cob, market, rows)

    @staticmethod
    def _market(exchange: str, symbol: Symbol | str) -> _Market:
        return normalize_exchange(exchange), Symbol.parse(symbol)

    def _add(self, buffer: dict, key: object, rows: dict[int, _Row]) -> BatchResult | None:
        if not rows:
            return self.maybe_flush()
        with self._lock:
            if self._closed:
                raise OperationalError("this MarketBatchWriter is closed; rows were not added")
            held = buffer.setdefault(key, {})
            before = len(held)
            replaced = sum(1 for k in rows if k in held)
            held.update(rows)
            self._pending += len(held) - before
            self._replaced += replaced
            if self._oldest_ms is None:
                self._oldest_ms = self.clock.now_ms()
        return self.maybe_flush()

    # -- flushing -------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether an automatic flush is due now (size or age rule, retry pause respected)."""
        with self._lock:
            if not self._pending:
                return False
            now = self.clock.now_ms()
            if self._retry_at_ms is not None and now < self._retry_at_ms:
                return False
            old = self._oldest_ms is not None and now - self._oldest_ms >= self.max_delay_ms
            return self._pending >= self.max_rows or old

    def maybe_flush(self) -> BatchResult | None:
        """Flush when :meth:`due`; failures go to ``on_error`` (or raise without it)."""
        if not self.due():
            return None
        try:
            return self.flush()
        except Exception as exc:
            if self.on_error is None:
                raise
            self.on_error(exc)
            return None

    def flush(self) -> BatchResult | None:
        """Write everything buffered as one batch now; None when nothing was buffered.
        On failure the rows go back to the buffer and the store's error is raised."""
        with self._flush_lock:
            with self._lock:
                taken = (self._candles, self._trades, self._cob)
                pending, oldest = self._pending, self._oldest_ms
                self._candles, self._trades, self._cob = {}, {}, {}
                self._pending, self._oldest_ms = 0, None
            if not pending:
                return None
            batch = _batch(*taken)
            try:
                result = self.store.write_batch(batch)
            except BaseException as exc:
                with self._lock:
                    self._restore(taken, oldest)
                    self._failures += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    self._retry_at_ms = self.clock.now_ms() + self.max_delay_ms
                raise
            with self._lock:
                self._flushes += 1
                self._last_error = None
                self._retry_at_ms = None
                for kind in KINDS:
                    parts = getattr(result, kind)
                    self._written[kind] += sum(r.total for r in parts)
                    self._inserted[kind] += sum(r.inserted for r in parts)
            return result

    def _restore(self, taken: tuple[dict, dict, dict], oldest: int | None) -> None:
        """Put a failed batch's rows back under the ones added since (those are newer)."""
        for old, now in zip(taken, (self._candles, self._trades, self._cob), strict=True):
            for key, rows in old.items():
                held = now.setdefault(key, {})
                before = len(held)
                for k, row in rows.items():
                    held.setdefault(k, row)
                self._pending += len(held) - before
        if oldest is not None:
            self._oldest_ms = oldest if self._oldest_ms is None else min(oldest, self._oldest_ms)

    def close(self) -> BatchResult | None:
        """Refuse further adds and flush what is buffered. If the flush fails the writer
        opens again (rows kept) and the error is raised: close again to retry."""
        with self._lock:
            self._closed = True
        try:
            return self.flush()
        except BaseException:
            with self._lock:
                self._closed = False
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                written=dict(self._written),
                inserted=dict(self._inserted),
                replaced=self._replaced,
                flushes=self._flushes,
                failures=self._failures,
                pending=self._pending,
                last_error=self._last_error,
            )

    def __enter__(self) -> MarketBatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _groups(rows: dict[int, _Row]) -> dict[tuple[str, bool], list[tuple[int, object]]]:
    """Rows grouped by (source, overwrite), each group sorted by its key."""
    groups: dict[tuple[str, bool], list[tuple[int, object]]] = {}
    for k, (row, source, overwrite) in rows.items():
        groups.setdefault((source, overwrite), []).append((k, row))
    for items in groups.values():
        items.sort(key=lambda item: item[0])
    return groups


def _batch(
    candles: dict[SeriesKey, dict[int, _Row]],
    trades: dict[_Market, dict[int, _Row]],
    cob: dict[_Market, dict[int, _Row]],
) -> MarketBatch:
    candle_parts = []
    for key, rows in candles.items():
        for (source, overwrite), items in _groups(rows).items():
            ts = np.array([k for k, _ in items], dtype=np.int64)
            values = np.array([row for _, row in items], dtype=np.float64).reshape(-1, 5)
            bars = Candles(ts, *(values[:, j].copy() for j in range(5)))
            candle_parts.append(CandlePart(key, bars, source, overwrite))
    trade_parts = []
    for (exchange, symbol), rows in trades.items():
        for (source, _), items in _groups(rows).items():
            ids = np.array([k for k, _ in items], dtype=np.int64)
            cols = list(zip(*(row for _, row in items), strict=True))
            batch = Trades(
                timestamp=np.array(cols[0], dtype=np.int64),
                price=np.array(cols[1], dtype=np.float64),
                quantity=np.array(cols[2], dtype=np.float64),
                is_buyer_maker=np.array(cols[3], dtype=bool),
                trade_id=ids,
            )
            trade_parts.append(TradePart(exchange, symbol, batch, source))
    cob_parts = []
    for (exchange, symbol), rows in cob.items():
        for (source, _), items in _groups(rows).items():
            cob_parts.append(COBPart(exchange, symbol, tuple(s for _, s in items), source))  # type: ignore[misc]
    return MarketBatch(tuple(candle_parts), tuple(trade_parts), tuple(cob_parts))
