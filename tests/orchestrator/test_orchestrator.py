"""The orchestrator end to end: driven by the backtest engine (or :meth:`Orchestrator.learn`)
over planted candles with the tiny trained PivotCNN + DQN, fake experts or the planted-market
linear experts.

What is checked: runs are deterministic; the DQN reads the CNN's output of the same step
while ``last_predictions`` only hold earlier steps; a raising, hanging or NaN-emitting
expert is isolated without stopping the run; every stored step replays to exactly the stored
decision; a run over the first ``k`` bars decides as the first ``k`` steps of a longer run
(no look-ahead); the learning loop learns the planted rule through the orchestrator and
rolls a sabotaged candidate back; a learning span warms up the frame and the learning loop
for the backtest that follows.

Accuracy thresholds come from the planted signal (as in ``test_learning.py``):
:meth:`PlantedMarket.accuracy_ceiling` bounds any predictor reading the step's features, a
model that knows nothing scores 1/2 on the BUY/SELL labels (dead band 0), and a rolling
window of ``WINDOW`` predictions has a binomial standard deviation ``sqrt(p (1 - p) /
WINDOW)``; three of them are allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from pivotal.backtest.engine import BacktestEngine, run_backtest
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.core.types import Action
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.orchestrator.config import (
    GateConfig,
    HistoryConfig,
    InferenceConfig,
    LearningConfig,
    OrchestratorConfig,
)
from pivotal.orchestrator.contracts import Decision
from pivotal.orchestrator.experts import DQNExpert, PivotCNNExpert
from pivotal.orchestrator.learning import LearningLoop
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.orchestrator.records import decision_from_record
from pivotal.testing.experts import (
    ConstantExpert,
    HangingExpert,
    NaNExpert,
    RaisingExpert,
    RecordingExpert,
    fake_account,
)
from pivotal.testing.learning import LinearExpert, PlantedMarket, SabotagedExpert, feed
from pivotal.testing.orchestrator import GRID_START, TinyExperts, train_tiny_experts
from pivotal.testing.planted import planted_candles
from pivotal.testing.threads import one_torch_thread

SYMBOL = "BTC/USDT"
MINUTE = 60_000
FIVE_MINUTES = 5 * MINUTE
HORIZON = 5
BARS = 260
"""Bars of the tiny experts' candles a CNN run covers (the CNN needs 40 minutes of warm-up:
8 frames of 5m)."""
WINDOW = 100
TRAINING = {"promoted", "rolled_back", "retrain_promoted", "retrain_rolled_back"}
FAILURES = {"failed", "timeout", "invalid_output", "isolated"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyExperts:
    return train_tiny_experts(tmp_path_factory.mktemp("tiny"))


def _experts(tiny: TinyExperts) -> list[Any]:
    """Fresh experts from the tiny checkpoints: the CNN and the DQN reading its features."""
    return [
        PivotCNNExpert(tiny.cnn, name="pivot_cnn"),
        DQNExpert(tiny.dqn, name="dqn", cnn="pivot_cnn"),
    ]


def _config(
    *, learning: bool, checkpoint_dir: Path | None = None, history: bool = False
) -> OrchestratorConfig:
    # the tiny models' combined probabilities stay near 1/3 each: thresholds that low let
    # their votes trade now and then (the account, and so the DQN's position state, then
    # changes during the run; the tests check that it does)
    return OrchestratorConfig(
        gate=GateConfig(buy_threshold=0.22, sell_threshold=0.25),
        learning=LearningConfig(
            enabled=learning,
            horizon_bars=HORIZON,
            batch_size=32,
            holdout=32,
            accuracy_window=50,
            checkpoint_dir=checkpoint_dir,
        ),
        history=HistoryConfig(enabled=history),
    )


def _backtest(orchestrator: Orchestrator, candles: Candles) -> BacktestResult:
    return run_backtest({SYMBOL: candles}, orchestrator, timeframe="1m")


def _voters(decision: Decision) -> set[str]:
    return {c.model for c in decision.contributions}


def _events(orchestrator: Orchestrator, *, root: Path | None = None) -> list[dict[str, Any]]:
    """The orchestrator's events; ``root`` (a checkpoint directory) blanked in messages."""
    events = [dict(e) for e in orchestrator.events]
    if root is not None:
        for event in events:
            event["message"] = event["message"].replace(str(root), "<dir>")
    return events


