"""Fault injection for the local exchange: configuration, the log, REST rate limits.

:class:`FaultConfig` says which faults the server injects on its own and how often (in
**wall** seconds: faults disturb the clients, which live in wall time); :class:`FaultLog`
records every fault (injected, or a client's violation answered like the venue would)
with its wall and market time; :class:`RateLimiter` is a venue's REST request-weight
budget (Binance's fixed one-minute window, 429 + ``Retry-After`` when over it, a 418 ban
after repeated violations); :class:`FaultInjector` schedules the periodic socket faults,
picks their victims with a seeded generator and applies programmatic ``inject`` calls.

Fault kinds (the ``kind`` of a :class:`FaultRecord`):

- ``drop``: a client socket closed by the server (``drop_every_s``, ``inject("drop")``);
- ``gap``: one depth diff skipped on one connection (a sequence gap for the client);
- ``reorder``: two consecutive depth diffs swapped on one connection;
- ``delay``: messages of a connection delayed (logged once per connection);
- ``expire``: a connection closed because its lifetime (``expire_after_s``) ended;
- ``rate_limit``: a REST request answered 429; ``ban``: answered 418;
- ``ws_rate``: a connection closed for sending too many messages per second;
- ``ws_streams``: a subscription refused for exceeding the streams per connection;
- ``slow_consumer``: a connection closed because its send queue overflowed;
- ``pause``/``resume``: a venue stopped or restarted (failover tests);
- trading faults, each on one new-order request (the site asks :meth:`FaultInjector.
  take_order_fault` once per request): ``order_drop_reply`` (the order is placed, then the
  connection is closed without a reply), ``order_delay_reply`` (placed, the reply sent
  ``seconds`` later), ``order_5xx`` (HTTP 503 without acting, or after placing with
  ``after_accept``), ``order_unknown_1007`` (placed, then the venue's "timeout, execution
  status unknown" reply: Binance -1007);
- ``user_stream_drop``: a user-data socket (a subscription named ``user:...``) closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pivotal.core.clock import Clock, WallClock
from pivotal.core.errors import ConfigError

if TYPE_CHECKING:
    from pivotal.localexchange.wsconn import WsConnection

FaultKind = Literal[
    "drop",
    "gap",
    "reorder",
    "delay",
    "expire",
    "rate_limit",
    "ban",
    "ws_rate",
    "ws_streams",
    "slow_consumer",
    "pause",
    "resume",
    "order_drop_reply",
    "order_delay_reply",
    "order_5xx",
    "order_unknown_1007",
    "user_stream_drop",
]
#: Faults that act on the next new-order request(s) of a venue.
ORDER_FAULTS: tuple[str, ...] = (
    "order_drop_reply",
    "order_delay_reply",
    "order_5xx",
    "order_unknown_1007",
)
#: Kinds :meth:`FaultInjector.inject` accepts.
INJECTABLE: tuple[str, ...] = (
    "drop", "gap", "reorder", "expire", "rate_limit", "ban", *ORDER_FAULTS, "user_stream_drop",
)  # fmt: skip
#: Hub stream names of user-data (private) subscriptions start with this; the
#: ``user_stream_drop`` fault closes the connections holding one.
USER_STREAM_PREFIX = "user:"


class FaultConfig(BaseModel):
    """Which faults the server injects by itself; every period is in wall seconds.

    ``None`` disables a periodic fault. ``drop_all`` makes ``drop_every_s`` close every
    client socket of every venue instead of one chosen at random. ``delay_ms`` delays every
    WebSocket message by that many wall ms. ``weight_per_minute`` is each venue's REST
    request-weight budget per one-minute window (Binance's 6000; ``None``: unlimited);
    after ``ban_after_429`` answers of 429 in a row of windows the client is banned (418)
    for ``ban_s`` seconds, doubled on each further ban. ``expire_after_s`` is a WebSocket
    connection's lifetime (Binance: 24 h). ``max_count`` caps how many of each periodic
    kind are injected (programmatic ``inject`` calls are not capped).

    Trading: ``order_fault_every`` gives every n-th new-order request of a venue a fault,
    cycling through ``order_fault_kinds``; ``order_delay_s`` is the delay of
    ``order_delay_reply``; ``user_stream_drop_every_s`` closes every user-data socket
    periodically.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    drop_every_s: float | None = Field(default=None, gt=0)
    drop_all: bool = False
    gap_every_s: float | None = Field(default=None, gt=0)
    reorder_every_s: float | None = Field(default=None, gt=0)
    delay_ms: int = Field(default=0, ge=0)
    weight_per_minute: int | None = Field(default=6000, gt=0)
    ban_after_429: int = Field(default=3, ge=1)
    ban_s: float = Field(default=120.0, gt=0)
    expire_after_s: float | None = Field(default=None, gt=0)
    max_count: int | None = Field(default=None, ge=0)
    order_fault_every: int | None = Field(default=None, ge=1)
    order_fault_kinds: tuple[str, ...] = ("order_drop_reply", "order_5xx", "order_unknown_1007")
    order_delay_s: float = Field(default=2.0, ge=0)
    user_stream_drop_every_s: float | None = Field(default=None, gt=0)

    @field_validator("order_fault_kinds")
    @classmethod
    def _order_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in kinds if k not in ORDER_FAULTS]
        if unknown or not kinds:
            raise ValueError(
                f"order_fault_kinds must name some of {', '.join(ORDER_FAULTS)}; got "
                f"{', '.join(kinds) or 'none'}"
            )
        return kinds

    def periodic(self) -> dict[str, float]:
        """The enabled periodic socket faults: kind → period in wall seconds."""
        periods = {"drop": self.drop_every_s, "gap": self.gap_every_s}
        periods["reorder"] = self.reorder_every_s
        periods["user_stream_drop"] = self.user_stream_drop_every_s
        return {kind: period for kind, period in periods.items() if period is not None}


