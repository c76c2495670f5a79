"""Helpers for the local exchange's Binance tests: a hand-made flow, a ccxt.pro client.

:func:`small_flow` is seeded and self-contained: a 50-level book around ``mid`` (tick 0.01),
every 100 ms a depth diff (1 to 3 levels per side, 1 to 4 update ids) followed by a
bookTicker, and a trade at the best bid or ask with probability 0.7 just before it.
:func:`binance_client` is the recipe that points an unchanged ``ccxt.pro.binance`` at a
local venue. :func:`write_recording` writes a flow as an hftbacktest message file.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import orjson

from pivotal.core.symbols import Symbol
from pivotal.localexchange.config import VenueUrls
from pivotal.localexchange.flow import (
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    SymbolFlow,
    TradePrint,
)

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
TICK = 0.01


def small_flow(
    symbol: str = "BTC/USDT",
    *,
    seconds: int = 60,
    seed: int = 1,
    mid: float = 100.0,
    start_ms: int = T0,
    first_update: int = 1000,
    first_trade: int = 1,
) -> SymbolFlow:
    """A seeded flow of ``seconds`` market seconds (see the module docstring)."""
    bids = tuple((round(mid - TICK * (i + 1), 2), 1.0 + i) for i in range(50))
    asks = tuple((round(mid + TICK * (i + 1), 2), 1.0 + i) for i in range(50))
    end = start_ms + seconds * 1000 - 1

    def events() -> Iterator[FlowEvent]:
        rng = random.Random(seed)
        uid, tid = first_update, first_trade
        book_b, book_a = dict(bids), dict(asks)
        t = start_ms
        while t <= end:
            if rng.random() < 0.7:
                best_b, best_a = max(book_b), min(book_a)
                maker = rng.random() < 0.5
                price = best_b if maker else best_a
                yield TradePrint(t, tid, price, round(rng.uniform(0.001, 0.5), 3), maker)
                tid += 1
            diff_b, diff_a = [], []
            for _ in range(rng.randint(1, 3)):
                price = round(max(book_b) - TICK * rng.randint(1, 10), 2)
                qty = (
                    0.0
                    if rng.random() < 0.2 and len(book_b) > 10
                    else round(rng.uniform(0.1, 5), 3)
                )
                diff_b.append((price, qty))
                if qty == 0.0:
                    book_b.pop(price, None)
                else:
                    book_b[price] = qty
                price = round(min(book_a) + TICK * rng.randint(0, 10), 2)
                qty = round(rng.uniform(0.1, 5), 3)
                diff_a.append((price, qty))
                book_a[price] = qty
            first = uid + 1
            uid += rng.randint(1, 4)
            yield DepthDiff(t, first, uid, tuple(diff_b), tuple(diff_a))
            best_b, best_a = max(book_b), min(book_a)
            yield BookTop(t, uid, best_b, book_b[best_b], best_a, book_a[best_a])
            t += 100

    snapshot = BookSnapshot(first_update, bids, asks)
    return SymbolFlow(
        symbol=Symbol.parse(symbol),
        source=f"test:seed={seed}",
        start_ms=start_ms,
        end_ms=end,
        snapshot=snapshot,
        tick_size=TICK,
        step_size=0.001,
        factory=events,
    )


def binance_client(urls: VenueUrls, **config: Any) -> ccxtpro.binance:
    """An unchanged ``ccxt.pro.binance`` pointed at a local venue (the recipe).

    - spot markets only and no currencies call: ``load_markets`` asks only
      ``/api/v3/exchangeInfo``;
    - REST: ``urls['api'][k] = REST + '/api/v3'`` for ``public``, ``private``, ``v1``;
    - WS: ``urls['api']['ws']['spot'] = WS + '/stream'`` (ccxt dials ``/stream/<n>``; the
      ``/stream`` in the URL is what makes ccxt treat the socket as spot);
    - an ``apiKey`` (any text): ccxt refuses ``historicalTrades`` without one.
    """
    options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}
    client = ccxtpro.binance({"apiKey": "local", "options": options, **config})
    for key in ("public", "private", "v1"):
        client.urls["api"][key] = urls.rest + "/api/v3"
    client.urls["api"]["ws"]["spot"] = urls.ws + "/stream"
    return client


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    """Run ``coro`` in a fresh loop with an overall timeout (a hung test fails, not hangs)."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, step_s: float = 0.01
) -> None:
    """Wait until ``predicate()`` holds; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


def write_recording(path: Path, flow: SymbolFlow) -> Path:
    """``flow`` as an hftbacktest recording (``<local ns> <json>`` lines, gzip)."""
    sid = flow.symbol.exchange_id
    low = sid.lower()
    lines = []
    snap = flow.snapshot
    lines.append((flow.start_ms - 50, {
        "lastUpdateId": snap.last_update_id,
        "bids": [[f"{p:.8f}", f"{q:.8f}"] for p, q in snap.bids],
        "asks": [[f"{p:.8f}", f"{q:.8f}"] for p, q in snap.asks],
    }))  # fmt: skip
    for e in flow.events():
        if isinstance(e, TradePrint):
            data = {"e": "trade", "E": e.time_ms, "s": sid, "t": e.trade_id,
                    "p": f"{e.price:.8f}", "q": f"{e.qty:.8f}", "T": e.time_ms,
                    "m": e.buyer_maker, "M": True}  # fmt: skip
            lines.append((e.time_ms, {"stream": f"{low}@trade", "data": data}))
        elif isinstance(e, DepthDiff):
            data = {"e": "depthUpdate", "E": e.time_ms, "s": sid, "U": e.first_id, "u": e.last_id,
                    "b": [[f"{p:.8f}", f"{q:.8f}"] for p, q in e.bids],
                    "a": [[f"{p:.8f}", f"{q:.8f}"] for p, q in e.asks]}  # fmt: skip
            lines.append((e.time_ms, {"stream": f"{low}@depth@100ms", "data": data}))
        else:
            data = {"u": e.update_id, "s": sid, "b": f"{e.bid:.8f}", "B": f"{e.bid_qty:.8f}",
                    "a": f"{e.ask:.8f}", "A": f"{e.ask_qty:.8f}"}  # fmt: skip
            lines.append((e.time_ms, {"stream": f"{low}@bookTicker", "data": data}))
    text = b"".join(b"%d %s\n" % (ms * 1_000_000, orjson.dumps(body)) for ms, body in lines)
    path.write_bytes(gzip.compress(text))
    return path
