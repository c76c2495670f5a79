"""The consolidated order book across venues (seed 003's COBY layer).

One :class:`ConsolidatedBook` per symbol keeps each venue's L2 book as the venue last sent it
(full books or top-N arrays, the shape ccxt's ``watch_order_book`` gives) and, on request,
puts every venue on one price grid: per-venue and combined bid/ask volume per bucket, the
combined imbalance with its moving averages, each venue's best bid/ask and mid, the
consolidated best bid/ask, and which venues contributed.

Units: prices in the book's quote currency, volumes in the base asset, times UTC ms.

Venue markets and quote aliases: a venue quotes the book's symbol under its own name unless
``ConsolidatedConfig.markets[symbol][venue]`` says otherwise (e.g. ``BTC/USD`` on Coinbase in
a ``BTC/USDT`` book), with an optional ``price_scale``: a venue price times the scale is the
price in the book's quote (an FX rate for a different quote currency; 1 when the quotes are
taken as equal, e.g. USD and USDT). The scale is applied when a book arrives;
:meth:`ConsolidatedBook.set_price_scale` changes it for later updates (a live FX rate).

Grid: the same as :func:`~pivotal.features.orderbook.cob.bucketize`: bucket ``k`` covers
``[k * b, (k + 1) * b)``, the central bucket holds the consolidated mid, ``2n + 1`` buckets,
lowest price first; ``b`` comes from :class:`~pivotal.features.orderbook.cob.COBConfig` for
the symbol and is fixed at the first snapshot. With one venue the arrays equal ``bucketize``
of that venue's book.

Which venues contribute at time ``t``: a venue that has sent a book with both sides
non-empty, whose last update is at most ``stale_after_ms`` old (age = ``t`` minus the update's
``received_ms``, or its ``timestamp`` when no receive time was given; a future update counts as
age 0), and whose own book is not crossed (best bid >= best ask: a broken venue book). The
others are flagged (``stale``, ``venue_crossed``) and their volume rows are zero. The
consolidated best bid is the highest best bid among contributors, the best ask the lowest;
venues may cross each other (``crossed``: best bid > best ask; ``locked``: equal): that is
reported, never refused. The consolidated mid is ``(best bid + best ask) / 2``.

Updates out of order (a ``nonce`` below the venue's last) are dropped and counted. Times do
not decide order: the book times ccxt reports mix clocks and resolutions within one venue
(Coinbase's snapshot has none, so a caller falls back to its receive time; Bitstamp's REST
book has microseconds, its deltas whole seconds; a Kraken update carries its levels' times),
so a later book may carry an earlier time. Books of one connection arrive in order anyway.

A snapshot uses the books as they are when it is taken: call :meth:`advance` before
applying each update (as :class:`~pivotal.features.orderbook.cob.COBSampler` does) to get
point-in-time 1 s snapshots.

Imbalance moving averages: like ``COBSampler``, over the ``2 * ma_buckets + 1`` central
combined buckets, one vector per snapshot second (:class:`ImbalanceMA`; a snapshot time that
is not the previous one plus 1 s restarts the warm-up). A second snapshot at the same time
reuses the averages of the first; an earlier time is refused.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pivotal.core.errors import ConfigError, DataError
from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.features.orderbook.cob import COBConfig, ImbalanceMA, SecondTicks

__all__ = [
    "ConsolidatedBook",
    "ConsolidatedBooks",
    "ConsolidatedConfig",
    "ConsolidatedSnapshot",
    "VenueMarket",
]

_EPS = 1e-9  # the same guard against rounding just below an edge as cob.bucketize
Array = npt.NDArray[np.float64]


class VenueMarket(BaseModel):
    """How one venue quotes a consolidated symbol: its own symbol and a price scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str | None = None  # the venue's symbol; None: the consolidated symbol itself
    price_scale: float = Field(1.0, gt=0, allow_inf_nan=False)


