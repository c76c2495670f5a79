"""Trading on the local exchange's Binance site with a real ccxt.pro client over 127.0.0.1:
signed REST orders, the WebSocket API user data stream, the error mapping, trading faults.

The market is a synthetic flow of 1s candles (price 100 → 98 over 20 s, then up to 102 by
60 s) stepped by hand (``mode="manual"``); the client's clock is the market clock (its
``nonce``), as a client synced to ``/api/v3/time`` would have it at real-time speed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import numpy as np
import pytest

from helpers.binance_kit import run, small_flow, until, write_recording
from pivotal.core.candles import Candles
from pivotal.localexchange.binance_trade import sign
from pivotal.localexchange.config import LOCAL_API_KEY, LOCAL_API_SECRET, ServeConfig
from pivotal.localexchange.faults import FaultConfig, FaultInjector, FaultLog
from pivotal.localexchange.flow import SymbolFlow
from pivotal.localexchange.server import LocalExchange
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.venues.clients import redirect_rest, redirect_ws

pytestmark = pytest.mark.network

T0 = 1_700_000_000_000
BTC = "BTC/USDT"


def falling_then_rising() -> SymbolFlow:
    """60 one-second candles: 100 → 98 by 20 s, then up to 102 by 60 s."""
    path = [100 - 0.1 * i for i in range(21)] + [98 + 0.1 * i for i in range(1, 41)]
    opens, closes = np.array(path[:-1]), np.array(path[1:])
    candles = Candles(
        np.arange(60, dtype=np.int64) * 1000 + T0,
        opens,
        np.maximum(opens, closes),
        np.minimum(opens, closes),
        closes,
        np.full(60, 20.0),
    )
    return synthetic_flow(candles, "1s", BTC, seed=3, trades_per_candle=8)


class Rig:
    """A local exchange (manual pacing) in this loop and ccxt.pro clients pointed at it."""

    def __init__(self, **config: Any) -> None:
        faults = config.pop("faults", FaultConfig(weight_per_minute=None))
        self.ex = LocalExchange(
            [falling_then_rising()], ServeConfig(mode="manual", faults=faults, **config)
        )
        self.clients: list[Any] = []

    async def __aenter__(self) -> Rig:
        await self.ex.start()
        await self.ex.advance_to(T0 + 999)
        self.urls = self.ex.urls()["binance"]
        self.client = await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.close()
        await self.ex.stop()

    async def connect(
        self, *, key: str = LOCAL_API_KEY, secret: str = LOCAL_API_SECRET, skew_ms: int = 0
    ) -> Any:
        client = ccxtpro.binance({"apiKey": key, "secret": secret, "enableRateLimit": False})
        client.options["fetchMarkets"] = {"types": ["spot"], "loadAllOptions": False}
        client.options["fetchCurrencies"] = False
        client.has["fetchCurrencies"] = False
        client.options["fetchMargins"] = False
        client.options["defaultType"] = "spot"
        redirect_rest(client, self.urls.rest)
        redirect_ws(client, self.urls.ws)
        client.nonce = lambda: self.ex.now_ms() + skew_ms
        self.clients.append(client)
        await client.load_markets()
        return client

    async def advance(self, to_s: float) -> None:
        await self.ex.advance_to(T0 + int(to_s * 1000))
        await asyncio.sleep(0.02)  # let the sockets flush

    def record(self) -> dict[str, Any]:
        return self.ex.record("binance")

    def orders_with(self, client_id: str) -> list[dict[str, Any]]:
        return [o for o in self.record()["orders"] if o["clientOrderId"] == client_id]


def in_rig(body: Callable[[Rig], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with Rig(**config) as rig:
            await body(rig)

    run(main(), 30)


def test_market_limit_and_stop_orders_by_client_id() -> None:
    async def body(rig: Rig) -> None:
        c = rig.client
        market = await c.create_order(BTC, "market", "buy", 0.2, params={"clientOrderId": "m1"})
        assert (market["clientOrderId"], market["status"], market["filled"]) == (
            "m1",
            "closed",
            0.2,
        )
        assert market["trades"] and market["fee"]["currency"] == "BTC"
        limit = await c.create_order(BTC, "limit", "buy", 0.1, 98.5, params={"clientOrderId": "l1"})
        stop = await c.create_order(
            BTC, "market", "sell", 0.1, params={"clientOrderId": "s1", "stopLossPrice": 99.0}
        )
        assert limit["status"] == "open" and stop["status"] == "open"
        opened = await c.fetch_open_orders(BTC)
        assert sorted(o["clientOrderId"] for o in opened) == ["l1", "s1"]
        balance = await c.fetch_balance()
        assert balance["USDT"]["used"] == pytest.approx(9.85)  # 0.1 x 98.5 locked
        assert balance["BTC"]["used"] == pytest.approx(0.1)  # the stop's quantity
        await rig.advance(25)  # the price fell through 99 (stop) and 98.5 (limit)
        got = await c.fetch_order(None, BTC, params={"origClientOrderId": "l1"})
        assert got["id"] == limit["id"] and got["status"] == "closed" and got["price"] == 98.5
        sold = await c.fetch_order(None, BTC, params={"origClientOrderId": "s1"})
        assert sold["status"] == "closed" and sold["average"] < 99.0
        mine = await c.fetch_my_trades(BTC)
        makers = [t for t in mine if t["order"] == limit["id"]]
        assert makers and all(t["takerOrMaker"] == "maker" and t["price"] == 98.5 for t in makers)
        record = rig.record()
        assert [o["clientOrderId"] for o in record["orders"]] == ["m1", "l1", "s1"]
        assert [t["id"] for t in mine] == [str(f["id"]) for f in record["fills"]]
        balance = await c.fetch_balance()
        for asset in ("USDT", "BTC"):
            held = record["balances"][asset]
            assert balance[asset]["total"] == pytest.approx(
                float(Decimal(held["free"]) + Decimal(held["locked"]))
            )

    in_rig(body)


def test_cancel_cancel_all_and_the_error_mapping() -> None:
    async def body(rig: Rig) -> None:
        c = rig.client
        await c.create_order(BTC, "limit", "buy", 0.1, 95.0, params={"clientOrderId": "a"})
        cancelled = await c.cancel_order(None, BTC, params={"origClientOrderId": "a"})
        assert cancelled["status"] == "canceled"
        with pytest.raises(ccxt.OrderNotFound, match="-2011"):
            await c.cancel_order(None, BTC, params={"origClientOrderId": "a"})
        with pytest.raises(ccxt.OrderNotFound, match="-2013"):
            await c.fetch_order(None, BTC, params={"origClientOrderId": "never"})
        for cid, price in (("b", 95.0), ("c", 94.0)):
            await c.create_order(BTC, "limit", "buy", 0.1, price, params={"clientOrderId": cid})
        with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
            await c.create_order(BTC, "limit", "buy", 0.1, 93.0, params={"clientOrderId": "b"})
        assert len(await c.cancel_all_orders(BTC)) == 2
        with pytest.raises(ccxt.OrderNotFound, match="-2011"):
            await c.cancel_all_orders(BTC)  # Binance: nothing open is "Unknown order sent."
        with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
            await c.create_order(BTC, "limit", "buy", 9500, 1.0)  # LOT_SIZE maxQty 9000
        with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
            await c.create_order(BTC, "limit", "buy", 0.01, 95.0)  # 0.95 USDT < 5
        with pytest.raises(ccxt.InsufficientFunds):
            await c.create_order(BTC, "limit", "buy", 2000, 95.0)
        with pytest.raises(ccxt.InsufficientFunds):
            await c.create_order(BTC, "market", "sell", 1.0)
        with pytest.raises(ccxt.OrderImmediatelyFillable):  # LIMIT_MAKER through the ask
            await c.create_order(BTC, "limit", "buy", 0.1, 101.0, params={"postOnly": True})
        for skew_ms in (5_000, -20_000):  # ahead of the server, then behind the recvWindow
            late = await rig.connect(skew_ms=skew_ms)
            with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                await late.fetch_balance()
        wrong = await rig.connect(secret="not-the-secret")
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await wrong.fetch_balance()
        stranger = await rig.connect(key="someone-else")
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await stranger.fetch_balance()
        assert [o["status"] for o in rig.record()["orders"]] == ["CANCELED"] * 3

    in_rig(body)


async def _signed(
    rig: Rig, method: str, path: str, query: dict[str, Any], body: dict[str, Any] | None = None
) -> tuple[int, Any, Any]:
    """A hand-signed request: the signature covers the raw query then the raw body."""
    q = urlencode({**query, "timestamp": rig.ex.now_ms()})
    b = urlencode(body or {})
    url = f"{rig.urls.rest}{path}?{q}&signature={sign(LOCAL_API_SECRET, q + b)}"
    headers = {"X-MBX-APIKEY": LOCAL_API_KEY}
    if b:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, data=b or None, headers=headers) as reply,
    ):
        return reply.status, await reply.json(), reply.headers


def test_raw_signature_headers_and_response_types() -> None:
    async def body(rig: Rig) -> None:
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
        status, reply, headers = await _signed(
            rig, "POST", "/api/v3/order", order,
            {"quantity": "0.1", "price": "95", "newClientOrderId": "raw",
             "newOrderRespType": "ACK"},
        )  # fmt: skip
        assert status == 200, reply
        assert set(reply) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
        assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and headers["X-MBX-ORDER-COUNT-1D"] == "1"
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 1
        status, reply, _ = await _signed(
            rig, "POST", "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "50"},
        )  # fmt: skip
        assert status == 200 and reply["status"] == "FILLED" and reply["fills"]  # FULL default
        assert Decimal(reply["cummulativeQuoteQty"]) <= 50
        status, reply, _ = await _signed(rig, "POST", "/api/v3/order", {**order, "quantity": "1"})
        assert (status, reply["code"]) == (400, -1102) and "'price'" in reply["msg"]
        status, reply, _ = await _signed(rig, "GET", "/api/v3/order", {"symbol": "BTCUSDT"})
        assert (status, reply["code"]) == (400, -1102)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{rig.urls.rest}/api/v3/account?timestamp=1") as bare:
                assert bare.status == 401 and (await bare.json())["code"] == -2014
            async with http.get(f"{rig.urls.rest}/_pivotal/record") as plain:
                record = await plain.json()
        assert record["orders"][0]["clientOrderId"] == "raw"
        assert record["balances"]["USDT"]["locked"] == "9.50000000"

    in_rig(body)


def test_ws_api_subscription_is_signed_like_binance() -> None:
    async def body(rig: Rig) -> None:
        def request(method: str, secret: str = LOCAL_API_SECRET, **extra: Any) -> dict[str, Any]:
            params: dict[str, Any] = {"apiKey": LOCAL_API_KEY, "timestamp": rig.ex.now_ms(),
                                      **extra}  # fmt: skip
            payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
            return {"id": method, "method": method,
                    "params": {**params, "signature": sign(secret, payload)}}  # fmt: skip

        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{rig.urls.ws}/ws-api/v3") as ws,
        ):
            await ws.send_json(request("userDataStream.subscribe.signature", "wrong"))
            bad = await ws.receive_json(timeout=5)
            assert (bad["status"], bad["error"]["code"]) == (400, -1022)
            for _ in range(2):
                await ws.send_json(request("userDataStream.subscribe.signature"))
            ids = [(await ws.receive_json(timeout=5))["result"]["subscriptionId"] for _ in "ab"]
            assert ids == [0, 1]
            await ws.send_json({"id": 7, "method": "userDataStream.unsubscribe",
                                "params": {"subscriptionId": 0}})  # fmt: skip
            assert (await ws.receive_json(timeout=5))["status"] == 200
            await rig.client.create_order(BTC, "limit", "buy", 0.1, 95.0)
            event = await ws.receive_json(timeout=5)
            assert event["subscriptionId"] == 1 and event["event"]["e"] == "executionReport"
            report = event["event"]
            assert (report["x"], report["X"], report["p"], report["C"]) == (
                "NEW",
                "NEW",
                "95.00000000",
                "",
            )
            position = (await ws.receive_json(timeout=5))["event"]
            assert position["e"] == "outboundAccountPosition"
            assert position["B"] == [{"a": "USDT", "f": "99990.50000000", "l": "9.50000000"}]

    in_rig(body)


def test_watch_orders_my_trades_and_balance_get_the_fills() -> None:
    async def body(rig: Rig) -> None:
        c = rig.client
        orders = asyncio.ensure_future(c.watch_orders(BTC))
        await until(lambda: bool(rig.ex.sites["binance"].hub.streams()))  # subscribed
        await c.create_order(BTC, "limit", "buy", 0.2, 99.5, params={"clientOrderId": "w1"})
        first = await asyncio.wait_for(orders, 5)
        assert first[-1]["clientOrderId"] == "w1" and first[-1]["status"] == "open"
        trades = asyncio.ensure_future(c.watch_my_trades(BTC))
        balance = asyncio.ensure_future(c.watch_balance())
        await asyncio.sleep(0.05)
        await rig.advance(8)  # prints below 99.5 fill the bid
        got = await asyncio.wait_for(trades, 5)
        while sum(t["amount"] for t in got) < 0.2 - 1e-12:  # a fill per print that reached it
            got += await asyncio.wait_for(c.watch_my_trades(BTC), 5)
        assert {t["order"] for t in got} == {first[-1]["id"]}
        assert all(t["takerOrMaker"] == "maker" and t["price"] == 99.5 for t in got)
        assert (await asyncio.wait_for(balance, 5))["BTC"]["free"] > 0
        assert [t["id"] for t in got] == [str(f["id"]) for f in rig.record()["fills"]]
        final = await c.fetch_order(None, BTC, params={"origClientOrderId": "w1"})
        assert final["status"] == "closed" and final["filled"] == 0.2

    in_rig(body)


def test_fills_while_the_venue_is_unreachable() -> None:
    async def body(rig: Rig) -> None:
        c = rig.client
        await c.create_order(BTC, "limit", "buy", 0.1, 99.0, params={"clientOrderId": "down"})
        await rig.ex.pause("binance")
        await rig.advance(15)  # nobody connected: the engine still matches
        await rig.ex.resume("binance")
        got = await c.fetch_order(None, BTC, params={"origClientOrderId": "down"})
        assert got["status"] == "closed"

    in_rig(body)


def test_trading_faults_each_once() -> None:
    async def body(rig: Rig) -> None:
        c = rig.client
        log = rig.ex.fault_log

        async def place(cid: str) -> Any:
            return await c.create_order(BTC, "limit", "buy", 0.1, 95.0,
                                        params={"clientOrderId": cid})  # fmt: skip

        await rig.ex.inject("order_drop_reply", venue="binance")
        with pytest.raises(ccxt.NetworkError):
            await place("drop")
        assert len(rig.orders_with("drop")) == 1  # accepted exactly once
        await rig.ex.inject("order_unknown_1007")
        with pytest.raises(ccxt.RequestTimeout, match="-1007"):
            await place("unknown")
        assert rig.orders_with("unknown")[0]["status"] == "NEW"
        await rig.ex.inject("order_5xx")
        with pytest.raises(ccxt.OperationFailed, match="-1001"):  # a failure: safe to resend
            await place("refused")
        assert rig.orders_with("refused") == []  # 503 before acting
        await rig.ex.inject("order_5xx", after_accept=True)
        with pytest.raises(ccxt.OperationFailed, match="-1000"):  # status unknown
            await place("acted")
        assert len(rig.orders_with("acted")) == 1
        await rig.ex.inject("order_delay_reply", seconds=0.3, count=1)
        started = time.monotonic()
        assert (await place("slow"))["status"] == "open"
        assert time.monotonic() - started >= 0.3
        assert (await place("fast"))["clientOrderId"] == "fast"  # count=1: only one delayed
        watch = asyncio.ensure_future(c.watch_orders(BTC))
        await until(lambda: bool(rig.ex.sites["binance"].hub.streams()))
        assert await rig.ex.inject("user_stream_drop") == 1
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(watch, 5)
        again = asyncio.ensure_future(c.watch_orders(BTC))  # resubscribes on a new socket
        await until(lambda: bool(rig.ex.sites["binance"].hub.streams()))
        await place("after-drop")
        assert (await asyncio.wait_for(again, 5))[-1]["clientOrderId"] == "after-drop"
        kinds = ("order_drop_reply", "order_unknown_1007", "order_5xx", "order_delay_reply",
                 "user_stream_drop")  # fmt: skip
        assert {k: log.count(k) for k in kinds} == dict.fromkeys(kinds, 1) | {"order_5xx": 2}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{rig.urls.rest}/_pivotal/faults") as reply,
        ):
            counts = (await reply.json())["counts"]
        assert counts["order_5xx"] == 2 and counts["user_stream_drop"] == 1

    in_rig(body)


def test_configured_balances_key_and_fee() -> None:
    async def body(rig: Rig) -> None:
        balance = await rig.client.fetch_balance()
        assert balance["total"]["USDT"] == 500 and balance["total"]["BTC"] == 1
        order = await rig.client.create_order(BTC, "market", "sell", 0.5)
        fee = order["fee"]
        assert fee["currency"] == "USDT"
        assert fee["cost"] == pytest.approx(order["cost"] * 0.002, abs=1e-8)
        fees = await rig.client.fetch_trading_fees()  # ccxt asks /sapi/v1/asset/tradeFee
        assert fees[BTC]["maker"] == fees[BTC]["taker"] == 0.002

    in_rig(
        body,
        accounts={"binance": {"USDT": 500.0, "BTC": 1.0}},
        fee_rate=0.002,
    )


def test_cli_balances_and_where_the_key_pair_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pivotal.apps.cli.main import app

    recording = write_recording(tmp_path / "btcusdt_20231114.gz", small_flow(seconds=5))
    runner = CliRunner()
    args = ["exchange", "serve", "--messages", str(recording), "--duration", "0.1"]
    monkeypatch.delenv("PIVOTAL_LOCAL_API_KEY", raising=False)
    monkeypatch.delenv("PIVOTAL_LOCAL_API_SECRET", raising=False)
    result = runner.invoke(app, [*args, "--balance", "BTC=2", "--balance", "usdt=500", "--json"])
    assert result.exit_code == 0, result.output
    start = json.loads(result.output.splitlines()[0])
    assert start["balances"] == {"binance": {"USDT": 500.0, "BTC": 2.0}}
    assert start["api_key"] == f"{LOCAL_API_KEY} (the local default)"
    assert start["api_secret"] == "the local default (see README)"
    monkeypatch.setenv("PIVOTAL_LOCAL_API_SECRET", "s3cret-from-env")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "secret: from PIVOTAL_LOCAL_API_SECRET" in " ".join(result.output.split())
    assert "s3cret-from-env" not in result.output and LOCAL_API_SECRET not in result.output
    assert "100000 USDT" in result.output
    result = runner.invoke(app, [*args, "--balance", "BTC"])
    assert result.exit_code == 2 and "ASSET=AMOUNT" in result.output


def test_order_faults_from_the_config_cycle_every_nth_request() -> None:
    injector = FaultInjector(
        FaultConfig(order_fault_every=2, order_fault_kinds=("order_5xx", "order_drop_reply"),
                    max_count=1),
        FaultLog(),
    )  # fmt: skip
    injector.register_venue("binance", list)
    kinds = [getattr(injector.take_order_fault("binance"), "kind", None) for _ in range(8)]
    assert kinds == [None, "order_5xx", None, "order_drop_reply"] + [None] * 4  # capped at 1
    assert injector.log.counts() == {"order_5xx": 1, "order_drop_reply": 1}
    with pytest.raises(ValueError, match="order_fault_kinds"):
        FaultConfig(order_fault_kinds=("drop",))
