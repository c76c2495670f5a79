"""Stream health numbers, the stream client factory (URLs, spot only, the redirect guard) and
the configuration it reads."""

from __future__ import annotations

import asyncio
import math

import pytest
from pydantic import ValidationError

from pivotal.config.models import ExchangeConfig, PivotalConfig, StreamsConfig
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.venues.clients import create_stream_client
from pivotal.venues.health import RATE_TAU_S, HealthBook
from pivotal.venues.stream_events import Channel
from venues.fake_ccxt import FakeTime

BTC = Symbol("BTC", "USDT")
LOCAL = ExchangeConfig(rest_url="http://127.0.0.1:18080/", ws_url="ws://127.0.0.1:18081")


def test_rate_lag_and_snapshot() -> None:
    time = FakeTime(0)
    book = HealthBook(time)
    h = book.get("binance", BTC, Channel.parse("trades"))
    assert book.get("binance", BTC, Channel.parse("trades")) is h
    for i in range(100):  # 10 messages per second for 10 s, each 20 ms behind the exchange
        h.record_message(i * 100, event_ms=i * 100 - 20)
    time.now = 9_900
    # a decaying count: 10/s held for one time constant reaches 1 - 1/e of 10/s
    expected = sum(math.exp(-(9_900 - i * 100) / 1000 / RATE_TAU_S) for i in range(100))
    assert h.rate(9_900) == pytest.approx(expected / RATE_TAU_S)
    assert 6.0 < h.rate(9_900) < 6.7
    assert h.rate(9_900 + 60_000) < 0.03  # quiet for a minute: the rate decays
    h.record_message(10_000, event_ms=9_000)
    assert h.lag_ms() == (20.0, 1_000)
    book.get("mexc", BTC, Channel.parse("ohlcv:1m")).gaps += 2
    snap = book.snapshot()
    assert [(s["exchange"], s["channel"]) for s in snap] == [
        ("mexc", "ohlcv:1m"),
        ("binance", "trades"),
    ]
    assert snap[1]["messages"] == 101
    assert snap[1]["lag_p50_ms"] == 20.0
    assert snap[0]["lag_p50_ms"] is None
    assert book.totals()["gaps"] == 2


def test_stream_clients_point_at_the_local_exchange() -> None:
    async def main() -> None:
        binance = create_stream_client("binance", LOCAL)
        bybit = create_stream_client("BYBIT", LOCAL)
        mexc = create_stream_client("mexc", LOCAL)
        try:
            api = binance.urls["api"]
            assert api["public"] == "http://127.0.0.1:18080/api/v3"
            assert api["v1"] == "http://127.0.0.1:18080/api/v1"
            assert api["ws"]["spot"] == "ws://127.0.0.1:18081/stream"  # spot recognised by /stream
            assert binance.options["fetchMarkets"]["types"] == ["spot"]
            assert binance.has["fetchCurrencies"] is False
            assert binance.enableRateLimit
            assert bybit.urls["api"]["public"] == "http://127.0.0.1:18080"
            assert (
                bybit.urls["api"]["ws"]["public"]["spot"] == "ws://127.0.0.1:18081/v5/public/spot"
            )
            assert bybit.options["fetchMarkets"] == {"types": ["spot"]}
            assert mexc.urls["api"]["spot"]["public"] == "http://127.0.0.1:18080"
            assert mexc.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:18081/ws"
            assert mexc.fetch_markets == mexc.fetch_spot_markets
            # a redirected client never talks to another host
            with pytest.raises(OperationalError, match="refused a request"):
                await binance.fetch("https://api.binance.com/api/v3/time")
            with pytest.raises(OperationalError, match="refused a socket"):
                binance.client("wss://stream.binance.com:9443/ws")
        finally:
            for client in (binance, bybit, mexc):
                await client.close()

    asyncio.run(main())


def test_stream_client_settings() -> None:
    async def main() -> None:
        keyed = create_stream_client(
            "binance", ExchangeConfig(api_key="k", secret="s", rate_limit_ms=200, timeout_s=5)
        )
        try:
            assert keyed.apiKey == "k"  # for historicalTrades
            assert not keyed.secret  # nothing here signs
            assert keyed.rateLimit == 200
            assert keyed.timeout == 5000
            assert keyed.urls["api"]["public"] == "https://api.binance.com/api/v3"  # untouched
        finally:
            await keyed.close()

    asyncio.run(main())
    with pytest.raises(ConfigError, match="supported: binance, bybit, mexc"):
        create_stream_client("kraken")


def test_streams_and_ws_url_config() -> None:
    assert ExchangeConfig(ws_url="wss://x.test/").ws_url == "wss://x.test"
    with pytest.raises(ValidationError, match="ws:// or wss://"):
        ExchangeConfig(ws_url="http://127.0.0.1:1")
    config = PivotalConfig()
    assert config.streams.failover == ["binance", "mexc"]
    assert StreamsConfig(failover=[" MEXC", "bybit"]).failover == ["mexc", "bybit"]
    for bad in ({"failover": []}, {"failover": ["a", "a"]}, {"jitter": 1.5}, {"queue_size": 0}):
        with pytest.raises(ValidationError):
            StreamsConfig(**bad)
    with pytest.raises(ValidationError):
        StreamsConfig(unknown=1)  # type: ignore[call-arg]
