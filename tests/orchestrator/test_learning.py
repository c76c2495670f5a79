"""The learning loop on planted markets: it learns, rolls back bad candidates, notices a
regime change, keeps the best checkpoints, and is deterministic.

Thresholds come from the planted signal, not from a run: :meth:`PlantedMarket.accuracy_ceiling`
is the best accuracy any predictor reading the step's features can reach, a model that knows
nothing scores 1/2 on the BUY/SELL labels (dead band 0), and a rolling accuracy over
``WINDOW`` predictions has a binomial standard deviation of ``sqrt(p (1 - p) / WINDOW)``;
the tests allow three of them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pivotal.core.symbols import Symbol
from pivotal.core.types import ModelOutput
from pivotal.orchestrator.config import LearningConfig
from pivotal.orchestrator.contracts import Inference, TrainingExample
from pivotal.orchestrator.learning import (
    GATE,
    AccuracyTracker,
    LearningEvent,
    LearningLoop,
)
from pivotal.testing.learning import (
    FrozenExpert,
    LinearExpert,
    LinearGate,
    PlantedMarket,
    SabotagedExpert,
    feed,
)
from pivotal.testing.threads import one_torch_thread
from pivotal.training.checkpoint_manager import CheckpointManager

SYMBOL = "BTC/USDT"
WINDOW = 100
TRAINING = {"promoted", "rolled_back", "retrain_promoted", "retrain_rolled_back"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _config(**overrides: object) -> LearningConfig:
    values: dict[str, object] = {
        "horizon_bars": 1,
        "dead_band": 0.0,
        "batch_size": 32,
        "holdout": 64,
        "epochs": 2,
        "learning_rate": 0.05,
        "accuracy_window": WINDOW,
        # 0.25 is about seven binomial standard deviations of a 100-prediction window: no
        # false alarm on a stationary market, while a flipped rule drops accuracy by ~0.7
        "degradation_drop": 0.25,
        "buffer": 400,
    }
    values.update(overrides)
    return LearningConfig.model_validate(values)


def _sd(p: float) -> float:
    return math.sqrt(p * (1 - p) / WINDOW)


def _windows(loop: LearningLoop, model: str) -> pd.DataFrame:
    frame = loop.accuracy.frame()
    return frame[(frame["model"] == model) & (frame["n"] == WINDOW)]


def _trained(market: PlantedMarket, name: str = "lin", bars: int = 600) -> LinearExpert:
    expert = LinearExpert(name, 4).attach(SYMBOL, market.close_times, market.features)
    feed(LearningLoop(_config(), {name: expert}), [expert], market, SYMBOL, stop=bars)
    return expert


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_accuracy_tracker_rolls_keeps_its_best_and_resets() -> None:
    tracker = AccuracyTracker(4)
    got = [tracker.update("m", "S", t, c) for t, c in enumerate([1, 1, 0, 1, 0, 0, 0])]
    assert got == pytest.approx([1, 1, 2 / 3, 3 / 4, 2 / 4, 1 / 4, 1 / 4])
    assert tracker.best("m", "S") == 1.0  # two samples = half a window already count
    assert tracker.current("m", "S") == 0.25 and tracker.samples("m", "S") == 4
    assert tracker.degraded("m", "S", 0.5) and not tracker.degraded("m", "S", 0.75)
    tracker.reset_best("m")
    assert tracker.best("m", "S") is None and not tracker.degraded("m", "S", 0.1)
    assert tracker.update("m", "S", 7, True) == 0.25
    assert tracker.best("m", "S") == 0.25
    assert tracker.current("x", "S") is None and tracker.best("x", "S") is None
    frame = tracker.frame()
    assert list(frame.columns) == ["timestamp", "model", "symbol", "accuracy", "n", "update"]
    assert frame["timestamp"].tolist() == list(range(8))
    assert frame["n"].tolist() == [1, 2, 3, 4, 4, 4, 4, 4]


def test_a_single_lucky_prediction_sets_no_best() -> None:
    tracker = AccuracyTracker(10)
    tracker.update("m", "S", 0, True)
    assert tracker.best("m", "S") is None  # 1 sample < half a window


def test_accuracy_frame_stays_bounded_on_long_runs() -> None:
    tracker = AccuracyTracker(5, max_rows=10)
    for t in range(100):
        tracker.update("a", "S", t, t % 3 == 0)
        tracker.update("b", "S", t, t % 2 == 0)
    frame = tracker.frame()
    assert len(frame) <= 10
    a = frame[frame["model"] == "a"]["update"]
    stride = int(a.diff().dropna().min())
    assert stride > 1 and (frame["update"] % stride == 0).all()
    assert a.tolist() == list(range(stride, 101, stride))
    assert set(frame["model"]) == {"a", "b"}  # thinning keeps every pair
    assert tracker.current("a", "S") == pytest.approx(2 / 5)  # the window is unaffected


@pytest.mark.parametrize("horizon", [1, 3])
def test_planted_market_ceiling_matches_its_rule(horizon: int) -> None:
    market = PlantedMarket(50_000, seed=0, horizon=horizon)
    moved = market.close[horizon:] / market.close[:-horizon] - 1
    hits = np.mean(np.sign(moved) == np.sign(market.features[:-horizon, 0]))
    ceiling = market.accuracy_ceiling()
    assert abs(hits - ceiling) < 3 * math.sqrt(ceiling * (1 - ceiling) / len(moved))


def test_online_updates_learn_the_planted_signal() -> None:
    market = PlantedMarket(1_000, seed=1)
    ceiling = market.accuracy_ceiling()  # 0.852 for noise 0.5
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(), {"lin": expert})
    events = feed(loop, [expert], market, SYMBOL)
    windows = _windows(loop, "lin")
    first, last = windows["accuracy"].iloc[0], windows["accuracy"].iloc[-1]
    assert first < 0.5 + 3 * _sd(0.5)  # it knew nothing
    assert last > ceiling - 3 * _sd(ceiling)  # it learned the rule
    assert last < ceiling + 3 * _sd(ceiling)  # and nothing it could not know
    assert any(e.kind == "promoted" for e in events)
    assert not any(e.kind == "degradation" for e in events)
    assert len(loop.examples("lin")) == 400  # the buffer is bounded


class _Recorder(LinearExpert):
    """Records what the loop trains on and judges with (its training copy, which the
    learning worker trains, records into the same list)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[str, list[TrainingExample]]] = []

    def training_copy(self) -> _Recorder:
        return copy.deepcopy(self, memo={id(self.calls): self.calls})

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        self.calls.append(("fit", list(examples)))
        return super().fit(examples, epochs=epochs)

    def score(self, examples: Sequence[TrainingExample]) -> float:
        self.calls.append(("score", list(examples)))
        return super().score(examples)


