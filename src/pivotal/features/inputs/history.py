"""Point-in-time logs of what is not stored as candles: COB snapshots and model predictions.

Both keep entries in time order and answer "the newest entry at or before ``t``" in
O(log n), so an input built at ``t`` sees exactly what was known at ``t`` even when later
entries have been recorded since (backtests replay, live appends). Both are bounded
(``capacity`` entries per stream; the oldest are dropped), so a process that runs for weeks
does not grow without limit.

COB snapshots come from either of two COB sources (:class:`COBSource`) with the same
answers: :class:`COBHistory` (snapshots recorded in memory as a sampler or a live stream produces
them) and :class:`StoredCOB` (the snapshots stored in the market-data store, read on demand:
what a collector stored live, or ``pivotal data import`` computed from recorded depth), so a
backtest reads exactly the COB a live run saw.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData, ModelOutput
from pivotal.data.series import normalize_exchange

__all__ = ["COBHistory", "COBReader", "COBSource", "PredictionLog", "StoredCOB", "cob_source"]

T = TypeVar("T")


class _TimeOrdered(Generic[T]):
    """Entries with non-decreasing timestamps, at most ``capacity`` of them."""

    def __init__(self, capacity: int, what: str) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._what = what
        self._times: list[int] = []
        self._items: list[T] = []

    def append(self, timestamp: int, item: T) -> None:
        if self._times and timestamp < self._times[-1]:
            raise ValueError(
                f"{self._what} at {timestamp} is older than the newest recorded one "
                f"({self._times[-1]}); record them in time order"
            )
        self._times.append(timestamp)
        self._items.append(item)
        if len(self._times) > 2 * self.capacity:  # trim in batches: amortised O(1)
            del self._times[: -self.capacity]
            del self._items[: -self.capacity]

    def latest(self, t: int) -> T | None:
        i = bisect.bisect_right(self._times, t)
        return self._items[i - 1] if i else None

    def between(self, start: int, end: int) -> list[T]:
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return self._items[lo:hi]

    def __len__(self) -> int:
        return min(len(self._items), self.capacity)


class COBSource(Protocol):
    """Where an input reads COB snapshots from (times UTC ms)."""

    def latest(self, symbol: Symbol | str, t: int) -> COBData | None:
        """The newest snapshot of ``symbol`` stamped at or before ``t``, or None."""
        ...

    def between(self, symbol: Symbol | str, start: int, end: int) -> list[COBData]:
        """Snapshots of ``symbol`` with ``start <= timestamp <= end``, oldest first."""
        ...


class COBReader(Protocol):
    """The part of :class:`~pivotal.data.store.MarketDataStore` :class:`StoredCOB` uses."""

    def read_cob(
        self,
        exchange: str,
        symbol: Symbol | str,
        start: int | None = None,
        end: int | None = None,
        *,
        last: int | None = None,
    ) -> list[COBData]: ...


class COBHistory:
    """COB snapshots per symbol (from a :class:`~pivotal.features.orderbook.COBSampler`)."""

    def __init__(self, capacity: int = 86_400) -> None:
        self.capacity = capacity
        self._by_symbol: dict[Symbol, _TimeOrdered[COBData]] = {}

    @classmethod
    def from_store(
        cls,
        store: COBReader,
        exchange: str,
        symbols: Iterable[Symbol | str],
        start: int | None = None,
        end: int | None = None,
        *,
        capacity: int = 86_400,
    ) -> COBHistory:
        """The stored snapshots of ``symbols`` with ``start <= timestamp < end`` (the newest
        ``capacity`` per symbol), recorded in memory: a replay's COB up front."""
        history = cls(capacity)
        for symbol in symbols:
            history.extend(store.read_cob(exchange, symbol, start, end, last=capacity))
        return history

    def extend(self, snapshots: Iterable[COBData]) -> None:
        """:meth:`record` each snapshot in order."""
        for snapshot in snapshots:
            self.record(snapshot)

    def record(self, snapshot: COBData) -> None:
        """Append one snapshot; refuses one older than the symbol's newest."""
        log = self._by_symbol.get(snapshot.symbol)
        if log is None:
            log = self._by_symbol[snapshot.symbol] = _TimeOrdered(
                self.capacity, f"COB snapshot of {snapshot.symbol}"
            )
        log.append(snapshot.timestamp, snapshot)

    def latest(self, symbol: Symbol | str, t: int) -> COBData | None:
        """The newest snapshot of ``symbol`` taken at or before ``t`` (UTC ms)."""
        log = self._by_symbol.get(Symbol.parse(symbol))
        return None if log is None else log.latest(t)

    def between(self, symbol: Symbol | str, start: int, end: int) -> list[COBData]:
        """Snapshots of ``symbol`` with ``start <= timestamp <= end``, oldest first."""
        log = self._by_symbol.get(Symbol.parse(symbol))
        return [] if log is None else log.between(start, end)


