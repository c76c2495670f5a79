"""A small hand-made market flow and async helpers for the venue-site tests (Bybit, MEXC).

:func:`handmade_flow` is seeded and self-contained (no shared data): a 300-level book
around 60,000 with tick 0.01, one depth diff every 100 ms (a few levels set or removed,
the best levels always touched, 1 to 4 update ids each), a bookTicker after each diff and
a trade every 300 ms at the best bid or ask; plus ``history_minutes`` closed 1m candles
before the first event. Times start at :data:`T0` (2024-08-08 00:00 UTC).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.flow import (
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    SymbolFlow,
    TradePrint,
)

T0 = 1_723_075_200_000
TICK = 0.01
STEP = 0.00001


def handmade_flow(
    seconds: int = 60, seed: int = 7, symbol: str = "BTC/USDT", history_minutes: int = 180
) -> SymbolFlow:
    """A seeded flow of ``seconds`` market seconds (see the module docstring)."""
    rng = random.Random(seed)
    mid = 60_000.0

    def qty() -> float:
        return round(rng.uniform(0.1, 2.0), 5)

    bids = tuple((round(mid - TICK * (i + 1), 2), qty()) for i in range(300))
    asks = tuple((round(mid + TICK * (i + 1), 2), qty()) for i in range(300))
    book_b, book_a = dict(bids), dict(asks)
    events: list[FlowEvent] = []
    update_id, trade_id = 1000, 500
    for step in range(seconds * 10):
        t = T0 + step * 100 + 5
        diff_b, diff_a = [], []
        for _ in range(3):
            diff_b.append(
                (round(mid - TICK * rng.randint(2, 60), 2), 0.0 if rng.random() < 0.2 else qty())
            )
            diff_a.append(
                (round(mid + TICK * rng.randint(2, 60), 2), 0.0 if rng.random() < 0.2 else qty())
            )
        diff_b.append((round(mid - TICK, 2), qty()))
        diff_a.append((round(mid + TICK, 2), qty()))
        for side, diff in ((book_b, diff_b), (book_a, diff_a)):
            for price, q in diff:
                if q == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = q
        count = rng.randint(1, 4)
        events.append(DepthDiff(t, update_id + 1, update_id + count, tuple(diff_b), tuple(diff_a)))
        update_id += count
        best_bid, best_ask = max(book_b), min(book_a)
        events.append(BookTop(t, update_id, best_bid, book_b[best_bid], best_ask, book_a[best_ask]))
        if step % 3 == 0:
            trade_id += 1
            maker = rng.random() < 0.5
            price = best_bid if maker else best_ask
            events.append(
                TradePrint(t + 1, trade_id, price, round(rng.uniform(0.001, 0.5), 5), maker)
            )
    history = {Timeframe.M1: _history(seed, history_minutes)} if history_minutes else {}
    frozen = tuple(events)
    return SymbolFlow(
        symbol=Symbol.parse(symbol),
        source=f"handmade:seed={seed}",
        start_ms=frozen[0].time_ms,
        end_ms=frozen[-1].time_ms,
        snapshot=BookSnapshot(1000, bids, asks),
        tick_size=TICK,
        step_size=STEP,
        factory=lambda: iter(frozen),
        history=history,
    )


def _history(seed: int, minutes: int) -> Candles:
    rng = np.random.default_rng(seed)
    ts = np.arange(T0 - minutes * 60_000, T0, 60_000, dtype=np.int64)
    close = np.round(60_000 + np.cumsum(rng.normal(0, 5, len(ts))), 2)
    open_ = np.concatenate([[60_000.0], close[:-1]])
    high = np.maximum(open_, close) + 1.0
    low = np.minimum(open_, close) - 1.0
    volume = np.round(rng.uniform(1, 10, len(ts)), 5)
    return Candles(ts, open_, high, low, close, volume)


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` every few ms until true; ``TimeoutError`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)
