"""``pivotal pivots``: Williams market-structure pivots of a stored series."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pivotal.apps.cli.args import stored_series, unknown_series_message
from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    ExchangeOption,
    SinceOption,
    SymbolOption,
    TimeframeOption,
    UntilOption,
    console,
    format_time,
    load_context,
    parse_range,
)

app = typer.Typer(help="Williams market-structure pivots: chart them.", no_args_is_help=True)


@app.command("show")
def show(
    exchange: ExchangeOption,
    symbol: SymbolOption,
    timeframe: TimeframeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.", dir_okay=False)],
    since: SinceOption = None,
    until: UntilOption = None,
    bars: Annotated[
        int, typer.Option("--bars", min=20, help="Without --since: the last N candles.")
    ] = 1000,
    levels: Annotated[
        int, typer.Option("--levels", min=1, max=10, help="Pivot levels (each built on the last).")
    ] = 5,
    strength: Annotated[int, typer.Option("--strength", min=1, help="Bars each side.")] = 2,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write a Plotly HTML chart of candles with every pivot level (works offline)."""
    from pivotal.apps.cli.data_cmd import series_key
    from pivotal.apps.cli.files import write_atomically
    from pivotal.features.pivots import williams_pivots
    from pivotal.features.pivots.chart import pivot_chart

    key = series_key(exchange, symbol, timeframe)
    start, end = parse_range(since, until)
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        candles = store.read_candles(key, start, end)
        infos = stored_series(store) if not len(candles) else []
    if not len(candles) and not any(i.key == key for i in infos):
        raise typer.BadParameter(
            unknown_series_message(infos, key.exchange, key.symbol, key.timeframe),
            param_hint="--symbol",
        )
    if start is None:
        candles = candles[-bars:]
    if len(candles) < 2 * strength + 1:
        raise typer.BadParameter(
            f"{key} has {len(candles)} candles in that range; pivots of strength {strength} need "
            f"at least {2 * strength + 1} (see `pivotal data list`)"
        )
    pivots = williams_pivots(
        candles.high, candles.low, levels=levels, strength=strength, timestamps=candles.timestamp
    )
    title = (
        f"{key}: Williams pivots, {levels} levels, strength {strength} "
        f"({format_time(int(candles.timestamp[0]))} .. {format_time(int(candles.timestamp[-1]))})"
    )
    figure = pivot_chart(candles, pivots, title=title)
    write_atomically(out, lambda tmp: figure.write_html(tmp, include_plotlyjs=True))
    console.print(title, highlight=False)
    table = Table()
    table.add_column("level", justify="right")
    table.add_column("highs", justify="right")
    table.add_column("lows", justify="right")
    for level in range(1, levels + 1):
        at = pivots[pivots["level"] == level]
        table.add_row(
            str(level),
            str(int((at["kind"] == "high").sum())),
            str(int((at["kind"] == "low").sum())),
        )
    console.print(table)
    console.print(f"chart written to {out}")
