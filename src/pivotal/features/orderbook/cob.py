"""Consolidated order book (COB): the L2 book bucketed by price around the mid, once a second.

Units: prices in the quote currency, volumes in the base asset, timestamps UTC ms.

Bucket alignment: with bucket size ``b`` and mid ``m``, bucket ``k`` covers prices
``[k * b, (k + 1) * b)``; the central bucket is ``c = floor(m / b)`` (the one holding the mid)
and a snapshot covers buckets ``c - n .. c + n`` (``2n + 1`` buckets, lowest price first).
``bucket_prices`` are lower edges ``k * b``. Every level of the book inside that range counts:
bids and asks are summed separately per bucket. ``imbalance = (bid - ask) / (bid + ask)``
(0 where both are 0); ``volume_weighted_prices`` is ``sum(price * qty) / sum(qty)`` over both
sides' levels in the bucket, or the bucket's centre ``(k + 0.5) * b`` when it is empty.

1s snapshots: the snapshot stamped ``T`` (a whole second) is the book after every event with
event time ``< T``; it is emitted when the first event with event time ``>= T`` arrives, so it
uses no later data. Seconds without events repeat the unchanged book. No snapshot is emitted
while the book is out of sync (after a gap, until a resync) or has an empty side.

Imbalance moving averages: ``imbalance_ma[w]`` at ``T`` is the mean of the imbalance of the
``2 * ma_buckets + 1`` central buckets (relative to each snapshot's own central bucket) over
the snapshots ``T - (w - 1) s .. T``; NaN until ``w`` consecutive seconds exist (warm-up, also
after a break in the 1s series). It is kept with running sums: O(1) per snapshot and window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.features.orderbook.book import DepthEvents, OrderBook

_EPS = 1e-9  # guards floor(price / b) against binary rounding just below an edge


class COBConfig(BaseModel):
    """COB settings. ``bucket_sizes`` maps ``BASE/QUOTE`` to a bucket width in quote currency;
    other symbols get the power of ten nearest to ``mid * default_bucket_bps / 10_000``,
    fixed at the first snapshot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buckets: int = Field(20, ge=1, le=10_000)
    ma_buckets: int = Field(5, ge=0)
    ma_windows_s: tuple[int, ...] = (1, 5, 15, 60)
    bucket_sizes: dict[str, float] = Field(
        default_factory=lambda: {"BTC/USDT": 10.0, "ETH/USDT": 1.0}
    )
    default_bucket_bps: float = Field(2.0, gt=0)

    @field_validator("ma_windows_s")
    @classmethod
    def _windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w < 1 for w in value) or len(set(value)) != len(value):
            raise ValueError("ma_windows_s must be distinct positive seconds, e.g. (1, 5, 15, 60)")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _central(self) -> COBConfig:
        if self.ma_buckets > self.buckets:
            raise ValueError(
                f"ma_buckets ({self.ma_buckets}) must not exceed buckets ({self.buckets})"
            )
        return self

    @field_validator("bucket_sizes")
    @classmethod
    def _sizes(cls, value: dict[str, float]) -> dict[str, float]:
        out = {}
        for key, size in value.items():
            if not size > 0 or not math.isfinite(size):
                raise ValueError(f"bucket size of {key} must be positive, got {size}")
            out[str(Symbol.parse(key))] = float(size)
        return out

    def bucket_size(self, symbol: Symbol | str, mid: float) -> float:
        """The bucket width for ``symbol`` (``BTC/USDT:USDT`` falls back to ``BTC/USDT``)."""
        sym = Symbol.parse(symbol)
        for key in (str(sym), f"{sym.base}/{sym.quote}"):
            if key in self.bucket_sizes:
                return self.bucket_sizes[key]
        return float(10.0 ** round(math.log10(mid * self.default_bucket_bps / 10_000.0)))


class Buckets(NamedTuple):
    """Per-bucket arrays of one bucketization, lowest price first."""

    bucket_prices: npt.NDArray[np.float64]
    bid_volume: npt.NDArray[np.float64]
    ask_volume: npt.NDArray[np.float64]
    imbalance: npt.NDArray[np.float64]
    volume_weighted_prices: npt.NDArray[np.float64]


