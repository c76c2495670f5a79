"""MEXC spot WebSocket push frames: ``PushDataV3ApiWrapper`` protobuf messages.

MEXC's spot market streams are binary protobuf frames. They are built here with the
generated classes ccxt ships (``ccxt.protobuf.mexc``), so a ccxt.pro client decodes exactly
what it would decode from MEXC. Every frame carries ``channel`` (the subscribed channel
name), ``symbol`` (``BTCUSDT``) and ``sendTime`` (UTC ms) and one body:

- ``publicAggreDeals``: the trades of one aggregation window (``tradeType`` 1 = taker buy,
  2 = taker sell; ``time`` in ms);
- ``publicAggreDepths``: one depth diff with ``fromVersion``/``toVersion`` (the market's
  Binance-style ``U``/``u`` update ids; quantity ``"0"`` removes a level);
- ``publicSpotKline``: one candle, ``windowStart``/``windowEnd`` in **seconds**;
- ``publicAggreBookTicker``: the best bid and ask.

Prices and quantities are decimal strings (see :func:`pivotal.localexchange.sitefmt.num`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ccxt.protobuf.mexc import (
    PublicAggreBookTickerV3Api_pb2,
    PublicAggreDealsV3Api_pb2,
    PublicAggreDepthsV3Api_pb2,
    PublicSpotKlineV3Api_pb2,
    PushDataV3ApiWrapper_pb2,
)

from pivotal.localexchange.flow import BookTop, DepthDiff, Kline, TradePrint
from pivotal.localexchange.sitefmt import amount, num

DEALS = "spot@public.aggre.deals.v3.api.pb"
DEPTH = "spot@public.aggre.depth.v3.api.pb"
BOOK_TICKER = "spot@public.aggre.bookTicker.v3.api.pb"
KLINE = "spot@public.kline.v3.api.pb"

_Wrapper = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper


def deals_frame(
    channel: str, symbol_id: str, send_ms: int, trades: Sequence[TradePrint], dp: tuple[int, int]
) -> bytes:
    """One ``publicAggreDeals`` frame; ``dp`` = (price decimals, quantity decimals)."""
    frequency = channel.split("@")[2]
    body = PublicAggreDealsV3Api_pb2.PublicAggreDealsV3Api(eventType=f"{DEALS}@{frequency}")
    for trade in trades:
        body.deals.add(
            price=num(trade.price, dp[0]),
            quantity=num(trade.qty, dp[1]),
            tradeType=2 if trade.buyer_maker else 1,
            time=trade.time_ms,
        )
    wrapper = _Wrapper(channel=channel, symbol=symbol_id, sendTime=send_ms, publicAggreDeals=body)
    return wrapper.SerializeToString()


def depth_frame(channel: str, symbol_id: str, diff: DepthDiff, dp: tuple[int, int]) -> bytes:
    """One ``publicAggreDepths`` frame of ``diff`` (versions = its first/last update id)."""
    frequency = channel.split("@")[2]
    body = PublicAggreDepthsV3Api_pb2.PublicAggreDepthsV3Api(
        eventType=f"{DEPTH}@{frequency}",
        fromVersion=str(diff.first_id),
        toVersion=str(diff.last_id),
    )
    for price, qty in diff.asks:
        body.asks.add(price=num(price, dp[0]), quantity=num(qty, dp[1]))
    for price, qty in diff.bids:
        body.bids.add(price=num(price, dp[0]), quantity=num(qty, dp[1]))
    wrapper = _Wrapper(
        channel=channel, symbol=symbol_id, sendTime=diff.time_ms, publicAggreDepths=body
    )
    return wrapper.SerializeToString()


def kline_frame(
    channel: str,
    symbol_id: str,
    interval: str,
    kline: Kline,
    tf_ms: int,
    send_ms: int,
    dp: tuple[int, int],
) -> bytes:
    """One ``publicSpotKline`` frame (``interval`` is MEXC's name, e.g. ``Min1``)."""
    body = PublicSpotKlineV3Api_pb2.PublicSpotKlineV3Api(
        interval=interval,
        windowStart=kline.open_time // 1000,
        openingPrice=num(kline.open, dp[0]),
        closingPrice=num(kline.close, dp[0]),
        highestPrice=num(kline.high, dp[0]),
        lowestPrice=num(kline.low, dp[0]),
        volume=amount(kline.volume),
        amount=amount(kline.quote_volume),
        windowEnd=(kline.open_time + tf_ms) // 1000,
    )
    wrapper = _Wrapper(
        channel=channel,
        symbol=symbol_id,
        createTime=send_ms,
        sendTime=send_ms,
        publicSpotKline=body,
    )
    return wrapper.SerializeToString()


def book_ticker_frame(channel: str, symbol_id: str, top: BookTop, dp: tuple[int, int]) -> bytes:
    """One ``publicAggreBookTicker`` frame of ``top``."""
    body = PublicAggreBookTickerV3Api_pb2.PublicAggreBookTickerV3Api(
        bidPrice=num(top.bid, dp[0]),
        bidQuantity=num(top.bid_qty, dp[1]),
        askPrice=num(top.ask, dp[0]),
        askQuantity=num(top.ask_qty, dp[1]),
    )
    wrapper = _Wrapper(
        channel=channel, symbol=symbol_id, sendTime=top.time_ms, publicAggreBookTicker=body
    )
    return wrapper.SerializeToString()
