"""ccxt answers to items: every trade and candle once, whatever mix of live, repeated and
back-filled rows arrives; book and ticker fields."""

from __future__ import annotations

import pytest

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.venues.convert import CandleCursor, TradeCursor, book_item, ticker_item, trade_id
from pivotal.venues.stream_events import Channel, ChannelKind, StreamKey
from venues.fake_ccxt import trade

BTC = Symbol("BTC", "USDT")


def test_channels_parse_and_refuse() -> None:
    assert Channel.parse("ohlcv:1m") == Channel(ChannelKind.OHLCV, Timeframe.M1)
    assert str(Channel.parse(" Trades ")) == "trades"
    assert str(StreamKey.parse("btc/usdt", "ohlcv:1h")) == "BTC/USDT ohlcv:1h"
    for bad in ("candles", "ohlcv", "book:1m", "ohlcv:7m"):
        with pytest.raises(ValueError, match=r"channel|timeframe"):
            Channel.parse(bad)


def test_trades_with_ids_go_out_once_in_order() -> None:
    cursor = TradeCursor()
    first = cursor.take([trade(3, 30), trade(1, 10, side="sell"), trade(2, 20)])
    assert first is not None
    assert first.trade_id.tolist() == [1, 2, 3]
    assert first.is_buyer_maker.tolist() == [True, False, False]  # the aggressor sold
    # ccxt's cache answers with rows already seen, then a REST page overlaps
    assert cursor.take([trade(2, 20), trade(3, 30)]) is None
    again = cursor.take([trade(3, 30), trade(4, 40), trade(5, 40)])
    assert again is not None
    assert again.trade_id.tolist() == [4, 5]
    assert cursor.last_id == 5
    assert cursor.last_ms == 40


def test_trades_without_ids_get_stable_synthetic_ids() -> None:
    rows = [
        {"id": None, "timestamp": 10, "price": 1.0, "amount": 2.0, "side": "buy"},
        {"id": None, "timestamp": 10, "price": 1.0, "amount": 2.0, "side": "buy"},  # a twin
        {"id": None, "timestamp": 11, "price": 1.5, "amount": 1.0, "side": "sell"},
    ]
    live = TradeCursor(ids=False)
    got = live.take(rows[:2])
    assert got is not None
    assert len(got) == 2
    assert len(set(got.trade_id.tolist())) == 2  # twins differ by occurrence
    # a REST page repeating everything plus one new trade: only the new one goes out
    more = live.take(rows)
    assert more is not None
    assert len(more) == 1
    assert more.timestamp.tolist() == [11]
    # another cursor seeing the same trades gives them the same ids (idempotent storage)
    other = TradeCursor(ids=False).take(rows)
    assert other is not None
    assert other.trade_id.tolist() == [*got.trade_id.tolist(), *more.trade_id.tolist()]
    assert trade_id(rows[0]) == got.trade_id[0]
    assert all(0 <= i < 2**63 for i in other.trade_id.tolist())


def test_ids_ignored_when_the_exchange_disagrees_on_them() -> None:
    cursor = TradeCursor(ids=False)
    live = cursor.take([{"id": None, "timestamp": 5, "price": 2.0, "amount": 1.0, "side": "buy"}])
    rest = cursor.take([{"id": "777", "timestamp": 5, "price": 2.0, "amount": 1.0, "side": "buy"}])
    assert live is not None
    assert rest is None  # the same trade, although REST gave it an id


def row(ts: int, close: float, volume: float = 1.0) -> list[float]:
    return [ts, close, close + 1, close - 1, close, volume]


def test_candles_update_then_close_once() -> None:
    cursor = CandleCursor()
    assert cursor.take([row(0, 10)], final_but_last=False) == [((0, 10, 11, 9, 10, 1.0), False)]
    # two updates of the forming candle in one answer: only the newest goes out
    out = cursor.take([row(0, 11), row(0, 12)], final_but_last=False)
    assert [(r[0], r[4], c) for r, c in out] == [(0, 12, False)]
    # a newer candle closes the previous one with its last values
    out = cursor.take([row(0, 12), row(60, 13)], final_but_last=False)
    assert [(r[0], r[4], c) for r, c in out] == [(0, 12, True), (60, 13, False)]
    # a late update of the closed candle is ignored and counted
    assert cursor.take([row(0, 99)], final_but_last=False) == []
    assert cursor.late == 1


def test_candle_backfill_finalises_all_but_the_newest() -> None:
    cursor = CandleCursor()
    cursor.take([row(60, 13)], final_but_last=False)
    out = cursor.take([row(60, 14), row(120, 15), row(180, 16)], final_but_last=True)
    assert [(r[0], r[4], c) for r, c in out] == [(60, 14, True), (120, 15, True), (180, 16, False)]
    assert cursor.closed_ms == 120
    assert cursor.open_ms == 180
    # REST repeating the same page changes nothing but the forming candle
    out = cursor.take([row(120, 15), row(180, 17)], final_but_last=True)
    assert [(r[0], r[4], c) for r, c in out] == [(180, 17, False)]


def test_book_and_ticker_items() -> None:
    book = {
        "bids": [[100.0, 1.0], [99.0, 2.0], [98.0, 3.0]],
        "asks": [[101.0, 1.5, 4]],  # extra columns (order counts) are dropped
        "nonce": 42,
        "timestamp": 1234,
    }
    item = book_item(book, exchange="binance", symbol=BTC, received_ms=1300, depth=2)
    assert item.bids.shape == (2, 2)
    assert item.asks.tolist() == [[101.0, 1.5]]
    assert (item.nonce, item.time_ms, item.best_bid, item.best_ask) == (42, 1234, 100.0, 101.0)
    empty = book_item({"bids": [], "asks": []}, exchange="x", symbol=BTC, received_ms=0, depth=5)
    assert empty.bids.shape == (0, 2)
    assert empty.best_bid is None
    assert empty.nonce is None
    ticker = ticker_item(
        {"bid": "1.5", "ask": 1.6, "last": None, "timestamp": 9, "bidVolume": 3},
        exchange="mexc",
        symbol=BTC,
        received_ms=10,
    )
    assert (ticker.bid, ticker.ask, ticker.last, ticker.bid_qty) == (1.5, 1.6, None, 3.0)
