"""Helpers of the dashboard's browser tests (fixtures are in tests/apps/dashboard/conftest.py):
log in, wait for a chart, read the page's counters and long tasks, save screenshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pivotal.apps.api import ApiServer

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TIMEFRAMES = ("1s", "1m", "1h", "1d")

#: installed before any page script runs: records every long task (> 50 ms) of the main thread
LONGTASK_OBSERVER = """
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      window.__longTasks.push({start: e.startTime, ms: e.duration});
  }).observe({type: "longtask", buffered: true});
} catch (e) { window.__longTaskError = String(e); }
"""


def open_dashboard(page: Any, server: ApiServer, node: str | None = None) -> None:
    page.goto(server.url + "/dashboard/" + (f"#node={node}" if node else ""))
    page.wait_for_selector("#login-token", timeout=30_000)


def login(page: Any, server: ApiServer, token: str, node: str | None = None) -> None:
    """Open the dashboard, log in with ``token``, wait until the node's charts are drawn."""
    open_dashboard(page, server, node)
    page.fill("#login-token", token)
    page.click("#login-submit")
    page.wait_for_selector("body[data-loaded=true]", timeout=60_000)


def chart_bars(page: Any, symbol: str, timeframe: str) -> int:
    value = page.get_attribute(f"#chart-{symbol}-{timeframe}", "data-bars")
    return int(value or 0)


def stats(page: Any) -> dict[str, float]:
    return json.loads(page.evaluate("JSON.stringify(window.Pivotal.stats)"))


def long_tasks(page: Any) -> list[dict[str, float]]:
    return page.evaluate("window.__longTasks || []")


def shot(page: Any, artifacts: Path, name: str) -> Path:
    """A full-page screenshot ``artifacts/name.png``."""
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
