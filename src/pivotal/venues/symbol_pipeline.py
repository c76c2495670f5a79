"""One symbol's live data path in ``pivotal collect``: stream items in, rows and events out.

For each symbol the collector keeps a :class:`SymbolPipeline`. It receives the venue-neutral
stream items (:mod:`pivotal.venues.stream_events`) in arrival order and

- **trades** → the trades sink (stored under the venue that printed them: trade ids are a
  venue's own) and the Stage 1 aggregator
  (:class:`~pivotal.data.tick_aggregation.RealTimeTickAggregator`) → finished **1s candles**,
  exactly :func:`~pivotal.data.tick_aggregation.aggregate_trades`
  over the same trades;
- **closed klines** of every configured timeframe ≥ 1m → candles;
- **order books** → a **1s COB snapshot** with :class:`~pivotal.features.orderbook.COBSampler`'s
  rule (the snapshot stamped ``T`` is the book after every update with event time ``< T``,
  emitted when the first update at or after ``T`` arrives), so live snapshots equal the ones
  computed from recorded depth; with each snapshot, the top ``book_levels`` price levels of
  that same book as a :class:`~pivotal.core.events.BookLevels` of the same time (what a paper
  broker walks).

Candles are stored under the *feed's* series (the primary exchange of the failover list, so a
failover leaves no hole in it) with each row's source naming the venue and path that produced
it (``mexc:ws``, ``binance:rest``, ``binance:trades``); trades and COB snapshots are stored
under the producing venue. Every output also becomes a market event for the runtime's
:class:`~pivotal.runtime.pushed_feed.PushedFeed`.

Closing 1s bars: a bar closes when a later trade arrives, or when the venue's book shows that
exchange time has passed the bar's end by ``close_lag_ms`` (quiet markets still get their
flat 1s bars; a trade arriving later than that is counted in ``late_trades``, stored, and not
aggregated). The trade and book streams are separate sockets, so the lag must cover their
relative delay (in exchange time: a replay at 20x turns 100 ms on the wire into 2 s);
``close_lag_ms=None`` closes bars on trades only (exactly the batch aggregation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.events import (
    BookLevels,
    BookUpdated,
    CandleClosed,
    MarketEvent,
    TradesReceived,
)
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.series import SeriesKey
from pivotal.data.tick_aggregation import AggregatedBars, RealTimeTickAggregator
from pivotal.features.orderbook.cob import COBConfig, COBSampler

__all__ = ["DEFAULT_BOOK_LEVELS", "ArrayBook", "PipelineCounts", "RowSink", "SymbolPipeline"]

SECOND = Timeframe.parse("1s")
#: Price levels per side a :class:`BookLevels` event carries unless told otherwise.
DEFAULT_BOOK_LEVELS = 20


class RowSink(Protocol):
    """Where rows go (a :class:`~pivotal.data.batch_writer.MarketBatchWriter`)."""

    def add_candles(self, key: SeriesKey, candles: Candles, source: str) -> None: ...

    def add_trades(self, exchange: str, symbol: Symbol, trades: Trades, source: str) -> None: ...

    def add_cob(
        self, exchange: str, symbol: Symbol, snapshots: Sequence[COBData], source: str
    ) -> None: ...


class ArrayBook:
    """The newest order book of one venue as price/quantity arrays, shaped for
    :class:`~pivotal.features.orderbook.COBSampler` (``symbol``, ``in_sync``, ``mid``,
    ``side_arrays``). ``update`` replaces the whole book (ccxt hands over full books)."""

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.in_sync = False
        self.nonce: int | None = None
        self.time_ms: int | None = None
        empty = np.zeros(0, dtype=np.float64)
        self._sides: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {
            "bid": (empty, empty),
            "ask": (empty, empty),
        }

    def update(
        self,
        bids: npt.NDArray[np.float64],
        asks: npt.NDArray[np.float64],
        nonce: int | None,
        time_ms: int | None,
    ) -> None:
        """``bids``/``asks``: (n, 2) arrays of (price, qty), best first."""
        self._sides["bid"] = (bids[:, 0], bids[:, 1])
        self._sides["ask"] = (asks[:, 0], asks[:, 1])
        self.nonce, self.time_ms = nonce, time_ms
        self.in_sync = len(bids) > 0 and len(asks) > 0

    def invalidate(self) -> None:
        """The stream lost sync (a gap or a disconnect): no snapshot until the next book."""
        self.in_sync = False

    def best(self, side: str) -> float | None:
        prices = self._sides[side][0]
        return float(prices[0]) if len(prices) else None

    def mid(self) -> float | None:
        bid, ask = self.best("bid"), self.best("ask")
        return None if bid is None or ask is None else (bid + ask) / 2.0

    def side_arrays(self, side: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return self._sides[side]

    def top(self, side: str, n: int) -> npt.NDArray[np.float64]:
        """The best ``n`` levels of ``side`` as a new ``(k, 2)`` array (price, qty), k <= n."""
        prices, quantities = self._sides[side]
        return np.column_stack((prices[:n], quantities[:n]))


@dataclass(slots=True)
class PipelineCounts:
    """What one symbol's pipeline produced and refused."""

    trades: int = 0
    candles_1s: int = 0
    candles: dict[str, int] = field(default_factory=dict)
    cob_snapshots: int = 0
    late_trades: int = 0
    duplicate_trades: int = 0
    book_levels: int = 0
    #: Books whose top could not become a :class:`BookLevels` (crossed, a level of 0 or less).
    bad_books: int = 0