# --- 1. determinism -------------------------------------------------------------------------


def test_two_runs_of_the_same_replay_are_identical(tiny: TinyExperts, tmp_path: Path) -> None:
    candles = tiny.candles[:BARS]

    def run(name: str) -> tuple[Orchestrator, BacktestResult, list[InferenceRecord], Path]:
        root = tmp_path / name / "online"
        store = DuckDBStore(tmp_path / name / "history.duckdb")
        orchestrator = Orchestrator(
            _experts(tiny),
            _config(learning=True, checkpoint_dir=root, history=True),
            base_timeframe="1m",
            history=InferenceHistory(store),
        )
        result = _backtest(orchestrator, candles)
        orchestrator.finish()
        records = InferenceHistory(store).query(symbol=SYMBOL)
        store.close()
        return orchestrator, result, records, root

    a, result_a, records_a, root_a = run("a")
    b, result_b, records_b, root_b = run("b")
    frame_a, frame_b = a.decisions_frame(), b.decisions_frame()
    pd.testing.assert_frame_equal(frame_a, frame_b)
    assert np.array_equal(result_a.equity, result_b.equity)
    pd.testing.assert_frame_equal(result_a.fills, result_b.fills)
    assert _events(a, root=root_a) == _events(b, root=root_b)
    accuracy_a, accuracy_b = a.accuracy_frame(), b.accuracy_frame()
    assert accuracy_a is not None and accuracy_b is not None
    pd.testing.assert_frame_equal(accuracy_a, accuracy_b)
    assert sorted(p.name for p in root_a.glob("*.pt")) == sorted(
        p.name for p in root_b.glob("*.pt")
    )
    assert [decision_from_record(r) for r in records_a] == [
        decision_from_record(r) for r in records_b
    ]
    assert [r.outputs for r in records_a] == [r.outputs for r in records_b]
    # the comparison covers trading, learning and both models
    assert len(frame_a) == BARS and set(frame_a["action"]) > {"HOLD"}
    assert len(result_a.fills) > 0 and np.ptp(result_a.equity) > 0
    kinds = {e["kind"] for e in a.events if e["model"] == "pivot_cnn"}
    assert "promoted" in kinds or "rolled_back" in kinds
    assert {"w_pivot_cnn", "w_dqn"} <= set(frame_a.columns)


# --- 2. cross-model feeding -----------------------------------------------------------------


def test_same_step_cnn_output_feeds_its_dependents_and_earlier_ones_the_input(
    tiny: TinyExperts,
) -> None:
    recorder = RecordingExpert("rec", depends_on=("pivot_cnn",))
    orchestrator = Orchestrator(
        [*_experts(tiny), recorder], _config(learning=False), base_timeframe="1m"
    )
    _backtest(orchestrator, tiny.candles[:BARS])
    orchestrator.finish()
    decisions = orchestrator.decisions
    with_cnn = [d.timestamp for d in decisions if "pivot_cnn" in _voters(d)]
    assert len(with_cnn) > BARS // 2
    # the recorder ran exactly at the steps where the CNN answered, with that step's output
    assert recorder.calls == with_cnn
    stored = {o.timestamp: o for o in orchestrator.outputs.query(model="pivot_cnn")}
    for t, upstream in zip(recorder.calls, recorder.upstream, strict=True):
        assert set(upstream) == {"pivot_cnn"}
        assert upstream["pivot_cnn"].timestamp == t
        assert upstream["pivot_cnn"] is stored[t]
    # last_predictions: only outputs of earlier steps, the newest of them
    for i, (t, earlier) in enumerate(zip(recorder.calls, recorder.last_predictions, strict=True)):
        assert all(output.timestamp < t for output in earlier.values())
        if i > 0 and recorder.calls[i - 1] == t - MINUTE:
            assert set(earlier) == {"pivot_cnn", "dqn", "rec"}
            assert all(output.timestamp == t - MINUTE for output in earlier.values())
    # the DQN accepted the CNN's same-step output at every step the CNN answered
    assert all("dqn" in _voters(d) for d in decisions if "pivot_cnn" in _voters(d))
    assert not [e for e in orchestrator.events if e["model"] == "dqn" and e["kind"] in FAILURES]
    dqn_skips = [e for e in orchestrator.events if e["model"] == "dqn"]
    assert all(e["message"].startswith("upstream pivot_cnn") for e in dqn_skips)


