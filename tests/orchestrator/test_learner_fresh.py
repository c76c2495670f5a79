"""The learning loop's walk back to the unused examples (``_Learner.fresh``) equals filtering
the whole buffer the way ``_Learner.split`` does, whatever the buffer holds."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.orchestrator.learning import _Learner


@dataclass(frozen=True)
class _Outcome:
    matured_at: int


@dataclass(frozen=True)
class _Example:
    timestamp: int
    outcome: _Outcome


@settings(max_examples=200, deadline=None)
@given(
    delays=st.lists(st.integers(0, 30), max_size=120),
    capacity=st.integers(16, 80),
    holdout=st.integers(1, 20),
    limit=st.integers(1, 40),
    used=st.integers(-1, 130),
)
def test_fresh_equals_filtering_the_whole_buffer(
    delays: list[int], capacity: int, holdout: int, limit: int, used: int
) -> None:
    learner = _Learner("m", target=None, capacity=capacity)
    for i, delay in enumerate(delays):  # matured_at is not monotonic in the buffer
        learner.add(_Example(i * 5, _Outcome(i * 5 + delay)))
    learner.used = used
    batch, held, count = learner.fresh(holdout, limit)
    split = learner.split(holdout)
    if split is None:
        assert (batch, held, count) == ([], [], 0)
        return
    trainable, want_held = split
    fresh = [(s, e) for s, e in trainable if s > used]
    assert held == want_held
    assert count == min(len(fresh), limit)
    assert batch == fresh[-limit:] if fresh else batch == []
