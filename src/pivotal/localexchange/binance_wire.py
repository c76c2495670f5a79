"""Binance spot wire formats: REST rows and WebSocket payloads as plain dicts and lists.

Prices and quantities are strings with 8 decimals (``"25.35190000"``), times UTC ms ints,
exactly as Binance sends them. Pure functions; the site (:mod:`.binance`) does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.exchange_info import decimal_text as num
from pivotal.localexchange.flow import BookSnapshot, BookTop, DepthDiff, Kline, Level, TradePrint

#: Binance's kline intervals that pivotal's timeframes cover (3d, 1w, 1M are not served).
INTERVALS: dict[str, Timeframe] = {tf.value: tf for tf in Timeframe}

_STREAM = re.compile(
    r"^(?P<sym>[a-z0-9]{2,30})@(?P<kind>trade|aggTrade|bookTicker|ticker|miniTicker"
    r"|depth(?P<levels>5|10|20)?(?:@(?P<rate>100ms|1000ms))?|kline_(?P<tf>[0-9]+[smhd]))$"
)


@dataclass(frozen=True, slots=True)
class StreamName:
    """A parsed stream name: ``btcusdt@depth@100ms`` → symbol id ``btcusdt``, kind ``depth``.

    ``kind`` is one of trade, aggTrade, bookTicker, ticker, miniTicker, depth (diffs),
    partial (``depth5/10/20``), kline. ``fast`` is the 100 ms update speed of depth streams;
    ``levels`` the partial book's depth; ``timeframe`` the kline interval.
    """

    name: str
    symbol_id: str
    kind: str
    fast: bool = False
    levels: int = 0
    timeframe: Timeframe | None = None


def parse_stream(text: str) -> StreamName | None:
    """Parse a Binance stream name (the symbol part case-insensitive); None when malformed."""
    if "@" not in text:
        return None
    sym, rest = text.split("@", 1)
    name = f"{sym.lower()}@{rest}"
    match = _STREAM.match(name)
    if match is None:
        return None
    kind = match["kind"]
    sid = match["sym"]
    if kind.startswith("depth"):
        fast = match["rate"] == "100ms"
        if match["levels"]:
            return StreamName(name, sid, "partial", fast=fast, levels=int(match["levels"]))
        return StreamName(name, sid, "depth", fast=fast)
    if kind.startswith("kline_"):
        tf = INTERVALS.get(match["tf"])
        return None if tf is None else StreamName(name, sid, "kline", timeframe=tf)
    return StreamName(name, sid, kind)


def _levels(levels: Sequence[Level]) -> list[list[str]]:
    return [[num(p), num(q)] for p, q in levels]


# -- WebSocket payloads -------------------------------------------------------------------
def trade_event(sid: str, t: TradePrint) -> dict[str, Any]:
    """``<s>@trade``."""
    return {
        "e": "trade",
        "E": t.time_ms,
        "s": sid,
        "t": t.trade_id,
        "p": num(t.price),
        "q": num(t.qty),
        "T": t.time_ms,
        "m": t.buyer_maker,
        "M": True,
    }


def agg_trade_event(sid: str, t: TradePrint) -> dict[str, Any]:
    """``<s>@aggTrade``: one aggregate per trade (aggregate id = trade id)."""
    return {
        "e": "aggTrade",
        "E": t.time_ms,
        "s": sid,
        "a": t.trade_id,
        "p": num(t.price),
        "q": num(t.qty),
        "f": t.trade_id,
        "l": t.trade_id,
        "T": t.time_ms,
        "m": t.buyer_maker,
        "M": True,
    }


def depth_event(
    sid: str,
    time_ms: int,
    first_id: int,
    last_id: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
) -> dict[str, Any]:
    """``<s>@depth`` / ``<s>@depth@100ms`` (a ``depthUpdate``)."""
    return {
        "e": "depthUpdate",
        "E": time_ms,
        "s": sid,
        "U": first_id,
        "u": last_id,
        "b": _levels(bids),
        "a": _levels(asks),
    }


def diff_event(sid: str, d: DepthDiff) -> dict[str, Any]:
    return depth_event(sid, d.time_ms, d.first_id, d.last_id, d.bids, d.asks)


def partial_depth(book: BookSnapshot) -> dict[str, Any]:
    """``<s>@depth<N>`` and the REST ``/api/v3/depth`` body."""
    return {
        "lastUpdateId": book.last_update_id,
        "bids": _levels(book.bids),
        "asks": _levels(book.asks),
    }


def book_ticker_event(sid: str, b: BookTop) -> dict[str, Any]:
    """``<s>@bookTicker`` (spot sends no event type or time)."""
    return {
        "u": b.update_id,
        "s": sid,
        "b": num(b.bid),
        "B": num(b.bid_qty),
        "a": num(b.ask),
        "A": num(b.ask_qty),
    }


def kline_event(sid: str, tf: Timeframe, k: Kline, event_ms: int) -> dict[str, Any]:
    """``<s>@kline_<tf>``; first/last trade ids are not kept by klines: -1 (Binance's "none")."""
    return {
        "e": "kline",
        "E": event_ms,
        "s": sid,
        "k": {
            "t": k.open_time,
            "T": k.close_time,
            "s": sid,
            "i": tf.value,
            "f": -1,
            "L": -1,
            "o": num(k.open),
            "c": num(k.close),
            "h": num(k.high),
            "l": num(k.low),
            "v": num(k.volume),
            "n": k.trades,
            "x": k.closed,
            "q": num(k.quote_volume),
            "V": num(k.taker_buy_volume),
            "Q": num(k.taker_buy_quote_volume),
            "B": "0",
        },
    }


@dataclass(frozen=True, slots=True)
class DayStats:
    """Rolling-day statistics of a ticker (see :func:`day_stats`)."""

    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    last: float
    last_qty: float
    volume: float
    quote_volume: float
    count: int
    first_id: int
    last_id: int


def day_stats(klines: Sequence[Kline], now_ms: int, last: TradePrint | None) -> DayStats:
    """Statistics over ``klines`` (the hourly klines of the last day, the open one included).

    Decision: the window starts at the open of the hour 23 hours before the current one
    (23 to 24 hours), not exactly 24 hours back: hourly klines make it O(25) per push.
    """
    rows = [k for k in klines if k.trades > 0 or k.volume > 0]
    last_price = last.price if last is not None else (rows[-1].close if rows else 0.0)
    if not rows:
        start = klines[0].open_time if klines else now_ms
        return DayStats(start, now_ms, last_price, last_price, last_price, last_price, 0.0, 0.0,
                        0.0, 0, -1, -1)  # fmt: skip
    count = sum(k.trades for k in rows)
    last_id = last.trade_id if last is not None else -1
    return DayStats(
        open_time=rows[0].open_time,
        close_time=now_ms,
        open=rows[0].open,
        high=max(k.high for k in rows),
        low=min(k.low for k in rows),
        last=last_price,
        last_qty=last.qty if last is not None else 0.0,
        volume=sum(k.volume for k in rows),
        quote_volume=sum(k.quote_volume for k in rows),
        count=count,
        first_id=last_id - count + 1 if last_id >= 0 else -1,
        last_id=last_id,
    )


def _change(s: DayStats) -> tuple[str, str, str]:
    change = s.last - s.open
    pct = 100.0 * change / s.open if s.open else 0.0
    wavg = s.quote_volume / s.volume if s.volume else 0.0
    return num(change), f"{pct:.3f}", num(wavg)


def ticker_event(sid: str, s: DayStats, top: BookTop | None, event_ms: int) -> dict[str, Any]:
    """``<s>@ticker`` (``24hrTicker``)."""
    change, pct, wavg = _change(s)
    return {
        "e": "24hrTicker",
        "E": event_ms,
        "s": sid,
        "p": change,
        "P": pct,
        "w": wavg,
        "x": num(s.open),
        "c": num(s.last),
        "Q": num(s.last_qty),
        "b": num(top.bid if top else 0.0),
        "B": num(top.bid_qty if top else 0.0),
        "a": num(top.ask if top else 0.0),
        "A": num(top.ask_qty if top else 0.0),
        "o": num(s.open),
        "h": num(s.high),
        "l": num(s.low),
        "v": num(s.volume),
        "q": num(s.quote_volume),
        "O": s.open_time,
        "C": s.close_time,
        "F": s.first_id,
        "L": s.last_id,
        "n": s.count,
    }


def mini_ticker_event(sid: str, s: DayStats, event_ms: int) -> dict[str, Any]:
    """``<s>@miniTicker`` (``24hrMiniTicker``)."""
    return {
        "e": "24hrMiniTicker",
        "E": event_ms,
        "s": sid,
        "c": num(s.last),
        "o": num(s.open),
        "h": num(s.high),
        "l": num(s.low),
        "v": num(s.volume),
        "q": num(s.quote_volume),
    }


# -- REST rows ----------------------------------------------------------------------------
def kline_row(k: Kline) -> list[Any]:
    """One ``/api/v3/klines`` row (12 fields)."""
    return [
        k.open_time,
        num(k.open),
        num(k.high),
        num(k.low),
        num(k.close),
        num(k.volume),
        k.close_time,
        num(k.quote_volume),
        k.trades,
        num(k.taker_buy_volume),
        num(k.taker_buy_quote_volume),
        "0",
    ]


def trade_row(t: TradePrint) -> dict[str, Any]:
    """One ``/api/v3/trades`` / ``historicalTrades`` entry."""
    return {
        "id": t.trade_id,
        "price": num(t.price),
        "qty": num(t.qty),
        "quoteQty": num(t.price * t.qty),
        "time": t.time_ms,
        "isBuyerMaker": t.buyer_maker,
        "isBestMatch": True,
    }


def agg_trade_row(t: TradePrint) -> dict[str, Any]:
    """One ``/api/v3/aggTrades`` entry (aggregate id = trade id)."""
    return {
        "a": t.trade_id,
        "p": num(t.price),
        "q": num(t.qty),
        "f": t.trade_id,
        "l": t.trade_id,
        "T": t.time_ms,
        "m": t.buyer_maker,
        "M": True,
    }


def book_ticker_row(sid: str, top: BookTop | None) -> dict[str, Any]:
    """One ``/api/v3/ticker/bookTicker`` entry."""
    if top is None:
        return {"symbol": sid, "bidPrice": num(0.0), "bidQty": num(0.0),
                "askPrice": num(0.0), "askQty": num(0.0)}  # fmt: skip
    return {
        "symbol": sid,
        "bidPrice": num(top.bid),
        "bidQty": num(top.bid_qty),
        "askPrice": num(top.ask),
        "askQty": num(top.ask_qty),
    }


def ticker_row(sid: str, s: DayStats, top: BookTop | None) -> dict[str, Any]:
    """One ``/api/v3/ticker/24hr`` entry."""
    change, pct, wavg = _change(s)
    return {
        "symbol": sid,
        "priceChange": change,
        "priceChangePercent": pct,
        "weightedAvgPrice": wavg,
        "prevClosePrice": num(s.open),
        "lastPrice": num(s.last),
        "lastQty": num(s.last_qty),
        "bidPrice": num(top.bid if top else 0.0),
        "bidQty": num(top.bid_qty if top else 0.0),
        "askPrice": num(top.ask if top else 0.0),
        "askQty": num(top.ask_qty if top else 0.0),
        "openPrice": num(s.open),
        "highPrice": num(s.high),
        "lowPrice": num(s.low),
        "volume": num(s.volume),
        "quoteVolume": num(s.quote_volume),
        "openTime": s.open_time,
        "closeTime": s.close_time,
        "firstId": s.first_id,
        "lastId": s.last_id,
        "count": s.count,
    }


def merge_levels(into: dict[float, float], levels: Sequence[Level]) -> None:
    """Fold a diff's levels into an accumulated diff (later quantity wins)."""
    for price, qty in levels:
        into[price] = qty


def sorted_levels(levels: Mapping[float, float], descending: bool) -> list[Level]:
    return sorted(levels.items(), key=lambda item: item[0], reverse=descending)
