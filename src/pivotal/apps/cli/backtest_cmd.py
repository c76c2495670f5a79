"""``pivotal backtest``: a reference strategy over stored (or file) candles, with reports.

The command parses options, loads candles, builds :class:`TradingSettings` and calls
:func:`pivotal.backtest.api.backtest`; everything else lives in :mod:`pivotal.backtest`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from pivotal.apps.cli.args import (
    needs_lookup,
    stored_series,
    symbol_arg,
    timeframe_arg,
    unknown_series_message,
)
from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    format_time,
    load_context,
    parse_name_values,
    parse_range,
    split_list,
)

if TYPE_CHECKING:
    from pivotal.core.candles import Candles
    from pivotal.trading.settings import TradingSettings


class Engine(StrEnum):
    event = "event"
    vectorized = "vectorized"


class Fill(StrEnum):
    next_open = "next_open"
    current_close = "current_close"


ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Strategy parameter NAME=VALUE, e.g. fast=10; repeat.",
        show_default="the strategy's defaults",
    ),
]


def _settings(file: Path | None, overrides: dict[str, dict[str, Any]]) -> TradingSettings:
    from pydantic import ValidationError

    from pivotal.trading.settings import TradingSettings

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
        return TradingSettings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid backtest settings:\n  " + "\n  ".join(lines)) from None


def _load_file(path: Path, symbols: list[str], start: int | None, end: int | None) -> Candles:
    from pivotal.data.importers.readers import read_candle_file

    if len(symbols) != 1:
        raise typer.BadParameter("--data FILE holds one symbol; give exactly one --symbol")
    return read_candle_file(path).candles.between(start, end)


def gap_policy_arg(text: str) -> Any:
    """``--gaps`` as a :class:`~pivotal.core.gaps.GapPolicy` (BadParameter when unknown)."""
    from pivotal.core.gaps import GapPolicy

    try:
        return GapPolicy.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gaps") from None


def print_gap_warnings(
    candles: dict[str, Candles], tf: Any, settings: Any, start: int | None, end: int | None
) -> None:
    """Before the run: the series that are mostly gaps, and how many gaps each has."""
    from pivotal.backtest.gaps import GapPlan, mostly_gaps_warnings

    for line in mostly_gaps_warnings(candles, tf, settings.max_missing_bars, start, end):
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    plan = GapPlan.build(candles, tf, settings.gaps, settings.max_missing_bars)
    for name, found in plan.gaps.items():
        if found:
            what = (
                "positions are closed at the last bar before each (--gaps hold to carry them)"
                if settings.gaps == "close"
                else "positions are carried through them (--gaps hold)"
            )
            console.print(f"{name} {tf}: {len(found)} gap(s) in the data; {what}", highlight=False)


def print_gap_summary(result: Any) -> None:
    """After the run: the gaps met, and the trades closed at one."""
    from pivotal.backtest.gaps import gap_lines

    if not result.gaps:
        return
    closed = int((result.trades.get("exit_reason") == "gap").sum()) if len(result.trades) else 0
    console.print(
        f"gaps met: {len(result.gaps)} (trades closed at a gap: {closed})", highlight=False
    )
    for line in gap_lines(result.gaps):
        console.print(f"  {line}", highlight=False)


def backtest(
    symbol: Annotated[
        str,
        typer.Option(
            "--symbol",
            "-s",
            help="Symbol(s), comma-separated: BTC/USDT,ETH/USDT (BTCUSDT works too).",
        ),
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
        typer.Option(
            "--fee",
            help="Fee rate per side, maker and taker (0.001 = 0.1 %).",
            show_default="0.001 (the settings file's)",
        ),
    ] = None,
    lot_size: Annotated[
        float | None,
        typer.Option("--lot-size", help="Smallest tradable quantity.", show_default="1e-8"),
    ] = None,
    fill: Annotated[
        Fill | None,
        typer.Option(
            "--fill",
            help="When an order fills: next_open (the next bar's open) or current_close.",
            show_default="next_open",
        ),
    ] = None,
    slippage_bps: Annotated[
        float | None,
        typer.Option(
            "--slippage-bps",
            help="Fixed slippage on taker fills, in basis points.",
            show_default="0",
        ),
    ] = None,
    fraction: Annotated[
        float | None,
        typer.Option("--fraction", help="Share of equity per entry.", show_default="1.0"),
    ] = None,
    stop_loss: Annotated[
        float | None,
        typer.Option(
            "--stop-loss", help="Stop-loss distance, e.g. 0.02 = 2 %.", show_default="no stop"
        ),
    ] = None,
    max_drawdown: Annotated[
        float | None,
        typer.Option(
            "--max-drawdown",
            help="Halt new entries at this drawdown, e.g. 0.2 = 20 %.",
            show_default="no limit",
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option("--engine", help="event (full simulator) or vectorized (fast path)."),
    ] = Engine.event,
    gaps: Annotated[
        str | None,
        typer.Option(
            "--gaps",
            help="At a gap in the data (more than gaps.max_missing_bars missing bars, 5 unless "
            "pivotal's config says otherwise): close (exit at the close of "
            "the last bar before it, no entry on that bar) or hold (carry the position "
            "through); default: close.",
        ),
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            exists=True,
            dir_okay=False,
            help="YAML file of settings (broker:, risk:); the options given override it.",
            show_default="none",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            exists=True,
            dir_okay=False,
            help="Candle file instead of the store.",
            show_default="the store",
        ),
    ] = None,
    exchange: Annotated[str, typer.Option("--exchange", "-e", help="Store exchange.")] = "binance",
    since: SinceOption = None,
    until: UntilOption = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the HTML report to this file.", show_default="none"),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write trades, metrics and gaps as JSON to this file.",
            show_default="none",
        ),
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
    from pivotal.backtest.strategies import strategy_names
    from pivotal.data.series import SeriesKey

    if strategy not in strategy_names():
        raise typer.BadParameter(
            f"unknown strategy {strategy!r}; use one of {', '.join(strategy_names())}",
            param_hint="--strategy",
        )
    typed = split_list(symbol)
    if not typed:
        raise typer.BadParameter("give at least one symbol, e.g. BTC/USDT", param_hint="--symbol")
    tf = timeframe_arg(timeframe)
    start, end = parse_range(since, until)
    fees = None if fee is None else {"maker": fee, "taker": fee}
    settings = _settings(
        settings_file,
        {
            "broker": {
                "initial_cash": cash,
                "fees": fees,
                "lot_size": lot_size,
                "fill_timing": None if fill is None else fill.value,
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
    if gaps is not None:
        settings = settings.model_copy(update={"gaps": gap_policy_arg(gaps)})
    if "max_missing_bars" not in settings.model_fields_set:  # pivotal config's gaps section
        gap_bars = load_context(config, data_dir).config.gaps.max_missing_bars
        settings = settings.model_copy(update={"max_missing_bars": gap_bars})
    candles: dict[str, Candles] = {}
    infos: list[Any] = []
    if data is not None:
        symbols = [str(symbol_arg(s)) for s in typed]
        candles[symbols[0]] = _load_file(data, symbols, start, end)
        origin = str(data)
    else:
        ctx = load_context(config, data_dir)
        with ctx.store(read_only=True) as store:
            infos = stored_series(store) if any(map(needs_lookup, typed)) else []
            known = [i.key.symbol for i in infos if i.key.exchange == exchange]
            symbols = [str(symbol_arg(s, known=known)) for s in typed]
            for name in symbols:
                candles[name] = store.read_candles(SeriesKey(exchange, name, tf), start, end)
            if any(len(bars) == 0 for bars in candles.values()) and not infos:
                infos = stored_series(store)
        origin = f"store {ctx.data_dir} ({exchange})"
    for name, bars in candles.items():
        if len(bars) == 0:
            span = f" between {since or '…'} and {until or '…'}" if since or until else ""
            stored = any(
                (i.key.exchange, str(i.key.symbol), i.key.timeframe) == (exchange, name, tf)
                for i in infos
            )
            if data is None and not stored:
                raise typer.BadParameter(
                    unknown_series_message(infos, exchange, name, tf), param_hint="--symbol"
                )
            raise typer.BadParameter(
                f"no {tf} candles for {name} in {origin}{span}; widen --since/--until, import "
                "them with `pivotal data import` or pass --data FILE",
                param_hint="--symbol",
            )
        console.print(
            f"{name} {tf}: {len(bars):,} bars {format_time(int(bars.timestamp[0]))} .. "
            f"{format_time(int(bars.timestamp[-1]))} UTC from {origin}",
            highlight=False,
        )
    print_gap_warnings(candles, tf, settings, start, end)
    try:
        result = run(
            candles,
            strategy,
            parse_name_values(param),
            timeframe=tf,
            settings=settings,
            engine=engine.value,  # type: ignore[arg-type]
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
    print_gap_summary(result)
    if report is not None:
        write_html(result, candles, report, title=f"{strategy} on {', '.join(symbols)} {tf}")
        console.print(f"report: {report}", highlight=False)
    if json_out is not None:
        write_json(result, json_out)
        console.print(f"json: {json_out}", highlight=False)
