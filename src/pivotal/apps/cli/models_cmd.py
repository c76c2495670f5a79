"""``pivotal models list``: the registered networks and the stored checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, load_context

app = typer.Typer(help="Models: registered networks and stored checkpoints.", no_args_is_help=True)


@app.command("list")
def list_models(
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Checkpoint folder [data-dir/models].")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Registered model names, then every checkpoint kept under the models folder."""
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
    for column in ("model", "epoch", "val_loss", "trained on", "file"):
        table.add_column(column)
    for path in paths:
        try:
            ckpt = read_checkpoint(path)
        except Exception as exc:  # a bad file is listed, not fatal
            table.add_row("?", "", "", f"unreadable: {exc}"[:60], str(path.relative_to(root)))
            continue
        span = ckpt.data_span or {}
        where = f"{span.get('exchange', '')} {span.get('symbol', '')} {span.get('timeframe', '')}"
        loss = ckpt.metrics.get("val_loss")
        table.add_row(
            ckpt.model_name,
            "" if ckpt.epoch is None else str(ckpt.epoch),
            "" if loss is None else f"{loss:.4g}",
            where.strip(),
            str(path.relative_to(root)),
        )
    console.print(table)
