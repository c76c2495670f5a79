"""The local exchange: venue sites on their own ports, one replayer, one event loop.

:class:`LocalExchange` is the asyncio object (``await start()``/``await stop()``);
:class:`LocalExchangeThread` runs one in a background thread with its own loop for
synchronous tests and the CLI. Every flow's symbol is listed on every served venue; the
flows are replayed at ``ServeConfig.speed`` (or stepped by :meth:`LocalExchange.advance_to`
in ``mode="manual"``) and each event goes to every venue site after it was applied to the
symbol's :class:`~pivotal.localexchange.market.MarketState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.localexchange.config import ServeConfig, VenueUrls
from pivotal.localexchange.engine import MatchingEngine
from pivotal.localexchange.faults import FaultInjector, FaultLog
from pivotal.localexchange.flow import SymbolFlow
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.replayer import MarketClock, Replayer
from pivotal.localexchange.venue import VenueContext, VenueSite

T = TypeVar("T")


def site_class(venue: str) -> type[VenueSite]:
    """The :class:`VenueSite` subclass of ``venue`` (module ``pivotal.localexchange.<venue>``)."""
    try:
        module = importlib.import_module(f"pivotal.localexchange.{venue}")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"venue {venue!r} has no site module ({exc})") from exc
    cls = getattr(module, "Site", None)
    if not (isinstance(cls, type) and issubclass(cls, VenueSite)):
        raise ConfigError(f"pivotal.localexchange.{venue} defines no VenueSite as `Site`")
    return cls


class LocalExchange:
    """Serves ``flows`` on the venues of ``config``; build, ``await start()``, ``await stop()``.

    ``wall`` is the clock of the fault log's wall times (default: the machine's).
    """

    def __init__(
        self,
        flows: Sequence[SymbolFlow],
        config: ServeConfig | None = None,
        *,
        wall: Clock | None = None,
    ) -> None:
        if not flows:
            raise ConfigError("the local exchange needs at least one flow to serve")
        symbols = [flow.symbol for flow in flows]
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"two flows for the same symbol in {', '.join(map(str, symbols))}")
        self.config = config or ServeConfig()
        self.flows = list(flows)
        self.clock = MarketClock(min(flow.start_ms for flow in flows))
        self.fault_log = FaultLog(wall=wall, market=self.clock)
        self.faults = FaultInjector(self.config.faults, self.fault_log, seed=self.config.seed)
        self._markets: dict[Symbol, MarketState] = {
            flow.symbol: MarketState(flow) for flow in flows
        }
        self.sites: dict[str, VenueSite] = {}
        for venue in self.config.venues:
            ctx = VenueContext(
                venue,
                self._markets,
                self.clock,
                self.fault_log,
                self.faults,
                self.config,
                {flow.symbol: flow for flow in flows},
            )
            self.sites[venue] = site_class(venue)(ctx)
        sinks: list[Any] = [*self.sites.values(), *(s.engine for s in self.sites.values())]
        self.replayer = Replayer(self.flows, self._markets, sinks, self.clock)
        self._task: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every venue's port and start the replay (paced mode) and the faults."""
        if self._started:
            return
        try:
            for venue, site in self.sites.items():
                await site.start(self.config.ports.get(venue, 0))
        except OSError as exc:
            await self.stop()
            raise OperationalError(
                f"cannot bind the local exchange on {self.config.host}: {exc}; choose other "
                "ports (0 = any free port)"
            ) from exc
        self._started = True
        self.faults.start()
        if self.config.mode == "paced":
            self._task = asyncio.ensure_future(self.replayer.run(self.config.speed))

    async def stop(self) -> None:
        """Stop the replay and the faults, close every connection and port."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.faults.stop()
        for site in self.sites.values():
            await site.stop()
        self._started = False

    async def __aenter__(self) -> LocalExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control --------------------------------------------------------------------------
    def urls(self) -> dict[str, VenueUrls]:
        """Each venue's REST and WS base URLs (after :meth:`start`)."""
        return {venue: site.urls() for venue, site in self.sites.items()}

    def market(self, symbol: str | Symbol) -> MarketState:
        key = symbol if isinstance(symbol, Symbol) else Symbol.resolve(symbol, self._markets)
        try:
            return self._markets[key]
        except KeyError:
            raise ConfigError(
                f"symbol {key} is not served; served: {', '.join(map(str, self._markets))}"
            ) from None

    @property
    def markets(self) -> Mapping[Symbol, MarketState]:
        return self._markets

    def now_ms(self) -> int:
        """The market time (UTC ms)."""
        return self.clock.now_ms()

    def _site(self, venue: str) -> VenueSite:
        try:
            return self.sites[venue]
        except KeyError:
            raise ConfigError(
                f"venue {venue!r} is not served; served: {', '.join(self.sites)}"
            ) from None

    async def pause(self, venue: str) -> None:
        """Make ``venue`` unreachable: sockets closed, connections refused, until resumed."""
        await self._site(venue).pause()

    async def resume(self, venue: str) -> None:
        await self._site(venue).resume()

    async def advance_to(self, market_ms: int) -> None:
        """Replay up to ``market_ms`` now (manual mode), then let the sockets flush."""
        if self.config.mode != "manual":
            raise ConfigError("advance_to needs ServeConfig(mode='manual'); the replay is paced")
        self.replayer.step_to(market_ms)
        await asyncio.sleep(0)

    async def inject(self, kind: str, **options: Any) -> int:
        """Inject a fault now (see :meth:`FaultInjector.inject`); returns what it affected."""
        return await self.faults.inject(kind, **options)

    def engine(self, venue: str) -> MatchingEngine:
        """``venue``'s matching engine (its account: orders, fills, balances)."""
        return self._site(venue).engine

    def record(self, venue: str) -> dict[str, Any]:
        """``venue``'s authoritative record: ``{"orders", "fills", "balances"}`` (see
        :meth:`MatchingEngine.record`); call it in the exchange's loop."""
        return self._site(venue).engine.record()

    @property
    def finished(self) -> bool:
        """Whether every flow has been replayed."""
        return self.replayer.finished