class ConsolidatedConfig(BaseModel):
    """Consolidated-book settings: the COB grid, staleness, and venue markets per symbol
    (``markets["BTC/USDT"]["coinbase"] = VenueMarket(symbol="BTC/USD")``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cob: COBConfig = Field(default_factory=COBConfig)
    stale_after_ms: int = Field(5_000, ge=1)
    markets: dict[str, dict[str, VenueMarket]] = Field(default_factory=dict)

    @field_validator("markets")
    @classmethod
    def _markets(
        cls, value: dict[str, dict[str, VenueMarket]]
    ) -> dict[str, dict[str, VenueMarket]]:
        out = {}
        for symbol, venues in value.items():
            out[str(Symbol.parse(symbol))] = {
                venue: m
                if m.symbol is None
                else m.model_copy(update={"symbol": str(Symbol.parse(m.symbol))})
                for venue, m in venues.items()
            }
        return out

    def venue_market(self, symbol: Symbol | str, venue: str) -> VenueMarket:
        """The venue's market for ``symbol`` with ``symbol`` filled in."""
        key = str(Symbol.parse(symbol))
        market = self.markets.get(key, {}).get(venue, VenueMarket())
        return market if market.symbol is not None else market.model_copy(update={"symbol": key})


@dataclass(frozen=True, slots=True, eq=False)
class ConsolidatedSnapshot:
    """The consolidated book at ``timestamp``. Arrays over venues follow ``venues``; arrays
    over buckets follow ``bucket_prices`` (lower edges, ascending). NaN marks a venue value
    that does not exist (no book yet, or an empty side); ``venue_age_ms`` is -1 for a venue
    never updated."""

    symbol: Symbol
    timestamp: int
    venues: tuple[str, ...]
    mid: float
    bucket_size: float
    bucket_prices: Array
    venue_bid_volume: Array  # (venues, buckets); zero rows for venues not contributing
    venue_ask_volume: Array
    bid_volume: Array  # combined = sum of the venue rows
    ask_volume: Array
    imbalance: Array  # (bid - ask) / (bid + ask), 0 where both are 0
    volume_weighted_prices: Array  # over every contributing level; bucket centre when empty
    venue_best_bid: Array
    venue_best_ask: Array
    venue_mid: Array
    venue_age_ms: npt.NDArray[np.int64]
    stale: npt.NDArray[np.bool_]
    venue_crossed: npt.NDArray[np.bool_]
    contributing: npt.NDArray[np.bool_]
    best_bid: float
    best_ask: float
    best_bid_venue: str
    best_ask_venue: str
    crossed: bool  # best_bid > best_ask across venues
    locked: bool  # best_bid == best_ask across venues
    imbalance_ma: Mapping[int, Array] = field(default_factory=dict)

    @property
    def contributors(self) -> tuple[str, ...]:
        """The venues in the combined arrays."""
        return tuple(v for v, c in zip(self.venues, self.contributing, strict=True) if c)

    def to_cob(self, order_flow_metrics: Mapping[str, float] | None = None) -> COBData:
        """The combined book as seed 003's :class:`COBData` (what models and the store read)."""
        return COBData(
            symbol=self.symbol,
            timestamp=self.timestamp,
            current_price=self.mid,
            bucket_size=self.bucket_size,
            bucket_prices=self.bucket_prices,
            bid_volume=self.bid_volume,
            ask_volume=self.ask_volume,
            imbalance=self.imbalance,
            volume_weighted_prices=self.volume_weighted_prices,
            imbalance_ma=self.imbalance_ma,
            order_flow_metrics=order_flow_metrics or {},
        )


@dataclass(slots=True)
class _VenueBook:
    bid_p: Array
    bid_q: Array
    ask_p: Array
    ask_q: Array
    best_bid: float  # NaN when the side is empty
    best_ask: float
    timestamp: int
    seen_ms: int  # received_ms, else timestamp: the staleness clock
    nonce: int | None


