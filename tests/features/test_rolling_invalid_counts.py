"""RollingCandles counts, as each candle arrives, the candles input validation calls invalid:
the running counts give ``invalid_rows`` of every window of held candles, across the buffer
moves, and counts handed out earlier keep their values while the window grows."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.rolling import RollingCandles
from pivotal.features.inputs.validation import invalid_rows

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000

# candles the rolling window takes (finite, close > 0, high >= low, volume >= 0), some of
# them invalid for input validation (an open or low that is not positive)
_prices = st.sampled_from([1.0, 2.5, 0.0, -0.0, -1.0, 5e-324, 1e308])
_candle = st.tuples(_prices, _prices, st.floats(0.0, 1e300, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_candle, min_size=1, max_size=60), capacity=st.integers(2, 9))
def test_running_counts_equal_a_scan_of_every_window(
    rows: list[tuple[float, float, float]], capacity: int
) -> None:
    rolling = RollingCandles(
        "1m", capacity=capacity, columns=ColumnsConfig(indicators=False, pivot_levels=1)
    )
    earlier = []  # (counts, their window's candles) handed out before later appends
    for i, (open_, low, volume) in enumerate(rows):
        close = 3.0
        high = max(close, open_, low) + 1.0
        rolling.append(T0 + 60_000 * i, open_, high, low, close, volume)
        held = rolling.candles()
        n = len(held)
        for start in range(n + 1):
            counts = rolling.invalid_counts(start, n)
            assert len(counts) == n - start + 1
            for stop in range(start, n + 1):
                window = held.rows(start, stop)
                assert counts[stop - start] - counts[0] == invalid_rows(window)
        earlier.append((rolling.invalid_counts(0, n), held))
    for counts, held in earlier:  # views of buffers never written below their end
        assert int(counts[-1] - counts[0]) == invalid_rows(held)
        assert not counts.flags.writeable


def test_what_counts_as_invalid() -> None:
    rolling = RollingCandles("1m", capacity=4, columns=ColumnsConfig(indicators=False))
    for i, (open_, low) in enumerate([(1.0, 1.0), (0.0, 1.0), (1.0, -2.0), (1.0, math.ulp(0))]):
        rolling.append(T0 + 60_000 * i, open_, 3.0, low, 2.0, 0.0)
    assert np.diff(rolling.invalid_counts(0, 4)).tolist() == [0, 1, 1, 0]
