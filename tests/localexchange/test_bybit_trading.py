"""Bybit v5 spot trading on the local exchange, through a real ccxt.pro bybit client.

The client is ccxt's, pointed at 127.0.0.1 with :func:`redirect_rest`/:func:`redirect_ws`
and the local key pair; it loads markets, checks the unified account, signs every private
request and authenticates the private stream exactly as against Bybit. The market is
stepped by hand (``mode="manual"``); the engine's record is the oracle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    NetworkError,
    OrderNotFound,
    PermissionDenied,
    RequestTimeout,
)

from helpers.site_flow import T0, handmade_flow, wait_for
from pivotal.localexchange.config import LOCAL_API_KEY, LOCAL_API_SECRET, ServeConfig, VenueUrls
from pivotal.localexchange.server import LocalExchange
from pivotal.venues.clients import redirect_rest, redirect_ws

pytestmark = pytest.mark.network
SYMBOL = "BTC/USDT"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 45))


def trading_client(urls: VenueUrls, secret: str = LOCAL_API_SECRET) -> Any:
    """ccxt.pro's bybit with the local key pair, spot markets only, every URL local."""
    client = ccxt.pro.bybit({"apiKey": LOCAL_API_KEY, "secret": secret})
    client.options["fetchMarkets"] = {"types": ["spot"]}
    client.options["defaultType"] = "spot"
    redirect_rest(client, urls.rest)
    redirect_ws(client, urls.ws)
    return client


@contextlib.asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[tuple[LocalExchange, Any]]:
    """The local exchange (Bybit, manual pacing, 2 s into the flow) and a trading client."""
    config.setdefault("check_timestamps", False)
    exchange = LocalExchange(
        [handmade_flow()], ServeConfig(venues=("bybit",), mode="manual", **config)
    )
    await exchange.start()
    client = trading_client(exchange.urls()["bybit"])
    try:
        await exchange.advance_to(T0 + 2_000)
        if config["check_timestamps"]:  # ccxt's clock sync: /v5/market/time (market time)
            await client.load_time_difference()
        await client.load_markets()
        yield exchange, client
    finally:
        await client.close()
        await exchange.stop()


def by_client_id(record: dict[str, Any], client_id: str) -> list[dict[str, Any]]:
    return [o for o in record["orders"] if o["clientOrderId"] == client_id]


