"""Item 6: decision records show the PivotCNN's regression outputs in real units.

The network predicts its regression targets standardised with the training's mean and std;
the records used to show those numbers (``pivot1_high_bars: -0.006``). Now the record's
``predictions["regression"]`` is the inverse transform (bars, log price ratios),
``predictions["pivot_points"]`` gives each predicted pivot as a price and a number of bars,
and the network's raw row stays in the record's hidden states for exact replay.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pivotal.backtest.engine import BacktestEngine
from pivotal.core.timeframes import Timeframe
from pivotal.data.inference_history import InferenceHistory
from pivotal.orchestrator.config import LearningConfig, OrchestratorConfig
from pivotal.orchestrator.experts import PivotCNNExpert
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.testing.planted import planted_candles
from pivotal.testing.threads import one_torch_thread
from pivotal.testing.training import PLANTED_LABELS, store_candles, tiny_job
from pivotal.training.labels import next_pivot_targets
from pivotal.training.run import train_job

M1 = Timeframe.parse("1m")
SYMBOL = "BTC/USDT"
START = 1_699_999_200_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A tiny PivotCNN trained on next-pivot targets, run by the orchestrator over the last
    60 bars with the inference history on; its records, candles and expert."""
    root = tmp_path_factory.mktemp("item06")
    candles = planted_candles(800, seed=3, start_time=START)
    labels = PLANTED_LABELS.model_copy(update={"pivot_levels": 1, "pivot_horizon": 32})
    job = tiny_job("pivot_cnn", labels=labels, regression=None)
    job = job.model_copy(update={"training": job.training.model_copy(update={"epochs": 2})})
    store = store_candles(root / "store.duckdb", candles, symbol=SYMBOL)
    with store:
        path = train_job(store, job, root / "cnn", keep=1).best_checkpoint
        expert = PivotCNNExpert(path, name="pivot_cnn")
        config = OrchestratorConfig(learning=LearningConfig(enabled=False))
        orchestrator = Orchestrator(
            [expert],
            config,
            base_timeframe="1m",
            data={SYMBOL: {M1: candles}},  # the whole history: warm inputs
            history=InferenceHistory(store),
        )
        tail = candles[len(candles) - 60 :]
        BacktestEngine({SYMBOL: tail}, orchestrator, timeframe="1m").run()
        orchestrator.finish()
        records = InferenceHistory(store).query(symbol=SYMBOL, model="pivot_cnn")
    return records, candles, expert


def test_regression_outputs_are_the_inverse_transform_of_the_raw_outputs(recorded) -> None:  # type: ignore[no-untyped-def]
    records, _, expert = recorded
    assert len(records) > 30
    names = list(expert.model.targets.regression)
    assert {"pivot1_high_rel", "pivot1_high_bars", "pivot1_low_rel", "pivot1_low_bars"} <= set(
        names
    )
    mean, std = expert._scaling.target_mean, expert._scaling.target_std
    assert np.all(std != 1.0)  # a real scaling: scaled and real values differ
    for record in records:
        regression = record.outputs["pivot_cnn"]["predictions"]["regression"]
        raw = np.asarray(record.hidden["pivot_cnn"]["regression_scaled"], dtype=np.float64)
        assert list(regression) == names
        np.testing.assert_allclose(list(regression.values()), raw * std + mean, rtol=1e-12)


def test_recorded_pivots_are_prices_within_the_market_and_bars(recorded) -> None:  # type: ignore[no-untyped-def]
    records, candles, _ = recorded
    # this market's prices, widened by its largest actual move to a next pivot
    labels = next_pivot_targets(candles.high, candles.low, candles.close, 1, max_horizon=32)
    moves = np.concatenate([labels["pivot1_high_rel"], labels["pivot1_low_rel"]])
    margin = math.exp(float(np.nanmax(np.abs(moves))))
    low, high = float(np.min(candles.low)) / margin, float(np.max(candles.high)) * margin
    close_at = dict(zip((candles.timestamp + M1.ms).tolist(), candles.close.tolist(), strict=True))
    for record in records:
        output = record.outputs["pivot_cnn"]
        regression = output["predictions"]["regression"]
        pivots = output["predictions"]["pivot_points"]
        assert [(p["level"], p["kind"]) for p in pivots] == [(1, "high"), (1, "low")]
        close = close_at[record.timestamp]
        assert output["metadata"]["reference_close"] == close
        for p in pivots:
            rel = regression[f"pivot1_{p['kind']}_rel"]
            assert p["price"] == pytest.approx(close * math.exp(rel), rel=1e-12)
            assert low <= p["price"] <= high  # a price of this market, not a z-score
            assert p["bars"] == regression[f"pivot1_{p['kind']}_bars"]
            assert 0.5 < p["bars"] < 40  # bars until a pivot confirmed within 32 bars
            assert p["time"] == record.timestamp + round(p["bars"] * M1.ms)


def test_replay_gives_the_same_real_units(recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records, _, expert = recorded
    record = records[-1]
    replayed = expert.replay(SYMBOL, record.timestamp, record.tensors["pivot_cnn"])
    stored = record.outputs["pivot_cnn"]["predictions"]
    assert replayed.predictions["regression"] == pytest.approx(stored["regression"], rel=1e-6)
    assert replayed.predictions["pivot_points"][0]["price"] == pytest.approx(
        stored["pivot_points"][0]["price"], rel=1e-6
    )
