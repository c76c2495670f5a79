"""The WebSocket hub (``/api/v1/ws``): subscriptions, one 1 Hz poller, changes pushed.

One asyncio task polls the nodes once a second for every channel some client subscribed to,
all queries of a tick in one worker thread (the event loop never waits on a store), and
pushes a channel to a client only when its JSON changed since what that client last got.
A new subscription is answered at once (a wake-up that serves only channels never sent yet,
so no channel goes faster than 1 Hz).

Channels (``{"kind": ...}`` in a subscribe message):

- snapshot kinds (``summary controls models orders positions balances trades risk health
  cob overview``): the same JSON as the REST route, whole, when it changed;
- ``candles`` (``symbol``, ``timeframe``; optional ``since_ms``, ``limit``): the first
  message is the newest ``limit`` bars (default 500) with ``"reset": true``, or, when the
  subscription gives ``since_ms`` (the open time of the chart's last bar), the bars from
  there with ``"reset": false``; every later message holds the bars from the last sent
  bar's open time on (``"reset": false``): its first bar replaces the chart's last bar and
  the rest append;
- row kinds (``decisions fills alerts``; optional ``since_ms``, ``limit``, ``symbol`` for
  decisions): first the newest rows (``"reset": true``), then only rows not sent yet;
- ``equity`` (optional ``limit``): first the curve (``"reset": true``), then the points from
  the last sent one on (the first replaces it).

Commands a node accepted are pushed to every client as ``{"type": "command", ...}``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic_core

from pivotal.apps.api.metrics import Metrics
from pivotal.apps.api.routes import MAX_ROWS, check_timeframe, resolve_symbol
from pivotal.services.cob_query import MAX_SECONDS
from pivotal.services.schemas import CommandResult, EquityPayload
from pivotal.services.view import MAX_BARS, NodeView, NotFound, QueryError, Services

__all__ = ["KINDS", "Channel", "Hub", "HubClient"]

log = logging.getLogger("pivotal.api.ws")

SNAPSHOT_KINDS = (
    "summary", "controls", "models", "orders", "positions", "balances", "trades", "risk",
    "health", "cob", "overview",
)  # fmt: skip
ROW_KINDS = ("decisions", "fills", "alerts")
KINDS = (*SNAPSHOT_KINDS, *ROW_KINDS, "candles", "equity")
#: messages a client may have waiting before it is dropped as too slow
QUEUE_LIMIT = 512
#: the close code of a client dropped for being too slow
CLOSE_TOO_SLOW = 4408
MAX_CHANNELS = 256


@dataclass(frozen=True)
class Channel:
    """What one subscription asks for; equal channels share their queries."""

    kind: str
    node: str | None
    symbol: str | None = None
    timeframe: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.node is not None:
            out["node"] = self.node
        if self.symbol is not None:
            out["symbol"] = self.symbol
        if self.timeframe is not None:
            out["timeframe"] = self.timeframe
        out.update(dict(self.options))
        return out


@dataclass
class _Cursor:
    """One client's position in one channel."""

    limit: int | None = None
    since_ms: int | None = None
    started: bool = False
    digest: bytes | None = None
    last_t: int | None = None
    seen: set[bytes] = field(default_factory=set)


