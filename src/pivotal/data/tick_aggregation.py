"""Candles from trades (seed 003's ``RealTimeTickAggregator``), batch and streaming.

A trade at ``t`` (UTC ms) belongs to the bar opening at ``t - t % timeframe.ms``. A bar's
``open``/``close`` are the prices of its first/last trade in feed order (ties in time keep
that order), ``high``/``low`` the extremes, ``trade_count`` the number of trades,
``buy_volume`` the base quantity of trades whose aggressor bought (``is_buyer_maker ==
False``) and ``volume = buy_volume + sell_volume``. Each side is summed sequentially in feed
order, in batch (one ``np.bincount``) and streaming (``+=``) alike, so both give bit-identical
results.

With ``fill_empty=True`` a bar with no trades between two traded bars is emitted with zero
volume and ``open = high = low = close =`` the previous close, as Binance klines are. The
first and last bars may cover only part of their interval (no trade before/after the data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import MarketTick

__all__ = ["AggregatedBars", "RealTimeTickAggregator", "TickBar", "aggregate_trades"]

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TickBar:
    """One bar built from trades; ``timestamp`` is its open time (UTC ms), volumes in base."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int
    buy_volume: float


@dataclass(frozen=True, slots=True, eq=False)
class AggregatedBars:
    """Candles plus per-bar ``trade_count`` (int64) and ``buy_volume`` (float64, base asset)."""

    timeframe: Timeframe
    candles: Candles
    trade_count: Int64Array
    buy_volume: Float64Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))
        for name, dtype in (("trade_count", np.int64), ("buy_volume", np.float64)):
            array = np.array(getattr(self, name), dtype=dtype)
            if array.shape != (len(self.candles),):
                raise ValueError(
                    f"{name} must be one-dimensional with one value per candle "
                    f"({len(self.candles)}), got shape {array.shape}"
                )
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def empty(cls, timeframe: Timeframe) -> AggregatedBars:
        return cls(timeframe, Candles.empty(), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def concat(cls, parts: list[AggregatedBars], timeframe: Timeframe) -> AggregatedBars:
        """Join parts in order; all must have ``timeframe``."""
        if any(p.timeframe != timeframe for p in parts):
            raise ValueError(f"every part must have timeframe {timeframe} to be joined")
        return cls(
            timeframe,
            Candles.concat([p.candles for p in parts]),
            np.concatenate([np.empty(0, np.int64), *(p.trade_count for p in parts)]),
            np.concatenate([np.empty(0), *(p.buy_volume for p in parts)]),
        )

    def __len__(self) -> int:
        return len(self.candles)

    def bar(self, i: int) -> TickBar:
        """Bar ``i`` as a :class:`TickBar` of Python scalars."""
        c = self.candles
        values = (float(getattr(c, name)[i]) for name in ("open", "high", "low", "close", "volume"))
        return TickBar(
            int(c.timestamp[i]), *values, int(self.trade_count[i]), float(self.buy_volume[i])
        )

    def equals(self, other: AggregatedBars) -> bool:
        """Exact equality of the timeframe and every column."""
        return (
            self.timeframe == other.timeframe
            and self.candles.equals(other.candles)
            and np.array_equal(self.trade_count, other.trade_count)
            and np.array_equal(self.buy_volume, other.buy_volume)
        )


@dataclass(slots=True)
class _Columns:
    """Per-bar arrays while they are being built (writable, unlike the public types)."""

    ts: Int64Array
    open: Float64Array
    high: Float64Array
    low: Float64Array
    close: Float64Array
    buy: Float64Array  # base quantity bought by aggressors
    sell: Float64Array  # base quantity sold by aggressors
    count: Int64Array

    @classmethod
    def flat(cls, start: int, n: int, tf_ms: int, price: Float64Array | float) -> _Columns:
        """``n`` bars from ``start`` without trades, all four prices ``price``."""
        prices = np.broadcast_to(np.asarray(price, dtype=np.float64), (n,))
        return cls(
            start + np.arange(n, dtype=np.int64) * tf_ms,
            *(prices.copy() for _ in range(4)),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n, np.int64),
        )

    @classmethod
    def join(cls, parts: list[_Columns]) -> _Columns:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _COLUMNS))

    def bars(self, timeframe: Timeframe, stop: int | None = None) -> AggregatedBars:
        """The first ``stop`` rows (all by default) as public, read-only bars."""
        cut = slice(0, stop)
        prices = (getattr(self, name)[cut] for name in ("open", "high", "low", "close"))
        candles = Candles(self.ts[cut], *prices, self.buy[cut] + self.sell[cut])
        return AggregatedBars(timeframe, candles, self.count[cut], self.buy[cut])


