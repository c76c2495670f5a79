"""Binance spot's WebSocket API (``/ws-api/v3``): the user data stream ccxt.pro subscribes to.

ccxt 4.5.90's ``watch_orders``/``watch_my_trades``/``watch_balance`` on spot open
``urls['api']['ws']['ws-api']['spot']`` and send ``userDataStream.subscribe.signature``
(params ``apiKey``, ``timestamp``, ``recvWindow``, ``signature`` = HMAC-SHA256 over the
other params sorted by name as ``key=value&...``). Requests are answered
``{"id", "status": 200, "result", "rateLimits"}`` (errors: ``status`` 400/401 and
``error: {"code", "msg"}``). Methods: ``userDataStream.subscribe.signature`` (result
``{"subscriptionId": n}``, n counting from 0 per connection), ``userDataStream.unsubscribe``
(one ``subscriptionId`` or all), ``session.subscriptions``, ``ping``, ``time``.

Each subscription receives ``{"subscriptionId": n, "event": {...}}`` for every engine
change: ``executionReport`` (every order change and fill, Binance's fields) and
``outboundAccountPosition`` (the balances an action changed). Event times are market time.
A subscribed connection is in the hub under ``user:binance`` so the ``user_stream_drop``
fault finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pivotal.localexchange.binance_trade import check_key, check_signed
from pivotal.localexchange.engine_types import (
    ZERO,
    BalanceUpdate,
    EngineUpdate,
    OrderUpdate,
    text8,
)
from pivotal.localexchange.faults import USER_STREAM_PREFIX
from pivotal.localexchange.venue import VenueError
from pivotal.localexchange.wsconn import WsConnection

if TYPE_CHECKING:
    from pivotal.localexchange.binance import BinanceSite

WS_API_PATH = "/ws-api/v3"
USER_STREAM = f"{USER_STREAM_PREFIX}binance"
_METHODS = (
    "userDataStream.subscribe.signature, userDataStream.unsubscribe, session.subscriptions, "
    "ping, time"
)


def execution_report(update: OrderUpdate, execution_id: int) -> dict[str, Any]:
    """Binance's ``executionReport`` for one engine order update."""
    order, fill = update.order, update.fill
    cancel = update.execution == "CANCELED" and update.cancel_client_order_id is not None
    return {
        "e": "executionReport",
        "E": update.time_ms,
        "s": order.symbol.exchange_id,
        "c": update.cancel_client_order_id if cancel else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": text8(order.quantity),
        "p": text8(order.price),
        "P": text8(order.stop_price),
        "F": text8(ZERO),
        "g": -1,
        "C": order.client_order_id if cancel else "",
        "x": update.execution,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": text8(fill.qty if fill else ZERO),
        "z": text8(order.executed_qty),
        "L": text8(fill.price if fill else ZERO),
        "n": text8(fill.commission) if fill else "0",
        "N": fill.commission_asset if fill else None,
        "T": update.time_ms,
        "t": fill.fill_id if fill else -1,
        "I": execution_id,
        "w": order.is_open and order.working_ms >= 0,
        "m": fill.maker if fill else False,
        "M": False,
        "O": order.created_ms,
        "Z": text8(order.cum_quote),
        "Y": text8(fill.quote_qty if fill else ZERO),
        "Q": text8(order.quote_quantity),
        "W": order.working_ms,
        "V": "EXPIRE_MAKER",
    }


def account_position(update: BalanceUpdate, last_update_ms: int) -> dict[str, Any]:
    """Binance's ``outboundAccountPosition`` for the balances one action changed."""
    return {
        "e": "outboundAccountPosition",
        "E": update.time_ms,
        "u": last_update_ms,
        "B": [
            {"a": asset, "f": text8(free), "l": text8(locked)}
            for asset, (free, locked) in update.balances.items()
        ],
    }


