"""``BatchSizes``: how far ahead the replay accelerators evaluate."""

from __future__ import annotations

import pytest

from pivotal.orchestrator.experts.accelerator import BatchSizes


def test_batches_double_while_used_up_and_restart_small_when_dropped() -> None:
    sizes = BatchSizes(4, 20)
    assert sizes.next("A", None) == 4  # the first batch
    assert [sizes.next("A", True) for _ in range(4)] == [8, 16, 20, 20]
    assert sizes.next("A", False) == 4  # dropped unfinished: weights changed
    assert sizes.next("B", None) == 4  # per symbol
    assert sizes.next("A", True) == 8


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="min_batch <= max_batch"):
        BatchSizes(8, 4)
    with pytest.raises(ValueError, match="1 <= min_batch"):
        BatchSizes(0, 4)
