"""``pivotal decisions``: read the orchestrator's inference history from the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    format_time,
    load_context,
    parse_time,
)

app = typer.Typer(help="The orchestrator's stored decisions.", no_args_is_help=True)


@app.command("query")
def query(
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="e.g. BTC/USDT.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only steps this model took part in.")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = 50,
    latest: Annotated[bool, typer.Option("--latest", help="Newest first.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Print each record's decision and outputs as JSON.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List stored decisions by symbol, model and time range."""
    from rich.table import Table

    from pivotal.core.symbols import Symbol
    from pivotal.data.inference_history import InferenceHistory

    start = None if since is None else parse_time(since, "--since")
    end = None if until is None else parse_time(until, "--until")
    sym = None if symbol is None else str(Symbol.parse(symbol))
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        history = InferenceHistory(store)
        total = history.count(symbol=sym, model=model, since=start, until=end)
        if details:
            records = history.query(
                symbol=sym, model=model, since=start, until=end, limit=limit, descending=latest
            )
            for r in records:
                console.print_json(
                    json.dumps(
                        {
                            "time": format_time(r.timestamp),
                            "symbol": r.symbol,
                            "action": r.action,
                            "confidence": r.confidence,
                            "decision": r.decision,
                            "outputs": r.outputs,
                        },
                        default=str,
                    )
                )
            return
        frame = history.summary(
            symbol=sym, model=model, since=start, until=end, limit=limit, descending=latest
        )
    if frame.empty:
        console.print("no stored decisions match; run `pivotal run` or `pivotal demo` first")
        return
    table = Table(title=f"{total:,} stored decisions match (showing {len(frame)})")
    for column in ("time", "symbol", "action", "confidence", "models", "bytes"):
        table.add_column(column, justify="right" if column in ("confidence", "bytes") else "left")
    for row in frame.itertuples(index=False):
        table.add_row(
            format_time(int(row.timestamp)),
            str(row.symbol),
            str(row.action),
            f"{float(row.confidence):.3f}",
            ", ".join(row.models),
            f"{int(row.bytes):,}",
        )
    console.print(table)
