"""``pivotal collect``: the data service that keeps the store current from exchange streams.

For the configured exchanges (a failover order: the first is the primary and names the
candle series) and symbols, the :class:`Collector`

1. runs a :class:`~pivotal.venues.streams.StreamSupervisor` over ccxt.pro clients: trades,
   the order book and the klines of every configured timeframe of 1m and above (reconnects,
   resyncs, back-fill and failover are the supervisor's);
2. sends each item through the symbol's :class:`~pivotal.venues.symbol_pipeline.SymbolPipeline`:
   trades → stored trades and 1s candles (the Stage 1 aggregator), closed klines → candles,
   books → 1s COB snapshots (±``cob.buckets`` buckets with the imbalance MAs);
3. buffers the rows in a :class:`~pivotal.data.batch_writer.MarketBatchWriter` and writes them
   every ``batch_delay_ms`` in one transaction per batch (idempotent upserts), on a worker
   thread so the sockets never wait for the disk; a failed write keeps its rows for the next
   try;
4. publishes every candle, trade batch and COB snapshot to a
   :class:`~pivotal.runtime.pushed_feed.PushedFeed` when given one, so a trading process in the
   same node consumes the same data;
5. keeps health per stream (message rate, lag, gaps, resyncs, reconnects, failovers, back-filled
   rows) plus its own counts, and writes it as JSON to ``health_path`` every
   ``health_every_s`` (atomically: readers never see half a file).

:meth:`Collector.run` returns when ``stop`` is set (SIGTERM/SIGINT in the CLI) or after
``duration_s``; it then stops the streams, writes everything buffered and returns a
:class:`CollectReport`. Nothing that was received is lost at a clean stop; the open (partial)
1s candle is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pivotal.config.models import StreamsConfig
from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.atomic import atomic_write_text
from pivotal.data.batch_writer import MarketBatchWriter
from pivotal.data.store import MarketDataStore
from pivotal.features.orderbook.cob import COBConfig
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.venues.consolidation import CONSOLIDATED_EXCHANGE, ConsolidationTap
from pivotal.venues.stream_events import (
    BookItem,
    CandleItem,
    StatusItem,
    StreamItem,
    StreamKey,
    TradesItem,
)
from pivotal.venues.streams import StreamSupervisor
from pivotal.venues.symbol_pipeline import SymbolPipeline

__all__ = ["CollectConfig", "CollectReport", "Collector"]

log = logging.getLogger(__name__)

SECOND = Timeframe.parse("1s")

#: The writer's age rule, off: the collector's own flush task writes every batch_delay_ms.
NEVER_BY_AGE_MS = 365 * 86_400_000


class CollectConfig(BaseModel):
    """What ``pivotal collect`` keeps current. ``exchanges``: the failover order (the first
    names the candle series); ``timeframes``: ``1s`` comes from trades, the others from the
    exchange's klines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exchanges: tuple[str, ...] = ("binance", "mexc")
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    timeframes: tuple[str, ...] = ("1s", "1m", "1h", "1d")
    trades: bool = True
    book: bool = True
    consolidate: tuple[str, ...] = Field(
        (),
        description="Venues whose books form the multi-exchange book (seed 003's COBY layer): "
        "each streams its book, 1s consolidated COB stored under 'consolidated' + a heatmap",
    )
    cob: COBConfig = Field(default_factory=COBConfig)
    batch_delay_ms: int = Field(1_000, ge=10, description="Write buffered rows this often")
    batch_rows: int = Field(200_000, ge=1, description="Write at once past this many rows")
    health_every_s: float = Field(5.0, gt=0)
    connect_timeout_s: float = Field(
        20.0, gt=0, description="At start, how long each exchange has to list its markets"
    )
    close_lag_ms: int | None = Field(
        10_000,
        ge=0,
        description="A quiet 1s bar closes when the book's exchange time is this far past its "
        "end (None: only a later trade closes it)",
    )

    @field_validator("exchanges")
    @classmethod
    def _exchanges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(v.strip().lower() for v in value)
        if not out or len(set(out)) != len(out):
            raise ValueError("exchanges must list distinct exchange ids, e.g. binance mexc")
        return out

    @field_validator("consolidate")
    @classmethod
    def _consolidate(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(v.strip().lower() for v in value)
        if len(set(out)) != len(out) or len(out) == 1:
            raise ValueError("consolidate needs two or more distinct venues, e.g. binance bybit")
        return out

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one symbol, e.g. BTC/USDT")
        return tuple(str(Symbol.parse(v)) for v in value)

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(Timeframe.parse(v).value for v in value)

    def streams(self) -> list[StreamKey]:
        """The (symbol, channel) pairs to watch."""
        out = []
        for symbol in self.symbols:
            if self.trades or SECOND.value in self.timeframes:
                out.append(StreamKey.parse(symbol, "trades"))
            if self.book:
                out.append(StreamKey.parse(symbol, "book"))
            for tf in self.timeframes:
                if tf != SECOND.value:
                    out.append(StreamKey.parse(symbol, f"ohlcv:{tf}"))
        if not out:
            raise ConfigError("nothing to collect: enable trades, book or a timeframe")
        return out


@dataclass
class CollectReport:
    """What a collection run did: rows written per kind, per-symbol pipeline counts, the
    streams' health totals and the last health snapshot."""

    started_ms: int
    stopped_ms: int
    items: int
    written: dict[str, int]
    inserted: dict[str, int]
    flushes: int
    write_failures: int
    pipelines: dict[str, dict[str, Any]]
    totals: dict[str, int]
    status: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Collector:
    """Streams → pipelines → batched store writes (+ the runtime feed); see the module docstring.

    ``clients``: exchange id → ccxt.pro client (made in the loop that runs the collector).
    ``supervisor_factory`` lets tests pass a supervisor over fake clients.
    """

    def __init__(
        self,
        store: MarketDataStore,
        clients: Mapping[str, Any],
        config: CollectConfig,
        *,
        clock: Clock,
        streams: StreamsConfig | None = None,
        feed: PushedFeed | None = None,
        health_path: Path | None = None,
        on_health: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        missing = [e for e in config.exchanges if e not in clients]
        if missing:
            raise ConfigError(f"no client for exchange(s) {missing}; create one per exchange")
        self.config = config
        self.clock = clock
        self.store = store
        self.feed = feed
        self.health_path = health_path
        self.on_health = on_health
        base = streams or StreamsConfig()
        streams_config = base.model_copy(
            update={"failover": list(config.exchanges), "book_depth": max(base.book_depth, 5000)}
        )
        self.supervisor = StreamSupervisor(
            clients, config.streams(), clock=clock, config=streams_config
        )
        # the multi-exchange book: one book-only stream per consolidated venue besides the
        # feed's own (whose books reach the consolidated book too)
        self.extra: list[StreamSupervisor] = []
        self.consolidation: ConsolidationTap | None = None
        if config.consolidate:
            missing = [v for v in config.consolidate if v not in clients]
            if missing:
                raise ConfigError(f"no client for consolidated venue(s) {missing}")
            self.consolidation = ConsolidationTap(config.symbols, config.consolidate, config.cob)
            for venue in config.consolidate:
                if venue == config.exchanges[0]:
                    continue
                self.extra.append(
                    StreamSupervisor(
                        {venue: clients[venue]},
                        [StreamKey.parse(s, "book") for s in config.symbols],
                        clock=clock,
                        config=streams_config.model_copy(update={"failover": [venue]}),
                        close_clients=venue not in config.exchanges,
                    )
                )
        # only the worker-thread flush (every batch_delay_ms) writes: an add never flushes
        # on the event loop unless batch_rows are waiting (the sockets would stall on DuckDB)
        self.writer = MarketBatchWriter(
            store,
            clock,
            max_rows=config.batch_rows,
            max_delay_ms=NEVER_BY_AGE_MS,
            on_error=self._write_failed,
        )
        publish = feed.publish if feed is not None else None
        self.pipelines = {
            Symbol.parse(s): SymbolPipeline(
                s,
                config.exchanges[0],
                self.writer,
                publish=publish,
                cob=config.cob,
                close_lag_ms=config.close_lag_ms,
                second_candles=SECOND.value in config.timeframes,
            )
            for s in config.symbols
        }
        self.items = 0
        self.status: list[dict[str, Any]] = []
        self._write_errors: list[str] = []

    def _write_failed(self, exc: Exception) -> None:
        self._write_errors.append(str(exc))
        log.error("writing collected rows failed (kept for the next try): %s", exc)

    # -- items -------------------------------------------------------------------------
    def handle(self, item: StreamItem) -> None:
        """Route one stream item to its symbol's pipeline."""
        self.items += 1
        pipeline = self.pipelines.get(item.symbol)
        if pipeline is None:
            return
        if isinstance(item, TradesItem):
            source = f"{item.exchange}:{'rest' if item.backfilled else 'ws'}"
            pipeline.on_trades(item.exchange, item.trades, source)
        elif isinstance(item, CandleItem):
            if item.closed:
                source = f"{item.exchange}:{'rest' if item.backfilled else 'ws'}"
                pipeline.on_candle(item.exchange, item.timeframe, item.candle, source)
        elif isinstance(item, BookItem):
            # exchange time only: a book without one (ccxt's first REST snapshot) closes nothing
            pipeline.on_book(item.exchange, item.bids, item.asks, item.nonce, item.time_ms)
            if self.consolidation is not None:
                for cob, source in self.consolidation.on_book(item):
                    self.writer.add_cob(CONSOLIDATED_EXCHANGE, item.symbol, cob, source)
        elif isinstance(item, StatusItem):
            self.status.append(
                {
                    "time_ms": item.received_ms,
                    "kind": item.kind,
                    "symbol": str(item.symbol),
                    "exchange": item.exchange,
                    "from": item.from_exchange,
                    "channel": None if item.channel is None else str(item.channel),
                    "detail": item.detail,
                }
            )
            if item.from_exchange is not None:
                pipeline.book_lost(item.from_exchange)

    # -- health ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Streams' health, per-symbol counts and the writer's, as plain JSON-able dicts."""
        stats = self.writer.stats()
        return {
            "time_ms": self.clock.now_ms(),
            "streams": [row for sup in (self.supervisor, *self.extra) for row in sup.snapshot()],
            "totals": self._totals(),
            "consolidated": None
            if self.consolidation is None
            else {
                "venues": list(self.consolidation.venues),
                "snapshots": self.consolidation.snapshots,
            },
            "symbols": {str(s): asdict(p.counts) for s, p in self.pipelines.items()},
            "writer": asdict(stats),
            "items": self.items,
            "status": self.status[-20:],
            "feed": None
            if self.feed is None
            else {"published": self.feed.published, "pending": self.feed.pending},
        }

    def _totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for sup in (self.supervisor, *self.extra):
            for key, value in sup.health.totals().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def _write_health(self) -> None:
        snapshot = self.health()
        if self.on_health is not None:
            self.on_health(snapshot)
        if self.health_path is not None:
            atomic_write_text(self.health_path, json.dumps(snapshot, indent=1, default=str))

    # -- running -----------------------------------------------------------------------
    async def run(
        self,
        *,
        duration_s: float | None = None,
        stop: asyncio.Event | None = None,
        started: Callable[[], None] | None = None,
    ) -> CollectReport:
        """Collect until ``stop`` is set or ``duration_s`` (wall seconds) has passed;
        ``started`` is called once the markets are listed and the streams started."""
        stop = stop or asyncio.Event()
        started_ms = self.clock.now_ms()
        try:
            await self.check_markets()
        except BaseException:
            for supervisor in (self.supervisor, *self.extra):
                await supervisor.stop()  # closes the clients' sockets and sessions
            raise
        await self.supervisor.start()
        for extra in self.extra:
            await extra.start()
        if started is not None:
            started()
        tasks = [
            *(asyncio.ensure_future(self._consume(e.queue)) for e in self.extra),
            asyncio.ensure_future(self._consume(self.supervisor.queue)),
            asyncio.ensure_future(self._flush_every()),
            asyncio.ensure_future(self._health_every()),
        ]
        try:
            waiter = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait(
                [waiter, *tasks], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for supervisor in (self.supervisor, *self.extra):
                await supervisor.stop()
                self._drain(supervisor.queue)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(self.writer.close)
            if self.health_path is not None or self.on_health is not None:
                self._write_health()
        stats = self.writer.stats()
        return CollectReport(
            started_ms=started_ms,
            stopped_ms=self.clock.now_ms(),
            items=self.items,
            written=dict(stats.written),
            inserted=dict(stats.inserted),
            flushes=stats.flushes,
            write_failures=stats.failures,
            pipelines={str(s): asdict(p.counts) for s, p in self.pipelines.items()},
            totals=self._totals(),
            status=list(self.status),
        )

    async def check_markets(self) -> None:
        """Before streaming: every exchange lists its markets (within ``connect_timeout_s``).

        None answering is an :class:`OperationalError` naming each one's failure (a wrong
        ``--endpoint``, no network); a symbol that no answering exchange lists is a
        :class:`ConfigError`. An exchange that is down while another answers is only
        reported: the streams retry it, and failover covers it.
        """
        clients = {**self.supervisor.clients}
        for extra in self.extra:
            clients.update(extra.clients)
        loaders = {v: c for v, c in clients.items() if hasattr(c, "load_markets")}
        if not loaders:
            return
        timeout = self.config.connect_timeout_s

        async def load(client: Any) -> Any:
            return await asyncio.wait_for(client.load_markets(), timeout)

        answers = await asyncio.gather(*(load(c) for c in loaders.values()), return_exceptions=True)
        listed: dict[str, set[str]] = {}
        failed: dict[str, str] = {}
        for venue, answer in zip(loaders, answers, strict=True):
            if isinstance(answer, BaseException):
                text = str(answer) or type(answer).__name__
                if isinstance(answer, TimeoutError):
                    text = f"no answer within {timeout:g} s"
                failed[venue] = f"{type(answer).__name__}: {text}"[:300]
            else:
                listed[venue] = set(getattr(loaders[venue], "symbols", None) or answer or ())
        if not listed:
            reasons = "; ".join(f"{v}: {e}" for v, e in failed.items())
            raise OperationalError(
                f"no exchange answered ({reasons}); check --endpoint (or exchanges.<id>.rest_url) "
                "and the network"
            )
        for venue, error in failed.items():
            log.warning("%s did not list its markets at start (%s); retrying in the streams",
                        venue, error)  # fmt: skip
            self.status.append(
                {"time_ms": self.clock.now_ms(), "kind": "unreachable", "symbol": None,
                 "exchange": venue, "from": None, "channel": None, "detail": error}
            )  # fmt: skip
        unknown = [s for s in self.config.symbols if not any(s in m for m in listed.values())]
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)} not listed on {', '.join(sorted(listed))}; "
                "use a symbol the exchange lists, in BASE/QUOTE form (e.g. BTC/USDT)"
            )

    def _drain(self, queue: asyncio.Queue[StreamItem]) -> None:
        """Items already queued when the streams stopped are handled, not lost."""
        while not queue.empty():
            self.handle(queue.get_nowait())

    async def _consume(self, queue: asyncio.Queue[StreamItem]) -> None:
        while True:
            item = await queue.get()
            self.handle(item)
            # take everything already waiting before yielding to the sockets again
            for _ in range(1_000):
                if queue.empty():
                    break
                self.handle(queue.get_nowait())

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.config.batch_delay_ms / 1000.0)
            if self.writer.stats().pending:
                try:
                    await asyncio.to_thread(self.writer.flush)
                except Exception as exc:  # kept in the buffer; reported in health
                    self._write_failed(exc)

    async def _health_every(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_every_s)
            self._write_health()
