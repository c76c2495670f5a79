"""``pivotal features``: compute indicator and pivot features of a stored series to Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

app = typer.Typer(help="Features: indicators and pivots of stored series.", no_args_is_help=True)


@app.command("compute")
def compute(
    exchange: ExchangeOption,
    symbol: SymbolOption,
    timeframe: TimeframeOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the Parquet files.")],
    since: SinceOption = None,
    until: UntilOption = None,
    levels: Annotated[
        int, typer.Option("--levels", min=1, max=10, help="Pivot levels (each built on the last).")
    ] = 5,
    strength: Annotated[
        int, typer.Option("--strength", min=1, help="Bars each side of a level-1 pivot.")
    ] = 2,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write <series>.indicators.parquet (one row per candle) and <series>.pivots.parquet.

    Indicator rows carry the candle's open time; a value at a row uses only that candle and
    earlier ones. Pivot rows carry ``confirm_timestamp``: use a pivot only from that time on.
    """
    import pandas as pd

    from pivotal.apps.cli.data_cmd import series_key
    from pivotal.apps.cli.files import write_atomically
    from pivotal.features.indicators import compute_indicator_features
    from pivotal.features.pivots import williams_pivots

    key = series_key(exchange, symbol, timeframe)
    start, end = parse_range(since, until)
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        candles = store.read_candles(key, start, end)
        infos = stored_series(store) if not len(candles) else []
    if not len(candles):
        if not any(i.key == key for i in infos):
            raise typer.BadParameter(
                unknown_series_message(infos, key.exchange, key.symbol, key.timeframe),
                param_hint="--symbol",
            )
        raise typer.BadParameter(f"nothing stored for {key} in that range; see `pivotal data list`")
    try:
        indicators = compute_indicator_features(candles)
        pivots = williams_pivots(
            candles.high,
            candles.low,
            levels=levels,
            strength=strength,
            timestamps=candles.timestamp,
        )
    except ValueError as exc:
        raise typer.BadParameter(f"{key}: {exc}") from None
    frame = pd.DataFrame({"timestamp": candles.timestamp, **indicators})
    pivots = pivots.assign(kind=pivots["kind"].astype(str))
    stem = f"{key.exchange}_{key.symbol.file_stem}_{key.timeframe}"
    paths = (out / f"{stem}.indicators.parquet", out / f"{stem}.pivots.parquet")
    write_atomically(paths[0], lambda tmp: frame.to_parquet(tmp, index=False))
    write_atomically(paths[1], lambda tmp: pivots.to_parquet(tmp, index=False))
    span = f"{format_time(int(candles.timestamp[0]))} .. {format_time(int(candles.timestamp[-1]))}"
    console.print(f"{key}: {len(candles):,} candles ({span})", highlight=False)
    console.print(f"  {paths[0]}: {frame.shape[1] - 1} indicator columns", highlight=False)
    counts = pivots.groupby("level").size().to_dict()
    per_level = ", ".join(f"L{k}: {v:,}" for k, v in counts.items())
    console.print(f"  {paths[1]}: {len(pivots):,} pivots ({per_level})", highlight=False)
