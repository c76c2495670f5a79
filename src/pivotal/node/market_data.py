"""The node's market data edge: the Stage 9 collector on its own asyncio thread.

:class:`MarketDataThread` runs a :class:`~pivotal.venues.collector.Collector` (streams,
pipelines, batched store writes) in an event loop on a daemon thread and publishes every
candle, trade batch, COB snapshot and book to the node's
:class:`~pivotal.runtime.pushed_feed.PushedFeed`; the trading loop consumes that feed on the
main thread. :meth:`MarketDataThread.start` returns once every exchange listed its markets
(or raises the collector's refusal: an endpoint nobody answers on, an unlisted symbol);
:meth:`MarketDataThread.stop` stops the streams, writes what was received and closes the feed
so the loop ends after draining it. :meth:`MarketDataThread.pause` stops the streams without
closing the feed (the loop keeps ticking on the feed's heartbeats, so a running node still
takes commands) and :meth:`MarketDataThread.resume` starts them again on a fresh thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from pivotal.config.models import StreamsConfig
from pivotal.core.clock import Clock
from pivotal.core.errors import OperationalError
from pivotal.data.store import MarketDataStore
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.venues.collector import CollectConfig, Collector, CollectReport

__all__ = ["MarketDataThread"]


class MarketDataThread:
    """The collector on a thread of its own (module docstring).

    ``clients`` is called inside the thread's event loop and returns exchange id → ccxt.pro
    client (ccxt clients belong to the loop that made them). ``store`` receives the collected
    rows; with ``owns_store`` it is closed at :meth:`stop`.
    """

    def __init__(
        self,
        store: MarketDataStore,
        clients: Callable[[], Mapping[str, Any]],
        config: CollectConfig,
        feed: PushedFeed,
        *,
        clock: Clock,
        streams: StreamsConfig | None = None,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.owns_store = owns_store
        self.clients = clients
        self.config = config
        self.feed = feed
        self.clock = clock
        self.streams = streams
        self.report: CollectReport | None = None
        self.error: BaseException | None = None
        self.collector: Collector | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready: Future[None] = Future()
        self._pausing = False  # the thread is being stopped by pause(): keep the feed open

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._pausing

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``stopped`` (not started or ended) or ``error``."""
        if self._pausing:
            return "paused"
        if self.error is not None:
            return "error"
        thread = self._thread
        return "running" if thread is not None and thread.is_alive() else "stopped"

    def start(self, timeout_s: float = 60.0) -> MarketDataThread:
        """Start the streams; returns once the markets are listed (raises what stopped it)."""
        self._thread = threading.Thread(target=self._run, name="pivotal-market-data", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout_s)
        except TimeoutError:
            self.stop()
            raise OperationalError(
                f"the market data streams did not start within {timeout_s:g} s"
            ) from None
        return self

    def pause(self, timeout_s: float = 30.0) -> bool:
        """Stop the streams (what was received is written) but keep the feed open; False when
        they were not running. The caller's loop sees heartbeats until :meth:`resume`."""
        thread = self._thread
        if self._pausing or thread is None or not thread.is_alive():
            return False
        self._pausing = True
        self._signal_stop()
        thread.join(timeout_s)
        return True

    def resume(self) -> bool:
        """Start the streams again after :meth:`pause` (returns at once; the new thread lists
        the markets and reconnects on its own); False when they were not paused."""
        if not self._pausing:
            return False
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(30.0)  # the paused run is still writing what it received
        self._pausing = False
        self.error = None
        self._ready = Future()
        self._thread = threading.Thread(target=self._run, name="pivotal-market-data", daemon=True)
        self._thread.start()
        return True

    def _signal_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(stop.set)

    def health(self) -> dict[str, Any]:
        """The collector's health snapshot (empty before it started)."""
        collector = self.collector
        return {} if collector is None else collector.health()

    def stop(self, timeout_s: float = 30.0) -> CollectReport | None:
        """Stop the streams, write everything received, close the feed; the collector's report."""
        self._pausing = False
        self._signal_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.feed.close()
        if self.owns_store and (self._thread is None or not self._thread.is_alive()):
            self.store.close()
        return self.report

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or kept for the node to show
            self.error = exc
            if not self._ready.done():
                self._ready.set_exception(exc)
        finally:
            if not self._pausing:
                self.feed.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        collector = Collector(
            self.store,
            self.clients(),
            self.config,
            clock=self.clock,
            streams=self.streams,
            feed=self.feed,
        )
        self.collector = collector

        def started() -> None:
            if not self._ready.done():
                self._ready.set_result(None)

        self.report = await collector.run(stop=self._stop, started=started)
