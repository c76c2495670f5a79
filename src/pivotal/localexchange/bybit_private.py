"""Bybit v5 private WebSocket ``/v5/private``: the account's orders, fills and wallet live.

Protocol (Bybit's v5 private stream):

- ``{"op": "auth", "args": [api_key, expires, signature], "req_id"?}`` where ``expires``
  (ms) must lie after the server time (the market clock, as ``/v5/market/time``; not
  checked with ``ServeConfig.check_timestamps`` off) and ``signature`` is the hex
  HMAC-SHA256 of ``"GET/realtime" + expires``; answered ``{"success", "ret_msg": "", "op":
  "auth", "conn_id"}`` (a refusal: ``success`` false and the reason in ``ret_msg``);
- ``{"op": "subscribe" | "unsubscribe", "args": [...], "req_id"?}`` once authenticated
  (before: ``"Request not authorized"``), answered ``{"success", "ret_msg": "", "op",
  "conn_id", "req_id"}``. Topics: ``order``, ``execution``, ``execution.fast``, ``wallet``
  and the categorised ``order.spot``, ``execution.spot``, ``execution.fast.spot``;
- ``{"op": "ping", "req_id"?}`` → ``{"req_id", "op": "pong", "args": [<ms>], "conn_id"}``.

Pushes (``{"id", "topic", "creationTime", "data": [...]}``, topic as subscribed) on every
engine change: an ``order`` row (:meth:`BybitViews.order_row` with ``category``) per order
update; an ``execution`` row per fill (``execution.fast``: its short form); after every
engine action that moved balances, the ``wallet`` account with the changed coins. There is
no snapshot on subscribe (as Bybit). The server does not ping; the client does.

Every authenticated socket also holds the hub stream ``user:bybit:account`` so the
``user_stream_drop`` fault finds it.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pivotal.localexchange.bybit_rest import sign
from pivotal.localexchange.bybit_views import BybitViews
from pivotal.localexchange.engine_types import BalanceUpdate, EngineUpdate, OrderUpdate
from pivotal.localexchange.faults import USER_STREAM_PREFIX
from pivotal.localexchange.wsconn import WsConnection

if TYPE_CHECKING:
    from pivotal.localexchange.bybit import BybitSite

#: The private topics a socket may subscribe (Bybit's all-in-one and spot-only names).
TOPICS: tuple[str, ...] = (
    "order", "order.spot", "execution", "execution.spot", "execution.fast",
    "execution.fast.spot", "wallet",
)  # fmt: skip
#: The fields of an ``execution.fast`` row.
FAST_FIELDS: tuple[str, ...] = (
    "category", "symbol", "execId", "execPrice", "execQty", "orderId", "isMaker",
    "orderLinkId", "side", "execTime", "seq",
)  # fmt: skip
PRIVATE_PATH = "/v5/private"
_HUB_PREFIX = "private:"


class BybitPrivate:
    """The ``/v5/private`` endpoint of one Bybit site; :meth:`install` registers it and
    listens to the site's engine."""

    def __init__(self, site: BybitSite, views: BybitViews) -> None:
        self.site = site
        self.views = views
        self.user_stream = f"{USER_STREAM_PREFIX}{site.venue}:account"
        self._authed: set[int] = set()
        self._ids = itertools.count(1)

    def install(self) -> None:
        self.site.add_ws(PRIVATE_PATH, self._ws)
        self.site.engine.add_listener(self._on_update)

    # -- the socket -----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        conn_ids: list[int] = []

        def opened(conn: WsConnection) -> None:
            conn_ids.append(conn.conn_id)

        try:
            return await self.site.serve_ws(
                request, self._on_message, variant="private", on_open=opened
            )
        finally:
            for conn_id in conn_ids:
                self._authed.discard(conn_id)

    def _send(self, conn: WsConnection, body: dict[str, Any]) -> None:
        conn.send(orjson.dumps(body))

    def _reply(self, conn: WsConnection, op: str, req_id: Any, ok: bool, msg: str = "") -> None:
        body: dict[str, Any] = {"success": ok, "ret_msg": msg, "op": op,
                                "conn_id": f"pivotal-{conn.conn_id}"}  # fmt: skip
        if req_id is not None:
            body["req_id"] = str(req_id)
        self._send(conn, body)

    def _on_message(self, conn: WsConnection, data: str | bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reply(conn, "", None, False, "error:invalid op")
            return
        if not isinstance(message, dict):
            self._reply(conn, "", None, False, "error:invalid op")
            return
        op, req_id = str(message.get("op", "")), message.get("req_id")
        handlers: dict[str, Callable[[WsConnection, Any, Any], None]] = {
            "auth": self._auth,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "ping": self._ping,
        }
        handler = handlers.get(op)
        if handler is None:
            self._reply(conn, op, req_id, False, f"error:invalid op {op!r}")
            return
        handler(conn, message.get("args"), req_id)

    def _ping(self, conn: WsConnection, args: Any, req_id: Any) -> None:
        body: dict[str, Any] = {"req_id": "" if req_id is None else str(req_id), "op": "pong",
                                "args": [str(self.site.now_ms())],
                                "conn_id": f"pivotal-{conn.conn_id}"}  # fmt: skip
        self._send(conn, body)

    def _auth(self, conn: WsConnection, args: Any, req_id: Any) -> None:
        problem = self._auth_problem(args)
        if problem is not None:
            self.site.record_fault("ws_auth", conn, detail=problem)
            self._reply(conn, "auth", req_id, False, problem)
            return
        self._authed.add(conn.conn_id)
        self.site.hub.subscribe(conn, self.user_stream)
        self._reply(conn, "auth", req_id, True, "")

    def _auth_problem(self, args: Any) -> str | None:
        """Why ``args`` do not authenticate (None: they do)."""
        if not isinstance(args, list) or len(args) != 3:
            return "error:params error: args must be [api_key, expires, signature]"
        key, expires, signature = (str(a) for a in args)
        config = self.site.ctx.config
        if not hmac.compare_digest(key.encode(), config.api_key.encode()):
            return "error:API key is invalid."
        if not expires.isdigit():
            return f"error:params error: expires must be a time in ms, got {expires!r}"
        if config.check_timestamps and int(expires) <= self.site.now_ms():
            now = self.site.now_ms()
            return f"error:request expired: expires[{expires}] <= server time[{now}]"
        expected = sign(config.api_secret.get_secret_value(), f"GET/realtime{expires}")
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            return "error:signature verification failed: HMAC-SHA256 of 'GET/realtime'+expires"
        return None

    def _topics(self, args: Any) -> list[str] | None:
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return None
        return list(dict.fromkeys(args))

    def _subscribe(self, conn: WsConnection, args: Any, req_id: Any) -> None:
        if conn.conn_id not in self._authed:
            self._reply(conn, "subscribe", req_id, False, "Request not authorized")
            return
        topics = self._topics(args)
        if topics is None:
            self._reply(conn, "subscribe", req_id, False, "error:args must be a list of topics")
            return
        for topic in topics:
            if topic not in TOPICS:
                self._reply(conn, "subscribe", req_id, False,
                            f"error:handler not found,topic:{topic}")  # fmt: skip
                return
            if _HUB_PREFIX + topic in conn.streams:
                self._reply(conn, "subscribe", req_id, False,
                            f"error:already subscribed,topic:{topic}")  # fmt: skip
                return
        for topic in topics:
            self.site.hub.subscribe(conn, _HUB_PREFIX + topic)
        self._reply(conn, "subscribe", req_id, True, "")

    def _unsubscribe(self, conn: WsConnection, args: Any, req_id: Any) -> None:
        topics = self._topics(args)
        if topics is None:
            self._reply(conn, "unsubscribe", req_id, False, "error:args must be a list of topics")
            return
        for topic in topics:
            self.site.hub.unsubscribe(conn, _HUB_PREFIX + topic)
        self._reply(conn, "unsubscribe", req_id, True, "")

    # -- pushes ---------------------------------------------------------------------------
    def _on_update(self, update: EngineUpdate) -> None:
        if isinstance(update, OrderUpdate):
            self._push_order(update)
        elif isinstance(update, BalanceUpdate):
            self._push_wallet(update)

    def _publish(self, topic: str, time_ms: int, data: list[dict[str, Any]]) -> None:
        stream = _HUB_PREFIX + topic
        if not self.site.hub.has(stream):
            return
        body = {"id": f"pivotal-{topic}-{next(self._ids)}", "topic": topic,
                "creationTime": time_ms, "data": data}  # fmt: skip
        message = orjson.dumps(body)
        self.site.hub.publish(stream, lambda _variant: message)

    def _push_order(self, update: OrderUpdate) -> None:
        row = self.views.order_row(update.order, category=True)
        for topic in ("order", "order.spot"):
            self._publish(topic, update.time_ms, [row])
        fill = update.fill
        if fill is None:
            return
        execution = self.views.execution_row(
            fill, update.order, update.order.remaining, category=True
        )
        for topic in ("execution", "execution.spot"):
            self._publish(topic, update.time_ms, [execution])
        fast = {key: execution[key] for key in FAST_FIELDS}
        for topic in ("execution.fast", "execution.fast.spot"):
            self._publish(topic, update.time_ms, [fast])

    def _push_wallet(self, update: BalanceUpdate) -> None:
        self._publish("wallet", update.time_ms, [self.views.wallet(set(update.balances))])
