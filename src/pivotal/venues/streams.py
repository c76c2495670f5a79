"""The stream supervisor: one task per stream, items onto one bounded queue.

Each stream (symbol, channel) runs on its symbol's active exchange (see
:mod:`~pivotal.venues.failover`), calling ccxt's ``watch_trades``, ``watch_order_book``,
``watch_ohlcv`` or ``watch_ticker`` in a loop and turning each answer into items at the edge
(:mod:`~pivotal.venues.convert`). What each error means:

- ``InvalidNonce`` / ``ChecksumError`` (the book's sequence broke): a gap. Counted as a gap and a
  resync; the next ``watch_order_book`` makes ccxt fetch a fresh REST snapshot. After three
  resyncs in a row without a book in between, the stream also waits its backoff.
- ``RateLimitExceeded`` / ``DDoSProtection`` (HTTP 429/418): the exchange's ``Retry-After``
  (read from the client's ``last_response_headers``; the backoff when absent) closes the
  exchange's :class:`~pivotal.venues.backoff.RequestGate`: no request to it from any stream,
  back-fill or probe until then.
- Any other ``NetworkError`` (a dropped socket, a timeout, a refused connection): a
  disconnect. Counted; the stream waits its backoff (capped at the time left before a
  failover), re-subscribes through the exchange's pacer, and once the first answer is in,
  back-fills trades or candles over REST (:mod:`~pivotal.venues.backfill`) and emits those
  rows before the live ones.
- ``BadSymbol``, ``BadRequest``, ``AuthenticationError``, ``PermissionDenied``,
  ``NotSupported``, ``ArgumentsRequired`` (also: a timeframe the exchange does not serve):
  refused for good on this exchange. The stream gets state ``failed`` there, a ``failed``
  status item goes out, and it waits until its symbol moves to another exchange.
- Anything else from ccxt: counted as an error, then handled like a disconnect.

Back-pressure: items go onto ``queue`` (``StreamsConfig.queue_size``); when it is full the
stream waits for room (counted in ``backpressure_waits``). Nothing is dropped: trades and
candles would be lost, and a waiting book stream loses nothing either, since ccxt keeps the
book current and the next answer is the newest state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import suppress
from typing import Any, TypeVar

from pivotal.config.models import PivotalConfig, StreamsConfig
from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError
from pivotal.core.symbols import Symbol
from pivotal.venues.backfill import backfill_candles, backfill_trades
from pivotal.venues.backoff import (
    Backoff,
    RequestGate,
    Sleep,
    SubscriptionPacer,
    retry_after_from_headers,
)
from pivotal.venues.convert import CandleCursor, TradeCursor, book_item, int_id, ticker_item
from pivotal.venues.failover import FailoverController, FailoverPolicy
from pivotal.venues.health import HealthBook, StreamHealth
from pivotal.venues.stream_events import (
    Channel,
    ChannelKind,
    StatusItem,
    StreamItem,
    StreamKey,
    TradesItem,
)

__all__ = ["ID_TRADES", "StreamSupervisor"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ID_TRADES = {"binance": True, "bybit": True, "mexc": False}
"""Whether an exchange's stream and REST trades share integer ids (MEXC's stream has none: its
trades get synthetic ids, see :mod:`~pivotal.venues.convert`)."""

CONTIGUOUS_TRADE_IDS = frozenset({"binance"})
"""Exchanges whose trade ids count up by one per symbol: a skipped id is a lost trade, fetched
over REST before the stream's trades go on."""

RESYNCS_BEFORE_BACKOFF = 3


class _Switched:
    """The symbol's exchange changed while waiting."""


_SWITCHED = _Switched()


