"""Real 1m candles of ``../shared/data`` for tests, and seeded gaps cut into them."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pivotal.core.candles import Candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir


def real_1m(symbol: str, rows: int, seed: int) -> Candles:
    """``rows`` consecutive real 1m candles of ``symbol`` (``"BTC"``) from a seeded row group
    of its Binance spot file; skips the test when the shared data or the file is absent."""
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    path = data / f"ohlcv/binance-spot/1m/{symbol}_USDT-1m.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared data")
    file = pq.ParquetFile(path)
    group = int(np.random.default_rng(seed).integers(0, file.metadata.num_row_groups))
    table = file.read_row_group(group, columns=["timestamp", "open", "high", "low", "close"])
    volume = file.read_row_group(group, columns=["volume"]).column(0)
    return Candles.from_frame(table.append_column("volume", volume).to_pandas()).head(rows)


def cut_gaps(
    candles: Candles, seed: int, count: int, *, earliest: int = 200, longest: int = 200
) -> Candles:
    """``candles`` with ``count`` runs removed at seeded places from row ``earliest`` on:
    odd ones short (1-5 bars, bridged), even ones real gaps (6 to ``longest - 1`` bars)."""
    rng = np.random.default_rng(seed)
    keep = np.ones(len(candles), dtype=bool)
    for k in range(count):
        start = int(rng.integers(earliest, len(candles) - 300))
        length = int(rng.integers(1, 6)) if k % 2 else int(rng.integers(6, longest))
        keep[start : start + length] = False
    return candles[keep]
