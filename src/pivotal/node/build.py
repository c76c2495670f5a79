"""Build a paper or live session: the only place that knows the mode.

:func:`build_node` takes a run file's :class:`~pivotal.orchestrator.run_file.RunConfig` and a
mode and picks, for that mode only:

- the **broker**: paper → :class:`~pivotal.trading.brokers.paper.PaperBroker` (fills against
  the live book, its state in the journal); live →
  :class:`~pivotal.venues.exchange_broker.ExchangeBroker` (orders on the venue);
- the venue's **keys** (live only) and the **safety rule**: live trading on a real venue needs
  ``--i-understand-real-money``; a testnet or a local exchange (a loopback endpoint) does not.

Everything else is the same for both modes: the market clock (the venue's time), the live
feed (the Stage 9 collector publishing to a :class:`~pivotal.runtime.pushed_feed.PushedFeed`),
the orchestrator from the run file's experts, the risk manager and executor, the kernel's
loop, the journal, reconciliation and the kill switch (:class:`~pivotal.node.trading_node.
TradingNode`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pivotal.config import PivotalConfig
from pivotal.config.live import LiveSettings
from pivotal.config.models import ExchangeConfig
from pivotal.core.clock import WallClock
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.data.store import MarketDataStore
from pivotal.node.control import MarketClock
from pivotal.node.market_data import MarketDataThread
from pivotal.node.paths import journal_path, session_id
from pivotal.node.trading_node import SessionSource, TradingNode
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.orchestrator.run import build_experts
from pivotal.orchestrator.run_file import RunConfig
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.venues.clients import create_stream_client
from pivotal.venues.collector import CollectConfig

__all__ = ["SessionOptions", "build_node", "check_real_money", "is_local", "live_settings"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class SessionOptions:
    """The command line's say over a session (each overrides the run file's ``live:``)."""

    mode: str
    real_money: bool = False
    testnet: bool = False
    endpoint: str | None = None
    keys: Path | None = None
    duration_s: float | None = None


def is_local(live: LiveSettings) -> bool:
    """Whether the session's venue is a local exchange (every endpoint on loopback)."""
    urls = [u for u in (live.rest_url, live.ws_url) if u is not None]
    return bool(urls) and all(urlsplit(u).hostname in LOOPBACK for u in urls)


def live_settings(run: RunConfig, options: SessionOptions) -> LiveSettings:
    """The run file's ``live:`` with the command line's overrides applied."""
    update: dict[str, Any] = {}
    if options.endpoint is not None:
        rest = options.endpoint.rstrip("/")
        if "://" not in rest:
            raise ConfigError(
                f"--endpoint {options.endpoint!r} is not a URL; write http://HOST:PORT"
            )
        update["rest_url"] = rest
        update["ws_url"] = "ws" + rest[len("http") :] if rest.startswith("http") else rest
    if options.testnet:
        update["testnet"] = True
    if options.keys is not None:
        update["keys_file"] = options.keys
    if options.duration_s is not None:
        if options.duration_s <= 0:
            raise ConfigError(f"--duration must be above 0 seconds, got {options.duration_s:g}")
        update["duration_s"] = options.duration_s
    live = run.live.model_copy(update=update)
    return LiveSettings.model_validate(live.model_dump())


def check_real_money(mode: str, live: LiveSettings, real_money: bool) -> str:
    """The line that says which money a session trades; ConfigError for live on a real venue
    without ``--i-understand-real-money``."""
    if mode == "paper":
        return f"paper trading on {live.venue}'s live data: simulated fills, no orders sent"
    if is_local(live):
        return f"live mode against a local exchange at {live.rest_url}: no real money"
    if live.testnet:
        return f"live mode on {live.venue}'s testnet: sandbox money"
    if not real_money:
        raise ConfigError(
            f"--mode live sends real orders to {live.venue} with real money; add "
            "--i-understand-real-money to go on (or use --testnet, or --endpoint for a local "
            "exchange)"
        )
    return f"LIVE TRADING on {live.venue} with real money"


