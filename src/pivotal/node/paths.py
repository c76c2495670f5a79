"""Where a session's files live: the journal (and beside it the pid and kill-request files).

A session is a run file in a mode: ``live.journal`` when the run file sets it, else
``<data dir>/trading/<run file name>.<mode>.journal``. A restart with the same run file and
mode finds the same journal and continues the session; paper and live never share one.
The session id (the prefix of every client order id) is derived from the journal's path, so
it is the same at every restart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["journal_path", "session_id"]


def journal_path(live_journal: Path | None, run_file: Path, mode: str, data_dir: Path) -> Path:
    if live_journal is not None:
        return live_journal
    return data_dir / "trading" / f"{run_file.stem}.{mode}.journal"


def session_id(journal: Path) -> str:
    """8 characters [a-z0-9] from the journal's resolved path (stable across restarts)."""
    digest = hashlib.sha256(str(journal.resolve()).encode()).hexdigest()
    return digest[:8]
