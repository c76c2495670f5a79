"""The exchange's view of one symbol at the replay cursor: book, recent trades, klines.

:class:`MarketState` starts from a :class:`SymbolFlow`'s snapshot and history and is moved
forward by :meth:`MarketState.apply` (one flow event; the cursor ``now_ms`` becomes the
event's time) and :meth:`MarketState.advance` (the clock alone, e.g. at every market second;
it returns the kline pushes). The server answers REST queries from it.

- **Book**: price → quantity per side plus a sorted price list, so ``depth(1000)`` is a slice.
  Diffs follow Binance spot sequencing: stale diffs (``u <=`` the book's id) are ignored; the
  first one after the snapshot must straddle ``lastUpdateId + 1``, later ones must continue
  (``U == previous u + 1``); a break raises :class:`DataError` (a flow is clean by contract;
  faults are injected per connection by the server, not here).
- **Trades**: the newest ``trade_capacity`` trades in columnar storage (time, id, price, qty,
  buyer-maker), searched by id and by time.
- **Klines**, for every timeframe asked for, built from the trades with the semantics of
  :mod:`pivotal.data.tick_aggregation`: a trade at ``t`` belongs to the kline opening at
  ``t - t % tf``; open/close are the first/last trade price, buy and sell volume are summed
  separately and ``volume = buy + sell``; an interval without trades is a kline with zero
  volume at the previous close (as Binance publishes them). ``history`` candles (closed before
  the flow's start) come first; a timeframe without history of its own is resampled from the
  finest history timeframe that divides it, and the interval the flow starts in is seeded
  from the finer history candles it already holds. History candles carry no quote volume,
  trade count or taker volume: quote volume is estimated as ``volume × (o+h+l+c)/4``, taker
  buy volume as half the volume, the trade count as 0. The newest ``kline_capacity`` klines
  per timeframe are kept.

Times are UTC ms; prices in the quote asset, quantities in the base asset.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import resample
from pivotal.localexchange.flow import (
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    Kline,
    SymbolFlow,
    TradePrint,
)

__all__ = ["BINANCE_TIMEFRAMES", "MarketState"]

BINANCE_TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)
"""Binance's kline intervals from 1s to 1d (1w and 1M are not served)."""

# kline row layout (one float64 column each; times and counts are exact below 2**53)
_OT, _O, _H, _L, _C, _V, _QV, _N, _TBV, _TBQV = range(10)
# trade row layout
_T_TIME, _T_ID, _T_PRICE, _T_QTY, _T_MAKER = range(5)


class _Rows:
    """The newest ``capacity`` rows of a fixed number of float64 columns, appended in order.

    Column-major storage with room for up to ``2 × capacity`` rows: the live rows are always
    one contiguous slice per column; when the buffer is full the live rows move to the front
    (amortised O(1) per row). ``total`` counts every row ever appended.
    """

    def __init__(self, width: int, capacity: int) -> None:
        self.capacity = capacity
        self.data: npt.NDArray[np.float64] = np.empty((width, min(1024, 2 * capacity)))
        self.start = 0
        self.end = 0
        self.total = 0

    def __len__(self) -> int:
        return self.end - self.start

    def _room(self, n: int) -> None:
        size = self.end - self.start
        if self.end + n <= self.data.shape[1]:
            return
        limit = 2 * self.capacity
        if size + n > self.data.shape[1] and self.data.shape[1] < limit:
            grown = np.empty(
                (self.data.shape[0], min(limit, max(2 * self.data.shape[1], size + n)))
            )
            grown[:, :size] = self.data[:, self.start : self.end]
            self.data = grown
        else:
            keep = min(size, max(0, self.capacity - n))
            self.data[:, :keep] = self.data[:, self.end - keep : self.end]
            size = keep
        self.start, self.end = 0, size

    def append(self, row: Sequence[float]) -> None:
        if self.end == self.data.shape[1]:
            self._room(1)
        self.data[:, self.end] = row
        self.end += 1
        self.total += 1
        if self.end - self.start > self.capacity:
            self.start += 1

    def extend(self, block: npt.NDArray[np.float64]) -> None:
        """Append the columns of ``block`` (shape ``(width, n)``)."""
        n = block.shape[1]
        if n == 0:
            return
        if n > self.capacity:
            block = block[:, n - self.capacity :]
        self._room(block.shape[1])
        self.data[:, self.end : self.end + block.shape[1]] = block
        self.end += block.shape[1]
        self.total += n
        if self.end - self.start > self.capacity:
            self.start = self.end - self.capacity

    def column(self, i: int) -> npt.NDArray[np.float64]:
        return self.data[i, self.start : self.end]

    def block(self, lo: int, hi: int) -> list[list[float]]:
        """Rows ``lo..hi-1`` (live positions) as lists of floats."""
        return self.data[:, self.start + lo : self.start + hi].T.tolist()


