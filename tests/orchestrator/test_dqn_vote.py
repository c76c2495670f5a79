"""The DQN's vote takes the spread of its Q-values by numpy's own steps without np.std's
dispatch: the same bits as np.std for any float64 values, and so the same vote."""

from __future__ import annotations

import math
import struct

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.orchestrator.experts.dqn_vote import population_std, vote_probabilities

_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 1.0),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-4, 1e-4 + 1e-19]),
)
_q = st.lists(_floats, min_size=0, max_size=9).map(lambda v: np.asarray(v, dtype=np.float64))


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _reference_vote(q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    spread = max(float(np.std(q)), 1e-12)
    e = np.exp((q - q.max()) / spread)
    return e / e.sum()


@settings(max_examples=500, deadline=None)
@given(_q)
def test_the_spread_is_np_std_to_the_bit(q: npt.NDArray[np.float64]) -> None:
    with np.errstate(all="ignore"):
        assert _bits(population_std(q)) == _bits(float(np.std(q)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=6))
def test_the_vote_is_the_same_bits(values: list[float]) -> None:
    q = np.asarray(values, dtype=np.float64)
    assert vote_probabilities(q).tobytes() == _reference_vote(q).tobytes()


def test_other_arrays_go_to_np_std() -> None:
    q32 = np.asarray([0.1, 0.2, 0.4], dtype=np.float32)
    assert _bits(population_std(q32)) == _bits(float(np.std(q32)))
    q2d = np.asarray([[0.1, 0.2], [0.4, 0.8]])
    assert _bits(population_std(q2d)) == _bits(float(np.std(q2d)))
    assert math.isclose(population_std(np.asarray([1.0, 3.0])), 1.0)
