"""A bounded rolling order-book heatmap: time × absolute price bucket, per symbol.

Rows are snapshots (a :class:`~pivotal.features.orderbook.consolidated.ConsolidatedSnapshot`
or a :class:`~pivotal.core.types.COBData`), oldest first, at most ``capacity`` of them (the
oldest row leaves when a new one comes). Columns are absolute buckets ``k`` (lower edge
``k * bucket_size``) of one fixed grid ``width`` buckets wide.

The grid: it is placed on the first snapshot, centred on that snapshot's central bucket, and
stays put while each new snapshot's buckets lie inside it; a snapshot that reaches outside
moves it so that it is centred on that snapshot's central bucket again (it never widens:
memory stays ``capacity × snapshot buckets`` per value). Rows keep their own buckets, so a
move loses nothing: :meth:`RollingHeatmap.matrix` draws every kept row on the grid of the
moment, NaN where a row has no bucket (outside what that snapshot covered). The grid depends
only on the sequence of snapshot centres, so :func:`heatmap_from_snapshots` builds the same
matrix in one pass over a list.

Values: ``total_volume`` (bid + ask), ``bid_volume``, ``ask_volume``, ``imbalance``
(``(bid - ask) / (bid + ask)``, 0 where both are 0); for the combined book, or for one venue
of a consolidated snapshot when the heatmap was made with ``venues`` (NaN in rows where that
venue did not contribute).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pivotal.core.errors import ConfigError, DataError
from pivotal.features.orderbook.cob import Heatmap

__all__ = ["HEATMAP_VALUES", "RollingHeatmap", "heatmap_from_snapshots"]

HEATMAP_VALUES = ("total_volume", "bid_volume", "ask_volume", "imbalance")


class _Snapshot(Protocol):
    timestamp: int
    bucket_size: float
    bucket_prices: npt.NDArray[np.float64]
    bid_volume: npt.NDArray[np.float64]
    ask_volume: npt.NDArray[np.float64]


def _keys(snapshot: _Snapshot) -> tuple[int, int]:
    """(first absolute bucket, bucket count) of a snapshot."""
    prices = snapshot.bucket_prices
    return int(np.rint(prices[0] / snapshot.bucket_size)), len(prices)


def _move(low: int | None, first: int, count: int, width: int) -> int:
    """The grid's lowest bucket after a snapshot covering ``first .. first + count - 1``."""
    if low is None or first < low or first + count > low + width:
        return first + count // 2 - width // 2
    return low


def _value(bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64], value: str) -> npt.NDArray:
    if value == "bid_volume":
        return bid
    if value == "ask_volume":
        return ask
    total = bid + ask
    if value == "total_volume":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (bid - ask) / total, np.where(np.isnan(total), np.nan, 0.0))


def _check_value(value: str) -> None:
    if value not in HEATMAP_VALUES:
        raise DataError(f"heatmap value must be one of {HEATMAP_VALUES}, got {value!r}")