_COLUMNS = ("ts", "open", "high", "low", "close", "buy", "sell", "count")


def _check_trades(ts: Int64Array, price: Float64Array, qty: Float64Array) -> None:
    if len(ts) > 1 and not np.all(ts[1:] >= ts[:-1]):
        i = int(np.flatnonzero(ts[1:] < ts[:-1])[0]) + 1
        raise ValueError(
            f"trades must be in time order: row {i} ({int(ts[i])}) is earlier than row {i - 1} "
            f"({int(ts[i - 1])}); sort the trades by time (then trade id) first"
        )
    if len(ts) and not (price.min() > 0 and price.max() < np.inf):  # NaN fails both
        i = int(np.flatnonzero(~((price > 0) & (price < np.inf)))[0])
        raise ValueError(f"trade row {i} has price {price[i]}; prices must be finite and > 0")
    if len(ts) and not (qty.min() >= 0 and qty.max() < np.inf):
        i = int(np.flatnonzero(~((qty >= 0) & (qty < np.inf)))[0])
        raise ValueError(f"trade row {i} has quantity {qty[i]}; quantities must be finite, >= 0")


def _reduce(trades: Trades, tf_ms: int) -> tuple[_Columns, npt.NDArray[np.intp]]:
    """Per-bar columns of the bars that have trades, and the row where each bar starts."""
    ts, price = trades.timestamp, trades.price
    n = len(ts)
    bucket = ts // tf_ms * tf_ms  # floor, also for negative times; faster than ts % tf_ms
    starts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
    starts = np.concatenate((np.zeros(1, np.intp), starts))
    count = np.diff(starts, append=n)
    # One sequential pass sums both sides: bin 2 * bar + is_buyer_maker.
    side_bin = np.repeat(np.arange(0, 2 * len(starts), 2), count)
    side_bin += trades.is_buyer_maker
    by_side = np.bincount(side_bin, weights=trades.quantity, minlength=2 * len(starts))
    cols = _Columns(
        bucket[starts],
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[starts + count - 1],
        by_side[0::2],
        by_side[1::2],
        count.astype(np.int64),
    )
    return cols, starts


def _fill(cols: _Columns, tf_ms: int, start: int, prev_close: float | None) -> _Columns:
    """Dense bars from ``start`` to the last bar; empty ones carry the previous close."""
    pos = (cols.ts - start) // tf_ms
    m = int(pos[-1]) + 1
    if m == len(pos):
        return cols
    if pos[0] > 0 and prev_close is None:
        raise ValueError("cannot fill bars before the first trade without a previous close")
    last = np.full(m, -1, dtype=np.intp)  # the last traded bar at or before each bar
    last[pos] = np.arange(len(pos))
    np.maximum.accumulate(last, out=last)
    carried = np.concatenate(([np.nan if prev_close is None else prev_close], cols.close))
    out = _Columns.flat(start, m, tf_ms, carried[last + 1])
    for name in _COLUMNS[1:]:  # traded bars keep their own values
        getattr(out, name)[pos] = getattr(cols, name)
    return out


def aggregate_trades(
    trades: Trades, timeframe: Timeframe, *, fill_empty: bool = True
) -> AggregatedBars:
    """Aggregate time-ordered ``trades`` into bars of ``timeframe`` (see the module docstring).

    Raises ``ValueError`` for trades out of time order, non-positive or non-finite prices and
    negative or non-finite quantities. Vectorized: no Python work per trade or per bar.
    """
    timeframe = Timeframe.parse(timeframe)
    _check_trades(trades.timestamp, trades.price, trades.quantity)
    if len(trades) == 0:
        return AggregatedBars.empty(timeframe)
    cols, _ = _reduce(trades, timeframe.ms)
    if fill_empty:
        cols = _fill(cols, timeframe.ms, int(cols.ts[0]), None)
    return cols.bars(timeframe)


