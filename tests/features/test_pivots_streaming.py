"""Streaming Williams pivots equal the batch ones (every column, same order), on generated and
real data; each update returns only pivots confirmed at that bar; bad input is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.gaps import infer_step_ms
from pivotal.features.pivots import (
    Pivot,
    StreamingWilliamsPivots,
    pivots_to_frame,
    williams_pivots,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
real_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)


def stream(high, low, timestamps=None, levels=5, strength=2) -> list[Pivot]:
    # With timestamps the batch restarts after gaps (step: the smallest spacing); so does the
    # streaming detector when told the step.
    step = infer_step_ms(timestamps) if timestamps is not None else None
    detector = StreamingWilliamsPivots(levels, strength, step_ms=step)
    out: list[Pivot] = []
    for t in range(len(high)):
        ts = None if timestamps is None else int(timestamps[t])
        new = detector.update(high[t], low[t], ts)
        assert all(p.confirm_index == t for p in new)
        out += new
    assert detector.bars_seen == len(high)
    return out


@st.composite
def walks(draw, max_len: int = 300):
    n = draw(st.integers(0, max_len))
    steps = draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n))
    spread = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    low = 100.0 + np.cumsum(np.asarray(steps, dtype=np.float64))
    return low + np.asarray(spread, dtype=np.float64), low


@settings(max_examples=150, deadline=None)
@given(
    walks(),
    st.integers(1, 5),
    st.one_of(st.integers(1, 3), st.lists(st.integers(1, 3), min_size=5, max_size=5)),
)
def test_streaming_equals_batch_on_random_walks(bars, levels, strength) -> None:
    high, low = bars
    if isinstance(strength, list):
        strength = strength[:levels]
    ts = 1_600_000_000_000 + 1_000 * np.arange(len(high), dtype=np.int64)
    batch = williams_pivots(high, low, levels=levels, strength=strength, timestamps=ts)
    got = pivots_to_frame(stream(high, low, ts, levels, strength), with_timestamps=True)
    pd.testing.assert_frame_equal(got, batch)
    no_ts = pivots_to_frame(stream(high, low, None, levels, strength))
    pd.testing.assert_frame_equal(no_ts, williams_pivots(high, low, levels, strength))


@real_data
@pytest.mark.parametrize(
    ("path", "rows", "strength"),
    [
        ("1h/BTC_USDT-1h.parquet", None, 2),
        ("1m/ETH_USDT-1m.parquet", 60_000, (3, 2, 2, 1, 1)),
        ("1m/BTC_USDT-1m.parquet", 60_000, 1),
    ],
)
def test_streaming_equals_batch_on_real_data(path, rows, strength) -> None:
    assert DATA is not None
    df = pd.read_parquet(DATA / "ohlcv/binance-spot" / path)
    if rows is not None:
        df = df.iloc[:rows]
    high, low, ts = df.high.to_numpy(), df.low.to_numpy(), df.timestamp.to_numpy()
    batch = williams_pivots(high, low, levels=5, strength=strength, timestamps=ts)
    got = pivots_to_frame(stream(high, low, ts, 5, strength))
    pd.testing.assert_frame_equal(got, batch)
    assert set(batch.level) == {1, 2, 3, 4, 5}


def test_update_returns_pivots_of_the_hand_example_at_their_confirm_bar() -> None:
    high = [1, 3, 1, 5, 1, 4, 1, 6, 1, 8, 1, 7, 1, 5, 1, 6, 1, 4, 1]
    even = [0.9, 0.6, 0.8, 0.4, 0.7, 0.2, 0.5, 0.3, 0.6, 0.95]
    low = [even[i // 2] if i % 2 == 0 else high[i] - 0.5 for i in range(19)]
    detector = StreamingWilliamsPivots(levels=3, strength=1)
    per_bar = [detector.update(h, lo) for h, lo in zip(high, low, strict=True)]
    assert per_bar[0] == [] and per_bar[1] == []
    assert per_bar[17] == [
        Pivot(1, "low", 16, 17, 0.6),
        Pivot(2, "low", 14, 17, 0.3),
        Pivot(3, "low", 10, 17, 0.2),
    ]
    assert per_bar[18] == [
        Pivot(1, "high", 17, 18, 4.0),
        Pivot(2, "high", 15, 18, 6.0),
        Pivot(3, "high", 9, 18, 8.0),
    ]


def test_empty_stream_frame_has_the_batch_columns() -> None:
    pd.testing.assert_frame_equal(pivots_to_frame([]), williams_pivots([], []))
    with_ts = williams_pivots([], [], timestamps=np.empty(0, np.int64))
    pd.testing.assert_frame_equal(pivots_to_frame([], with_timestamps=True), with_ts)


def test_bad_input_is_refused_and_leaves_the_state_unchanged() -> None:
    detector = StreamingWilliamsPivots(levels=2, strength=1)
    detector.update(2.0, 1.0, 1_000)
    with pytest.raises(ValueError, match="finite"):
        detector.update(float("nan"), 1.0, 2_000)
    with pytest.raises(ValueError, match=r"high 1\.0 < low 2\.0"):
        detector.update(1.0, 2.0, 2_000)
    with pytest.raises(ValueError, match="every bar or for none"):
        detector.update(3.0, 2.0)
    assert detector.bars_seen == 1
    with pytest.raises(ValueError, match="strength must be >= 1"):
        StreamingWilliamsPivots(levels=5, strength=0)
    with pytest.raises(ValueError, match="levels must be between 1"):
        StreamingWilliamsPivots(levels=0)
    with pytest.raises(ValueError, match="3 entries but levels=2"):
        StreamingWilliamsPivots(levels=2, strength=(1, 2, 3))
    with pytest.raises(ValueError, match="carry no timestamp"):
        pivots_to_frame([Pivot(1, "high", 3, 4, 1.0)], with_timestamps=True)


@real_data
@pytest.mark.slow
def test_streaming_equals_batch_on_all_btc_1m_bars() -> None:
    assert DATA is not None
    df = pd.read_parquet(DATA / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet")
    high, low, ts = df.high.to_numpy(), df.low.to_numpy(), df.timestamp.to_numpy()
    got = pivots_to_frame(stream(high, low, ts))
    pd.testing.assert_frame_equal(got, williams_pivots(high, low, timestamps=ts))
