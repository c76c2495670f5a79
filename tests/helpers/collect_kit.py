"""A collector recording from the local exchange over 127.0.0.1, for the Stage 9 integration
tests (``tests/venues/test_collect_*.py``).

:class:`CollectRig` runs, in the test's event loop, a :class:`LocalExchange` in manual mode
(the market moves only when the rig advances it), real ``ccxt.pro`` clients pointed at it
and a :class:`Collector` writing to a DuckDB store. The rig paces the market itself
(:meth:`CollectRig.play`: ``speed`` market ms per wall ms, in steps of ``STEP_WALL_S``), so
a test decides exactly when a fault is injected relative to the clients' state
(:meth:`CollectRig.settle` waits until nothing is in flight). Real candles come from
``../shared/data`` (:func:`real_candles`) and become a synthetic book and trade flow
(:func:`candle_flow`); :func:`flow_trades` is the flow's own trades, the oracle.

:meth:`CollectRig.settle` waits for more than quiet sockets: every stream must be parked in
a ccxt watch (:meth:`CollectRig.waiting`). A stream that is busy (a REST back-fill, which
ccxt's throttle can stretch to seconds) does not notice its socket closing: ccxt rejects
only pending waits, and the next ``watch_*`` silently dials a new socket.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from pivotal.config.models import ExchangeConfig, StreamsConfig
from pivotal.core.candles import Candles
from pivotal.core.clock import WallClock
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.data.duckdb_store import DuckDBStore, open_store
from pivotal.data.series import SeriesKey
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.faults import FaultConfig
from pivotal.localexchange.flow import SymbolFlow, TradePrint
from pivotal.localexchange.server import LocalExchange
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.venues.clients import create_stream_client
from pivotal.venues.collector import CollectConfig, Collector, CollectReport
from pivotal.venues.health import StreamHealth
from pivotal.venues.stream_events import Channel

MINUTE = 60_000
#: Wall seconds per pacing step of :meth:`CollectRig.play`.
STEP_WALL_S = 0.05
#: Reconnects within tens of ms, so a replay at 20x loses little market time to each.
FAST_STREAMS = StreamsConfig(
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    resubscribe_per_s=20,
    failover_after_s=1.0,
    probe_every_s=0.2,
)


def real_candles(base: str, start_ms: int, minutes: int) -> Candles:
    """``minutes`` real Binance spot 1m candles of ``<base>/USDT`` opening from ``start_ms``
    (``../shared/data/ohlcv/binance-spot/1m``); skips the test when the data is absent."""
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    path = data / "ohlcv" / "binance-spot" / "1m" / f"{base}_USDT-1m.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared data")
    end = start_ms + minutes * MINUTE
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    table = pq.read_table(
        path, columns=columns, filters=[("timestamp", ">=", start_ms), ("timestamp", "<", end)]
    )
    table = table.sort_by("timestamp")
    candles = Candles.from_arrow(table)
    assert len(candles) == minutes, f"{base}: {len(candles)} of {minutes} candles in the file"
    return candles


def candle_flow(
    base: str, start_ms: int, minutes: int, *, seed: int, trades_per_candle: int = 60
) -> tuple[SymbolFlow, Candles]:
    """A seeded synthetic flow replaying ``minutes`` real 1m candles, and the candles."""
    candles = real_candles(base, start_ms, minutes)
    flow = synthetic_flow(
        candles, "1m", f"{base}/USDT", seed=seed, trades_per_candle=trades_per_candle
    )
    return flow, candles


def flow_trades(flow: SymbolFlow, until_ms: int) -> Trades:
    """The flow's trades with ``time_ms <= until_ms``, in order (what the venue printed)."""
    rows = [e for e in flow.events() if type(e) is TradePrint and e.time_ms <= until_ms]
    return Trades(
        np.array([t.time_ms for t in rows], dtype=np.int64),
        np.array([t.price for t in rows]),
        np.array([t.qty for t in rows]),
        np.array([t.buyer_maker for t in rows], dtype=bool),
        np.array([t.trade_id for t in rows], dtype=np.int64),
    )