def test_train_batches_are_purged_before_the_holdout() -> None:
    horizon, holdout, batch = 3, 16, 8
    market = PlantedMarket(300, seed=3, horizon=horizon)
    expert = _Recorder("rec", 4).attach(SYMBOL, market.close_times, market.features)
    config = _config(horizon_bars=horizon, holdout=holdout, batch_size=batch, buffer=64)
    loop = LearningLoop(config, {"rec": expert})
    events = feed(loop, [expert], market, SYMBOL)
    updates = [e for e in events if e.kind in TRAINING]
    assert len(updates) > 5
    bar_ms = int(market.close_times[1] - market.close_times[0])
    used: set[int] = set()
    calls = expert.calls
    fits = [i for i, (kind, _) in enumerate(calls) if kind == "fit"]
    assert len(fits) == len(updates)
    for n, i in enumerate(fits):
        held, batch_examples = calls[i - 1][1], calls[i][1]
        assert calls[i - 1][0] == "score" and calls[i + 1] == ("score", held)
        assert len(held) == holdout
        start = min(e.timestamp for e in held)
        times = [e.timestamp for e in batch_examples]
        # no training outcome overlaps the holdout, and only the overlapping ones are purged
        assert max(e.outcome.matured_at for e in batch_examples) <= start
        assert max(times) == start - horizon * bar_ms
        assert batch <= len(batch_examples) <= max(batch, holdout)
        assert times == sorted(times) and len(set(times)) == len(times)
        if updates[n].kind == "promoted":  # promoted batches never repeat an example
            assert not used & set(times)
            used |= set(times)


def test_a_sabotaged_candidate_is_rolled_back_bit_for_bit() -> None:
    good = _trained(PlantedMarket(1_000, seed=1))
    market = PlantedMarket(700, seed=2)
    sabotaged = SabotagedExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    sabotaged.restore(good.snapshot())
    start = sabotaged.state_dict()
    loop = LearningLoop(_config(), {"lin": sabotaged})
    events = feed(loop, [sabotaged], market, SYMBOL)
    updates = [e for e in events if e.kind in TRAINING]
    assert updates and {e.kind for e in updates} == {"rolled_back"}
    assert all(e.after is not None and e.before is not None for e in updates)
    # judged on holdout log-loss (lower is better): the sabotaged candidate is worse
    assert all(e.metric == "holdout_log_loss" for e in updates)
    assert all(e.after > e.before for e in updates)  # type: ignore[operator]
    assert all(e.difference == e.after - e.before for e in updates)  # type: ignore[operator]
    assert _same_weights(sabotaged.state_dict(), start)
    # accuracy not harmed: the same as the same weights that never train
    reference = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    reference.restore(good.snapshot())
    frozen = FrozenExpert(reference)
    ref_loop = LearningLoop(_config(), {"lin": frozen})
    feed(ref_loop, [frozen], market, SYMBOL)
    pd.testing.assert_frame_equal(loop.accuracy.frame(), ref_loop.accuracy.frame())


