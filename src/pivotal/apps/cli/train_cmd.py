"""``pivotal train`` / ``evaluate`` / ``optimize``: supervised models from stored candles.

Each command only parses options, builds a :class:`~pivotal.training.pipeline.TrainJob` and
calls :mod:`pivotal.training`; heavy imports (torch, optuna) happen inside the commands so
``pivotal --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from pivotal.apps.cli.args import (
    model_name_arg,
    needs_lookup,
    stored_series,
    symbol_arg,
    timeframe_arg,
    timeframes_arg,
    validation_message,
)
from pivotal.apps.cli.backtest_cmd import gap_policy_arg
from pivotal.apps.cli.common import (
    ConfigOption,
    Context,
    DataDirOption,
    SinceOption,
    UntilOption,
    console,
    load_context,
    parse_name_values,
    parse_range,
)
from pivotal.apps.cli.train_options import (
    BatchSizeOpt,
    CheckpointArgument,
    CnnOpt,
    DeviceOpt,
    EnvsOpt,
    EpisodeLengthOpt,
    EpochsOpt,
    EvalHtmlOpt,
    ExchangeOpt,
    FramesOpt,
    GapsOpt,
    HtmlOpt,
    JobOption,
    KeepOpt,
    LrOpt,
    ModelArgument,
    OptimizerOpt,
    OutOpt,
    ParamOpt,
    SchedulerOpt,
    SearchModelArgument,
    SeedOpt,
    StepsOpt,
    StorageOpt,
    StreamsOpt,
    StudyOpt,
    SymbolOpt,
    TensorboardOpt,
    TimeframeOpt,
    TrialsOpt,
)
from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import STORE_FILE_NAME

if TYPE_CHECKING:
    from pivotal.training.pipeline import TrainJob
    from pivotal.training.run import Evaluation
    from pivotal.training.search import TrialReport


def _read_job_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: a TrainJob file must be a mapping of settings")
    from pivotal.training.search import is_best_config

    if is_best_config(data):  # the best.json of `pivotal optimize`: its job is the best trial's
        if not isinstance(data.get("job"), dict):
            raise typer.BadParameter(
                f"{path} was written by a `pivotal optimize` that did not save the trial's job; "
                "run the search again to get a file `pivotal train --job` accepts",
                param_hint="--job",
            )
        return dict(data["job"])
    return data


def _same_model(model: str, data: dict[str, Any], job_file: Path | None) -> None:
    named = data.get("model")
    if named is not None and named != model:
        raise typer.BadParameter(
            f"{job_file} is a job for model {named!r}, not {model!r}; run "
            f"`pivotal train {named} --job {job_file}`",
            param_hint="--job",
        )


def build_job(model: str, job_file: Path | None, **options: Any) -> TrainJob:
    """A TrainJob from the file, then the options that were given (None = not given)."""
    from pydantic import ValidationError

    from pivotal.training.pipeline import TrainJob

    data = _read_job_file(job_file)
    _same_model(model, data, job_file)
    data["model"] = model
    gap_bars = options.pop("config_max_missing_bars", None)  # pivotal config: gaps
    if gap_bars is not None:
        data.setdefault("max_missing_bars", gap_bars)
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
    if not data.get("symbol"):
        raise typer.BadParameter(
            "give the market to train on: --symbol (e.g. BTC/USDT), or a --job file with symbol:",
            param_hint="--symbol",
        )
    try:
        return TrainJob.model_validate(data)
    except ValidationError as exc:
        raise typer.BadParameter(validation_message(exc, "training job")) from None


def show_evaluation(evaluation: Evaluation, html: Path | None) -> None:
    from pivotal.training.report import render_console, write_html

    console.print(render_console(evaluation.report))
    if html is not None:
        write_html(evaluation.report, html, **evaluation.plot_data())
        console.print(f"report: {html}", highlight=False)


def _times(since: str | None, until: str | None) -> dict[str, int | None]:
    start, end = parse_range(since, until)
    return {"since": start, "until": end}


def _market(
    ctx: Context, symbol: str | None, timeframe: str | None, streams: str | None
) -> dict[str, Any]:
    """``--symbol``/``--timeframe``/``--streams`` checked before any data is read; a symbol
    typed without a slash (``btcusdt``) is resolved against the store's symbols."""
    if timeframe is not None:
        timeframe_arg(timeframe)
    stream_list = None
    if streams is not None:
        stream_list = tuple(t.value for t in timeframes_arg(streams, "--streams"))
    if symbol is not None:
        known: list[Symbol] = []
        if needs_lookup(symbol) and (ctx.data_dir / STORE_FILE_NAME).is_file():
            with ctx.store(read_only=True) as store:
                known = [i.key.symbol for i in stored_series(store)]
        symbol = str(symbol_arg(symbol, known=known))
    return {"symbol": symbol, "timeframe": timeframe, "streams": stream_list}


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
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    param: ParamOpt = None,
    job: JobOption = None,
    out: OutOpt = None,
    keep: KeepOpt = 5,
    html: HtmlOpt = None,
    tensorboard: TensorboardOpt = True,
    cnn: CnnOpt = None,
    steps: StepsOpt = None,
    envs: EnvsOpt = None,
    episode_length: EpisodeLengthOpt = None,
    gaps: GapsOpt = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Train MODEL on stored candles; keep the best checkpoints; evaluate beside baselines.

    The split is chronological (70/15/15 by default) with a purge gap; scalers fit on the
    training range only and travel inside the checkpoint with the whole job.

    MODEL dqn trains the reinforcement-learning agent in the trading environment and
    evaluates it through the backtester beside buy-and-hold and a random agent. Its settings
    come from -p NAME=VALUE (e.g. -p hidden=128 -p gamma=0.98 -p reward=pnl) or a --job
    file with env: (symbol, timeframe, streams, frames, episode_length, reward, settings)
    and dqn: (total_steps, learning_rate, batch_size, hidden, gamma, ...) sections.
    """
    model_name_arg(model)  # before anything is read
    ctx = load_context(config, data_dir)
    market = _market(ctx, symbol, timeframe, streams)
    symbol, timeframe = market["symbol"], market["timeframe"]
    if model == "dqn":
        from pivotal.apps.cli import rl_cmd

        rl_options = {
            "symbol": symbol,
            "exchange": exchange,
            "timeframe": timeframe,
            "streams": market["streams"],
            "frames": frames,
            "total_steps": steps,
            "envs": envs,
            "episode_length": episode_length,
            "seed": seed,
            "device": device,
            "learning_rate": lr,
            "batch_size": batch_size,
            "cnn_checkpoint": str(cnn) if cnn else None,
            "gaps": None if gaps is None else str(gap_policy_arg(gaps)),
            **_times(since, until),
        }
        ignored = {"--epochs": epochs, "--optimizer": optimizer, "--scheduler": scheduler}
        given = [name for name, value in ignored.items() if value is not None]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} does not apply to dqn (it trains by environment steps: "
                "see --steps, and -p NAME=VALUE for its settings)"
            )
        the_dqn = rl_cmd.build_dqn_job(job, rl_options, parse_name_values(param))
        rl_cmd.train_dqn(
            ctx,
            the_dqn,
            out or ctx.data_dir / "models" / "dqn",
            keep=keep,
            log_dir=ctx.data_dir / "runs" / "dqn" if tensorboard else None,
            html=html or ctx.data_dir / "reports" / "dqn.html",
        )
        return
    if any(v is not None for v in (cnn, steps, envs, episode_length, gaps)):
        raise typer.BadParameter("--cnn/--steps/--envs/--episode-length/--gaps apply to dqn only")
    from pivotal.training.run import train_job

    run_dir = ctx.data_dir / "runs" / model
    the_job = build_job(
        model,
        job,
        symbol=symbol,
        exchange=exchange,
        timeframe=timeframe,
        streams=market["streams"],
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
        config_max_missing_bars=ctx.config.gaps.max_missing_bars,
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
    console.print(f"data: {outcome.prepared.sample_summary()}", highlight=False)
    console.print(f"best checkpoint: {outcome.best_checkpoint}", highlight=False)
    if tensorboard:
        console.print(f"TensorBoard logs: {run_dir}", highlight=False)
    show_evaluation(outcome.evaluation, html or ctx.data_dir / "reports" / f"{model}.html")


def evaluate(
    checkpoint: CheckpointArgument,
    html: EvalHtmlOpt = None,
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
    model: SearchModelArgument,
    trials: TrialsOpt,
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
    study: StudyOpt = None,
    storage: StorageOpt = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Search MODEL's hyperparameters with Optuna (TPE, median pruning); resumable.

    The study lives in data-dir/search/optuna.db unless --storage says otherwise; the best
    trial's model and training settings are written to data-dir/search/<study>.best.json.
    """
    model_name_arg(model, allow_rl=False)  # before anything is read
    from pivotal.training.pipeline import build_model, prepare
    from pivotal.training.search import TrialSetup, model_search_space, split_params
    from pivotal.training.search import optimize as run_search
    from pivotal.training.trainer import set_seed

    ctx = load_context(config, data_dir)
    market = _market(ctx, symbol, timeframe, streams)
    the_job = build_job(
        model,
        job,
        symbol=market["symbol"],
        exchange=exchange,
        timeframe=timeframe,
        streams=market["streams"],
        frames=frames,
        epochs=epochs,
        device=device,
        params=parse_name_values(param),
        config_max_missing_bars=ctx.config.gaps.max_missing_bars,
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
        saved = job_t.model_copy(
            update={
                "training": job_t.training.model_copy(update={"progress": True, "log_dir": None})
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
            job=saved.model_dump(mode="json"),
        )

    result = run_search(
        builder,
        n_trials=trials,
        study_name=study or model,
        space=model_search_space(model),
        directory=ctx.data_dir / "search",
        storage=storage,
        seed=the_job.training.seed,
        on_trial=_print_trial,
    )
    console.print(
        f"study {result.study_name}: {result.n_complete} complete, {result.n_pruned} pruned, "
        f"{result.n_failed} failed; best trial #{result.best_trial} "
        f"validation loss {result.best_value:.4g}",
        highlight=False,
    )
    console.print(json.dumps(result.best_params, indent=2), highlight=False)
    console.print(f"best config: {result.config_path}", highlight=False)
    console.print(
        f"train it: pivotal train {model} --job {result.config_path}"
        f"{f' --data-dir {data_dir}' if data_dir else ''}",
        highlight=False,
    )


def _print_trial(report: TrialReport) -> None:
    """One line per finished trial: its outcome and the best so far."""
    outcome = {
        "complete": f"validation loss {report.value:.4g}" if report.value is not None else "",
        "pruned": "pruned (behind the median of earlier trials)",
        "fail": "failed (diverged)",
    }.get(report.state, report.state)
    best = (
        f"best {report.best_value:.4g} (trial #{report.best_trial})"
        if report.best_value is not None
        else "no complete trial yet"
    )
    console.print(
        f"trial {report.finished}/{report.n_trials} (#{report.number}): {outcome}; {best}",
        highlight=False,
    )
