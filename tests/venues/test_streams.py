"""The stream supervisor against a scripted ccxt stand-in, on a fake clock: reconnect with
seeded backoff and REST back-fill (no trade or candle lost or repeated), book gaps, Retry-After,
subscription pacing, back-pressure, refusals and shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from pivotal.config.models import StreamsConfig
from pivotal.core.errors import ConfigError
from pivotal.core.symbols import Symbol
from pivotal.venues.backoff import Backoff
from pivotal.venues.stream_events import (
    BookItem,
    CandleItem,
    StatusItem,
    StreamItem,
    TickerItem,
    TradesItem,
)
from pivotal.venues.streams import StreamSupervisor
from venues.fake_ccxt import FakeExchange, FakeTime, run, trade

BTC = "BTC/USDT"
T0 = 1_700_000_000_000
M0 = 1_699_999_980_000  # on the minute grid
CONFIG = StreamsConfig(backoff_initial_s=1.0, backoff_factor=2.0, backoff_max_s=8.0, jitter=0.2)


async def take(sup: StreamSupervisor, n: int) -> list[StreamItem]:
    return [await asyncio.wait_for(sup.queue.get(), 5) for _ in range(n)]


async def until(condition: Any) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def ids(item: StreamItem) -> list[int]:
    assert isinstance(item, TradesItem)
    return item.trades.trade_id.tolist()


def supervisor(
    clients: dict[str, FakeExchange], streams: list[tuple[str, str]], time: FakeTime, **kw: Any
) -> StreamSupervisor:
    config = kw.pop("config", CONFIG)
    return StreamSupervisor(clients, streams, clock=time, config=config, sleep=time.sleep, **kw)


def test_trades_reconnect_with_seeded_backoff_and_backfill_by_id() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time, api_key="local-key")
    binance.trades = [trade(i, T0 + 100 * i) for i in range(1, 11)]
    binance.push("watch_trades", [trade(2, T0 + 200), trade(1, T0 + 100), trade(3, T0 + 300)], BTC)
    binance.push("watch_trades", ccxt.NetworkError("socket closed"), BTC)
    binance.push("watch_trades", [trade(9, T0 + 900), trade(10, T0 + 1000)], BTC)  # 4-8 missed
    binance.push("watch_trades", [trade(10, T0 + 1000), trade(11, T0 + 1100)], BTC)
    config = CONFIG.model_copy(update={"backfill_page_limit": 3})

    async def main() -> tuple[list[StreamItem], list[dict[str, Any]]]:
        sup = supervisor({"binance": binance}, [(BTC, "trades")], time, config=config)
        async with sup:
            time.now += 50
            items = await take(sup, 5)
        return items, sup.snapshot()

    items, health = run(main(), time)
    assert [ids(i) for i in items] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10], [11]]
    assert [i.backfilled for i in items if isinstance(i, TradesItem)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert all(i.exchange == "binance" and i.symbol == Symbol("BTC", "USDT") for i in items)
    # back-fill paged historicalTrades from the last id + 1
    pages = [c for c in binance.calls if c[0] == "fetch_trades"]
    assert [c[4] for c in pages] == [
        {"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": 4},
        {"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": 7},
        {"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": 10},
    ]
    # the one reconnect waited the seeded backoff
    assert time.sleeps == [Backoff.from_config(config, f"{BTC} trades").delay(1)]
    (h,) = health
    assert (h["exchange"], h["channel"], h["state"]) == ("binance", "trades", "stopped")
    assert (h["disconnects"], h["reconnects"], h["backfilled_rows"]) == (1, 1, 7)
    assert h["messages"] == 3
    assert h["lag_max_ms"] is not None
    assert binance.closed


def test_trades_backfill_without_key_uses_recent_trades_and_reports_shortfall() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)  # no API key: ccxt refuses historicalTrades
    binance.trades = [trade(i, T0 + i) for i in range(1, 21)]
    binance.push("watch_trades", [trade(1, T0 + 1)], BTC)
    binance.push("watch_trades", ccxt.RequestTimeout("ping timeout"), BTC)
    binance.push("watch_trades", [trade(20, T0 + 20)], BTC)
    config = CONFIG.model_copy(update={"backfill_page_limit": 5})

    async def main() -> list[StreamItem]:
        async with supervisor({"binance": binance}, [(BTC, "trades")], time, config=config) as sup:
            return await take(sup, 3)

    first, back, status = run(main(), time)
    assert ids(first) == [1]
    assert ids(back) == [16, 17, 18, 19, 20]  # the newest 5: 2-15 are gone
    assert isinstance(status, StatusItem)
    assert status.kind == "backfill_shortfall"
    assert "may be missing" in status.detail
    fetch = next(c for c in binance.calls if c[0] == "fetch_trades")
    assert fetch[4] == {"fetchTradesMethod": "publicGetTrades"}


def row(ts: int, close: float) -> list[float]:
    return [ts, close, close + 1, close - 1, close, 2.0]


def test_candles_close_once_and_backfill_from_the_last_candle_seen() -> None:
    time = FakeTime(M0)
    binance = FakeExchange("binance", time)
    m = 60_000
    binance.candles = [row(M0 + i * m, 10 + i) for i in range(5)]
    binance.push("watch_ohlcv", [row(M0, 9.5)], BTC, "1m")
    binance.push("watch_ohlcv", [row(M0, 10), row(M0 + m, 10.5)], BTC, "1m")
    binance.push("watch_ohlcv", ccxt.ExchangeNotAvailable("502"), BTC, "1m")
    binance.push("watch_ohlcv", [row(M0 + 4 * m, 14)], BTC, "1m")
    binance.push("watch_ohlcv", [row(M0 + 4 * m, 14), row(M0 + 5 * m, 15)], BTC, "1m")

    async def main() -> list[StreamItem]:
        async with supervisor({"binance": binance}, [(BTC, "ohlcv:1m")], time) as sup:
            return await take(sup, 9)

    items = run(main(), time)
    assert all(isinstance(i, CandleItem) for i in items)
    seen = [(i.open_time - M0) // m for i in items]  # type: ignore[union-attr]
    flags = [(i.closed, i.backfilled) for i in items]  # type: ignore[union-attr]
    closes = [float(i.candle.close[0]) for i in items]  # type: ignore[union-attr]
    assert list(zip(seen, flags, closes, strict=True)) == [
        (0, (False, False), 9.5),
        (0, (True, False), 10.0),  # closed when 1m's candle appeared
        (1, (False, False), 10.5),
        (1, (True, True), 11.0),  # REST's final values
        (2, (True, True), 12.0),
        (3, (True, True), 13.0),
        (4, (False, True), 14.0),  # REST's newest row is still forming
        (4, (True, False), 14.0),
        (5, (False, False), 15.0),
    ]
    fetch = next(c for c in binance.calls if c[0] == "fetch_ohlcv")
    assert fetch[1:4] == (BTC, "1m", M0 + m)  # since the last candle seen, inclusive


def test_a_socket_redialled_without_an_error_gets_its_closed_candles_from_rest() -> None:
    """ccxt redials a socket that closed while no watch waited on it, silently: the candle
    that closed meanwhile has only its last streamed (stale) values in ccxt's cache."""
    time = FakeTime(M0)
    binance = FakeExchange("binance", time)
    binance.clients = {"ws://x/stream/0": object()}  # type: ignore[attr-defined]
    m = 60_000
    binance.candles = [row(M0 + i * m, 10 + i) for i in range(3)]

    def redialled() -> list[list[float]]:
        binance.clients = {"ws://x/stream/0": object()}  # type: ignore[attr-defined]
        return [row(M0, 9.5), row(M0 + m, 11.0)]

    binance.push("watch_ohlcv", [row(M0, 9.5)], BTC, "1m")
    binance.push("watch_ohlcv", redialled, BTC, "1m")

    async def main() -> list[StreamItem]:
        async with supervisor({"binance": binance}, [(BTC, "ohlcv:1m")], time) as sup:
            return await take(sup, 3)

    items = run(main(), time)
    closed = [i for i in items if isinstance(i, CandleItem) and i.closed]
    first = next((i.open_time, float(i.candle.close[0]), i.backfilled) for i in closed)
    assert first == (M0, 10.0, True)  # REST's final close, not the stale 9.5
    assert sum(i.open_time == M0 for i in closed) == 1
    assert any(c[0] == "fetch_ohlcv" for c in binance.calls)


