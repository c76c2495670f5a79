"""The options of ``pivotal train``, ``evaluate`` and ``optimize``, each with its help and the
default that applies when it is left out (a training job's defaults, or the DQN's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pivotal.training.config import TrainingConfig

_T = TrainingConfig()

ModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="A registered model (see `pivotal models list`), or dqn for the "
        "reinforcement-learning agent.",
        show_default=False,
    ),
]
SearchModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="A registered model to search (see `pivotal models list`).",
        show_default=False,
    ),
]
JobOption = Annotated[
    Path | None,
    typer.Option(
        "--job",
        exists=True,
        dir_okay=False,
        help="YAML/JSON job file (a TrainJob; for dqn a DQN job with env:, dqn: sections; the "
        "best.json `pivotal optimize` writes works too); the options given override it.",
        show_default="none",
    ),
]
SymbolOpt = Annotated[
    str | None,
    typer.Option(
        "--symbol",
        "-s",
        help="Market to train on, e.g. BTC/USDT (BTCUSDT works too); required unless the "
        "job file names it.",
        show_default="the job file's",
    ),
]
ExchangeOpt = Annotated[
    str | None,
    typer.Option(
        "--exchange", "-e", help="Exchange of the stored candles.", show_default="binance"
    ),
]
TimeframeOpt = Annotated[
    str | None,
    typer.Option(
        "--timeframe", "-t", help="Anchor timeframe: one sample per candle.", show_default="1m"
    ),
]
StreamsOpt = Annotated[
    str | None,
    typer.Option(
        "--streams",
        help="More timeframes as input streams, e.g. 1h,1d (dqn with --cnn: the CNN's).",
        show_default="none",
    ),
]
FramesOpt = Annotated[
    int | None,
    typer.Option(
        "--frames", min=2, help="Candles per stream in one input window.", show_default="64; dqn 32"
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--epochs",
        min=1,
        help="Most passes over the training data (early stopping may end sooner).",
        show_default=str(_T.epochs),
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Samples per optimizer step.",
        show_default=f"{_T.batch_size}; dqn 64",
    ),
]
LrOpt = Annotated[
    float | None,
    typer.Option(
        "--lr", min=0.0, help="Initial learning rate.", show_default=f"{_T.lr:g}; dqn 0.0001"
    ),
]
OptimizerOpt = Annotated[
    str | None,
    typer.Option(
        "--optimizer", help="adam, adamw, sgd or rmsprop.", show_default=str(_T.optimizer)
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Learning-rate schedule: none, step, cosine or plateau.",
        show_default=str(_T.scheduler),
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto (CUDA when available), cpu or cuda.", show_default=str(_T.device)
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed", help="Seeds the model, the shuffles and the agent.", show_default=str(_T.seed)
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Hyperparameter NAME=VALUE (YAML value), repeatable: a model's own (e.g. "
        "hidden=64) or, for dqn, a field of its job (hidden, gamma, reward, eval_every; "
        "env.NAME / dqn.NAME to be explicit).",
        show_default="none",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Folder for the checkpoints.", show_default="data-dir/models/MODEL"
    ),
]
KeepOpt = Annotated[int, typer.Option("--keep", min=1, help="Best checkpoints kept.")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option(
        "--html", help="Write the HTML report here.", show_default="data-dir/reports/MODEL.html"
    ),
]
EvalHtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", help="Write the HTML report here.", show_default="no report"),
]
TensorboardOpt = Annotated[
    bool,
    typer.Option(
        "--tensorboard/--no-tensorboard", help="Log training curves to data-dir/runs/MODEL."
    ),
]
CnnOpt = Annotated[
    Path | None,
    typer.Option(
        "--cnn",
        exists=True,
        dir_okay=False,
        help="dqn only: a PivotCNN checkpoint whose outputs the agent observes; the market "
        "(symbol, timeframe, streams) defaults to the CNN's.",
        show_default="none",
    ),
]
StepsOpt = Annotated[
    int | None,
    typer.Option("--steps", min=1, help="dqn only: environment steps.", show_default="500000"),
]
EnvsOpt = Annotated[
    int | None,
    typer.Option("--envs", min=1, help="dqn only: parallel environments.", show_default="4"),
]
EpisodeLengthOpt = Annotated[
    int | None,
    typer.Option(
        "--episode-length", min=1, help="dqn only: steps per episode.", show_default="1440"
    ),
]
GapsOpt = Annotated[
    str | None,
    typer.Option(
        "--gaps",
        help="dqn only: at a gap in the data, close (flatten at the last bar before it and end "
        "the episode) or hold (carry the position through).",
        show_default="close",
    ),
]
CheckpointArgument = Annotated[
    Path,
    typer.Argument(
        exists=True,
        dir_okay=False,
        metavar="CHECKPOINT",
        help="A checkpoint written by `pivotal train` (a DQN's is found by the job beside it).",
        show_default=False,
    ),
]
TrialsOpt = Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials in the study.")]
StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name.", show_default="MODEL")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL.",
        show_default="sqlite:///data-dir/search/optuna.db",
    ),
]