def _kline(row: Sequence[float], tf_ms: int, closed: bool) -> Kline:
    ot = int(row[_OT])
    return Kline(
        ot,
        ot + tf_ms - 1,
        row[_O],
        row[_H],
        row[_L],
        row[_C],
        row[_V],
        row[_QV],
        int(row[_N]),
        row[_TBV],
        row[_TBQV],
        closed,
    )


def _history_rows(candles: Candles) -> npt.NDArray[np.float64]:
    o, h, lo, c, v = candles.open, candles.high, candles.low, candles.close, candles.volume
    quote = v * (o + h + lo + c) / 4.0
    times = candles.timestamp.astype(np.float64)
    return np.vstack([times, o, h, lo, c, v, quote, np.zeros(len(v)), v / 2.0, quote / 2.0])


class _Open:
    """The kline still open: mutable scalars, buy and sell volume summed apart."""

    __slots__ = ("buy", "buy_quote", "close", "count", "has_data", "high", "low", "open")
    __slots__ += ("open_time", "quote", "sell")

    def __init__(self, open_time: int, price: float) -> None:
        self.open_time = open_time
        self.open = self.high = self.low = self.close = price
        self.buy = self.sell = self.quote = self.buy_quote = 0.0
        self.count = 0
        self.has_data = False

    def row(self) -> tuple[float, ...]:
        volume = self.buy + self.sell
        return (
            float(self.open_time),
            self.open,
            self.high,
            self.low,
            self.close,
            volume,
            self.quote,
            float(self.count),
            self.buy,
            self.buy_quote,
        )