def test_book_gap_resyncs_at_once_and_is_counted() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    book = {"bids": [[100.0, 1.0]], "asks": [[101.0, 2.0]], "nonce": 7, "timestamp": T0 - 5}
    binance.push("watch_order_book", book, BTC)
    binance.push("watch_order_book", ccxt.ChecksumError("binance BTC/USDT: sequence gap"), BTC)
    binance.push("watch_order_book", {**book, "nonce": 9}, BTC)
    binance.push("watch_ticker", {"bid": 100.0, "ask": 101.0, "last": 100.5, "timestamp": T0}, BTC)

    async def main() -> tuple[list[StreamItem], list[dict[str, Any]]]:
        async with supervisor({"binance": binance}, [(BTC, "book"), (BTC, "ticker")], time) as sup:
            items = await take(sup, 3)
            return items, sup.snapshot()

    items, health = run(main(), time)
    books = [i for i in items if isinstance(i, BookItem)]
    assert [b.nonce for b in books] == [7, 9]
    assert books[0].time_ms == T0 - 5
    assert any(isinstance(i, TickerItem) and i.last == 100.5 for i in items)
    assert time.sleeps == []  # a gap is resynced at once, not backed off
    book_health = next(h for h in health if h["channel"] == "book")
    assert (book_health["gaps"], book_health["resyncs"], book_health["disconnects"]) == (1, 1, 0)
    assert book_health["lag_p50_ms"] == 5.0
    assert len(binance.subscribes("watch_order_book")) == 4  # 3 answered + 1 waiting