class BinanceUserStream:
    """The WebSocket API endpoint and the user data pushes of one :class:`BinanceSite`."""

    def __init__(self, site: BinanceSite) -> None:
        self.site = site
        #: connection id → (connection, its subscription ids)
        self._subs: dict[int, tuple[WsConnection, list[int]]] = {}
        self._next_sub: dict[int, int] = {}
        self._execution_id = 0
        site.engine.add_listener(self._on_update)

    def register(self) -> None:
        self.site.add_ws(WS_API_PATH, self._serve)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        try:
            return await self.site.serve_ws(request, self._on_message, variant="ws-api")
        finally:
            for conn_id in [c for c, (conn, _) in self._subs.items() if conn.closed]:
                self._subs.pop(conn_id, None)
                self._next_sub.pop(conn_id, None)

    # -- requests ---------------------------------------------------------------------------
    def _rate_limits(self) -> list[dict[str, Any]]:
        limiter = self.site.limiter
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": limiter.limit or 6000, "count": limiter.used()}]  # fmt: skip

    def _answer(self, conn: WsConnection, request_id: Any, result: Any) -> None:
        body = {"id": request_id, "status": 200, "result": result,
                "rateLimits": self._rate_limits()}  # fmt: skip
        conn.send(orjson.dumps(body))

    def _fail(self, conn: WsConnection, request_id: Any, status: int, code: int, msg: str) -> None:
        body = {"id": request_id, "status": status, "error": {"code": code, "msg": msg},
                "rateLimits": self._rate_limits()}  # fmt: skip
        conn.send(orjson.dumps(body))

    def _on_message(self, conn: WsConnection, data: str | bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail(conn, None, 400, -1100, "Malformed request: not valid JSON.")
            return
        if not isinstance(msg, dict):
            self._fail(conn, None, 400, -1100, "Malformed request: expected a JSON object.")
            return
        request_id, method = msg.get("id"), msg.get("method")
        params = msg.get("params", {})
        if not isinstance(params, dict):
            self._fail(conn, request_id, 400, -1100, "Malformed request: params must be an "
                       "object.")  # fmt: skip
            return
        try:
            if method == "userDataStream.subscribe.signature":
                self._answer(conn, request_id, self._subscribe(conn, params))
            elif method == "userDataStream.unsubscribe":
                self._unsubscribe(conn, params)
                self._answer(conn, request_id, {})
            elif method == "session.subscriptions":
                _, ids = self._subs.get(conn.conn_id, (conn, []))
                self._answer(conn, request_id, [{"subscriptionId": i} for i in ids])
            elif method == "ping":
                self._answer(conn, request_id, {})
            elif method == "time":
                self._answer(conn, request_id, {"serverTime": self.site.now_ms()})
            else:
                self._fail(conn, request_id, 400, -1102, f"Unknown method {method!r}; this "
                           f"endpoint serves {_METHODS}.")  # fmt: skip
        except VenueError as exc:
            self._fail(conn, request_id, exc.status, exc.code, exc.msg)

    def _subscribe(self, conn: WsConnection, params: dict[str, Any]) -> dict[str, int]:
        text = {k: _param_text(v) for k, v in params.items()}
        check_key(self.site, text.get("apiKey"))
        payload = "&".join(f"{k}={text[k]}" for k in sorted(text) if k != "signature")
        check_signed(self.site, text, payload)
        sub_id = self._next_sub.get(conn.conn_id, 0)
        self._next_sub[conn.conn_id] = sub_id + 1
        self._subs.setdefault(conn.conn_id, (conn, []))[1].append(sub_id)
        self.site.hub.subscribe(conn, USER_STREAM)
        return {"subscriptionId": sub_id}

    def _unsubscribe(self, conn: WsConnection, params: dict[str, Any]) -> None:
        entry = self._subs.get(conn.conn_id)
        wanted = params.get("subscriptionId")
        if entry is None:
            if wanted is not None:
                raise VenueError(-2, "User Data Stream subscription not found.")
            return
        ids = entry[1]
        if wanted is None:
            ids.clear()
        elif wanted in ids:
            ids.remove(wanted)
        else:
            raise VenueError(-2, "User Data Stream subscription not found.")
        if not ids:
            self._subs.pop(conn.conn_id, None)
            self.site.hub.unsubscribe(conn, USER_STREAM)

    # -- pushes -----------------------------------------------------------------------------
    def _on_update(self, update: EngineUpdate) -> None:
        if isinstance(update, OrderUpdate):
            self._execution_id += 1
        if not self._subs:
            return  # nobody subscribed: nothing to render
        if isinstance(update, OrderUpdate):
            event = execution_report(update, self._execution_id)
        else:
            event = account_position(update, self.site.engine.updated_ms)
        raw = orjson.dumps(event)
        for conn_id, (conn, ids) in list(self._subs.items()):
            if conn.closed:
                self._subs.pop(conn_id, None)
                continue
            for sub_id in ids:
                conn.send(b'{"subscriptionId":' + str(sub_id).encode() + b',"event":' + raw + b"}")


def _param_text(value: Any) -> str:
    """A WebSocket API parameter as it enters the signature payload."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
