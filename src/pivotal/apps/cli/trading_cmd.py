"""``pivotal orders | positions | fills | kill``: a paper or live session seen through its journal.

The views read the session's order journal (read-only, so they work while the node trades):
the journal's view of orders, fills and positions, rebuilt the way the node rebuilds at a
restart. ``--json`` prints machine-readable output. The session is named by its run file and
mode (the journal's default place), or by ``--journal PATH``.

``pivotal kill`` stops new entries, cancels every order and flattens every position: it asks
the running node (a request file beside the journal, answered within a second) and waits for
the journal's ``kill`` entry; with no node running it acts itself on the venue (live) or
leaves the request for the session's next start (paper: no venue holds its orders).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, format_time, load_context

if TYPE_CHECKING:
    from pivotal.trading.journal_state import JournalState

RunFileArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="RUN_FILE",
        dir_okay=False,
        show_default=False,
        help="The session's run file (with --mode: which session).",
    ),
]
ModeOption = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="paper or live (default: the run file's mode).",
        show_default="the run file's mode",
    ),
]
JournalOption = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        dir_okay=False,
        help="The journal file (instead of RUN_FILE).",
        show_default="<data dir>/trading/<run file>.<mode>.journal",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def resolve_journal(
    run_file: Path | None,
    mode: str | None,
    journal: Path | None,
    config: Path | None,
    data_dir: Path | None,
) -> tuple[Path, str]:
    """The session's journal path and mode; BadParameter with what to give instead."""
    if mode is not None and mode not in ("paper", "live"):
        raise typer.BadParameter(
            f"mode {mode!r} is not a session: use --mode paper or --mode live",
            param_hint="--mode",
        )
    ctx = load_context(config, data_dir)  # a missing --config file is named here
    if data_dir is not None and not ctx.data_dir.is_dir():
        raise typer.BadParameter(
            f"{ctx.data_dir} does not exist: give the data dir the session ran with",
            param_hint="--data-dir",
        )
    if journal is not None:
        if not journal.is_file():
            raise typer.BadParameter(f"{journal} does not exist", param_hint="--journal")
        return journal, mode or "?"
    if run_file is None:
        raise typer.BadParameter(
            "give the session's run file (pivotal orders RUN_FILE --mode paper) or --journal PATH",
            param_hint="RUN_FILE",
        )
    if not run_file.is_file():
        raise typer.BadParameter(f"{run_file} is not a file", param_hint="RUN_FILE")
    from pivotal.node.paths import journal_path
    from pivotal.orchestrator.run_file import load_run_config

    run = load_run_config(run_file)
    chosen = mode or run.mode
    if chosen not in ("paper", "live"):
        raise typer.BadParameter(
            f"{run_file} is a {run.mode} run file; say which session: --mode paper or --mode live",
            param_hint="--mode",
        )
    path = journal_path(run.live.journal, run_file, chosen, ctx.data_dir)
    if not path.is_file():
        raise typer.BadParameter(
            f"no {chosen} session journal at {path}: start one with "
            f"`pivotal run {run_file} --mode {chosen}` (or give --journal PATH)",
            param_hint="RUN_FILE",
        )
    return path, chosen


def _state(path: Path) -> JournalState:
    from pivotal.data.order_journal import SqliteOrderJournal
    from pivotal.trading.journal_state import JournalState

    journal = SqliteOrderJournal.open_readonly(path)
    try:
        return JournalState.rebuild(journal.entries())
    finally:
        journal.close()