def test_orders_balances_and_trades_match_the_record() -> None:
    async def scenario() -> None:
        async with serving() as (ex, client):
            bought = await client.create_order(
                SYMBOL, "market", "buy", 0.02, None, {"clientOrderId": "pv-mkt-1",
                                                      "marketUnit": "baseCoin"}
            )  # fmt: skip
            assert bought["clientOrderId"] == "pv-mkt-1"
            (filled,) = await client.fetch_open_orders(SYMBOL, params={"orderLinkId": "pv-mkt-1"})
            assert filled["id"] == bought["id"] and filled["status"] == "closed"
            assert filled["filled"] == 0.02 and filled["info"]["marketUnit"] == "baseCoin"
            with pytest.raises(InvalidOrder, match="110072"):  # unique even once closed
                await client.create_order(SYMBOL, "limit", "buy", 0.01, 59_000.0,
                                          {"clientOrderId": "pv-mkt-1"})  # fmt: skip
            spent = await client.create_market_buy_order_with_cost(
                SYMBOL, 120.0, {"clientOrderId": "pv-cost-1"}
            )  # quote-sized (Bybit's default unit of a market buy)
            (by_cost,) = await client.fetch_canceled_and_closed_orders(
                SYMBOL, params={"orderLinkId": "pv-cost-1"}
            )
            assert by_cost["id"] == spent["id"] and by_cost["info"]["marketUnit"] == "quoteCoin"
            assert 0 < by_cost["cost"] <= 120.0 and by_cost["info"]["qty"] == "120"

            resting = await client.create_order(
                SYMBOL, "limit", "buy", 0.01, 59_999.0, {"clientOrderId": "pv-lim-1"}
            )
            stop = await client.create_order(
                SYMBOL, "market", "sell", 0.005, None, {"clientOrderId": "pv-stop-1",
                                                        "triggerPrice": 59_990.0}
            )  # fmt: skip
            tpsl = await client.create_order(
                SYMBOL, "limit", "sell", 0.005, 60_100.0, {"clientOrderId": "pv-tp-1",
                                                           "stopLossPrice": 59_980.0}
            )  # fmt: skip
            opened = {o["clientOrderId"]: o for o in await client.fetch_open_orders(SYMBOL)}
            assert set(opened) == {"pv-lim-1", "pv-stop-1", "pv-tp-1"}
            assert opened["pv-lim-1"]["status"] == "open" and opened["pv-lim-1"]["price"] == 59_999
            assert opened["pv-stop-1"]["info"]["orderStatus"] == "Untriggered"
            assert opened["pv-stop-1"]["triggerPrice"] == 59_990.0
            assert opened["pv-stop-1"]["info"]["stopOrderType"] == "Stop"
            assert opened["pv-tp-1"]["info"]["stopOrderType"] == "tpslOrder"
            assert opened["pv-tp-1"]["stopLossPrice"] == 59_980.0

            # a conditional order is cancelled under its own orderFilter only
            with pytest.raises(OrderNotFound):
                await client.cancel_order(stop["id"], SYMBOL)
            cancelled = await client.cancel_order(stop["id"], SYMBOL, {"trigger": True})
            assert cancelled["id"] == stop["id"]
            (gone,) = await client.fetch_canceled_and_closed_orders(
                SYMBOL, params={"orderLinkId": "pv-stop-1"}
            )
            assert gone["info"]["orderStatus"] == "Deactivated"
            assert gone["info"]["cancelType"] == "CancelByUser"
            with pytest.raises(OrderNotFound):
                await client.cancel_order(stop["id"], SYMBOL, {"trigger": True})
            swept = await client.cancel_all_orders(SYMBOL)  # plain orders: the limit
            assert [o["id"] for o in swept] == [resting["id"]]
            swept = await client.cancel_all_orders(SYMBOL, {"orderFilter": "tpslOrder"})
            assert [o["id"] for o in swept] == [tpsl["id"]]
            assert await client.fetch_open_orders(SYMBOL) == []

            # prints alternate at 59,999.99 and 60,000.01: a trigger at 60,000 is crossed
            await client.create_order(
                SYMBOL, "market", "sell", 0.01, None, {"clientOrderId": "pv-stop-2",
                                                       "triggerPrice": 60_000.0}
            )  # fmt: skip
            await ex.advance_to(T0 + 5_000)
            (triggered,) = await client.fetch_canceled_and_closed_orders(
                SYMBOL, params={"orderLinkId": "pv-stop-2"}
            )
            assert triggered["status"] == "closed" and triggered["filled"] == 0.01
            assert triggered["triggerPrice"] == 60_000.0 and triggered["side"] == "sell"

            record = ex.record("bybit")
            assert [o["clientOrderId"] for o in record["orders"]] == [
                "pv-mkt-1", "pv-cost-1", "pv-lim-1", "pv-stop-1", "pv-tp-1", "pv-stop-2",
            ]  # fmt: skip
            statuses = {o["clientOrderId"]: o["status"] for o in record["orders"]}
            assert statuses["pv-lim-1"] == statuses["pv-stop-1"] == "CANCELED"

            trades = await client.fetch_my_trades(SYMBOL)
            assert sorted(t["id"] for t in trades) == sorted(str(f["id"]) for f in record["fills"])
            fills = {str(f["id"]): f for f in record["fills"]}
            for trade in trades:
                fill = fills[trade["id"]]
                assert trade["order"] == str(fill["orderId"])
                assert trade["side"] == ("buy" if fill["isBuyer"] else "sell")
                assert Decimal(str(trade["amount"])) == Decimal(fill["qty"])
                assert trade["fee"]["currency"] == fill["commissionAsset"]  # received asset
                assert Decimal(str(trade["fee"]["cost"])) == Decimal(fill["commission"])
            assert {t["fee"]["currency"] for t in trades} == {"BTC", "USDT"}
            balance = await client.fetch_balance()
            for asset in ("USDT", "BTC"):
                expected = record["balances"][asset]
                total = Decimal(expected["free"]) + Decimal(expected["locked"])
                assert Decimal(str(balance[asset]["total"])) == total
                assert Decimal(str(balance[asset]["used"])) == Decimal(expected["locked"])

    run(scenario())


