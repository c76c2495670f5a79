"""``pivotal run RUN_FILE``: the orchestrator over a run file (experts, gate, learning,
settings).

``--mode backtest`` replays the stored candles through the orchestrator with the simulated
broker and the risk manager. ``--mode paper`` and ``--mode live`` run the same orchestrator,
risk manager and executor on the venue's live streams (:mod:`pivotal.apps.cli.session_cmd`):
paper fills against the live book, live sends orders to the venue and needs
``--i-understand-real-money`` unless it trades a testnet or a local exchange.
``-c/--config`` is pivotal's own config file, as for every other command.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, load_context

if TYPE_CHECKING:
    from pivotal.orchestrator.run import OrchestratedRun

MODES = ("backtest", "paper", "live")


def summary_lines(run: OrchestratedRun) -> list[str]:
    """The console summary of an orchestrated run: result beside buy-and-hold (the same
    figures as the report and the JSON), time in the market, decisions, per-model
    contributions, learning and fault events, gaps, checkpoints, history."""
    from pivotal.orchestrator.benchmark import (
        BUY_AND_HOLD,
        BUY_AND_HOLD_TEXT,
        edge_note,
        in_market_pct,
    )

    m = run.result.metrics
    hold = run.benchmark[BUY_AND_HOLD].metrics
    in_market = in_market_pct(run.result)
    decisions = run.decisions
    counts = Counter(decisions["action"]) if len(decisions) else Counter()
    by_action = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    lines = [
        f"data: {run.data_note}",
        f"orchestrated: return {m['total_return_pct']:+.2f} % vs buy-and-hold "
        f"{hold['total_return_pct']:+.2f} %, max drawdown {m['max_drawdown_pct']:.2f} % vs "
        f"{hold['max_drawdown_pct']:.2f} %, Sharpe {_ratio(m.get('sharpe_daily'))} vs "
        f"{_ratio(hold.get('sharpe_daily'))} (daily returns), {int(m['n_trades'])} trades, "
        f"win rate {m['win_rate_pct']:.1f} %, fees {m['fees_paid']:,.2f}",
        f"in the market {in_market:.1f} % of the time; {BUY_AND_HOLD_TEXT}",
    ]
    note = edge_note(float(m["total_return_pct"]), float(hold["total_return_pct"]), in_market)
    if note:
        lines.append(note)
    lines.append(f"decisions: {len(decisions):,} ({by_action})")
    share_cols = [c for c in decisions.columns if c.startswith("share_")]
    acting = decisions[decisions["action"] != "HOLD"] if len(decisions) else decisions
    if share_cols and len(acting):
        shares = ", ".join(f"{c.removeprefix('share_')} {acting[c].mean():.3f}" for c in share_cols)
        lines.append(f"mean contribution to BUY/SELL confidence: {shares}")
    if run.accuracy is not None and len(run.accuracy):
        last = run.accuracy.groupby(["model", "symbol"]).tail(1)
        acc = ", ".join(
            f"{r.model} {r.symbol} {r.accuracy:.3f}" for r in last.itertuples(index=False)
        )
        lines.append(f"rolling prediction accuracy at the end: {acc}")
    kinds = Counter(e["kind"] for e in run.events)
    if kinds:
        lines.append("events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    gaps = list(getattr(run, "gaps", None) or [])
    if gaps:
        from pivotal.backtest.gaps import gap_lines

        lines.append(f"gaps in the data met by the run: {len(gaps)}")
        lines += [f"  {line}" for line in gap_lines(gaps, limit=3)]
    checkpoints = list(getattr(run, "checkpoints", None) or [])
    if checkpoints:
        status = Counter(str(c.get("status", "?")) for c in checkpoints)
        lines.append(
            "online checkpoints at the start: "
            + ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
        )
    lines.append(f"inference history: {run.stored:,} steps stored; {run.seconds:.1f} s")
    return lines


def _ratio(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.2f}"


def run(
    run_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="RUN_FILE",
            dir_okay=False,
            show_default=False,
            help="The run file (YAML): symbols, range, settings and the orchestrator's "
            "experts; see the README.",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="backtest (the stored range), paper (live data, simulated fills) or live "
            "(orders on the venue).",
            show_default="the run file's mode",
        ),
    ] = None,
    real_money: Annotated[
        bool,
        typer.Option(
            "--i-understand-real-money",
            help="Required by --mode live on a real venue (not for --testnet or a local "
            "exchange endpoint).",
        ),
    ] = False,
    testnet: Annotated[
        bool, typer.Option("--testnet", help="Paper/live: the venue's sandbox URLs.")
    ] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Paper/live: the venue's REST base URL, e.g. a local exchange's "
            "http://127.0.0.1:9001 (WebSocket: the same host and port).",
            show_default="the run file's live.rest_url, else the venue's own",
        ),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            dir_okay=False,
            help="Live: {api_key, api_secret} file outside the repository (chmod 600).",
            show_default="live.keys_file, else PIVOTAL_EXCHANGES__<VENUE>__API_KEY/__SECRET",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Paper/live: stop after this many seconds.",
            show_default="the run file's live.duration_s, else until stopped",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            dir_okay=False,
            help="Write the HTML report to this file (default: no report).",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            dir_okay=False,
            help="Write decisions, trades, metrics, benchmark, events, gaps and checkpoints "
            "as JSON to this file (default: no JSON).",
            show_default=False,
        ),
    ] = None,
    gaps: Annotated[
        str | None,
        typer.Option(
            "--gaps",
            help="At a gap in the data: close (exit at the close of the last bar before it) or "
            "hold (carry the position through); default: the run file's settings.gaps, else "
            "close.",
            show_default=False,
        ),
    ] = None,
    no_history: Annotated[
        bool,
        typer.Option("--no-history", help="Do not store the inference history (default: stored)."),
    ] = False,
    no_accelerate: Annotated[
        bool,
        typer.Option(
            "--no-accelerate",
            help="Push every bar through the market frame one at a time, as paper and live "
            "trading do, instead of evaluating the models that do not depend on the position "
            "in batches ahead of the clock (same decisions, slower).",
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Paper/live: serve the API and the dashboard from the session's own process "
            "(one writer for the store).",
        ),
    ] = False,
    serve_host: Annotated[
        str,
        typer.Option(
            "--serve-host",
            help="With --serve: the address to bind (loopback unless --i-understand-exposure).",
        ),
    ] = "127.0.0.1",
    serve_port: Annotated[
        int,
        typer.Option("--serve-port", min=0, max=65535, help="With --serve: the port (0: any)."),
    ] = 8765,
    exposure: Annotated[
        bool,
        typer.Option(
            "--i-understand-exposure",
            help="With --serve: allow a --serve-host other than loopback (plain HTTP).",
        ),
    ] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            dir_okay=False,
            help="With --serve: the API's token file (created at first start, outside the "
            "repository).",
            show_default="$PIVOTAL_API_TOKEN_FILE, else ~/.config/pivotal/api-tokens.json",
        ),
    ] = None,
    config: ConfigOption = None,
    pivotal_config: Annotated[
        Path | None,
        typer.Option("--pivotal-config", dir_okay=False, hidden=True, help="Same as --config."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the orchestrator (experts → gate → risk → broker) as the run file says."""
    if run_file is None:
        raise typer.BadParameter(_missing_run_file(config), param_hint="RUN_FILE")
    if not run_file.is_file():
        raise typer.BadParameter(f"{run_file} is not a file", param_hint="RUN_FILE")
    if mode is not None and mode not in MODES:  # before the heavy imports: instant
        raise typer.BadParameter(
            f"mode {mode!r} is not one of {', '.join(MODES)}", param_hint="--mode"
        )
    from pivotal.orchestrator.export import write_run_json
    from pivotal.orchestrator.report import write_run_report
    from pivotal.orchestrator.run import run_backtest_mode
    from pivotal.orchestrator.run_file import load_run_config

    run_config = load_run_config(run_file)
    mode = mode or run_config.mode
    if serve and mode not in ("paper", "live"):
        raise typer.BadParameter(
            f"--serve steers a running paper or live session, and this is a {mode} run; serve "
            "a finished run's results with: pivotal serve --data-dir DIR",
            param_hint="--serve",
        )
    if mode in ("paper", "live"):
        from pivotal.apps.cli.session_cmd import ServeOptions, SessionOptions, run_session

        options = SessionOptions(
            mode=mode,
            real_money=real_money,
            testnet=testnet,
            endpoint=endpoint,
            keys=keys,
            duration_s=duration,
        )
        served = ServeOptions(serve_host, serve_port, token_file, exposure) if serve else None
        run_session(run_file, run_config, options, config or pivotal_config, data_dir, serve=served)
        return
    if gaps is not None:
        from pivotal.core.gaps import GapPolicy

        try:
            policy = GapPolicy.parse(gaps)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--gaps") from None
        settings = run_config.settings.model_copy(update={"gaps": policy})
        run_config = run_config.model_copy(update={"settings": settings})
    if no_accelerate:
        run_config = run_config.model_copy(update={"accelerate": False})
    ctx = load_context(config or pivotal_config, data_dir)
    if "max_missing_bars" not in run_config.settings.model_fields_set:  # pivotal config: gaps
        gap_bars = ctx.config.gaps.max_missing_bars
        settings = run_config.settings.model_copy(update={"max_missing_bars": gap_bars})
        run_config = run_config.model_copy(update={"settings": settings})
    from pivotal.data.duckdb_store import STORE_FILE_NAME

    if not (ctx.data_dir / STORE_FILE_NAME).is_file():  # a mistyped --data-dir: no empty store
        raise typer.BadParameter(
            f"no market-data store in {ctx.data_dir} ({STORE_FILE_NAME} is missing); import "
            "the candles first (pivotal data import) or point --data-dir at the folder that "
            "holds them",
            param_hint="--data-dir",
        )
    with ctx.store() as store:
        result = run_backtest_mode(
            store,
            run_config,
            history=not no_history,
            progress=console.is_terminal,
            warn=lambda line: console.print(f"[yellow]warning:[/] {line}", highlight=False),
        )
    for line in summary_lines(result):
        console.print(line, highlight=False)
    if report is not None:
        write_run_report(report, result)
        console.print(f"report: {report}", highlight=False)
    if json_out is not None:
        write_run_json(result, json_out)
        console.print(f"json: {json_out}", highlight=False)


def _missing_run_file(config: Path | None) -> str:
    """The message for a missing RUN_FILE; it spots a run file given as ``-c/--config``."""
    text = "give the run file: pivotal run RUN_FILE (a YAML file; see the README)"
    if config is None or not config.is_file():
        return text
    try:
        head = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return text
    if "orchestrator:" in head or "experts:" in head:
        return (
            f"{config} looks like a run file: give it as the argument, "
            f"`pivotal run {config}`; -c/--config is pivotal's own config file"
        )
    return text