def _errors() -> dict[str, tuple[type[BaseException], ...]]:
    import ccxt

    return {
        "gap": (ccxt.InvalidNonce,),
        "rate": (ccxt.RateLimitExceeded, ccxt.DDoSProtection),
        "network": (ccxt.NetworkError,),
        "fatal": (
            ccxt.BadRequest,
            ccxt.AuthenticationError,
            ccxt.PermissionDenied,
            ccxt.NotSupported,
            ccxt.ArgumentsRequired,
        ),
        "closed": (ccxt.ExchangeClosedByUser,),
    }


class StreamSupervisor:
    """Runs the streams; see the module docstring.

    ``clients``: exchange id -> a ccxt.pro client (or anything with the same ``watch_*`` /
    ``fetch_*`` coroutines), e.g. from :func:`~pivotal.venues.clients.create_stream_client`.
    ``streams``: the (symbol, channel) pairs. ``policy``: the exchange order per symbol
    (default: ``config.failover`` restricted to the given clients, for every symbol).
    ``sleep``: how to wait (tests pass a fake that moves their clock). ``close_clients``:
    :meth:`stop` closes the clients (their sockets and HTTP sessions).
    """

    def __init__(
        self,
        clients: Mapping[str, Any],
        streams: Iterable[StreamKey | tuple[str | Symbol, str | Channel]],
        *,
        clock: Clock,
        config: StreamsConfig | None = None,
        policy: FailoverPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        close_clients: bool = True,
    ) -> None:
        self.config = config or StreamsConfig()
        self.clients = {k.lower(): v for k, v in clients.items()}
        self.streams = sorted(
            {s if isinstance(s, StreamKey) else StreamKey.parse(*s) for s in streams}
        )
        if not self.streams:
            raise ConfigError("no streams to run: give at least one (symbol, channel)")
        symbols = sorted({s.symbol for s in self.streams})
        if policy is None:
            order = [v for v in self.config.failover if v in self.clients]
            if not order:
                order = list(self.clients)[:1]
            policy = FailoverPolicy(order, symbols)
        missing = [v for s in symbols for v in policy.order(s)[:1] if v not in self.clients]
        if missing:
            raise ConfigError(
                f"no client for exchange(s) {sorted(set(missing))}; give one per exchange "
                "of the failover order (streams.failover)"
            )
        self.policy = policy
        self.clock = clock
        self._sleep = sleep
        self._close_clients = close_clients
        self.queue: asyncio.Queue[StreamItem] = asyncio.Queue(self.config.queue_size)
        self.health = HealthBook(clock)
        self.gates = {v: RequestGate(clock, sleep) for v in self.clients}
        for venue, client in self.clients.items():
            _gate_rest(client, self.gates[venue], clock)
        self.pacers = {
            v: SubscriptionPacer(self.config.resubscribe_per_s, clock, sleep) for v in self.clients
        }
        self.failover = FailoverController(
            policy,
            self.clients,
            config=self.config,
            clock=clock,
            sleep=sleep,
            gates=self.gates,
            emit=self._emit_status,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[_StreamRunner] = []
        self._errors = _errors()

    @classmethod
    def from_config(
        cls,
        config: PivotalConfig,
        streams: Iterable[StreamKey | tuple[str | Symbol, str | Channel]],
        *,
        clock: Clock,
        venues: Iterable[str] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> StreamSupervisor:
        """A supervisor with one :func:`~pivotal.venues.clients.create_stream_client` per
        exchange of ``venues`` (default ``config.streams.failover``, which is then every
        symbol's order), each with its ``exchanges.<id>`` settings."""
        from pivotal.venues.clients import create_stream_client

        order = [v.strip().lower() for v in (venues or config.streams.failover)]
        keys = [s if isinstance(s, StreamKey) else StreamKey.parse(*s) for s in streams]
        policy = FailoverPolicy(order, sorted({k.symbol for k in keys}))
        clients = {v: create_stream_client(v, config.exchange(v)) for v in order}
        return cls(clients, keys, clock=clock, config=config.streams, policy=policy, sleep=sleep)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start one task per stream (they subscribe at the pacer's rate)."""
        if self._tasks:
            return
        for key in self.streams:
            runner = _StreamRunner(self, key)
            self._runners.append(runner)
            task = asyncio.ensure_future(runner.run())
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("stream task failed: %r", task.exception())

    async def stop(self) -> None:
        """Cancel every stream and the probe, then close the clients."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await self.failover.stop()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        for entry in self.health.entries():
            if entry.state not in ("failed", "failed-over"):
                entry.state = "stopped"
        if self._close_clients:
            for venue, client in self.clients.items():
                close = getattr(client, "close", None)
                if close is None:
                    continue
                try:
                    await close()
                except Exception as exc:  # closing must not hide the other clients
                    log.warning("closing the %s client failed: %s", venue, exc)

    async def __aenter__(self) -> StreamSupervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every stream's health as plain dicts (see :mod:`~pivotal.venues.health`)."""
        return self.health.snapshot()

    async def items(self) -> AsyncIterator[StreamItem]:
        """The items as they come (until cancelled)."""
        while True:
            yield await self.queue.get()

    # -- shared helpers -----------------------------------------------------------------
    async def put(self, item: StreamItem, health: StreamHealth | None) -> None:
        """Queue ``item``, waiting for room when the queue is full (counted)."""
        if self.queue.full() and health is not None:
            health.backpressure_waits += 1
        await self.queue.put(item)

    async def _emit_status(self, item: StatusItem) -> None:
        await self.put(item, None)

    async def race(self, awaitable: Awaitable[T], symbol: Symbol, generation: int) -> T | _Switched:
        """``awaitable``'s result, or ``_SWITCHED`` (the awaitable cancelled) when the symbol
        switches exchange first."""
        task = asyncio.ensure_future(awaitable)
        if self.policy.generation(symbol) != generation:
            task.cancel()
            with suppress(BaseException):
                await task
            return _SWITCHED
        switch = asyncio.ensure_future(self.policy.wait_switch(symbol, generation))
        try:
            done, _ = await asyncio.wait({task, switch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            switch.cancel()
            raise
        if task in done:
            switch.cancel()
            return task.result()
        task.cancel()
        with suppress(BaseException):
            await task
        return _SWITCHED


class _StreamRunner:
    """One stream's loop (see the module docstring)."""

    def __init__(self, sup: StreamSupervisor, key: StreamKey) -> None:
        self.sup = sup
        self.key = key
        self.symbol = key.symbol
        self.channel = key.channel
        self.trade_cursors: dict[str, TradeCursor] = {}
        self.candle_cursors: dict[str, CandleCursor] = {}
        self.backoff = Backoff.from_config(sup.config, str(key))
        self._sockets: dict[str, int] | None = None  # ccxt's sockets at the last answer

    def _socket_redialled(self, client: Any) -> bool:
        """Whether a socket of ``client`` that was open at this stream's last answer has been
        replaced since without this stream seeing an error. ccxt redials silently on the next
        watch when a socket closed while nobody waited on it (the stream was busy, e.g. in a
        REST back-fill); a kline that closed meanwhile would keep its last streamed values.
        The sockets are ccxt's ``clients`` by URL; any replaced one counts (it may be another
        stream's: the price is one needless REST page)."""
        now = {url: id(ws) for url, ws in (getattr(client, "clients", None) or {}).items()}
        before, self._sockets = self._sockets, now
        if before is None:
            return False
        return any(now.get(url) != ident for url, ident in before.items())

    # -- cursors ------------------------------------------------------------------------
    def trade_cursor(self, venue: str) -> TradeCursor:
        if venue not in self.trade_cursors:
            self.trade_cursors[venue] = TradeCursor(ids=ID_TRADES.get(venue))
        return self.trade_cursors[venue]

    def candle_cursor(self, venue: str) -> CandleCursor:
        if venue not in self.candle_cursors:
            self.candle_cursors[venue] = CandleCursor()
        return self.candle_cursors[venue]

    def _resume_ms(self) -> int | None:
        """Time to back-fill from on an exchange this stream has no rows of (UTC ms)."""
        if self.channel.kind is ChannelKind.TRADES:
            times = [c.last_ms for c in self.trade_cursors.values() if c.last_ms is not None]
            return max(times) + 1 if times else None
        if self.channel.kind is ChannelKind.OHLCV:
            times = [c.newest_ms for c in self.candle_cursors.values() if c.newest_ms is not None]
            return max(times) if times else None
        return None

    # -- the loop -----------------------------------------------------------------------
    def _watch(self, client: Any) -> Awaitable[Any]:
        sym = str(self.symbol)
        kind = self.channel.kind
        if kind is ChannelKind.OHLCV:
            timeframes = getattr(client, "timeframes", None)
            if isinstance(timeframes, dict) and timeframes.get(str(self.channel.timeframe)) is None:
                import ccxt

                raise ccxt.NotSupported(
                    f"{getattr(client, 'id', 'the exchange')} has no {self.channel.timeframe} "
                    f"candles (it serves {', '.join(timeframes)})"
                )
        if kind is ChannelKind.TRADES:
            return client.watch_trades(sym)
        if kind is ChannelKind.BOOK:
            return client.watch_order_book(sym)
        if kind is ChannelKind.OHLCV:
            assert self.channel.timeframe is not None
            return client.watch_ohlcv(sym, self.channel.timeframe.value)
        return client.watch_ticker(sym)

    async def run(self) -> None:
        sup, symbol, errors = self.sup, self.symbol, self.sup._errors
        venue: str | None = None
        health: StreamHealth | None = None
        fresh = True  # the next watch (re)subscribes
        backfill = False  # the next answer waits for a REST back-fill
        attempt = 0  # disconnects since the last answer
        resyncs = 0  # gaps since the last book
        while True:
            active = sup.policy.active(symbol)
            generation = sup.policy.generation(symbol)
            if active != venue:
                if venue is not None and health is not None:
                    if health.state != "failed":
                        health.state = "failed-over"
                    if active == sup.policy.preferred(symbol):
                        health.failbacks += 1
                    else:
                        health.failovers += 1
                    backfill = True
                venue, fresh, attempt, resyncs = active, True, 0, 0
            assert venue is not None
            client = sup.clients[venue]
            health = sup.health.get(venue, symbol, self.channel)
            try:
                if fresh:
                    health.state = "connecting"
                    waited = await sup.race(self._admit(venue), symbol, generation)
                    if waited is _SWITCHED:
                        continue
                answer = await sup.race(self._watch(client), symbol, generation)
                if answer is _SWITCHED:
                    continue
                received = sup.clock.now_ms()
                sup.failover.report_up(venue)
                if attempt:
                    health.reconnects += 1
                attempt, fresh = 0, False
                health.state = "live"
                backfilled_now = backfill
                if backfill:
                    await self._backfill(venue, client, health)
                    backfill = False
                if self.channel.kind is ChannelKind.BOOK:
                    resyncs = 0
                elif self.channel.kind is ChannelKind.OHLCV:
                    if self._socket_redialled(client) and not backfilled_now:
                        # closed candles of the silent gap come from REST, not stale cache
                        await self._backfill(venue, client, health)
                elif self._trade_id_gap(venue, answer):
                    # trades the stream skipped (ccxt drops updates now and then): fetch them
                    health.gaps += 1
                    await self._backfill(venue, client, health)
                await self._emit_live(venue, answer, received, health)
            except asyncio.CancelledError:
                raise
            except errors["gap"] as exc:
                health.gaps += 1
                health.resyncs += 1
                health.last_error = _short(exc)
                resyncs += 1
                fresh = True
                if resyncs > RESYNCS_BEFORE_BACKOFF:
                    await sup.race(sup._sleep(self.backoff.delay(resyncs)), symbol, generation)
            except errors["rate"] as exc:
                health.rate_limited += 1
                health.last_error = _short(exc)
                attempt += 1
                if not getattr(exc, "_pivotal_gated", False):  # else closed at the reply
                    headers = getattr(client, "last_response_headers", None)
                    wait_s = retry_after_from_headers(headers, sup.clock.now_ms())
                    sup.gates[venue].block_for(
                        wait_s if wait_s is not None else self.backoff.delay(attempt)
                    )
                fresh = backfill = True
                health.state = "backoff"
            except errors["fatal"] as exc:
                health.state = "failed"
                health.last_error = _short(exc)
                log.error("%s on %s refused for good: %s", self.key, venue, exc)
                await sup.put(
                    StatusItem(
                        exchange=venue,
                        symbol=symbol,
                        received_ms=sup.clock.now_ms(),
                        kind="failed",
                        channel=self.channel,
                        detail=_short(exc),
                    ),
                    health,
                )
                # nothing more on this exchange; the stream resumes if the symbol moves
                await sup.policy.wait_switch(symbol, generation)
            except errors["closed"]:
                return  # the client was closed under us: shutting down
            except Exception as exc:
                if not isinstance(exc, errors["network"]):
                    health.errors += 1
                health.disconnects += 1
                health.last_error = _short(exc)
                attempt += 1
                fresh = backfill = True
                health.state = "backoff"
                sup.failover.report_down(venue)
                if await sup.failover.check(venue):
                    continue
                delay = self.backoff.delay(attempt)
                left = sup.failover.until_failover_s(venue)
                if left is not None and self._can_fail_over(venue):
                    delay = min(delay, max(left, 0.001))
                waited = await sup.race(sup._sleep(delay), symbol, generation)
                if waited is not _SWITCHED:
                    await sup.failover.check(venue)

    def _trade_id_gap(self, venue: str, answer: Any) -> bool:
        """Whether ``answer`` (ccxt trades) skips ids after the newest one emitted, on a venue
        whose trade ids are contiguous per symbol."""
        if self.channel.kind is not ChannelKind.TRADES or venue not in CONTIGUOUS_TRADE_IDS:
            return False
        last = self.trade_cursor(venue).last_id
        if last is None or not answer:
            return False
        newer = [i for t in answer if (i := int_id(t.get("id"))) is not None and i > last]
        return bool(newer) and min(newer) > last + 1

    def _can_fail_over(self, venue: str) -> bool:
        return len(self.sup.policy.order(self.symbol)) > 1

    async def _admit(self, venue: str) -> None:
        await self.sup.gates[venue].wait()
        await self.sup.pacers[venue].acquire()
        # ccxt keeps its own per-URL redial delay (growing to 30 s while an exchange is
        # down); this stream has already waited its backoff, so the dial goes now
        dial_backoff = getattr(self.sup.clients[venue], "ws_dial_backoff", None)
        if isinstance(dial_backoff, dict):
            dial_backoff.clear()

    # -- emitting -----------------------------------------------------------------------
    async def _emit_live(
        self, venue: str, answer: Any, received: int, health: StreamHealth
    ) -> None:
        sup, symbol, kind = self.sup, self.symbol, self.channel.kind
        if kind is ChannelKind.TRADES:
            batch = self.trade_cursor(venue).take(answer or [])
            event_ms = None if batch is None else int(batch.timestamp[-1])
            health.record_message(received, event_ms)
            if batch is not None:
                await sup.put(TradesItem(venue, symbol, received, batch), health)
        elif kind is ChannelKind.OHLCV:
            cursor = self.candle_cursor(venue)
            pairs = cursor.take(answer or [], final_but_last=False)
            health.record_message(received)
            health.late_rows = cursor.late
            await self._put_candles(venue, cursor, pairs, received, health, backfilled=False)
        elif kind is ChannelKind.BOOK:
            item = book_item(
                answer, exchange=venue, symbol=symbol, received_ms=received,
                depth=sup.config.book_depth,
            )  # fmt: skip
            health.record_message(received, item.time_ms)
            await sup.put(item, health)
        else:
            ticker = ticker_item(answer, exchange=venue, symbol=symbol, received_ms=received)
            health.record_message(received, ticker.time_ms)
            await sup.put(ticker, health)

    async def _put_candles(
        self,
        venue: str,
        cursor: CandleCursor,
        pairs: list[Any],
        received: int,
        health: StreamHealth,
        *,
        backfilled: bool,
    ) -> None:
        assert self.channel.timeframe is not None
        for item in cursor.items(
            pairs,
            exchange=venue,
            symbol=self.symbol,
            timeframe=self.channel.timeframe,
            received_ms=received,
            backfilled=backfilled,
        ):
            await self.sup.put(item, health)

    async def _backfill(self, venue: str, client: Any, health: StreamHealth) -> None:
        """REST back-fill on ``venue`` (see :mod:`~pivotal.venues.backfill`); emits the rows."""
        sup, kind = self.sup, self.channel.kind
        if kind not in (ChannelKind.TRADES, ChannelKind.OHLCV):
            return
        resume = self._resume_ms()
        gate = sup.gates[venue]
        limit = sup.config.backfill_page_limit
        received = sup.clock.now_ms()
        if kind is ChannelKind.TRADES:
            cursor = self.trade_cursor(venue)
            trades = await backfill_trades(
                client, venue, self.symbol, cursor, since_ms=resume, gate=gate, page_limit=limit
            )
            for batch in trades.batches:
                await sup.put(TradesItem(venue, self.symbol, received, batch, True), health)
            rows, shortfall = trades.rows, trades.shortfall
        else:
            assert self.channel.timeframe is not None
            candle_cursor = self.candle_cursor(venue)
            candles = await backfill_candles(
                client, venue, self.symbol, self.channel.timeframe, candle_cursor,
                since_ms=resume, gate=gate, page_limit=limit,
            )  # fmt: skip
            await self._put_candles(
                venue, candle_cursor, candles.pairs, received, health, backfilled=True
            )
            health.late_rows = candle_cursor.late
            rows, shortfall = candles.rows, candles.shortfall
        health.backfilled_rows += rows
        if shortfall is not None:
            health.backfill_shortfalls += 1
            await sup.put(
                StatusItem(
                    exchange=venue,
                    symbol=self.symbol,
                    received_ms=received,
                    kind="backfill_shortfall",
                    channel=self.channel,
                    detail=shortfall,
                ),
                health,
            )


def _gate_rest(client: Any, gate: RequestGate, clock: Clock) -> None:
    """Make every REST request of a ccxt ``client`` wait for ``gate``, ccxt's own ones
    included (the order-book snapshot inside ``watch_order_book``, requests already queued in
    ccxt's throttle), and close the gate for the Retry-After of a 429/418 answer the moment
    it arrives, before the error reaches the stream. Without this, requests queued before
    the stream saw the error went out inside the Retry-After (and earn a 418 ban)."""
    fetch = getattr(client, "fetch", None)
    if fetch is None or getattr(fetch, "_pivotal_gated", False):
        return
    rate = _errors()["rate"]

    async def gated_fetch(
        url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        await gate.wait()
        try:
            return await fetch(url, method, headers, body)
        except rate as exc:
            headers_in = getattr(client, "last_response_headers", None)
            wait_s = retry_after_from_headers(headers_in, clock.now_ms())
            if wait_s is not None:
                gate.block_for(wait_s)
                exc._pivotal_gated = True  # type: ignore[attr-defined]  # the stream skips it
            raise

    gated_fetch._pivotal_gated = True  # type: ignore[attr-defined]
    client.fetch = gated_fetch


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
