"""Stored real 1m candles replayed by the local exchange at 20x while the server drops
sockets and skips depth diffs; the collector, over real ccxt.pro clients on 127.0.0.1, still
stores every candle once with the source's values, and every fault in the server's log shows
up in the client's stream health exactly once: a dropped socket as a disconnect + reconnect
of the stream it carried, a skipped diff as a gap + resync of that symbol's book.

Determinism: the server runs in manual mode and the test paces it (20 market ms per wall ms,
in 50 ms steps). Before each fault the market stands still until nothing is in flight
(:meth:`CollectRig.settle`), the server's seeded injector picks the victim socket, and the
market then moves on at 20x while the client recovers, until the victim's stream has
recovered and ``FAULT_EVERY_MS`` of market time have passed. So every drop meets a stream
that is waiting for its next message (ccxt rejects that wait: a disconnect), and every
skipped diff meets a synced book (ccxt's next diff fails its sequence check: a gap).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from helpers.collect_kit import MINUTE, CollectRig, candle_flow, client_stream, flow_trades
from pivotal.core.symbols import Symbol
from pivotal.data.series import SeriesKey
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.venues.collector import CollectConfig

pytestmark = pytest.mark.network

START = 1_751_328_000_000  # 2025-07-01 00:00 UTC (both files hold it)
SPEED = 20.0
FAULT_EVERY_MS = 12_000  # market time between faults (0.6 s wall at 20x)
BASES = ("BTC", "ETH")
SYMBOLS = tuple(f"{b}/USDT" for b in BASES)
CHANNELS = ("trades", "book", "ohlcv:1m")


def _ccxt_state(rig: CollectRig) -> dict[str, object]:
    """The binance client's sockets: url -> (pending futures, subscriptions)."""
    client = rig.sup.clients["binance"]
    return {url: (sorted(c.futures), sorted(c.subscriptions)) for url, c in client.clients.items()}


