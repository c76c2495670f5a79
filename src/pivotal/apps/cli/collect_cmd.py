"""``pivotal collect``: keep the store current from the exchanges' live streams.

Trades, 1s candles (from trades), the klines of every configured timeframe and 1s COB
snapshots, for each symbol, written in batches; health per stream every few seconds (and as
JSON in ``--health-file``); failover along ``--exchanges``. Runs until Ctrl-C, SIGTERM or
``--duration``; a stop writes everything received first.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    load_context,
    split_list,
)
from pivotal.core.errors import ConfigError


def _endpoints(items: list[str] | None, exchanges: tuple[str, ...]) -> dict[str, str]:
    """``ID=URL`` pairs: the exchange's REST base (its WebSocket base is the same host)."""
    out: dict[str, str] = {}
    for item in items or []:
        venue, sep, url = item.partition("=")
        venue = venue.strip().lower()
        if not sep or not url.strip().startswith(("http://", "https://")):
            raise typer.BadParameter(
                f"expected EXCHANGE=http://HOST:PORT, got {item!r}", param_hint="--endpoint"
            )
        if venue not in exchanges:
            raise typer.BadParameter(
                f"{venue!r} is not in --exchanges or --consolidate ({', '.join(exchanges)})",
                param_hint="--endpoint",
            )
        out[venue] = url.strip().rstrip("/")
    return out


def _health_line(snapshot: dict[str, Any]) -> str:
    totals = snapshot.get("totals", {})
    parts = []
    for symbol, counts in snapshot.get("symbols", {}).items():
        parts.append(
            f"{symbol}: {counts['trades']:,} trades, {counts['candles_1s']:,} 1s, "
            f"{counts['cob_snapshots']:,} cob"
        )
    writer = snapshot.get("writer", {})
    parts.append(
        f"written {sum(writer.get('written', {}).values()):,} rows "
        f"({writer.get('pending', 0):,} pending)"
    )
    keys = ("reconnects", "gaps", "resyncs", "failovers", "backfilled_rows")
    parts.append(" ".join(f"{k} {totals.get(k, 0)}" for k in keys if k in totals))
    line = " | ".join(parts)
    # a venue that never answered: say why, once per venue (a wrong --endpoint, a firewall)
    down: dict[str, str] = {}
    for row in snapshot.get("streams", []):
        if row.get("state") != "live" and row.get("last_error") and not row.get("messages"):
            down.setdefault(row["exchange"], row["last_error"])
    for venue, error in down.items():
        line += f"\n  [yellow]{venue} not streaming yet[/]: {error} (retrying with backoff)"
    return line


