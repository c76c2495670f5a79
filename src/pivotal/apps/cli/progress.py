"""Adapters from library progress events to rich progress bars."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress, TaskID

from pivotal.data.download import DownloadProgress
from pivotal.data.importers.ingest import ProgressEvent

_STEPS = 1000


class ImportProgress:
    """One bar for a whole import run: reading (by bytes), then writing (by rows)."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task: TaskID | None = None
        self.skipped: list[tuple[Path, str]] = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.phase == "skip" and event.path is not None:
            self.skipped.append((event.path, event.detail))
        if self._task is None:
            self._task = self._bar.add_task("import", total=_STEPS)
        name = event.path.name if event.path else ""
        verb = {"read": "checking", "write": "writing", "skip": "skipped"}.get(event.phase, "")
        files = f"{event.files_done}/{event.files_total} files"
        description = f"import {verb} {name} ({files})" if verb else f"import ({files})"
        self._bar.update(
            self._task, completed=round(event.fraction * _STEPS), description=description
        )


class DownloadProgressBar:
    """One bar per downloaded series, in candles."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: DownloadProgress) -> None:
        name = str(event.key)
        task = self._tasks.get(name)
        total = max(event.expected, event.fetched, 1)
        if task is None:
            task = self._tasks[name] = self._bar.add_task(name, total=total)
        self._bar.update(task, completed=event.fetched, total=total)
        if event.failed:  # never 100 % for a download that did not finish
            self._bar.update(task, description=f"{name} [red]failed[/]")
        elif event.done:
            self._bar.update(task, completed=total)
