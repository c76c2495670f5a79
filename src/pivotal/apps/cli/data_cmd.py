"""``pivotal data``: import, download, list, gaps, resample, trades and the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pivotal.apps.cli.args import resample_targets, symbol_arg, timeframe_arg
from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    err_console,
    format_time,
    load_context,
    parse_range,
    parse_time,
    progress_bar,
    split_list,
)
from pivotal.core.errors import DataError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import CHANGE_TOLERANCE, SeriesKey

app = typer.Typer(
    help="Market data: import files, download from exchanges, list, resample, simulate.",
    no_args_is_help=True,
)

ExchangeOpt = Annotated[
    str | None,
    typer.Option("--exchange", "-e", help="Exchange id (ccxt). [default: read from the path]"),
]
SymbolOpt = Annotated[
    str | None,
    typer.Option("--symbol", "-s", help="Symbol, e.g. BTC/USDT. [default: read from the path]"),
]
TimeframeOpt = Annotated[
    str | None,
    typer.Option("--timeframe", "-t", help="e.g. 1m, 1h. [default: read from the path]"),
]
StoreExchange = Annotated[
    str, typer.Option("--exchange", "-e", help="Exchange the series is stored under.")
]
StoreSymbol = Annotated[str, typer.Option("--symbol", "-s", help="Symbol, e.g. BTC/USDT.")]
StoreTimeframe = Annotated[str, typer.Option("--timeframe", "-t", help="Timeframe, e.g. 1m, 1h.")]


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to import.")],
    exchange: ExchangeOpt = None,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Store valid rows, drop the invalid ones.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Import candles: CSV, CSV.gz, zip, Parquet, Binance kline CSV, freqtrade JSON/feather.

    Exchange, symbol and timeframe are inferred from the path (e.g. binance/BTC_USDT-1m.json,
    BTCUSDT-1m-2024-01-01.csv) unless given. Every file is validated first; if any is invalid,
    nothing is written (unless --drop-invalid).

    Order-book depth files (Parquet: a REST snapshot plus every diff-depth update, e.g.
    orderbook/binance-spot/BTC_USDT-depth-....parquet) are replayed into their 1s COB
    snapshots, which are stored for features and backtests to read.
    """
    from pivotal.apps.cli.progress import ImportProgress
    from pivotal.data.importers import import_files
    from pivotal.features.orderbook.recorded import cob_from_depth_files

    ctx = load_context(config, data_dir)
    with ctx.store() as store, progress_bar() as bar:
        tracker = ImportProgress(bar)
        results = import_files(
            paths,
            store,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            drop_invalid=drop_invalid,
            progress=tracker,
            depth=cob_from_depth_files,
        )
    if not results:
        reasons = "".join(f"\n  - {why}" for _, why in tracker.skipped[:10])
        more = f"\n  ... and {len(tracker.skipped) - 10} more" if len(tracker.skipped) > 10 else ""
        raise DataError(
            f"no candle files found in {', '.join(map(str, paths))}{reasons}{more}\n"
            "Candle files are CSV, CSV.gz, zip, Parquet, feather or freqtrade JSON, and "
            "order-book depth Parquet files give COB snapshots; trades go through "
            "`pivotal data import-trades`."
        )
    table = Table(title=f"Imported into {ctx.data_dir}")
    for col in ("file", "series", "rows", "new", "changed", "unchanged", "dropped"):
        table.add_column(col, justify="right" if col not in ("file", "series") else "left")
    for r in results:
        more = f" (+{len(r.files) - 1})" if len(r.files) > 1 else ""
        table.add_row(
            Path(r.path).name + more,
            f"{r.key.exchange} {r.key.symbol} COB 1s" if r.kind == "cob" else str(r.key),
            f"{r.rows:,}",
            f"{r.written.inserted:,}",
            f"{r.written.updated:,}",
            f"{r.written.unchanged:,}",
            f"{r.dropped:,}",
        )
    console.print(table)


