"""``pivotal exchange``: serve a replayed market over the venues' REST and WebSocket APIs.

``pivotal exchange serve`` starts the local exchange on 127.0.0.1 (one port per venue),
prints each venue's REST and WS base URLs, where its API key pair comes from (never the
secret) and the account balances, replays the flows at ``--speed`` and runs until Ctrl-C,
SIGTERM or ``--duration``; then it prints the injected faults by kind. Orders sent to it
are matched against the replayed market (``--balance`` sets the starting balances).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from pivotal.apps.cli.args import symbol_arg, timeframe_arg
from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    format_time,
    load_context,
    parse_range,
    split_list,
)

app = typer.Typer(
    help="The local exchange: replayed market data over Binance/Bybit/MEXC wire formats.",
    no_args_is_help=True,
)

_FAULT_HELP = "wall seconds between injected faults of this kind (off by default)"


def _ports(items: list[str] | None, venues: tuple[str, ...]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in items or []:
        venue, sep, value = item.partition("=")
        venue = venue.strip().lower()
        if not sep or not value.strip().isdigit():
            raise typer.BadParameter(f"expected VENUE=PORT, got {item!r}", param_hint="--port")
        if venue not in venues:
            raise typer.BadParameter(
                f"venue {venue!r} is not served (serving {', '.join(venues)})", param_hint="--port"
            )
        ports[venue] = int(value)
    return ports


def _balances(items: list[str] | None) -> dict[str, float]:
    """``ASSET=AMOUNT`` items over the default account (100,000 USDT)."""
    from pivotal.localexchange.config import DEFAULT_BALANCES

    balances = dict(DEFAULT_BALANCES)
    for item in items or []:
        asset, sep, value = item.partition("=")
        asset = asset.strip().upper()
        try:
            amount = float(value)
        except ValueError:
            amount = float("nan")
        if not sep or not asset or not amount >= 0 or amount == float("inf"):
            raise typer.BadParameter(
                f"expected ASSET=AMOUNT with an amount >= 0 (e.g. USDT=5000), got {item!r}",
                param_hint="--balance",
            )
        balances[asset] = amount
    return balances


def _config(**fields: Any) -> Any:
    from pivotal.localexchange.config import ServeConfig
    from pivotal.localexchange.faults import FaultConfig

    faults = fields.pop("faults")
    try:
        return ServeConfig(faults=FaultConfig(**faults), **fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None


@app.command("serve")
def serve(
    venues: Annotated[
        str, typer.Option("--venue", "-v", help="Venues to serve, comma-separated.")
    ] = "binance",
    symbols: Annotated[
        str | None,
        typer.Option("--symbol", "-s", help="Symbols, comma-separated (default: every one found)."),
    ] = None,
    messages: Annotated[
        list[Path] | None,
        typer.Option(
            "--messages",
            "-m",
            help="Recorded Binance message files (hftbacktest .gz), repeatable; default: the "
            "recorded BTC/ETH days of ../shared/data when there.",
            dir_okay=False,
        ),
    ] = None,
    exchange: Annotated[
        str, typer.Option("--exchange", "-e", help="Stored candles: the exchange they are under.")
    ] = "binance",
    timeframe: Annotated[
        str | None,
        typer.Option(
            "--timeframe",
            "-t",
            help="Stored candles: their timeframe (serves a "
            "synthetic book and trades consistent with them).",
            show_default="1m when serving stored candles",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Stored candles: first (UTC date or epoch ms).",
            show_default="the first stored",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Stored candles: end, exclusive.", show_default="the last stored"
        ),
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", help="Market milliseconds per wall millisecond (> 0).")
    ] = 1.0,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many wall seconds (default: Ctrl-C)."),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the faults and synthetic flows.")
    ] = 0,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a non-local --host.")
    ] = False,
    port: Annotated[
        list[str] | None,
        typer.Option("--port", help="VENUE=PORT, repeatable (default: a free port each)."),
    ] = None,
    drop_every: Annotated[float | None, typer.Option("--drop-every", help=_FAULT_HELP)] = None,
    drop_all: Annotated[
        bool, typer.Option("--drop-all", help="--drop-every closes every socket, not one.")
    ] = False,
    gap_every: Annotated[float | None, typer.Option("--gap-every", help=_FAULT_HELP)] = None,
    reorder_every: Annotated[
        float | None, typer.Option("--reorder-every", help=_FAULT_HELP)
    ] = None,
    delay_ms: Annotated[
        int, typer.Option("--delay-ms", help="Delay every WebSocket message (wall ms).")
    ] = 0,
    weight_per_minute: Annotated[
        int,
        typer.Option("--weight-per-minute", help="REST request weight per minute (0: no limit)."),
    ] = 6000,
    expire_after: Annotated[
        float | None,
        typer.Option(
            "--expire-after", help="WebSocket lifetime, wall seconds.", show_default="no expiry"
        ),
    ] = None,
    max_faults: Annotated[
        int | None,
        typer.Option(
            "--max-faults", help="At most this many faults of each kind.", show_default="no cap"
        ),
    ] = None,
    balance: Annotated[
        list[str] | None,
        typer.Option(
            "--balance",
            help="ASSET=AMOUNT starting balance of every venue's account, repeatable "
            "(default 100000 USDT; other assets 0).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the URLs and the fault counts as JSON lines.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Serve recorded or stored market data as a local exchange until stopped.

    Sources: ``--messages FILE...`` (recorded Binance spot messages), or stored candles
    (``--data-dir`` with ``--timeframe``/``--since``/``--until``: a synthetic book and trade
    flow consistent with them), else the recorded BTC/USDT and ETH/USDT days of
    ``../shared/data``. Point ccxt at the printed URLs (see ``pivotal.venues``)."""
    if not speed > 0:
        raise typer.BadParameter(
            f"must be > 0 (market ms per wall ms), got {speed}", param_hint="--speed"
        )
    if duration is not None and not duration > 0:
        raise typer.BadParameter(f"must be > 0 seconds, got {duration}", param_hint="--duration")
    venue_list = tuple(v.lower() for v in split_list(venues))
    fields: dict[str, Any] = {
        "venues": venue_list,
        "speed": speed,
        "duration_s": duration,
        "host": host,
        "allow_remote": allow_remote,
        "seed": seed,
        "faults": {
            "drop_every_s": drop_every,
            "drop_all": drop_all,
            "gap_every_s": gap_every,
            "reorder_every_s": reorder_every,
            "delay_ms": delay_ms,
            "weight_per_minute": weight_per_minute or None,
            "expire_after_s": expire_after,
            "max_count": max_faults,
        },
    }
    cfg = _config(**fields)  # venue names checked before the ports refer to them
    if port:
        fields["ports"] = _ports(port, cfg.venues)
    if balance:
        account = _balances(balance)
        fields["accounts"] = {venue: dict(account) for venue in cfg.venues}
    if port or balance:
        cfg = _config(**fields)
    wanted = [symbol_arg(s) for s in split_list(symbols)] if symbols else None
    flows = _flows(messages, wanted, exchange, timeframe, since, until, seed, config, data_dir)
    _run(flows, cfg, as_json)


