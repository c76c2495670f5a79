"""The dashboard's main thread under 1 Hz updates of 2 symbols × 4 timeframes (~20 s).

A synthetic running node (``helpers.synthetic_view``) behind the real API server changes the
last bar of every chart each second and appends a bar to the 1 s charts, so the WebSocket
sends 8 candle updates a second besides summary, models, positions, COB... The page records
its long tasks (PerformanceObserver "longtask", > 50 ms) and counts its Plotly calls.

Asserted (no wall-clock bound): every chart got live updates, none was rebuilt after the
load (updates are one Plotly.update/extendTraces each), the 1 s charts drew new bars. Printed and
written to test-artifacts/dashboard/perf.json: long tasks after load (count, total, max,
total blocking time = Σ(duration − 50 ms)) and this process's CPU while serving (the API
server runs in a thread of the test process).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.dashboard_kit import (
    LONGTASK_OBSERVER,
    SYMBOLS,
    TIMEFRAMES,
    login,
    long_tasks,
    shot,
    stats,
)
from helpers.synthetic_view import SyntheticView
from pivotal.apps.api import ApiServer

pytestmark = pytest.mark.network

WATCH_S = 20


def test_live_updates_keep_the_main_thread_free(
    page, serve: Callable[..., ApiServer], artifacts: Path
) -> None:
    server = serve([SyntheticView("paper-1")], ws_interval_s=1.0)
    page.add_init_script(LONGTASK_OBSERVER)
    login(page, server, server.tokens.admin)
    page.locator("#section-markets").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('section-markets').scrollIntoView()")
    page.wait_for_function("window.Pivotal.stats.candleMessages > 0", timeout=30_000)

    before = stats(page)
    loaded_at = before["loadedAt"]
    updates0 = {
        (s, tf): int(page.get_attribute(f"#chart-{s}-{tf}", "data-updates") or 0)
        for s in SYMBOLS
        for tf in TIMEFRAMES
    }
    last_t0 = {s: int(page.get_attribute(f"#chart-{s}-1s", "data-last-t") or 0) for s in SYMBOLS}
    cpu0, wall0 = time.process_time(), time.monotonic()
    page.wait_for_timeout(WATCH_S * 1000)
    cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
    after = stats(page)
    tasks = [t for t in long_tasks(page) if t["start"] >= loaded_at]

    for key, n0 in updates0.items():
        n = int(page.get_attribute(f"#chart-{key[0]}-{key[1]}", "data-updates") or 0)
        assert n > n0, f"chart {key} got no live update in {WATCH_S} s"
    assert after["candleRebuildsAfterLoad"] == 0, after
    assert after["newPlot"] == before["newPlot"] == len(SYMBOLS) * len(TIMEFRAMES), after
    assert after["restyle"] + after["extend"] > before["restyle"] + before["extend"], after
    for symbol in SYMBOLS:  # the 1 s charts drew new bars, at their last draw
        last_t = int(page.get_attribute(f"#chart-{symbol}-1s", "data-last-t") or 0)
        assert last_t >= last_t0[symbol] + 5_000, f"the {symbol} 1 s chart drew no new bars"
    assert after["candleMessages"] - before["candleMessages"] >= len(updates0), after
    assert page.evaluate("window.__longTaskError || null") is None

    durations = [t["ms"] for t in tasks]
    figures = {
        "watched_s": round(wall_s, 1),
        "candle_messages": after["candleMessages"] - before["candleMessages"],
        "ws_messages": after["wsMessages"] - before["wsMessages"],
        "restyle_calls": after["restyle"] - before["restyle"],
        "extend_calls": after["extend"] - before["extend"],
        "react_calls_small_figures": after["react"] - before["react"],
        "frames": after["frames"] - before["frames"],
        "chart_draws": after["chartDraws"] - before["chartDraws"],
        "chart_draw_ms_mean": round(
            (after["chartDrawMs"] - before["chartDrawMs"])
            / max(1, after["chartDraws"] - before["chartDraws"]),
            1,
        ),
        "draws_paced": after["paced"] - before["paced"],
        "sub_pixel_updates_postponed": after["subPixel"] - before["subPixel"],
        "pace_ms_at_end": after["paceMs"],
        "small_figures_ms": round(after["smallDrawMs"] - before["smallDrawMs"], 1),
        "candle_rebuilds_after_load": after["candleRebuildsAfterLoad"],
        "long_tasks": len(durations),
        "long_task_total_ms": round(sum(durations), 1),
        "long_task_max_ms": round(max(durations, default=0.0), 1),
        "total_blocking_time_ms": round(sum(max(0.0, d - 50.0) for d in durations), 1),
        "test_process_cpu_pct_of_one_core": round(100.0 * cpu_s / wall_s, 1),
    }
    (artifacts / "perf.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    shot(page, artifacts, "live-updates")
    print("\ndashboard live-update figures:", json.dumps(figures))
