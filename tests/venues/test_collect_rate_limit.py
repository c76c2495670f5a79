"""REST rate limits (HTTP 429 / 418) between the collector's real ccxt.pro clients and the
local exchange over 127.0.0.1: the client honours every Retry-After and never earns a ban
of its own, and (slow) a client configured below the server's weight budget is never
refused while it keeps asking for more than the budget allows.

Two logs are compared, both on the machine's monotonic clock:

- the server's: every REST request the Binance site charged (arrival time, weight,
  status 200/429/418, Retry-After), recorded by wrapping the site's rate limiter;
- the client's: every request ccxt actually sent (below the collector's request gate:
  the test wraps the client's ``fetch`` before the collector wraps it), with the time its
  answer came back and, for a refusal, its Retry-After.

"Honours Retry-After" is checked on the client's log, where it is exact: no request leaves
after a refusal came back until that refusal's Retry-After has passed. (Counting arrivals at
the server instead would also catch a request that was already on its way when the refusal
came back; the client cannot take that one back.)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pytest

from helpers.collect_kit import MINUTE, CollectRig, candle_flow, flow_trades
from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.localexchange.faults import FaultConfig, Verdict
from pivotal.venues.collector import CollectConfig

pytestmark = pytest.mark.network

START = 1_751_328_000_000  # 2025-07-01 00:00 UTC
SPEED = 20.0
SYMBOLS = ("BTC/USDT", "ETH/USDT")
SLACK_S = 0.005  # ms rounding of the gate (UTC ms) against the monotonic log


@dataclass
class Sent:
    """One request the client sent: when, where, when its answer came, a refusal's wait."""

    sent: float
    url: str
    answered: float | None = None
    refused_for: float | None = None


@dataclass(frozen=True)
class Charged:
    """One request the server charged: arrival (monotonic s), weight, verdict."""

    at: float
    weight: int
    status: int
    retry_after_s: int


class Recorder:
    """Both logs (see the module docstring)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.charged: list[Charged] = []

    def client(self, venue: str, client: Any) -> None:
        fetch = client.fetch

        async def logged(url: str, method: str = "GET", headers: Any = None, body: Any = None):
            entry = Sent(time.monotonic(), url)
            self.sent.append(entry)
            try:
                return await fetch(url, method, headers, body)
            except (ccxt.DDoSProtection, ccxt.RateLimitExceeded):
                wait = (client.last_response_headers or {}).get("Retry-After")
                entry.refused_for = float(wait) if wait is not None else 0.0
                raise
            finally:
                entry.answered = time.monotonic()

        client.fetch = logged

    def server(self, rig: CollectRig) -> None:
        limiter = rig.ex.sites["binance"].limiter
        charge = limiter.charge

        def logged(weight: int) -> Verdict:
            verdict = charge(weight)
            self.charged.append(
                Charged(time.monotonic(), weight, verdict.status, verdict.retry_after_s)
            )
            return verdict

        limiter.charge = logged  # type: ignore[method-assign]

    def early(self) -> list[tuple[Sent, Sent]]:
        """(refusal, request) pairs where the request left inside the refusal's wait."""
        out = []
        for refused in (s for s in self.sent if s.refused_for is not None):
            assert refused.answered is not None
            until = refused.answered + (refused.refused_for or 0.0) - SLACK_S
            out += [(refused, s) for s in self.sent if refused.answered <= s.sent < until]
        return out


def _collect() -> CollectConfig:
    return CollectConfig(
        exchanges=("binance",),
        symbols=SYMBOLS,
        timeframes=("1s", "1m"),
        close_lag_ms=None,
        batch_delay_ms=200,
    )


async def _until_caught_up(rig: CollectRig, limit_s: float = 40.0) -> None:
    """Move the market at 20x until every stream waits for its next message again."""
    deadline = time.monotonic() + limit_s
    await rig.play(rig.market_ms + 10_000, SPEED)
    while not rig.waiting():
        assert time.monotonic() < deadline, f"not caught up; {rig.sup.snapshot()}"
        await rig.play(rig.market_ms + 2_000, SPEED)


async def _retry_after_run(tmp_path: Path, rec: Recorder) -> dict[str, Any]:
    made = [candle_flow(s.split("/")[0], START, 20, seed=31 + i) for i, s in enumerate(SYMBOLS)]
    rig = CollectRig(tmp_path, [f for f, _ in made], _collect(), on_client=rec.client)
    async with rig:
        rec.server(rig)
        await rig.subscribed(len(SYMBOLS) * 3)
        await rig.play(rig.market_ms + 20_000, SPEED)
        await rig.settle()
        # three 429s in a row (Retry-After 1 s each) for the REST traffic of a reconnect of
        # every stream: back-fill of trades and candles, two order-book snapshots
        await rig.ex.inject("rate_limit", venue="binance", count=3, retry_after_s=1)
        await rig.ex.inject("drop", venue="binance", every=True)
        await _until_caught_up(rig)
        await rig.settle()
        # then a 2 s ban (418) met by the same kind of burst
        banned = time.monotonic()
        await rig.ex.inject("ban", venue="binance", seconds=2.0)
        await rig.ex.inject("drop", venue="binance", every=True)
        await _until_caught_up(rig)
        end = rig.market_ms - rig.market_ms % MINUTE + MINUTE
        await rig.play(end + 2 * MINUTE, SPEED)
        report = await rig.finish()
        return {
            "report": report,
            "made": made,
            "banned": banned,
            "end": end,
            "final_ms": rig.market_ms,
            "faults": rig.ex.fault_log.counts(),
            "blocks": rig.sup.gates["binance"].blocks,
        }


