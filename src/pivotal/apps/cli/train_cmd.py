"""``pivotal train`` / ``evaluate`` / ``optimize``: supervised models from stored candles.

Each command only parses options, builds a :class:`~pivotal.training.pipeline.TrainJob` and
calls :mod:`pivotal.training`; heavy imports (torch, optuna) happen inside the commands so
``pivotal --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from pivotal.apps.cli.common import (
    ConfigOption,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    load_context,
    parse_name_values,
    parse_time,
    split_list,
)

if TYPE_CHECKING:
    from pivotal.training.pipeline import TrainJob
    from pivotal.training.run import Evaluation

ModelArgument = Annotated[str, typer.Argument(help="Registered model name (pivotal models list).")]
JobOption = Annotated[
    Path | None,
    typer.Option("--job", help="YAML/JSON TrainJob file; the options below override it.",
                 exists=True, dir_okay=False),
]  # fmt: skip
SymbolOpt = Annotated[str | None, typer.Option("--symbol", "-s", help="e.g. BTC/USDT.")]
ExchangeOpt = Annotated[str | None, typer.Option("--exchange", "-e", help="Exchange id.")]
TimeframeOpt = Annotated[str | None, typer.Option("--timeframe", "-t", help="Anchor, e.g. 1m.")]
StreamsOpt = Annotated[
    str | None, typer.Option("--streams", help="More timeframes as input streams, e.g. 1h,1d.")
]
FramesOpt = Annotated[int | None, typer.Option("--frames", min=2, help="Candles per stream.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1)]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Model hyperparameter NAME=VALUE (YAML value); repeat."),
]


def _read_job_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: a TrainJob file must be a mapping of settings")
    return data


def build_job(model: str, job_file: Path | None, **options: Any) -> TrainJob:
    """A TrainJob from the file, then the options that were given (None = not given)."""
    from pydantic import ValidationError

    from pivotal.training.pipeline import TrainJob

    data = _read_job_file(job_file)
    data["model"] = model
    training = dict(data.get("training", {}))
    for key in ("epochs", "batch_size", "lr", "optimizer", "scheduler", "device", "seed"):
        value = options.pop(key, None)
        if value is not None:
            training[key] = value
    log_dir = options.pop("log_dir", None)
    if log_dir is not None:
        training["log_dir"] = str(log_dir)
    data["training"] = training
    params = options.pop("params", {})
    if params:
        data["hyperparameters"] = {**data.get("hyperparameters", {}), **params}
    for key, value in options.items():
        if value is not None:
            data[key] = value
    try:
        return TrainJob.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid training job:\n  " + "\n  ".join(lines)) from None


def show_evaluation(evaluation: Evaluation, html: Path | None) -> None:
    from pivotal.training.report import render_console, write_html

    console.print(render_console(evaluation.report))
    if html is not None:
        write_html(evaluation.report, html, **evaluation.plot_data())
        console.print(f"report: {html}", highlight=False)


def _times(since: str | None, until: str | None) -> dict[str, int | None]:
    return {
        "since": parse_time(since, "--since") if since else None,
        "until": parse_time(until, "--until") if until else None,
    }


def train(
    model: ModelArgument,
    symbol: SymbolOpt = None,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    streams: StreamsOpt = None,
    since: SinceOption = None,
    until: UntilOption = None,
    frames: FramesOpt = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0)] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler")] = None,
    device: DeviceOpt = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    param: ParamOpt = None,
    job: JobOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Checkpoint folder [data-dir/models].")
    ] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Best checkpoints kept.")] = 5,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard/--no-tensorboard", help="Log to data-dir/runs.")
    ] = True,
    cnn: Annotated[
        Path | None,
        typer.Option("--cnn", exists=True, dir_okay=False, help="dqn: PivotCNN checkpoint."),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="dqn: env steps.")] = None,
    envs: Annotated[int | None, typer.Option("--envs", min=1, help="dqn: parallel envs.")] = None,
    episode_length: Annotated[
        int | None, typer.Option("--episode-length", min=1, help="dqn: steps per episode.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Train MODEL on stored candles; keep the best checkpoints; evaluate beside baselines.

    The split is chronological (70/15/15 by default) with a purge gap; scalers fit on the
    training range only and travel inside the checkpoint with the whole job. MODEL ``dqn``
    trains the reinforcement-learning agent in the trading environment and evaluates it
    through the backtester beside buy-and-hold and a random agent.
    """
    from pivotal.training.run import train_job

    ctx = load_context(config, data_dir)
    if model == "dqn":
        from pivotal.apps.cli import rl_cmd

        rl_options = {
            "symbol": symbol,
            "exchange": exchange,
            "timeframe": timeframe,
            "streams": tuple(split_list(streams)) if streams else None,
            "frames": frames,
            "total_steps": steps,
            "envs": envs,
            "episode_length": episode_length,
            "seed": seed,
            "device": device,
            "learning_rate": lr,
            "batch_size": batch_size,
            "cnn_checkpoint": str(cnn) if cnn else None,
            **_times(since, until),
        }
        ignored = {"--epochs": epochs, "--optimizer": optimizer, "--scheduler": scheduler}
        given = [name for name, value in ignored.items() if value is not None]
        if given or param:
            raise typer.BadParameter(f"{', '.join(given) or '--param'} does not apply to dqn")
        the_dqn = rl_cmd.build_dqn_job(job, rl_options)
        rl_cmd.train_dqn(
            ctx,
            the_dqn,
            out or ctx.data_dir / "models" / "dqn",
            keep=keep,
            log_dir=ctx.data_dir / "runs" / "dqn" if tensorboard else None,
            html=html or ctx.data_dir / "reports" / "dqn.html",
        )
        return
    if any(v is not None for v in (cnn, steps, envs, episode_length)):
        raise typer.BadParameter("--cnn/--steps/--envs/--episode-length apply to dqn only")
    run_dir = ctx.data_dir / "runs" / model
    the_job = build_job(
        model,
        job,
        symbol=symbol,
        exchange=exchange,
        timeframe=timeframe,
        streams=tuple(split_list(streams)) if streams else None,
        frames=frames,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        seed=seed,
        params=parse_name_values(param),
        log_dir=run_dir if tensorboard else None,
        **_times(since, until),
    )
    folder = out or ctx.data_dir / "models" / model
    console.print(
        f"training {model} on {the_job.exchange} {the_job.symbol} {the_job.timeframe}"
        f"{' + ' + ','.join(the_job.streams) if the_job.streams else ''}, "
        f"{the_job.frames} frames, up to {the_job.training.epochs} epochs",
        highlight=False,
    )
    with ctx.store(read_only=True) as store:
        outcome = train_job(store, the_job, folder, keep=keep)
    result = outcome.result
    console.print(
        f"{result.epochs_run} epochs in {result.seconds:.1f} s; best epoch {result.best_epoch} "
        f"(validation loss {result.best_val_loss:.4g})"
        f"{'; stopped early' if result.stopped_early else ''}",
        highlight=False,
    )
    console.print(f"best checkpoint: {outcome.best_checkpoint}", highlight=False)
    if tensorboard:
        console.print(f"TensorBoard logs: {run_dir}", highlight=False)
    show_evaluation(outcome.evaluation, html or ctx.data_dir / "reports" / f"{model}.html")


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Evaluate a checkpoint on its test range (rebuilt from the store) beside baselines."""
    from pivotal.rl.run import JOB_FILE
    from pivotal.training.run import evaluate_checkpoint

    ctx = load_context(config, data_dir)
    if (checkpoint.parent / JOB_FILE).is_file():
        from pivotal.apps.cli import rl_cmd

        rl_cmd.evaluate_dqn(ctx, checkpoint, html)
        return
    with ctx.store(read_only=True) as store:
        evaluation = evaluate_checkpoint(store, checkpoint)
    show_evaluation(evaluation, html)


def optimize(
    model: ModelArgument,
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials in the study.")],
    symbol: SymbolOpt = None,
    exchange: ExchangeOpt = None,
    timeframe: TimeframeOpt = None,
    streams: StreamsOpt = None,
    since: SinceOption = None,
    until: UntilOption = None,
    frames: FramesOpt = None,
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
    param: ParamOpt = None,
    job: JobOption = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name [MODEL].")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL [sqlite in data-dir].")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Search MODEL's hyperparameters with Optuna (TPE, median pruning); resumable.

    The study lives in data-dir/search/optuna.db unless --storage says otherwise; the best
    trial's model and training settings are written to data-dir/search/<study>.best.json.
    """
    from pivotal.training.pipeline import build_model, prepare
    from pivotal.training.search import TrialSetup, model_search_space, split_params
    from pivotal.training.search import optimize as run_search
    from pivotal.training.trainer import set_seed

    ctx = load_context(config, data_dir)
    the_job = build_job(
        model,
        job,
        symbol=symbol,
        exchange=exchange,
        timeframe=timeframe,
        streams=tuple(split_list(streams)) if streams else None,
        frames=frames,
        epochs=epochs,
        device=device,
        params=parse_name_values(param),
        **_times(since, until),
    )
    with ctx.store(read_only=True) as store:
        prepared = prepare(store, the_job)

    def builder(params: dict[str, Any]) -> TrialSetup:
        model_params, training = split_params(params)
        job_t = the_job.model_copy(
            update={
                "hyperparameters": {**the_job.hyperparameters, **model_params},
                "training": the_job.training.model_copy(update={**training, "progress": False}),
            }
        )
        from dataclasses import replace

        trial_data = replace(prepared, job=job_t)
        set_seed(job_t.training.seed)
        return TrialSetup(
            build_model(trial_data),
            job_t.training,
            prepared.train,
            prepared.validation,
            model_name=model,
        )

    result = run_search(
        builder,
        n_trials=trials,
        study_name=study or model,
        space=model_search_space(model),
        directory=ctx.data_dir / "search",
        storage=storage,
        seed=the_job.training.seed,
    )
    console.print(
        f"study {result.study_name}: {result.n_complete} complete, {result.n_pruned} pruned, "
        f"{result.n_failed} failed; best trial #{result.best_trial} "
        f"validation loss {result.best_value:.4g}",
        highlight=False,
    )
    console.print(json.dumps(result.best_params, indent=2), highlight=False)
    console.print(f"best config: {result.config_path}", highlight=False)
