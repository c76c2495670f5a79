"""``pivotal run``: the orchestrator over a run file (experts, gate, learning, settings).

``--mode backtest`` replays the stored candles through the orchestrator with the simulated
broker and the risk manager. Paper and live trading drive the same orchestrator with the
wall clock and an exchange broker; they arrive with Stage 7 and are refused until then.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pivotal.apps.cli.common import DataDirOption, console, load_context

if TYPE_CHECKING:
    from pivotal.orchestrator.run import OrchestratedRun

MODES = ("backtest",)


def summary_lines(run: OrchestratedRun) -> list[str]:
    """The console summary of an orchestrated run: result beside buy-and-hold, decisions,
    per-model contributions, learning and fault events, history."""
    m = run.result.metrics
    hold = run.benchmark["buy and hold"].metrics
    decisions = run.decisions
    counts = Counter(decisions["action"]) if len(decisions) else Counter()
    by_action = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    lines = [
        f"data: {run.data_note}",
        f"orchestrated: return {m['total_return_pct']:+.2f} % vs buy-and-hold "
        f"{hold['total_return_pct']:+.2f} %, max drawdown {m['max_drawdown_pct']:.2f} %, "
        f"{int(m['n_trades'])} trades, win rate {m['win_rate_pct']:.1f} %, fees "
        f"{m['fees_paid']:,.2f}",
        f"decisions: {len(decisions):,} ({by_action})",
    ]
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
    lines.append(f"inference history: {run.stored:,} steps stored; {run.seconds:.1f} s")
    return lines


def run(
    config_file: Annotated[
        Path,
        typer.Option(
            "--config", "-c", exists=True, dir_okay=False, help="Run file (YAML): see README."
        ),
    ],
    mode: Annotated[str, typer.Option("--mode", help="backtest (paper, live: Stage 7).")] = (
        "backtest"
    ),
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report.")] = None,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Do not store the inference history.")
    ] = False,
    pivotal_config: Annotated[
        Path | None,
        typer.Option("--pivotal-config", dir_okay=False, help="pivotal's own config file."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the orchestrator (experts → gate → risk → broker) as the run file says."""
    if mode not in MODES:  # before the heavy imports: a refusal is instant
        raise typer.BadParameter(
            f"mode {mode!r} is not available in this version: use backtest (paper and live "
            "trading arrive with the exchange brokers)",
            param_hint="--mode",
        )
    from pivotal.orchestrator.report import write_orchestrator_report
    from pivotal.orchestrator.run import load_run_config, run_backtest_mode

    run_config = load_run_config(config_file)
    if run_config.mode != mode:
        raise typer.BadParameter(
            f"the run file says mode {run_config.mode!r} but --mode is {mode!r}",
            param_hint="--mode",
        )
    ctx = load_context(pivotal_config, data_dir)
    with ctx.store() as store:
        result = run_backtest_mode(
            store, run_config, history=not no_history, progress=console.is_terminal
        )
    for line in summary_lines(result):
        console.print(line, highlight=False)
    if report is not None:
        write_orchestrator_report(
            report,
            result.result,
            result.candles,
            result.decisions,
            accuracy=result.accuracy,
            events=result.events,
            benchmark=result.benchmark,
            data_note=result.data_note,
            thresholds=(
                run_config.orchestrator.gate.buy_threshold,
                run_config.orchestrator.gate.sell_threshold,
            ),
        )
        console.print(f"report: {report}", highlight=False)
