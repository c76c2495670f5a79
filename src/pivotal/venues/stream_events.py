"""The venue-neutral items of the live streams, and how streams are named.

A stream is one (symbol, channel); the exchange serving it may change (failover), so every
item carries ``exchange``: the venue that produced it, which stored rows record. Times are UTC
milliseconds: ``received_ms`` is when pivotal got the item (from its
:class:`~pivotal.core.clock.Clock`), ``time_ms`` the exchange's event time where it sends one.

Channels: ``trades``, ``book``, ``ticker`` and ``ohlcv:<timeframe>`` (e.g. ``ohlcv:1m``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades

__all__ = [
    "BookItem",
    "CandleItem",
    "Channel",
    "ChannelKind",
    "StatusItem",
    "StreamItem",
    "StreamKey",
    "TickerItem",
    "TradesItem",
]


class ChannelKind(StrEnum):
    TRADES = "trades"
    BOOK = "book"
    OHLCV = "ohlcv"
    TICKER = "ticker"


@dataclass(frozen=True, slots=True, order=True)
class Channel:
    """One kind of market data; ``timeframe`` only (and always) for ``ohlcv``."""

    kind: ChannelKind
    timeframe: Timeframe | None = None

    def __post_init__(self) -> None:
        if (self.kind is ChannelKind.OHLCV) != (self.timeframe is not None):
            raise ValueError(f"channel {self.kind}: a timeframe goes with ohlcv, and only there")

    @classmethod
    def parse(cls, text: str | Channel) -> Channel:
        """``trades``, ``book``, ``ticker`` or ``ohlcv:<tf>``; ``ValueError`` says what is
        allowed otherwise."""
        if isinstance(text, Channel):
            return text
        raw = str(text).strip().lower()
        kind, _, tf = raw.partition(":")
        try:
            parsed = ChannelKind(kind)
        except ValueError:
            raise ValueError(
                f"unknown channel {text!r}; use trades, book, ticker or ohlcv:<timeframe> "
                "(e.g. ohlcv:1m)"
            ) from None
        if parsed is ChannelKind.OHLCV:
            if not tf:
                raise ValueError(f"channel {text!r} needs a timeframe, e.g. ohlcv:1m")
            return cls(parsed, Timeframe.parse(tf))
        if tf:
            raise ValueError(f"channel {text!r}: only ohlcv takes a timeframe")
        return cls(parsed)

    def __str__(self) -> str:
        return f"{self.kind}:{self.timeframe}" if self.timeframe else str(self.kind)


@dataclass(frozen=True, slots=True, order=True)
class StreamKey:
    """A stream: one symbol's channel, whichever exchange serves it."""

    symbol: Symbol
    channel: Channel

    @classmethod
    def parse(cls, symbol: str | Symbol, channel: str | Channel) -> StreamKey:
        return cls(Symbol.parse(symbol), Channel.parse(channel))

    def __str__(self) -> str:
        return f"{self.symbol} {self.channel}"


@dataclass(frozen=True, slots=True)
class TradesItem:
    """New public trades (each once per exchange, oldest first). ``backfilled``: they came
    from REST after a reconnect or an exchange switch, not from the stream."""

    exchange: str
    symbol: Symbol
    received_ms: int
    trades: Trades
    backfilled: bool = False

    @property
    def time_ms(self) -> int:
        """The newest trade's time (UTC ms)."""
        return int(self.trades.timestamp[-1])


@dataclass(frozen=True, slots=True)
class CandleItem:
    """One candle (a one-row :class:`Candles`, open time in ``timestamp``). ``closed=False``:
    the candle is still forming and this is its latest state; ``closed=True``: its final
    values, sent once per candle (a newer candle appeared, or REST back-fill returned it with a
    newer one after it)."""

    exchange: str
    symbol: Symbol
    received_ms: int
    timeframe: Timeframe
    candle: Candles
    closed: bool
    backfilled: bool = False

    @property
    def open_time(self) -> int:
        return int(self.candle.timestamp[0])


@dataclass(frozen=True, slots=True, eq=False)
class BookItem:
    """The top of the order book: ``bids`` descending and ``asks`` ascending, each an
    ``(n, 2)`` float64 array of (price, base quantity), at most ``StreamsConfig.book_depth``
    rows. ``nonce`` is the exchange's update id (None if it sends none)."""

    exchange: str
    symbol: Symbol
    received_ms: int
    time_ms: int | None
    nonce: int | None
    bids: npt.NDArray[np.float64]
    asks: npt.NDArray[np.float64]

    @property
    def best_bid(self) -> float | None:
        return float(self.bids[0, 0]) if len(self.bids) else None

    @property
    def best_ask(self) -> float | None:
        return float(self.asks[0, 0]) if len(self.asks) else None


@dataclass(frozen=True, slots=True)
class TickerItem:
    """The 24 h ticker with the best bid and ask (None where the exchange sends nothing)."""

    exchange: str
    symbol: Symbol
    received_ms: int
    time_ms: int | None
    bid: float | None
    ask: float | None
    last: float | None
    bid_qty: float | None = None
    ask_qty: float | None = None
    base_volume: float | None = None
    quote_volume: float | None = None


StatusKind = Literal["failover", "failback", "failed", "backfill_shortfall"]


@dataclass(frozen=True, slots=True)
class StatusItem:
    """Something a consumer should know about a stream.

    - ``failover``: the stream moved from ``from_exchange`` (down too long) to ``exchange``.
    - ``failback``: it moved back to its preferred ``exchange`` (the probe succeeded).
    - ``failed``: the exchange refused the stream for good (unknown symbol, unsupported
      channel); the stream stops, ``detail`` says why.
    - ``backfill_shortfall``: REST could not return everything missed (the exchange keeps too
      little history, or has no paging); ``detail`` gives the span.
    """

    exchange: str
    symbol: Symbol
    received_ms: int
    kind: StatusKind
    channel: Channel | None = None
    from_exchange: str | None = None
    detail: str = field(default="")


StreamItem = TradesItem | CandleItem | BookItem | TickerItem | StatusItem
