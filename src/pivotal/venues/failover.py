"""Which exchange serves each symbol's streams, and switching when it stays down.

:class:`FailoverPolicy` holds, per symbol, the exchanges in order of preference and the one
active now; a switch bumps the symbol's generation and wakes the streams waiting on it.

:class:`FailoverController` decides the switches:

- Streams report each disconnect (:meth:`~FailoverController.report_down`) and each message
  (:meth:`~FailoverController.report_up`). An exchange is *down* from its first disconnect
  until a stream on it gets a message again (or a probe succeeds).
- :meth:`~FailoverController.check`: when the active exchange of a symbol has been down for
  ``failover_after_s``, the symbol moves to the next exchange in its order that is not down
  (wrapping around; none: it stays and keeps retrying). Each switch is counted and emitted as
  a ``failover`` :class:`~pivotal.venues.stream_events.StatusItem`.
- While any symbol is away from its preferred exchange, a probe task calls a cheap REST
  endpoint of that exchange (``fetch_time``) every ``probe_every_s``; on success the symbols
  move back (``failback``). The streams back-fill from the exchange they move to: the new one
  from the time of their newest row, the preferred one from where its own stream stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from pivotal.config.models import StreamsConfig
from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError
from pivotal.core.symbols import Symbol
from pivotal.venues.backoff import RequestGate, Sleep
from pivotal.venues.stream_events import StatusItem

__all__ = ["FailoverController", "FailoverPolicy"]

log = logging.getLogger(__name__)


class FailoverPolicy:
    """Ordered exchanges per symbol and the active one (the first, until a switch)."""

    def __init__(
        self,
        venues: Sequence[str] | Mapping[Symbol | str, Sequence[str]],
        symbols: Iterable[Symbol | str] = (),
    ) -> None:
        """``venues``: one order for every symbol (with ``symbols`` listing them), or an order
        per symbol. Exchange ids are lower-cased; an empty or repeating order is refused."""
        orders: dict[Symbol, tuple[str, ...]] = {}
        if isinstance(venues, Mapping):
            for sym, order in venues.items():
                orders[Symbol.parse(sym)] = self._order(order, str(sym))
        else:
            order = self._order(venues, "every symbol")
            for sym in symbols:
                orders[Symbol.parse(sym)] = order
        self._orders = orders
        self._active = {sym: order[0] for sym, order in orders.items()}
        self._generation = dict.fromkeys(orders, 0)
        self._events: dict[Symbol, asyncio.Event] = {}

    @staticmethod
    def _order(order: Sequence[str], where: str) -> tuple[str, ...]:
        ids = tuple(str(v).strip().lower() for v in order)
        if not ids or len(set(ids)) != len(ids) or not all(ids):
            raise ConfigError(
                f"failover order for {where} must name at least one exchange, each once; "
                f"got {list(order)}"
            )
        return ids

    @property
    def symbols(self) -> list[Symbol]:
        return sorted(self._orders)

    def venues(self) -> list[str]:
        """Every exchange named by any order (first use order)."""
        seen: dict[str, None] = {}
        for order in self._orders.values():
            seen.update(dict.fromkeys(order))
        return list(seen)

    def _known(self, symbol: Symbol) -> Symbol:
        if symbol not in self._orders:
            raise KeyError(f"no failover order for {symbol}; known: {self.symbols}")
        return symbol

    def order(self, symbol: Symbol) -> tuple[str, ...]:
        return self._orders[self._known(symbol)]

    def preferred(self, symbol: Symbol) -> str:
        return self.order(symbol)[0]

    def active(self, symbol: Symbol) -> str:
        return self._active[self._known(symbol)]

    def generation(self, symbol: Symbol) -> int:
        """Bumped at every switch of ``symbol``."""
        return self._generation[self._known(symbol)]

    def switch(self, symbol: Symbol, venue: str) -> None:
        """Make ``venue`` (one of the symbol's order) active; wakes :meth:`wait_switch`."""
        if venue not in self.order(symbol):
            raise ValueError(f"{venue} is not in {symbol}'s failover order {self.order(symbol)}")
        if self._active[symbol] == venue:
            return
        self._active[symbol] = venue
        self._generation[symbol] += 1
        event = self._events.pop(symbol, None)
        if event is not None:
            event.set()

    async def wait_switch(self, symbol: Symbol, generation: int) -> None:
        """Return once ``symbol`` has switched after ``generation``."""
        while self.generation(symbol) == generation:
            event = self._events.get(symbol)
            if event is None:
                event = self._events[symbol] = asyncio.Event()
            await event.wait()


Emit = Callable[[StatusItem], Awaitable[None]]


class FailoverController:
    """Down tracking, switching and probing (see the module docstring)."""

    def __init__(
        self,
        policy: FailoverPolicy,
        clients: Mapping[str, Any],
        *,
        config: StreamsConfig,
        clock: Clock,
        sleep: Sleep,
        gates: Mapping[str, RequestGate],
        emit: Emit,
    ) -> None:
        self.policy = policy
        self._clients = clients
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._gates = gates
        self._emit = emit
        self._down_since: dict[str, int] = {}
        self._probe: asyncio.Task[None] | None = None
        self.failovers = 0
        self.failbacks = 0
        self.probes = 0
        self.probe_failures = 0

    # -- down tracking ------------------------------------------------------------------
    def report_down(self, venue: str) -> None:
        """A stream on ``venue`` lost its connection (the first report starts the clock)."""
        self._down_since.setdefault(venue, self._clock.now_ms())

    def report_up(self, venue: str) -> None:
        """A stream on ``venue`` got a message: it is up."""
        self._down_since.pop(venue, None)

    def is_down(self, venue: str) -> bool:
        return venue in self._down_since

    def down_for_s(self, venue: str) -> float:
        since = self._down_since.get(venue)
        return 0.0 if since is None else max(0, self._clock.now_ms() - since) / 1000

    def until_failover_s(self, venue: str) -> float | None:
        """Seconds until ``venue``'s outage reaches ``failover_after_s`` (None: not down)."""
        if venue not in self._down_since:
            return None
        return max(0.0, self._config.failover_after_s - self.down_for_s(venue))

    # -- switching ----------------------------------------------------------------------
    def _next(self, symbol: Symbol, current: str) -> str | None:
        order = self.policy.order(symbol)
        i = order.index(current)
        for venue in order[i + 1 :] + order[:i]:
            if venue in self._clients and not self.is_down(venue):
                return venue
        return None

    async def check(self, venue: str) -> bool:
        """Fail over every symbol active on ``venue`` if it has been down long enough;
        True when a switch happened."""
        if not self.is_down(venue) or self.down_for_s(venue) < self._config.failover_after_s:
            return False
        switched = False
        for symbol in self.policy.symbols:
            if self.policy.active(symbol) != venue:
                continue
            target = self._next(symbol, venue)
            if target is None:
                continue
            self.policy.switch(symbol, target)
            self.failovers += 1
            switched = True
            log.warning(
                "%s: %s down for %.1f s; streams moved to %s",
                symbol,
                venue,
                self.down_for_s(venue),
                target,
            )
            await self._emit(
                StatusItem(
                    exchange=target,
                    symbol=symbol,
                    received_ms=self._clock.now_ms(),
                    kind="failover",
                    from_exchange=venue,
                    detail=f"{venue} down for {self.down_for_s(venue):.1f} s",
                )
            )
        if switched:
            self._ensure_probe()
        return switched

    def away(self) -> dict[str, list[Symbol]]:
        """Preferred exchange -> the symbols currently served elsewhere."""
        out: dict[str, list[Symbol]] = {}
        for symbol in self.policy.symbols:
            preferred = self.policy.preferred(symbol)
            if self.policy.active(symbol) != preferred:
                out.setdefault(preferred, []).append(symbol)
        return out

    # -- probing ------------------------------------------------------------------------
    def _ensure_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._probe_loop())

    async def _probe_loop(self) -> None:
        while self.away():
            await self._sleep(self._config.probe_every_s)
            for venue, symbols in self.away().items():
                if await self.probe(venue):
                    await self._fail_back(venue, symbols)

    async def probe(self, venue: str) -> bool:
        """One cheap REST call to ``venue``; True when it answered."""
        client = self._clients.get(venue)
        if client is None:
            return False
        self.probes += 1
        gate = self._gates.get(venue)
        try:
            if gate is not None and gate.remaining_s() > 0:
                return False  # still under a Retry-After hold: not yet
            if getattr(client, "has", {}).get("fetchTime", True):
                await client.fetch_time()
            else:
                await client.load_markets(True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.probe_failures += 1
            log.debug("probe of %s failed: %s", venue, exc)
            return False
        self.report_up(venue)
        return True

    async def _fail_back(self, venue: str, symbols: list[Symbol]) -> None:
        for symbol in symbols:
            current = self.policy.active(symbol)
            if current == venue:
                continue
            self.policy.switch(symbol, venue)
            self.failbacks += 1
            log.warning("%s: %s answers again; streams moved back from %s", symbol, venue, current)
            await self._emit(
                StatusItem(
                    exchange=venue,
                    symbol=symbol,
                    received_ms=self._clock.now_ms(),
                    kind="failback",
                    from_exchange=current,
                    detail=f"{venue} answered a probe",
                )
            )

    async def stop(self) -> None:
        """Cancel the probe task."""
        task, self._probe = self._probe, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