def collect(
    exchanges: Annotated[
        str,
        typer.Option("--exchanges", help="Failover order; the first names the candle series."),
    ] = "binance,mexc",
    symbols: Annotated[str, typer.Option("--symbols", help="e.g. BTC/USDT,ETH/USDT.")] = (
        "BTC/USDT,ETH/USDT"
    ),
    timeframes: Annotated[
        str, typer.Option("--timeframes", help="1s comes from trades, others from klines.")
    ] = "1s,1m,1h,1d",
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="EXCHANGE=http://HOST:PORT: talk to this host instead (e.g. the local "
            "exchange's URLs from `pivotal exchange serve`); repeatable.",
            show_default="the exchanges' own hosts (or exchanges.<id>.rest_url/ws_url)",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", help="Stop after this many seconds. [default: run until stopped]"
        ),
    ] = None,
    no_book: Annotated[bool, typer.Option("--no-book", help="No order book, no COB.")] = False,
    consolidate: Annotated[
        str | None,
        typer.Option(
            "--consolidate",
            help="Venues of the multi-exchange book, e.g. binance,bybit: each streams its book; "
            "1s consolidated COB is stored under 'consolidated'.",
            show_default="none: no multi-exchange book",
        ),
    ] = None,
    health_file: Annotated[
        Path | None,
        typer.Option(
            "--health-file",
            help="Write the health as JSON here every few seconds.",
            show_default="none: printed only",
        ),
    ] = None,
    health_every: Annotated[
        float, typer.Option("--health-every", help="Seconds between health reports.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final report as JSON.")] = (
        False
    ),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Collect live market data into the store: trades, 1s candles, klines, 1s COB snapshots.

    Streams through ccxt's WebSocket methods with reconnects, resyncs, REST back-fill and
    failover along --exchanges; writes in batches (one transaction each; a stop writes
    everything received). Point it at the local exchange with --endpoint, e.g.
    `pivotal collect --exchanges binance --endpoint binance=http://127.0.0.1:9001`.
    """
    from pivotal.config.models import ExchangeConfig
    from pivotal.core.clock import WallClock
    from pivotal.venues.clients import STREAM_EXCHANGES, create_stream_client
    from pivotal.venues.collector import CollectConfig, Collector

    if duration is not None and duration <= 0:
        raise typer.BadParameter("must be > 0 seconds", param_hint="--duration")
    if health_every <= 0:
        raise typer.BadParameter("must be > 0 seconds", param_hint="--health-every")
    try:
        settings = CollectConfig(
            exchanges=tuple(split_list(exchanges)),
            symbols=tuple(split_list(symbols)),
            timeframes=tuple(split_list(timeframes)),
            book=not no_book,
            consolidate=tuple(split_list(consolidate)) if consolidate else (),
            health_every_s=health_every,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"collect: {problems}") from None
    venues = tuple(dict.fromkeys((*settings.exchanges, *settings.consolidate)))
    unknown = [e for e in venues if e not in STREAM_EXCHANGES]
    if unknown:
        raise ConfigError(
            f"no live streams for {unknown}; pivotal streams from {', '.join(STREAM_EXCHANGES)}"
        )
    urls = _endpoints(endpoint, venues)
    ctx = load_context(config, data_dir)

    def exchange_config(venue: str) -> ExchangeConfig:
        base = ctx.config.exchange(venue)
        if venue not in urls:
            return base
        ws = "ws" + urls[venue][len("http") :]
        return base.model_copy(update={"rest_url": urls[venue], "ws_url": ws})

    def show(snapshot: dict[str, Any]) -> None:
        if not as_json:
            console.print(_health_line(snapshot), highlight=False)

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        clients = {v: create_stream_client(v, exchange_config(v)) for v in venues}
        with ctx.store() as store:
            collector = Collector(
                store,
                clients,
                settings,
                clock=WallClock(),
                streams=ctx.config.streams,
                health_path=health_file,
                on_health=show,
            )
            return await collector.run(duration_s=duration, stop=stop)

    if not as_json:
        names = ", ".join(f"{v} ({urls.get(v, 'exchange')})" for v in settings.exchanges)
        console.print(
            f"collecting {', '.join(settings.symbols)} from {names} into {ctx.data_dir}; "
            "Ctrl-C stops (everything received is written first)",
            highlight=False,
        )
    report = asyncio.run(main())
    if as_json:
        print(json.dumps(report.as_dict(), default=str))
        return
    table = Table(title="Collected")
    for col in ("symbol", "trades", "1s candles", "klines", "COB snapshots", "late trades"):
        table.add_column(col)
    for symbol, counts in report.pipelines.items():
        klines = ", ".join(f"{k} {v}" for k, v in sorted(counts["candles"].items())) or "-"
        table.add_row(
            symbol,
            f"{counts['trades']:,}",
            f"{counts['candles_1s']:,}",
            klines,
            f"{counts['cob_snapshots']:,}",
            f"{counts['late_trades']:,}",
        )
    console.print(table)
    console.print(
        "streams: " + ", ".join(f"{k} {v}" for k, v in sorted(report.totals.items())),
        highlight=False,
    )
    if report.write_failures:
        console.print(f"[yellow]{report.write_failures} write(s) failed and were retried[/]")