def _flows(
    messages: list[Path] | None,
    wanted: list[Any] | None,
    exchange: str,
    timeframe: str | None,
    since: str | None,
    until: str | None,
    seed: int,
    config: Path | None,
    data_dir: Path | None,
) -> list[Any]:
    from pivotal.localexchange import sources

    use_store = timeframe is not None or since is not None or until is not None
    if messages and use_store:
        raise typer.BadParameter(
            "give either --messages or stored candles (--timeframe/--since/--until), not both"
        )
    if messages:
        missing = [str(p) for p in messages if not p.is_file()]
        if missing:
            raise typer.BadParameter(f"no such file: {', '.join(missing)}", param_hint="--messages")
        return sources.flows_from_messages(messages, wanted)
    if use_store or data_dir is not None:
        tf = timeframe_arg(timeframe or "1m")
        start, end = parse_range(since, until)
        ctx = load_context(config, data_dir)
        with ctx.store(read_only=True) as store:
            if not wanted:  # every symbol stored on that exchange and timeframe
                wanted = sorted(
                    {
                        info.key.symbol
                        for info in store.series()
                        if info.key.exchange == exchange and info.key.timeframe == tf and info.rows
                    },
                    key=str,
                )
                if not wanted:
                    raise typer.BadParameter(
                        f"no {exchange} {tf.value} candles stored in {ctx.data_dir}; import or "
                        "download some, pick another --exchange/--timeframe, or serve recorded "
                        "messages (--messages)",
                        param_hint="--symbol",
                    )
            return sources.flows_from_store(store, exchange, wanted, tf, start, end, seed=seed)
    return sources.flows_from_messages(sources.default_message_files(), wanted)