class SymbolPipeline:
    """Turns one symbol's stream items into stored rows and market events (module docstring).

    ``feed_exchange`` is the series the candles belong to (the failover list's primary);
    ``publish`` receives the market events (a :class:`PushedFeed`'s ``publish``, or None).
    ``book_levels`` is how many price levels per side each :class:`BookLevels` carries
    (None: no :class:`BookLevels` events).
    """

    def __init__(
        self,
        symbol: Symbol | str,
        feed_exchange: str,
        sink: RowSink,
        *,
        publish: Callable[[Sequence[MarketEvent]], None] | None = None,
        cob: COBConfig | None = None,
        close_lag_ms: int | None = 10_000,
        second_candles: bool = True,
        book_levels: int | None = DEFAULT_BOOK_LEVELS,
    ) -> None:
        if book_levels is not None and (
            isinstance(book_levels, bool) or not isinstance(book_levels, int) or book_levels < 1
        ):
            raise ValueError(
                f"book_levels must be a number of price levels >= 1, or None, got {book_levels!r}"
            )
        self.symbol = Symbol.parse(symbol)
        self.feed_exchange = feed_exchange
        self._sink = sink
        self._publish = publish
        self._cob_config = cob or COBConfig()
        self._close_lag_ms = close_lag_ms
        self._second_candles = second_candles
        self._book_levels = book_levels
        self._aggregator = RealTimeTickAggregator(SECOND)
        self._aggregator_venue: str | None = None
        self._closed_until = -(2**62)  # 1s bars opening before this are final
        self._last_trade_ts = -(2**62)
        # per venue: the newest trade time and the ids seen at that time (ids are a
        # venue's own; MEXC's are synthetic hashes, so only (time, id) orders them)
        self._last_trade: dict[str, tuple[int, npt.NDArray[np.int64]]] = {}
        self._last_bar: tuple[int, float] | None = None  # newest 1s bar emitted: (open, close)
        self._books: dict[str, tuple[ArrayBook, COBSampler]] = {}
        self._last_kline: dict[Timeframe, int] = {}
        self.counts = PipelineCounts()

    # -- trades --------------------------------------------------------------------------
    def on_trades(self, venue: str, trades: Trades, source: str) -> None:
        """New trades of ``venue`` (time order); trades already seen are skipped: older than
        the newest seen, or at its time with an id seen there."""
        if len(trades) == 0:
            return
        last = self._last_trade.get(venue)
        if last is not None:
            last_ms, last_ids = last
            ts = trades.timestamp
            fresh = (ts > last_ms) | ((ts == last_ms) & ~np.isin(trades.trade_id, last_ids))
            if not fresh.all():
                self.counts.duplicate_trades += int((~fresh).sum())
                trades = trades[fresh]
                if len(trades) == 0:
                    return
        newest = int(trades.timestamp[-1])
        at_newest = trades.trade_id[trades.timestamp == newest]
        if last is not None and last[0] == newest:
            at_newest = np.union1d(last[1], at_newest)
        self._last_trade[venue] = (newest, at_newest)
        self.counts.trades += len(trades)
        self._sink.add_trades(venue, self.symbol, trades, source)
        events: list[MarketEvent] = [
            TradesReceived(str(self.symbol), trades, int(trades.timestamp[-1]))
        ]
        if self._second_candles:
            switched = self._aggregator_venue not in (None, venue)
            if switched:
                # a failover: the new venue's clock and prints start a fresh 1s series
                self._close_seconds(self._aggregator.flush(), events)
                self._aggregator = RealTimeTickAggregator(SECOND)
                self._closed_until = self._last_trade_ts = -(2**62)
            self._aggregator_venue = venue
            late = (trades.timestamp < self._closed_until) | (
                trades.timestamp < self._last_trade_ts
            )
            if late.any():
                self.counts.late_trades += int(late.sum())
                trades = trades[~late]
            if len(trades):
                if switched:
                    self._bridge(int(trades.timestamp[0]), events, f"{venue}:trades")
                self._last_trade_ts = int(trades.timestamp[-1])
                self._close_seconds(self._aggregator.add_many(trades), events, f"{venue}:trades")
        self._emit(events)

    def _bridge(self, first_ms: int, events: list[MarketEvent], source: str) -> None:
        """After a switch of venue: the quiet seconds between the newest bar emitted and the
        new venue's first trade (at ``first_ms``) become flat bars at the last close, as
        the aggregator fills quiet seconds, so the 1s series keeps no hole."""
        if self._last_bar is None:
            return
        start = self._last_bar[0] + SECOND.ms
        n = (SECOND.floor(first_ms) - start) // SECOND.ms
        if n <= 0:
            return
        close = self._last_bar[1]
        flat = Candles(
            start + np.arange(n, dtype=np.int64) * SECOND.ms,
            *(np.full(n, close) for _ in range(4)),
            np.zeros(n),
        )
        bars = AggregatedBars(SECOND, flat, np.zeros(n, np.int64), np.zeros(n))
        self._close_seconds(bars, events, source)

    def _close_seconds(
        self, bars: AggregatedBars, events: list[MarketEvent], source: str | None = None
    ) -> None:
        if len(bars) == 0:
            return
        newest = int(bars.candles.timestamp[-1])
        if self._last_bar is None or newest > self._last_bar[0]:
            self._last_bar = (newest, float(bars.candles.close[-1]))
        src = source or f"{self._aggregator_venue}:trades"
        key = SeriesKey(self.feed_exchange, self.symbol, SECOND)
        self._sink.add_candles(key, bars.candles, src)
        self.counts.candles_1s += len(bars)
        for i in range(len(bars)):
            row = bars.candles[i : i + 1]
            events.append(
                CandleClosed(str(self.symbol), SECOND, row, int(row.timestamp[0]) + SECOND.ms)
            )

    # -- candles ---------------------------------------------------------------------------
    def on_candle(
        self, venue: str, timeframe: Timeframe | str, candle: Candles, source: str
    ) -> None:
        """A closed kline (one row) of ``timeframe``; one already stored is skipped."""
        timeframe = Timeframe.parse(timeframe)
        opened = int(candle.timestamp[0])
        if self._last_kline.get(timeframe, -1) >= opened:
            return  # the first venue to deliver a closed candle wins (a failover overlap)
        self._last_kline[timeframe] = opened
        self._sink.add_candles(
            SeriesKey(self.feed_exchange, self.symbol, timeframe), candle, source
        )
        name = timeframe.value
        self.counts.candles[name] = self.counts.candles.get(name, 0) + 1
        self._emit([CandleClosed(str(self.symbol), timeframe, candle, opened + timeframe.ms)])

    # -- order book --------------------------------------------------------------------------
    def on_book(
        self,
        venue: str,
        bids: npt.NDArray[np.float64],
        asks: npt.NDArray[np.float64],
        nonce: int | None,
        time_ms: int | None,
    ) -> None:
        """The venue's full book after its update at ``time_ms`` (exchange time; None when the
        venue sent none, e.g. a REST snapshot: the book is kept, no second is closed by it, and
        the seconds up to the next timed update get no COB snapshot, since the content could
        be from after their boundary)."""
        entry = self._books.get(venue)
        if entry is None:
            book = ArrayBook(self.symbol)
            entry = self._books[venue] = (book, COBSampler(book, self._cob_config))  # type: ignore[arg-type]
        book, sampler = entry
        if time_ms is None:
            # content of unknown time (e.g. ccxt's REST snapshot, taken after some second
            # boundary perhaps): no COB snapshot may use it until a timed update follows
            book.update(bids, asks, nonce, book.time_ms)
            book.invalidate()
            return
        snapshots = sampler.advance(time_ms)  # the book *before* this update
        top = self._top(book, snapshots[0].timestamp) if snapshots else None
        book.update(bids, asks, nonce, time_ms)
        events: list[MarketEvent] = []
        if snapshots:
            self._sink.add_cob(venue, self.symbol, snapshots, f"{venue}:ws")
            self.counts.cob_snapshots += len(snapshots)
            for s in snapshots:
                events.append(BookUpdated(str(self.symbol), s, s.timestamp))
                if top is not None:
                    if top.event_time != s.timestamp:  # a later second of the same book
                        top = BookLevels(top.symbol, top.bids, top.asks, s.timestamp)
                    events.append(top)
                    self.counts.book_levels += 1
        if (
            self._second_candles
            and self._close_lag_ms is not None
            and self._aggregator_venue in (None, venue)
        ):
            horizon = SECOND.floor(time_ms - self._close_lag_ms)
            if horizon > self._closed_until and self._last_trade_ts > -(2**62):
                self._closed_until = horizon
                self._close_seconds(self._aggregator.advance(horizon), events)
        self._emit(events)

    def _top(self, book: ArrayBook, time_ms: int) -> BookLevels | None:
        """The top levels of ``book`` (the one the COB snapshots just sampled) stamped
        ``time_ms``; None without ``book_levels`` or when they break :class:`BookLevels`'
        rules (a crossed book, a level of 0: counted in ``bad_books``, nothing raised)."""
        n = self._book_levels
        if n is None:
            return None
        try:
            return BookLevels(str(self.symbol), book.top("bid", n), book.top("ask", n), time_ms)
        except ValueError:
            self.counts.bad_books += 1
            return None

    def book_lost(self, venue: str) -> None:
        """The venue's book stream lost sync: no COB snapshot until it is whole again."""
        entry = self._books.get(venue)
        if entry is not None:
            entry[0].invalidate()

    def book(self, venue: str) -> ArrayBook | None:
        entry = self._books.get(venue)
        return None if entry is None else entry[0]

    # -- end -----------------------------------------------------------------------------------
    def finish(self) -> None:
        """Nothing is closed here: the open 1s bar is incomplete and is not stored."""

    def _emit(self, events: list[MarketEvent]) -> None:
        if events and self._publish is not None:
            self._publish(events)
