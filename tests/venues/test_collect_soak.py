"""Soak (slow): the collector records 2 symbols × (depth@100ms + trades) for 10 wall minutes
from the local exchange replaying at 10x (its own pacing, in a background thread), over real
ccxt.pro clients on 127.0.0.1. Memory stays flat and the collector does not fall behind.

- Memory: the process's resident set (``/proc/self/statm``: server, clients, collector and
  DuckDB together) sampled every ``SAMPLE_S`` wall seconds; after the first ``WARMUP_S`` (caches
  filled, the store's first blocks allocated) it may grow by at most ``RSS_GROWTH_MB``.
- Lag: for every book and trade item the collector handles, how far it is behind the
  replay, ``(market now - item's exchange time) / speed`` in wall ms (the market clock is
  the server's cursor, read when the item is handled); its median over the last sample
  period must not exceed ``max(LAG_FACTOR × the first period's, LAG_FLOOR_MS)``. A
  collector that cannot keep up builds a backlog whose lag grows without bound.

The measured figures go to the test's output (``-s``) and to the Stage 9 notes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.collect_kit import candle_flow
from pivotal.config.models import ExchangeConfig, StreamsConfig
from pivotal.core.clock import WallClock
from pivotal.data.duckdb_store import open_store
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.venues.clients import create_stream_client
from pivotal.venues.collector import CollectConfig, Collector
from pivotal.venues.stream_events import BookItem, TradesItem

pytestmark = [pytest.mark.network, pytest.mark.slow]

START = 1_751_328_000_000  # 2025-07-01 00:00 UTC
SPEED = 10.0
WALL_S = 600.0
SAMPLE_S = 10.0
WARMUP_S = 120.0
RSS_GROWTH_MB = 60.0
LAG_FACTOR = 3.0
LAG_FLOOR_MS = 500.0
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _soak(tmp_path: Path, exchange: LocalExchangeThread) -> dict[str, Any]:
    rest = exchange.urls["binance"].rest
    clients = {
        "binance": create_stream_client(
            "binance",
            ExchangeConfig(rest_url=rest, ws_url="ws" + rest[4:], api_key="local"),
        )
    }
    lags: list[float] = []
    samples: list[dict[str, Any]] = []
    with open_store(tmp_path) as store:
        collector = Collector(
            store,
            clients,
            CollectConfig(exchanges=("binance",), symbols=SYMBOLS, timeframes=("1s",)),
            clock=WallClock(),
            streams=StreamsConfig(),
        )
        handle = collector.handle

        def spy(item: Any) -> None:
            event_ms = item.time_ms if isinstance(item, (BookItem, TradesItem)) else None
            if event_ms is not None:
                lags.append((exchange.now_ms() - event_ms) / SPEED)
            handle(item)

        collector.handle = spy  # type: ignore[method-assign]
        stop = asyncio.Event()

        async def sample() -> None:
            loop = asyncio.get_running_loop()
            t0, m0 = loop.time(), exchange.now_ms()
            while True:
                await asyncio.sleep(SAMPLE_S)
                taken = lags[:]
                lags.clear()
                health = collector.health()
                samples.append(
                    {
                        "wall_s": round(loop.time() - t0, 1),
                        "speed": round((exchange.now_ms() - m0) / 1000 / (loop.time() - t0), 2),
                        "rss_mb": round(_rss_mb(), 1),
                        "lag_p50_ms": round(float(np.median(taken)), 1) if taken else None,
                        "lag_max_ms": round(float(np.max(taken)), 1) if taken else None,
                        "items": len(taken),
                        "written": dict(health["writer"]["written"]),
                        "disconnects": health["totals"]["disconnects"],
                    }
                )
                print("soak", samples[-1], flush=True)

        sampler = asyncio.ensure_future(sample())
        report = await collector.run(stop=stop, duration_s=WALL_S)
        sampler.cancel()
    return {"report": report, "samples": samples}


@pytest.mark.timeout(int(WALL_S) + 300)
def test_ten_minutes_at_10x_memory_flat_and_no_growing_lag(tmp_path: Path) -> None:
    minutes = int(WALL_S * SPEED / 60) + 10
    # twenty trades a second per symbol: a depth diff in most 100 ms windows
    flows = [
        candle_flow(s.split("/")[0], START, minutes, seed=61 + i, trades_per_candle=1200)[0]
        for i, s in enumerate(SYMBOLS)
    ]
    config = ServeConfig(mode="paced", speed=SPEED)
    with LocalExchangeThread(flows, config) as exchange:
        out = asyncio.run(_soak(tmp_path, exchange))
        faults = exchange.fault_log.counts()
    samples = out["samples"]
    report = out["report"]
    assert faults == {}, faults
    assert report.totals["disconnects"] == report.totals["errors"] == 0
    assert report.write_failures == 0
    assert len(samples) >= WALL_S / SAMPLE_S - 2
    warm = [s for s in samples if s["wall_s"] >= WARMUP_S]
    base = warm[0]["rss_mb"]
    growth = max(s["rss_mb"] for s in warm) - base
    assert growth < RSS_GROWTH_MB, (growth, samples)
    first = next(s["lag_p50_ms"] for s in samples if s["lag_p50_ms"] is not None)
    last = samples[-1]["lag_p50_ms"]
    assert last is not None and last <= max(LAG_FACTOR * first, LAG_FLOOR_MS), samples
    for symbol in SYMBOLS:
        counts = report.pipelines[symbol]
        assert counts["trades"] > 0 and counts["cob_snapshots"] > 0
        assert counts["late_trades"] == 0