def exchange_config(config: PivotalConfig, live: LiveSettings) -> ExchangeConfig:
    base = config.exchange(live.venue)
    update: dict[str, Any] = {"timeout_s": live.request_timeout_s}
    if live.rest_url is not None:
        update["rest_url"] = live.rest_url
    if live.ws_url is not None:
        update["ws_url"] = live.ws_url
    return base.model_copy(update=update)


def venue_time(venue: str, settings: ExchangeConfig) -> int:
    """The venue's clock (UTC ms; a local exchange's is its market time); OperationalError
    naming the endpoint when nobody answers."""

    async def ask() -> int:
        client = create_stream_client(venue, settings)
        try:
            return int(await client.fetch_time())
        finally:
            await client.close()

    try:
        return asyncio.run(ask())
    except Exception as exc:
        where = settings.rest_url or f"{venue}'s own API"
        raise OperationalError(
            f"{venue} did not answer at {where} ({type(exc).__name__}: {str(exc)[:200]}); "
            "check --endpoint (is `pivotal exchange serve` running?) and the network"
        ) from None


def build_node(
    run: RunConfig,
    options: SessionOptions,
    *,
    run_file: Path,
    store: MarketDataStore,
    config: PivotalConfig,
    data_dir: Path,
    say: Callable[[str], None] = print,
    make_broker: Callable[..., Any] | None = None,
    source: Callable[[int], SessionSource] | None = None,
) -> TradingNode:
    """A :class:`TradingNode` for ``options.mode`` (module docstring). ``source`` replaces
    the run file's orchestrator (tests: a scripted source); it is called with the session's
    first event time."""
    from pivotal.node.brokers import make_session_broker

    mode = options.mode
    if mode not in ("paper", "live"):
        raise ConfigError(f"build_node builds paper and live sessions, not {mode!r}")
    live = live_settings(run, options)
    say(check_real_money(mode, live, options.real_money))
    settings = exchange_config(config, live)
    experts = [] if source is not None else build_experts(run.orchestrator)  # fails early
    reads = {tf for e in experts for tf in e.timeframes} | {run.base}
    timeframes = tuple(sorted(reads, key=lambda t: t.ms))
    path = journal_path(live.journal, run_file, mode, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    clock = MarketClock(venue_time(live.venue, settings))
    feed = PushedFeed(WallClock(), [(s, run.base) for s in run.symbols], moves=clock)
    collect = CollectConfig(
        exchanges=(live.venue,),
        symbols=tuple(run.symbols),
        timeframes=tuple(tf.value for tf in timeframes if tf.value != "1s"),
        trades=True,
        book=True,
    )
    writes = store
    if (live.market_store or ("session" if is_local(live) else "main")) == "session":
        from pivotal.data.duckdb_store import DuckDBStore

        writes = DuckDBStore(path.with_name(path.name + ".market.duckdb"))
        say(f"collected market data goes to {writes.path} (not the data dir's store)")
    market = MarketDataThread(
        writes,
        lambda: {live.venue: create_stream_client(live.venue, settings)},
        collect,
        feed,
        clock=WallClock(),
        streams=config.streams,
        owns_store=writes is not store,
    )
    journal = SqliteOrderJournal(path)
    factory = make_broker or make_session_broker
    try:
        broker = factory(
            mode,
            run=run,
            live=live,
            settings=settings,
            clock=clock,
            journal=journal,
            session=session_id(path),
        )
    except BaseException:
        journal.close()
        raise

    def orchestrator(t0: int) -> Orchestrator:
        # online checkpoints learned before the session's first bar: the base bar the first
        # event falls in (a replay starting at that bar loads the same ones)
        first_bar = t0 // run.base.ms * run.base.ms
        return Orchestrator(
            experts,
            run.orchestrator,
            base_timeframe=run.base,
            seed=run.seed,
            load_online=f"before:{first_bar}",  # never a model trained on later data
            max_missing_bars=run.settings.max_missing_bars,
            accelerate=False,
            calls="inline",
        )

    return TradingNode(
        mode=mode,
        run=run,
        settings=live,
        store=store,
        broker=broker,
        journal=journal,
        journal_path=path,
        clock=clock,
        market=market,
        orchestrator=source or orchestrator,
        say=say,
    )
