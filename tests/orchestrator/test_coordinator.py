"""ModelInferenceCoordinator: the dependency graph, same-step upstream, parallel levels,
validation, failures, isolation and fallbacks. No test asserts wall-clock time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, BaseDataInput, ModelOutput
from pivotal.features.inputs import InputReport, InputSpec, check_input
from pivotal.orchestrator.config import InferenceConfig
from pivotal.orchestrator.contracts import Inference, InferenceRequest, action_probabilities
from pivotal.orchestrator.coordinator import ModelInferenceCoordinator, StepResult
from pivotal.orchestrator.output_store import ModelOutputStore
from pivotal.testing.experts import (
    BarrierExpert,
    ConstantExpert,
    FakeExpert,
    FlakyExpert,
    HangingExpert,
    NaNExpert,
    RaisingExpert,
    RecordingExpert,
    SlowExpert,
    fake_account,
    fake_candles,
    fake_input,
    vote,
)

SYMBOL = "BTC/USDT"
T0 = 1_700_000_040_000  # a minute boundary
MINUTE = 60_000


@pytest.fixture
def make() -> Iterator[Callable[..., ModelInferenceCoordinator]]:
    """Builds coordinators and closes them (and releases hanging experts) afterwards."""
    built: list[ModelInferenceCoordinator] = []
    hanging: list[HangingExpert] = []

    def build(experts: list[Any], **config: Any) -> ModelInferenceCoordinator:
        hanging.extend(e for e in experts if isinstance(e, HangingExpert))
        coordinator = ModelInferenceCoordinator(experts, InferenceConfig(**config))
        built.append(coordinator)
        return coordinator

    yield build
    for expert in hanging:
        expert.release.set()
    for coordinator in built:
        coordinator.close()


def step(
    coordinator: ModelInferenceCoordinator,
    i: int = 0,
    inp: BaseDataInput | None = None,
    **kwargs: Any,
) -> StepResult:
    t = T0 + i * MINUTE
    return coordinator.run(SYMBOL, t, inp or fake_input(SYMBOL, t), fake_account(t), **kwargs)


def kinds(result: StepResult, model: str) -> list[str]:
    return [e.kind for e in result.events if e.model == model]


# -- graph -------------------------------------------------------------------------------
def test_levels_follow_dependencies_in_given_order(make) -> None:
    experts = [
        ConstantExpert("rl", depends_on=("cnn",)),
        ConstantExpert("cnn"),
        ConstantExpert("gate_input", depends_on=("rl", "lstm")),
        ConstantExpert("lstm"),
    ]
    coordinator = make(experts)
    assert coordinator.levels == (("cnn", "lstm"), ("rl",), ("gate_input",))
    assert list(coordinator.status()) == ["cnn", "lstm", "rl", "gate_input"]
    result = step(coordinator)
    assert list(result.outputs) == ["cnn", "lstm", "rl", "gate_input"]


def test_unknown_dependency_and_cycles_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'rl' depends on unknown expert\(s\) \['cnn'\]"):
        ModelInferenceCoordinator([ConstantExpert("rl", depends_on=("cnn",))])
    cycle = [
        ConstantExpert("a", depends_on=("c",)),
        ConstantExpert("b", depends_on=("a",)),
        ConstantExpert("c", depends_on=("b",)),
        ConstantExpert("free"),
    ]
    with pytest.raises(ValueError, match=r"cycle: a -> c -> b -> a"):
        ModelInferenceCoordinator(cycle)
    with pytest.raises(ValueError, match=r"cycle: self -> self"):
        ModelInferenceCoordinator([ConstantExpert("self", depends_on=("self",))])
    with pytest.raises(ValueError, match=r"unique; repeated: \['a'\]"):
        ModelInferenceCoordinator([ConstantExpert("a"), ConstantExpert("a")])
    with pytest.raises(TypeError, match="is not an Expert"):
        ModelInferenceCoordinator([object()])  # type: ignore[list-item]


# -- cross-model feeding -----------------------------------------------------------------
def test_upstream_is_this_steps_output_and_last_predictions_the_earlier_ones(make) -> None:
    cnn = ConstantExpert("cnn", Action.BUY, 0.8)
    lstm = ConstantExpert("lstm")
    rl = RecordingExpert("rl", depends_on=("cnn",))
    coordinator = make([rl, cnn, lstm])
    store = ModelOutputStore()
    for i in range(3):
        t = T0 + i * MINUTE
        inp = fake_input(SYMBOL, t, last_predictions=store.latest(SYMBOL, before=t))
        result = step(coordinator, i, inp)
        assert result.outputs["rl"].timestamp == t
        for output in result.outputs.values():
            store.record(output)
    assert [u["cnn"].timestamp for u in rl.upstream] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert all(set(u) == {"cnn"} for u in rl.upstream)
    assert rl.last_predictions[0] == {}
    seen = [{m: o.timestamp for m, o in p.items()} for p in rl.last_predictions[1:]]
    assert seen == [
        {"cnn": T0, "lstm": T0, "rl": T0},
        {"cnn": T0 + MINUTE, "lstm": T0 + MINUTE, "rl": T0 + MINUTE},
    ]


# -- parallelism -------------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [True, False])
def test_independent_experts_overlap_only_when_parallel(make, parallel: bool) -> None:
    barrier = threading.Barrier(2)
    wait_s = 5.0 if parallel else 0.2  # sequential calls can never meet: fail fast
    a = BarrierExpert("a", barrier, wait_s)
    b = BarrierExpert("b", barrier, wait_s)
    coordinator = make([a, b], parallel=parallel, timeout_ms=10_000)
    result = step(coordinator)
    assert list(result.outputs) == ["a", "b"]
    assert a.overlapped == [parallel]
    assert b.overlapped == [parallel]
    assert a.threads[0] is not b.threads[0]
    assert threading.current_thread() not in (a.threads[0], b.threads[0])


def test_outputs_follow_graph_order_not_completion_order(make) -> None:
    slow = SlowExpert("slow", 0.05)
    fast = ConstantExpert("fast")
    coordinator = make([slow, fast])
    for i in range(3):
        assert list(step(coordinator, i).outputs) == ["slow", "fast"]
    assert slow.threads[0] is slow.threads[-1]  # one dedicated worker per expert


# -- triggering --------------------------------------------------------------------------
def test_only_experts_reading_an_updated_timeframe_run_with_their_dependencies(make) -> None:
    hourly = InputSpec.candles([Timeframe.H1], frames=1, min_frames=1)
    minute = ConstantExpert("minute")
    hour = ConstantExpert("hour", spec=hourly)
    rl = ConstantExpert("rl", spec=hourly, depends_on=("minute",))
    coordinator = make([minute, hour, rl])
    inp = fake_input(SYMBOL, T0, {Timeframe.M1: 5, Timeframe.H1: 5})
    only_minute = step(coordinator, 0, inp, updated={Timeframe.M1})
    assert list(only_minute.outputs) == ["minute"]
    assert only_minute.skipped == {}
    hourly_step = step(coordinator, 0, inp, updated={Timeframe.H1})
    assert list(hourly_step.outputs) == ["minute", "hour", "rl"]
    assert list(step(coordinator, 0, inp, updated=set()).outputs) == []
    assert list(step(coordinator, 0, inp).outputs) == ["minute", "hour", "rl"]


# -- validation --------------------------------------------------------------------------
def test_incomplete_input_skips_the_expert_and_its_dependents(make, caplog) -> None:
    needs_300h = InputSpec.candles([Timeframe.H1], frames=300, min_frames=300)
    cnn = ConstantExpert("cnn", spec=needs_300h)
    rl = ConstantExpert("rl", depends_on=("cnn",))
    other = ConstantExpert("other")
    coordinator = make([cnn, rl, other])
    caplog.set_level(logging.INFO, logger="pivotal.orchestrator.coordinator")
    results = []
    for i, frames in enumerate((10, 11, 12)):
        t = T0 + i * MINUTE
        inp = fake_input(SYMBOL, t, {Timeframe.M1: 5, Timeframe.H1: frames})
        results.append(step(coordinator, i, inp))
    first = results[0]
    assert list(first.outputs) == ["other"]
    assert "1h has 10 frames (needs ≥ 300)" in first.skipped["cnn"]
    assert first.skipped["rl"].startswith("upstream cnn gave no output: BTC/USDT at ")
    assert "1h has 10 frames" in first.skipped["rl"]
    assert kinds(first, "cnn") == ["skipped"]
    assert [e.message for e in first.events if e.model == "cnn"] == [first.skipped["cnn"]]
    assert "1h has 12 frames" in results[2].skipped["cnn"]
    assert all(kinds(r, "cnn") == ["skipped"] for r in results)  # an event every step
    logged = [r for r in caplog.records if r.getMessage().startswith("cnn skipped")]
    assert len(logged) == 1  # but one log line per kind of problem
    assert coordinator.status() == {"cnn": "active", "rl": "active", "other": "active"}
    assert cnn.calls == []


def test_input_for_another_step_is_a_caller_error(make) -> None:
    coordinator = make([ConstantExpert("a")])
    with pytest.raises(ValueError, match="the step is BTC/USDT at"):
        coordinator.run(SYMBOL, T0 + MINUTE, fake_input(SYMBOL, T0), fake_account())
    with pytest.raises(ValueError, match="the input is ETH/USDT"):
        coordinator.run(SYMBOL, T0, fake_input("ETH/USDT", T0), fake_account())


# -- failures ----------------------------------------------------------------------------
def test_raising_expert_is_isolated_after_max_failures(make) -> None:
    bad = RaisingExpert("bad", "boom")
    good = ConstantExpert("good", Action.SELL, 0.6)
    coordinator = make([bad, good], max_failures=2)
    first, second, third = (step(coordinator, i) for i in range(3))
    for result in (first, second, third):
        assert list(result.outputs) == ["good"]
    assert kinds(first, "bad") == ["failed"]
    assert first.skipped["bad"] == "failed: RuntimeError: boom"
    assert kinds(second, "bad") == ["failed", "isolated"]
    assert kinds(third, "bad") == []
    assert third.skipped["bad"] == "isolated after 2 failures: RuntimeError: boom"
    assert "bad" not in third.latency_ms
    assert coordinator.status() == {"bad": "isolated", "good": "active"}
    assert list(coordinator.experts()) == ["good"]
    assert len(bad.calls) == 2


def test_consecutive_failures_only_count(make) -> None:
    flaky = FlakyExpert("flaky", {T0, T0 + 2 * MINUTE, T0 + 4 * MINUTE})
    coordinator = make([flaky], max_failures=2)
    results = [step(coordinator, i) for i in range(6)]
    assert [list(r.outputs) for r in results] == [[], ["flaky"]] * 3
    assert coordinator.status() == {"flaky": "active"}


def test_hanging_expert_times_out_and_its_fallback_takes_over(make) -> None:
    replacement = ConstantExpert("cnn", Action.BUY, 0.9)
    hung = HangingExpert("cnn", fallback=replacement)
    rl = RecordingExpert("rl", depends_on=("cnn",))
    coordinator = make([hung, rl], timeout_ms=250)
    candles = {Timeframe.M1: fake_candles(Timeframe.M1, 5, T0)}
    coordinator.prepare(SYMBOL, candles)
    first = step(coordinator, 0)
    assert kinds(first, "cnn") == ["timeout", "isolated", "fallback"]
    assert first.skipped["cnn"] == "timed out: no answer within 250 ms"
    assert first.skipped["rl"] == "upstream cnn gave no output: timed out: no answer within 250 ms"
    assert first.latency_ms["cnn"] > 0
    assert coordinator.status()["cnn"] == "fallback"
    assert coordinator.experts()["cnn"] is replacement
    assert replacement.prepared == [SYMBOL]  # prepared with the last prepare's candles
    second = step(coordinator, 1)
    assert list(second.outputs) == ["cnn", "rl"]
    assert second.outputs["cnn"].action is Action.BUY
    assert rl.upstream[-1]["cnn"] is second.outputs["cnn"]
    assert replacement.threads[0] is not hung.threads[0]  # the hung worker is abandoned
    assert hung.finished == 0  # still hanging: nothing waited for it


def test_hang_below_max_failures_gets_a_fresh_worker(make) -> None:
    hung = HangingExpert("slow", block_s=30.0)
    coordinator = make([hung], timeout_ms=250, max_failures=3)
    step(coordinator, 0)
    hung.release.set()  # the first call now returns, late: its result is dropped
    result = step(coordinator, 1)
    assert list(result.outputs) == ["slow"]
    assert result.outputs["slow"].timestamp == T0 + MINUTE
    assert hung.threads[0] is not hung.threads[1]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("predictions", "non-finite value in predictions['levels']['highs'][1][1]"),
        ("hidden_states", "non-finite value in hidden_states['features']"),
        ("probabilities", "non-finite value in predictions['action_probabilities']['BUY']"),
    ],
)
def test_nan_output_is_invalid(make, where: str, message: str) -> None:
    coordinator = make([NaNExpert("nan", where), ConstantExpert("ok")])
    result = step(coordinator)
    assert list(result.outputs) == ["ok"]
    assert kinds(result, "nan") == ["invalid_output", "isolated"]
    assert result.events[0].message == message
    assert result.skipped["nan"] == f"invalid output: {message}"


class Answering(FakeExpert):
    """Answers whatever ``make(request)`` builds."""

    def __init__(self, name: str, make: Callable[[InferenceRequest], Any]) -> None:
        super().__init__(name)
        self._make = make

    def answer(self, request: InferenceRequest) -> Any:
        return self._make(request)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda r: vote("x", r.symbol, r.timestamp, Action.BUY, 1.0), "not an Inference"),
        (
            lambda r: Inference(vote("other", r.symbol, r.timestamp, Action.BUY, 1.0)),
            "output names model 'other', expected 'x'",
        ),
        (
            lambda r: Inference(vote("x", r.symbol, r.timestamp - 1, Action.BUY, 1.0)),
            "output is stamped",
        ),
        (
            lambda r: Inference(vote("x", "ETH/USDT", r.timestamp, Action.BUY, 1.0)),
            "output is for ETH/USDT",
        ),
        (
            lambda r: Inference(
                ModelOutput("fake", "x", Symbol.parse(r.symbol), r.timestamp, 1, {})
            ),
            "no usable vote: x output at",
        ),
        (
            lambda r: Inference(
                vote("x", r.symbol, r.timestamp, Action.BUY, 1.0, hidden={"h": np.full(2, np.inf)})
            ),
            "non-finite value in hidden_states['h']",
        ),
    ],
)
def test_invalid_answers_are_failures(make, build: Callable[..., Any], message: str) -> None:
    coordinator = make([Answering("x", build)], max_failures=5)
    result = step(coordinator)
    assert result.outputs == {}
    assert kinds(result, "x") == ["invalid_output"]
    assert message in result.events[0].message


def test_votes_are_the_checked_outputs_action_probabilities(make) -> None:
    experts = [
        ConstantExpert("cnn", Action.BUY, 0.7, {Action.BUY: 0.5, Action.SELL: 0.2}),
        ConstantExpert("rl", Action.SELL, 0.6, depends_on=("cnn",)),
        NaNExpert("nan", "hidden_states"),
    ]
    result = step(make(experts))
    assert list(result.votes) == list(result.outputs) == ["cnn", "rl"]
    for name, output in result.outputs.items():
        assert result.votes[name].tobytes() == action_probabilities(output).tobytes()
        assert not result.votes[name].flags.writeable


def test_the_input_check_given_is_the_one_used(make) -> None:
    seen: list[InputSpec] = []

    def check(inp: BaseDataInput, spec: InputSpec) -> InputReport:
        seen.append(spec)
        report = check_input(inp, spec)
        return InputReport(report.symbol, report.timestamp, 0.0, ("told so",), report.frames)

    coordinator = make([ConstantExpert("a"), ConstantExpert("b")])
    result = step(coordinator, check=check)
    assert len(seen) == 1  # one check per distinct spec and step
    assert result.outputs == {} and result.skipped["a"].endswith(": told so")
    assert list(step(coordinator, 1).outputs) == ["a", "b"]  # check_input by default


def test_failing_fallback_is_isolated_for_good(make) -> None:
    second = RaisingExpert("m", "again", fallback=ConstantExpert("m"))
    first = RaisingExpert("m", "boom", fallback=second)
    coordinator = make([first])
    r0, r1, r2 = (step(coordinator, i) for i in range(3))
    assert kinds(r0, "m") == ["failed", "isolated", "fallback"]
    assert kinds(r1, "m") == ["failed", "isolated"]  # no fallback of the fallback
    assert r2.skipped["m"] == "isolated after 1 failures: RuntimeError: again"
    assert coordinator.status() == {"m": "isolated"}
    assert coordinator.experts() == {}


@pytest.mark.parametrize(
    "expert",
    [
        RaisingExpert("m", fallback_error=True),
        RaisingExpert("m", fallback=ConstantExpert("other_name")),
        RaisingExpert("m", fallback=ConstantExpert("m", depends_on=("x",))),
        RaisingExpert("m", fallback=ConstantExpert("m", fail_prepare=True)),
    ],
    ids=["fallback-raises", "wrong-name", "wrong-dependencies", "prepare-fails"],
)
def test_unusable_fallback_means_isolation(make, expert: RaisingExpert) -> None:
    coordinator = make([expert, ConstantExpert("x")])
    coordinator.prepare(SYMBOL, {Timeframe.M1: fake_candles(Timeframe.M1, 5, T0)})
    result = step(coordinator)
    assert kinds(result, "m") == ["failed", "isolated"]
    assert coordinator.status()["m"] == "isolated"
    assert list(step(coordinator, 1).outputs) == ["x"]


def test_prepare_failure_isolates_and_reports_with_the_next_step(make) -> None:
    broken = ConstantExpert("broken", fail_prepare=True, fallback=ConstantExpert("broken"))
    dead = ConstantExpert("dead", fail_prepare=True)
    fine = ConstantExpert("fine")
    coordinator = make([broken, dead, fine])
    coordinator.prepare(SYMBOL, {Timeframe.M1: fake_candles(Timeframe.M1, 5, T0)})
    assert coordinator.status() == {"broken": "fallback", "dead": "isolated", "fine": "active"}
    assert fine.prepared == [SYMBOL]
    result = step(coordinator)
    assert kinds(result, "broken") == ["isolated", "fallback"]
    assert kinds(result, "dead") == ["isolated"]
    assert {e.timestamp for e in result.events} == {T0}  # the prepared candles' close
    assert "prepare for BTC/USDT failed: RuntimeError" in result.skipped["dead"]
    assert list(result.outputs) == ["broken", "fine"]
    assert step(coordinator, 1).events == ()


def test_close_stops_workers_and_refuses_more_steps() -> None:
    expert = ConstantExpert("closing")
    with ModelInferenceCoordinator([expert]) as coordinator:
        step(coordinator)
        worker = expert.threads[0]
        assert worker.daemon
    worker.join(5)
    assert not worker.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        step(coordinator)