@app.command("download")
def download(
    exchange: Annotated[str, typer.Option("--exchange", "-e", help="Exchange to try first.")] = (
        "binance"
    ),
    symbols: Annotated[
        str, typer.Option("--symbols", help="Comma-separated, e.g. BTC/USDT,ETH/USDT.")
    ] = "BTC/USDT,ETH/USDT",
    timeframes: Annotated[str, typer.Option("--timeframes", help="e.g. 1m,1h.")] = "1m,1h",
    since: Annotated[
        str, typer.Option("--since", help="First candle (UTC), e.g. 2024-01-01.")
    ] = "2024-01-01",
    until: Annotated[
        str | None,
        typer.Option("--until", help="End, exclusive (UTC). [default: now]", show_default=False),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Download candles over REST (ccxt), resuming from what is stored, with fallback exchanges.

    Before downloading, each exchange's API host is checked (DNS and a TCP connection, a few
    seconds): an exchange that cannot be reached is reported at once, not retried.
    """
    from pivotal.apps.cli.progress import DownloadProgressBar
    from pivotal.data.download import download_candles

    since_ms, until_ms = parse_range(since, until)
    assert since_ms is not None  # --since has a default
    ctx = load_context(config, data_dir)
    with ctx.store() as store, progress_bar() as bar:
        results = download_candles(
            store,
            ctx.config,
            exchange=exchange,
            symbols=split_list(symbols),
            timeframes=split_list(timeframes),
            since_ms=since_ms,
            until_ms=until_ms,
            progress=DownloadProgressBar(bar),
        )
    table = Table(title="Downloaded")
    for col in ("series", "from exchange", "fetched", "new", "first", "last", "retries"):
        table.add_column(col)
    for r in results:
        used = r.used_exchange
        if used != r.requested_exchange:
            used = f"[yellow]{used} (fallback)[/]"
        table.add_row(
            str(r.key),
            used,
            f"{r.fetched:,}",
            f"{r.written.inserted:,}",
            format_time(r.first),
            format_time(r.last),
            str(r.retries),
        )
    console.print(table)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """What is stored: exchange, symbol, timeframe, first, last, rows, gaps."""
    from pivotal.apps.cli.summary import series_table

    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        infos = store.series()
        trades = store.trade_symbols()
        cob = store.cob_symbols()
    if as_json:
        rows = [
            {
                "exchange": i.key.exchange,
                "symbol": str(i.key.symbol),
                "timeframe": i.key.timeframe.value,
                "first": i.first,
                "last": i.last,
                "rows": i.rows,
                "gaps": i.gaps,
                "missing": i.missing,
                "missing_runs": i.missing_runs,
                "source": i.source,
                "sources": [{"source": s.source, "rows": s.rows} for s in i.sources],
            }
            for i in infos
        ]
        listed = {"candles": rows, "trades": [list(t) for t in trades]}
        listed["cob"] = [list(c) for c in cob]
        print(json.dumps(listed, indent=2))
        return
    if not infos and not trades and not cob:
        console.print(f"nothing stored in {ctx.data_dir} yet; try `pivotal data import` or `demo`")
        return
    if infos:
        console.print(series_table(infos, title=f"Candles in {ctx.data_dir}"))
    if trades:
        table = Table(title="Trades")
        for col in ("exchange", "symbol", "rows", "first", "last"):
            table.add_column(col)
        for ex, sym, n, first, last in trades:
            table.add_row(ex, sym, f"{n:,}", format_time(first), format_time(last))
        console.print(table)
    if cob:
        table = Table(title="COB snapshots (1s)")
        for col in ("exchange", "symbol", "snapshots", "first", "last"):
            table.add_column(col)
        for ex, sym, n, first, last in cob:
            table.add_row(ex, sym, f"{n:,}", format_time(first), format_time(last))
        console.print(table)


@app.command("gaps")
def gaps(
    symbol: StoreSymbol,
    timeframe: StoreTimeframe,
    exchange: StoreExchange = "binance",
    since: Annotated[
        str | None,
        typer.Option("--since", help="First candle (UTC).", show_default="the first stored"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End, exclusive (UTC).", show_default="after the last stored"),
    ] = None,
    max_missing: Annotated[
        int,
        typer.Option(
            "--max-missing",
            min=0,
            help="A missing run of more than this many bars is a gap (backtests, training and "
            "indicators restart after one); shorter runs are bridged.",
        ),
    ] = DEFAULT_MAX_MISSING_BARS,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every run of missing candles in one series, and which of them count as gaps."""
    from pivotal.apps.cli.data_views import gaps_report

    since_ms, until_ms = parse_range(since, until)
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        key = stored_series_key(store, exchange, symbol, timeframe)
        timestamps = store.read_candles(key, since_ms, until_ms).timestamp
    if not len(timestamps):
        raise DataError(
            f"{key} has no candles between {format_time(since_ms)} and {format_time(until_ms)}; "
            "see `pivotal data list` for its span"
        )
    for line in gaps_report(key, timestamps, max_missing):
        console.print(line)


@app.command("sources")
def sources(
    symbol: StoreSymbol,
    timeframe: StoreTimeframe,
    exchange: StoreExchange = "binance",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Where each stored range of one series came from (exchange import, download, resampled)."""
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        key = stored_series_key(store, exchange, symbol, timeframe)
        ranges = store.source_ranges(key)
    table = Table(title=f"Sources of {key}", title_justify="left")
    for col in ("first (UTC)", "last (UTC)", "candles", "source"):
        table.add_column(col, justify="right" if col == "candles" else "left")
    for r in ranges:
        table.add_row(format_time(r.first), format_time(r.last), f"{r.rows:,}", r.source or "-")
    console.print(table)


@app.command("resample")
def resample(
    symbol: StoreSymbol,
    source: Annotated[str, typer.Option("--from", help="Stored source timeframe, e.g. 1m.")],
    targets: Annotated[str, typer.Option("--to", help="Targets, e.g. 1h,1d.")],
    exchange: StoreExchange = "binance",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace candles imported or downloaded from the exchange where the resampled "
            "ones differ (by default the exchange's candles are kept).",
        ),
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Build higher timeframes exactly (first open, max high, min low, last close, sum volume).

    Only complete buckets are written: a target candle whose source bars are not all stored
    (at the edges of the data or at a hole) is skipped and counted. Resampled candles fill
    holes and replace earlier resampled ones, but never a candle from the exchange unless
    --overwrite is given. A stored candle counts as changed only when a price or the volume
    differs by more than a relative 1e-9 (smaller differences are float rounding).
    """
    from pivotal.apps.cli.data_views import resample_line
    from pivotal.data.resample import resample_complete

    chain = resample_targets(source, targets)
    ctx = load_context(config, data_dir)
    with ctx.store() as store, progress_bar(transient=True) as bar:
        key = stored_series_key(store, exchange, symbol, source)
        candles = store.read_candles(key)
        task = bar.add_task("resampling", total=len(chain))
        lines = []
        for target in chain:
            built = resample_complete(candles, key.timeframe, target)
            result = store.write_candles(
                SeriesKey(key.exchange, key.symbol, target),
                built.candles,
                source=f"resampled:{key.timeframe}",
                overwrite=overwrite,
            )
            lines.append(resample_line(key, target, built, result))
            bar.advance(task)
    for line in lines:
        console.print(line)
    console.print(
        f"[dim]unchanged: equal to the stored candle within a relative {CHANGE_TOLERANCE:g} "
        "on open, high, low, close and volume[/]"
    )


@app.command("import-trades")
def import_trades(
    paths: Annotated[list[Path], typer.Argument(help="Trade files (Parquet, tardis CSV.gz, ...).")],
    exchange: ExchangeOpt = None,
    symbol: SymbolOpt = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Import tick trades (our Parquet, Binance trades CSV, tardis.dev CSV) into the store."""
    from pivotal.data.trade_import import import_trade_files

    if symbol is not None:
        symbol = str(symbol_arg(symbol))  # the form is checked before any file is read
    ctx = load_context(config, data_dir)
    with ctx.store() as store, progress_bar() as bar:
        task = bar.add_task("trades", total=len(paths))
        results = import_trade_files(
            paths, store, exchange=exchange, symbol=symbol, on_file=lambda: bar.advance(task)
        )
    for r in results:
        console.print(
            f"{r.path.name}: {r.exchange} {r.symbol} {r.rows:,} trades "
            f"({r.written.inserted:,} new, {r.written.unchanged:,} already stored)"
        )


@app.command("aggregate")
def aggregate(
    symbol: StoreSymbol,
    exchange: StoreExchange = "binance",
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="Candle timeframe to build, e.g. 1s.")
    ] = "1s",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Build candles from stored trades (empty intervals become zero-volume candles).

    Candles built from trades fill holes and replace earlier built ones, but never a candle
    imported or downloaded from the exchange.
    """
    from pivotal.data.tick_aggregation import aggregate_trades

    key = series_key(exchange, symbol, timeframe)
    ctx = load_context(config, data_dir)
    with ctx.store() as store:
        trades = store.read_trades(key.exchange, key.symbol)
        if not len(trades):
            raise typer.BadParameter(
                f"no trades stored for {key.exchange} {key.symbol}; import them with "
                "`pivotal data import-trades` (see `pivotal data list`)",
                param_hint="--symbol",
            )
        bars = aggregate_trades(trades, key.timeframe)
        result = store.write_candles(key, bars.candles, source="aggregated:trades")
    kept = f", {result.kept:,} exchange candles kept" if result.kept else ""
    console.print(
        f"{key.exchange} {key.symbol}: {len(trades):,} trades → {len(bars.candles):,} "
        f"{key.timeframe} candles ({result.inserted:,} new, {result.updated:,} changed{kept})"
    )


@app.command("simulate")
def simulate(
    symbol: Annotated[
        str, typer.Option("--symbol", "-s", help="Symbol to store the candles under.")
    ] = "SIM/USDT",
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Candle timeframe.")] = "1m",
    bars: Annotated[int, typer.Option("--bars", min=10, help="Number of candles.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 7,
    start: Annotated[str, typer.Option("--start", help="Open time of the first candle (UTC).")] = (
        "2024-01-01"
    ),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Store simulated candles (exchange 'simulator'); never mistaken for real data."""
    from pivotal.apps.cli.simulated import store_simulated

    ctx = load_context(config, data_dir)
    with ctx.store() as store:
        key, source, written = store_simulated(
            store, symbol, timeframe, bars, seed, parse_time(start, "--start")
        )
    err_console.print(f"[bold yellow]SIMULATED DATA[/] ({source}) stored as {key}")
    console.print(f"{written.inserted:,} new candles")


def series_key(exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    """A series key from CLI flags; a bad flag is a usage error."""
    tf = timeframe_arg(timeframe)
    sym = symbol_arg(symbol)
    try:
        return SeriesKey(exchange, sym, tf)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--exchange") from None


def stored_series_key(store: DuckDBStore, exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    """The key of a series the store holds (a symbol typed without a slash is matched against
    the stored ones); a series that is not stored is an error that says what is."""
    from pivotal.apps.cli.args import unknown_series_message

    infos = store.series()
    known = sorted({i.key.symbol for i in infos}, key=str)
    tf = timeframe_arg(timeframe)
    try:
        key = SeriesKey(exchange, symbol_arg(symbol, known=known), tf)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--exchange") from None
    if not any(i.key == key for i in infos):
        raise DataError(unknown_series_message(infos, key.exchange, key.symbol, key.timeframe))
    return key