def test_a_regime_change_is_noticed_and_retrained() -> None:
    flip = 600
    market = PlantedMarket(1_300, seed=4, flip_at=flip)
    ceiling = market.accuracy_ceiling()
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(), {"lin": expert})
    events = feed(loop, [expert], market, SYMBOL)
    degradations = [e for e in events if e.kind == "degradation"]
    assert degradations
    assert all(e.timestamp > market.close_times[flip] for e in degradations)
    first = degradations[0]
    assert first.before is not None and first.after is not None
    assert first.after < first.before - loop.config.degradation_drop
    same_step = [e for e in events if e.timestamp == first.timestamp]
    assert same_step.index(first) < len(same_step) - 1
    assert {e.kind for e in same_step} & {"retrain_promoted", "retrain_rolled_back"}
    # the online updates then learn the new rule
    windows = _windows(loop, "lin")
    assert windows["accuracy"].iloc[-1] > ceiling - 3 * _sd(ceiling)


def test_checkpoints_keep_the_best_and_load_at_start(tmp_path: Path) -> None:
    market = PlantedMarket(900, seed=5)
    config = _config(checkpoint_dir=tmp_path, keep_checkpoints=2)
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(config, {"lin": expert}, checkpoint_tag="_BTC")
    assert loop.load_best() == []  # nothing stored yet
    weights: dict[str, dict[str, torch.Tensor]] = {}
    promoted: list[float] = []
    for i in range(len(market)):
        ts = int(market.close_times[i])
        step = loop.on_step(
            SYMBOL, ts, i, float(market.close[i]), {"lin": expert.predict(SYMBOL, ts)}
        )
        promoted += [e.details["accuracy_candidate"] for e in step if e.kind == "promoted"]
        for event in step:
            if event.kind == "checkpoint_saved":
                weights[Path(event.message).name] = expert.state_dict()
    assert len(promoted) > 2  # more promotions than kept checkpoints
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert len(files) == 2 and all(f.startswith("lin_BTC_e") for f in files)
    manager = CheckpointManager(tmp_path, "lin_BTC", keep=2, metric="holdout_accuracy", mode="max")
    kept = manager.list()
    assert [e.value for e in kept] == sorted(promoted, reverse=True)[:2]
    # a fresh expert and loop start from the best
    fresh = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loaded = LearningLoop(config, {"lin": fresh}, checkpoint_tag="_BTC").load_best()
    assert [(e.kind, e.model, e.after) for e in loaded] == [
        ("checkpoint_loaded", "lin", kept[0].value)
    ]
    assert _same_weights(fresh.state_dict(), weights[kept[0].path.name])
    reference = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    reference.net.load_state_dict(weights[kept[0].path.name])
    for ts in market.close_times[::97]:
        assert fresh.predict(SYMBOL, int(ts)).output == reference.predict(SYMBOL, int(ts)).output
    # a corrupt best file falls back to the next best
    kept[0].path.write_bytes(b"not a checkpoint")
    other = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    events = LearningLoop(config, {"lin": other}, checkpoint_tag="_BTC").load_best()
    assert [(e.kind, e.after) for e in events] == [
        ("checkpoint_skipped", None),  # the corrupt one, with the reason
        ("checkpoint_loaded", kept[1].value),
    ]
    assert "cannot be loaded" in events[0].message
    assert _same_weights(other.state_dict(), weights[kept[1].path.name])


def test_a_non_trainable_expert_is_only_evaluated() -> None:
    trained = _trained(PlantedMarket(1_000, seed=1))
    market = PlantedMarket(900, seed=6, flip_at=450)
    trained.attach(SYMBOL, market.close_times, market.features)
    start = trained.state_dict()
    frozen = FrozenExpert(trained)
    loop = LearningLoop(_config(), {frozen.name: frozen})
    assert loop.trainable == ()
    events = feed(loop, [frozen], market, SYMBOL)
    assert not [e for e in events if e.kind in TRAINING or e.kind == "checkpoint_saved"]
    assert loop.examples("lin") == ()
    assert _same_weights(trained.state_dict(), start)
    assert len(_windows(loop, "lin")) > 0
    kinds = [(e.kind, e.timestamp) for e in events]
    degraded = [t for k, t in kinds if k == "degradation"]
    assert degraded and all(t > market.close_times[450] for t in degraded)
    assert [t for k, t in kinds if k == "retrain_requested"] == degraded


