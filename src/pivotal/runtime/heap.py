"""A run's heap: what exists when a run starts is moved out of the garbage collector's way.

CPython's cyclic collector walks every tracked object of the oldest generation on a full
collection. A trading process holds hundreds of thousands of them from start-up (torch
modules, numpy and pandas internals, prepared histories), so a full collection in the middle
of a run stopped a decision for 250-400 ms, and smaller ones lifted the p99. Inside
:func:`frozen_heap` those start-up objects sit in the permanent generation
(:func:`gc.freeze`): collections scan only what the run itself allocates. Nothing is
disabled; garbage made during the run is collected as usual, and on leaving, everything is
unfrozen (cycles left over from start-up are collected later as usual). Nested runs freeze
once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]

_depth = 0


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects that exist now for the duration of the block (module docstring)."""
    global _depth
    if _depth == 0:
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
