"""``pivotal demo``: the main job end to end.

Bring market data in — real files when ``--data`` points at them, else a download from the
exchange (with fallback), else the seeded simulator (said loudly) — and print what is stored
with gaps and basic statistics. Compute the indicator set and the 5-level Williams pivots of
the hourly series and write a pivot chart per symbol. Backtest an SMA cross on two symbols
in one account through the simulated broker and the risk manager, with an HTML report. Then
the orchestrator end to end (see :mod:`pivotal.apps.cli.demo_orchestrator`): checkpoints in
the data dir's ``models`` folder, the run file beside its report in ``reports``. Then the
trading session (:mod:`pivotal.apps.cli.demo_session`): the same orchestrator trades the
held-out span replayed by a local exchange, is SIGKILLed part-way and restarted, and its
journal is printed beside the exchange's record. The demo ends with the next commands to try,
for the same data dir.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    err_console,
    load_context,
    progress_bar,
    split_list,
)

#: Market time per wall time of the demo's session: 150 s cover two days of the held-out span.
SESSION_SPEED = 1_200.0
#: ``--serve``: one market minute per wall second, so a 1m chart moves every second and the
#: planned span lasts over an hour of watching.
SERVE_SPEED = 60.0


def demo(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Folder of real market data to import (e.g. ../shared/data); "
            "without it the demo downloads, or simulates when offline.",
            file_okay=False,
        ),
    ] = None,
    symbols: Annotated[str, typer.Option("--symbols", help="Symbols to download.")] = (
        "BTC/USDT,ETH/USDT"
    ),
    days: Annotated[int, typer.Option("--days", min=1, help="Days of 1m candles to download.")] = 3,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Shorter training and trading spans, a smoke run (default: the full spans).",
        ),
    ] = False,
    session_seconds: Annotated[
        float,
        typer.Option(
            "--session-seconds",
            min=0,
            help="Wall seconds of the trading session against the local exchange (0: no session).",
        ),
    ] = 150.0,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="At the end, keep a paper session against the local exchange running with "
            "the API and the dashboard until Ctrl-C.",
        ),
    ] = False,
    serve_port: Annotated[
        int,
        typer.Option("--serve-port", min=0, max=65535, help="With --serve: the dashboard's port."),
    ] = 8765,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the main job end to end: data, features, a backtest, then the orchestrator
    (train a PivotCNN and a DQN, learn, trade a held-out month) with HTML reports; it ends
    with the next commands to try."""
    from pivotal.apps.cli.demo_orchestrator import orchestrator_step, run_file_path
    from pivotal.apps.cli.demo_session import SessionPlan, plan_session, session_step
    from pivotal.apps.cli.demo_steps import (
        backtest_step,
        dashboard_commands,
        download_recent,
        feature_step,
        import_folder,
        next_commands,
        simulate_fallback,
        summarise,
    )
    from pivotal.core.errors import OperationalError, TransientError

    ctx = load_context(config, data_dir)
    started = time.perf_counter()
    with ctx.store() as store:
        if data is not None:
            if not data.is_dir():
                raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
            with progress_bar() as bar:
                used = import_folder(store, data, bar)
        else:
            try:
                with progress_bar() as bar:
                    used = download_recent(store, ctx.config, split_list(symbols), days, bar)
            except (OperationalError, TransientError) as exc:
                err_console.print(f"[yellow]download failed ({exc}); using the simulator[/]")
                used = simulate_fallback(store, split_list(symbols))
        for table in summarise(store):
            console.print(table)
        console.rule("features")
        for line in feature_step(store, ctx.data_dir / "reports"):
            console.print(line, highlight=False)
        console.rule("backtest")
        for line in backtest_step(store, ctx.data_dir / "reports"):
            console.print(line, highlight=False)
        console.rule("orchestrator")
        if quick:
            console.print("[yellow]--quick: short training, learning and trading spans[/]")
        for line in orchestrator_step(
            store,
            ctx.data_dir / "reports",
            say=lambda text: console.print(text, highlight=False),
            quick=quick,
            models_dir=ctx.data_dir / "models",
        ):
            console.print(line, highlight=False)
        plan: SessionPlan | str | None = None
        orchestrated = run_file_path(ctx.data_dir / "reports")
        if (session_seconds > 0 or serve) and orchestrated.is_file():
            plan = plan_session(
                store,
                orchestrated,
                ctx.data_dir,
                seconds=max(session_seconds, 150.0),
                speed=SESSION_SPEED,
            )
    if plan is not None and session_seconds > 0:  # the session opens the store: ours is closed
        console.rule("trading session (local exchange, kill and restart)")
        if isinstance(plan, str):
            console.print(f"[yellow]no session: {plan}[/]", highlight=False)
        else:
            lines = session_step(
                plan,
                ctx.data_dir,
                say=lambda text: console.print(text, highlight=False, soft_wrap=True),
                seconds=session_seconds,
                speed=SESSION_SPEED,
            )
            for line in lines:
                console.print(line, highlight=False, soft_wrap=True)
    style = "bold yellow" if "SIMULATED" in used else "green"
    console.print(
        Panel(
            f"{used}\nstore: {ctx.data_dir}\nfinished in {time.perf_counter() - started:.1f} s",
            title="data used",
            border_style=style,
        )
    )
    shown = data_dir if data_dir is not None else ctx.data_dir
    run_file = run_file_path(shown / "reports")
    commands = next_commands(shown, run_file if run_file.is_file() else None)
    console.print("next, try:", highlight=False)
    for command in commands:
        console.print(f"  {command}", highlight=False, soft_wrap=True)
    console.print("watch the results in the dashboard (Ctrl-C stops it):", highlight=False)
    for command in dashboard_commands(shown):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
    if serve:
        _serve_at_the_end(plan, ctx.data_dir, serve_port, shown)


def _serve_at_the_end(plan: object, data_dir: Path, port: int, shown: Path) -> None:
    """``--serve``: a paper session with the dashboard until stopped (module docstring)."""
    from pivotal.apps.cli.demo_session import SessionPlan, serve_session

    console.rule("paper session with the dashboard (Ctrl-C stops it)")
    if not isinstance(plan, SessionPlan):
        reason = plan if isinstance(plan, str) else "the orchestrated run did not run"
        raise typer.BadParameter(
            f"no session to serve: {reason}; serve the finished results with: "
            f"pivotal serve --data-dir {shown}",
            param_hint="--serve",
        )
    code = serve_session(
        plan,
        data_dir,
        say=lambda text: console.print(text, highlight=False, soft_wrap=True),
        speed=SERVE_SPEED,
        port=port,
    )
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise typer.Exit(code)
