"""Steering a running paper node (:mod:`pivotal.node.commands`): the real node builder's
session on the local exchange over 127.0.0.1, run on a thread of the test process, with a
decision source that decides through a real decision maker (``test_commands_kit``).

What counts is the journal (every command is there, its request before its result, and the
decisions carry the thresholds they were made with) and the node's published snapshot (the
account the broker reports)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.node.test_commands_kit import InProcessNode, last_seq, make_home

from pivotal.node.commands import Command, CommandOutcome, NodeCommands

pytestmark = pytest.mark.network


@pytest.fixture
def home(tmp_path: Path) -> Iterator[object]:
    home = make_home(tmp_path)
    yield home
    home.close()


def _commands(node: InProcessNode, since: int = 0) -> list[dict]:
    return [dict(e.data) for e in node.entries(["command"], since)]


def _journaled(node: InProcessNode, outcome: CommandOutcome, name: str, since: int) -> None:
    """The command's request and result entries, in that order, after ``since``."""
    phases = [(c["phase"], c["command"]) for c in _commands(node, since) if c["command"] == name]
    assert ("request", name) in phases and ("result", name) in phases, phases
    assert phases.index(("request", name)) < phases.index(("result", name))
    result = [c for c in _commands(node, since) if c["phase"] == "result"][-1]
    assert result["accepted"] is outcome.accepted and result["detail"] == outcome.detail


def test_thresholds_reach_the_next_decisions_and_survive_a_restart(home) -> None:
    node = InProcessNode(home)
    try:
        node.wait(lambda: node.running(2), label="two steps")
        first = node.decisions()
        assert first[-1].data["thresholds"]["buy"] == 0.5
        assert first[-1].data["model_decision"]["reason"].endswith("threshold 0.50")
        since = last_seq(node)
        outcome = node.send("thresholds", buy_threshold=0.7, min_confidence=0.1)
        assert outcome.accepted, outcome
        assert outcome.controls is not None and outcome.controls.buy_threshold == 0.7
        assert node.node.snapshot.controls.buy_threshold == 0.7
        _journaled(node, outcome, "thresholds", since)
        after = node.wait(lambda: node.decisions(since)[2:], label="decisions after the command")
        for entry in after:  # each decision made after it carries it, and no BUY
            assert entry.data["thresholds"] == {"buy": 0.7, "sell": 0.5, "min_confidence": 0.1}
            assert entry.data["model_decision"]["action"] != "BUY", entry.data
        assert any("p_buy=0.60 < buy threshold 0.70" in e.data["model_decision"]["reason"]
                   for e in after)  # fmt: skip
    finally:
        node.stop()
    again = InProcessNode(home)
    try:
        again.wait(lambda: again.running(1), label="the restarted node's first step")
        assert again.node.snapshot.controls.buy_threshold == 0.7
        session = [e for e in again.entries(["session"]) if e.data.get("event") == "restart"]
        assert session, "the second start is a restart"
        new = again.decisions(session[-1].seq)
        assert new and all(e.data["thresholds"]["buy"] == 0.7 for e in new)
        restored = [c for c in _commands(again, session[-1].seq) if c["phase"] == "restore"]
        assert restored and "restored thresholds" in restored[0]["lines"][0]
    finally:
        again.stop()


def test_bad_commands_are_refused_clearly_and_the_node_goes_on(home) -> None:
    node = InProcessNode(home)
    try:
        node.wait(lambda: node.running(1), label="a step")
        since = last_seq(node)
        cases = [
            (("thresholds",), {"buy_threshold": 1.5}, "must lie in [0, 1]"),
            (("thresholds",), {}, "no threshold given"),
            (("force_exit",), {"symbol": "ETH/USDT"}, "does not trade"),
            (("process",), {"process": "dreams", "enabled": False}, "unknown process"),
            (("entries",), {"stopped": "yes"}, "must be true or false"),
            (("reboot",), {}, "unknown command"),
        ]
        for (name,), args, words in cases:
            outcome = node.send(name, **args)
            assert not outcome.accepted and words in outcome.detail, (name, outcome)
        assert node.node.snapshot.controls.buy_threshold == 0.5  # nothing changed
        results = [c for c in _commands(node, since) if c["phase"] == "result"]
        assert [r["command"] for r in results] == [c[0][0] for c in cases]
        assert not any(r["accepted"] for r in results)
        steps = node.node.snapshot.steps
        node.wait(lambda: node.node.snapshot.steps > steps, label="a step after the refusals")
        # stop entries, wait until flat: nothing held and nothing open is refused
        assert node.send("entries", stopped=True).accepted
        node.wait(lambda: node.position() == 0 and not node.node.snapshot.open_orders, label="flat")
        outcome = node.send("force_exit", symbol="BTC-USDT")
        assert not outcome.accepted and "nothing to exit" in outcome.detail, outcome
    finally:
        node.stop()


