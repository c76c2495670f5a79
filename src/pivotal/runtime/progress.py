"""The progress bar of a run (backtest engine, feed-driven loop): a no-op unless asked for."""

from __future__ import annotations

from typing import Protocol

__all__ = ["RunProgress", "run_progress"]


class RunProgress(Protocol):
    def update(self, done: int) -> None: ...

    def close(self) -> None: ...


class _NoProgress:
    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


class _RichProgress:
    """A transient rich bar: ``done/total units`` with the time left when the total is known,
    ``done units`` otherwise; redrawn every 1/200 of the total (every 1,000 without one)."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn("{task.description}"), BarColumn()]
        if total is None:
            columns.append(TextColumn(f"{{task.completed:,}} {unit}"))
        else:
            columns += [
                TextColumn(f"{{task.completed:,}}/{{task.total:,}} {unit}"),
                TimeRemainingColumn(),
            ]
        self._progress = Progress(*columns, transient=True)
        self._task = self._progress.add_task(label, total=total)
        self._total = total
        self._every = 1_000 if total is None else max(total // 200, 1)
        self._last = 0
        self._progress.start()

    def update(self, done: int) -> None:
        if done - self._last >= self._every:
            self._progress.update(self._task, completed=done)
            self._last = done

    def close(self) -> None:
        if self._total is not None:
            self._progress.update(self._task, completed=self._total)
        self._progress.stop()


def run_progress(
    enabled: bool, label: str, *, total: int | None = None, unit: str = "bars"
) -> RunProgress:
    """A progress bar for ``label`` when ``enabled``, else one that does nothing."""
    return _RichProgress(label, total, unit) if enabled else _NoProgress()
