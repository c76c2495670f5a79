"""Run the ``pivotal`` command in a subprocess, the way a user does, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m pivotal ARGS`` in ``cwd`` with no inherited ``PIVOTAL_*`` variables.

    ``HOME`` and the XDG folders point inside ``cwd`` so no user file is read or written.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    clean.update(
        {
            "HOME": str(cwd),
            "XDG_CONFIG_HOME": str(cwd / ".config"),
            "XDG_DATA_HOME": str(cwd / ".local" / "share"),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pivotal", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
