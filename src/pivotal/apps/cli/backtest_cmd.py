"""``pivotal backtest``: a reference strategy over stored (or file) candles, with reports.

The command parses options, loads candles, builds :class:`BacktestSettings` and calls
:func:`pivotal.backtest.api.backtest`; everything else lives in :mod:`pivotal.backtest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    format_time,
    load_context,
    parse_name_values,
    parse_time,
    split_list,
)

if TYPE_CHECKING:
    from pivotal.backtest.config import BacktestSettings
    from pivotal.core.candles import Candles

ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Strategy parameter NAME=VALUE, e.g. fast=10; repeat."),
]


def _settings(file: Path | None, overrides: dict[str, dict[str, Any]]) -> BacktestSettings:
    from pydantic import ValidationError

    from pivotal.backtest.config import BacktestSettings

    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"{file}: cannot read settings: {exc}") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{file}: settings must be a mapping (broker:, risk:)")
        data = loaded
    for section, values in overrides.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            data[section] = {**data.get(section, {}), **given}
    try:
        return BacktestSettings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid backtest settings:\n  " + "\n  ".join(lines)) from None


def _load_file(path: Path, symbols: list[str], start: int | None, end: int | None) -> Candles:
    from pivotal.data.importers.readers import read_candle_file

    if len(symbols) != 1:
        raise typer.BadParameter("--data FILE holds one symbol; give exactly one --symbol")
    return read_candle_file(path).candles.between(start, end)


def backtest(
    symbol: Annotated[
        str, typer.Option("--symbol", "-s", help="Symbol(s), comma-separated: BTC/USDT,ETH/USDT.")
    ] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Bar size, e.g. 1m.")] = "1m",
    strategy: Annotated[
        str, typer.Option("--strategy", help="sma_cross, rsi_reversion or buy_and_hold.")
    ] = "sma_cross",
    param: ParamOpt = None,
    cash: Annotated[
        float, typer.Option("--cash", min=0.0, help="Initial cash (quote).")
    ] = 100_000.0,
    fee: Annotated[
        float | None,
        typer.Option("--fee", help="Fee rate per side, maker and taker (0.001 = 0.1 %)."),
    ] = None,
    lot_size: Annotated[
        float | None, typer.Option("--lot-size", help="Smallest tradable quantity [1e-8].")
    ] = None,
    fill: Annotated[
        str | None, typer.Option("--fill", help="next_open (default) or current_close.")
    ] = None,
    slippage_bps: Annotated[
        float | None, typer.Option("--slippage-bps", help="Fixed slippage on taker fills.")
    ] = None,
    fraction: Annotated[
        float | None, typer.Option("--fraction", help="Share of equity per entry [1.0].")
    ] = None,
    stop_loss: Annotated[
        float | None, typer.Option("--stop-loss", help="Stop-loss distance, e.g. 0.02 = 2 %.")
    ] = None,
    max_drawdown: Annotated[
        float | None, typer.Option("--max-drawdown", help="Halt entries at this drawdown.")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="event (full simulator) or vectorized (fast path).")
    ] = "event",
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", exists=True, dir_okay=False, help="YAML: broker:, risk:."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", exists=True, dir_okay=False, help="Candle file instead of the store."
        ),
    ] = None,
    exchange: Annotated[str, typer.Option("--exchange", "-e", help="Store exchange.")] = "binance",
    since: SinceOption = None,
    until: UntilOption = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write trades/metrics JSON.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Backtest a reference strategy; print the metrics; write HTML and JSON reports.

    Orders placed at a bar's close fill at the next bar's open (``--fill current_close`` to
    fill at that close); fees are charged on each side; entries are sized from equity at the
    fill price in whole lots, as backtesting.py's FractionalBacktest does.
    """
    from pivotal.backtest.api import backtest as run
    from pivotal.backtest.export import write_json
    from pivotal.backtest.metrics import format_metrics
    from pivotal.backtest.report import write_html
    from pivotal.core.symbols import Symbol
    from pivotal.core.timeframes import Timeframe
    from pivotal.data.series import SeriesKey

    symbols = [str(Symbol.parse(s)) for s in split_list(symbol)]
    if not symbols:
        raise typer.BadParameter("give at least one symbol", param_hint="--symbol")
    tf = Timeframe.parse(timeframe)
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    fees = None if fee is None else {"maker": fee, "taker": fee}
    settings = _settings(
        settings_file,
        {
            "broker": {
                "initial_cash": cash,
                "fees": fees,
                "lot_size": lot_size,
                "fill_timing": fill,
                "slippage": "fixed" if slippage_bps else None,
                "slippage_bps": slippage_bps,
            },
            "risk": {
                "fraction": fraction,
                "stop_loss_pct": stop_loss,
                "max_drawdown": max_drawdown,
            },
        },
    )
    candles: dict[str, Candles] = {}
    if data is not None:
        candles[symbols[0]] = _load_file(data, symbols, start, end)
        origin = str(data)
    else:
        ctx = load_context(config, data_dir)
        with ctx.store(read_only=True) as store:
            for name in symbols:
                candles[name] = store.read_candles(SeriesKey(exchange, name, tf), start, end)
        origin = f"store {ctx.data_dir} ({exchange})"
    for name, bars in candles.items():
        if len(bars) == 0:
            span = f" between {since or '…'} and {until or '…'}" if since or until else ""
            raise typer.BadParameter(
                f"no {tf} candles for {name} in {origin}{span}"
                "; import them with `pivotal data import` or pass --data FILE",
                param_hint="--symbol",
            )
        console.print(
            f"{name} {tf}: {len(bars):,} bars {format_time(int(bars.timestamp[0]))} .. "
            f"{format_time(int(bars.timestamp[-1]))} UTC from {origin}",
            highlight=False,
        )
    try:
        result = run(
            candles,
            strategy,
            parse_name_values(param),
            timeframe=tf,
            settings=settings,
            engine=engine,  # type: ignore[arg-type]
            progress=console.is_terminal,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    from rich.table import Table

    table = Table(title=f"{strategy} {', '.join(symbols)} {tf} ({engine} engine)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in format_metrics(result.metrics):
        table.add_row(label, value)
    console.print(table)
    if report is not None:
        write_html(result, candles, report, title=f"{strategy} on {', '.join(symbols)} {tf}")
        console.print(f"report: {report}", highlight=False)
    if json_out is not None:
        write_json(result, json_out)
        console.print(f"json: {json_out}", highlight=False)
