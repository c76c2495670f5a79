"""The dashboard in headless Chromium against the real API server: a finished run read from
disk by the real run views (login, the nodes overview, candles of 2 symbols × 4 timeframes
with pivots and markers, controls locked on a read-only node), a bad token, and a viewer
token on a running node (controls locked with the API's 403 detail), and the WebSocket's
reconnection when the server comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.dashboard_kit import (
    SYMBOLS,
    TIMEFRAMES,
    chart_bars,
    login,
    open_dashboard,
    shot,
    stats,
)
from helpers.dashboard_run import RUN_ID, write_finished_run
from helpers.synthetic_view import SyntheticView
from pivotal.apps.api import ApiServer, ApiTokens
from pivotal.services.discover import views_from_data_dir

pytestmark = pytest.mark.network

NODE = f"run-{RUN_ID}"


@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_finished_run(tmp_path_factory.mktemp("dashboard") / "data")


@pytest.fixture
def finished(finished_dir: Path, serve: Callable[..., ApiServer]) -> ApiServer:
    return serve(views_from_data_dir(finished_dir))


def test_a_bad_token_shows_the_api_401_detail(page, finished: ApiServer) -> None:
    open_dashboard(page, finished)
    page.fill("#login-token", "not-a-token")
    page.click("#login-submit")
    page.wait_for_selector("#login-error[data-status='401']", timeout=30_000)
    detail = page.inner_text("#login-error")
    assert detail and "token" in detail.lower(), detail
    assert page.is_hidden("#app")
    assert page.evaluate("sessionStorage.getItem('pivotal.token')") is None


def test_a_finished_run_fills_every_chart_and_locks_the_controls(
    page, finished: ApiServer, artifacts: Path
) -> None:
    login(page, finished, finished.tokens.admin)
    assert page.evaluate("sessionStorage.getItem('pivotal.token')") == finished.tokens.admin

    # the nodes overview: one row, closed trades and balance at a glance
    row = page.locator(f"[data-testid='node-row-{NODE}']")
    assert row.count() == 1
    text = row.inner_text()
    assert "finished" in text and "read-only" in text
    assert "\t4\t" in text or " 4 " in text or "\n4\n" in text, text  # 4 closed trades

    # candles of 2 symbols × 4 timeframes, drawn, with pivots; fills on the 1m chart
    for symbol in SYMBOLS:
        for tf in TIMEFRAMES:
            chart = page.locator(f"[data-testid='chart-{symbol}-{tf}']")
            assert chart.get_attribute("data-error") is None, chart.get_attribute("data-error")
            assert chart_bars(page, symbol, tf) > 100, (symbol, tf)
            assert int(chart.get_attribute("data-pivots") or 0) > 0, (symbol, tf)
            assert chart.locator(".main-svg").count() > 0, f"chart {symbol} {tf} not drawn"
        assert int(page.get_attribute(f"#chart-{symbol}-1m", "data-markers") or 0) > 0
    assert page.get_attribute("#chart-BTCUSDT-1d", "data-bars") == "200"

    # trading, models and equity sections came from the API
    assert page.get_attribute("#trades-table", "data-count") == "4"
    page.wait_for_selector("#chart-equity[data-drawn='1']", timeout=30_000)
    assert "decisions" in page.inner_text("#section-models").lower()

    # read-only: every control disabled, with the note saying why
    note = page.inner_text("#controls-note")
    assert "read-only" in note.lower(), note
    for control in (
        "toggle-streams",
        "toggle-inference",
        "toggle-learning",
        "toggle-trading",
        "toggle-entries",
        "slider-buy",
        "slider-sell",
        "slider-min-confidence",
        "btn-kill",
    ):
        assert page.is_disabled(f"[data-testid='{control}']"), control
    shot(page, artifacts, "finished-run")


def test_a_viewer_token_gets_the_controls_locked_and_says_why(
    page, serve: Callable[..., ApiServer], artifacts: Path
) -> None:
    tokens = ApiTokens.generate()
    server = serve([SyntheticView("paper-1")], tokens=tokens)
    login(page, server, tokens.viewer)
    page.wait_for_selector("#controls-body[data-locked='true']", timeout=30_000)
    note = page.inner_text("#controls-note")
    assert note.startswith("Read-only token:") and len(note) > len("Read-only token: "), note
    assert page.is_disabled("[data-testid='slider-buy']")
    assert page.is_disabled("[data-testid='btn-kill']")
    assert page.is_disabled("[data-testid='btn-force-exit-BTCUSDT']")
    # nothing changed on the node
    assert server.services.node("paper-1").controls().buy_threshold == 0.6
    shot(page, artifacts, "viewer-token")


def test_the_websocket_shows_its_state_and_reconnects(
    page, serve: Callable[..., ApiServer], artifacts: Path
) -> None:
    tokens = ApiTokens.generate()
    view = SyntheticView("paper-1")
    first = serve([view], tokens=tokens)
    login(page, first, tokens.admin)
    page.wait_for_selector("#ws-state[data-state='open']", timeout=30_000)
    first.stop()
    page.wait_for_selector("#ws-state[data-state='retry']", timeout=30_000)
    assert "reconnecting in" in page.inner_text("#ws-state")
    shot(page, artifacts, "ws-retry")
    seen = stats(page)["candleMessages"]
    serve([view], tokens=tokens, port=first.port)
    page.wait_for_selector("#ws-state[data-state='open']", timeout=60_000)
    page.wait_for_function(f"window.Pivotal.stats.candleMessages > {seen}", timeout=30_000)
    assert stats(page)["candleRebuildsAfterLoad"] == 0