def bucketize(
    bid_prices: npt.ArrayLike,
    bid_qtys: npt.ArrayLike,
    ask_prices: npt.ArrayLike,
    ask_qtys: npt.ArrayLike,
    mid: float,
    bucket_size: float,
    n: int,
) -> Buckets:
    """Sum levels into the ``2n + 1`` buckets around ``mid`` (see the module docstring).

    Levels are summed in ascending price order whatever order they come in, so a book held
    as a dict (replays) and one held as sorted arrays (live streams) give identical bits.
    """
    if not (mid > 0 and bucket_size > 0 and n >= 0):
        raise ValueError(
            f"bucketize needs mid > 0, bucket_size > 0, n >= 0; got {mid}, {bucket_size}, {n}"
        )
    width = 2 * n + 1
    first = math.floor(mid / bucket_size + _EPS) - n
    sums = []
    for prices, qtys in ((bid_prices, bid_qtys), (ask_prices, ask_qtys)):
        p = np.asarray(prices, dtype=np.float64)
        q = np.asarray(qtys, dtype=np.float64)
        idx = np.floor(p / bucket_size + _EPS).astype(np.int64) - first
        keep = (idx >= 0) & (idx < width)
        idx, p, q = idx[keep], p[keep], q[keep]
        # canonical (ascending price) order: any ordering of the same levels sums to the same bits
        order = np.argsort(p, kind="stable")
        idx, p, q = idx[order], p[order], q[order]
        # astype: bincount returns int64 for empty input even when weighted
        sums.append(np.bincount(idx, weights=q, minlength=width).astype(np.float64))
        sums.append(np.bincount(idx, weights=p * q, minlength=width).astype(np.float64))
    bid, bid_pq, ask, ask_pq = sums
    edges = (first + np.arange(width, dtype=np.float64)) * bucket_size
    total = bid + ask
    with np.errstate(invalid="ignore", divide="ignore"):
        imbalance = np.where(total > 0, (bid - ask) / total, 0.0)
        vwap = np.where(total > 0, (bid_pq + ask_pq) / total, edges + bucket_size / 2.0)
    return Buckets(edges, bid, ask, imbalance, vwap)


class ImbalanceMA:
    """Streaming means of the last ``w`` vectors for several windows, O(1) per push.

    Push one vector per second with its timestamp; a timestamp that is not the previous one
    plus ``step_ms`` restarts the history (NaN until ``w`` consecutive vectors).
    """

    _REFRESH = 4096  # pushes between exact re-summations, bounding rounding drift

    def __init__(self, windows: Sequence[int], width: int, step_ms: int = 1000) -> None:
        self.windows = tuple(windows)
        self.width = width
        self.step_ms = step_ms
        self._cap = max(self.windows)
        self._ring = np.zeros((self._cap, width))
        self._sums = {w: np.zeros(width) for w in self.windows}
        self._count = 0  # consecutive vectors pushed
        self._last_ts: int | None = None
        self._pushes = 0

    def push(self, timestamp: int, values: npt.NDArray[np.float64]) -> dict[int, npt.NDArray]:
        """Add the vector for ``timestamp``; return {window: mean or NaN array}."""
        if self._last_ts is None or timestamp != self._last_ts + self.step_ms:
            self._count = 0
            for s in self._sums.values():
                s[:] = 0.0
        self._last_ts = timestamp
        n = self._count  # index of this vector in the consecutive run
        leaving = {w: self._ring[(n - w) % self._cap].copy() for w in self.windows if n >= w}
        self._ring[n % self._cap] = values
        self._count = n + 1
        self._pushes += 1
        out = {}
        for w, s in self._sums.items():
            s += values
            if w in leaving:
                s -= leaving[w]
            if self._pushes % self._REFRESH == 0 and self._count >= w:
                s[:] = self._ring[[(n - k) % self._cap for k in range(w)]].sum(axis=0)
            out[w] = s / w if self._count >= w else np.full(self.width, np.nan)
        return out