# --- 3. fault isolation ---------------------------------------------------------------------


def test_failing_experts_are_isolated_and_the_backtest_goes_on() -> None:
    n = 120
    candles = planted_candles(n, seed=3, start_time=GRID_START)
    steady = ConstantExpert("steady", Action.BUY, 0.9)
    backup = ConstantExpert("raiser", Action.BUY, 0.6)
    raiser = RaisingExpert("raiser", fallback=backup)
    hanger = HangingExpert("hanger")
    nan = NaNExpert("nan")
    config = OrchestratorConfig(
        inference=InferenceConfig(timeout_ms=50.0),
        learning=LearningConfig(enabled=False),
        history=HistoryConfig(enabled=False),
    )
    orchestrator = Orchestrator([steady, raiser, hanger, nan], config, base_timeframe="1m")
    try:
        engine = BacktestEngine({SYMBOL: candles}, orchestrator, timeframe="1m")
        result = engine.run()
    finally:
        hanger.release.set()
        orchestrator.finish()
    # the run completed, deciding at every bar
    assert len(result.equity) == n and result.settings["decisions"] == n
    decisions = orchestrator.decisions
    assert len(decisions) == n
    first, rest = decisions[0], decisions[1:]
    assert _voters(first) == {"steady"}
    assert set(first.skipped) == {"raiser", "hanger", "nan"}
    # after the failures: steady votes every step, the fallback took the raiser's place
    assert all(_voters(d) == {"steady", "raiser"} for d in rest)
    assert all(d.action is Action.BUY for d in decisions)
    assert len(result.fills) > 0
    assert steady.calls == [d.timestamp for d in decisions]
    assert backup.calls == [d.timestamp for d in rest]
    assert len(raiser.calls) == len(hanger.calls) == len(nan.calls) == 1
    seen = {(e["kind"], e["model"]) for e in orchestrator.events}
    assert {
        ("failed", "raiser"),
        ("timeout", "hanger"),
        ("invalid_output", "nan"),
        ("isolated", "raiser"),
        ("isolated", "hanger"),
        ("isolated", "nan"),
        ("fallback", "raiser"),
    } <= seen
    assert not [e for e in orchestrator.events if e["model"] == "steady"]
    assert all(e["timestamp"] == decisions[0].timestamp for e in orchestrator.events)
    assert orchestrator.coordinator.status() == {
        "steady": "active",
        "raiser": "fallback",
        "hanger": "isolated",
        "nan": "isolated",
    }


# --- 4. inference history replay ------------------------------------------------------------