def test_errors_map_to_ccxt_exceptions() -> None:
    async def scenario() -> None:
        async with serving(check_timestamps=True) as (ex, client):
            await client.create_order(
                SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-dup"}
            )
            await client.load_time_difference()  # the market stands still, the wall runs
            with pytest.raises(InvalidOrder, match="110072"):
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-dup"}
                )
            client.options["timeDifference"] = 0  # wall time, years after the replay
            with pytest.raises(InvalidNonce, match="10002"):
                await client.fetch_balance()
        async with serving() as (ex, client):
            with pytest.raises(InsufficientFunds, match="170131"):
                await client.create_order(SYMBOL, "market", "buy", 5.0, None,
                                          {"marketUnit": "baseCoin"})  # fmt: skip
            # ccxt rounds amounts and prices itself: raw requests through its signed API
            cases: list[tuple[dict[str, str], type[Exception], str]] = [
                ({"qty": "0.000015"}, InvalidOrder, "170137"),  # off the 0.00001 step
                ({"qty": "0.00001"}, InvalidOrder, "170140"),  # 0.59 USDT < minOrderAmt 1
                ({"price": "59000.005"}, InvalidOrder, "170134"),  # off the 0.01 tick
                ({"qty": "20000"}, InvalidOrder, "170135"),  # over maxOrderQty
                ({"orderFilter": "OcoOrder"}, PermissionDenied, "170201"),  # as ccxt maps it
                ({"symbol": "ETHUSDT"}, InvalidOrder, "170121"),
                ({"timeInForce": "PostOnly", "price": "60001"}, InvalidOrder, "170218"),
            ]
            for change, error, code in cases:
                request = {
                    "category": "spot",
                    "symbol": "BTCUSDT",
                    "side": "Buy",
                    "orderType": "Limit",
                    "qty": "0.01",
                    "price": "59000",
                } | change
                with pytest.raises(error, match=code):  # fmt: skip
                    await client.private_post_v5_order_create(request)
            with pytest.raises(InsufficientFunds, match="170131"):  # no BTC to sell
                await client.create_order(SYMBOL, "limit", "sell", 0.01, 61_000.0)
            with pytest.raises(OrderNotFound, match="110001"):
                await client.cancel_order("999", SYMBOL)
            with pytest.raises(BadRequest, match="10001"):
                await client.create_order(SYMBOL, "limit", "buy", 0.01, 59_000.0,
                                          {"clientOrderId": "has space"})  # fmt: skip
            assert ex.record("bybit")["orders"] == []
            wrong = trading_client(ex.urls()["bybit"], secret="not-the-secret")
            try:
                with pytest.raises(AuthenticationError, match="10004"):
                    await wrong.fetch_balance()
                with pytest.raises(AuthenticationError):
                    await wrong.watch_orders(SYMBOL)
            finally:
                await wrong.close()

    run(scenario())