def _side(levels: npt.ArrayLike, scale: float, where: str) -> tuple[Array, Array]:
    """(prices ascending, quantities) of one side, zero quantities dropped, prices times
    ``scale``."""
    arr = np.asarray(levels, dtype=np.float64)
    if arr.size == 0:
        return np.empty(0), np.empty(0)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(f"{where} must be an (n, 2) array of (price, quantity), got {arr.shape}")
    prices, qtys = arr[:, 0], arr[:, 1]
    if not (np.all(np.isfinite(arr[:, :2])) and np.all(prices > 0) and np.all(qtys >= 0)):
        raise DataError(
            f"{where}: prices must be positive and quantities non-negative, all finite; "
            "check the venue's book before passing it"
        )
    keep = qtys > 0
    prices, qtys = prices[keep], qtys[keep]
    # ascending price order, as bucketize sums: one venue's buckets then equal its bits
    steps = np.diff(prices)
    if not np.all(steps > 0):
        order = prices.argsort(kind="stable") if not np.all(steps < 0) else slice(None, None, -1)
        prices, qtys = prices[order], qtys[order]
    if scale != 1.0:
        prices = prices * scale
    return np.ascontiguousarray(prices), np.ascontiguousarray(qtys)


class ConsolidatedBook:
    """Per-venue L2 books of one symbol and their consolidated view (see module docstring)."""

    def __init__(
        self,
        symbol: Symbol | str,
        venues: Sequence[str],
        config: ConsolidatedConfig | None = None,
    ) -> None:
        if not venues or len(set(venues)) != len(venues):
            raise ConfigError(f"ConsolidatedBook needs distinct venue names, got {list(venues)}")
        self.symbol = Symbol.parse(symbol)
        self.venues = tuple(venues)
        self.config = config or ConsolidatedConfig()
        self.markets = {v: self.config.venue_market(self.symbol, v) for v in self.venues}
        self._scale = {v: m.price_scale for v, m in self.markets.items()}
        self._index = {v: i for i, v in enumerate(self.venues)}
        self._books: list[_VenueBook | None] = [None] * len(self.venues)
        self.bucket_size: float | None = None
        self.updates: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # out-of-order updates per venue
        cob = self.config.cob
        m = cob.ma_buckets
        self._central = slice(cob.buckets - m, cob.buckets + m + 1)
        self._ma = ImbalanceMA(cob.ma_windows_s, 2 * m + 1)
        self._ma_t: int | None = None
        self._ma_last: dict[int, Array] = {}
        self._ticks = SecondTicks()

    # -- input

    def _venue(self, venue: str) -> int:
        try:
            return self._index[venue]
        except KeyError:
            raise DataError(
                f"{self.symbol} consolidated book has no venue {venue!r}; its venues are "
                f"{list(self.venues)}"
            ) from None

    def set_price_scale(self, venue: str, scale: float) -> None:
        """Change ``venue``'s price scale for the updates that follow (a live FX rate)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ConfigError(f"price scale of {venue} must be positive and finite, got {scale}")
        self._venue(venue)
        self._scale[venue] = float(scale)

    def update(
        self,
        venue: str,
        bids: npt.ArrayLike,
        asks: npt.ArrayLike,
        timestamp: int,
        *,
        nonce: int | None = None,
        received_ms: int | None = None,
    ) -> bool:
        """Replace ``venue``'s book: ``bids`` and ``asks`` are ``(n, 2)`` (price, quantity)
        in the venue's prices (any order; quantity 0 ignored), ``timestamp`` the venue's book
        time (UTC ms), ``nonce`` its update id if it sends one, ``received_ms`` when it
        arrived. False when dropped as out of order (a nonce below the venue's last)."""
        i = self._venue(venue)
        old = self._books[i]
        if old is not None and nonce is not None and old.nonce is not None and nonce < old.nonce:
            self.dropped[venue] += 1
            return False
        scale = self._scale[venue]
        where = f"{venue} {self.symbol} book"
        bid_p, bid_q = _side(bids, scale, where + " bids")
        ask_p, ask_q = _side(asks, scale, where + " asks")
        self._books[i] = _VenueBook(
            bid_p,
            bid_q,
            ask_p,
            ask_q,
            float(bid_p.max()) if bid_p.size else math.nan,
            float(ask_p.min()) if ask_p.size else math.nan,
            int(timestamp),
            int(received_ms if received_ms is not None else timestamp),
            nonce if nonce is not None or old is None else old.nonce,  # the last one known
        )
        self.updates[venue] += 1
        return True

    def clear(self, venue: str) -> None:
        """Forget ``venue``'s book (it disconnected or lost sync); it stops contributing."""
        self._books[self._venue(venue)] = None

    # -- output

    def advance(self, event_time: int) -> list[ConsolidatedSnapshot]:
        """Snapshots for every whole second ``T <= event_time`` not yet emitted (the first
        call only starts the clock); call it before applying the update stamped
        ``event_time`` so that the snapshot at ``T`` holds only updates before ``T``."""
        snaps = (self.snapshot(t) for t in self._ticks.due(event_time))
        return [s for s in snaps if s is not None]

    def snapshot(self, t: int) -> ConsolidatedSnapshot | None:
        """The consolidated book at ``t`` (UTC ms); None when no venue contributes."""
        nv = len(self.venues)
        best_bid = np.full(nv, np.nan)
        best_ask = np.full(nv, np.nan)
        age = np.full(nv, -1, dtype=np.int64)
        stale = np.zeros(nv, dtype=bool)
        crossed = np.zeros(nv, dtype=bool)
        live = []
        for i, book in enumerate(self._books):
            if book is None:
                continue
            best_bid[i], best_ask[i] = book.best_bid, book.best_ask
            age[i] = max(0, t - book.seen_ms)
            stale[i] = age[i] > self.config.stale_after_ms
            crossed[i] = bool(book.best_bid >= book.best_ask)  # False when a side is empty
            if not stale[i] and not crossed[i] and book.bid_p.size and book.ask_p.size:
                live.append(i)
        if not live:
            return None
        top_bid = int(max(live, key=lambda i: best_bid[i]))
        top_ask = int(min(live, key=lambda i: best_ask[i]))
        bid, ask = float(best_bid[top_bid]), float(best_ask[top_ask])
        mid = (bid + ask) / 2.0
        if self.bucket_size is None:
            self.bucket_size = self.config.cob.bucket_size(self.symbol, mid)
        size = self.bucket_size
        n = self.config.cob.buckets
        width = 2 * n + 1
        first = math.floor(mid / size + _EPS) - n
        books = [self._books[i] for i in live]
        rows = np.asarray(live, dtype=np.int64)
        sums = []
        for prices, qtys in (
            ([b.bid_p for b in books], [b.bid_q for b in books]),  # type: ignore[union-attr]
            ([b.ask_p for b in books], [b.ask_q for b in books]),  # type: ignore[union-attr]
        ):
            p = np.concatenate(prices)
            q = np.concatenate(qtys)
            venue_of = np.repeat(rows, [len(x) for x in prices])
            idx = np.floor(p / size + _EPS).astype(np.int64) - first
            keep = (idx >= 0) & (idx < width)
            idx, p, q, venue_of = idx[keep], p[keep], q[keep], venue_of[keep]
            per_venue = np.bincount(venue_of * width + idx, weights=q, minlength=nv * width)
            sums.append(per_venue.astype(np.float64).reshape(nv, width))
            sums.append(np.bincount(idx, weights=p * q, minlength=width).astype(np.float64))
        venue_bid, bid_pq, venue_ask, ask_pq = sums
        bid_volume = venue_bid.sum(axis=0)
        ask_volume = venue_ask.sum(axis=0)
        edges = (first + np.arange(width, dtype=np.float64)) * size
        total = bid_volume + ask_volume
        with np.errstate(invalid="ignore", divide="ignore"):
            imbalance = np.where(total > 0, (bid_volume - ask_volume) / total, 0.0)
            vwap = np.where(total > 0, (bid_pq + ask_pq) / total, edges + size / 2.0)
        contributing = np.zeros(nv, dtype=bool)
        contributing[rows] = True
        return ConsolidatedSnapshot(
            symbol=self.symbol,
            timestamp=int(t),
            venues=self.venues,
            mid=mid,
            bucket_size=size,
            bucket_prices=edges,
            venue_bid_volume=venue_bid,
            venue_ask_volume=venue_ask,
            bid_volume=bid_volume,
            ask_volume=ask_volume,
            imbalance=imbalance,
            volume_weighted_prices=vwap,
            venue_best_bid=best_bid,
            venue_best_ask=best_ask,
            venue_mid=(best_bid + best_ask) / 2.0,
            venue_age_ms=age,
            stale=stale,
            venue_crossed=crossed,
            contributing=contributing,
            best_bid=bid,
            best_ask=ask,
            best_bid_venue=self.venues[top_bid],
            best_ask_venue=self.venues[top_ask],
            crossed=bid > ask,
            locked=bid == ask,
            imbalance_ma=self._moving_averages(int(t), imbalance[self._central]),
        )

    def _moving_averages(self, t: int, central: Array) -> dict[int, Array]:
        if self._ma_t is not None and t < self._ma_t:
            raise DataError(
                f"{self.symbol} consolidated snapshot at {t} is before the previous one at "
                f"{self._ma_t}; take snapshots in time order"
            )
        if t != self._ma_t:
            self._ma_last = self._ma.push(t, central)
            self._ma_t = t
        return self._ma_last


class ConsolidatedBooks:
    """One :class:`ConsolidatedBook` per symbol, fed by (venue, venue symbol): each venue
    book goes to every consolidated symbol that quotes it (``ConsolidatedConfig.markets``; by
    default the symbol of the same name), so Kraken's ``ETH/CHF`` can feed both an ``ETH/CHF``
    book and, scaled, an ``ETH/USD`` one. Books no symbol takes are counted in ``unrouted``."""

    def __init__(
        self,
        symbols: Sequence[Symbol | str],
        venues: Sequence[str],
        config: ConsolidatedConfig | None = None,
    ) -> None:
        self.config = config or ConsolidatedConfig()
        self.books = {
            Symbol.parse(s): ConsolidatedBook(s, venues, self.config)
            for s in dict.fromkeys(Symbol.parse(s) for s in symbols)
        }
        self._routes: dict[tuple[str, Symbol], list[ConsolidatedBook]] = {}
        for book in self.books.values():
            for venue, market in book.markets.items():
                key = (venue, Symbol.parse(market.symbol or book.symbol))
                self._routes.setdefault(key, []).append(book)
        self.unrouted: Counter[tuple[str, str]] = Counter()

    def book(self, symbol: Symbol | str) -> ConsolidatedBook:
        try:
            return self.books[Symbol.parse(symbol)]
        except KeyError:
            raise DataError(f"no consolidated book for {symbol}; have {list(self.books)}") from None

    def route(self, venue: str, venue_symbol: Symbol | str) -> tuple[ConsolidatedBook, ...]:
        """The books ``venue``'s ``venue_symbol`` feeds (empty when none)."""
        return tuple(self._routes.get((venue, Symbol.parse(venue_symbol)), ()))

    def update(
        self,
        venue: str,
        venue_symbol: Symbol | str,
        bids: npt.ArrayLike,
        asks: npt.ArrayLike,
        timestamp: int,
        *,
        nonce: int | None = None,
        received_ms: int | None = None,
    ) -> tuple[ConsolidatedBook, ...]:
        """Route one venue book (see :meth:`ConsolidatedBook.update`); the books that took
        it (empty when no symbol takes it, counted, or every book dropped it as out of order)."""
        books = self.route(venue, venue_symbol)
        if not books:
            self.unrouted[(venue, str(Symbol.parse(venue_symbol)))] += 1
        return tuple(
            book
            for book in books
            if book.update(venue, bids, asks, timestamp, nonce=nonce, received_ms=received_ms)
        )

    def snapshots(self, t: int) -> dict[Symbol, ConsolidatedSnapshot | None]:
        """Every symbol's snapshot at ``t``."""
        return {symbol: book.snapshot(t) for symbol, book in self.books.items()}