def _number(value: float | None, digits: int = 8) -> str:
    return "-" if value is None else f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def orders(
    run_file: RunFileArg = None,
    mode: ModeOption = None,
    journal: JournalOption = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only orders still working.")] = False,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The session's orders as its journal knows them (client id, status, fills, reason)."""
    from pivotal.core.journal import order_to_dict

    path, _ = resolve_journal(run_file, mode, journal, config, data_dir)
    state = _state(path)
    rows = state.orders(open_only=open_only)
    if as_json:
        print(json.dumps([order_to_dict(o) for o in rows], default=str))
        return
    table = Table(title=f"orders ({len(rows)}) — {path}")
    for col in (
        "client id",
        "symbol",
        "side",
        "type",
        "qty",
        "filled",
        "avg price",
        "status",
        "reason",
    ):
        table.add_column(col, no_wrap=col in ("client id", "status"))
    for o in rows:
        table.add_row(
            o.client_order_id,
            o.symbol,
            o.side.value,
            o.type.value,
            _number(o.quantity),
            _number(o.filled_quantity),
            _number(o.average_fill_price, 2),
            o.status.value,
            o.reason[:60],
        )
    console.print(table)


def positions(
    run_file: RunFileArg = None,
    mode: ModeOption = None,
    journal: JournalOption = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The session's positions (marks: the last price the journal saw) and its summary."""
    path, _ = resolve_journal(run_file, mode, journal, config, data_dir)
    state = _state(path)
    held = state.positions()
    summary = asdict(state.summary())
    if as_json:
        body: dict[str, Any] = {
            "positions": {
                s: {
                    "quantity": p.quantity,
                    "average_entry_price": p.average_entry_price,
                    "mark_price": p.mark_price,
                    "unrealized_pnl": p.unrealized_pnl,
                    "realized_pnl": p.realized_pnl,
                    "fees_paid": p.fees_paid,
                }
                for s, p in held.items()
            },
            "summary": summary,
        }
        print(json.dumps(body, default=str))
        return
    table = Table(title=f"positions — {path}")
    for col in ("symbol", "quantity", "avg entry", "mark", "unrealized", "realized", "fees"):
        table.add_column(col)
    for symbol, p in held.items():
        table.add_row(
            symbol,
            _number(p.quantity),
            _number(p.average_entry_price, 2),
            _number(p.mark_price, 2),
            _number(p.unrealized_pnl, 2),
            _number(p.realized_pnl, 2),
            _number(p.fees_paid, 4),
        )
    console.print(table)
    equity = summary["last_equity"]
    console.print(
        f"orders {summary['orders']} ({summary['open_orders']} open), fills {summary['fills']}, "
        f"fees {summary['fees']:,.4f}, realized {summary['realized_pnl']:,.2f}, equity "
        + ("-" if equity is None else f"{equity[1]:,.2f} at {format_time(equity[0])}")
        + f", reconcile differences {summary['reconcile_differences']} "
        f"({summary['unresolved']} unresolved)",
        highlight=False,
    )


def fills(
    run_file: RunFileArg = None,
    mode: ModeOption = None,
    journal: JournalOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest N fills.")] = 50,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The session's fills (newest last), each booked once (by the venue's trade id)."""
    from pivotal.core.journal import fill_to_dict

    path, _ = resolve_journal(run_file, mode, journal, config, data_dir)
    rows = _state(path).fills()
    if as_json:
        print(json.dumps([fill_to_dict(f) for f in rows], default=str))
        return
    shown = rows[-limit:]
    table = Table(title=f"fills ({len(rows)}, newest {len(shown)}) — {path}")
    for col in ("time", "client id", "symbol", "side", "qty", "price", "fee", "trade id"):
        table.add_column(col, no_wrap=col in ("time", "client id", "trade id"))
    for f in shown:
        table.add_row(
            format_time(f.timestamp),
            f.client_order_id,
            f.symbol,
            f.side.value,
            _number(f.quantity),
            _number(f.price, 2),
            _number(f.fee, 6),
            f.venue_trade_id or "-",
        )
    console.print(table)


def kill(
    run_file: RunFileArg = None,
    mode: ModeOption = None,
    journal: JournalOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")] = "pivotal kill",
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for the node to act.")
    ] = 30.0,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stop new entries, cancel every order and flatten every position of a session."""
    from pivotal.data.order_journal import SqliteOrderJournal, writer_pid
    from pivotal.node.kill_switch import request_kill

    path, chosen = resolve_journal(run_file, mode, journal, config, data_dir)
    before = _last_seq(path)
    request_kill(path, reason)
    pid = writer_pid(path)
    if pid is None:
        if chosen == "live" and run_file is not None:
            from pivotal.apps.cli.session_cmd import kill_without_node

            for line in kill_without_node(run_file, path, reason, config, data_dir):
                console.print(line, highlight=False)
            return
        console.print(
            f"no node is running this session; the kill request waits at "
            f"{path.name}.kill and fires when the session starts again",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"asked node pid {pid} to kill: {reason}", highlight=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        reader = SqliteOrderJournal.open_readonly(path)
        try:
            done = [e for e in reader.entries(since_seq=before, kinds=["kill"])]
        finally:
            reader.close()
        if done:
            data = done[-1].data
            console.print(
                f"done: {len(data.get('cancelled', []))} order(s) cancelled, flattened "
                f"{data.get('flattened') or 'nothing'} in {float(data.get('seconds', 0)):.2f} s",
                highlight=False,
            )
            for problem in data.get("problems", []):
                console.print(f"[yellow]problem:[/] {problem}", highlight=False)
            return
        time.sleep(0.2)
    console.print(f"[red]the node did not confirm the kill within {wait:g} s[/]")
    raise typer.Exit(1)


def _last_seq(path: Path) -> int:
    from pivotal.data.order_journal import SqliteOrderJournal

    reader = SqliteOrderJournal.open_readonly(path)
    try:
        return reader.last_seq()
    finally:
        reader.close()