def _run(flows: list[Any], cfg: Any, as_json: bool) -> None:
    from pivotal.localexchange.server import LocalExchangeThread

    stop = threading.Event()
    previous: dict[int, Any] = {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    with LocalExchangeThread(flows, cfg) as server:
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, _on_signal)
        try:
            _print_start(server.urls, flows, cfg, as_json)
            stop.wait(cfg.duration_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            counts = server.fault_log.counts()
            market_ms = server.now_ms()
    _print_end(counts, market_ms, as_json)


def _credentials() -> tuple[str, str]:
    """Where the key and the secret come from, in words (never the secret itself)."""
    from pivotal.localexchange.config import (
        API_KEY_ENV,
        API_SECRET_ENV,
        LOCAL_API_KEY,
        credential_sources,
    )

    key, secret = credential_sources()
    key_text = (
        f"from {API_KEY_ENV}" if key == API_KEY_ENV else f"{LOCAL_API_KEY} (the local default)"
    )
    secret_text = (
        f"from {API_SECRET_ENV}" if secret == API_SECRET_ENV else "the local default (see README)"
    )
    return key_text, secret_text


def _print_start(urls: dict[str, Any], flows: list[Any], cfg: Any, as_json: bool) -> None:
    key_text, secret_text = _credentials()
    balances = {venue: cfg.balances(venue) for venue in cfg.venues}
    if as_json:
        body = {
            "venues": {v: {"rest": u.rest, "ws": u.ws, "port": u.port} for v, u in urls.items()},
            "symbols": [str(f.symbol) for f in flows],
            "sources": {str(f.symbol): f.source for f in flows},
            "start_ms": min(f.start_ms for f in flows),
            "end_ms": max(f.end_ms for f in flows),
            "speed": cfg.speed,
            "api_key": key_text,
            "api_secret": secret_text,
            "balances": balances,
        }
        print(json.dumps(body), flush=True)
        return
    for venue, u in urls.items():
        console.print(f"{venue:8} REST {u.rest}  WS {u.ws}", highlight=False)
    for flow in flows:
        console.print(
            f"  {flow.symbol}: {format_time(flow.start_ms)} → {format_time(flow.end_ms)} UTC "
            f"({flow.source})",
            highlight=False,
        )
    console.print(f"API key: {key_text}; secret: {secret_text}", highlight=False)
    for venue, account in balances.items():
        held = ", ".join(f"{amount:g} {asset}" for asset, amount in sorted(account.items()))
        console.print(f"{venue:8} account: {held}", highlight=False)
    console.print(
        f"replaying at {cfg.speed:g}x; ccxt binance: urls['api']['public'] = REST + '/api/v3', "
        "urls['api']['ws']['spot'] = WS + '/stream'; Ctrl-C stops",
        highlight=False,
    )
    sys.stdout.flush()


def _print_end(counts: dict[str, int], market_ms: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"faults": counts, "market_ms": market_ms}), flush=True)
        return
    if not counts:
        console.print(f"stopped at market time {format_time(market_ms)} UTC; no faults")
        return
    table = Table(title=f"faults (stopped at market time {format_time(market_ms)} UTC)")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind, count in counts.items():
        table.add_row(kind, str(count))
    console.print(table)