def test_every_stored_step_replays_to_the_stored_decision(
    tiny: TinyExperts, tmp_path: Path
) -> None:
    n = 200
    store = DuckDBStore(tmp_path / "history.duckdb")
    orchestrator = Orchestrator(
        _experts(tiny),
        _config(learning=False, history=True),
        base_timeframe="1m",
        history=InferenceHistory(store),
    )
    _backtest(orchestrator, tiny.candles[:n])
    assert orchestrator.flush() == n  # fewer than a batch: nothing written before
    records = InferenceHistory(store).query(symbol=SYMBOL)
    assert len(records) == n == orchestrator.stored
    full = 0
    for record, decided in zip(records, orchestrator.decisions, strict=True):
        stored = decision_from_record(record)
        assert stored == decided
        replayed = orchestrator.replay(record)
        # the replay runs one sample through the network; the accelerated run evaluated it
        # in a batch, which differs from one sample by float rounding only
        assert replayed.action is stored.action
        np.testing.assert_allclose(replayed.probabilities, stored.probabilities, rtol=1e-6)
        assert replayed.confidence == pytest.approx(stored.confidence, rel=1e-6)
        assert [c.model for c in replayed.contributions] == [c.model for c in stored.contributions]
        t = record.timestamp
        windows = record.input["windows"]
        assert record.input["timestamp"] == t
        assert "1m" in windows and set(windows) <= {"1m", "5m"}  # 5m once one has closed
        assert windows["1m"]["last_open"] == t - MINUTE  # the bar that just closed
        if "pivot_cnn" in record.tensors:
            full += 1
            assert set(record.tensors) == {"pivot_cnn", "dqn"}
            assert set(record.outputs) == {"pivot_cnn", "dqn"}
            assert set(windows) == {"1m", "5m"}
            assert record.tensors["pivot_cnn"]["x"].shape[:3] == (1, 2, 8)
            assert all(v.size for v in record.tensors["dqn"].values())
            # the newest *closed* 5m candle, never the one still open
            assert windows["5m"]["last_open"] == t - t % FIVE_MINUTES - FIVE_MINUTES
            assert windows["1m"]["rows"] == windows["5m"]["rows"] == 8
    assert full > n // 2
    orchestrator.finish()
    store.close()


# --- 5. no look-ahead -----------------------------------------------------------------------


def test_a_shorter_run_decides_as_the_start_of_a_longer_one(tiny: TinyExperts) -> None:
    k = 203  # not on the 5m grid: the short run's last 5m bucket is incomplete

    def run(bars: int) -> tuple[Orchestrator, BacktestResult]:
        orchestrator = Orchestrator(_experts(tiny), _config(learning=False), base_timeframe="1m")
        result = _backtest(orchestrator, tiny.candles[:bars])
        orchestrator.finish()
        return orchestrator, result

    short, short_result = run(k)
    full, full_result = run(BARS)
    decisions = full.decisions_frame()
    assert len(decisions) == BARS
    pd.testing.assert_frame_equal(short.decisions_frame(), decisions.iloc[:k])
    assert np.array_equal(short_result.equity, full_result.equity[:k])
    assert set(decisions["action"][:k]) > {"HOLD"}  # it traded, so the account mattered


# --- 6. learning through the orchestrator ---------------------------------------------------


def _learning_config() -> LearningConfig:
    # test_learning.py's settings: the thresholds below are justified for them
    return LearningConfig(
        horizon_bars=1,
        dead_band=0.0,
        batch_size=32,
        holdout=64,
        epochs=2,
        learning_rate=0.05,
        accuracy_window=WINDOW,
        degradation_drop=0.25,
        buffer=400,
    )


def _sd(p: float) -> float:
    return math.sqrt(p * (1 - p) / WINDOW)


def _same_weights(a: LinearExpert, b: dict[str, torch.Tensor]) -> bool:
    weights = a.state_dict()
    return weights.keys() == b.keys() and all(torch.equal(weights[k], b[k]) for k in b)


