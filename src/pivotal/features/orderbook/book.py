"""An L2 order book kept from one REST snapshot plus diff-depth events, with Binance's sequencing.

Prices are in the quote currency, quantities in the base asset, times UTC ms. A level's
quantity in a diff is absolute (0 removes the level).

Sequencing (``Sequencing.SPOT``, Binance spot ``@depth``):
  - events that arrive before a snapshot are buffered (bounded) and replayed after it;
  - after a snapshot with ``lastUpdateId = L``, events with ``u <= L`` are dropped (stale);
    the first applied event must have ``U <= L + 1 <= u``;
  - afterwards every event must have ``U == previous u + 1``.
``Sequencing.USDM`` (Binance USD-M futures ``@depth``): events with ``u < L`` are dropped, the
first applied event must have ``U <= L <= u``, afterwards ``pu == previous u``.

A break of these rules is a gap: it is counted, logged as a :class:`SequenceGap`, the book is
cleared and marked out of sync, and the offending event is buffered; nothing is applied until
:meth:`OrderBook.apply_snapshot` (a resync) is called. Once in sync, an event whose ``u`` is not
above the book's update id (a duplicate or an old redelivery) is dropped and counted: every
level quantity is absolute, so ignoring it leaves the book exact.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

import numpy as np
import numpy.typing as npt

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol

Levels = Iterable[tuple[float, float]] | npt.NDArray[np.float64]


class Sequencing(StrEnum):
    """Which update-id continuity rule the diff stream follows."""

    SPOT = "spot"  # U == previous u + 1
    USDM = "usdm"  # pu == previous u


class DiffOutcome(Enum):
    """What :meth:`OrderBook.apply_diff` did with one event."""

    APPLIED = "applied"
    STALE = "stale"  # u not above the book's update id: dropped, counted in ``dropped``
    BUFFERED = "buffered"  # no valid book yet (no snapshot, or after a gap): kept for resync
    GAP = "gap"  # sequence broken: book cleared, out of sync, event buffered, needs a snapshot


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """One detected break of the update-id sequence (``expected`` is the id rule's target)."""

    symbol: str
    expected: int  # spot: previous u + 1 (first event: lastUpdateId + 1); USD-M: previous u
    first_update_id: int
    final_update_id: int
    prev_final_update_id: int
    event_time: int


@dataclass(slots=True)
class _Event:
    first: int  # U
    final: int  # u
    prev: int  # pu (-1 on spot)
    event_time: int
    prices: list[float]
    qtys: list[float]
    is_bid: list[bool]


@dataclass(slots=True)
class _Side:
    """One side's levels (price → qty) with a lazily recomputed best price."""

    is_bid: bool
    levels: dict[float, float] = field(default_factory=dict)
    best: float | None = None
    best_valid: bool = True

    def set(self, price: float, qty: float) -> None:
        if qty > 0.0:
            self.levels[price] = qty
            if self.best_valid and (
                self.best is None or (price > self.best if self.is_bid else price < self.best)
            ):
                self.best = price
        elif self.levels.pop(price, None) is not None and price == self.best:
            self.best_valid = False

    def best_price(self) -> float | None:
        if not self.best_valid:
            if self.levels:
                self.best = max(self.levels) if self.is_bid else min(self.levels)
            else:
                self.best = None
            self.best_valid = True
        return self.best

    def clear(self) -> None:
        self.levels.clear()
        self.best, self.best_valid = None, True

    def top(self, n: int) -> npt.NDArray[np.float64]:
        pick = heapq.nlargest if self.is_bid else heapq.nsmallest
        prices = pick(n, self.levels)
        return np.array([(p, self.levels[p]) for p in prices], dtype=np.float64).reshape(-1, 2)


def _check_level(price: float, qty: float, symbol: str) -> None:
    if not price > 0.0 or price == float("inf"):
        raise DataError(f"{symbol} book level price must be positive and finite, got {price!r}")
    if not qty >= 0.0 or qty == float("inf"):
        raise DataError(f"{symbol} book level qty must be >= 0 and finite, got {qty!r}")


class OrderBook:
    """L2 book of one symbol; see the module docstring for the sequencing rules.

    Counters: ``gaps`` (sequence breaks seen), ``resyncs`` (snapshots applied after the first),
    ``dropped`` (stale or duplicate events ignored), ``snapshots``; ``gap_log`` lists the gaps.
    """

    def __init__(
        self,
        symbol: Symbol | str,
        sequencing: Sequencing | str = Sequencing.SPOT,
        *,
        max_buffer: int = 10_000,
    ) -> None:
        self.symbol = Symbol.parse(symbol)
        self.sequencing = Sequencing(sequencing)
        self._name = str(self.symbol)
        self._bids = _Side(True)
        self._asks = _Side(False)
        self._last_id = -1
        self._has_snapshot = False
        self._first_applied = False
        self._buffer: deque[_Event] = deque(maxlen=max_buffer)
        self.gaps = 0
        self.resyncs = 0
        self.dropped = 0
        self.snapshots = 0
        self.applied = 0
        self.updates = 0
        self.gap_log: list[SequenceGap] = []

    # ---------------------------------------------------------------- state
    @property
    def in_sync(self) -> bool:
        """True when the book holds a snapshot and no gap has broken it since."""
        return self._has_snapshot

    @property
    def last_update_id(self) -> int:
        """The update id the book reflects (snapshot lastUpdateId, then each applied ``u``)."""
        return self._last_id

    def best_bid(self) -> tuple[float, float] | None:
        """(price, qty) of the highest bid, or None when there is none."""
        p = self._bids.best_price()
        return None if p is None else (p, self._bids.levels[p])

    def best_ask(self) -> tuple[float, float] | None:
        """(price, qty) of the lowest ask, or None when there is none."""
        p = self._asks.best_price()
        return None if p is None else (p, self._asks.levels[p])

    def mid(self) -> float | None:
        """(best bid + best ask) / 2, or None when a side is empty."""
        b, a = self._bids.best_price(), self._asks.best_price()
        return None if b is None or a is None else (b + a) / 2.0

    def depth(self, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Top ``n`` levels: bids as (k, 2) [price, qty] best first (descending), asks ascending."""
        if n < 1:
            raise ValueError(f"depth(n) needs n >= 1, got {n}")
        return self._bids.top(n), self._asks.top(n)

    def side_arrays(self, side: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """All levels of ``side`` ("bid"/"ask") as (prices, qtys), unsorted; for bucketing."""
        levels = {"bid": self._bids, "ask": self._asks}[side].levels
        n = len(levels)
        return (
            np.fromiter(levels.keys(), dtype=np.float64, count=n),
            np.fromiter(levels.values(), dtype=np.float64, count=n),
        )

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)

    # ---------------------------------------------------------------- updates
    def apply_snapshot(self, last_update_id: int, bids: Levels, asks: Levels) -> int:
        """Replace the book with a REST snapshot, then replay buffered events.

        Returns how many buffered events were applied. A snapshot after the first counts as a
        resync.
        """
        self._bids.clear()
        self._asks.clear()
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            for price, qty in levels:
                price, qty = float(price), float(qty)
                _check_level(price, qty, self._name)
                side.set(price, qty)
        if self.snapshots:
            self.resyncs += 1
        self.snapshots += 1
        self._last_id = int(last_update_id)
        self._has_snapshot = True
        self._first_applied = False
        pending, self._buffer = self._buffer, deque(maxlen=self._buffer.maxlen)
        return sum(self._apply(e) is DiffOutcome.APPLIED for e in pending)

    def apply_diff(
        self,
        symbol: Symbol | str,
        first_update_id: int,
        final_update_id: int,
        bids: Levels,
        asks: Levels,
        prev_final_update_id: int | None = None,
        event_time: int = -1,
    ) -> DiffOutcome:
        """Apply one diff-depth event (U, u, pu) for ``symbol``; raise DataError on another one."""
        self.check_symbol(symbol)
        if self.sequencing is Sequencing.USDM and prev_final_update_id is None:
            raise ValueError("USD-M diffs need prev_final_update_id (pu) for the continuity check")
        prices: list[float] = []
        qtys: list[float] = []
        is_bid: list[bool] = []
        for flag, levels in ((True, bids), (False, asks)):
            for price, qty in levels:
                prices.append(float(price))
                qtys.append(float(qty))
                is_bid.append(flag)
        pu = -1 if prev_final_update_id is None else int(prev_final_update_id)
        event = _Event(
            int(first_update_id), int(final_update_id), pu, int(event_time), prices, qtys, is_bid
        )
        return self._apply(event)

    def check_symbol(self, symbol: Symbol | str) -> None:
        """Raise DataError unless ``symbol`` is this book's symbol."""
        if symbol == self.symbol or symbol == self._name:
            return
        try:
            other = Symbol.parse(symbol)
        except ValueError:
            other = None
        if other != self.symbol:
            raise DataError(
                f"depth diff for {symbol!s} sent to the {self._name} order book; "
                f"route each symbol's diffs to its own OrderBook"
            )

    def _apply(self, e: _Event) -> DiffOutcome:
        if not self._has_snapshot:
            self._buffer.append(e)
            return DiffOutcome.BUFFERED
        last = self._last_id
        spot = self.sequencing is Sequencing.SPOT
        if e.final <= last if (spot or self._first_applied) else e.final < last:
            self.dropped += 1
            return DiffOutcome.STALE
        if not self._first_applied:
            ok, expected = (e.first <= last + 1, last + 1) if spot else (e.first <= last, last)
        elif spot:
            ok, expected = e.first == last + 1, last + 1
        else:
            ok, expected = e.prev == last, last
        if not ok:
            self.gaps += 1
            self.gap_log.append(
                SequenceGap(self._name, expected, e.first, e.final, e.prev, e.event_time)
            )
            self._bids.clear()
            self._asks.clear()
            self._has_snapshot = False
            self._buffer.append(e)
            return DiffOutcome.GAP
        bids, asks, name = self._bids, self._asks, self._name
        for price, qty, flag in zip(e.prices, e.qtys, e.is_bid, strict=True):
            if not (price > 0.0 and qty >= 0.0):
                _check_level(price, qty, name)
            (bids if flag else asks).set(price, qty)
        self._last_id = e.final
        self._first_applied = True
        self.applied += 1
        self.updates += len(e.prices)
        return DiffOutcome.APPLIED


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One event of a replay, after it went to the book (snapshots have outcome None)."""

    index: int
    is_snapshot: bool
    first_update_id: int
    final_update_id: int
    event_time: int
    local_ts_ns: int
    n_levels: int
    outcome: DiffOutcome | None


class DepthEvents:
    """The columnar depth layout of ``../shared/data`` grouped into events.

    Consecutive rows with equal (is_snapshot, final_update_id, local_ts_ns) form one event
    (a snapshot or one diff). Columns: local_ts_ns, event_time, first_update_id (U),
    final_update_id (u), prev_final_update_id (pu, -1 on spot), side (bid/ask), price, qty,
    is_snapshot.
    """

    def __init__(self, frame: object) -> None:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise TypeError("DepthEvents needs a pandas DataFrame in the depth parquet layout")
        need = ("local_ts_ns", "event_time", "first_update_id", "final_update_id")
        need += ("prev_final_update_id", "side", "price", "qty", "is_snapshot")
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise DataError(f"depth frame lacks columns {missing}; it has {list(frame.columns)}")
        snap = frame["is_snapshot"].to_numpy(dtype=bool)
        u = frame["final_update_id"].to_numpy(dtype=np.int64)
        ts = frame["local_ts_ns"].to_numpy(dtype=np.int64)
        side = frame["side"].astype(str).str.lower().to_numpy()
        bad = ~np.isin(side, ("bid", "ask"))
        if bad.any():
            raise DataError(f"depth row {int(np.argmax(bad))}: side must be bid/ask")
        n = len(frame)
        change = np.ones(n, dtype=bool)
        if n:
            change[1:] = (snap[1:] != snap[:-1]) | (u[1:] != u[:-1]) | (ts[1:] != ts[:-1])
        self.starts = np.flatnonzero(change)
        self.ends = np.append(self.starts[1:], n).astype(np.int64)
        s = self.starts
        self.is_snapshot = snap[s]
        self.first_update_id = frame["first_update_id"].to_numpy(dtype=np.int64)[s]
        self.final_update_id = u[s]
        self.prev_final_update_id = frame["prev_final_update_id"].to_numpy(dtype=np.int64)[s]
        self.event_time = frame["event_time"].to_numpy(dtype=np.int64)[s]
        self.local_ts_ns = ts[s]
        self._price: list[float] = frame["price"].to_numpy(dtype=np.float64).tolist()
        self._qty: list[float] = frame["qty"].to_numpy(dtype=np.float64).tolist()
        self._is_bid: list[bool] = (side == "bid").tolist()
        self.n_rows = n

    def __len__(self) -> int:
        return len(self.starts)

    def apply(self, i: int, book: OrderBook) -> DiffOutcome | None:
        """Send event ``i`` to ``book`` (a snapshot replaces it); None for snapshots."""
        a, b = int(self.starts[i]), int(self.ends[i])
        prices, qtys, is_bid = self._price[a:b], self._qty[a:b], self._is_bid[a:b]
        if self.is_snapshot[i]:
            bids = [(p, q) for p, q, f in zip(prices, qtys, is_bid, strict=True) if f]
            asks = [(p, q) for p, q, f in zip(prices, qtys, is_bid, strict=True) if not f]
            book.apply_snapshot(int(self.final_update_id[i]), bids, asks)
            return None
        event = _Event(
            int(self.first_update_id[i]),
            int(self.final_update_id[i]),
            int(self.prev_final_update_id[i]),
            int(self.event_time[i]),
            prices,
            qtys,
            is_bid,
        )
        return book._apply(event)

    def step(self, i: int, outcome: DiffOutcome | None) -> ReplayStep:
        """The :class:`ReplayStep` record of event ``i``."""
        return ReplayStep(
            i,
            bool(self.is_snapshot[i]),
            int(self.first_update_id[i]),
            int(self.final_update_id[i]),
            int(self.event_time[i]),
            int(self.local_ts_ns[i]),
            int(self.ends[i] - self.starts[i]),
            outcome,
        )


def iter_replay(events: DepthEvents, book: OrderBook) -> Iterator[ReplayStep]:
    """Apply every event in file order to ``book``, yielding a step after each one."""
    for i in range(len(events)):
        yield events.step(i, events.apply(i, book))


def replay_depth(events: DepthEvents, book: OrderBook) -> dict[str, int]:
    """Apply all events in file order; return counts of what happened during this replay.

    ``applied``/``updates`` count diff events and level changes applied to the book (including
    buffered events applied after a snapshot), ``stale`` dropped events, ``gaps``, ``resyncs``,
    ``snapshots`` and ``events`` (all events read).
    """
    before = (book.applied, book.updates, book.dropped, book.gaps, book.resyncs, book.snapshots)
    for i in range(len(events)):
        events.apply(i, book)
    after = (book.applied, book.updates, book.dropped, book.gaps, book.resyncs, book.snapshots)
    names = ("applied", "updates", "stale", "gaps", "resyncs", "snapshots")
    counts = {k: a - b for k, a, b in zip(names, after, before, strict=True)}
    counts["events"] = len(events)
    return counts


def levels_from_pairs(pairs: Sequence[Sequence[str | float]]) -> list[tuple[float, float]]:
    """Binance wire levels ``[["price", "qty"], ...]`` as float pairs."""
    return [(float(p), float(q)) for p, q in pairs]
