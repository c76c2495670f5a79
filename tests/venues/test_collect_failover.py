"""Failover binance → mexc (the default order) during a replay of stored real 1m candles,
over real ccxt.pro clients on 127.0.0.1 (MEXC with its protobuf streams).

The local exchange serves both venues from the same market (manual mode, paced by the test
at 20x). Binance is paused mid-replay: its sockets close and connections are refused. After
``failover_after_s`` the collector's streams move to MEXC, which back-fills the outage over
REST and then streams live; when Binance is resumed, the probe finds it and the streams go
back (failback), Binance back-filling its own trades by id. The feed's 1m series, stored
under ``binance``, must be complete and equal to the source candles, with the outage's rows
labelled by MEXC's paths (``mexc:ws``/``mexc:rest`` in ``source_ranges``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.collect_kit import MINUTE, CollectRig, candle_flow, flow_trades
from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.venues.collector import CollectConfig

pytestmark = pytest.mark.network

START = 1_751_328_000_000  # 2025-07-01 00:00 UTC
SPEED = 20.0
MINUTES = 12
SYMBOLS = ("BTC/USDT", "ETH/USDT")
STREAMS = ("trades", "book", "ohlcv:1m")


def _statuses(rig: CollectRig, kind: str) -> list[dict[str, Any]]:
    assert rig.collector is not None
    return [s for s in rig.collector.status if s["kind"] == kind]


async def _run(tmp_path: Path) -> dict[str, Any]:
    made = [
        candle_flow(s.split("/")[0], START, MINUTES, seed=21 + i) for i, s in enumerate(SYMBOLS)
    ]
    collect = CollectConfig(
        exchanges=("binance", "mexc"),
        symbols=SYMBOLS,
        timeframes=("1s", "1m"),
        close_lag_ms=None,
        batch_delay_ms=200,
    )
    marks: dict[str, int] = {}
    async with CollectRig(
        tmp_path, [f for f, _ in made], collect, venues=("binance", "mexc")
    ) as rig:
        await rig.subscribed(len(SYMBOLS) * len(STREAMS))
        await rig.play(START + 2 * MINUTE + 20_000, SPEED)
        await rig.settle()
        marks["paused"] = rig.market_ms
        await rig.ex.pause("binance")
        # MEXC takes over after failover_after_s (1 s wall, 20 s market) and serves through
        # at least two minute closes
        await rig.play(
            START + 10 * MINUTE,
            SPEED,
            stop_when=lambda: len(_statuses(rig, "failover")) == len(SYMBOLS),
        )
        marks["failed_over"] = rig.market_ms
        await rig.play(rig.market_ms - rig.market_ms % MINUTE + 2 * MINUTE + 10_000, SPEED)
        marks["resumed"] = rig.market_ms
        await rig.ex.resume("binance")
        await rig.play(
            START + 11 * MINUTE,
            SPEED,
            stop_when=lambda: len(_statuses(rig, "failback")) == len(SYMBOLS),
        )
        marks["failed_back"] = rig.market_ms
        # two more minutes on binance; the flow goes on beyond them
        end = rig.market_ms - rig.market_ms % MINUTE + 2 * MINUTE
        assert end + MINUTE <= START + MINUTES * MINUTE, f"flow too short: {marks}"
        await rig.play(end + 5_000, SPEED)
        marks["end"] = end
        report = await rig.finish()
        return {
            "report": report,
            "made": made,
            "marks": marks,
            "final_ms": rig.market_ms,
            "status": list(rig.collector.status) if rig.collector else [],
            "failovers": rig.sup.failover.failovers,
            "failbacks": rig.sup.failover.failbacks,
            "health": {
                (h.exchange, str(h.symbol), str(h.channel)): h for h in rig.sup.health.entries()
            },
            "faults": rig.ex.fault_log.counts(),
        }


def test_paused_primary_fails_over_to_mexc_and_back_without_losing_a_candle(
    tmp_path: Path,
) -> None:
    out = asyncio.run(_run(tmp_path))
    marks, health = out["marks"], out["health"]
    assert out["faults"] == {"pause": 1, "resume": 1}
    # one switch away and one back per symbol, each reported and counted
    kinds = [(s["kind"], s["symbol"], s["exchange"], s["from"]) for s in out["status"]]
    for symbol in SYMBOLS:
        assert ("failover", symbol, "mexc", "binance") in kinds
        assert ("failback", symbol, "binance", "mexc") in kinds
    assert sorted(k for k, *_ in kinds) == ["failback"] * 2 + ["failover"] * 2
    assert out["failovers"] == out["failbacks"] == len(SYMBOLS)
    for symbol in SYMBOLS:
        for channel in STREAMS:
            away, back = health[("binance", symbol, channel)], health[("mexc", symbol, channel)]
            assert (away.failovers, back.failbacks) == (1, 1), (symbol, channel)
            assert back.messages > 0 and back.errors == 0, (symbol, channel)
            assert away.state == "stopped" and back.state == "failed-over"

    with open_store(tmp_path, read_only=True) as store:
        for flow, candles in out["made"]:
            symbol = str(flow.symbol)
            key = SeriesKey("binance", symbol, "1m")
            stored = store.read_candles(key)
            n = len(stored)
            # complete up to the end mark, every row equal to the source candle
            assert n >= (marks["end"] - START) // MINUTE
            np.testing.assert_array_equal(stored.timestamp, candles.timestamp[:n])
            for name in ("open", "high", "low", "close"):
                np.testing.assert_array_equal(getattr(stored, name), getattr(candles, name)[:n])
            np.testing.assert_allclose(stored.volume, candles.volume[:n], rtol=1e-9, atol=1e-12)
            # who produced which rows: binance, then mexc through the outage, then binance
            ranges = store.source_ranges(key)
            venues = [r.source.split(":")[0] for r in ranges]
            collapsed = [v for i, v in enumerate(venues) if i == 0 or venues[i - 1] != v]
            assert collapsed == ["binance", "mexc", "binance"], ranges
            mexc = [r for r in ranges if r.source.startswith("mexc:")]
            assert {r.source for r in mexc} <= {"mexc:ws", "mexc:rest"}
            assert sum(r.rows for r in mexc) >= 2
            assert mexc[0].first > marks["paused"] - MINUTE
            assert mexc[-1].last < marks["failed_back"]

            # binance's own trades: contiguous ids, the outage back-filled after failback
            truth = flow_trades(flow, out["final_ms"])
            trades = store.read_trades("binance", Symbol.parse(symbol))
            m = len(trades)
            assert m >= int(np.searchsorted(truth.timestamp, marks["end"]))
            np.testing.assert_array_equal(trades.trade_id, truth.trade_id[:m])
            np.testing.assert_array_equal(trades.price, truth.price[:m])
            # mexc's trades (synthetic ids): every print of its span once, equal to the venue's
            away = store.read_trades("mexc", Symbol.parse(symbol))
            assert len(away) > 0 and len(set(away.trade_id.tolist())) == len(away)
            span = (truth.timestamp >= away.timestamp[0]) & (truth.timestamp <= away.timestamp[-1])
            for name in ("timestamp", "price", "quantity", "is_buyer_maker"):
                np.testing.assert_array_equal(getattr(away, name), getattr(truth, name)[span])
            assert away.timestamp[0] > marks["paused"] - 1_000
            assert away.timestamp[-1] < marks["failed_back"]

            # 1s bars from trades: no hole across both switches, each equal to the batch
            # aggregation of the venue's prints (binance was paused on a second boundary, so
            # no bar mixes the two venues' trades)
            seconds = store.read_candles(SeriesKey("binance", symbol, "1s"))
            batch = aggregate_trades(truth, "1s").candles
            k = len(seconds)
            assert k >= (marks["end"] - int(batch.timestamp[0])) // 1000
            for name in ("timestamp", "open", "high", "low", "close", "volume"):
                np.testing.assert_array_equal(getattr(seconds, name), getattr(batch, name)[:k])
            ranges = store.source_ranges(SeriesKey("binance", symbol, "1s"))
            assert [r.source for r in ranges] == ["binance:trades", "mexc:trades", "binance:trades"]