class _OpenBar:
    """The bar still collecting trades (mutable scalars: one float add per trade)."""

    __slots__ = ("buy", "close", "count", "high", "low", "open", "sell", "ts")

    def __init__(self, ts: int, price: float, qty: float, is_buyer_maker: bool) -> None:
        self.ts, self.open, self.high, self.low, self.close = ts, price, price, price, price
        self.buy, self.sell = (0.0, qty) if is_buyer_maker else (qty, 0.0)
        self.count = 1

    @classmethod
    def from_row(cls, cols: _Columns, i: int) -> _OpenBar:
        bar = cls.__new__(cls)
        bar.ts, bar.count = int(cols.ts[i]), int(cols.count[i])
        for name in ("open", "high", "low", "close", "buy", "sell"):
            setattr(bar, name, float(getattr(cols, name)[i]))
        return bar

    def frozen(self) -> TickBar:
        volume = self.buy + self.sell
        return TickBar(
            self.ts, self.open, self.high, self.low, self.close, volume, self.count, self.buy
        )

    def columns(self) -> _Columns:
        prices = (np.array([getattr(self, f)]) for f in ("open", "high", "low", "close"))
        return _Columns(
            np.array([self.ts], np.int64),
            *prices,
            np.array([self.buy]),
            np.array([self.sell]),
            np.array([self.count], np.int64),
        )


