"""Candidates train on the learning worker's thread: results are applied at deterministic
steps in a replay (waiting only for a late worker), as soon as ready with
``apply_when_ready``, never by training the live model, and all of them at ``close``."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from pivotal.orchestrator.config import LearningConfig
from pivotal.orchestrator.contracts import TrainingExample
from pivotal.orchestrator.learning import LearningEvent, LearningLoop
from pivotal.orchestrator.learning_worker import LearningWorker
from pivotal.orchestrator.serial_worker import SerialWorker
from pivotal.testing.learning import LinearExpert, PlantedMarket, feed
from pivotal.testing.threads import one_torch_thread

SYMBOL = "BTC/USDT"
CANDIDATE = {"promoted", "rolled_back", "retrain_promoted", "retrain_rolled_back"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _config(**overrides: object) -> LearningConfig:
    values: dict[str, object] = {
        "horizon_bars": 1,
        "dead_band": 0.0,
        "batch_size": 16,
        "holdout": 32,
        "epochs": 2,
        "learning_rate": 0.05,
        "accuracy_window": 50,
        "degradation_drop": 0.3,
        "buffer": 200,
    }
    values.update(overrides)
    return LearningConfig.model_validate(values)


class _Live(LinearExpert):
    """A linear expert whose live object refuses to train: only its training copy may."""

    live = True

    def training_copy(self) -> _Live:
        clone = copy.deepcopy(self)
        clone.live = False
        return clone

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        if self.live:
            raise AssertionError("the live model was trained on the decision thread")
        return super().fit(examples, epochs=epochs)


class _Gated(_Live):
    """Its training copy's fit waits for ``gate`` (shared by the copies) to open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.fits_started = threading.Semaphore(0)

    def training_copy(self) -> _Gated:
        clone = copy.deepcopy(
            self, memo={id(self.gate): self.gate, id(self.fits_started): self.fits_started}
        )
        clone.live = False
        return clone

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        self.fits_started.release()
        if not self.gate.wait(timeout=60):
            raise RuntimeError("the test never opened the gate")
        return super().fit(examples, epochs=epochs)