def test_private_stream_pushes_fills_while_the_market_moves() -> None:
    async def scenario() -> None:
        async with serving() as (ex, client):
            site = ex.sites["bybit"]
            orders = asyncio.ensure_future(client.watch_orders(SYMBOL))
            trades = asyncio.ensure_future(client.watch_my_trades(SYMBOL))
            balances = asyncio.ensure_future(client.watch_balance())
            await wait_for(lambda: site.hub.has("private:wallet"))
            await wait_for(lambda: site.hub.has("private:execution"))
            placed = await client.create_order(
                SYMBOL, "limit", "buy", 0.3, 60_000.0, {"clientOrderId": "pv-maker"}
            )  # between bid and ask: rests, then fills as prints cross it
            first = await asyncio.wait_for(orders, 5)
            assert first[-1]["id"] == placed["id"] and first[-1]["status"] == "open"
            wallet = await asyncio.wait_for(balances, 5)
            assert wallet["USDT"]["used"] == pytest.approx(18_000.0)
            await ex.advance_to(T0 + 60_000)
            assert ex.record("bybit")["orders"][0]["status"] == "FILLED"
            fills = ex.record("bybit")["fills"]
            assert len(fills) >= 2  # the prints are smaller than the order
            mine = await asyncio.wait_for(trades, 5)
            await wait_for(lambda: len(client.myTrades) == len(fills))
            assert [t["id"] for t in client.myTrades] == [str(f["id"]) for f in fills]
            assert all(t["takerOrMaker"] == "maker" and t["price"] == 60_000 for t in mine)
            await wait_for(lambda: client.orders[-1]["status"] == "closed")
            assert client.orders[-1]["filled"] == 0.3
            btc = Decimal(ex.record("bybit")["balances"]["BTC"]["free"])
            await wait_for(lambda: Decimal(str(client.balance["unified"]["BTC"]["total"])) == btc)

            # the user_stream_drop fault closes the private socket; ccxt sees it
            pending = asyncio.ensure_future(client.watch_orders(SYMBOL))
            await asyncio.sleep(0.05)
            assert await ex.inject("user_stream_drop", venue="bybit") == 1
            with pytest.raises(NetworkError):
                await asyncio.wait_for(pending, 5)

    run(scenario())


def test_reply_faults_leave_exactly_one_order() -> None:
    async def scenario() -> None:
        async with serving() as (ex, client):
            await ex.inject("order_drop_reply", venue="bybit")
            with pytest.raises(NetworkError):
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-lost"}
                )
            # the retry with the same orderLinkId is refused: the first one was placed
            with pytest.raises(InvalidOrder, match="110072"):
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-lost"}
                )
            (found,) = await client.fetch_open_orders(SYMBOL, params={"orderLinkId": "pv-lost"})
            assert found["status"] == "open"
            assert len(by_client_id(ex.record("bybit"), "pv-lost")) == 1

            await ex.inject("order_5xx", venue="bybit")  # refused before acting
            with pytest.raises(ExchangeNotAvailable):
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-5xx"}
                )
            assert by_client_id(ex.record("bybit"), "pv-5xx") == []
            await ex.inject("order_unknown_1007", venue="bybit")  # placed, status unknown
            with pytest.raises(RequestTimeout, match="170007"):
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-1007"}
                )
            assert len(by_client_id(ex.record("bybit"), "pv-1007")) == 1
            kinds = ex.fault_log.counts(venue="bybit")
            assert kinds["order_drop_reply"] == kinds["order_5xx"] == 1

    run(scenario())


def test_signed_requests_on_the_wire() -> None:
    """Raw HTTP: the envelope, the limit headers, the 10003/10004/10001 refusals."""

    async def scenario() -> None:
        async with serving() as (ex, _client):
            rest = ex.urls()["bybit"].rest

            def headers(
                payload: str, key: str = LOCAL_API_KEY, secret: str = LOCAL_API_SECRET
            ) -> dict[str, str]:
                stamp = str(ex.now_ms())
                text = f"{stamp}{key}5000{payload}"
                digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
                return {"X-BAPI-API-KEY": key, "X-BAPI-TIMESTAMP": stamp,
                        "X-BAPI-RECV-WINDOW": "5000", "X-BAPI-SIGN": digest,
                        "Content-Type": "application/json"}  # fmt: skip

            async with aiohttp.ClientSession(rest) as http:
                query = "accountType=UNIFIED&coin=USDT"
                async with http.get(f"/v5/account/wallet-balance?{query}",
                                    headers=headers(query)) as reply:  # fmt: skip
                    body = await reply.json()
                    assert reply.status == 200 and body["retCode"] == 0
                    assert int(reply.headers["X-Bapi-Limit-Status"]) < int(
                        reply.headers["X-Bapi-Limit"]
                    )
                (coin,) = body["result"]["list"][0]["coin"]
                assert coin["coin"] == "USDT" and coin["walletBalance"] == "100000"
                order = orjson.dumps({"category": "spot", "symbol": "BTCUSDT", "side": "Buy",
                                      "orderType": "Limit", "qty": "0.01", "price": "59000",
                                      "orderLinkId": "raw-1"}).decode()  # fmt: skip
                for sent, code in (
                    (headers(order, key="someone-else"), 10003),
                    (headers(order, secret="wrong"), 10004),
                    (headers(order + " "), 10004),  # the body signed is not the body sent
                ):
                    async with http.post("/v5/order/create", data=order, headers=sent) as reply:
                        assert (await reply.json())["retCode"] == code
                async with http.post("/v5/order/create", data="{oops",
                                     headers=headers("{oops")) as reply:  # fmt: skip
                    assert (await reply.json())["retCode"] == 10001
                async with http.post("/v5/order/create", data=order,
                                     headers=headers(order)) as reply:  # fmt: skip
                    body = await reply.json()
                assert body["retCode"] == 0 and body["result"]["orderLinkId"] == "raw-1"
                assert body["result"]["orderId"] == str(ex.record("bybit")["orders"][0]["orderId"])

    run(scenario())


