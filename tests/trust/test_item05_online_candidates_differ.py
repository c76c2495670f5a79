"""Item 5: online candidates that "did not beat" the current model with identical scores.

Why: the candidates did change (the optimizer moved the weights and the holdout log-loss
moved), but a small update of a head whose inputs vary little from bar to bar flips no
argmax, so the holdout *accuracy* of candidate and current model was exactly equal and every
candidate was rolled back. Identical accuracies are legitimate; judging on them alone is
not. Candidates are now judged on the holdout log-loss (accuracy must not fall), and every
learning event carries the metric, both scores and their difference.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pivotal.backtest.engine import BacktestEngine
from pivotal.orchestrator.config import HistoryConfig, LearningConfig, OrchestratorConfig
from pivotal.orchestrator.learning import LearningLoop
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.testing.learning import LinearExpert, PlantedMarket, feed
from pivotal.testing.threads import one_torch_thread

SYMBOL = "BTC/USDT"
JUDGED = {"promoted", "rolled_back", "retrain_promoted", "retrain_rolled_back"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _config(score: str) -> LearningConfig:
    return LearningConfig.model_validate(
        {
            "horizon_bars": 1,
            "dead_band": 0.0,
            "batch_size": 32,
            "holdout": 64,
            "epochs": 2,
            "learning_rate": 1e-3,  # small steps, as the demo's
            "accuracy_window": 100,
            "degradation_drop": 0.9,  # no retrain: only the online candidates here
            "buffer": 400,
            "score": score,
        }
    )


def _flat_inputs(market: PlantedMarket, seed: int = 0) -> np.ndarray:
    """Inputs that barely vary from bar to bar (like the demo PivotCNN head's inputs, whose
    spread across samples is ~1 % of their level): the head can only learn the class mix."""
    rng = np.random.default_rng(seed)
    return (1.0 + 0.01 * rng.standard_normal((len(market), 4))).astype(np.float32)


def _run(score: str) -> list:
    market = PlantedMarket(700, seed=7)
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, _flat_inputs(market))
    return feed(LearningLoop(_config(score), {"lin": expert}), [expert], market, SYMBOL)


def test_judged_on_accuracy_alone_candidates_tie_although_they_changed() -> None:
    """The defect, reproduced: identical accuracies, but not identical candidates."""
    judged = [e for e in _run("accuracy") if e.kind in JUDGED]
    assert len(judged) >= 10
    assert all(e.metric == "holdout_accuracy" for e in judged)
    ties = [e for e in judged if e.before == e.after]
    assert len(ties) >= 0.8 * len(judged)  # most candidates tie on accuracy ...
    assert all(e.kind == "rolled_back" for e in ties)  # ... and a tie is rolled back
    # ... yet each of them changed the model: its holdout log-loss moved
    for e in ties:
        assert e.details["log_loss_candidate"] != e.details["log_loss_current"]
        assert e.details["accuracy_candidate"] == e.details["accuracy_current"]


def test_judged_on_log_loss_candidates_differ_and_learn() -> None:
    judged = [e for e in _run("log_loss") if e.kind in JUDGED]
    assert len(judged) >= 10
    assert all(e.metric == "holdout_log_loss" for e in judged)
    assert all(e.difference is not None and e.difference != 0 for e in judged)
    promoted = [e for e in judged if e.kind == "promoted"]
    assert promoted  # the class mix is learned, not rolled back forever
    for e in promoted:
        assert e.after < e.before  # type: ignore[operator]
        assert e.details["accuracy_candidate"] >= e.details["accuracy_current"]
    for e in judged:  # the message says it too
        assert "log-loss" in e.message and "difference" in e.message


def test_every_learning_event_of_a_run_carries_its_scores() -> None:
    market = PlantedMarket(500, seed=1)
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    learning = _config("log_loss").model_copy(update={"learning_rate": 0.05})
    config = OrchestratorConfig(learning=learning, history=HistoryConfig(enabled=False))
    orchestrator = Orchestrator([expert], config, base_timeframe="1m")
    BacktestEngine({SYMBOL: market.candles}, orchestrator, timeframe="1m").run()
    orchestrator.finish()
    judged = [e for e in orchestrator.events if e["kind"] in JUDGED]
    assert judged
    for e in judged:
        assert e["metric"] == "holdout_log_loss"
        assert e["difference"] == pytest.approx(e["after"] - e["before"])
