"""``pivotal decisions``: read the orchestrator's inference history from the store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pivotal.apps.cli.args import symbol_arg
from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    err_console,
    format_time,
    load_context,
    parse_range,
)
from pivotal.core.symbols import Symbol

if TYPE_CHECKING:
    from pivotal.data.inference_history import InferenceHistory

RETENTION = (
    "the run file's retention prunes older steps: orchestrator.history.max_age_days "
    "(default 30) and max_megabytes (default 512)"
)


def _symbol(typed: str | None, stored: list[str]) -> str | None:
    """``--symbol`` as the history spells it (``btcusdt`` → ``BTC/USDT``); a symbol the
    history does not hold is an error naming the ones it does."""
    if typed is None:
        return None
    known = [Symbol.parse(s) for s in stored]
    name = str(symbol_arg(typed, known=known))
    if name not in stored:
        raise typer.BadParameter(
            f"the history holds no decisions for {name}; it has {', '.join(stored)}",
            param_hint="--symbol",
        )
    return name


def _check_model(history: InferenceHistory, model: str, symbol: str | None) -> None:
    names = history.model_names(symbol=symbol)
    if model not in names:
        scope = f" for {symbol}" if symbol else ""
        raise typer.BadParameter(
            f"no stored decisions by model {model!r}{scope}; the history has decisions by "
            f"{', '.join(names) or 'no model'}",
            param_hint="--model",
        )


def _span_notes(
    held: list[tuple[str, int, int, int]], start: int | None, end: int | None, model: str | None
) -> list[str]:
    """A line per symbol whose stored span does not cover the asked range."""
    notes = []
    by = f" by {model}" if model else ""
    for name, first, last, _ in held:
        span = f"history holds {format_time(first)}..{format_time(last)} UTC for {name}{by}"
        if start is not None and start < first:
            notes.append(f"{span}; earlier steps are not stored ({RETENTION})")
        elif (end is not None and end <= first) or (start is not None and start > last):
            notes.append(f"{span}; nothing in the range asked for")
    return notes


app = typer.Typer(help="The orchestrator's stored decisions.", no_args_is_help=True)


@app.command("query")
def query(
    symbol: Annotated[
        str | None,
        typer.Option("--symbol", "-s", help="Only this symbol, e.g. BTC/USDT.", show_default="all"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Only steps this model took part in.", show_default="all"
        ),
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
    """List stored decisions by symbol, model and time range.

    Says what span the history holds when the range asks for more: older steps are pruned by
    the run file's retention (orchestrator.history.max_age_days / max_megabytes).
    """
    from rich.table import Table

    from pivotal.data.inference_history import InferenceHistory

    start, end = parse_range(since, until)
    if symbol is not None and "/" in symbol:
        symbol_arg(symbol)  # the form is checked before the store is opened
    ctx = load_context(config, data_dir)
    with ctx.store(read_only=True) as store:
        history = InferenceHistory(store)
        spans = history.spans()
        if not spans:
            asked = " or ".join(f"{v}" for v in (symbol, model) if v)
            console.print(
                f"no stored decisions match: {ctx.data_dir} holds no decisions yet"
                f"{f' (so none for {asked})' if asked else ''}; run `pivotal run RUN_FILE` or "
                "`pivotal demo` first",
                highlight=False,
            )
            return
        sym = _symbol(symbol, [name for name, *_ in spans])
        if model is not None:
            _check_model(history, model, sym)
        by_model = spans if model is None else history.spans(model=model)
        held = [s for s in by_model if sym is None or s[0] == sym]
        for note in _span_notes(held, start, end, model):
            err_console.print(note, highlight=False)
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
        console.print("no stored decisions match in that range (see the span above)")
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