def test_the_orchestrator_learns_the_planted_rule_and_rolls_sabotage_back() -> None:
    pretrain = PlantedMarket(1_000, seed=2)
    good = LinearExpert("good", 4).attach(SYMBOL, pretrain.close_times, pretrain.features)
    feed(LearningLoop(_learning_config(), {"good": good}), [good], pretrain, SYMBOL, stop=600)

    market = PlantedMarket(1_000, seed=1)
    ceiling = market.accuracy_ceiling()
    lin = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    sab = SabotagedExpert("sab", 4).attach(SYMBOL, market.close_times, market.features)
    sab.restore(good.snapshot())
    start = sab.state_dict()
    config = OrchestratorConfig(learning=_learning_config(), history=HistoryConfig(enabled=False))
    orchestrator = Orchestrator([lin, sab], config, base_timeframe="1m")
    engine = BacktestEngine({SYMBOL: market.candles}, orchestrator, timeframe="1m")
    engine.run()
    orchestrator.finish()

    frame = orchestrator.accuracy_frame()
    assert frame is not None
    windows = frame[(frame["model"] == "lin") & (frame["n"] == WINDOW)]
    first, last = windows["accuracy"].iloc[0], windows["accuracy"].iloc[-1]
    assert first < 0.5 + 3 * _sd(0.5)  # it knew nothing
    assert last > ceiling - 3 * _sd(ceiling)  # it learned the rule
    assert last < ceiling + 3 * _sd(ceiling)  # and nothing it could not know
    events = orchestrator.events
    assert any(e["kind"] == "promoted" and e["model"] == "lin" for e in events)
    # the sabotaged expert's candidates were all rolled back, its weights untouched
    sabotage = {e["kind"] for e in events if e["model"] == "sab" and e["kind"] in TRAINING}
    assert "rolled_back" in sabotage and sabotage <= {"rolled_back", "retrain_rolled_back"}
    assert _same_weights(sab, start)
    # the orchestrator feeds the loop exactly what feeding it by hand does
    reference = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_learning_config(), {"lin": reference})
    by_hand = feed(loop, [reference], market, SYMBOL) + loop.close()  # finish() applies all
    assert [(e["timestamp"], e["kind"], e["message"]) for e in events if e["model"] == "lin"] == [
        (e.timestamp, e.kind, e.message) for e in by_hand
    ]
    ours = frame[frame["model"] == "lin"].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, loop.accuracy.frame())
    assert _same_weights(lin, reference.state_dict())


# --- 7. warm-up with learn() ----------------------------------------------------------------


@pytest.mark.parametrize("given", [False, True], ids=["candles-only", "data-up-front"])
def test_a_learning_span_warms_up_the_backtest(tiny: TinyExperts, given: bool) -> None:
    m, n = 150, 150
    candles = tiny.candles[: m + n]
    span, traded = candles[:m], candles[m:]
    data = {SYMBOL: {"1m": candles}} if given else None
    orchestrator = Orchestrator(
        _experts(tiny), _config(learning=True), base_timeframe="1m", data=data
    )
    assert orchestrator.learn(SYMBOL, span, fake_account(int(span.timestamp[0]))) == m
    assert len(orchestrator.decisions) == m
    since = orchestrator.decisions[-1].timestamp
    assert since == int(traded.timestamp[0])  # the span's last close: the backtest's first open
    _backtest(orchestrator, traded)
    orchestrator.finish()
    _assert_learning_continues(orchestrator, since)
    # the frame kept the span's history: the CNN answered from the backtest's first step on
    later = orchestrator.decisions[m:]
    assert len(later) == n and later[0].timestamp == since + MINUTE
    assert all(_voters(d) == {"pivot_cnn", "dqn"} for d in later)
    assert not [e for e in orchestrator.events if e["timestamp"] > since and e["kind"] == "skipped"]
    # decisions_frame(since=...) keeps the backtest's decisions only
    frame = orchestrator.decisions_frame(since=since)
    assert len(frame) == n and (frame["timestamp"] > since).all()
    everything = orchestrator.decisions_frame()
    pd.testing.assert_frame_equal(frame, everything.iloc[m:].reset_index(drop=True))
    assert orchestrator.decisions_frame(since=int(everything["timestamp"].iloc[-1])).empty


def _assert_learning_continues(orchestrator: Orchestrator, since: int) -> None:
    """Every matured example of the CNN matured exactly ``HORIZON`` bars after it was made
    (the step count did not restart with the backtest's bar indices), and some made in the
    learning span (at or before ``since``) matured in the backtest."""
    assert orchestrator.learning is not None
    examples = orchestrator.learning.examples("pivot_cnn")
    assert examples
    for example in examples:
        outcome = example.outcome
        assert outcome.horizon_bars == HORIZON
        assert outcome.matured_at - example.timestamp == HORIZON * MINUTE
    across = [e for e in examples if e.timestamp <= since < e.outcome.matured_at]
    assert len(across) == HORIZON
    trained_later = [
        e for e in orchestrator.events if e["timestamp"] > since and e["kind"] in TRAINING
    ]
    assert trained_later  # and it went on training in the backtest
