"""``pivotal data``: import, download, list, gaps, resample, trades and the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    err_console,
    format_time,
    load_context,
    parse_time,
    progress_bar,
    split_list,
)
from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey

app = typer.Typer(
    help="Market data: import files, download from exchanges, list, resample, simulate.",
    no_args_is_help=True,
)

ExchangeOpt = Annotated[str | None, typer.Option("--exchange", "-e", help="Exchange id (ccxt).")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", "-s", help="Symbol, e.g. BTC/USDT.")]
TimeframeOpt = Annotated[str | None, typer.Option("--timeframe", "-t", help="e.g. 1m, 1h.")]


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
    """
    from pivotal.apps.cli.progress import ImportProgress
    from pivotal.data.importers import import_files

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
        )
    if not results:
        reasons = "".join(f"\n  - {why}" for _, why in tracker.skipped[:10])
        more = f"\n  ... and {len(tracker.skipped) - 10} more" if len(tracker.skipped) > 10 else ""
        raise DataError(
            f"no candle files found in {', '.join(map(str, paths))}{reasons}{more}\n"
            "Candle files are CSV, CSV.gz, zip, Parquet, feather or freqtrade JSON; "
            "trades go through `pivotal data import-trades`."
        )
    table = Table(title=f"Imported into {ctx.data_dir}")
    for col in ("file", "series", "rows", "new", "changed", "unchanged", "dropped"):
        table.add_column(col, justify="right" if col not in ("file", "series") else "left")
    for r in results:
        table.add_row(
            Path(r.path).name,
            str(r.key),
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
    since: Annotated[str, typer.Option("--since", help="Start, e.g. 2024-01-01.")] = "2024-01-01",
    until: Annotated[str | None, typer.Option("--until", help="End (default: now).")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Download candles over REST (ccxt), resuming from what is stored, with fallback exchanges."""
    from pivotal.apps.cli.progress import DownloadProgressBar
    from pivotal.data.download import download_candles

    ctx = load_context(config, data_dir)
    since_ms = parse_time(since, "--since")
    until_ms = parse_time(until, "--until") if until else None
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
                "source": i.source,
            }
            for i in infos
        ]
        print(json.dumps({"candles": rows, "trades": [list(t) for t in trades]}, indent=2))
        return
    if not infos and not trades:
        console.print(f"nothing stored in {ctx.data_dir} yet; try `pivotal data import` or `demo`")
        return
    console.print(series_table(infos, title=f"Candles in {ctx.data_dir}"))
    if trades:
        table = Table(title="Trades")
        for col in ("exchange", "symbol", "rows", "first", "last"):
            table.add_column(col)
        for ex, sym, n, first, last in trades:
            table.add_row(ex, sym, f"{n:,}", format_time(first), format_time(last))
        console.print(table)


@app.command("gaps")
def gaps(
    exchange: Annotated[str, typer.Option("--exchange", "-e")],
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every run of missing candles in one series."""
    ctx = load_context(config, data_dir)
    key = series_key(exchange, symbol, timeframe)
    with ctx.store(read_only=True) as store:
        found = store.gaps(key)
    if not found:
        console.print(f"{key}: no gaps")
        return
    table = Table(title=f"Gaps in {key}")
    for col in ("first missing", "last missing", "missing candles"):
        table.add_column(col)
    for g in found:
        table.add_row(format_time(g.start), format_time(g.end), f"{g.missing:,}")
    console.print(table)


@app.command("resample")
def resample(
    exchange: Annotated[str, typer.Option("--exchange", "-e")],
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    source: Annotated[str, typer.Option("--from", help="Stored source timeframe, e.g. 1s.")],
    targets: Annotated[str, typer.Option("--to", help="Targets, e.g. 1m,1h,1d.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="Keep edge candles the data covers only in part.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Build higher timeframes exactly (first open, max high, min low, last close, sum volume).

    Each target is built straight from the stored source series (not chained), so an edge
    candle the source covers only in part is dropped once, at the right timeframe.
    """
    from pivotal.data.resample import resample as resample_candles

    ctx = load_context(config, data_dir)
    key = series_key(exchange, symbol, source)
    chain = [Timeframe.parse(t) for t in split_list(targets)]
    with ctx.store() as store, progress_bar() as bar:
        candles = store.read_candles(key)
        if not len(candles):
            raise typer.BadParameter(f"nothing stored for {key}; see `pivotal data list`")
        task = bar.add_task("resampling", total=len(chain))
        for target in chain:
            built = resample_candles(candles, key.timeframe, target, partial=partial)
            result = store.write_candles(
                series_key(exchange, symbol, target.value),
                built,
                source=f"resampled:{key.timeframe}",
            )
            console.print(
                f"{key.symbol} {key.timeframe} → {target}: {len(built):,} candles "
                f"({result.inserted:,} new, {result.updated:,} changed)"
            )
            bar.advance(task)


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
    exchange: Annotated[str, typer.Option("--exchange", "-e")],
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Target, e.g. 1s.")] = "1s",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Build candles from stored trades (empty intervals become zero-volume candles)."""
    from pivotal.data.tick_aggregation import aggregate_trades

    ctx = load_context(config, data_dir)
    sym = Symbol.parse(symbol)
    with ctx.store() as store:
        trades = store.read_trades(exchange, sym)
        if not len(trades):
            raise typer.BadParameter(f"no trades stored for {exchange} {sym}")
        bars = aggregate_trades(trades, Timeframe.parse(timeframe))
        result = store.write_candles(
            series_key(exchange, symbol, timeframe), bars.candles, source="aggregated:trades"
        )
    console.print(
        f"{exchange} {sym}: {len(trades):,} trades → {len(bars.candles):,} {timeframe} candles "
        f"({result.inserted:,} new)"
    )


@app.command("simulate")
def simulate(
    symbol: Annotated[str, typer.Option("--symbol", "-s")] = "SIM/USDT",
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "1m",
    bars: Annotated[int, typer.Option("--bars", min=10, help="Number of candles.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    start: Annotated[str, typer.Option("--start")] = "2024-01-01",
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
    try:
        return SeriesKey(exchange, Symbol.parse(symbol), Timeframe.parse(timeframe))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
