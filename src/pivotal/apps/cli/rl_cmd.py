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

from pivotal.apps.cli.args import validation_message
from pivotal.apps.cli.common import Context, console, format_time

if TYPE_CHECKING:
    from pivotal.rl.run import DQNEvaluation, DQNJob

#: keys of ``pivotal train dqn`` options → where they go in the DQNJob
_ENV_KEYS = ("symbol", "timeframe", "streams", "frames", "episode_length")
_DQN_KEYS = ("total_steps", "hidden", "seed", "device", "learning_rate", "batch_size")
_JOB_KEYS = ("exchange", "since", "until", "envs", "cnn_checkpoint")


def dqn_param_names() -> dict[str, tuple[str, ...]]:
    """The names ``pivotal train dqn -p NAME=VALUE`` takes, by section of the DQN job."""
    from pivotal.rl.config import EnvConfig
    from pivotal.rl.dqn import DQNConfig
    from pivotal.rl.run import DQNJob

    job = tuple(n for n in DQNJob.model_fields if n not in ("env", "dqn"))
    return {"dqn": tuple(DQNConfig.model_fields), "env": tuple(EnvConfig.model_fields), "": job}


def _apply_params(data: dict[str, Any], params: dict[str, Any]) -> None:
    """``-p NAME=VALUE``: NAME is a field of the agent (``hidden``, ``gamma``), of the
    environment (``reward``, ``frames``) or of the job (``eval_every``); ``env.NAME``,
    ``dqn.NAME`` or a dotted path (``env.settings.broker.initial_cash``) say where."""
    sections = dqn_param_names()
    for name, value in params.items():
        path = name.split(".")
        if len(path) == 1:
            where = next((s for s, names in sections.items() if name in names), None)
            if where is None:
                listed = "; ".join(f"{s or 'job'}: {', '.join(n)}" for s, n in sections.items())
                raise typer.BadParameter(
                    f"unknown DQN parameter {name!r}; use one of {listed}", param_hint="--param"
                )
            path = [where, name] if where else [name]
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{name}: {part} is not a section", param_hint="--param")
            node = child
        node[path[-1]] = value


def _cnn_market(path: Path) -> tuple[str, str, tuple[str, ...], int]:
    """``(symbol, timeframe, streams, frames)`` of the job a PivotCNN checkpoint was trained
    on; a usage error when the file is not a ``pivotal train`` checkpoint."""
    from pivotal.rl.cnn_features import read_job_and_scaling

    try:
        _, job, _ = read_job_and_scaling(path)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--cnn") from None
    return job.symbol, job.timeframe, tuple(job.streams), job.frames


def _align_with_cnn(env: dict[str, Any], cnn: str, given: dict[str, Any]) -> None:
    """The agent observes the CNN's market: symbol, anchor and streams default to the CNN's
    (so ``--streams`` may be left out) and a different value is refused, as are fewer frames
    than the CNN reads (its features would start after the agent's first step)."""
    symbol, timeframe, streams, frames = _cnn_market(Path(cnn))
    where = f"the PivotCNN checkpoint {cnn} was trained on {symbol} {timeframe}" + (
        f" with streams {','.join(streams)}" if streams else " without streams"
    )
    wanted = {"symbol": symbol, "timeframe": timeframe, "streams": streams}
    for key, value in wanted.items():
        have = env.get(key)
        if have is None:
            env[key] = value
            continue
        same = set(have) == set(value) if key == "streams" else str(have) == value
        if not same:
            shown = ",".join(have) if key == "streams" else have
            option = f"--{key}" if given.get(key) is not None else f"env.{key} in the job"
            raise typer.BadParameter(
                f"{option} {shown or '(none)'} does not match the CNN: {where}; leave "
                f"{option} out to use the CNN's",
                param_hint="--cnn",
            )
    if env.get("frames") is None:
        env["frames"] = frames
    elif int(env["frames"]) < frames:
        raise typer.BadParameter(
            f"--frames {env['frames']} is fewer than the {frames} frames the CNN reads, so its "
            f"features would start after the agent's first step; use --frames {frames} or more "
            "(or leave --frames out)",
            param_hint="--frames",
        )


def build_dqn_job(
    job_file: Path | None, options: dict[str, Any], params: dict[str, Any] | None = None
) -> DQNJob:
    """A DQNJob from a YAML/JSON file, then ``-p`` parameters, then the options that were
    given (None = not given). With a PivotCNN checkpoint, the market defaults to the CNN's."""
    from pydantic import ValidationError

    from pivotal.rl.run import DQNJob

    data: dict[str, Any] = {}
    if job_file is not None:
        try:
            loaded = yaml.safe_load(job_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"{job_file}: not valid YAML/JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{job_file}: a DQN job file must be a mapping")
        data = loaded
        cnn_in_file = data.get("cnn_checkpoint")
        if isinstance(cnn_in_file, str) and not Path(cnn_in_file).expanduser().is_absolute():
            data["cnn_checkpoint"] = str(job_file.parent / cnn_in_file)  # relative to the file
    _apply_params(data, params or {})
    env = dict(data.get("env", {}))
    dqn = dict(data.get("dqn", {}))
    for key, value in options.items():
        if value is None:
            continue
        if key == "gaps":  # --gaps close|hold: the simulator's policy at a gap in the data
            env["settings"] = {**dict(env.get("settings", {})), "gaps": value}
        elif key in _ENV_KEYS:
            env[key] = value
        elif key in _DQN_KEYS:
            dqn[key] = value
        elif key in _JOB_KEYS:
            data[key] = value
        else:
            raise typer.BadParameter(f"--{key.replace('_', '-')} does not apply to dqn")
    cnn = data.get("cnn_checkpoint")
    if cnn:
        _align_with_cnn(env, str(cnn), options)
    data["env"], data["dqn"] = env, dqn
    try:
        return DQNJob.model_validate(data)
    except ValidationError as exc:
        raise typer.BadParameter(validation_message(exc, "DQN job")) from None


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
