"""``pivotal run RUN_FILE --mode paper|live``: a trading session from the command line.

The command only parses and calls: :func:`pivotal.node.build.build_node` builds the session
(the one place that knows the mode), :meth:`TradingNode.run` runs it until SIGTERM/SIGINT,
the duration, or the feed's end, and the session's journal summary is printed at the end.
Mistakes are refused before anything starts: an unknown venue, live without
``--i-understand-real-money`` on a real venue, missing or exposed keys, an endpoint nobody
answers on, a checkpoint that is not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pivotal.apps.cli.common import console, load_context
from pivotal.node.build import SessionOptions

if TYPE_CHECKING:
    from pivotal.orchestrator.run_file import RunConfig

__all__ = ["ServeOptions", "SessionOptions", "kill_without_node", "run_session"]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """``pivotal run ... --serve``: the API and dashboard in the session's process."""

    host: str = "127.0.0.1"
    port: int = 8765
    token_file: Path | None = None
    exposure: bool = False


def run_session(
    run_file: Path,
    run: RunConfig,
    options: SessionOptions,
    config: Path | None,
    data_dir: Path | None,
    *,
    serve: ServeOptions | None = None,
) -> None:
    from pivotal.data.duckdb_store import STORE_FILE_NAME
    from pivotal.node.build import build_node
    from pivotal.trading.journal_state import JournalState

    ctx = load_context(config, data_dir)
    if not (ctx.data_dir / STORE_FILE_NAME).is_file():
        from pivotal.core.errors import ConfigError

        raise ConfigError(
            f"no market-data store in {ctx.data_dir} ({STORE_FILE_NAME} is missing): the "
            "session warms its models with stored candles; import them first (pivotal data "
            "import) or point --data-dir at the folder that holds them"
        )

    def say(line: str) -> None:
        console.print(line, highlight=False)

    with ctx.store() as store:
        node = build_node(
            run,
            options,
            run_file=run_file,
            store=store,
            config=ctx.config,
            data_dir=ctx.data_dir,
            say=say,
        )
        say(
            f"{options.mode} session on {node.settings.venue}: {', '.join(run.symbols)} "
            f"{run.base}; journal {node.journal_path}; Ctrl-C or SIGTERM stops it "
            f"(open orders: {node.settings.on_stop})"
        )
        server = _start_server(node, serve, say) if serve is not None else None
        try:
            report = node.run()
            state = JournalState.rebuild(node.journal.entries())
        finally:
            if server is not None:
                view, api = server
                view.close()
                api.stop()
            node.journal.close()
    say(
        f"stopped: {report.stop_reason}; {report.decisions:,} decisions this run, "
        f"{report.reconciles} reconciliation(s), {report.held_events:,} event(s) older than "
        "their step delivered with the next one"
    )
    for line in session_lines(state):
        say(line)


def _start_server(node: object, serve: ServeOptions, say: Any) -> tuple[Any, Any]:
    """The node's view served by the API (and the dashboard) on a thread of this process."""
    from pivotal.apps.cli.serve_cmd import start_api
    from pivotal.services.live_view import LiveNodeView
    from pivotal.services.view import Services

    view = LiveNodeView(node)  # type: ignore[arg-type]
    try:
        api = start_api(
            Services([view]),
            host=serve.host,
            port=serve.port,
            token_file=serve.token_file,
            exposure=serve.exposure,
            say=say,
        )
    except BaseException:
        view.close()
        raise
    return view, api


def session_lines(state: object) -> list[str]:
    """The journal's summary of a session, for people."""
    summary = state.summary()  # type: ignore[attr-defined]
    equity = summary.last_equity
    positions = state.positions()  # type: ignore[attr-defined]
    held = ", ".join(f"{s} {p.quantity:g}" for s, p in positions.items()) or "flat"
    return [
        f"journal: {summary.orders} orders ({summary.open_orders} open; "
        + ", ".join(f"{k} {v}" for k, v in summary.orders_by_status.items())
        + f"), {summary.fills} fills, fees {summary.fees:,.4f}",
        f"positions: {held}; equity "
        + ("-" if equity is None else f"{equity[1]:,.2f}")
        + f"; reconcile differences {summary.reconcile_differences} "
        f"({summary.unresolved} unresolved)",
    ]


def kill_without_node(
    run_file: Path, journal: Path, reason: str, config: Path | None, data_dir: Path | None
) -> Iterator[str]:
    """Fire the kill switch of a live session whose node is not running: the broker is built
    against the venue (start: rebuild + reconcile), then cancel all and flatten."""
    from pivotal.node.kill_switch import KillSwitch, read_kill_request
    from pivotal.node.offline import session_broker_for
    from pivotal.orchestrator.run_file import load_run_config
    from pivotal.trading.risk import RiskManager

    run = load_run_config(run_file)
    ctx = load_context(config, data_dir)
    read_kill_request(journal)  # we act ourselves: the request is consumed
    with session_broker_for(run, journal, ctx.config) as (broker, store_journal, clock):
        for line in broker.start().lines():
            yield f"start: {line}"
        switch = KillSwitch(
            broker, RiskManager(run.settings.risk), store_journal, clock, list(run.symbols)
        )
        yield from switch.fire(reason).lines()
