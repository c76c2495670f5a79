"""``pivotal pivots``: Williams market-structure pivots of a stored series."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
    parse_time,
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
    levels: Annotated[int, typer.Option("--levels", min=1, max=10)] = 5,
    strength: Annotated[int, typer.Option("--strength", min=1, help="Bars each side.")] = 2,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write a Plotly HTML chart of candles with every pivot level (works offline)."""
    from pivotal.apps.cli.data_cmd import series_key
    from pivotal.apps.cli.files import write_atomically
    from pivotal.features.pivots import williams_pivots
    from pivotal.features.pivots.chart import pivot_chart

    ctx = load_context(config, data_dir)
    key = series_key(exchange, symbol, timeframe)
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    with ctx.store(read_only=True) as store:
        candles = store.read_candles(key, start, end)
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
