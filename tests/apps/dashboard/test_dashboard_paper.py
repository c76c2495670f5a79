"""End to end: the dashboard steering a paper node on the local exchange over 127.0.0.1.

The node is the real node builder's paper session (``tests/node/test_commands_kit``: its
decision source votes through a real DecisionMaker, ``p_buy = 0.6`` when flat and
``p_sell = 0.6`` when holding), served by the real API server through the real
:class:`~pivotal.services.live_view.LiveNodeView` in the same process, as ``--serve`` does.
In headless Chromium the user logs in, sees the node's charts fill, and then, each change
checked through the API and the node's next decisions:

1. drags the sell-threshold slider to 0.75: the orchestrator's threshold (API /controls)
   is 0.75 and, once a position is held, the next decisions hold it instead of selling;
2. stops new entries and force-exits the position: it is flat and stays flat;
3. switches trading off and allows entries again: decisions keep saying BUY, no order is
   sent, the node stays flat;
4. switches trading on (a position is bought), then fires the kill switch (typing KILL):
   the kill switch has fired and every position is flat.

Screenshots of each step go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.dashboard_kit import chart_bars, login, shot
from pivotal.apps.api import ApiServer
from pivotal.services.live_view import LiveNodeView

pytestmark = pytest.mark.network

SYMBOL = "BTC/USDT"


def _off_the_loop(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a thread of its own: Playwright's sync API keeps an asyncio loop running
    on this thread, and the node's builder and stop call ``asyncio.run``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    worker = threading.Thread(target=run, name="dashboard-test-node")
    worker.start()
    worker.join(120)
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.fixture
def paper(tmp_path: Path, browser: Any) -> Iterator[Any]:
    from tests.node.test_commands_kit import InProcessNode, make_home

    home = make_home(tmp_path)
    node = _off_the_loop(lambda: InProcessNode(home))
    try:
        node.wait(lambda: node.running(3), 60, "3 steps of the paper node")
        yield node
    finally:
        try:
            _off_the_loop(node.stop)
        finally:
            home.close()


class Api:
    """The REST API as the test reads it (admin token)."""

    def __init__(self, server: ApiServer, node_id: str) -> None:
        self.node = f"/nodes/{node_id}"
        self.client = httpx.Client(
            base_url=f"{server.url}/api/v1",
            headers={"Authorization": f"Bearer {server.tokens.admin}"},
            timeout=20,
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(self.node + path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def held(self) -> float:
        return sum(p["quantity"] for p in self.get("/positions") if p["symbol"] == SYMBOL)

    def now(self) -> int:
        """The node's clock (market time of the local exchange): after its latest decision."""
        rows = self.get("/decisions", symbol=SYMBOL, limit=1)
        return rows[-1]["t"] + 1 if rows else 0

    def actions_since(self, t_ms: int) -> list[str]:
        rows = self.get("/decisions", symbol=SYMBOL, since_ms=t_ms, limit=500)
        return [r["action"].lower() for r in rows]

    def wait(self, what: Callable[[], Any], label: str, timeout_s: float = 60) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = what()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s} s: {label}")
            time.sleep(0.2)


def _slide(page: Any, name: str, value: float) -> None:
    """What a user's drag and release of slider ``name`` produces: input events, then change."""
    page.evaluate(
        """([id, v]) => { const el = document.getElementById(id); el.value = String(v);
        el.dispatchEvent(new Event("input", {bubbles: true}));
        el.dispatchEvent(new Event("change", {bubbles: true})); }""",
        [f"slider-{name}", value],
    )


def _applied(page: Any, command: str) -> None:
    page.wait_for_selector(
        f"#command-result[data-command='{command}'][data-accepted='true']", timeout=30_000
    )


def test_the_dashboard_steers_a_paper_node(
    page, paper: Any, serve: Callable[..., ApiServer], artifacts: Path
) -> None:
    view = LiveNodeView(paper.node)
    server = serve([view])
    api = Api(server, view.id)
    login(page, server, server.tokens.admin, node=view.id)
    info = api.get("")
    assert not info["read_only"]
    for symbol in info["symbols"]:
        for tf in info["timeframes"]:
            assert chart_bars(page, symbol.replace("/", ""), tf) > 0, (symbol, tf)
    page.wait_for_selector("#ws-state[data-state='open']", timeout=30_000)
    shot(page, artifacts, "paper-1-loaded")

    # 1. the sell threshold slider changes the orchestrator's threshold
    _slide(page, "sell", 0.75)
    _applied(page, "thresholds")
    page.wait_for_function("document.getElementById('applied-sell').textContent === '0.75'")
    assert api.get("/controls")["sell_threshold"] == pytest.approx(0.75)
    api.wait(lambda: api.held() > 0, "a position bought (p_buy 0.6 passes the buy threshold)")
    bought = api.now()
    api.wait(lambda: len(api.actions_since(bought)) >= 4, "4 decisions while holding")
    assert "sell" not in api.actions_since(bought), "p_sell 0.6 sold under a 0.75 threshold"
    assert api.held() > 0
    shot(page, artifacts, "paper-2-threshold")

    # 2. stop new entries, then force exit the position: flat, and it stays flat
    page.check("[data-testid='toggle-entries']")
    _applied(page, "entries")
    assert api.get("/controls")["entries_stopped"] is True
    button = page.locator("[data-testid='btn-force-exit-BTCUSDT']")
    button.wait_for(timeout=30_000)
    button.click()
    _applied(page, "force-exit")
    api.wait(lambda: api.held() == 0, "flat after the force exit")
    flat = api.now()
    api.wait(lambda: len(api.actions_since(flat)) >= 3, "3 decisions after the force exit")
    assert api.held() == 0
    page.wait_for_selector("#positions-table[data-count='0']", timeout=30_000)
    shot(page, artifacts, "paper-3-force-exit")

    # 3. trading off: decisions still made (BUY when flat), no order sent
    page.uncheck("[data-testid='toggle-trading']")
    _applied(page, "process")
    assert api.get("/controls")["processes"]["trading"] is False
    page.uncheck("[data-testid='toggle-entries']")
    _applied(page, "entries")
    off = api.now()
    fills_before = len(api.get("/fills", limit=5000))
    api.wait(lambda: api.actions_since(off).count("buy") >= 3, "3 BUY decisions with trading off")
    assert api.held() == 0
    assert len(api.get("/fills", limit=5000)) == fills_before, "an order was sent with trading off"
    shot(page, artifacts, "paper-4-trading-off")

    # 4. trading on buys again; the kill switch (typing KILL) flattens everything
    page.check("[data-testid='toggle-trading']")
    _applied(page, "process")
    api.wait(lambda: api.held() > 0, "a position bought with trading on")
    page.click("[data-testid='btn-kill']")
    page.wait_for_selector("#kill-dialog:not(.hidden)")
    assert page.is_disabled("[data-testid='kill-confirm']")
    page.fill("[data-testid='kill-confirm-input']", "KILL")
    page.click("[data-testid='kill-confirm']")
    _applied(page, "kill")
    controls = api.wait(lambda: (c := api.get("/controls"))["killed"] and c, "the kill switch")
    assert controls["killed"] is True
    api.wait(lambda: all(p["quantity"] == 0 for p in api.get("/positions")), "flat after kill")
    page.wait_for_selector("[data-testid='btn-kill']:disabled", timeout=30_000)
    shot(page, artifacts, "paper-5-killed")
