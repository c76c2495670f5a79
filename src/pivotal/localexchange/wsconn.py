"""WebSocket connections of the local exchange and the stream fan-out.

A :class:`WsConnection` wraps one accepted aiohttp WebSocket: its subscriptions, a send
queue drained by its own writer task (so one slow client never stalls the replay), the
per-connection faults (a skipped or two swapped depth diffs, delayed messages) and its
close. :class:`StreamHub` maps stream names to subscribed connections and fans a message
out: the caller renders the bytes once per *variant* (e.g. Binance's raw ``/ws`` payload
vs the ``/stream`` envelope) and every subscriber of that variant gets the same object.

Messages are ``str`` (a text frame) or ``bytes`` (text frame unless ``binary=True``, e.g.
MEXC's protobuf). Delays use the loop's monotonic clock: this is the pacing edge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from pivotal.localexchange.faults import FaultLog

#: A message kind that the gap/reorder faults act on (order-book diffs).
DEPTH = "depth"
#: Queued messages after which a connection is closed as a slow consumer.
MAX_QUEUED = 100_000

Payload = str | bytes


class WsConnection:
    """One client socket: subscriptions, a send queue, per-connection faults.

    ``variant`` names the message format this connection receives (chosen by the site
    when it accepts the socket, e.g. ``"raw"`` or ``"combined"``). ``send`` never blocks:
    it queues; the writer task sends in order, ``delay_ms`` after queuing.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        conn_id: int,
        venue: str,
        variant: str = "",
        delay_ms: int = 0,
        log: FaultLog | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.venue = venue
        self.variant = variant
        self.streams: set[str] = set()
        self.delay_ms = delay_ms
        self.sent = 0
        self.received = 0
        self._log = log
        self._max_queued = max_queued
        self._queue: asyncio.Queue[tuple[float, bytes, WSMsgType] | None] = asyncio.Queue()
        self._gaps = 0
        self._reorders = 0
        self._held: tuple[bytes, WSMsgType, str | None] | None = None
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._rate_window = -1
        self._rate_count = 0

    # -- state ----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closing or self.ws.closed

    def has_depth(self) -> bool:
        """Whether the connection has a depth (order-book diff) subscription."""
        return any("depth" in s or "orderbook" in s.lower() for s in self.streams)

    def start(self) -> None:
        """Start the writer task (the site calls this once the socket is prepared)."""
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())
            if self.delay_ms > 0 and self._log is not None:
                self._record("delay", None, f"{self.delay_ms} ms on every message")

    def count_incoming(self, limit_per_s: int | None) -> bool:
        """Count one incoming message; False when it exceeds ``limit_per_s`` this second."""
        self.received += 1
        if limit_per_s is None:
            return True
        second = int(self._loop.time())
        if second != self._rate_window:
            self._rate_window, self._rate_count = second, 0
        self._rate_count += 1
        return self._rate_count <= limit_per_s

    # -- faults ---------------------------------------------------------------------------
    def arm_gap(self, count: int = 1) -> None:
        """Skip the next ``count`` depth messages (each logged as a ``gap``)."""
        self._gaps += count

    def arm_reorder(self, count: int = 1) -> None:
        """Swap the next ``count`` pairs of consecutive depth messages (``reorder``)."""
        self._reorders += count

    def _record(self, kind: str, stream: str | None, detail: str = "") -> None:
        if self._log is not None:
            self._log.record(self.venue, kind, conn_id=self.conn_id, stream=stream, detail=detail)

    # -- sending --------------------------------------------------------------------------
    def send(
        self, data: Payload, *, binary: bool = False, stream: str | None = None, kind: str = ""
    ) -> bool:
        """Queue one message; False when the connection is closing (nothing queued)."""
        if self.closed:
            return False
        raw = data.encode() if isinstance(data, str) else data
        opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT
        if kind == DEPTH:
            if self._gaps > 0:
                self._gaps -= 1
                self._record("gap", stream, "one depth diff skipped")
                return True
            if self._held is not None:
                held, self._held = self._held, None
                self._put(raw, opcode)
                self._put(held[0], held[1])
                self._record("reorder", stream, "two depth diffs swapped")
                return True
            if self._reorders > 0:
                self._reorders -= 1
                self._held = (raw, opcode, stream)
                return True
        self._put(raw, opcode)
        return True

    def _put(self, raw: bytes, opcode: WSMsgType) -> None:
        if self._queue.qsize() >= self._max_queued:
            self._record("slow_consumer", None, f"{self._max_queued} messages queued")
            self.close_soon(1008, "slow consumer")
            return
        due = self._loop.time() + self.delay_ms / 1000 if self.delay_ms else 0.0
        self._queue.put_nowait((due, raw, opcode))

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                due, raw, opcode = item
                if due:
                    wait = due - self._loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if self.ws.closed:
                    return
                await self.ws.send_frame(raw, opcode)
                self.sent += 1
        except (ConnectionError, RuntimeError):
            self._closing = True  # the client went away; the reader ends the connection

    # -- closing --------------------------------------------------------------------------
    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Close from synchronous code (schedules :meth:`close`)."""
        if not self._closing:
            self._closing = True
            self._loop.create_task(self._close(code, reason))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Stop sending and close the socket with ``code``/``reason``."""
        self._closing = True
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        self._queue.put_nowait(None)
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode()[:120])

    async def finished(self) -> None:
        """Called when the reader ends: stop the writer."""
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer


class StreamHub:
    """Stream name → subscribed connections, and the fan-out of one message to them."""

    def __init__(self) -> None:
        self._subs: dict[str, dict[int, WsConnection]] = {}

    def subscribe(self, conn: WsConnection, stream: str) -> None:
        self._subs.setdefault(stream, {})[conn.conn_id] = conn
        conn.streams.add(stream)

    def unsubscribe(self, conn: WsConnection, stream: str) -> None:
        subs = self._subs.get(stream)
        if subs is not None:
            subs.pop(conn.conn_id, None)
            if not subs:
                del self._subs[stream]
        conn.streams.discard(stream)

    def drop(self, conn: WsConnection) -> None:
        """Forget every subscription of ``conn`` (it closed)."""
        for stream in list(conn.streams):
            self.unsubscribe(conn, stream)

    def has(self, stream: str) -> bool:
        """Whether anyone listens to ``stream`` (skip rendering when not)."""
        return stream in self._subs

    def subscribers(self, stream: str) -> Iterable[WsConnection]:
        return tuple(self._subs.get(stream, {}).values())

    def streams(self) -> list[str]:
        return sorted(self._subs)

    def publish(
        self,
        stream: str,
        render: Callable[[str], Payload],
        *,
        binary: bool = False,
        kind: str = "",
    ) -> int:
        """Send ``render(variant)`` to each subscriber; rendered once per variant.

        Returns the number of connections the message was queued on.
        """
        subs = self._subs.get(stream)
        if not subs:
            return 0
        cache: dict[str, bytes] = {}
        sent = 0
        for conn in tuple(subs.values()):
            data = cache.get(conn.variant)
            if data is None:
                rendered = render(conn.variant)
                data = rendered.encode() if isinstance(rendered, str) else rendered
                cache[conn.variant] = data
            if conn.send(data, binary=binary, stream=stream, kind=kind):
                sent += 1
        return sent
