"""Where the real market data of ``../shared/data`` is, for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

SKIP_REASON = (
    "real market data not found: expected ../shared/data beside the checkout "
    "(or set PIVOTAL_SHARED_DATA to its path)"
)


def shared_data_dir() -> Path | None:
    """``$PIVOTAL_SHARED_DATA``, else ``<repo>/../shared/data``; None when absent."""
    env = os.environ.get("PIVOTAL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [parent.parent / "shared" / "data" for parent in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for path in candidates:
        if (path / "README.md").is_file():
            return path
    return None