class _Series:
    """Klines of one timeframe: closed rows (history, then built) plus the open one."""

    def __init__(self, tf: Timeframe, capacity: int) -> None:
        self.tf = tf
        self.tf_ms = tf.ms
        self.rows = _Rows(10, capacity)
        self.cur: _Open | None = None
        self.pushed = 0  # rows.total already reported by advance (or history)
        self.dirty = False

    def start(
        self, history: Candles, seed: Candles, start_ms: int, last_close: float | None
    ) -> None:
        """History rows, empty rows up to the interval of ``start_ms``, and the open kline."""
        tf_ms = self.tf_ms
        if len(history):
            self.rows.extend(_history_rows(history))
        if last_close is not None:
            first = start_ms - start_ms % tf_ms
            if len(self.rows):
                self._fill(int(self.rows.column(_OT)[-1]) + tf_ms, first, last_close)
            self.cur = _Open(first, last_close)
            if len(seed):
                cur = self.cur
                cur.open, cur.close = float(seed.open[0]), float(seed.close[-1])
                cur.high, cur.low = float(seed.high.max()), float(seed.low.min())
                volume = float(seed.volume.sum())
                cur.buy = cur.sell = volume / 2.0
                cur.quote = float(_history_rows(seed)[_QV].sum())
                cur.buy_quote = cur.quote / 2.0
                cur.has_data = True
        self.pushed = self.rows.total

    def _fill(self, first: int, stop: int, price: float) -> None:
        """Zero-volume rows at ``price`` for the intervals ``first, first + tf, ... < stop``."""
        if stop <= first:
            return
        times = np.arange(first, stop, self.tf_ms, dtype=np.float64)
        n = len(times)
        block = np.zeros((10, n))
        block[_OT] = times
        block[_O : _C + 1] = price
        self.rows.extend(block)

    def roll(self, open_time: int) -> None:
        """Close the open kline and every empty interval before ``open_time``; open that one."""
        cur = self.cur
        if cur is None or open_time <= cur.open_time:
            return
        self.rows.append(cur.row())
        self._fill(cur.open_time + self.tf_ms, open_time, cur.close)
        self.cur = _Open(open_time, cur.close)
        self.dirty = True

    def trade(self, time_ms: int, price: float, qty: float, buyer_maker: bool) -> None:
        open_time = time_ms - time_ms % self.tf_ms
        cur = self.cur
        if cur is None:
            cur = self.cur = _Open(open_time, price)
        elif open_time != cur.open_time:
            if open_time < cur.open_time:
                raise DataError(
                    f"trade at {time_ms} falls in the {self.tf} kline {open_time}, which is "
                    f"already closed (open kline {cur.open_time}); apply events in time order"
                )
            self.roll(open_time)
            cur = self.cur
            assert cur is not None
        if cur.has_data:
            if price > cur.high:
                cur.high = price
            elif price < cur.low:
                cur.low = price
            cur.close = price
        else:
            cur.open = cur.high = cur.low = cur.close = price
            cur.has_data = True
        if buyer_maker:
            cur.sell += qty
        else:
            cur.buy += qty
            cur.buy_quote += price * qty
        cur.quote += price * qty
        cur.count += 1
        self.dirty = True

    def pushes(self) -> list[Kline]:
        rows, tf_ms = self.rows, self.tf_ms
        out: list[Kline] = []
        new = rows.total - self.pushed
        if new:
            n = min(new, len(rows))
            out = [_kline(r, tf_ms, True) for r in rows.block(len(rows) - n, len(rows))]
            self.pushed = rows.total
        if self.dirty and self.cur is not None:
            out.append(_kline(self.cur.row(), tf_ms, False))
            self.dirty = False
        return out

    def query(self, start_ms: int | None, end_ms: int | None, limit: int) -> list[Kline]:
        rows, tf_ms, cur = self.rows, self.tf_ms, self.cur
        times = rows.column(_OT)
        cur_in = (
            cur is not None
            and (start_ms is None or cur.open_time >= start_ms)
            and (end_ms is None or cur.open_time <= end_ms)
        )
        hi = len(rows) if end_ms is None else int(np.searchsorted(times, end_ms, "right"))
        if start_ms is not None:
            lo = int(np.searchsorted(times, start_ms, "left"))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - (limit - 1 if cur_in else limit))
        out = [_kline(r, tf_ms, True) for r in rows.block(lo, hi)] if hi > lo else []
        if cur_in and len(out) < limit:
            assert cur is not None
            out.append(_kline(cur.row(), tf_ms, False))
        return out


class _Side:
    """One book side: price → qty and the prices in ascending order."""

    __slots__ = ("bid", "prices", "qty")

    def __init__(self, bid: bool) -> None:
        self.bid = bid
        self.qty: dict[float, float] = {}
        self.prices: list[float] = []

    def set(self, price: float, qty: float) -> None:
        if qty > 0.0:
            if price not in self.qty:
                insort(self.prices, price)
            self.qty[price] = qty
        elif self.qty.pop(price, None) is not None:
            del self.prices[bisect_left(self.prices, price)]

    def best(self) -> tuple[float, float] | None:
        if not self.prices:
            return None
        price = self.prices[-1] if self.bid else self.prices[0]
        return price, self.qty[price]

    def levels(self, limit: int) -> tuple[tuple[float, float], ...]:
        qty = self.qty
        picked = self.prices[: -limit - 1 : -1] if self.bid else self.prices[:limit]
        return tuple([(p, qty[p]) for p in picked])


def _finest(history: Mapping[Timeframe, Candles], tf: Timeframe) -> Timeframe | None:
    dividing = [t for t, c in history.items() if len(c) and tf.ms % t.ms == 0 and t != tf]
    return min(dividing, key=lambda t: t.ms) if dividing else None


