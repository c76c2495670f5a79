"""``pivotal config``: show the effective configuration."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
import yaml

from pivotal.apps.cli.common import ConfigOption, DataDirOption, console, load_context

app = typer.Typer(help="Show the effective configuration (secrets masked).", no_args_is_help=True)


class OutputFormat(StrEnum):
    yaml = "yaml"
    json = "json"


@app.command("show")
def show(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.yaml
    ),
) -> None:
    """Print the configuration in effect: defaults, file, PIVOTAL_* variables and flags merged."""
    from pivotal.config import masked_dump

    ctx = load_context(config, data_dir)
    data = masked_dump(ctx.config)
    source = str(ctx.config_file) if ctx.config_file else "none (built-in defaults)"
    if output is OutputFormat.json:
        console.print_json(json.dumps(data))
        return
    console.print(f"# config file: {source}", style="dim", highlight=False)
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip(), highlight=False, markup=False)


@app.command("path")
def path(config: ConfigOption = None) -> None:
    """Print which config file is read (or that none is)."""
    from pivotal.config import find_config_file

    found = find_config_file(config)
    console.print(str(found) if found else "none: built-in defaults apply", highlight=False)