def test_private_stream_protocol_on_the_wire() -> None:
    """Raw WebSocket: auth refusals, subscribe before auth, ping/pong, the push shapes."""

    async def scenario() -> None:
        async with serving(check_timestamps=True) as (ex, client):
            ws_url = ex.urls()["bybit"].ws + "/v5/private"

            def auth(expires: int, secret: str = LOCAL_API_SECRET) -> dict[str, Any]:
                text = f"GET/realtime{expires}".encode()
                signature = hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
                return {"op": "auth", "req_id": "a", "args": [LOCAL_API_KEY, expires, signature]}

            async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:

                async def ask(message: dict[str, Any]) -> dict[str, Any]:
                    await ws.send_str(orjson.dumps(message).decode())
                    reply: dict[str, Any] = orjson.loads((await ws.receive()).data)
                    return reply

                sub = {"op": "subscribe", "req_id": "s", "args": ["order", "wallet"]}
                refused = await ask(sub)
                assert not refused["success"] and refused["ret_msg"] == "Request not authorized"
                later = ex.now_ms() + 10_000
                assert not (await ask(auth(later, secret="wrong")))["success"]
                expired = await ask(auth(ex.now_ms() - 1))
                assert not expired["success"] and "expired" in expired["ret_msg"]
                ok = await ask(auth(later))
                assert ok["success"] and ok["op"] == "auth" and ok["req_id"] == "a"
                assert (await ask(sub)) | {"conn_id": ""} == {
                    "success": True, "ret_msg": "", "op": "subscribe", "conn_id": "",
                    "req_id": "s",
                }  # fmt: skip
                unknown = await ask({"op": "subscribe", "args": ["position"]})
                assert not unknown["success"] and "position" in unknown["ret_msg"]
                pong = await ask({"op": "ping", "req_id": "p1"})
                assert pong["op"] == "pong" and pong["req_id"] == "p1"
                assert pong["args"] == [str(ex.now_ms())]

                await client.load_time_difference()
                placed = await client.create_order(
                    SYMBOL, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "pv-ws"}
                )
                order = orjson.loads((await ws.receive()).data)
                assert order["topic"] == "order" and order["creationTime"] == ex.now_ms()
                (row,) = order["data"]
                assert row["category"] == "spot" and row["orderId"] == placed["id"]
                assert row["orderLinkId"] == "pv-ws" and row["orderStatus"] == "New"
                assert row["price"] == "59000.00" and row["qty"] == "0.01000"
                wallet = orjson.loads((await ws.receive()).data)
                assert wallet["topic"] == "wallet"
                (usdt,) = wallet["data"][0]["coin"]
                assert usdt["coin"] == "USDT" and usdt["locked"] == "590"
                assert usdt["walletBalance"] == "100000"

                await client.create_market_buy_order_with_cost(SYMBOL, 100.0)  # no link id
                rows = []
                while not rows or rows[-1]["orderStatus"] != "Filled":
                    message = orjson.loads((await ws.receive()).data)
                    rows += message["data"] if message["topic"] == "order" else []
                assert [r["orderStatus"] for r in rows] == ["New", "Filled"]
                assert all(r["orderLinkId"] == "" and r["marketUnit"] == "quoteCoin" for r in rows)
                assert rows[-1]["qty"] == "100" and float(rows[-1]["cumExecValue"]) <= 100

    run(scenario())
