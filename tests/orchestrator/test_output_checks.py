"""The output check's fast finiteness test agrees with the exact one on any nesting."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.orchestrator.output_checks import _finite, _nonfinite

_leaves = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1.7e308]),  # finite, but their sum overflows
    st.integers(min_value=-(10**400), max_value=10**400),  # some too large for a float
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4).map(np.asarray),
    # float32/float16 arrays: finite values whose sum overflows; 2-D; complex
    st.lists(st.sampled_from([1.0, 3e38, -3e38, 6e4, math.nan, math.inf]), max_size=6).map(
        lambda v: np.asarray(v, dtype=np.float32)
    ),
    st.lists(st.sampled_from([1.0, 6e4, math.inf, -math.inf]), max_size=6).map(
        lambda v: np.asarray(v, dtype=np.float16)
    ),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4).map(
        lambda v: np.asarray(v).reshape(2, 2)
    ),
    st.tuples(st.floats(), st.floats()).map(lambda v: np.asarray([complex(*v)])),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=5),
        st.dictionaries(st.text(max_size=3), inner, max_size=5).map(MappingProxyType),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_fast_check_agrees_with_the_exact_one(value: object) -> None:
    assert _finite(value) == (_nonfinite(value, "") is None)


def test_an_overflowing_sum_of_finite_values_is_finite() -> None:
    assert _finite([1.7e308, 1.7e308]) and _finite({"a": {"b": [1e308, 1e308, 1.0]}})
    assert not _finite({"a": [1.0, math.nan], "b": "x"})
    assert not _finite([1.0, {"c": (2.0, -math.inf)}])