def _plan(faults: int, seed: int) -> list[str]:
    """Half drops, half gaps, in seeded order; every tenth drop closes every socket at once
    (the clients then resubscribe all their streams together); first, one drop of the kline
    socket just before a minute closes."""
    kinds = ["drop"] * (faults - faults // 2) + ["gap"] * (faults // 2)
    random.Random(seed).shuffle(kinds)
    drops = [i for i, k in enumerate(kinds) if k == "drop"]
    for i in drops[::10]:
        kinds[i] = "drop_all"
    return ["drop_at_close", *kinds]


async def _replay(tmp_path: Path, faults: int, seed: int) -> dict[str, object]:
    # room for the faults (each takes FAULT_EVERY_MS of market time or a little more) and
    # for the minutes the market moves past the checked span
    minutes = faults * FAULT_EVERY_MS // MINUTE + 8
    made = [candle_flow(b, START, minutes, seed=seed + i) for i, b in enumerate(BASES)]
    flows = [f for f, _ in made]
    collect = CollectConfig(
        exchanges=("binance",),
        symbols=SYMBOLS,
        timeframes=("1s", "1m"),
        close_lag_ms=None,  # 1s bars close on trades only: exactly the batch aggregation
        batch_delay_ms=200,
    )
    expected_drops: dict[tuple[str, str], int] = {}
    expected_gaps: dict[str, int] = {}
    shared = drop_records = 0
    async with CollectRig(tmp_path, flows, collect, seed=seed) as rig:
        await rig.subscribed(len(SYMBOLS) * len(CHANNELS))
        await rig.play(rig.market_ms + FAULT_EVERY_MS, SPEED)
        for kind in _plan(faults, seed):
            await rig.settle()
            victims = {c.conn_id: sorted(c.streams) for c in rig.connections()}
            if kind == "gap":
                before = len(rig.ex.fault_log.records("gap"))
                assert await rig.ex.inject("gap", venue="binance") == 1
                await rig.play(
                    rig.market_ms + 60_000,
                    SPEED,
                    stop_when=lambda b=before: len(rig.ex.fault_log.records("gap")) > b,
                )
                record = rig.ex.fault_log.records("gap")[-1]
                symbol, channel = client_stream(record.stream or "")
                assert channel == "book"
                expected_gaps[symbol] = expected_gaps.get(symbol, 0) + 1
                watched = [(symbol, "book", "resyncs", expected_gaps[symbol])]
            else:
                conn_id, every = None, kind == "drop_all"
                if kind == "drop_at_close":
                    # the kline socket closes 5 s before a minute ends and the market
                    # crosses that close before the client can be back: the closed kline
                    # must come from the REST back-fill (the stream's last view of it misses
                    # the trades of those 5 s)
                    (conn_id,) = [c for c, n in victims.items() if "kline" in n[0]]
                    boundary = rig.market_ms - rig.market_ms % MINUTE + MINUTE
                    for flow in flows:
                        times = flow_trades(flow, boundary - 1).timestamp
                        assert times[-1] >= boundary - 5_000, "no trade in the last 5 s"
                    await rig.play(boundary - 5_000, SPEED)
                    await rig.settle()
                before = len(rig.ex.fault_log.records("drop"))
                hit = await rig.ex.inject("drop", venue="binance", conn_id=conn_id, every=every)
                if kind == "drop_at_close":
                    rig.market_ms = boundary + 1_000
                    await rig.ex.advance_to(rig.market_ms)
                records = rig.ex.fault_log.records("drop")[before:]
                assert hit == len(records) == (len(victims) if every else 1)
                drop_records += hit
                watched = []
                for record in records:
                    # ccxt.pro's binance puts the klines of both symbols on one socket,
                    # every other stream on its own
                    shared += len(victims[record.conn_id or 0]) - 1
                    for name in victims[record.conn_id or 0]:
                        key = client_stream(name)
                        expected_drops[key] = expected_drops.get(key, 0) + 1
                        watched.append((*key, "reconnects", expected_drops[key]))
            # the market moves on at 20x while the victims recover, FAULT_EVERY_MS at least
            await rig.play(rig.market_ms + FAULT_EVERY_MS, SPEED)
            await rig.play(
                rig.market_ms + 60_000,
                SPEED,
                stop_when=lambda w=watched: all(
                    getattr(rig.health(s, c), n) >= v for s, c, n, v in w
                ),
            )
            for s, c, n, v in watched:
                assert getattr(rig.health(s, c), n) == v, (kind, s, c, n, v, _ccxt_state(rig))
        # the checked span ends with the minute the faults ended in; the market moves on two
        # more minutes of the flow so the span's last messages are not the stream's last
        # (ccxt hands an update over only when one arrives after its caller asked)
        checked_end = rig.market_ms - rig.market_ms % MINUTE + MINUTE
        assert checked_end + 3 * MINUTE <= START + minutes * MINUTE, "flow too short"
        await rig.play(checked_end + 2 * MINUTE, SPEED)
        report = await rig.finish()
        final_ms = rig.market_ms
        log = rig.ex.fault_log
        return {
            "report": report,
            "made": made,
            "final_ms": final_ms,
            "checked_end": checked_end,
            "fault_counts": log.counts(),
            "expected_drops": expected_drops,
            "expected_gaps": expected_gaps,
            "health": {(str(h.symbol), str(h.channel)): h for h in rig.sup.health.entries()},
            "candle_rows": rig.candle_rows,
            "shared_socket_drops": shared,
            "drop_records": drop_records,
        }


def _check(tmp_path: Path, faults: int, out: dict[str, object]) -> None:
    from pivotal.data.duckdb_store import open_store

    report = out["report"]
    health = out["health"]
    counts = out["fault_counts"]
    assert isinstance(counts, dict) and isinstance(health, dict)
    # the server's log: exactly the faults injected (no rate limit, no slow consumer...)
    assert set(counts) <= {"drop", "gap"}, counts
    assert counts["gap"] == faults // 2
    assert counts["drop"] == out["drop_records"]
    # every fault in the log is seen by the client on the stream it hit, exactly once
    expected_drops, expected_gaps = out["expected_drops"], out["expected_gaps"]
    assert isinstance(expected_drops, dict) and isinstance(expected_gaps, dict)
    for symbol in SYMBOLS:
        for channel in CHANNELS:
            h = health[(symbol, channel)]
            drops = expected_drops.get((symbol, channel), 0)
            gaps = expected_gaps.get(symbol, 0) if channel == "book" else 0
            assert (h.disconnects, h.reconnects) == (drops, drops), (symbol, channel)
            assert (h.gaps, h.resyncs) == (gaps, gaps), (symbol, channel)
            assert h.errors == h.rate_limited == h.backfill_shortfalls == 0, (symbol, channel)
    totals = report.totals  # type: ignore[attr-defined]
    # a dropped socket disconnects every stream it carried: one, or two for the kline socket
    shared = out["shared_socket_drops"]
    assert totals["disconnects"] == totals["reconnects"] == counts["drop"] + shared
    assert totals["gaps"] == totals["resyncs"] == counts["gap"]
    assert totals["backfilled_rows"] > 0

    candle_rows = out["candle_rows"]
    made = out["made"]
    final_ms = out["final_ms"]
    checked_end = out["checked_end"]
    assert isinstance(final_ms, int) and isinstance(checked_end, int)
    with open_store(tmp_path, read_only=True) as store:
        for flow, candles in made:  # type: ignore[attr-defined]
            symbol = str(flow.symbol)
            # 1m: every source candle once, with the source's values, nothing else
            stored = store.read_candles(SeriesKey("binance", symbol, "1m"))
            n = len(stored)
            assert n >= (checked_end - START) // MINUTE
            np.testing.assert_array_equal(stored.timestamp, candles.timestamp[:n])
            for name in ("open", "high", "low", "close"):
                np.testing.assert_array_equal(getattr(stored, name), getattr(candles, name)[:n])
            np.testing.assert_allclose(stored.volume, candles.volume[:n], rtol=1e-9, atol=1e-12)
            handed = {t: k for (s, t), k in candle_rows.items() if s == f"{symbol}:1m"}
            assert sorted(handed) == stored.timestamp.tolist()
            assert set(handed.values()) == {1}  # each handed to the writer once
            # trades: every print once, in order, equal to the venue's
            truth = flow_trades(flow, final_ms)
            trades = store.read_trades("binance", Symbol.parse(symbol))
            n = len(trades)
            assert n >= int(np.searchsorted(truth.timestamp, checked_end))
            np.testing.assert_array_equal(trades.trade_id, truth.trade_id[:n])
            for name in ("timestamp", "price", "quantity", "is_buyer_maker"):
                np.testing.assert_array_equal(getattr(trades, name), getattr(truth, name)[:n])
            # 1s: no hole, every bar once, equal to the batch aggregation of the trades
            seconds = store.read_candles(SeriesKey("binance", symbol, "1s"))
            batch = aggregate_trades(truth, "1s").candles
            n = len(seconds)
            assert n >= (checked_end - int(batch.timestamp[0])) // 1000
            assert np.all(np.diff(seconds.timestamp) == 1000)
            for name in ("timestamp", "open", "high", "low", "close", "volume"):
                np.testing.assert_array_equal(getattr(seconds, name), getattr(batch, name)[:n])
            bars = [k for (s, _), k in candle_rows.items() if s == f"{symbol}:1s"]
            assert len(bars) == n and set(bars) == {1}
            pipe = report.pipelines[symbol]  # type: ignore[attr-defined]
            assert pipe["trades"] == len(trades)
            assert pipe["duplicate_trades"] == pipe["late_trades"] == 0
            # rows carry their path: the stream, or REST where a reconnect spanned a close
            ranges = store.source_ranges(SeriesKey("binance", symbol, "1m"))
            assert {r.source for r in ranges} == {"binance:ws", "binance:rest"}
            ranges = store.source_ranges(SeriesKey("binance", symbol, "1s"))
            assert {r.source for r in ranges} == {"binance:trades"}


def test_replay_with_faults_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    faults = 10
    out = asyncio.run(_replay(tmp_path, faults, seed=5))
    _check(tmp_path, faults, out)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_replay_with_100_faults(tmp_path: Path) -> None:
    faults = 100
    out = asyncio.run(_replay(tmp_path, faults, seed=11))
    _check(tmp_path, faults, out)
