"""The root ``pivotal`` command: its groups, and the error handling around every command."""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

from pivotal import __version__
from pivotal.apps.cli import (
    backtest_cmd,
    collect_cmd,
    config_cmd,
    data_cmd,
    decisions_cmd,
    demo_cmd,
    exchange_cmd,
    features_cmd,
    models_cmd,
    pivots_cmd,
    run_cmd,
    serve_cmd,
    trading_cmd,
    train_cmd,
)
from pivotal.apps.cli.common import err_console
from pivotal.core.errors import ConfigError, PivotalError

_value_type = TyperOption.display_type_rich


def _flag_has_no_value_type(self: TyperOption, ctx: typer.Context) -> str | None:
    """Help shows ``--latest`` as a switch: a flag takes no value, so no ``<bool>`` beside it
    (typer prints one for every flag, ``--help`` included)."""
    return "" if self.is_flag else _value_type(self, ctx)


TyperOption.display_type_rich = _flag_has_no_value_type  # type: ignore[method-assign]

#: ``-h`` and ``--help`` on every command (sub-commands inherit the root's setting)
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
DEBUG_VARIABLE = "PIVOTAL_DEBUG"


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(message, highlight=False)
    return typer.Exit(code)


class PivotalGroup(TyperGroup):
    """The root group: pivotal's errors become a message and an exit code, never a traceback.

    Handled inside the command (not only in :func:`main`) so ``CliRunner`` and
    ``python -m pivotal`` behave exactly like the console script. Configuration errors exit
    2, other pivotal errors 1. Anything unexpected is reported as an internal error (exit 1)
    with the way to see its traceback (``PIVOTAL_DEBUG=1``).
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except ConfigError as exc:
            raise _fail(f"[bold red]config error:[/] {exc}", 2) from None
        except PivotalError as exc:
            raise _fail(f"[bold red]error:[/] {exc}", 1) from None
        except KeyboardInterrupt:
            raise _fail("[yellow]interrupted; everything written so far is kept[/]", 130) from None
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0"):
                raise
            raise _fail(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (please report it; "
                f"rerun with {DEBUG_VARIABLE}=1 for the traceback)",
                1,
            ) from None


app = typer.Typer(
    name="pivotal",
    help="pivotal: machine-learning crypto trading — data, features, models, backtests.",
    cls=PivotalGroup,
    context_settings=HELP_OPTIONS,
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
app.add_typer(exchange_cmd.app, name="exchange")
app.add_typer(serve_cmd.app, name="serve")
app.command("train")(train_cmd.train)
app.command("evaluate")(train_cmd.evaluate)
app.command("optimize")(train_cmd.optimize)
app.command("backtest")(backtest_cmd.backtest)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("collect")(collect_cmd.collect)
app.command("orders")(trading_cmd.orders)
app.command("positions")(trading_cmd.positions)
app.command("fills")(trading_cmd.fills)
app.command("kill")(trading_cmd.kill)


def reflow(doc: str) -> str:
    """A docstring as help text: each paragraph on one line (the terminal wraps it), lists
    and indented blocks kept as written, ``code`` shown as `code`."""
    paragraphs = []
    for block in inspect.cleandoc(doc).split("\n\n"):
        lines = block.splitlines()
        listed = any(line.startswith(("- ", "* ", " ")) for line in lines)
        paragraphs.append(block if listed else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs).replace("``", "`")


def _reflow_help(typer_app: typer.Typer) -> None:
    """Give every command the reflowed docstring of its function as help (typer would keep
    the source's line breaks, so help wrapped at odd places in narrow terminals)."""
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = reflow(command.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def _version(value: bool) -> None:
    if value:
        print(f"pivotal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        show_default=False,
        help="Show the version and exit.",
    ),
) -> None:
    """pivotal: machine-learning crypto trading — data, features, models, backtests."""


_reflow_help(app)


def main() -> None:
    """Console entry point: run the app (its group turns errors into messages, see
    :class:`PivotalGroup`); an interrupt outside a command still ends without a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; everything written so far is kept[/]")
        sys.exit(130)
