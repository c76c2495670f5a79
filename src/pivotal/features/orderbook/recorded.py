"""1s COB snapshots from recorded depth files, for ``pivotal data import`` to store.

A depth file holds a REST snapshot plus every diff-depth event of one symbol, one row per
level change, in the columnar layout of ``../shared/data/orderbook``
(:class:`~pivotal.features.orderbook.book.DepthEvents`). The files of one symbol are
replayed in the order given as one stream (a recording split into daily files continues
across the boundary) into an :class:`~pivotal.features.orderbook.book.OrderBook`, with
Binance USD-M sequencing when the rows carry ``pu`` (``prev_final_update_id >= 0``), spot
sequencing otherwise, and sampled by :func:`~pivotal.features.orderbook.cob.iter_cob`: the
snapshots are exactly those the COB sampler computes from the same events (no order-flow
metrics: depth files hold no trades).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.features.orderbook.book import DepthEvents, OrderBook, Sequencing
from pivotal.features.orderbook.cob import COBConfig, iter_cob

__all__ = ["cob_from_depth_files", "read_depth_files"]


def read_depth_files(paths: Sequence[Path]) -> pd.DataFrame:
    """The rows of ``paths`` (Parquet, depth layout) one after another, as one frame."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_parquet(path))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot be read as a depth file: {exc}") from None
    if not frames:
        raise DataError("no depth files given")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def cob_from_depth_files(
    paths: Sequence[Path], symbol: Symbol | str, config: COBConfig | None = None
) -> list[COBData]:
    """The 1s COB snapshots of ``symbol`` replayed from its depth ``paths`` (module docstring).

    Raises ``DataError`` naming the file when a file cannot be read or lacks a depth column,
    and when the replay yields no snapshot (no REST snapshot to start the book from, or a
    book that never had both sides)."""
    where = ", ".join(str(p) for p in paths)
    frame = read_depth_files(paths)
    try:
        events = DepthEvents(frame)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    usdm = bool(len(events)) and bool(np.any(events.prev_final_update_id >= 0))
    book = OrderBook(symbol, Sequencing.USDM if usdm else Sequencing.SPOT)
    snapshots = list(iter_cob(events, book, config))
    if not snapshots:
        raise DataError(
            f"{where}: the depth events give no COB snapshot ({book.snapshots} REST snapshots, "
            f"{book.applied} diffs applied, {book.gaps} gaps); a recording must start with a "
            "REST depth snapshot (rows with is_snapshot=true)"
        )
    return snapshots
