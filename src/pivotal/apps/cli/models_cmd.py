"""``pivotal models list``: the registered networks and the stored checkpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, load_context
from pivotal.core.clock import utc_text

app = typer.Typer(help="Models: registered networks and stored checkpoints.", no_args_is_help=True)


@app.command("list")
def list_models(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            file_okay=False,
            help="Checkpoint folder to list (default: the models folder of the data dir).",
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Registered model names, then every checkpoint (networks and DQN agents) kept under
    the data dir's models folder, or under --dir."""
    from pivotal.models import available, model_class
    from pivotal.training.checkpoints import read_checkpoint

    models = Table(title="registered models")
    for column in ("name", "type", "class", "what it is"):
        models.add_column(column)
    for name in available():
        cls = model_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        models.add_row(name, cls.model_type, cls.__name__, doc[0] if doc else "")
    console.print(models)

    ctx = load_context(config, data_dir)
    root = folder or ctx.data_dir / "models"
    paths = sorted(root.rglob("*.pt")) if root.is_dir() else []
    if not paths:
        console.print(f"no checkpoints under {root} (train one with `pivotal train MODEL`)")
        return
    table = Table(title=f"checkpoints under {root}")
    for column in ("model", "epoch/step", "score", "trained on", "file"):
        table.add_column(column)
    for path in paths:
        try:
            ckpt = read_checkpoint(path)
        except Exception as exc:  # a bad file is listed, not fatal
            table.add_row("?", "", "", f"unreadable: {exc}"[:60], str(path.relative_to(root)))
            continue
        table.add_row(
            ckpt.model_name,
            "" if ckpt.epoch is None else str(ckpt.epoch),
            _score(ckpt.metrics),
            _trained_on(path, ckpt.data_span) + _learned_until(ckpt.metrics),
            str(path.relative_to(root)),
        )
    console.print(table)


def _score(metrics: Mapping[str, Any]) -> str:
    """The checkpoint's selection metric: ``val_loss`` (networks), ``val_return`` (DQN) or
    ``holdout_accuracy`` (an online checkpoint of the learning loop)."""
    for name in ("val_loss", "val_return", "val_accuracy", "holdout_accuracy", "train_loss"):
        value = metrics.get(name)
        if isinstance(value, int | float):
            return f"{name} {value:.4g}"
    return ""


def _learned_until(metrics: Mapping[str, Any]) -> str:
    """``, online until …`` for a checkpoint the learning loop wrote (what a backtest checks
    before loading it), else nothing."""
    value = metrics.get("learned_until_ms")
    if not isinstance(value, int | float):
        return ""
    return f", online until {utc_text(int(value))}"


def _trained_on(path: Path, span: Mapping[str, Any] | None) -> str:
    """Exchange, symbol and timeframe of the training data: the checkpoint's data span, else
    (a DQN) the job saved beside it."""
    if span:
        where = f"{span.get('exchange', '')} {span.get('symbol', '')} {span.get('timeframe', '')}"
        return where.strip()
    job = path.parent / "dqn.job.json"
    if not job.is_file():
        return ""
    try:
        saved = json.loads(job.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    env = saved.get("env", {}) if isinstance(saved, dict) else {}
    return f"{saved.get('exchange', '')} {env.get('symbol', '')} {env.get('timeframe', '')}".strip()
