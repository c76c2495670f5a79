"""The local Binance/MEXC server speaks the real wire format, with Binance's semantics."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pivotal.config.models import ExchangeConfig
from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import OperationalError
from pivotal.data.exchanges import create_client
from pivotal.testing.binance_server import BINANCE_SYMBOL_TEMPLATE, BinanceServer, Fault

SHARED = Path(
    os.environ.get("PIVOTAL_SHARED_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
FIXTURES = SHARED / "messages" / "binance-fixtures" / "http_responses"
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not FIXTURES.is_dir(),
        reason=f"real Binance fixtures not found at {FIXTURES} (set PIVOTAL_SHARED_DATA)",
    ),
]
HOUR = 3_600_000


@pytest.fixture(scope="module")
def candles() -> Candles:
    """The first 1,200 real Binance BTC/USDT 1h candles (from the 2017 listing)."""
    table = pq.read_table(
        SHARED / "ohlcv" / "binance-spot" / "1h" / "BTC_USDT-1h.parquet",
        columns=list(CANDLE_COLUMNS),
    )
    return Candles.from_arrow(table.slice(0, 1200))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def get(url: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read()), dict(reply.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def test_exchange_info_has_the_real_entry_shape(candles: Candles) -> None:
    real = fixture("http_spot_market_exchange_info.json")
    with BinanceServer({("BTCUSDT", "1h"): candles, ("ETHUSDT", "1h"): candles}) as server:
        status, info, _ = get(f"{server.url}/api/v3/exchangeInfo")
        _, one, _ = get(f"{server.url}/api/v3/exchangeInfo?symbol=ETHUSDT")
    assert status == 200 and set(info) == set(real)
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    real_btc = next(s for s in real["symbols"] if s["symbol"] == "BTCUSDT")
    assert info["symbols"][0] == real_btc == BINANCE_SYMBOL_TEMPLATE
    assert one["symbols"][0]["baseAsset"] == "ETH"


def test_ccxt_loads_markets_from_a_real_fixture_template(candles: Candles) -> None:
    real = fixture("http_spot_market_exchange_info.json")["symbols"][1]  # ETHUSDT
    with BinanceServer({("BTCUSDT", "1h"): candles}, symbol_template=real) as server:
        client = create_client("binance", ExchangeConfig(rest_url=server.url, rate_limit_ms=1))
        markets = client.load_markets()
        rows = client.fetch_ohlcv("BTC/USDT", "1h", int(candles.timestamp[0]), 3)
        assert [r.path for r in server.requests] == ["/api/v3/exchangeInfo", "/api/v3/klines"]
    assert list(markets) == ["BTC/USDT"] and markets["BTC/USDT"]["spot"]
    assert rows[0] == [
        int(candles.timestamp[0]),
        *(float(getattr(candles, c)[0]) for c in CANDLE_COLUMNS[1:]),
    ]


def test_klines_rows_match_the_real_wire_format(candles: Candles) -> None:
    real = fixture("http_spot_market_klines.json")
    with BinanceServer({("BTCUSDT", "1h"): candles}) as server:
        _, rows, headers = get(f"{server.url}/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=3")
    assert headers["Content-Type"].startswith("application/json")
    assert [type(v) for v in rows[0]] == [type(v) for v in real[0]]
    last = len(candles) - 1
    assert rows[-1][0] == candles.timestamp[last]  # no startTime: the most recent candles
    assert rows[-1][6] == candles.timestamp[last] + HOUR - 1
    assert float(rows[-1][4]) == candles.close[last]


def test_klines_follow_binance_semantics(candles: Candles) -> None:
    ts = candles.timestamp.tolist()
    with (
        BinanceServer({("BTCUSDT", "1h"): candles}) as binance,
        BinanceServer({("BTCUSDT", "1h"): candles}, flavor="mexc") as mexc,
    ):

        def opens(server: BinanceServer, query: str) -> list[int]:
            status, rows, _ = get(f"{server.url}/api/v3/klines?symbol=BTCUSDT&{query}")
            assert status == 200, rows
            return [row[0] for row in rows]

        assert opens(binance, f"interval=1h&startTime={ts[0]}") == ts[:500]  # default limit
        assert opens(binance, f"interval=1h&startTime={ts[0]}&limit=5000") == ts[:1000]
        assert opens(binance, f"interval=1h&startTime={ts[3] - 1}&limit=2") == ts[3:5]
        assert opens(binance, f"interval=1h&startTime={ts[3]}&endTime={ts[6]}") == ts[3:7]
        assert opens(binance, f"interval=1h&endTime={ts[6]}&limit=2") == ts[5:7]
        assert opens(mexc, f"interval=60m&startTime={ts[3]}&endTime={ts[6]}") == ts[3:6]
        assert opens(mexc, f"interval=60m&startTime={ts[0]}&limit=1000") == ts[:500]
        assert get(f"{mexc.url}/api/v3/klines?symbol=BTCUSDT&interval=1h")[1]["code"] == -1120


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("symbol=XRPUSDT&interval=1h", -1121),
        ("interval=1h", -1102),
        ("symbol=BTCUSDT&interval=7m", -1120),
        ("symbol=BTCUSDT&interval=1h&startTime=10&endTime=5", -1023),
        ("symbol=BTCUSDT&interval=1h&limit=0", -1130),
        ("symbol=BTCUSDT&interval=1h&startTime=yesterday", -1100),
    ],
)
def test_errors_use_binance_bodies(candles: Candles, query: str, code: int) -> None:
    with BinanceServer({("BTCUSDT", "1h"): candles}) as server:
        status, body, _ = get(f"{server.url}/api/v3/klines?{query}")
    assert status == 400 and body["code"] == code and body["msg"]
    if code == -1121:
        assert body == {"code": -1121, "msg": "Invalid symbol."}


def test_faults_apply_in_order_and_requests_are_recorded(candles: Candles) -> None:
    clock = ReplayClock(1_700_000_000_000)
    with BinanceServer({("BTCUSDT", "1h"): candles}, clock=clock) as server:
        server.inject(Fault.http_error(429, retry_after_s=7, after=1), Fault.drop())
        klines = f"{server.url}/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1"
        assert get(f"{server.url}/api/v3/time")[1] == {"serverTime": 1_700_000_000_000}
        assert get(klines)[0] == 200  # let through (after=1)
        status, body, headers = get(klines)
        assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "7")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(klines, timeout=5)
        assert get(klines)[0] == 200
        outcomes = [(r.path, r.outcome) for r in server.requests]
        url = server.url
    assert outcomes == [
        ("/api/v3/time", "200"),
        ("/api/v3/klines", "200"),
        ("/api/v3/klines", "429"),
        ("/api/v3/klines", "dropped"),
        ("/api/v3/klines", "200"),
    ]
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_redirected_client_cannot_leave_rest_url() -> None:
    for exchange in ("binance", "mexc"):
        client = create_client(exchange, ExchangeConfig(rest_url="http://127.0.0.1:9"))

        def urls(tree: Any) -> list[str]:
            return [u for v in tree.values() for u in urls(v)] if isinstance(tree, dict) else [tree]

        assert all(u.startswith("http://127.0.0.1:9") for u in urls(client.urls["api"]))
        with pytest.raises(OperationalError, match=r"refused a request to api\.binance\.com"):
            client.fetch("https://api.binance.com/api/v3/ping")
