"""``frozen_heap``: start-up objects frozen for a run, unfrozen after it, however it ends."""

from __future__ import annotations

import gc

import pytest

from pivotal.backtest.engine import run_backtest
from pivotal.backtest.strategies import make_strategy
from pivotal.runtime import heap
from pivotal.runtime.heap import frozen_heap
from pivotal.testing.planted import planted_candles


def test_objects_are_frozen_inside_and_unfrozen_after_even_on_error() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # a nested run freezes nothing more and unfreezes nothing
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a run that fails")
    assert gc.get_freeze_count() == 0


def test_a_backtest_runs_frozen_and_leaves_the_heap_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    original = heap.gc.freeze

    def freeze() -> None:
        original()
        seen.append(gc.get_freeze_count())

    monkeypatch.setattr(heap.gc, "freeze", freeze)
    result = run_backtest(
        {"SYN/USDT": planted_candles(600, seed=2)},
        make_strategy("sma_cross", {"fast": 4, "slow": 12}),
        timeframe="1m",
    )
    assert len(result.equity) == 600 and seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
