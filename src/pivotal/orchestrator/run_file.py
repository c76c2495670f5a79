"""Write a :class:`~pivotal.orchestrator.run.RunConfig` back as a run file (YAML).

Only the values that differ from the defaults are written, times as ISO-8601 UTC, and the
paths (expert checkpoints, the online checkpoint folder) relative to the run file's folder,
which is how :func:`~pivotal.orchestrator.run.load_run_config` resolves them: reading the
file back gives the same run. Written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pivotal.core.clock import iso_utc
from pivotal.data.atomic import atomic_write_text
from pivotal.orchestrator.run import RunConfig

__all__ = ["write_run_file"]


def write_run_file(config: RunConfig, path: str | os.PathLike[str], *, header: str = "") -> Path:
    """Write ``config`` to ``path`` (module docstring); ``header`` lines become comments."""
    target = Path(path)
    folder = target.parent.resolve()
    data: dict[str, Any] = {"mode": config.mode}
    data.update(config.model_dump(mode="json", exclude_defaults=True))
    for key in ("since", "until", "learn_from"):
        value = getattr(config, key)
        if value is not None:
            data[key] = iso_utc(int(value))
    orchestrator = data.get("orchestrator", {})
    for expert, source in zip(
        orchestrator.get("experts", []), config.orchestrator.experts, strict=True
    ):
        expert["checkpoint"] = _relative(source.checkpoint, folder)
    learning = orchestrator.get("learning", {})
    if config.orchestrator.learning.checkpoint_dir is not None:
        learning["checkpoint_dir"] = _relative(config.orchestrator.learning.checkpoint_dir, folder)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    text = comments + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_text(target, text)


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), folder)).as_posix()
