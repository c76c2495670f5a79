"""Outcomes: labels of realized returns and predictions maturing exactly at their horizon."""

from __future__ import annotations

import math

import pytest

from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, ModelOutput
from pivotal.orchestrator.contracts import Inference
from pivotal.orchestrator.outcomes import OutcomeTracker, label_return

BTC, ETH = "BTC/USDT", "ETH/USDT"


def _inference(symbol: str, timestamp: int, action: str = "BUY") -> dict[str, Inference]:
    output = ModelOutput("cnn", "cnn", Symbol.parse(symbol), timestamp, 0.7, {"action": action})
    return {"cnn": Inference(output)}


def test_label_return_uses_the_dead_band() -> None:
    assert label_return(0.002, 0.001) is Action.BUY
    assert label_return(-0.002, 0.001) is Action.SELL
    assert label_return(0.0005, 0.001) is Action.HOLD
    assert label_return(0.001, 0.001) is Action.HOLD  # on the band: HOLD
    assert label_return(-0.001, 0.001) is Action.HOLD
    assert label_return(0.0, 0.0) is Action.HOLD
    assert label_return(1e-12, 0.0) is Action.BUY


@pytest.mark.parametrize(("r", "band"), [(math.nan, 0.0), (math.inf, 0.0), (0.0, -0.1)])
def test_label_return_refuses_bad_numbers(r: float, band: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        label_return(r, band)


def test_prediction_matures_exactly_at_the_horizon() -> None:
    tracker = OutcomeTracker(horizon_bars=3, dead_band=0.001)
    closes = [100.0, 101.0, 99.0, 102.0, 100.5, 100.0]
    matured = []
    for bar, close in enumerate(closes):
        ts = 1_000 * (bar + 1)
        got = tracker.mature(BTC, bar, ts, close)
        matured.append(got)
        tracker.add(BTC, ts, bar, close, _inference(BTC, ts))
    assert [len(m) for m in matured] == [0, 0, 0, 1, 1, 1]
    outcome, inferences = matured[3][0]
    assert outcome.symbol == BTC
    assert outcome.timestamp == 1_000 and outcome.matured_at == 4_000
    assert outcome.horizon_bars == 3
    assert outcome.realized_return == pytest.approx(102.0 / 100.0 - 1)
    assert outcome.label is Action.BUY
    assert inferences["cnn"].output.timestamp == 1_000
    assert matured[4][0][0].label is Action.SELL  # 100.5 / 101 - 1 = -0.5 %
    assert matured[4][0][0].realized_return == pytest.approx(100.5 / 101.0 - 1)
    assert matured[5][0][0].label is Action.BUY  # 100 / 99 - 1 = +1 %
    assert tracker.pending(BTC) == 3  # bars 3, 4, 5
    tracker.add(BTC, 7_000, 6, 100.0, _inference(BTC, 7_000))
    tracker.add(BTC, 8_000, 7, 100.0, _inference(BTC, 8_000))
    got = tracker.mature(BTC, 9, 10_000, 100.05)  # bars 3..6 (6 + 3 <= 9), not 7
    assert [o.timestamp for o, _ in got] == [4_000, 5_000, 6_000, 7_000]
    assert got[-1][0].label is Action.HOLD  # 100.05 / 100 - 1 = +0.05 %, inside the band
    assert tracker.pending(BTC) == 1


def test_skipped_bars_mature_oldest_first_with_the_bars_that_passed() -> None:
    tracker = OutcomeTracker(horizon_bars=2, dead_band=0.0)
    for bar in range(4):
        tracker.add(BTC, 1_000 * bar, bar, 100.0 + bar, _inference(BTC, 1_000 * bar))
    got = tracker.mature(BTC, 5, 5_000, 110.0)  # bars 0..3 all have bar + 2 <= 5
    assert [o.timestamp for o, _ in got] == [0, 1_000, 2_000, 3_000]
    assert [o.horizon_bars for o, _ in got] == [5, 4, 3, 2]
    assert all(o.matured_at == 5_000 and o.label is Action.BUY for o, _ in got)
    assert tracker.pending() == 0


def test_symbols_mature_separately() -> None:
    tracker = OutcomeTracker(horizon_bars=1, dead_band=0.0)
    tracker.add(BTC, 1_000, 0, 100.0, _inference(BTC, 1_000))
    tracker.add(ETH, 1_000, 0, 10.0, _inference(ETH, 1_000))
    assert tracker.pending() == 2
    got = tracker.mature(ETH, 1, 2_000, 9.0)
    assert [(o.symbol, o.label) for o, _ in got] == [(ETH, Action.SELL)]
    assert tracker.pending(BTC) == 1 and tracker.pending(ETH) == 0
    assert tracker.mature(BTC, 0, 1_000, 100.0) == []  # not yet: 0 + 1 > 0
    assert [o.symbol for o, _ in tracker.mature(BTC, 1, 2_000, 101.0)] == [BTC]


def test_steps_without_inferences_are_not_pending() -> None:
    tracker = OutcomeTracker(horizon_bars=1, dead_band=0.0)
    tracker.add(BTC, 1_000, 0, 100.0, {})
    assert tracker.pending() == 0
    assert tracker.mature(BTC, 1, 2_000, 101.0) == []


def test_out_of_order_and_bad_input_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon_bars"):
        OutcomeTracker(horizon_bars=0, dead_band=0.0)
    with pytest.raises(ValueError, match="dead_band"):
        OutcomeTracker(horizon_bars=1, dead_band=-1.0)
    tracker = OutcomeTracker(horizon_bars=1, dead_band=0.0)
    tracker.add(BTC, 2_000, 1, 100.0, _inference(BTC, 2_000))
    with pytest.raises(ValueError, match="increase"):
        tracker.add(BTC, 2_000, 1, 100.0, _inference(BTC, 2_000))
    with pytest.raises(ValueError, match="close"):
        tracker.add(BTC, 3_000, 2, 0.0, _inference(BTC, 3_000))
    with pytest.raises(ValueError, match="close"):
        tracker.mature(BTC, 2, 3_000, math.nan)
    tracker.mature(BTC, 3, 4_000, 100.0)
    with pytest.raises(ValueError, match="go back"):
        tracker.mature(BTC, 2, 3_000, 100.0)