@dataclass(frozen=True, slots=True)
class OrderFault:
    """A fault to apply to one new-order request (see the module docstring).

    ``seconds``: the delay of ``order_delay_reply``; ``after_accept``: ``order_5xx`` after
    placing the order; ``status``: the HTTP status of ``order_unknown_1007`` (503 or 408).
    """

    kind: str
    seconds: float = 0.0
    after_accept: bool = False
    status: int = 503

    @property
    def places_order(self) -> bool:
        """Whether the order is placed before the fault hits the reply."""
        return self.kind != "order_5xx" or self.after_accept


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault: when (wall and market UTC ms), where (venue, connection, stream), what."""

    wall_ms: int
    market_ms: int
    venue: str
    kind: str
    conn_id: int | None = None
    stream: str | None = None
    detail: str = ""


class FaultLog:
    """Every fault of a run, thread-safe; ``counts()`` by kind for the CLI and tests."""

    def __init__(self, wall: Clock | None = None, market: Clock | None = None) -> None:
        self._wall = wall or WallClock()
        self._market = market
        self._lock = threading.Lock()
        self._records: list[FaultRecord] = []

    def bind_market_clock(self, market: Clock) -> None:
        """Use ``market`` for the market time of later records (the replay's clock)."""
        self._market = market

    def record(
        self,
        venue: str,
        kind: str,
        *,
        conn_id: int | None = None,
        stream: str | None = None,
        detail: str = "",
    ) -> FaultRecord:
        market_ms = self._market.now_ms() if self._market is not None else 0
        entry = FaultRecord(self._wall.now_ms(), market_ms, venue, kind, conn_id, stream, detail)
        with self._lock:
            self._records.append(entry)
        return entry

    def records(self, kind: str | None = None, venue: str | None = None) -> list[FaultRecord]:
        """The records so far, oldest first, optionally only one kind and/or venue."""
        with self._lock:
            items = list(self._records)
        return [
            r
            for r in items
            if (kind is None or r.kind == kind) and (venue is None or r.venue == venue)
        ]

    def counts(self, venue: str | None = None) -> dict[str, int]:
        """Number of records by kind (sorted by kind)."""
        counter = Counter(r.kind for r in self.records(venue=venue))
        return dict(sorted(counter.items()))

    def count(self, kind: str, venue: str | None = None) -> int:
        return len(self.records(kind, venue))

    def to_json(self, venue: str | None = None, last: int = 100) -> dict[str, Any]:
        """``{"counts", "total", "records"}`` (newest ``last`` records): the HTTP body."""
        items = self.records(venue=venue)
        return {
            "counts": dict(sorted(Counter(r.kind for r in items).items())),
            "total": len(items),
            "records": [asdict(r) for r in items[-last:]] if last > 0 else [],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """A REST request's fate: ``status`` 200 (served), 429 or 418; ``used`` weight so far."""

    status: int
    used: int
    retry_after_s: int = 0


class RateLimiter:
    """One venue's REST weight budget per fixed one-minute window (wall, monotonic).

    ``charge(weight)`` adds a request's weight. Over the budget the request is refused
    with 429 and ``Retry-After`` = seconds to the next window (its weight is not counted).
    ``ban_after`` refusals without a clean window in between ban the client: every request
    gets 418 until the ban ends (``ban_s``, doubled for each further ban).
    """

    def __init__(
        self,
        weight_per_minute: int | None,
        *,
        ban_after: int = 3,
        ban_s: float = 120.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = weight_per_minute
        self.ban_after = ban_after
        self.ban_s = ban_s
        self._now = monotonic
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self._strikes = 0
        self._bans = 0
        self._banned_until = 0.0
        self._forced_429: list[int] = []  # retry_after of queued injected 429s

    def _roll(self, now: float) -> None:
        window = int(now // 60)
        if window != self._window:
            if self._window >= 0 and window > self._window + 1:
                self._strikes = 0  # a whole clean window passed
            self._window, self._used = window, 0

    def used(self) -> int:
        with self._lock:
            self._roll(self._now())
            return self._used

    def reset_in_s(self) -> float:
        """Wall seconds until the current one-minute window ends (and the weight resets)."""
        with self._lock:
            now = self._now()
            self._roll(now)
            return (self._window + 1) * 60 - now

    def charge(self, weight: int) -> Verdict:
        with self._lock:
            now = self._now()
            self._roll(now)
            if now < self._banned_until:
                return Verdict(418, self._used, max(1, math.ceil(self._banned_until - now)))
            if self._forced_429:
                return Verdict(429, self._used, self._forced_429.pop(0))
            if self.limit is not None and self._used + weight > self.limit:
                self._strikes += 1
                if self._strikes >= self.ban_after:
                    return self._ban(now, None)
                return Verdict(429, self._used, max(1, math.ceil((self._window + 1) * 60 - now)))
            self._used += weight
            return Verdict(200, self._used)

    def _ban(self, now: float, seconds: float | None) -> Verdict:
        length = seconds if seconds is not None else self.ban_s * (2**self._bans)
        self._bans += 1
        self._strikes = 0
        self._banned_until = now + length
        return Verdict(418, self._used, max(1, math.ceil(length)))

    def force_429(self, count: int = 1, retry_after_s: int = 1) -> None:
        """Refuse the next ``count`` requests with 429 (tests)."""
        with self._lock:
            self._forced_429.extend([retry_after_s] * count)

    def force_ban(self, seconds: float) -> None:
        """Ban the client for ``seconds`` from now (tests)."""
        with self._lock:
            self._ban(self._now(), seconds)

    def lift(self) -> None:
        """End a ban and forget the strikes and queued 429s (tests)."""
        with self._lock:
            self._banned_until = 0.0
            self._strikes = 0
            self._forced_429.clear()


class FaultInjector:
    """Schedules the periodic socket faults of :class:`FaultConfig` and applies ``inject``.

    Venues register a callable listing their live connections (:meth:`register_venue`).
    Victims are chosen with ``random.Random(seed)`` over the connections sorted by venue and
    id, so the same sequence of connections sees the same faults. Runs in the server's loop.
    """

    def __init__(self, config: FaultConfig, log: FaultLog, *, seed: int = 0) -> None:
        self.config = config
        self.log = log
        self._rng = random.Random(seed)
        self._venues: dict[str, Callable[[], Sequence[WsConnection]]] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._scheduled: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_id = 0
        self._order_faults: dict[str, deque[OrderFault]] = {}
        self._order_requests: Counter[str] = Counter()

    def next_conn_id(self) -> int:
        """A new connection id (1, 2, ... across all venues of the server)."""
        self._next_id += 1
        return self._next_id

    def register_venue(
        self, venue: str, connections: Callable[[], Sequence[WsConnection]]
    ) -> RateLimiter:
        """Make ``venue``'s connections targets; returns the venue's REST rate limiter."""
        self._venues[venue] = connections
        cfg = self.config
        limiter = RateLimiter(cfg.weight_per_minute, ban_after=cfg.ban_after_429, ban_s=cfg.ban_s)
        self._limiters[venue] = limiter
        return limiter

    def limiter(self, venue: str) -> RateLimiter:
        return self._limiters[venue]

    # -- periodic faults ------------------------------------------------------------------
    def start(self) -> None:
        """Start one task per enabled periodic fault (call inside the running loop)."""
        for kind, period in self.config.periodic().items():
            self._tasks.append(asyncio.ensure_future(self._every(kind, period)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _every(self, kind: str, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            cap = self.config.max_count
            if cap is not None and self._scheduled[kind] >= cap:
                return
            if kind == "drop" and self.config.drop_all:
                hit = len(self._targets(None, None, depth_only=False))
                await self._apply("drop", None, None, every=True)
            elif kind == "user_stream_drop":
                hit = await self._drop_user_streams(None)
            else:
                hit = await self._apply(kind, None, None, every=False)
            if hit:
                self._scheduled[kind] += 1

    # -- programmatic ---------------------------------------------------------------------
    async def inject(
        self,
        kind: str,
        *,
        venue: str | None = None,
        conn_id: int | None = None,
        every: bool = False,
        count: int = 1,
        retry_after_s: int = 1,
        seconds: float | None = None,
        after_accept: bool = False,
        status: int = 503,
    ) -> int:
        """Inject one fault now; returns how many connections (or requests) it affects.

        ``drop``/``gap``/``reorder``/``expire``: on connection ``conn_id`` of ``venue``, or
        one picked with the seeded generator (``every=True``: all matching connections);
        ``gap``/``reorder`` only pick connections with a depth subscription and act on their
        next depth message(s). ``rate_limit``: the next ``count`` REST requests of ``venue``
        get 429 with ``Retry-After: retry_after_s``; ``ban``: 418 for ``seconds`` (default
        60). The order faults (:data:`ORDER_FAULTS`) apply to the next ``count`` new-order
        requests of ``venue`` (every venue when None): ``seconds`` is the delay of
        ``order_delay_reply`` (default ``order_delay_s``), ``after_accept`` makes
        ``order_5xx`` place the order first, ``status`` is ``order_unknown_1007``'s HTTP
        status (503 or 408). ``user_stream_drop`` closes every user-data socket of ``venue``.
        """
        if kind not in INJECTABLE:
            raise ConfigError(f"unknown fault kind {kind!r}; use one of {', '.join(INJECTABLE)}")
        if kind in ORDER_FAULTS:
            if count < 1:
                raise ConfigError(f"count must be at least 1 for {kind}, got {count}")
            if status not in (408, 503):
                raise ConfigError(f"status of {kind} must be 408 or 503, got {status}")
            delay = self.config.order_delay_s if seconds is None else seconds
            fault = OrderFault(kind, delay, after_accept, status)
            for name in self._venue_names(venue, kind):
                self._order_faults.setdefault(name, deque()).extend([fault] * count)
            return count
        if kind == "user_stream_drop":
            self._venue_names(venue, kind)
            return await self._drop_user_streams(venue)
        if seconds is None:
            seconds = 60.0
        if kind in ("rate_limit", "ban"):
            names = [venue] if venue is not None else sorted(self._limiters)
            for name in names:
                if name not in self._limiters:
                    raise ConfigError(f"unknown venue {name!r} for fault {kind!r}")
                if kind == "rate_limit":
                    self._limiters[name].force_429(count, retry_after_s)
                else:
                    self._limiters[name].force_ban(seconds)
            return count if kind == "rate_limit" else len(names)
        return await self._apply(kind, venue, conn_id, every=every)

    def _venue_names(self, venue: str | None, kind: str) -> list[str]:
        names = [venue] if venue is not None else sorted(self._venues)
        for name in names:
            if name not in self._venues:
                raise ConfigError(f"unknown venue {name!r} for fault {kind!r}")
        return names

    def take_order_fault(self, venue: str, detail: str = "") -> OrderFault | None:
        """The fault for this new-order request of ``venue``, or None; logged when one.

        Call once per new-order request, before acting on it: injected faults first, then
        every ``order_fault_every``-th request a configured one (cycling through
        ``order_fault_kinds``, capped by ``max_count``).
        """
        self._order_requests[venue] += 1
        queued = self._order_faults.get(venue)
        fault: OrderFault | None = None
        if queued:
            fault = queued.popleft()
        else:
            every, cap = self.config.order_fault_every, self.config.max_count
            if every is not None and self._order_requests[venue] % every == 0:
                kinds = self.config.order_fault_kinds
                kind = kinds[(self._order_requests[venue] // every - 1) % len(kinds)]
                if cap is None or self._scheduled[kind] < cap:
                    self._scheduled[kind] += 1
                    fault = OrderFault(kind, self.config.order_delay_s)
        if fault is not None:
            extra = " after accepting" if fault.after_accept else ""
            self.log.record(venue, fault.kind, detail=f"{detail}{extra}".strip())
        return fault

    async def _drop_user_streams(self, venue: str | None) -> int:
        targets = [
            conn
            for conn in self._targets(venue, None, depth_only=False)
            if any(s.startswith(USER_STREAM_PREFIX) for s in conn.streams)
        ]
        for conn in targets:
            self.log.record(
                conn.venue, "user_stream_drop", conn_id=conn.conn_id, detail="closed by server"
            )
            await conn.close(code=1001, reason="user_stream_drop")
        return len(targets)

    def _targets(self, venue: str | None, conn_id: int | None, *, depth_only: bool) -> list[Any]:
        found = []
        for name in sorted(self._venues):
            if venue is not None and name != venue:
                continue
            for conn in sorted(self._venues[name](), key=lambda c: c.conn_id):
                if conn.closed or (conn_id is not None and conn.conn_id != conn_id):
                    continue
                if depth_only and not conn.has_depth():
                    continue
                found.append(conn)
        return found

    async def _apply(
        self, kind: str, venue: str | None, conn_id: int | None, *, every: bool
    ) -> int:
        targets = self._targets(venue, conn_id, depth_only=kind in ("gap", "reorder"))
        if not targets:
            return 0
        chosen = targets if every else [targets[self._rng.randrange(len(targets))]]
        for conn in chosen:
            if kind == "gap":
                conn.arm_gap()
            elif kind == "reorder":
                conn.arm_reorder()
            else:  # drop, expire: logged here, the close happens in the connection
                self.log.record(conn.venue, kind, conn_id=conn.conn_id, detail="closed by server")
                await conn.close(code=1000 if kind == "expire" else 1001, reason=kind)
        return len(chosen)