def test_client_honours_retry_after_of_429_and_418(tmp_path: Path) -> None:
    rec = Recorder()
    out = asyncio.run(_retry_after_run(tmp_path, rec))
    refusals = [c for c in rec.charged if c.status != 200]
    too_many = [c for c in refusals if c.status == 429]
    bans = [c for c in refusals if c.status == 418]
    # exactly the three injected 429s; 418s only while the injected ban lasted
    assert len(too_many) == 3 and all(c.retry_after_s == 1 for c in too_many)
    assert bans and all(out["banned"] <= c.at < out["banned"] + 2.0 for c in bans)
    assert out["faults"]["rate_limit"] == 3 and out["faults"]["ban"] == len(bans)
    # the client saw each refusal and waited its Retry-After before sending anything
    seen = [s for s in rec.sent if s.refused_for is not None]
    assert len(seen) == len(refusals)
    assert not rec.early(), rec.early()[:3]
    # every wait after a 429 was at least 1 s, after the ban at least what was left of it
    gaps = [
        min(s.sent for s in rec.sent if s.sent > r.answered) - r.answered  # type: ignore[operator]
        for r in seen
        if any(s.sent > r.answered for s in rec.sent)  # type: ignore[operator]
    ]
    assert len(gaps) == len(seen) and min(gaps) >= 1.0 - SLACK_S
    assert out["blocks"] >= 2
    report = out["report"]
    # the streams' health says they met rate limits (how many of the refusals reach a stream's
    # own handler, rather than a request ccxt makes inside watch_order_book, is timing)
    assert report.totals["rate_limited"] >= 1
    # and nothing was lost meanwhile
    with open_store(tmp_path, read_only=True) as store:
        for flow, candles in out["made"]:
            symbol = str(flow.symbol)
            stored = store.read_candles(SeriesKey("binance", symbol, "1m"))
            n = len(stored)
            assert n >= (out["end"] - START) // MINUTE
            np.testing.assert_array_equal(stored.timestamp, candles.timestamp[:n])
            np.testing.assert_array_equal(stored.close, candles.close[:n])
            truth = flow_trades(flow, out["final_ms"])
            trades = store.read_trades("binance", Symbol.parse(symbol))
            m = len(trades)
            assert m >= int(np.searchsorted(truth.timestamp, out["end"]))
            np.testing.assert_array_equal(trades.trade_id, truth.trade_id[:m])


BUDGET = 600  # the server's request weight per one-minute window
CLIENT_BUDGET = 480  # what the client is configured to spend (80 %: ccxt's throttle may
# overdraw by the request it admits last)


async def _budget_run(tmp_path: Path, rec: Recorder, wall_s: float) -> dict[str, Any]:
    made = [candle_flow(s.split("/")[0], START, 90, seed=41 + i) for i, s in enumerate(SYMBOLS)]
    rig = CollectRig(
        tmp_path,
        [f for f, _ in made],
        _collect(),
        faults=FaultConfig(weight_per_minute=BUDGET),
        # ccxt's unit: 1 cost = 5 weight (Binance's 6000/min = 1 cost per 50 ms)
        rate_limit_ms=round(60_000 / (CLIENT_BUDGET / 5)),
        on_client=rec.client,
    )
    async with rig:
        rec.server(rig)
        await rig.subscribed(len(SYMBOLS) * 3)
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + wall_s
        i = 0
        while loop.time() < stop_at:
            # far more REST demand than the budget: a book gap (a 50-weight snapshot) every
            # 0.5 s wall and a dropped socket (back-fill) every 2 s
            await rig.ex.inject("gap", venue="binance")
            if i % 4 == 3:
                await rig.ex.inject("drop", venue="binance")
            await rig.play(rig.market_ms + 10_000, SPEED)
            i += 1
        report = await rig.finish()
        return {"report": report, "faults": rig.ex.fault_log.counts()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_client_below_the_budget_is_never_refused(tmp_path: Path) -> None:
    rec = Recorder()
    out = asyncio.run(_budget_run(tmp_path, rec, wall_s=150.0))
    refusals = [c for c in rec.charged if c.status != 200]
    assert not refusals, refusals[:5]
    assert "rate_limit" not in out["faults"] and "ban" not in out["faults"]
    # the demand was real: the client spent its budget in every full minute it ran
    windows: dict[int, int] = {}
    for c in rec.charged:
        windows[int(c.at // 60)] = windows.get(int(c.at // 60), 0) + c.weight
    full = sorted(windows)[1:-1]
    print("weight per server window", [windows[w] for w in sorted(windows)])
    assert full and all(0.7 * CLIENT_BUDGET <= windows[w] <= BUDGET for w in full), windows