def client_stream(name: str) -> tuple[str, str]:
    """The (symbol, channel) of a Binance stream name: ``btcusdt@depth@100ms`` →
    ``("BTC/USDT", "book")``."""
    market, _, kind = name.partition("@")
    symbol = str(Symbol.parse(market.upper()[:-4] + "/USDT"))
    if kind.startswith("depth"):
        return symbol, "book"
    if kind == "trade":
        return symbol, "trades"
    if kind.startswith("kline_"):
        return symbol, f"ohlcv:{kind.removeprefix('kline_')}"
    raise AssertionError(f"unexpected stream {name}")


class CollectRig:
    """Local exchange (manual mode) + ccxt.pro clients + collector + store, in one loop."""

    def __init__(
        self,
        data_dir: Path,
        flows: Sequence[SymbolFlow],
        collect: CollectConfig,
        *,
        venues: tuple[str, ...] = ("binance",),
        faults: FaultConfig | None = None,
        streams: StreamsConfig = FAST_STREAMS,
        feed: PushedFeed | None = None,
        seed: int = 0,
        rate_limit_ms: int | None = None,
        on_client: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.flows = list(flows)
        self.collect = collect
        self.venues = venues
        self.streams = streams
        self.feed = feed
        self.rate_limit_ms = rate_limit_ms
        self.on_client = on_client
        self.ex = LocalExchange(
            self.flows,
            ServeConfig(venues=venues, mode="manual", faults=faults or FaultConfig(), seed=seed),
        )
        self.market_ms = self.ex.now_ms()
        self.stop = asyncio.Event()
        #: (series, open time) of every candle row the pipelines handed to the writer
        self.candle_rows: Counter[tuple[str, int]] = Counter()
        self.store: DuckDBStore | None = None
        self.collector: Collector | None = None
        self._run: asyncio.Future[CollectReport] | None = None

    async def __aenter__(self) -> CollectRig:
        await self.ex.start()
        urls = self.ex.urls()
        clients = {
            v: create_stream_client(
                v,
                ExchangeConfig(
                    rest_url=urls[v].rest,
                    ws_url=urls[v].ws,
                    api_key="local",
                    rate_limit_ms=self.rate_limit_ms,
                ),
            )
            for v in self.venues
        }
        if self.on_client is not None:
            for venue, client in clients.items():
                self.on_client(venue, client)
        self.store = open_store(self.data_dir)
        self.collector = Collector(
            self.store,
            clients,
            self.collect,
            clock=WallClock(),
            streams=self.streams,
            feed=self.feed,
        )
        writer = self.collector.writer
        add_candles = writer.add_candles

        def spy(key: SeriesKey, candles: Candles, source: str) -> None:
            for ts in candles.timestamp.tolist():
                self.candle_rows[(f"{key.symbol}:{key.timeframe.value}", int(ts))] += 1
            add_candles(key, candles, source)

        writer.add_candles = spy  # type: ignore[method-assign]
        self._run = asyncio.ensure_future(self.collector.run(stop=self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._run is not None and not self._run.done():
            self.stop.set()
            await asyncio.wait({self._run}, timeout=30)
        await self.ex.stop()
        if self.store is not None:
            self.store.close()

    # -- state --------------------------------------------------------------------------
    @property
    def sup(self) -> Any:
        assert self.collector is not None
        return self.collector.supervisor

    def health(self, symbol: str, channel: str, venue: str = "binance") -> StreamHealth:
        entry: StreamHealth = self.sup.health.get(
            venue, Symbol.parse(symbol), Channel.parse(channel)
        )
        return entry

    def connections(self, venue: str = "binance") -> list[Any]:
        return self.ex.sites[venue].connections()

    async def wait_for(
        self, ready: Callable[[], bool], what: str, *, limit_s: float = 30.0
    ) -> None:
        """Wait (market still) until ``ready()``."""
        deadline = time.monotonic() + limit_s
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not reached in {limit_s} s; {self.sup.snapshot()}")
            await asyncio.sleep(0.01)

    async def subscribed(self, count: int, venue: str = "binance") -> None:
        """Wait until the venue serves ``count`` streams (the market has not moved yet)."""
        hub = self.ex.sites[venue].hub
        await self.wait_for(lambda: len(hub.streams()) >= count, f"{count} streams on {venue}")

    async def play(
        self,
        until_ms: int,
        speed: float,
        *,
        stop_when: Callable[[], bool] | None = None,
        limit_s: float = 60.0,
    ) -> None:
        """Move the market to ``until_ms`` at ``speed`` (market ms per wall ms), one step of
        ``STEP_WALL_S`` wall seconds at a time; stop early once ``stop_when()`` holds."""
        loop = asyncio.get_running_loop()
        start_wall, start_ms = loop.time(), self.market_ms
        deadline = start_wall + limit_s
        while self.market_ms < until_ms:
            if stop_when is not None and stop_when():
                return
            if loop.time() > deadline:
                raise AssertionError(f"play: not done in {limit_s} s; {self.sup.snapshot()}")
            await asyncio.sleep(STEP_WALL_S)
            target = start_ms + int((loop.time() - start_wall) * 1000.0 * speed)
            self.market_ms = min(until_ms, max(target, self.market_ms + 1))
            await self.ex.advance_to(self.market_ms)

    def waiting(self, venue: str = "binance") -> bool:
        """Whether every stream on ``venue`` (Binance's ccxt client) is waiting for its next
        message, its book (if any) in sync: not reconnecting, back-filling or fetching a
        snapshot. A dropped socket then fails exactly the waits of its streams, and a skipped
        diff breaks a synced book's sequence."""
        client = self.sup.clients[venue]
        pending = {h for c in (client.clients or {}).values() for h in c.futures}
        for key in self.sup.streams:
            symbol, channel = str(key.symbol), key.channel
            if channel.kind.value == "trades":
                wanted = f"trade::{symbol}"
            elif channel.kind.value == "book":
                wanted = f"orderbook::{symbol}"
                book = (client.orderbooks or {}).get(symbol)
                if book is None or book["nonce"] is None or book.cache:
                    return False
            else:
                wanted = f"ohlcv::{symbol}::{channel.timeframe}"
            if wanted not in pending:
                return False
        return True

    async def settle(
        self, venue: str = "binance", *, quiet_s: float = 0.06, live: bool = True
    ) -> None:
        """Wait (market still) until nothing is in flight: every stream live (unless
        ``live=False``: a stream may still wait for its first message) and :meth:`waiting`,
        the server's sockets sent nothing and the collector took no item for ``quiet_s``."""
        assert self.collector is not None
        collector = self.collector

        def state() -> tuple[int, int, int]:
            conns = self.connections(venue)
            return collector.items, sum(c.sent for c in conns), len(conns)

        deadline = time.monotonic() + 30
        last, since = state(), time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = state()
            states = {h.state for h in self.sup.health.entries() if h.exchange == venue}
            ok = states <= ({"live"} if live else {"live", "connecting"})
            if now != last or not ok or not self.sup.queue.empty() or not self.waiting(venue):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"settle: never quiet; {self.sup.snapshot()}")

    async def finish(self, *, flush_s: float = 0.3) -> CollectReport:
        """Let the last messages arrive, stop the collector and return its report."""
        await asyncio.sleep(flush_s)
        await self.settle_any()
        assert self._run is not None
        self.stop.set()
        return await asyncio.wait_for(self._run, 60)

    async def settle_any(self) -> None:
        """Like :meth:`settle` over every venue, without requiring the streams to be live."""
        assert self.collector is not None
        collector = self.collector
        last, since = (-1, -1), time.monotonic()
        while time.monotonic() - since < 0.1:
            await asyncio.sleep(0.01)
            sent = sum(c.sent for v in self.venues for c in self.connections(v))
            now = (collector.items, sent)
            if now != last or not self.sup.queue.empty():
                last, since = now, time.monotonic()
