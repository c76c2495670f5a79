"""One symbol's replayable market: the event types, the book snapshot, klines, ``SymbolFlow``.

Times are UTC milliseconds (int) everywhere; prices are in the quote asset, quantities in the
base asset. The event types mirror Binance spot's streams:

- :class:`TradePrint` — one public trade (``<s>@trade``);
- :class:`DepthDiff` — one diff-depth event (``<s>@depth@100ms``): levels that changed, a
  quantity of 0 removes the level; ``first_id``/``last_id`` are Binance's ``U``/``u``;
- :class:`BookTop` — the best bid and ask (``<s>@bookTicker``).

A :class:`SymbolFlow` yields these in time order (non-decreasing ``time_ms``) from a fresh
iterator on every :meth:`SymbolFlow.events` call, starting from the book in ``snapshot``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

Level: TypeAlias = tuple[float, float]
"""One book level: ``(price, quantity)``."""

KNOWN_FILTERS: dict[str, tuple[float, float]] = {
    "BTC/USDT": (0.01, 0.00001),
    "ETH/USDT": (0.01, 0.0001),
}
"""Binance spot (tick size, step size) of the symbols the shared data holds, by ccxt symbol;
flows of other symbols infer theirs from the data."""


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One public trade.

    ``time_ms`` is the trade time (Binance ``T``); ``trade_id`` is contiguous per symbol;
    ``buyer_maker`` is True when the buyer was the resting order (a sell-initiated trade).
    """

    time_ms: int
    trade_id: int
    price: float
    qty: float
    buyer_maker: bool


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One diff-depth event with Binance ``depth@100ms`` semantics.

    ``time_ms`` is the event time (``E``); ``first_id``/``last_id`` are ``U``/``u`` (in a
    clean flow ``first_id == previous last_id + 1``). ``bids``/``asks`` hold the changed
    levels as ``(price, qty)``; a quantity of 0 removes the level.
    """

    time_ms: int
    first_id: int
    last_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class BookTop:
    """The best bid and ask (``bookTicker``) after the book update ``update_id``."""

    time_ms: int
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


FlowEvent: TypeAlias = TradePrint | DepthDiff | BookTop


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A REST depth answer: the book as of ``last_update_id``.

    ``bids`` are best first (descending price), ``asks`` best first (ascending price).
    """

    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Kline:
    """One candle with Binance's kline fields.

    ``close_time = open_time + timeframe_ms - 1``; volumes are in the base asset, quote
    volumes in the quote asset; ``trades`` counts the trades in the interval; ``closed`` is
    False for the candle still open at the cursor.
    """

    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float
    closed: bool


def _no_history() -> Mapping[Timeframe, Candles]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SymbolFlow:
    """One symbol's replayable market.

    - ``symbol``: the market; ``source``: where the events come from (e.g.
      ``"recorded:btcusdt_20240808.gz+btcusdt_20240809.gz"``, ``"synthetic:seed=7"``);
    - ``start_ms``/``end_ms``: the first and last event time (UTC ms);
    - ``snapshot``: the book before the first event (a recording's REST snapshot);
    - ``history``: closed candles before ``start_ms`` per timeframe (served by ``/klines``);
    - ``tick_size``/``step_size``: price and quantity increments (exchangeInfo filters).

    :meth:`events` returns a fresh iterator over the events in time order each call; the
    events are produced lazily by ``factory`` (a zero-argument callable returning the
    iterator), so a long flow never sits in memory as objects.
    """

    symbol: Symbol
    source: str
    start_ms: int
    end_ms: int
    snapshot: BookSnapshot
    tick_size: float
    step_size: float
    factory: Callable[[], Iterator[FlowEvent]] = field(repr=False, compare=False)
    history: Mapping[Timeframe, Candles] = field(
        default_factory=_no_history, repr=False, compare=False
    )

    def events(self) -> Iterator[FlowEvent]:
        """A fresh iterator over the flow's events (non-decreasing ``time_ms``)."""
        return self.factory()
