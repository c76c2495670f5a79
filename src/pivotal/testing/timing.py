"""Timing for benchmarks (never for test assertions: tests do not assert wall-clock time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(
    fn: Callable[[], Any],
    repeats: int = 5,
    *,
    setup: Callable[[], Any] | None = None,
    warmup: bool = True,
) -> float:
    """Seconds of the fastest of ``repeats`` runs of ``fn``, after one warm-up run unless
    ``warmup=False``; ``setup`` runs untimed before each timed run."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
