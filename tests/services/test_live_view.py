"""The live view of a running paper node (:mod:`pivotal.services.live_view`): a real session
on the local exchange over 127.0.0.1 on a thread of the test process, read and steered only
through the :class:`~pivotal.services.view.NodeView` protocol."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from tests.node.test_commands_kit import InProcessNode, make_home

from pivotal.services.live_view import LiveNodeView
from pivotal.services.schemas import (
    EntriesCommand,
    ForceExitCommand,
    KillCommand,
    ProcessCommand,
    ThresholdsCommand,
)
from pivotal.services.view import NodeView, NotFound, QueryError, Services

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessNode, LiveNodeView]]:
    home = make_home(tmp_path_factory.mktemp("live"))
    node = InProcessNode(home)
    view = LiveNodeView(node.node, node_id="paper one")
    try:
        node.wait(lambda: node.running(3), label="three steps")
        node.wait(lambda: view.fills(), label="a fill")
        yield node, view
    finally:
        view.close()
        node.stop()
        home.close()


def _json(model: BaseModel | list[BaseModel]) -> None:
    """Every answer serializes as the API would send it (rows built without validation too)."""
    for m in model if isinstance(model, list) else [model]:
        type(m).model_validate_json(m.model_dump_json())


def test_the_live_view_is_a_node_view_and_describes_the_node(live) -> None:
    node, view = live
    assert isinstance(view, NodeView)
    assert view.id == "paper-one"
    Services([view]).node("paper-one")
    info = view.info()
    _json(info)
    assert info.kind == "paper" and info.status == "running" and not info.read_only
    assert info.symbols == ["BTC/USDT"] and "1m" in info.timeframes
    summary = view.summary()
    _json(summary)
    assert summary.currency == "USDT" and summary.equity is not None
    assert summary.last_ms == node.node.snapshot.t_ms


def test_candles_come_from_the_nodes_store_and_update_incrementally(live) -> None:
    node, view = live
    payload = view.candles("BTC-USDT", "1m", limit=50)
    _json(payload)
    t = payload.bars.t
    assert payload.symbol == "BTC/USDT" and 0 < len(t) <= 50 and t == sorted(t)
    assert t[-1] <= node.node.snapshot.t_ms  # nothing after the node's clock
    steps = node.node.snapshot.steps
    node.wait(lambda: node.node.snapshot.steps >= steps + 2, label="two more steps")
    newer = view.candles("BTCUSDT", "1m", since_ms=t[-1])
    assert newer.bars.t[0] == t[-1] and len(newer.bars.t) >= 2
    with pytest.raises(NotFound):
        view.candles("BTC/USDT", "1w")
    with pytest.raises(NotFound):
        view.candles("DOGE/USDT", "1m")
    with pytest.raises(QueryError):
        view.candles("BTC/USDT", "1m", limit=0)


def test_decisions_orders_fills_positions_and_models(live) -> None:
    _, view = live
    decisions = view.decisions(symbol="BTC/USDT", limit=20)
    _json(decisions)
    assert decisions and {d.action for d in decisions} <= {"buy", "sell", "hold"}
    buys = [d for d in decisions if d.action == "buy"]
    assert buys and buys[0].p_buy == pytest.approx(0.6) and buys[0].weights == {"fixed": 1.0}
    assert all(d.executed is True for d in buys)
    fills = view.fills()
    orders = view.orders()
    _json(fills), _json(orders)
    assert fills and {f.client_order_id for f in fills} <= {o.client_order_id for o in orders}
    assert view.fills(since_ms=fills[-1].t)[0].t >= fills[-1].t
    _json(view.positions()), _json(view.balances()), _json(view.trades())
    assert any(b.asset == "USDT" for b in view.balances())
    equity = view.equity()
    _json(equity)
    assert len(equity.t) == len(equity.equity) == len(equity.drawdown_pct) > 0
    models = view.models()
    _json(models)
    assert {m.name for m in models} == {"fixed", "orchestrator"}
    fixed = next(m for m in models if m.name == "fixed")
    assert fixed.state == "ready" and fixed.gate_weight == 1.0 and fixed.confidence == 0.6
    risk = view.risk()
    _json(risk)
    assert risk.metrics["equity"] is not None and "max_leverage" in risk.limits
    health = view.health()
    _json(health)
    assert set(health.processes) == {"streams", "inference", "learning", "trading"}
    assert health.streams and health.processes["streams"].state == "running"
    _json(view.alerts())
    _json(view.cob("BTC/USDT", seconds=60))


def test_commands_through_the_view_are_applied_journaled_and_pushed(live) -> None:
    node, view = live
    pushed = []
    view.listeners.append(pushed.append)
    result = view.set_thresholds(ThresholdsCommand(sell_threshold=0.45))
    _json(result)
    assert result.accepted and result.command == "thresholds"
    assert result.controls is not None and result.controls.sell_threshold == 0.45
    assert view.controls().sell_threshold == 0.45
    bad = view.force_exit(ForceExitCommand(symbol="ETH/USDT"))
    assert not bad.accepted and "does not trade" in bad.detail
    off = view.set_process(ProcessCommand(process="trading", enabled=False))
    assert off.accepted and off.controls is not None and not off.controls.processes["trading"]
    on = view.set_process(ProcessCommand(process="trading", enabled=True))
    assert on.accepted and view.controls().processes["trading"]
    stop = view.set_entries(EntriesCommand(stopped=True))
    assert stop.accepted and view.controls().entries_stopped
    assert view.set_entries(EntriesCommand(stopped=False)).accepted
    assert [r.command for r in pushed] == [
        "thresholds", "force-exit", "process", "process", "entries", "entries"
    ]  # fmt: skip
    journaled = [e.data for e in node.entries(["command"]) if e.data["phase"] == "result"]
    assert [d["source"] for d in journaled[-6:]] == ["api"] * 6
    alerts = view.alerts(limit=500)
    assert any(a.kind == "command" and "does not trade" in a.message for a in alerts)


def test_readers_on_many_threads_while_the_node_trades(live) -> None:
    _, view = live
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(15):
                view.summary(), view.decisions(limit=5), view.candles("BTC/USDT", "1m", limit=30)
                view.health(), view.models(), view.orders(open_only=True), view.controls()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


def test_the_kill_switch_through_the_view_flattens_and_says_so(live) -> None:
    node, view = live  # last in this module: the node stays killed
    node.wait(lambda: node.position() > 0, label="a position")
    result = view.kill(KillCommand(confirm=True, reason="view test"))
    assert result.accepted and result.controls is not None and result.controls.killed
    node.wait(lambda: node.position() == 0, label="flat after the kill")
    assert view.summary().killed and view.risk().breaker is not None
    # the journal is read again at most every 0.1 s: the kill's entry shows on a later read
    node.wait(
        lambda: any(a.kind == "kill" for a in view.alerts(limit=1000)), label="the kill alert"
    )


def test_a_stopped_node_refuses_commands_with_a_clear_detail(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    node = InProcessNode(home)
    view = LiveNodeView(node.node)
    try:
        node.wait(lambda: node.running(1), label="a step")
    finally:
        node.stop()
        home.close()
    result = view.set_entries(EntriesCommand(stopped=True))
    assert not result.accepted and "has stopped" in result.detail
    assert view.info().status == "stopped" and view.controls().read_only
    view.close()
