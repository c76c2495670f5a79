"""Shared CLI plumbing: options every command takes, config loading, errors, progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pivotal.config import PivotalConfig, load_config
from pivotal.data.duckdb_store import DuckDBStore, open_store

# Tables are wide; when output goes to a file or pipe, do not squeeze them into 80 columns.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $PIVOTAL_CONFIG, ./pivotal.yaml, "
        "~/.config/pivotal/pivotal.yaml).",
        dir_okay=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Where market data lives (overrides $PIVOTAL_DATA_DIR and the config file).",
        show_default="the config's data_dir, else ~/.local/share/pivotal",
        file_okay=False,
    ),
]


ExchangeOption = Annotated[str, typer.Option("--exchange", "-e", help="Exchange id (ccxt).")]
SymbolOption = Annotated[str, typer.Option("--symbol", "-s", help="Symbol, e.g. BTC/USDT.")]
TimeframeOption = Annotated[str, typer.Option("--timeframe", "-t", help="e.g. 1m, 1h.")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="First candle (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch ms.",
        show_default="the first stored",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="End, exclusive (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch ms.",
        show_default="after the last stored",
    ),
]


@dataclass(frozen=True)
class Context:
    config: PivotalConfig
    config_file: Path | None

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def store(self, read_only: bool = False) -> DuckDBStore:
        return open_store(self.data_dir, read_only=read_only)


def load_context(config: Path | None, data_dir: Path | None) -> Context:
    cfg, file = load_config(config, data_dir=data_dir)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return Context(cfg, file)


def parse_time(text: str, option: str) -> int:
    """``2024-01-01``, ``2024-01-01T12:00``, or epoch milliseconds → UTC ms."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date; use YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch ms",
            param_hint=option,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_range(
    since: str | None,
    until: str | None,
    since_option: str = "--since",
    until_option: str = "--until",
) -> tuple[int | None, int | None]:
    """``--since``/``--until`` → UTC ms (either may be None); a start at or after the end is a
    usage error that names both values as the user typed them."""
    since_ms = parse_time(since, since_option) if since else None
    until_ms = parse_time(until, until_option) if until else None
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        relation = "the same as" if since_ms == until_ms else "after"
        raise typer.BadParameter(
            f"{since_option} {str(since).strip()} is {relation} "
            f"{until_option} {str(until).strip()}; "
            f"{since_option} is the first candle and {until_option} the exclusive end",
            param_hint=f"{since_option}/{until_option}",
        )
    return since_ms, until_ms


def format_time(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "-"
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@contextmanager
def progress_bar(transient: bool = False) -> Iterator[Progress]:
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    ) as progress:
        yield progress


def parse_name_values(items: list[str] | None, option: str = "--param") -> dict[str, Any]:
    """``NAME=VALUE`` options (repeatable) → a dict; each value is read as YAML (numbers,
    booleans, lists), so ``fast=10`` gives ``{"fast": 10}``."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{option} takes NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out