@dataclass(slots=True)
class _Window:
    """Stored snapshots of one symbol loaded so far: every one with ``lo <= ts < hi`` that
    the store held when it was read; ``asked``: the end of the newest read."""

    lo: int
    hi: int
    asked: int
    times: list[int] = field(default_factory=list)
    items: list[COBData] = field(default_factory=list)


class StoredCOB:
    """The COB snapshots of a store (``exchange``), read on demand: a :class:`COBSource`
    with the answers of a :class:`COBHistory` that recorded every stored snapshot.

    Each symbol keeps one window of loaded snapshots that grows forward as later times are
    asked for (a backtest reads each stored snapshot once) and holds at most about
    ``capacity`` snapshots (older ones are dropped and read again if asked for). A window
    only claims completeness up to the newest snapshot it loaded: later times are read again
    when a call asks beyond the end of the previous read, so snapshots a live collector
    stores later are seen, provided it stores each symbol's snapshots in time order (as
    :class:`~pivotal.data.batch_writer.MarketBatchWriter` does); the same question asked
    again is answered from memory. Thread-safe.
    """

    def __init__(self, store: COBReader, exchange: str, *, capacity: int = 86_400) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.store = store
        self.exchange = normalize_exchange(exchange)
        self.capacity = capacity
        self._windows: dict[Symbol, _Window] = {}
        self._lock = threading.Lock()
        self.reads = 0  # store reads so far (a test of the caching)

    def _read(
        self, symbol: Symbol, start: int | None, end: int, last: int | None = None
    ) -> list[COBData]:
        self.reads += 1
        return self.store.read_cob(self.exchange, symbol, start, end, last=last)

    def _add(self, window: _Window, snapshots: list[COBData], asked: int) -> None:
        window.asked = max(window.asked, asked)
        if snapshots:
            window.times.extend(s.timestamp for s in snapshots)
            window.items.extend(snapshots)
            window.hi = max(window.hi, window.times[-1] + 1)
        if len(window.times) > 2 * self.capacity:
            del window.times[: -self.capacity]
            del window.items[: -self.capacity]
            window.lo = window.times[0]

    def _cover(self, symbol: Symbol, start: int, stop: int) -> _Window:
        """The symbol's window, loaded for ``[start, stop)``."""
        window = self._windows.get(symbol)
        if window is None or start < window.lo or start > window.hi:
            window = self._windows[symbol] = _Window(start, start, start)
            self._add(window, self._read(symbol, start, stop), stop)
        elif stop > window.asked:
            self._add(window, self._read(symbol, window.hi, stop), stop)
        return window

    def between(self, symbol: Symbol | str, start: int, end: int) -> list[COBData]:
        """Stored snapshots of ``symbol`` with ``start <= timestamp <= end``, oldest first."""
        sym = Symbol.parse(symbol)
        with self._lock:
            window = self._cover(sym, int(start), int(end) + 1)
            lo = bisect.bisect_left(window.times, start)
            hi = bisect.bisect_right(window.times, end)
            return window.items[lo:hi]

    def latest(self, symbol: Symbol | str, t: int) -> COBData | None:
        """The newest stored snapshot of ``symbol`` stamped at or before ``t``."""
        sym = Symbol.parse(symbol)
        t = int(t)
        with self._lock:
            window = self._windows.get(sym)
            if window is not None and window.lo <= t:
                window = self._cover(sym, window.lo, t + 1)
                i = bisect.bisect_right(window.times, t)
                if i:
                    return window.items[i - 1]
            found = self._read(sym, None, t + 1, last=1)
            if found and (window is None or t < window.lo):  # start a window there
                first = found[0].timestamp
                window = self._windows[sym] = _Window(first, first, first)
                self._add(window, found, first + 1)
            return found[0] if found else None


def cob_source(store: object, exchange: str) -> COBSource:
    """The default COB of an input built from ``store``: its stored snapshots
    (:class:`StoredCOB`) when it can store them, else an empty :class:`COBHistory`."""
    if callable(getattr(store, "read_cob", None)):
        return StoredCOB(store, exchange)  # type: ignore[arg-type]
    return COBHistory()


class PredictionLog:
    """The outputs of every model per symbol, to feed one model's predictions to another."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._logs: dict[tuple[Symbol, str], _TimeOrdered[ModelOutput]] = {}

    def record(self, output: ModelOutput) -> None:
        """Append one output under its ``model_name``; refuses one older than the newest."""
        key = (output.symbol, output.model_name)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _TimeOrdered(
                self.capacity, f"prediction of {output.model_name} for {output.symbol}"
            )
        log.append(output.timestamp, output)

    def latest(self, symbol: Symbol | str, t: int) -> dict[str, ModelOutput]:
        """{model name: its newest output for ``symbol`` made at or before ``t``}."""
        sym = Symbol.parse(symbol)
        out = {}
        for (s, name), log in self._logs.items():
            if s == sym and (found := log.latest(t)) is not None:
                out[name] = found
        return out

    def models(self) -> Iterator[str]:
        """Names of the models with at least one recorded output."""
        return iter(sorted({name for _, name in self._logs}))