def test_rate_limit_honours_retry_after_before_any_request() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    binance.last_response_headers = {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "6001"}
    binance.push("watch_trades", ccxt.DDoSProtection("429 Too Many Requests"), BTC)
    binance.push("watch_trades", [trade(1, T0)], BTC)

    async def main() -> list[dict[str, Any]]:
        async with supervisor({"binance": binance}, [(BTC, "trades")], time) as sup:
            await take(sup, 1)
            return sup.snapshot()

    (h,) = run(main(), time)
    first, second, _waiting = binance.subscribes()
    assert second[-1] - first[-1] >= 7000
    assert 7.0 in time.sleeps
    assert h["rate_limited"] == 1


def test_resubscriptions_are_paced_per_exchange() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    symbols = [f"C{i}/USDT" for i in range(12)]
    config = CONFIG.model_copy(update={"resubscribe_per_s": 5})

    async def main() -> None:
        async with supervisor(
            {"binance": binance}, [(s, "trades") for s in symbols], time, config=config
        ):
            await until(lambda: len(binance.subscribes()) == 12)

    run(main(), time)
    stamps = sorted(c[-1] - T0 for c in binance.subscribes())
    assert stamps == [0] * 5 + [1000] * 5 + [2000] * 2


def test_back_pressure_waits_and_loses_nothing() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    for i in range(1, 7):
        binance.push("watch_trades", [trade(i, T0 + i)], BTC)
    config = CONFIG.model_copy(update={"queue_size": 2})

    async def main() -> tuple[list[int], int]:
        async with supervisor({"binance": binance}, [(BTC, "trades")], time, config=config) as sup:
            await until(lambda: sup.health.totals()["backpressure_waits"] > 0)
            assert sup.queue.qsize() == 2
            got = [i for item in await take(sup, 6) for i in ids(item)]
            return got, sup.health.totals()["backpressure_waits"]

    got, waits = run(main(), time)
    assert got == [1, 2, 3, 4, 5, 6]
    assert waits >= 1


def test_refused_stream_fails_alone() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    binance.push(
        "watch_trades", ccxt.BadSymbol("binance does not have market symbol XYZ/USDT"), "XYZ/USDT"
    )
    binance.push("watch_trades", [trade(1, T0)], BTC)

    async def main() -> tuple[list[StreamItem], list[dict[str, Any]]]:
        async with supervisor(
            {"binance": binance}, [(BTC, "trades"), ("XYZ/USDT", "trades")], time
        ) as sup:
            items = await take(sup, 2)
            return items, sup.snapshot()

    items, health = run(main(), time)
    status = next(i for i in items if isinstance(i, StatusItem))
    assert (status.kind, str(status.symbol), str(status.channel)) == (
        "failed",
        "XYZ/USDT",
        "trades",
    )
    assert "BadSymbol" in status.detail
    states = {h["symbol"]: h["state"] for h in health}
    assert states == {"BTC/USDT": "live", "XYZ/USDT": "failed"}
    assert [c[1] for c in binance.subscribes()].count("XYZ/USDT") == 1  # refused: no retry


def test_stop_cancels_and_closes_every_client() -> None:
    time = FakeTime(T0)
    clients = {"binance": FakeExchange("binance", time), "mexc": FakeExchange("mexc", time)}

    async def main() -> StreamSupervisor:
        sup = supervisor(clients, [(BTC, "trades"), (BTC, "book")], time)
        await sup.start()
        await until(lambda: len(clients["binance"].subscribes()) == 2)
        assert sup.running
        await sup.stop()
        return sup

    sup = run(main(), time)
    assert not sup.running
    assert all(c.closed for c in clients.values())
    assert clients["mexc"].calls == []  # the fallback is not touched while binance is up


def test_supervisor_refuses_what_it_cannot_run() -> None:
    time = FakeTime(T0)
    with pytest.raises(ConfigError, match="no streams"):
        supervisor({"binance": FakeExchange("binance", time)}, [], time)
    with pytest.raises(ValueError, match="unknown channel"):
        supervisor({"binance": FakeExchange("binance", time)}, [(BTC, "candles")], time)