def test_entries_force_exit_trading_switch_and_kill(home) -> None:
    node = InProcessNode(home)
    try:
        node.wait(lambda: node.running(1), label="a step")
        # force exit: wait until a position is held, exit it, it is flat
        node.wait(lambda: node.position() > 0, label="a position")
        since = last_seq(node)
        outcome = node.send("force_exit", symbol="BTCUSDT")
        assert outcome.accepted and "sell order for" in outcome.detail, outcome
        _journaled(node, outcome, "force_exit", since)
        # stop entries: the BUYs that follow are refused by the risk manager
        stop = node.send("entries", stopped=True)
        assert stop.accepted and stop.controls is not None and stop.controls.entries_stopped
        since = last_seq(node)
        node.wait(lambda: node.position() == 0, label="flat after the force exit")
        refused = node.wait(
            lambda: [e for e in node.entries(["alert"], since)
                     if "new entries stopped by a person" in e.data["message"]],
            label="a refused entry",
        )  # fmt: skip
        assert refused
        assert not node.entries(["intent"], since), "no order after entries were stopped"
        # trading off: decisions are journaled, no order is sent
        assert node.send("entries", stopped=False).accepted
        off = node.send("process", process="trading", enabled=False)
        assert off.accepted and off.controls is not None and not off.controls.processes["trading"]
        since = last_seq(node)
        paused = node.wait(
            lambda: [e for e in node.entries(["alert"], since)
                     if e.data["record"]["kind"] == "trading_paused"],
            label="a decision not sent",
        )  # fmt: skip
        assert paused and not node.entries(["intent"], since)
        assert all(e.data["trading"] is False for e in node.decisions(since))
        # trading on again: a position is bought, then the kill switch flattens everything
        assert node.send("process", process="trading", enabled=True).accepted
        node.wait(lambda: node.position() > 0, label="a position after trading is on")
        since = last_seq(node)
        kill = node.send("kill", reason="test kill")
        assert kill.accepted and kill.controls is not None and kill.controls.killed, kill
        assert kill.controls.entries_stopped
        assert [e.data["reason"] for e in node.entries(["kill"], since)] == ["test kill"]
        node.wait(lambda: node.position() == 0, label="flat after the kill")
        _journaled(node, kill, "kill", since)
    finally:
        node.stop()


def test_streams_pause_and_resume_while_the_node_takes_commands(home) -> None:
    node = InProcessNode(home)
    try:
        node.wait(lambda: node.running(1), label="a step")
        paused = node.send("process", process="streams", enabled=False)
        assert paused.accepted and paused.controls is not None
        assert not paused.controls.processes["streams"]
        assert node.node.snapshot.processes["streams"].state == "paused"
        steps = node.node.snapshot.steps
        # the loop still ticks on the feed's heartbeats: commands are applied meanwhile
        assert node.send("thresholds", sell_threshold=0.4).accepted
        assert node.send("process", process="streams", enabled=False).detail == (
            "streams already paused"
        )
        assert node.node.snapshot.steps <= steps + 1  # at most the step already queued
        resumed = node.send("process", process="streams", enabled=True)
        assert resumed.accepted and resumed.controls.processes["streams"]
        node.wait(lambda: node.node.snapshot.steps > steps + 1, label="steps after resuming")
        assert node.node.snapshot.processes["streams"].state == "running"
        # the inference switch of an orchestrator-like source: HOLD without asking the models
        assert node.send("process", process="inference", enabled=False).accepted
        since = last_seq(node)
        held = node.wait(lambda: node.decisions(since)[1:], label="decisions without inference")
        assert all(e.data["model_decision"]["action"] == "HOLD" for e in held)
        assert all("inference paused" in e.data["model_decision"]["reason"] for e in held)
        learning = node.send("process", process="learning", enabled=False)
        assert not learning.accepted and "no learning loop" in learning.detail
    finally:
        node.stop()