class LocalExchangeThread:
    """A :class:`LocalExchange` in a background thread with its own event loop.

    A context manager: ``with LocalExchangeThread(flows, config) as ex: ex.urls["binance"]``.
    Control methods block until the loop has done them.
    """

    def __init__(
        self,
        flows: Sequence[SymbolFlow],
        config: ServeConfig | None = None,
        *,
        wall: Clock | None = None,
    ) -> None:
        self.exchange = LocalExchange(flows, config, wall=wall)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> LocalExchangeThread:
        if self._thread is not None:
            return self
        ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="local-exchange", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=timeout_s)
        except BaseException:
            self._join()
            raise
        return self

    def _run(self, ready: Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.exchange.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(self.exchange.stop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        """Stop the exchange and the thread (idempotent)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> LocalExchangeThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run ``coro`` in the exchange's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise OperationalError("the local exchange thread is not running; start() it first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    @property
    def urls(self) -> dict[str, VenueUrls]:
        return self.exchange.urls()

    @property
    def fault_log(self) -> FaultLog:
        return self.exchange.fault_log

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def now_ms(self) -> int:
        return self.exchange.now_ms()

    def pause(self, venue: str) -> None:
        self.call(self.exchange.pause(venue))

    def resume(self, venue: str) -> None:
        self.call(self.exchange.resume(venue))

    def advance_to(self, market_ms: int) -> None:
        self.call(self.exchange.advance_to(market_ms))

    def inject(self, kind: str, **options: Any) -> int:
        return self.call(self.exchange.inject(kind, **options))

    def record(self, venue: str) -> dict[str, Any]:
        """``venue``'s record (:meth:`LocalExchange.record`), read in the exchange's loop."""

        async def read() -> dict[str, Any]:
            return self.exchange.record(venue)

        return self.call(read())
