"""Point-in-time logs of what is not stored as candles: COB snapshots and model predictions.

Both keep entries in time order and answer "the newest entry at or before ``t``" in
O(log n), so an input built at ``t`` sees exactly what was known at ``t`` even when later
entries have been recorded since (backtests replay, live appends). Both are bounded
(``capacity`` entries per stream; the oldest are dropped), so a process that runs for weeks
does not grow without limit.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Generic, TypeVar

from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData, ModelOutput

__all__ = ["COBHistory", "PredictionLog"]

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


class COBHistory:
    """COB snapshots per symbol (from a :class:`~pivotal.features.orderbook.COBSampler`)."""

    def __init__(self, capacity: int = 86_400) -> None:
        self.capacity = capacity
        self._by_symbol: dict[Symbol, _TimeOrdered[COBData]] = {}

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