class RealTimeTickAggregator:
    """Streaming :func:`aggregate_trades`: feed trades as they arrive, get finished bars.

    Every method returns the bars it finished, oldest first, as :class:`AggregatedBars`
    (usually empty). A bar finishes when a trade of a later bar arrives, or when
    :meth:`advance` is told that the clock has passed its end. Feeding all trades (in any mix
    of :meth:`add`/:meth:`add_many` calls and chunkings, with ``advance(now)`` calls whose
    ``now`` never passes the next trade) and then :meth:`flush` gives exactly
    ``aggregate_trades(all_trades, timeframe, fill_empty=...)``. With ``fill_empty``,
    ``advance`` past the last trade also emits the empty bars that the clock has closed.
    """

    def __init__(self, timeframe: Timeframe, fill_empty: bool = True) -> None:
        self.timeframe = Timeframe.parse(timeframe)
        self.fill_empty = fill_empty
        self._ms = self.timeframe.ms
        self._empty = AggregatedBars.empty(self.timeframe)
        self._bar: _OpenBar | None = None
        self._next_ts: int | None = None  # open time of the first bar not yet emitted
        self._last_close: float | None = None  # close of the last bar emitted
        self._last_trade_ts: int | None = None
        self._closed_until: int | None = None  # bars opening before this are final

    def current(self) -> TickBar | None:
        """The open, partial bar (None when no bar is collecting trades)."""
        return None if self._bar is None else self._bar.frozen()

    def add(
        self, timestamp: int, price: float, quantity: float, is_buyer_maker: bool
    ) -> AggregatedBars:
        """Add one trade (UTC ms, price, base quantity, aggressor sold?); return finished bars."""
        timestamp, price, quantity = int(timestamp), float(price), float(quantity)
        if not (0 < price < math.inf) or not (0 <= quantity < math.inf):
            raise ValueError(
                f"trade at {timestamp}: price {price} and quantity {quantity} must be finite, "
                "price > 0 and quantity >= 0"
            )
        slot = timestamp // self._ms * self._ms
        self._check_time(timestamp, slot)
        self._last_trade_ts = timestamp
        bar = self._bar
        if bar is not None and slot == bar.ts:
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.close = price
            bar.count += 1
            if is_buyer_maker:
                bar.sell += quantity
            else:
                bar.buy += quantity
            return self._empty
        out = self._close_until(slot)
        self._bar = _OpenBar(slot, price, quantity, bool(is_buyer_maker))
        self._next_ts = slot
        return out

    def add_tick(self, tick: MarketTick) -> AggregatedBars:
        """:meth:`add` for a seed-003 :class:`~pivotal.core.types.MarketTick`."""
        return self.add(tick.timestamp, tick.price, tick.quantity, tick.is_buyer_maker)

    def add_many(self, trades: Trades) -> AggregatedBars:
        """Add a time-ordered chunk of trades at once (vectorized); return finished bars."""
        _check_trades(trades.timestamp, trades.price, trades.quantity)
        if len(trades) == 0:
            return self._empty
        first = int(trades.timestamp[0])
        self._check_time(first, self.timeframe.floor(first))
        cols, starts = _reduce(trades, self._ms)
        bar = self._bar
        if bar is not None and cols.ts[0] == bar.ts:  # the chunk continues the open bar
            seg = slice(0, int(starts[1]) if len(starts) > 1 else len(trades))
            qty, maker = trades.quantity[seg], trades.is_buyer_maker[seg]
            cols.open[0] = bar.open
            cols.high[0] = max(bar.high, cols.high[0])
            cols.low[0] = min(bar.low, cols.low[0])
            cols.count[0] += bar.count
            cols.buy[0] = _running_sum(bar.buy, qty[~maker])
            cols.sell[0] = _running_sum(bar.sell, qty[maker])
        elif bar is not None:
            cols = _Columns.join([bar.columns(), cols])
        if self.fill_empty:
            start, prev = int(cols.ts[0]), None
            if bar is None and self._last_close is not None and self._next_ts is not None:
                start, prev = self._next_ts, self._last_close
            cols = _fill(cols, self._ms, start, prev)
        self._last_trade_ts = int(trades.timestamp[-1])
        k = len(cols.ts) - 1
        self._bar = _OpenBar.from_row(cols, k)
        self._next_ts = self._bar.ts
        if k == 0:
            return self._empty
        self._last_close = float(cols.close[k - 1])
        return cols.bars(self.timeframe, k)

    def advance(self, now_ms: int) -> AggregatedBars:
        """The clock reads ``now_ms`` (UTC ms): finish bars whose end is ``<= now_ms``.

        Trades of finished bars are refused afterwards. A ``now_ms`` that has not reached the
        open bar's end (e.g. a lagging local clock) finishes nothing.
        """
        now_ms = int(now_ms)
        floor = self.timeframe.floor(now_ms)
        out = self._empty
        if self._bar is None or self._bar.ts + self._ms <= now_ms:
            out = self._close_until(floor)
        if self._closed_until is None or floor > self._closed_until:
            self._closed_until = floor
        return out

    def flush(self) -> AggregatedBars:
        """End of data: emit the open bar, partial as it is; later trades must be after it."""
        if self._bar is None:
            return self._empty
        end = self._bar.ts + self._ms
        out = self._close_until(end)
        if self._closed_until is None or end > self._closed_until:
            self._closed_until = end
        return out

    def _check_time(self, timestamp: int, slot: int) -> None:
        if self._last_trade_ts is not None and timestamp < self._last_trade_ts:
            raise ValueError(
                f"trade at {timestamp} is older than the previous trade at "
                f"{self._last_trade_ts}; feed trades in time order"
            )
        if self._closed_until is not None and slot < self._closed_until:
            raise ValueError(
                f"trade at {timestamp} belongs to the bar opening at {slot}, which is already "
                f"finished (advance() or flush() passed {self._closed_until}); late trades "
                "cannot be added: feed trades before advancing the clock past them"
            )

    def _close_until(self, slot: int) -> AggregatedBars:
        """Emit the open bar and, with ``fill_empty``, the empty bars before ``slot``."""
        rows: list[_Columns] = []
        bar, self._bar = self._bar, None
        if bar is not None:
            rows.append(bar.columns())
            self._last_close = bar.close
            self._next_ts = bar.ts + self._ms
        start = self._next_ts
        if start is not None and start < slot:
            if self.fill_empty and self._last_close is not None:
                rows.append(
                    _Columns.flat(start, (slot - start) // self._ms, self._ms, self._last_close)
                )
            self._next_ts = slot
        if not rows:
            return self._empty
        return (rows[0] if len(rows) == 1 else _Columns.join(rows)).bars(self.timeframe)


def _running_sum(initial: float, values: Float64Array) -> float:
    """``initial + v0 + v1 + ...`` added left to right, as the streaming ``+=`` does."""
    return float(np.cumsum(np.concatenate(([initial], values)))[-1])
