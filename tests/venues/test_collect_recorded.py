"""The recorded real Binance messages, replayed by the local exchange and recorded by the
collector through real ccxt.pro clients over sockets, give what the Stage 1–2 importers give
from the same capture: the same trades, the same 1s candles, and books whose best bid/ask
equal the recorded bookTicker at the same update id."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pivotal.config.models import ExchangeConfig
from pivotal.core.clock import WallClock
from pivotal.core.trades import Trades
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.localexchange.sources import default_message_files, flows_from_messages
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.venues.clients import create_stream_client
from pivotal.venues.collector import CollectConfig, Collector
from pivotal.venues.stream_events import BookItem

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
SPAN = "20240808T2354-20240809T0005"
SPEED = 30.0  # market ms per wall ms


def _recorded_trades(base: str) -> Trades:
    assert DATA is not None
    path = DATA / "trades" / "binance-spot" / f"{base}_USDT-trades-{SPAN}.parquet"
    return Trades.from_frame(pd.read_parquet(path))


def _book_ticker(base: str) -> dict[int, tuple[float, float]]:
    assert DATA is not None
    path = DATA / "orderbook" / "binance-spot" / f"{base}_USDT-bookticker-{SPAN}.parquet"
    frame = pd.read_parquet(path)
    return dict(
        zip(
            frame.update_id.tolist(),
            zip(frame.bid_price.tolist(), frame.ask_price.tolist(), strict=True),
            strict=True,
        )
    )


async def _collect(urls: Any, data_dir: Path, exchange: LocalExchangeThread) -> tuple[Any, list]:
    rest = urls["binance"].rest
    client = create_stream_client(
        "binance", ExchangeConfig(rest_url=rest, ws_url="ws" + rest[len("http") :])
    )
    books: list[tuple[str, int, float, float]] = []
    with open_store(data_dir) as store:
        collector = Collector(
            store,
            {"binance": client},
            CollectConfig(exchanges=("binance",), timeframes=("1s", "1m"), close_lag_ms=None),
            clock=WallClock(),
        )
        handle = collector.handle

        def spy(item: Any) -> None:
            if isinstance(item, BookItem) and item.nonce is not None and len(item.bids):
                books.append((str(item.symbol), item.nonce, item.best_bid, item.best_ask))
            handle(item)

        collector.handle = spy  # type: ignore[method-assign]
        stop = asyncio.Event()

        async def until_replayed() -> None:
            # the market moves only once every stream is subscribed (the capture's first
            # trade would otherwise go out before the client listens), then at SPEED
            hub = exchange.exchange.sites["binance"].hub
            while len([s for s in hub.streams() if s.endswith("@trade")]) < 2:
                await asyncio.sleep(0.05)
            market = exchange.now_ms()
            while not exchange.exchange.finished:
                await asyncio.sleep(0.05)
                market += int(50 * SPEED)
                await asyncio.to_thread(exchange.advance_to, market)
            await asyncio.sleep(1.5)  # the last messages reach the client
            stop.set()

        watcher = asyncio.ensure_future(until_replayed())
        report = await collector.run(stop=stop, duration_s=240)
        watcher.cancel()
    return report, books


def test_recorded_messages_served_and_collected_equal_the_importers(tmp_path: Path) -> None:
    flows = flows_from_messages(default_message_files(DATA))
    config = ServeConfig(mode="manual")
    with LocalExchangeThread(flows, config) as exchange:
        report, books = asyncio.run(_collect(exchange.urls, tmp_path, exchange))
    # no fault is injected: no socket drops (a trade-id gap that ccxt's cache caused is
    # back-filled and counted as a gap; the data below must be whole either way)
    assert report.totals["disconnects"] == 0 and report.totals["reconnects"] == 0

    with open_store(tmp_path, read_only=True) as store:
        for base in ("BTC", "ETH"):
            symbol = f"{base}/USDT"
            recorded = _recorded_trades(base)
            stored = store.read_trades("binance", symbol)
            # every trade of the capture, once, in order, with the same values; ccxt hands a
            # trade to its caller only with the next message, so the capture's last trade
            # may stay in ccxt's cache when the stream ends
            n = len(stored)
            assert len(recorded) - 1 <= n <= len(recorded)
            np.testing.assert_array_equal(stored.trade_id, recorded.trade_id[:n])
            for name in ("timestamp", "price", "quantity", "is_buyer_maker"):
                np.testing.assert_array_equal(getattr(stored, name), getattr(recorded, name)[:n])

            seconds = store.read_candles(SeriesKey("binance", symbol, "1s"))
            batch = aggregate_trades(recorded, "1s").candles
            # the open (last) second is never stored: it was not finished
            assert len(seconds) == len(batch) - 1 > 600
            for name in ("timestamp", "open", "high", "low", "close", "volume"):
                np.testing.assert_array_equal(getattr(seconds, name), getattr(batch, name)[:-1])

            ticker = _book_ticker(base)
            seen = [(u, b, a) for s, u, b, a in books if s == symbol and u in ticker]
            assert len(seen) > 50, f"only {len(seen)} book states of {symbol} had a ticker"
            wrong = [(u, b, a, ticker[u]) for u, b, a in seen if (b, a) != ticker[u]]
            assert not wrong, f"{len(wrong)} book states differ from the bookTicker: {wrong[:3]}"