class RollingHeatmap:
    """The newest ``capacity`` snapshots on a ``width``-bucket grid (see module docstring).

    ``venues``: keep per-venue rows too (the venue names of the consolidated snapshots, in
    their order); empty for the combined book only.
    """

    def __init__(self, capacity: int, width: int, venues: Sequence[str] = ()) -> None:
        if capacity < 1 or width < 1:
            raise ConfigError(f"heatmap capacity and width must be >= 1, got {capacity}, {width}")
        self.capacity = capacity
        self.width = width
        self.venues = tuple(venues)
        self.bucket_size: float | None = None
        self.low: int | None = None  # the grid's lowest absolute bucket
        self._count = 0  # rows pushed in all
        self._buckets = 0  # buckets per snapshot, fixed at the first
        self._times = np.zeros(capacity, dtype=np.int64)
        self._first = np.zeros(capacity, dtype=np.int64)
        self._bid = np.zeros((0, 0))
        self._ask = np.zeros((0, 0))
        self._venue_bid = np.zeros((0, 0, 0))
        self._venue_ask = np.zeros((0, 0, 0))

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def push(self, snapshot: _Snapshot) -> None:
        """Add the newest snapshot (times strictly increasing, one bucket size and count)."""
        first, count = _keys(snapshot)
        if self._count == 0:
            if count > self.width:
                raise ConfigError(
                    f"heatmap width {self.width} is narrower than a snapshot ({count} buckets)"
                )
            self.bucket_size, self._buckets = float(snapshot.bucket_size), count
            self._bid = np.zeros((self.capacity, count))
            self._ask = np.zeros((self.capacity, count))
            if self.venues:
                shape = (self.capacity, len(self.venues), count)
                self._venue_bid, self._venue_ask = np.zeros(shape), np.zeros(shape)
        else:
            last = int(self._times[(self._count - 1) % self.capacity])
            if snapshot.timestamp <= last:
                raise DataError(
                    f"heatmap rows must come in time order: {snapshot.timestamp} after {last}"
                )
            if snapshot.bucket_size != self.bucket_size or count != self._buckets:
                raise DataError(
                    f"heatmap snapshots must share one grid: bucket size {snapshot.bucket_size} "
                    f"x {count} after {self.bucket_size} x {self._buckets}"
                )
        row = self._count % self.capacity
        self._times[row] = snapshot.timestamp
        self._first[row] = first
        self._bid[row] = snapshot.bid_volume
        self._ask[row] = snapshot.ask_volume
        if self.venues:
            venues = getattr(snapshot, "venues", None)
            if tuple(venues or ()) != self.venues:
                raise DataError(f"heatmap keeps venues {self.venues}; the snapshot has {venues}")
            mask = snapshot.contributing[:, None]  # type: ignore[attr-defined]
            self._venue_bid[row] = np.where(mask, snapshot.venue_bid_volume, np.nan)  # type: ignore[attr-defined]
            self._venue_ask[row] = np.where(mask, snapshot.venue_ask_volume, np.nan)  # type: ignore[attr-defined]
        self.low = _move(self.low, first, count, self.width)
        self._count += 1

    def matrix(self, value: str = "total_volume", venue: str | None = None) -> Heatmap:
        """``(times, prices, values)``: times int64 oldest first, prices the grid's lower
        edges (float64, ascending), values float64 ``(rows, width)`` with NaN where a row
        does not cover a bucket."""
        _check_value(value)
        n = len(self)
        if n == 0 or self.low is None or self.bucket_size is None:
            return Heatmap(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, self.width)))
        order = (np.arange(self._count - n, self._count)) % self.capacity
        if venue is None:
            bid, ask = self._bid[order], self._ask[order]
        else:
            if venue not in self.venues:
                raise DataError(f"heatmap has no venue {venue!r}; it keeps {self.venues}")
            j = self.venues.index(venue)
            bid, ask = self._venue_bid[order, j], self._venue_ask[order, j]
        values = _value(bid, ask, value)
        cols = self._first[order][:, None] - self.low + np.arange(self._buckets)[None, :]
        keep = (cols >= 0) & (cols < self.width)
        out = np.full((n, self.width), np.nan)
        rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)
        out[rows[keep], cols[keep]] = values[keep]
        prices = (self.low + np.arange(self.width, dtype=np.float64)) * self.bucket_size
        return Heatmap(self._times[order].copy(), prices, out)


def heatmap_from_snapshots(
    snapshots: Sequence[_Snapshot],
    capacity: int,
    width: int,
    value: str = "total_volume",
) -> Heatmap:
    """The combined-book matrix a :class:`RollingHeatmap` gives after pushing ``snapshots``,
    built in one pass: the grid from the sequence of snapshot centres, then the newest
    ``capacity`` snapshots laid on the absolute bucket axis and cut to the grid."""
    _check_value(value)
    if capacity < 1 or width < 1:
        raise ConfigError(f"heatmap capacity and width must be >= 1, got {capacity}, {width}")
    if not snapshots:
        return Heatmap(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, width)))
    low = None
    for snap in snapshots:
        first, count = _keys(snap)
        low = _move(low, first, count, width)
    assert low is not None
    kept = snapshots[-capacity:]
    size = float(kept[0].bucket_size)
    firsts = np.array([_keys(s)[0] for s in kept], dtype=np.int64)
    lo = min(int(firsts.min()), low)
    hi = max(int(firsts.max()) + len(kept[0].bucket_prices), low + width)
    axis = np.full((len(kept), hi - lo), np.nan)
    for row, (snap, first) in enumerate(zip(kept, firsts, strict=True)):
        vals = _value(np.asarray(snap.bid_volume), np.asarray(snap.ask_volume), value)
        axis[row, first - lo : first - lo + len(vals)] = vals
    times = np.array([s.timestamp for s in kept], dtype=np.int64)
    prices = (low + np.arange(width, dtype=np.float64)) * size
    return Heatmap(times, prices, axis[:, low - lo : low - lo + width])