class SecondTicks:
    """The whole seconds a 1s sampler owes: :meth:`due` gives every ``T <= event_time`` not
    given before, oldest first; the first call only starts the clock (its seconds are not
    owed: nothing before the first event is known)."""

    def __init__(self) -> None:
        self._next_t: int | None = None

    def due(self, event_time: int) -> range:
        if self._next_t is None:
            self._next_t = (event_time // 1000 + 1) * 1000
            return range(0)
        if self._next_t > event_time:
            return range(0)
        end = (event_time // 1000 + 1) * 1000
        seconds = range(self._next_t, end, 1000)
        self._next_t = end
        return seconds


class COBSampler:
    """Turns a book into 1s :class:`COBData` snapshots; call :meth:`advance` before each event.

    ``order_flow`` optionally maps a second's start (ms) to metrics; the snapshot at ``T``
    carries those of ``[T - 1000, T)``.
    """

    def __init__(
        self,
        book: OrderBook,
        config: COBConfig | None = None,
        order_flow: Mapping[int, Mapping[str, float]] | None = None,
    ) -> None:
        self.book = book
        self.config = config or COBConfig()
        self.order_flow = order_flow or {}
        self.bucket_size: float | None = None
        self._ticks = SecondTicks()
        m = self.config.ma_buckets
        self._central = slice(self.config.buckets - m, self.config.buckets + m + 1)
        self._ma = ImbalanceMA(self.config.ma_windows_s, 2 * m + 1)

    def advance(self, event_time: int) -> list[COBData]:
        """Emit snapshots for every whole second ``T <= event_time`` not yet emitted."""
        if event_time < 0:
            return []
        snaps = (self.snapshot(t) for t in self._ticks.due(event_time))
        return [s for s in snaps if s is not None]

    def snapshot(self, timestamp: int) -> COBData | None:
        """The COB of the book as it is now, stamped ``timestamp``; None when unusable."""
        book = self.book
        mid = book.mid()
        if not book.in_sync or mid is None:
            return None
        if self.bucket_size is None:
            self.bucket_size = self.config.bucket_size(book.symbol, mid)
        bp, bq = book.side_arrays("bid")
        ap, aq = book.side_arrays("ask")
        b = bucketize(bp, bq, ap, aq, mid, self.bucket_size, self.config.buckets)
        ma = self._ma.push(timestamp, b.imbalance[self._central])
        return COBData(
            symbol=book.symbol,
            timestamp=int(timestamp),
            current_price=float(mid),
            bucket_size=self.bucket_size,
            bucket_prices=b.bucket_prices,
            bid_volume=b.bid_volume,
            ask_volume=b.ask_volume,
            imbalance=b.imbalance,
            volume_weighted_prices=b.volume_weighted_prices,
            imbalance_ma=ma,
            order_flow_metrics=self.order_flow.get(timestamp - 1000, {}),
        )


def iter_cob(
    events: DepthEvents,
    book: OrderBook,
    config: COBConfig | None = None,
    order_flow: Mapping[int, Mapping[str, float]] | None = None,
) -> Iterator[COBData]:
    """Replay ``events`` into ``book`` and yield the 1s COB snapshots (see module docstring)."""
    sampler = COBSampler(book, config, order_flow)
    for i in range(len(events)):
        yield from sampler.advance(int(events.event_time[i]))
        events.apply(i, book)


class Heatmap(NamedTuple):
    """``matrix[t, j]`` is the value at ``times[t]`` (UTC ms) in the bucket whose lower edge is
    ``prices[j]`` (ascending); NaN where that snapshot did not cover the bucket."""

    times: npt.NDArray[np.int64]
    prices: npt.NDArray[np.float64]
    matrix: npt.NDArray[np.float64]


_HEAT_VALUES = ("total_volume", "bid_volume", "ask_volume", "imbalance")


def cob_heatmap(snapshots: Sequence[COBData], value: str = "total_volume") -> Heatmap:
    """Time × price matrix of ``value`` (one of total_volume, bid_volume, ask_volume,
    imbalance) on the absolute bucket grid spanned by the snapshots."""
    if value not in _HEAT_VALUES:
        raise ValueError(f"heatmap value must be one of {_HEAT_VALUES}, got {value!r}")
    if not snapshots:
        return Heatmap(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 0)))
    size = snapshots[0].bucket_size
    if any(s.bucket_size != size for s in snapshots):
        raise ValueError("heatmap snapshots must share one bucket size")
    keys = [np.rint(s.bucket_prices / size).astype(np.int64) for s in snapshots]
    lo = min(int(k[0]) for k in keys)
    hi = max(int(k[-1]) for k in keys)
    matrix = np.full((len(snapshots), hi - lo + 1), np.nan)
    for row, (snap, k) in enumerate(zip(snapshots, keys, strict=True)):
        total = value == "total_volume"
        matrix[row, k - lo] = snap.bid_volume + snap.ask_volume if total else getattr(snap, value)
    times = np.array([s.timestamp for s in snapshots], dtype=np.int64)
    prices = np.arange(lo, hi + 1, dtype=np.float64) * size
    return Heatmap(times, prices, matrix)
