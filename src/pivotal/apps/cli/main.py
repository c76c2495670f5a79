"""The root ``pivotal`` command: its groups, and the error handling around every command."""

from __future__ import annotations

import sys

import typer

from pivotal import __version__
from pivotal.apps.cli import (
    backtest_cmd,
    config_cmd,
    data_cmd,
    decisions_cmd,
    demo_cmd,
    features_cmd,
    models_cmd,
    pivots_cmd,
    run_cmd,
    train_cmd,
)
from pivotal.apps.cli.common import err_console
from pivotal.core.errors import ConfigError, PivotalError

app = typer.Typer(
    name="pivotal",
    help="pivotal: machine-learning crypto trading — data, features, models, backtests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.add_typer(features_cmd.app, name="features")
app.add_typer(pivots_cmd.app, name="pivots")
app.add_typer(models_cmd.app, name="models")
app.add_typer(decisions_cmd.app, name="decisions")
app.command("train")(train_cmd.train)
app.command("evaluate")(train_cmd.evaluate)
app.command("optimize")(train_cmd.optimize)
app.command("backtest")(backtest_cmd.backtest)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)


def _version(value: bool) -> None:
    if value:
        print(f"pivotal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """pivotal: machine-learning crypto trading — data, features, models, backtests."""


def main() -> None:
    """Console entry point: run the app; turn our errors into a message and an exit code.

    Usage errors are click's (exit 2); configuration errors exit 2; every other pivotal error
    exits 1 with its message and no traceback.
    """
    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[bold red]config error:[/] {exc}", highlight=False)
        sys.exit(2)
    except PivotalError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; everything written so far is kept[/]")
        sys.exit(130)
