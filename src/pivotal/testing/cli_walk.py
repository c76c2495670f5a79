"""Walk a typer app's commands and parameters, and read its output as plain text (tests).

Used by the command-line tests that must cover every command, including ones added later:
they enumerate the app instead of listing commands by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer
import typer.main

_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Leaf:
    """One runnable command: its words (``("data", "gaps")``) and its click command."""

    path: tuple[str, ...]
    command: Any

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def params(self) -> list[Any]:
        return list(self.command.params)

    def param(self, name: str) -> Any | None:
        return next((p for p in self.command.params if p.name == name), None)


def root_command(app: typer.Typer) -> Any:
    return typer.main.get_command(app)


def leaves(app: typer.Typer) -> list[Leaf]:
    """Every runnable command of ``app`` (groups walked recursively), in name order."""
    found: list[Leaf] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name in sorted(subs):
                walk(subs[name], (*path, name))
        else:
            found.append(Leaf(path, command))

    walk(root_command(app), ())
    return found


def groups(app: typer.Typer) -> list[tuple[str, ...]]:
    """Every group's words (the root is ``()``)."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            found.append(path)
            for name in sorted(subs):
                walk(subs[name], (*path, name))

    walk(root_command(app), ())
    return found


def annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def info(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "parameter_info", None)


def is_enum(param: Any) -> bool:
    kind = annotation(param)
    return isinstance(kind, type) and issubclass(kind, Enum)


def is_existing_path(param: Any) -> bool:
    """A path parameter that must name an existing file or folder (an input)."""
    kind = annotation(param)
    return kind is Path and bool(getattr(info(param), "exists", False))


def is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


def is_argument(param: Any) -> bool:
    return not getattr(param, "opts", [""])[0].startswith("-")


def first_option(param: Any) -> str:
    """The long spelling of an option (``--symbol``)."""
    opts = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return opts[0]


def plain(text: str) -> str:
    """Output without rich's box drawing and line wrapping: one line, single spaces."""
    return _SPACE.sub(" ", _BOX.sub(" ", text)).strip()