def test_a_tracked_decision_is_evaluated_too() -> None:
    market = PlantedMarket(300, seed=7)
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(), {"lin": expert})
    for i in range(len(market)):
        ts = int(market.close_times[i])
        inference = expert.predict(SYMBOL, ts)
        decision = ModelOutput(
            "orchestrator", "orchestrator", Symbol.parse(SYMBOL), ts, 0.6, {"action": "CLOSE"}
        )
        inferences = {"lin": inference, "orchestrator": Inference(decision)}
        loop.on_step(SYMBOL, ts, i, float(market.close[i]), inferences)
    keys = loop.accuracy.keys()
    assert ("orchestrator", SYMBOL) in keys and ("lin", SYMBOL) in keys
    assert loop.accuracy.current("orchestrator", SYMBOL) == 0.0  # CLOSE counts as HOLD
    with pytest.raises(ValueError, match="unknown model"):
        loop.examples("orchestrator")


def test_the_gate_learns_from_the_experts_votes() -> None:
    good = _trained(PlantedMarket(1_000, seed=1), name="good")
    market = PlantedMarket(800, seed=8)
    ceiling = market.accuracy_ceiling()
    good.attach(SYMBOL, market.close_times, market.features)
    anti = LinearExpert("anti", 4).attach(SYMBOL, market.close_times, market.features)
    with torch.no_grad():  # the good expert's weights with BUY and SELL swapped
        anti.net.linear.weight.copy_(good.net.linear.weight[[1, 0, 2]])
        anti.net.linear.bias.copy_(good.net.linear.bias[[1, 0, 2]])
    experts = [FrozenExpert(good), FrozenExpert(anti)]
    gate = LinearGate(["good", "anti"])
    loop = LearningLoop(_config(), {e.name: e for e in experts}, gate=gate)
    events = feed(loop, experts, market, SYMBOL)
    assert any(e.kind == "promoted" and e.model == GATE for e in events)
    assert gate.ready
    recent = list(loop.examples(GATE))[-WINDOW:]
    assert gate.score(recent) > ceiling - 3 * _sd(ceiling)


def test_two_identical_runs_give_identical_results() -> None:
    def run() -> tuple[list[LearningEvent], pd.DataFrame, dict[str, torch.Tensor]]:
        market = PlantedMarket(800, seed=9, flip_at=450)
        expert = LinearExpert("lin", 4, seed=3).attach(SYMBOL, market.close_times, market.features)
        loop = LearningLoop(_config(), {"lin": expert})
        return feed(loop, [expert], market, SYMBOL), loop.accuracy.frame(), expert.state_dict()

    events_a, frame_a, weights_a = run()
    events_b, frame_b, weights_b = run()
    assert events_a == events_b and len(events_a) > 5
    pd.testing.assert_frame_equal(frame_a, frame_b)
    assert _same_weights(weights_a, weights_b)


def test_config_learning_rate_and_disabled_learning() -> None:
    market = PlantedMarket(300, seed=10)
    expert = LinearExpert("lin", 4, learning_rate=0.5).attach(
        SYMBOL, market.close_times, market.features
    )
    LearningLoop(_config(learning_rate=0.01), {"lin": expert})
    assert expert.learning_rate == pytest.approx(0.01)
    start = expert.state_dict()
    loop = LearningLoop(_config(enabled=False), {"lin": expert})
    events = feed(loop, [expert], market, SYMBOL)
    assert loop.trainable == () and loop.examples("lin") == ()
    assert not [e for e in events if e.kind in TRAINING]
    assert _same_weights(expert.state_dict(), start)
    assert loop.accuracy.current("lin", SYMBOL) is not None


def test_bad_arguments_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    market = PlantedMarket(10, seed=0)
    expert = LinearExpert("lin", 4).attach(SYMBOL, market.close_times, market.features)
    with pytest.raises(TypeError, match="LearningConfig"):
        LearningLoop({"horizon_bars": 1}, {"lin": expert})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gate"):
        LearningLoop(_config(), {GATE: expert}, gate=LinearGate([GATE]))
    with pytest.raises(ValueError, match="model_name"):
        LearningLoop(_config(checkpoint_dir=Path("x")), {"lin": expert}, checkpoint_tag="/..")
    loop = LearningLoop(_config(), {"lin": expert})
    with pytest.raises(ValueError, match="symbol"):
        loop.on_step("", 1, 0, 100.0, {})
    no_action = ModelOutput("x", "lin", Symbol.parse(SYMBOL), 1, 0.5, {"other": 1.0})
    loop.on_step(SYMBOL, 1, 0, 100.0, {"lin": Inference(no_action)})
    loop.on_step(SYMBOL, 2, 1, 101.0, {})
    assert "states no action" in caplog.text
    assert loop.accuracy.current("lin", SYMBOL) is None
