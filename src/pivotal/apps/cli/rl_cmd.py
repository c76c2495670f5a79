"""``pivotal train dqn`` and ``pivotal evaluate`` of a DQN checkpoint.

``train`` and ``evaluate`` dispatch here for the reinforcement-learning agent; this module
only turns options into a :class:`~pivotal.rl.run.DQNJob` and prints what
:mod:`pivotal.rl.run` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from pivotal.apps.cli.common import Context, console, format_time

if TYPE_CHECKING:
    from pivotal.rl.run import DQNEvaluation, DQNJob

#: keys of ``pivotal train dqn`` options → where they go in the DQNJob
_ENV_KEYS = ("symbol", "timeframe", "streams", "frames", "episode_length")
_DQN_KEYS = ("total_steps", "hidden", "seed", "device", "learning_rate", "batch_size")
_JOB_KEYS = ("exchange", "since", "until", "envs", "cnn_checkpoint")


def build_dqn_job(job_file: Path | None, options: dict[str, Any]) -> DQNJob:
    """A DQNJob from a YAML/JSON file, then the options that were given (None = not given)."""
    from pydantic import ValidationError

    from pivotal.rl.run import DQNJob

    data: dict[str, Any] = {}
    if job_file is not None:
        loaded = yaml.safe_load(job_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{job_file}: a DQN job file must be a mapping")
        data = loaded
    env = dict(data.get("env", {}))
    dqn = dict(data.get("dqn", {}))
    for key, value in options.items():
        if value is None:
            continue
        if key in _ENV_KEYS:
            env[key] = value
        elif key in _DQN_KEYS:
            dqn[key] = value
        elif key in _JOB_KEYS:
            data[key] = value
        else:
            raise typer.BadParameter(f"--{key.replace('_', '-')} does not apply to dqn")
    data["env"], data["dqn"] = env, dqn
    try:
        return DQNJob.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid DQN job:\n  " + "\n  ".join(lines)) from None


def train_dqn(
    ctx: Context, job: DQNJob, folder: Path, *, keep: int, log_dir: Path | None, html: Path
) -> None:
    from pivotal.rl.run import train_dqn_job

    console.print(
        f"training dqn on {job.exchange} {job.env.symbol} {job.env.timeframe}, "
        f"{job.env.frames} frames, {job.dqn.total_steps:,} steps in {job.envs} envs"
        f"{', with PivotCNN features from ' + job.cnn_checkpoint if job.cnn_checkpoint else ''}",
        highlight=False,
    )
    with ctx.store(read_only=True) as store:
        outcome = train_dqn_job(store, job, folder, keep=keep, log_dir=log_dir, progress=True)
    result = outcome.result
    console.print(
        f"{result.steps:,} steps ({result.gradient_steps:,} gradient steps) at "
        f"{result.steps_per_second:,.0f} steps/s; best validation return "
        f"{result.best_val_return:+.2%}",
        highlight=False,
    )
    console.print(f"best checkpoint: {outcome.best_checkpoint}", highlight=False)
    if log_dir is not None:
        console.print(f"TensorBoard logs: {log_dir}", highlight=False)
    show_dqn_evaluation(outcome.evaluation, html)


def evaluate_dqn(ctx: Context, checkpoint: Path, html: Path | None) -> None:
    from pivotal.rl.run import evaluate_agent

    with ctx.store(read_only=True) as store:
        evaluation = evaluate_agent(store, checkpoint)
    show_dqn_evaluation(evaluation, html)


def show_dqn_evaluation(evaluation: DQNEvaluation, html: Path | None) -> None:
    """The held-out comparison as a table; the agent's backtest as an HTML report."""
    from rich.table import Table

    from pivotal.backtest.metrics import METRIC_LABELS

    table = Table(
        title=f"held-out range {format_time(evaluation.start_ms)} .. "
        f"{format_time(evaluation.end_ms)} UTC (backtester, same fees and risk limits)"
    )
    for name in ("metric", "dqn (greedy)", "buy and hold", "random agent"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for key, *values in evaluation.table():
        table.add_row(METRIC_LABELS.get(key, key), *(f"{v:,.2f}" for v in values))
    console.print(table)
    agent = evaluation.agent.metrics["total_return_pct"]
    hold = evaluation.buy_and_hold.metrics["total_return_pct"]
    rand = evaluation.random.metrics["total_return_pct"]
    verdict = "beats" if agent > max(hold, rand) else "does NOT beat"
    idle = len(evaluation.agent.fills) == 0
    console.print(
        f"the agent {verdict} both baselines: {agent:+.2f} % vs buy-and-hold {hold:+.2f} % "
        f"and random {rand:+.2f} %"
        + (" (it never traded: it learned to stay out)" if idle else ""),
        highlight=False,
    )
    if html is not None:
        from pivotal.backtest.report import write_html

        benchmark = evaluation.buy_and_hold.equity
        write_html(
            evaluation.agent,
            evaluation.candles,
            html,
            title="dqn (greedy) on the held-out range",
            benchmark_equity=benchmark,
        )
        console.print(f"report: {html}", highlight=False)