def _run(
    config: LearningConfig, bars: int = 500, *, seed: int = 1
) -> tuple[LearningLoop, _Live, list[LearningEvent], PlantedMarket]:
    market = PlantedMarket(bars, seed=seed, flip_at=bars // 2)
    expert = _Live("lin", 4, seed=3).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(config, {"lin": expert})
    events = feed(loop, [expert], market, SYMBOL)
    return loop, expert, events, market


@pytest.mark.parametrize("after", [1, 5, 16])
def test_results_apply_a_fixed_number_of_steps_after_they_were_asked_for(after: int) -> None:
    loop, _, events, market = _run(_config(apply_after_steps=after))
    candidates = [e for e in events if e.kind in CANDIDATE]
    assert len(candidates) > 5
    step_of = {int(t): i for i, t in enumerate(market.close_times)}
    for event in candidates:
        assert event.applied_at is not None
        assert step_of[event.applied_at] == step_of[event.timestamp] + after - 1
    # every event returned by on_step was recorded, in the same order
    assert loop.events == events
    assert loop.stats.submitted == loop.stats.applied + loop.stats.pending


def test_two_replays_apply_the_same_results_at_the_same_steps() -> None:
    def run() -> tuple[list[LearningEvent], dict[str, torch.Tensor], Any]:
        loop, expert, events, _ = _run(_config(apply_after_steps=7), seed=4)
        return events + loop.close(), expert.state_dict(), loop.accuracy.frame()

    events_a, weights_a, frame_a = run()
    events_b, weights_b, frame_b = run()
    assert events_a == events_b
    assert {e.kind for e in events_a} & {"promoted", "retrain_promoted"}
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert frame_a.equals(frame_b)


def test_the_live_model_changes_only_when_a_promotion_is_applied() -> None:
    market = PlantedMarket(400, seed=2)
    expert = _Live("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(apply_after_steps=6), {"lin": expert})
    before = expert.state_dict()
    promotions = 0
    for i in range(len(market)):
        ts = int(market.close_times[i])
        step = loop.on_step(
            SYMBOL, ts, i, float(market.close[i]), {"lin": expert.predict(SYMBOL, ts)}
        )
        now = expert.state_dict()
        changed = any(not torch.equal(before[k], now[k]) for k in now)
        promoted = [e for e in step if e.kind in ("promoted", "retrain_promoted")]
        assert changed == bool(promoted), (i, [e.kind for e in step])
        promotions += len(promoted)
        before = now
    assert promotions > 1


def test_a_late_worker_is_waited_for_at_the_due_step_and_counted() -> None:
    market = PlantedMarket(200, seed=3)
    expert = _Gated("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(apply_after_steps=3), {"lin": expert})
    opener = threading.Timer(0.2, expert.gate.set)
    opener.start()
    try:
        events = feed(loop, [expert], market, SYMBOL)
    finally:
        opener.cancel()
        expert.gate.set()
    assert loop.stats.late >= 1 and loop.stats.waited_s > 0
    candidates = [e for e in events if e.kind in CANDIDATE]
    step_of = {int(t): i for i, t in enumerate(market.close_times)}
    assert candidates
    assert all(step_of[e.applied_at] == step_of[e.timestamp] + 2 for e in candidates)


def test_when_ready_the_step_never_waits_for_training() -> None:
    market = PlantedMarket(120, seed=5)
    expert = _Gated("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(apply_after_steps=1), {"lin": expert}, apply_when_ready=True)
    i, submitted = 0, False
    while not submitted:  # step until the first candidate is handed to the worker
        ts = int(market.close_times[i])
        loop.on_step(SYMBOL, ts, i, float(market.close[i]), {"lin": expert.predict(SYMBOL, ts)})
        submitted = loop.stats.submitted > 0
        i += 1
    assert expert.fits_started.acquire(timeout=30)  # the worker is inside fit, blocked
    ts = int(market.close_times[i])
    events = loop.on_step(
        SYMBOL, ts, i, float(market.close[i]), {"lin": expert.predict(SYMBOL, ts)}
    )
    assert not [e for e in events if e.kind in CANDIDATE]  # returned while training goes on
    assert loop.stats.pending == 1 and loop.apply_ready() == []
    expert.gate.set()
    events = loop.close()
    assert [e.kind for e in events if e.kind in CANDIDATE]
    assert loop.stats.late == 0 and loop.stats.pending == 0


def test_close_applies_what_is_pending() -> None:
    loop, expert, _, _ = _run(_config(apply_after_steps=50), bars=300)
    pending = loop.stats.pending
    assert pending >= 1
    before = expert.state_dict()
    rest = loop.close()
    assert len([e for e in rest if e.kind in CANDIDATE]) == pending
    assert loop.stats.pending == 0
    if any(e.kind == "promoted" for e in rest):
        now = expert.state_dict()
        assert any(not torch.equal(before[k], now[k]) for k in now)


def test_the_worker_refuses_bad_settings_and_runs_jobs_in_order() -> None:
    with pytest.raises(ValueError, match="apply_after_steps"):
        LearningWorker(_config(), bar_ms=None, apply_after_steps=0, when_ready=False)
    with pytest.raises(ValueError, match="apply_after_steps"):
        _config(apply_after_steps=0)
    worker = SerialWorker("order-test")
    seen: list[int] = []
    futures = [worker.submit(lambda k=k: seen.append(k) or k) for k in range(50)]
    assert [f.result(timeout=30) for f in futures] == list(range(50)) == seen
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=30)
    assert worker.submit(lambda: "still running").result(timeout=30) == "still running"
    worker.close()
    assert not worker.started
    assert worker.submit(lambda: np.int64(3)).result(timeout=30) == 3  # starts again
    worker.close()


def test_settle_waits_for_training_but_leaves_the_results_to_their_step() -> None:
    market = PlantedMarket(200, seed=5)
    expert = _Gated("lin", 4).attach(SYMBOL, market.close_times, market.features)
    loop = LearningLoop(_config(apply_after_steps=1), {"lin": expert}, apply_when_ready=True)
    i = 0
    while loop.stats.submitted == 0:
        ts = int(market.close_times[i])
        loop.on_step(SYMBOL, ts, i, float(market.close[i]), {"lin": expert.predict(SYMBOL, ts)})
        i += 1
    assert expert.fits_started.acquire(timeout=30)
    opener = threading.Timer(0.2, expert.gate.set)
    opener.start()
    try:
        loop.settle()  # returns only once the gated fit has finished
    finally:
        opener.cancel()
        expert.gate.set()
    assert expert.gate.is_set() and loop.stats.pending == 1  # trained, not applied
    assert [e.kind for e in loop.apply_ready() if e.kind in CANDIDATE]
    assert loop.stats.pending == 0
    loop.close()