class HubClient:
    """One connected WebSocket: its subscriptions and its outgoing queue."""

    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        role: str,
        close: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> None:
        self._send_text = send_text
        self._close = close
        self.role = role
        self.subs: dict[Channel, _Cursor] = {}
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.too_slow = False

    def push(self, message: bytes | str) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:  # drop the backlog, close the socket
            self.too_slow = True
            self.closed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(message.decode() if isinstance(message, bytes) else message)

    async def writer(self, metrics: Metrics) -> None:
        """Send queued messages until closed (None ends it; a client that fell too far
        behind is closed with 4408)."""
        try:
            while True:
                message = await self.queue.get()
                if message is None:
                    break
                await self._send_text(message)
                metrics.ws_sent(1)
            if self.too_slow and self._close is not None:
                await self._close(CLOSE_TOO_SLOW, "too many messages waiting: reconnect")
        except Exception:  # the socket went away: the reader sees the disconnect
            self.closed = True


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _int_option(spec: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise QueryError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


class Hub:
    """The subscriptions of every client and the poller that serves them."""

    def __init__(self, services: Services, metrics: Metrics, interval_s: float = 1.0) -> None:
        self.services = services
        self.metrics = metrics
        self.interval_s = interval_s
        self.clients: set[HubClient] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pivotal-hub")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in list(self.clients):
            client.closed = True
            client.queue.put_nowait(None)

    def connect(self, client: HubClient) -> None:
        self.clients.add(client)
        self.metrics.ws_connected(+1)

    def disconnect(self, client: HubClient) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.metrics.ws_connected(-1)
        client.closed = True
        client.queue.put_nowait(None)

    # -- messages from clients ------------------------------------------------------------
    async def handle(self, client: HubClient, text: str) -> None:
        """One message from ``client``; a bad one is answered with an error, never fatal."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            client.push(_error('the message is not JSON; send e.g. {"op": "ping"}'))
            return
        op = message.get("op") if isinstance(message, dict) else None
        if op == "ping":
            client.push('{"type":"pong"}')
        elif op in ("subscribe", "unsubscribe"):
            await self._subscription(client, message, subscribe=op == "subscribe")
        else:
            client.push(_error(f"unknown op {op!r}; use subscribe, unsubscribe or ping"))

    async def _subscription(self, client: HubClient, message: dict, *, subscribe: bool) -> None:
        specs = message.get("channels")
        if not isinstance(specs, list) or not specs:
            client.push(
                _error('give channels: a list of {"kind": ...} (kinds: ' + " ".join(KINDS) + ")")
            )
            return
        node = message.get("node")
        parsed = await asyncio.to_thread(self._parse_all, node, specs)
        done = []
        for spec, result in zip(specs, parsed, strict=True):
            if isinstance(result, Exception):
                client.push(_error(f"channel {_short(spec)}: {result}"))
                continue
            channel, cursor = result
            if subscribe:
                if channel not in client.subs and len(client.subs) >= MAX_CHANNELS:
                    client.push(_error(f"at most {MAX_CHANNELS} channels per connection"))
                    continue
                client.subs[channel] = cursor
            else:
                client.subs.pop(channel, None)
            done.append(channel.describe())
        kind = "subscribed" if subscribe else "unsubscribed"
        client.push(orjson.dumps({"type": kind, "node": node, "channels": done}))
        if subscribe and done:
            self._wake.set()

    def _parse_all(self, node: Any, specs: list[Any]) -> list[Any]:
        out: list[Any] = []
        for spec in specs:
            try:
                out.append(self._parse(node, spec))
            except (QueryError, NotFound) as exc:
                out.append(exc)
        return out

    def _parse(self, node: Any, spec: Any) -> tuple[Channel, _Cursor]:
        if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
            raise QueryError(f"kind must be one of {', '.join(KINDS)}")
        kind = spec["kind"]
        if kind == "overview":
            return Channel("overview", None), _Cursor()
        if not isinstance(node, str):
            raise QueryError('give the node\'s id: {"op": "subscribe", "node": ID, ...}')
        view = self.services.node(node)
        symbol = spec.get("symbol")
        if symbol is not None or kind in ("candles", "cob"):
            if not isinstance(symbol, str) or not symbol:
                raise QueryError(f"a {kind} channel needs a symbol, e.g. BTC/USDT")
            symbol = resolve_symbol(view, symbol)
        timeframe = None
        if kind == "candles":
            tf = spec.get("timeframe")
            if not isinstance(tf, str):
                raise QueryError("a candles channel needs a timeframe, e.g. 1m")
            timeframe = check_timeframe(tf)
        cursor = _Cursor()
        options: tuple[tuple[str, Any], ...] = ()
        if kind in ("candles", *ROW_KINDS, "equity"):
            most = MAX_BARS if kind == "candles" else MAX_ROWS
            cursor.limit = _int_option(spec, "limit", 1, most)
            cursor.since_ms = _int_option(spec, "since_ms", 0, 2**53 - 1)
        elif kind == "cob":
            options = (("seconds", _int_option(spec, "seconds", 1, MAX_SECONDS) or 300),)
        elif kind in ("orders", "trades"):
            options = (("limit", _int_option(spec, "limit", 1, MAX_ROWS) or 500),)
            if kind == "orders":
                options += (("open_only", bool(spec.get("open_only", False))),)
        return Channel(kind, node, symbol, timeframe, options), cursor

    # -- commands -------------------------------------------------------------------------
    def broadcast_command(self, result: CommandResult) -> None:
        message = (
            b'{"type":"command","node":' + orjson.dumps(result.node) + b',"payload":'
            + result.model_dump_json().encode() + b"}"
        )  # fmt: skip
        for client in list(self.clients):
            client.push(message)

    # -- the poller -----------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - loop.time()))
            self._wake.clear()
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + self.interval_s
            try:
                await self.poll(initial_only=not full)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the WebSocket poll failed; trying again in %.1f s", self.interval_s)

    async def poll(self, *, initial_only: bool = False) -> None:
        """One round: query every subscribed channel (``initial_only``: only those a client
        has not been sent yet) and push what changed."""
        plan: dict[tuple, Callable[[], Any]] = {}
        wants: list[tuple[HubClient, Channel, _Cursor, tuple]] = []
        for client in list(self.clients):
            for channel, cursor in list(client.subs.items()):
                if initial_only and cursor.started:
                    continue
                key, query = self._query(channel, cursor)
                plan.setdefault(key, query)
                wants.append((client, channel, cursor, key))
        if not plan:
            return
        self.metrics.ws_polled()
        results = await asyncio.to_thread(_run_queries, plan)
        for client, channel, cursor, key in wants:
            if client.closed or client.subs.get(channel) is not cursor:
                continue
            result = results[key]
            if isinstance(result, Exception):
                client.subs.pop(channel, None)
                client.push(_error(f"channel {_short(channel.describe())} ended: {result}"))
                continue
            message = _message(channel, cursor, result)
            if message is not None:
                client.push(message)

    def _query(self, channel: Channel, cursor: _Cursor) -> tuple[tuple, Callable[[], Any]]:
        services = self.services
        kind, options = channel.kind, dict(channel.options)

        def view() -> NodeView:
            return services.node(channel.node or "")

        if kind == "candles":
            if cursor.started:
                since, limit = cursor.last_t, MAX_BARS
            else:
                since = cursor.since_ms
                limit = MAX_BARS if since is not None else cursor.limit or 500
            sym, tf = channel.symbol or "", channel.timeframe or ""

            def candles() -> tuple[bytes, int | None]:
                payload = view().candles(sym, tf, limit=limit, since_ms=since)
                return payload.model_dump_json().encode(), max(payload.bars.t, default=None)

            return ("candles", channel, since, limit), candles
        if kind in ROW_KINDS:
            if cursor.started:
                since, limit = cursor.last_t, MAX_ROWS
            else:
                since, limit = cursor.since_ms, cursor.limit or 200

            def rows() -> list[tuple[int, bytes]]:
                v = view()
                if kind == "decisions":
                    found = v.decisions(symbol=channel.symbol, limit=limit, since_ms=since)
                elif kind == "fills":
                    found = v.fills(limit=limit, since_ms=since)
                else:
                    found = v.alerts(limit=limit, since_ms=since)
                return [(row.t, row.model_dump_json().encode()) for row in found]

            return (kind, channel, since, limit), rows
        if kind == "equity":
            limit = cursor.limit or 1000
            return ("equity", channel, limit), lambda: view().equity(limit=limit)
        getters: dict[str, Callable[[], Any]] = {
            "summary": lambda: view().summary(),
            "controls": lambda: view().controls(),
            "models": lambda: view().models(),
            "orders": lambda: view().orders(
                open_only=options.get("open_only", False), limit=options.get("limit", 500)
            ),
            "positions": lambda: view().positions(),
            "balances": lambda: view().balances(),
            "trades": lambda: view().trades(limit=options.get("limit", 500)),
            "risk": lambda: view().risk(),
            "health": lambda: view().health(),
            "cob": lambda: view().cob(channel.symbol or "", seconds=options.get("seconds", 300)),
            "overview": lambda: [v.summary() for v in services.nodes()],
        }
        getter = getters[kind]
        return ("snap", channel), lambda: pydantic_core.to_json(getter())


def _run_queries(plan: dict[tuple, Callable[[], Any]]) -> dict[tuple, Any]:
    """Every query of one tick (in a worker thread); a failing one yields its exception."""
    out: dict[tuple, Any] = {}
    for key, query in plan.items():
        try:
            out[key] = query()
        except (NotFound, QueryError, PermissionError) as exc:
            out[key] = exc
        except Exception as exc:
            log.exception("WebSocket query %s failed", key[0])
            out[key] = RuntimeError(f"the node failed to answer ({type(exc).__name__})")
    return out


def _head(channel: Channel, reset: bool | None) -> bytes:
    head: dict[str, Any] = {"type": channel.kind, "node": channel.node}
    if channel.symbol is not None:
        head["symbol"] = channel.symbol
    if channel.timeframe is not None:
        head["timeframe"] = channel.timeframe
    if reset is not None:
        head["reset"] = reset
    return orjson.dumps(head)[:-1] + b',"payload":'


def _message(channel: Channel, cursor: _Cursor, result: Any) -> bytes | None:
    """The message to push for ``result`` (updating ``cursor``), or None when unchanged."""
    kind = channel.kind
    first = not cursor.started
    if kind == "candles":
        payload, last_t = result
        digest = _digest(payload)
        if not first and digest == cursor.digest:
            return None
        cursor.started, cursor.digest = True, digest
        if last_t is not None:
            cursor.last_t = last_t
        return _head(channel, first and cursor.since_ms is None) + payload + b"}"
    if kind in ROW_KINDS:
        rows: list[tuple[int, bytes]] = result
        fresh = [
            (t, data)
            for t, data in rows
            if first or cursor.last_t is None or t > cursor.last_t
            or (t == cursor.last_t and _digest(data) not in cursor.seen)
        ]  # fmt: skip
        if not first and not fresh:
            return None
        cursor.started = True
        if fresh:
            newest = max(t for t, _ in fresh)
            if newest != cursor.last_t:
                cursor.last_t, cursor.seen = newest, set()
            cursor.seen.update(_digest(data) for t, data in fresh if t == newest)
        return _head(channel, first) + b"[" + b",".join(d for _, d in fresh) + b"]}"
    if kind == "equity":
        curve: EquityPayload = result
        data = curve.model_dump_json().encode()
        digest = _digest(data)
        if not first and digest == cursor.digest:
            return None
        cursor.started, cursor.digest = True, digest
        if not first and cursor.last_t is not None:
            i = bisect.bisect_left(curve.t, cursor.last_t)
            tail = EquityPayload(
                node=curve.node, t=curve.t[i:], equity=curve.equity[i:],
                drawdown_pct=curve.drawdown_pct[i:],
            )  # fmt: skip
            data = tail.model_dump_json().encode()
        cursor.last_t = curve.t[-1] if curve.t else cursor.last_t
        return _head(channel, first) + data + b"}"
    payload = result
    digest = _digest(payload)
    if not first and digest == cursor.digest:
        return None
    cursor.started, cursor.digest = True, digest
    return _head(channel, None) + payload + b"}"


def _error(detail: str) -> bytes:
    return orjson.dumps({"type": "error", "detail": detail})


def _short(spec: Any) -> str:
    text = orjson.dumps(spec, default=str).decode() if not isinstance(spec, str) else spec
    return text if len(text) <= 120 else text[:117] + "..."