class MarketState:
    """The exchange's view of one symbol at the replay cursor (see the module docstring).

    ``timeframes``: the kline intervals kept (default all Binance intervals 1s..1d);
    ``trade_capacity``: how many of the newest trades are kept for the trade queries;
    ``kline_capacity``: how many of the newest klines are kept per timeframe.
    """

    def __init__(
        self,
        flow: SymbolFlow,
        timeframes: Sequence[Timeframe] = BINANCE_TIMEFRAMES,
        trade_capacity: int = 1_000_000,
        *,
        kline_capacity: int = 500_000,
    ) -> None:
        if trade_capacity < 1 or kline_capacity < 1:
            raise ValueError("trade_capacity and kline_capacity must be at least 1")
        self.flow = flow
        self.symbol = flow.symbol
        self.now_ms = flow.start_ms
        self._bids, self._asks = _Side(True), _Side(False)
        snap = flow.snapshot
        for price, qty in snap.bids:
            self._bids.set(price, qty)
        for price, qty in snap.asks:
            self._asks.set(price, qty)
        self._book_id = snap.last_update_id
        self._book_time = flow.start_ms
        self._synced = False  # True once the first diff after the snapshot is applied
        self._top: BookTop | None = None
        self._trades = _Rows(5, trade_capacity)
        self._series: dict[Timeframe, _Series] = {}
        self._start_series([Timeframe.parse(t) for t in timeframes], kline_capacity)

    # ------------------------------------------------------------------ setup
    def _start_series(self, timeframes: list[Timeframe], capacity: int) -> None:
        start = self.flow.start_ms
        history = {Timeframe.parse(t): c for t, c in self.flow.history.items()}
        closed = {t: c[c.timestamp + t.ms <= start] for t, c in history.items()}
        last_close, last_end = None, None
        for t, c in sorted(closed.items(), key=lambda item: -item[0].ms):
            if len(c) and (last_end is None or int(c.timestamp[-1]) + t.ms >= last_end):
                last_end, last_close = int(c.timestamp[-1]) + t.ms, float(c.close[-1])
        for tf in timeframes:
            series = _Series(tf, capacity)
            own = closed.get(tf)
            finer = _finest(closed, tf)
            seed = Candles.empty()
            if finer is not None:
                src = closed[finer]
                first = start - start % tf.ms
                seed = src[src.timestamp >= first]
                if own is None or not len(own):
                    own = self._resampled(src, finer, tf, first)
            series.start(own if own is not None else Candles.empty(), seed, start, last_close)
            self._series[tf] = series

    @staticmethod
    def _resampled(src: Candles, finer: Timeframe, tf: Timeframe, first: int) -> Candles:
        """Closed ``tf`` candles from ``finer`` ones, without a first bucket cut by the data."""
        src = src[src.timestamp < first]
        if not len(src):
            return Candles.empty()
        out = resample(src, finer, tf, partial=True)
        if len(out) and out.timestamp[0] != src.timestamp[0]:
            out = out[1:]
        return out

    # ------------------------------------------------------------------ updates
    def apply(self, event: FlowEvent) -> None:
        """Apply one flow event and move the cursor to its time (events in time order)."""
        time_ms = event.time_ms
        if time_ms < self.now_ms:
            raise DataError(
                f"{self.symbol}: event at {time_ms} is before the cursor {self.now_ms}; apply "
                "a flow's events in order and do not advance() past events not yet applied"
            )
        self.now_ms = time_ms
        if type(event) is TradePrint:
            self._trades.append(
                (time_ms, event.trade_id, event.price, event.qty, 1.0 if event.buyer_maker else 0.0)
            )
            for series in self._series.values():
                series.trade(time_ms, event.price, event.qty, event.buyer_maker)
        elif type(event) is DepthDiff:
            self._apply_diff(event)
        elif type(event) is BookTop:
            self._top = event
        else:
            raise TypeError(f"not a flow event: {event!r}")

    def _apply_diff(self, diff: DepthDiff) -> None:
        last = self._book_id
        if diff.last_id <= last:
            return  # stale: every level is absolute, ignoring it keeps the book exact
        if self._synced:
            ok, expected = diff.first_id == last + 1, f"U={last + 1}"
        else:
            ok, expected = diff.first_id <= last + 1, f"U<={last + 1}<=u"
        if not ok:
            raise DataError(
                f"{self.symbol}: depth diff U={diff.first_id} u={diff.last_id} at "
                f"{diff.time_ms} breaks the sequence (book at {last}, expected {expected})"
            )
        bids, asks = self._bids, self._asks
        for price, qty in diff.bids:
            bids.set(price, qty)
        for price, qty in diff.asks:
            asks.set(price, qty)
        self._book_id = diff.last_id
        self._book_time = diff.time_ms
        self._synced = True

    def advance(self, now_ms: int) -> dict[Timeframe, list[Kline]]:
        """Move the cursor to ``now_ms`` and return the kline pushes per timeframe.

        For each timeframe with something to push: every kline that closed since the last
        call (``closed=True``, each once; a kline is closed when ``now_ms >= open + tf``),
        oldest first, then the open kline if it changed (``closed=False``). Timeframes with
        nothing new are left out. ``now_ms`` before the cursor raises ``ValueError``.
        """
        if now_ms < self.now_ms:
            raise ValueError(f"advance({now_ms}) is before the cursor {self.now_ms}")
        self.now_ms = now_ms
        out: dict[Timeframe, list[Kline]] = {}
        for tf, series in self._series.items():
            cur = series.cur
            if cur is not None and now_ms >= cur.open_time + series.tf_ms:
                series.roll(now_ms - now_ms % series.tf_ms)
            if series.dirty or series.rows.total != series.pushed:
                pushes = series.pushes()
                if pushes:
                    out[tf] = pushes
        return out

    # ------------------------------------------------------------------ queries
    @property
    def last_update_id(self) -> int:
        """The update id the book reflects (the snapshot's, then each applied diff's ``u``)."""
        return self._book_id

    def depth(self, limit: int) -> BookSnapshot:
        """The current book with at most ``limit`` levels per side, best first."""
        if limit < 1:
            raise ValueError(f"depth limit must be at least 1, got {limit}")
        return BookSnapshot(self._book_id, self._bids.levels(limit), self._asks.levels(limit))

    def top(self) -> BookTop | None:
        """The newest bookTicker: the last :class:`BookTop` event unless the book has moved
        past it, then the book's own best levels; None when a side is empty."""
        top = self._top
        if top is not None and top.update_id >= self._book_id:
            return top
        bid, ask = self._bids.best(), self._asks.best()
        if bid is None or ask is None:
            return None
        return BookTop(self._book_time, self._book_id, bid[0], bid[1], ask[0], ask[1])

    def _trade_list(self, lo: int, hi: int) -> list[TradePrint]:
        if hi <= lo:
            return []
        return [
            TradePrint(int(t), int(i), p, q, m != 0.0)
            for t, i, p, q, m in self._trades.block(lo, hi)
        ]

    @property
    def trade_count(self) -> int:
        """Trades applied so far (also those no longer kept)."""
        return self._trades.total

    def trades_recent(self, limit: int) -> list[TradePrint]:
        """The newest ``limit`` trades, oldest first."""
        n = len(self._trades)
        return self._trade_list(max(0, n - limit), n)

    def trades_from(self, from_id: int, limit: int) -> list[TradePrint]:
        """At most ``limit`` trades with ``trade_id >= from_id``, oldest first (from the
        oldest kept trade when ``from_id`` is older)."""
        lo = int(np.searchsorted(self._trades.column(_T_ID), from_id, "left"))
        return self._trade_list(lo, min(len(self._trades), lo + limit))

    def trades_between(
        self, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[TradePrint]:
        """At most ``limit`` trades with ``start_ms <= time <= end_ms`` (either bound may be
        None), oldest first; the oldest ones from ``start_ms`` when given, else the newest."""
        times = self._trades.column(_T_TIME)
        n = len(times)
        hi = n if end_ms is None else int(np.searchsorted(times, end_ms, "right"))
        if start_ms is None:
            return self._trade_list(max(0, hi - limit), hi)
        lo = int(np.searchsorted(times, start_ms, "left"))
        return self._trade_list(lo, min(hi, lo + limit))

    def klines(
        self, tf: Timeframe, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Kline]:
        """Binance ``/klines``: klines with ``start_ms <= open_time <= end_ms`` (either bound
        may be None), history and built ones plus the still-open one (``closed=False``);
        at most ``limit``, oldest first: the oldest from ``start_ms`` when given, else the
        newest ``limit``. Intervals the cursor has passed are closed first."""
        series = self._series.get(Timeframe.parse(tf))
        if series is None:
            kept = ", ".join(t.value for t in self._series)
            raise ValueError(f"{self.symbol}: no {tf} klines are kept (kept: {kept})")
        if limit < 1:
            raise ValueError(f"kline limit must be at least 1, got {limit}")
        series.roll(self.now_ms - self.now_ms % series.tf_ms)
        return series.query(start_ms, end_ms, limit)

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        """The kline intervals kept."""
        return tuple(self._series)