# -- the queue on its own ------------------------------------------------------------------------
def test_a_command_nobody_applies_times_out_and_is_withdrawn() -> None:
    queue = NodeCommands()
    outcome = queue.submit(Command("kill", {"reason": "x"}), timeout_s=0.05)
    assert not outcome.accepted and "not applied within 0.05 s" in outcome.detail
    assert queue.pending() == 0  # withdrawn: a later drain does not fire it
    assert queue.drain(lambda c: CommandOutcome(c.name, True, "applied")) == 0


def test_commands_from_many_threads_are_applied_once_each_in_the_loop() -> None:
    queue = NodeCommands()
    applied: list[str] = []
    results: dict[int, CommandOutcome] = {}

    def send(i: int) -> None:
        results[i] = queue.submit(Command("entries", {"i": i}), timeout_s=5)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while len(applied) < 8:
        queue.drain(lambda c: (applied.append(c.args["i"]), CommandOutcome(c.name, True, "ok"))[1])
    for t in threads:
        t.join(5)
    assert sorted(applied) == list(range(8)) and all(r.accepted for r in results.values())


def test_an_applier_that_raises_gives_a_refusal_and_a_closed_queue_refuses() -> None:
    queue = NodeCommands()
    box: list[CommandOutcome] = []
    t = threading.Thread(target=lambda: box.append(queue.submit(Command("kill"), timeout_s=5)))
    t.start()
    while not queue.pending():
        pass

    def boom(command: Command) -> CommandOutcome:
        raise RuntimeError("broken")

    queue.drain(boom)
    t.join(5)
    assert not box[0].accepted and "RuntimeError: broken" in box[0].detail
    queue.close()
    assert "has stopped" in queue.submit(Command("kill"), timeout_s=1).detail


# -- the orchestrator's switches -----------------------------------------------------------------
def _orchestrated(inference: bool, learning: bool) -> tuple[Any, Any]:
    from pivotal.backtest.engine import BacktestEngine
    from pivotal.core.types import Action
    from pivotal.orchestrator.config import HistoryConfig, LearningConfig, OrchestratorConfig
    from pivotal.orchestrator.orchestrator import Orchestrator
    from pivotal.testing.experts import ConstantExpert
    from pivotal.testing.orchestrator import GRID_START
    from pivotal.testing.planted import planted_candles

    steady = ConstantExpert("steady", Action.BUY, 0.9)
    config = OrchestratorConfig(
        learning=LearningConfig(enabled=True), history=HistoryConfig(enabled=False)
    )
    orchestrator = Orchestrator([steady], config, base_timeframe="1m")
    orchestrator.inference_enabled = inference
    orchestrator.learning_enabled = learning
    candles = planted_candles(60, seed=3, start_time=GRID_START)
    try:
        result = BacktestEngine({"BTC/USDT": candles}, orchestrator, timeframe="1m").run()
    finally:
        orchestrator.finish()
    return orchestrator, (steady, result)


def test_inference_off_holds_every_step_without_asking_a_model() -> None:
    from pivotal.orchestrator.orchestrator import INFERENCE_OFF

    orchestrator, (steady, result) = _orchestrated(inference=False, learning=True)
    assert len(orchestrator.decisions) == 60 and steady.calls == []
    assert {d.action.value for d in orchestrator.decisions} == {"HOLD"}
    assert all(d.reason == INFERENCE_OFF for d in orchestrator.decisions)
    assert len(result.fills) == 0


def test_learning_off_stops_the_learning_loop_but_not_the_decisions() -> None:
    on, _ = _orchestrated(inference=True, learning=True)
    off, (steady, _) = _orchestrated(inference=True, learning=False)
    assert on.learning.accuracy.samples("steady", "BTC/USDT") > 0
    assert off.learning.accuracy.samples("steady", "BTC/USDT") == 0
    assert len(steady.calls) == 60 and {d.action.value for d in off.decisions} == {"BUY"}
