"""One clock abstraction: logic asks the clock for the time, never ``datetime.now()``.

Backtests pass a :class:`ReplayClock` that the engine advances; live and paper trading pass
a :class:`WallClock`. All times are UTC milliseconds since the epoch.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> int:
        """Current time in UTC milliseconds since the epoch."""
        ...


class WallClock:
    """The machine's UTC clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ReplayClock:
    """A clock that only moves when told to, and never backwards."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def advance_to(self, timestamp_ms: int) -> None:
        if timestamp_ms < self._now:
            raise ValueError(
                f"replay clock cannot move backwards from {self._now} to {timestamp_ms}"
            )
        self._now = int(timestamp_ms)


def utc_text(timestamp_ms: int) -> str:
    """A UTC time for messages: ``2026-01-20`` at midnight, else ``2026-01-20 13:05 UTC``."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    if timestamp_ms % 86_400_000 == 0:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def iso_utc(ms: int | float | None) -> str | None:
    """``2024-01-02T03:04:05Z`` (seconds) of UTC milliseconds; None (or not finite) is None."""
    if ms is None or not math.isfinite(float(ms)):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
