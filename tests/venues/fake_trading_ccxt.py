"""A small in-memory spot venue with the async ccxt trading surface the live broker uses.

``FakeTradingExchange`` keeps orders, trades and balances; market orders fill at once at
``price``, limit orders rest until :meth:`move` crosses them, stop orders trigger then. Its
user stream (``watch_orders``/``watch_my_trades``/``watch_balance``) delivers what happened,
unless :meth:`drop_stream` broke it (pending watches raise, the next call redials). Faults
for ``create_order`` are scripted with :meth:`fault` (one per call, in order):

- ``"drop_reply"``: accept, then raise a network error (the reply is lost);
- ``"drop_reply_down"``: the same, and the venue stays down (``down``) afterwards;
- ``"unknown_1007"``: accept, then raise Binance -1007 (status unknown);
- ``"5xx"``: raise a 503 without acting; ``"clock"``: -1021 without acting;
- ``"rate_limit"``: a 429 without acting; ``"reject:<code>:<msg>"``: that refusal.

Every call is logged in ``calls`` as (method, args...). State changes made from the test
thread are locked; stream messages go to the client's loop thread-safely.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any

import ccxt

BTC = "BTC/USDT"
FEE = 0.001


def market(symbol: str = BTC) -> dict[str, Any]:
    base, quote = symbol.split("/")
    return {
        "symbol": symbol,
        "id": base + quote,
        "base": base,
        "quote": quote,
        "spot": True,
        "active": True,
        "precision": {"amount": 0.00001, "price": 0.01},
        "limits": {
            "amount": {"min": 0.00001, "max": 9000.0},
            "price": {"min": 0.01, "max": 1_000_000.0},
            "cost": {"min": 5.0, "max": None},
            "market": {"min": 0.00001, "max": 100.0},
        },
        "info": {"filters": []},
    }


class FakeTradingExchange:
    """See the module docstring."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        symbols: tuple[str, ...] = (BTC,),
        price: float = 100.0,
        usdt: float = 10_000.0,
        server_offset_ms: int = 0,
    ) -> None:
        self.id = exchange_id
        self.has: dict[str, Any] = {
            "watchOrders": True,
            "watchMyTrades": True,
            "watchBalance": True,
        }
        self.options: dict[str, Any] = {}
        self.precisionMode = 4
        self.markets = {s: market(s) for s in symbols}
        self.last_response_headers: dict[str, str] = {}
        self.price = {s: price for s in symbols}
        self.balances: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.balances["USDT"] = [usdt, 0.0]
        self.orders: dict[str, dict[str, Any]] = {}  # by venue id
        self.trades: list[dict[str, Any]] = []
        self.calls: list[tuple[Any, ...]] = []
        self.faults: list[str] = []
        self.down = False
        self.server_offset_ms = server_offset_ms
        self.closed = False
        self._next_id = 1000
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self.stream_connected = True

    # -- scripting (test thread) ----------------------------------------------------------
    def fault(self, *names: str) -> None:
        self.faults.extend(names)

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c[0] == method)

    def drop_stream(self) -> None:
        """Break the user stream: pending watches raise; nothing is delivered until a watch
        is called again (redial)."""
        with self._lock:
            self.stream_connected = False
            self._push_all(ccxt.NetworkError(f"{self.id} user stream connection closed"))

    def move(self, symbol: str, price: float) -> None:
        """Trade at ``price``: resting limits and stops that it crosses fill."""
        with self._lock:
            self.price[symbol] = price
            for order in list(self.orders.values()):
                if order["symbol"] != symbol or order["status"] != "open":
                    continue
                trigger = order.get("triggerPrice")
                if trigger is not None:
                    falling = order["side"] == "sell"
                    if (price <= trigger) if falling else (price >= trigger):
                        self._execute(order, price)
                elif order["type"] == "limit":
                    buy = order["side"] == "buy"
                    if (price <= order["price"]) if buy else (price >= order["price"]):
                        self._execute(order, order["price"])

    def venue_orders(self, cid: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.orders.values() if cid is None or o["clientOrderId"] == cid]

    # -- internals --------------------------------------------------------------------------
    def _log(self, *call: Any) -> None:
        self.calls.append(call)
        if self.down:
            raise ccxt.ExchangeNotAvailable(f"{self.id} GET http://127.0.0.1:9/ connection refused")

    def _stream_put(self, kind: str, value: Any) -> None:
        if not self.stream_connected or self._loop is None or self._loop.is_closed():
            return
        queue = self._streams.get(kind)
        if queue is not None:
            self._loop.call_soon_threadsafe(queue.put_nowait, value)

    def _push_all(self, value: Any) -> None:
        if self._loop is None:
            return
        for queue in self._streams.values():
            self._loop.call_soon_threadsafe(queue.put_nowait, value)

    def _snapshot(self, order: dict[str, Any]) -> dict[str, Any]:
        out = dict(order)
        out["trades"] = [dict(t) for t in order["trades"]]
        out["info"] = {"clientOrderId": order["clientOrderId"]}
        return out

    def _execute(self, order: dict[str, Any], price: float) -> None:
        base, quote = order["symbol"].split("/")
        qty = order["amount"] - order["filled"]
        cost = qty * price
        fee = cost * FEE
        if order["side"] == "buy":
            self.balances[quote][0] -= cost + fee
            self.balances[base][0] += qty
        else:
            self.balances[base][0] -= qty
            self.balances[quote][0] += cost - fee
        self._next_id += 1
        trade = {
            "id": str(self._next_id),
            "order": order["id"],
            "symbol": order["symbol"],
            "side": order["side"],
            "price": price,
            "amount": qty,
            "cost": cost,
            "fee": {"cost": fee, "currency": quote},
            "takerOrMaker": "taker",
            "timestamp": self._now(),
            "info": {"c": order["clientOrderId"]},
        }
        self.trades.append(trade)
        order["trades"].append(trade)
        order["filled"] = order["amount"]
        order["remaining"] = 0.0
        order["average"] = price
        order["cost"] = cost
        order["status"] = "closed"
        order["lastUpdateTimestamp"] = self._now()
        self._stream_put("orders", [self._snapshot(order)])
        self._stream_put("trades", [dict(trade)])
        self._stream_put("balance", self._balance())

    def _now(self) -> int:
        return time.time_ns() // 1_000_000 + self.server_offset_ms

    def _balance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"info": {}}
        for asset, (free, used) in self.balances.items():
            out[asset] = {"free": free, "used": used, "total": free + used}
        return out

    def _find(self, params: dict[str, Any] | None, order_id: Any = None) -> dict[str, Any] | None:
        params = params or {}
        cid = next(
            (
                params[k]
                for k in ("origClientOrderId", "clientOrderId", "orderLinkId")
                if k in params
            ),
            None,
        )
        for order in self.orders.values():
            if cid is not None and order["clientOrderId"] == cid:
                return order
            if cid is None and order_id is not None and order["id"] == str(order_id):
                return order
        return None

    def _not_found(self) -> ccxt.OrderNotFound:
        return ccxt.OrderNotFound(f'{self.id} {{"code":-2013,"msg":"Order does not exist."}}')

    # -- ccxt surface -----------------------------------------------------------------------
    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        self._log("load_markets")
        return self.markets

    async def fetch_time(self, params: dict | None = None) -> int:
        self._loop = asyncio.get_running_loop()
        self._log("fetch_time")
        return self._now()

    async def create_order(
        self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
        params: dict | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = dict(params or {})
        self._log("create_order", symbol, type, side, amount, price, params)
        fault = self.faults.pop(0) if self.faults else None
        body = '{"code":%s,"msg":"%s"}'
        if fault == "5xx":
            raise ccxt.ExchangeNotAvailable(f"{self.id} POST /api/v3/order 503 Service Unavailable")
        if fault == "clock":
            raise ccxt.InvalidNonce(
                f"{self.id} "
                + body % (-1021, "Timestamp for this request is outside of the recvWindow.")
            )
        if fault == "rate_limit":
            raise ccxt.DDoSProtection(f"{self.id} 429 Too Many Requests")
        if fault and fault.startswith("reject:"):
            _, code, msg = fault.split(":", 2)
            raise ccxt.InvalidOrder(f"{self.id} " + body % (code, msg))
        cid = next(v for k, v in params.items() if k in ("newClientOrderId", "clientOrderId"))
        with self._lock:
            if any(
                o["clientOrderId"] == cid and o["status"] == "open" for o in self.orders.values()
            ):
                raise ccxt.InvalidOrder(f"{self.id} " + body % (-2010, "Duplicate order sent."))
            self._next_id += 1
            trigger = (
                params.get("stopLossPrice")
                or params.get("triggerPrice")
                or params.get("takeProfitPrice")
            )
            order = {
                "id": str(self._next_id),
                "clientOrderId": cid,
                "symbol": symbol,
                "type": type if trigger is None else "stop_loss",
                "side": side,
                "price": price,
                "amount": amount,
                "filled": 0.0,
                "remaining": amount,
                "average": None,
                "cost": 0.0,
                "status": "open",
                "timestamp": self._now(),
                "lastUpdateTimestamp": self._now(),
                "triggerPrice": trigger,
                "trades": [],
            }
            self.orders[order["id"]] = order
            if type == "market" and trigger is None:
                self._execute(order, self.price[symbol])
            elif type == "limit":
                buy = side == "buy"
                mkt = self.price[symbol]
                if (mkt <= price) if buy else (mkt >= price):
                    self._execute(order, mkt)
                else:
                    self._stream_put("orders", [self._snapshot(order)])
            else:
                self._stream_put("orders", [self._snapshot(order)])
            reply = self._snapshot(order)
        if fault == "drop_reply_down":
            self.down = True  # the reply is lost and the venue stays unreachable
        if fault in ("drop_reply", "drop_reply_down"):
            raise ccxt.NetworkError(f"{self.id} POST /api/v3/order: connection reset by peer")
        if fault == "unknown_1007":
            raise ccxt.RequestTimeout(
                f"{self.id} " + body % (-1007, "Timeout waiting for response from backend server.")
            )
        return reply

    async def fetch_order(self, id: Any, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._log("fetch_order", id, symbol, dict(params or {}))
        with self._lock:
            order = self._find(params, id)
            if order is None:
                raise self._not_found()
            return self._snapshot(order)

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: Any = None,
        limit: Any = None,
        params: dict | None = None,
    ) -> list[dict[str, Any]]:
        self._log("fetch_open_orders", symbol, dict(params or {}))
        with self._lock:
            return [
                self._snapshot(o)
                for o in self.orders.values()
                if o["status"] == "open" and (symbol is None or o["symbol"] == symbol)
            ]

    async def fetch_canceled_and_closed_orders(
        self,
        symbol: str | None = None,
        since: Any = None,
        limit: Any = None,
        params: dict | None = None,
    ) -> list[dict[str, Any]]:
        self._log("fetch_canceled_and_closed_orders", symbol, dict(params or {}))
        with self._lock:
            return [
                self._snapshot(o)
                for o in self.orders.values()
                if o["status"] != "open" and (symbol is None or o["symbol"] == symbol)
            ]

    async def cancel_order(
        self, id: Any, symbol: str, params: dict | None = None
    ) -> dict[str, Any]:
        self._log("cancel_order", id, symbol, dict(params or {}))
        with self._lock:
            order = self._find(params, id)
            if order is None or order["status"] != "open":
                raise ccxt.OrderNotFound(f'{self.id} {{"code":-2011,"msg":"Unknown order sent."}}')
            order["status"] = "canceled"
            order["lastUpdateTimestamp"] = self._now()
            self._stream_put("orders", [self._snapshot(order)])
            return self._snapshot(order)

    async def fetch_my_trades(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
        params: dict | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        self._log("fetch_my_trades", symbol, since)
        with self._lock:
            return [
                dict(t)
                for t in self.trades
                if (symbol is None or t["symbol"] == symbol)
                and (since is None or t["timestamp"] >= since)
            ]

    async def fetch_balance(self, params: dict | None = None) -> dict[str, Any]:
        self._log("fetch_balance")
        with self._lock:
            return self._balance()

    async def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._log("fetch_ticker", symbol)
        return {"symbol": symbol, "last": self.price[symbol]}

    async def _watch(self, kind: str) -> Any:
        self._loop = asyncio.get_running_loop()
        self.calls.append((f"watch_{kind}",))
        if self.down:
            raise ccxt.NetworkError(f"{self.id} user stream refused")
        with self._lock:
            self.stream_connected = True
            queue = self._streams.setdefault(kind, asyncio.Queue())
        value = await queue.get()
        if isinstance(value, BaseException):
            raise value
        return value

    async def watch_orders(self, symbol: str | None = None, *args: Any) -> list[dict[str, Any]]:
        return await self._watch("orders")

    async def watch_my_trades(self, symbol: str | None = None, *args: Any) -> list[dict[str, Any]]:
        return await self._watch("trades")

    async def watch_balance(self, params: dict | None = None) -> dict[str, Any]:
        return await self._watch("balance")

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        return {}

    def on_rest_response(
        self, code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any, *rest: Any
    ) -> Any:
        return body

    async def close(self) -> None:
        self.closed = True
        with self._lock:
            self._push_all(ccxt.ExchangeClosedByUser(f"{self.id} closed"))
            self._streams, self._loop, self.stream_connected = {}, None, False
