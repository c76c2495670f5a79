"""Splits: no overlap, gaps >= purge (+ embargo), time order, exact test sets, walk-forward
sizes in expanding and rolling mode, spans from timestamps, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.training.labels import LabelConfig, label_horizon
from pivotal.training.splits import (
    PARTS,
    Split,
    chronological_split,
    purge_for,
    walk_forward,
)

HOUR = 3_600_000


def check_split(split: Split, gap: int) -> None:
    """Every invariant a split promises."""
    seen: list[int] = []
    previous_end = None
    for name in PARTS:
        part = split.part(name)
        assert part.dtype == np.int64
        if not len(part):
            continue
        assert np.all(np.diff(part) == 1), f"{name} is not contiguous"
        assert part[0] >= 0 and part[-1] < split.n
        if previous_end is not None:
            assert part[0] - previous_end - 1 >= gap, f"gap before {name} < {gap}"
            assert part[0] > previous_end  # time order
        previous_end = int(part[-1])
        seen += part.tolist()
    assert len(seen) == len(set(seen)), "parts overlap"


def test_purge_for_matches_the_rule():
    assert purge_for(15, 300) == 15 + 300 - 1
    assert purge_for(0, 1) == 0
    assert purge_for(5) == 5
    # one sample every 4 bars: (purge + 1) * 4 >= 15 + 10 -> purge = 6
    assert purge_for(15, 10, stride=4) == 6
    assert (purge_for(15, 10, 4) + 1) * 4 >= 25 > purge_for(15, 10, 4) * 4
    with pytest.raises(ValueError, match="frames"):
        purge_for(5, 0)
    with pytest.raises(ValueError, match="label_horizon"):
        purge_for(-1, 5)
    with pytest.raises(TypeError, match="stride"):
        purge_for(5, 5, 1.5)  # type: ignore[arg-type]


def test_purge_keeps_label_windows_away_from_later_inputs():
    """The rule itself: with purge_for(H, F), the last training label window (k, k + H] ends
    before the first validation input window [v - F + 1, v] starts."""
    horizon = label_horizon(LabelConfig(pivot_levels=0))
    frames = 30
    split = chronological_split(2000, purge=purge_for(horizon, frames))
    for left, right in (("train", "validation"), ("validation", "test")):
        k = split.part(left)[-1]
        v = split.part(right)[0]
        assert k + horizon < v - frames + 1
    tight = chronological_split(2000, purge=purge_for(horizon, frames) - 1)
    k, v = tight.part("train")[-1], tight.part("validation")[0]
    assert not k + horizon < v - frames + 1  # one sample less and they touch


def test_chronological_split_sizes_and_gaps():
    split = chronological_split(1000, 0.7, 0.15, 0.15, purge=20, embargo=5)
    check_split(split, 25)
    assert split.range("test") == (850, 1000)  # the test set is exactly the last 15 %
    assert split.range("validation") == (700, 825)  # gives its last 25 samples to the gap
    assert split.range("train") == (0, 675)
    assert split.times is None and split.span("train") is None
    no_val = chronological_split(100, 0.8, 0.0, 0.2, purge=3)
    assert len(no_val.validation) == 0
    assert no_val.range("train") == (0, 77) and no_val.range("test") == (80, 100)
    check_split(no_val, 3)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 5000),
    train=st.floats(0.05, 0.9),
    val_share=st.floats(0.0, 1.0),
    purge=st.integers(0, 200),
    embargo=st.integers(0, 20),
)
def test_chronological_split_invariants(n, train, val_share, purge, embargo):
    validation = (1 - train) * val_share * 0.9
    test = 1 - train - validation
    # the documented boundaries: round(n * train) and round(n * (train + validation))
    gap = purge + embargo
    first = round(n * train)
    second = round(n * (train + validation)) if validation > 0 else first
    if first - gap <= 0 or second >= n or (validation > 0 and second - first - gap <= 0):
        with pytest.raises(ValueError, match="empty"):
            chronological_split(n, train, validation, test, purge=purge, embargo=embargo)
        return
    split = chronological_split(n, train, validation, test, purge=purge, embargo=embargo)
    assert split.range("test") == (second, n)
    check_split(split, purge + embargo)
    assert split.range("test")[1] == n
    assert len(split.train) > 0 and len(split.test) > 0


def test_split_spans_from_timestamps():
    times = 1_700_000_000_000 + HOUR * np.arange(500)
    split = chronological_split(times, purge=10)
    first, last = split.span("test")
    start, stop = split.range("test")
    assert first == times[start] and last == times[stop - 1]
    assert split.spans()["train"] == (int(times[0]), int(times[split.range("train")[1] - 1]))
    info = split.to_dict()
    assert info["test"]["size"] == stop - start
    assert info["train"]["first_utc"].endswith("Z")
    as_datetimes = chronological_split(times.astype("datetime64[ms]"), purge=10)
    assert as_datetimes.spans() == split.spans()


def test_walk_forward_expanding_and_rolling():
    n, k, size, purge = 1000, 4, 100, 15
    expanding = walk_forward(n, k, test_size=size, purge=purge)
    rolling = walk_forward(n, k, test_size=size, purge=purge, mode="rolling")
    assert len(expanding) == len(rolling) == k
    for f, (e, r) in enumerate(zip(expanding, rolling, strict=True)):
        check_split(e, purge)
        check_split(r, purge)
        assert e.range("test") == r.range("test") == (600 + f * size, 700 + f * size)
        assert e.range("train") == (0, 600 + f * size - purge)  # grows by test_size
        assert len(r.train) == 600 - purge  # constant: the first fold's expanding size
        assert r.range("train")[1] == e.range("train")[1]
    assert e.range("test")[1] == n  # the last fold ends at the last sample
    fixed = walk_forward(n, k, test_size=size, purge=purge, mode="rolling", train_size=200)
    assert all(len(f.train) == 200 for f in fixed)
    assert [f.range("train")[0] for f in fixed] == [385, 485, 585, 685]


def test_walk_forward_with_validation_blocks_and_times():
    times = 1_600_000_000_000 + HOUR * np.arange(800)
    folds = walk_forward(times, 3, test_size=100, purge=10, validation_size=50)
    for fold in folds:
        check_split(fold, 10)
        assert len(fold.validation) == 50
        assert fold.part("test")[0] - fold.part("validation")[-1] - 1 == 10
        assert fold.part("validation")[0] - fold.part("train")[-1] - 1 == 10
        assert fold.span("test") == (
            int(times[fold.part("test")[0]]),
            int(times[fold.part("test")[-1]]),
        )


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 3000),
    k=st.integers(1, 8),
    size=st.integers(1, 300),
    purge=st.integers(0, 100),
    validation_size=st.integers(0, 50),
    mode=st.sampled_from(["expanding", "rolling"]),
)
def test_walk_forward_invariants(n, k, size, purge, validation_size, mode):
    if n - k * size - purge - (validation_size + purge if validation_size else 0) <= 0:
        with pytest.raises(ValueError, match="too few"):
            walk_forward(n, k, test_size=size, purge=purge, validation_size=validation_size)
        return
    folds = walk_forward(
        n, k, test_size=size, purge=purge, mode=mode, validation_size=validation_size
    )
    assert len(folds) == k
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(tests, np.arange(n - k * size, n))  # consecutive blocks
    sizes = [len(f.train) for f in folds]
    if mode == "rolling":
        assert len(set(sizes)) == 1
    else:
        assert sizes == [sizes[0] + f * size for f in range(k)]
    for fold in folds:
        check_split(fold, purge)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="must be 1"):
        chronological_split(100, 0.5, 0.2, 0.2, purge=0)
    with pytest.raises(ValueError, match="> 0"):
        chronological_split(100, 0.0, 0.5, 0.5, purge=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        chronological_split(100, 1.2, -0.1, -0.1, purge=0)
    with pytest.raises(ValueError, match="too few"):
        chronological_split(100, 0.8, 0.0, 0.2, purge=80)
    with pytest.raises(ValueError, match="validation set is empty"):
        chronological_split(100, 0.7, 0.15, 0.15, purge=15)
    with pytest.raises(TypeError, match="purge"):
        chronological_split(100, purge=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="purge must be >= 0"):
        chronological_split(100, purge=-1)
    with pytest.raises(ValueError, match="increase strictly"):
        chronological_split(np.array([1, 2, 2, 3] * 10), purge=0)
    with pytest.raises(ValueError, match="empty"):
        chronological_split(np.array([], dtype=np.int64), purge=0)
    with pytest.raises(TypeError, match="sample count"):
        chronological_split(100.0, purge=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        chronological_split(0, purge=0)
    with pytest.raises(ValueError, match="too few"):
        walk_forward(100, 5, test_size=20, purge=1)
    with pytest.raises(ValueError, match="mode"):
        walk_forward(100, 2, test_size=10, purge=1, mode="sliding")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode='rolling' only"):
        walk_forward(100, 2, test_size=10, purge=1, train_size=20)
    with pytest.raises(ValueError, match="exceeds"):
        walk_forward(100, 2, test_size=10, purge=1, mode="rolling", train_size=90)
    with pytest.raises(ValueError, match="test_size must be >= 1"):
        walk_forward(100, 2, test_size=0, purge=1)
    with pytest.raises(ValueError, match="n_splits must be >= 1"):
        walk_forward(100, 0, test_size=10, purge=1)


def test_split_refuses_overlap_and_short_gaps():
    with pytest.raises(ValueError, match="separate train from test"):
        Split(np.arange(0, 50), np.arange(0), np.arange(52, 60), n=60, purge=5)
    with pytest.raises(ValueError, match="separate"):
        Split(np.arange(0, 50), np.arange(40, 45), np.arange(52, 60), n=60, purge=0)
    with pytest.raises(ValueError, match="contiguous"):
        Split(np.array([0, 2, 3]), np.arange(0), np.arange(5, 9), n=10, purge=0)
    with pytest.raises(ValueError, match="outside"):
        Split(np.arange(0, 5), np.arange(0), np.arange(6, 11), n=10, purge=0)
    with pytest.raises(ValueError, match="empty"):
        Split(np.arange(0), np.arange(0), np.arange(6, 10), n=10, purge=0)
    with pytest.raises(ValueError, match="one time per sample"):
        Split(np.arange(0, 5), np.arange(0), np.arange(6, 10), n=10, purge=0, times=np.arange(9))
    ok = Split(np.arange(0, 5), np.arange(0), np.arange(6, 10), n=10, purge=1)
    with pytest.raises(ValueError, match="unknown part"):
        ok.part("holdout")
    assert not ok.train.flags.writeable
