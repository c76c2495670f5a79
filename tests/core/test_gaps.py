"""The one gap definition (pivotal.core.gaps): gaps, segments, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pivotal.core.gaps import (
    GapPolicy,
    coverage,
    find_series_gaps,
    gap_after,
    segment_bounds,
    segment_ids,
    segment_starts,
    window_crosses_gap,
)

STEP = 60_000


def _series(holes: list[int]) -> np.ndarray:
    """Open times with a run of ``h`` missing bars after each block of 10 bars."""
    out, t = [], 0
    for h in [*holes, 0]:
        out.extend(t + STEP * i for i in range(10))
        t = out[-1] + STEP * (h + 1)
    return np.asarray(out, dtype=np.int64)


def test_short_runs_are_bridged_and_long_runs_are_gaps() -> None:
    ts = _series([5, 6, 1])
    gaps = find_series_gaps(ts, STEP, max_missing_bars=5)
    assert [g.missing for g in gaps] == [6]
    assert gaps[0].last_before == ts[19] and gaps[0].first_after == ts[20]
    assert find_series_gaps(ts, STEP, max_missing_bars=0)[0].missing == 5
    assert len(find_series_gaps(ts, STEP, max_missing_bars=0)) == 3


def test_segments_split_exactly_at_gaps() -> None:
    ts = _series([7, 0, 9])
    assert segment_bounds(ts, STEP, 5) == [(0, 10), (10, 30), (30, 40)]
    ids = segment_ids(ts, STEP, 5)
    assert ids.tolist() == [0] * 10 + [1] * 20 + [2] * 10
    assert np.flatnonzero(segment_starts(ts, STEP, 5)).tolist() == [0, 10, 30]
    assert np.flatnonzero(gap_after(ts, STEP, 5)).tolist() == [9, 29]


@given(st.lists(st.integers(0, 30), max_size=8), st.integers(0, 10))
def test_windows_cross_a_gap_exactly_when_their_rows_straddle_one(
    holes: list[int], max_missing: int
) -> None:
    ts = _series(holes)
    ids = segment_ids(ts, STEP, max_missing)
    first = np.arange(len(ts) - 3)
    crosses = window_crosses_gap(ids, first, first + 3)
    for i, c in zip(first, crosses, strict=True):
        steps = np.diff(ts[i : i + 4]) // STEP - 1
        assert c == bool((steps > max_missing).any())


def test_coverage_reports_mostly_gaps() -> None:
    ts = np.asarray([0, STEP, 100 * STEP], dtype=np.int64)
    cov = coverage(ts, STEP)
    assert cov.expected_bars == 101 and cov.present_bars == 3 and cov.mostly_gaps
    assert "97.0 % missing" in cov.summary()
    assert not coverage(np.arange(10) * STEP, STEP).mostly_gaps


def test_policy_and_inputs_are_validated() -> None:
    assert GapPolicy.parse(" Hold ") is GapPolicy.HOLD
    with pytest.raises(ValueError, match="close or hold"):
        GapPolicy.parse("flat")
    with pytest.raises(ValueError, match="positive"):
        gap_after(np.arange(3), 0)
