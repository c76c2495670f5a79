"""A scripted stand-in for a ccxt.pro client, and a fake time that sleeps instantly.

``FakeExchange`` answers ``watch_*`` from per-stream scripts (each step a value to return or an
exception to raise; an empty script waits until the test pushes more) and ``fetch_*`` from the
exchange's "true" history (``trades``, ``candles``), the way Binance's REST does. ``down`` makes
every call fail with a connection error, like a paused local exchange.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import ccxt

GO_DOWN = object()
"""A script step: the exchange goes down (this call and every later one fail)."""


class FakeTime:
    """Virtual time: ``sleep`` parks the caller until :meth:`drive` moves the clock to its wake
    time, which it does only when every task has gone idle (so everything due at one instant
    happens before the clock moves on). ``sleeps`` records every wait asked for."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms
        self.sleeps: list[float] = []
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    def now_ms(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + max(0, round(seconds * 1000))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (wake, self._seq, future))
        await future

    async def drive(self) -> None:
        """Run forever: when the loop is idle, wake the earliest sleepers."""
        while True:
            for _ in range(30):
                await asyncio.sleep(0)
            while self._waiters and self._waiters[0][2].done():
                heapq.heappop(self._waiters)
            if not self._waiters:
                continue
            wake = self._waiters[0][0]
            self.now = max(self.now, wake)
            while self._waiters and self._waiters[0][0] <= self.now:
                future = heapq.heappop(self._waiters)[2]
                if not future.done():
                    future.set_result(None)


def run(coro: Coroutine[Any, Any, Any], time: FakeTime, limit_s: float = 20) -> Any:
    """Run a scenario with ``time`` driven; the wall-clock limit only guards against a hang."""

    async def main() -> Any:
        driver = asyncio.ensure_future(time.drive())
        try:
            return await asyncio.wait_for(coro, limit_s)
        finally:
            driver.cancel()

    return asyncio.run(main())


def trade(tid: int, ts: int, price: float = 100.0, amount: float = 1.0, side: str = "buy") -> dict:
    return {"id": str(tid), "timestamp": ts, "price": price, "amount": amount, "side": side}


class FakeExchange:
    """See the module docstring. ``calls`` logs every call as (method, args...)."""

    def __init__(self, exchange_id: str, time: FakeTime, *, api_key: str | None = None) -> None:
        self.id = exchange_id
        self.time = time
        self.apiKey = api_key
        self.has: dict[str, Any] = {"fetchTime": True}
        self.last_response_headers: dict[str, str] | None = None
        self.trades: list[dict] = []
        self.candles: list[list[float]] = []
        self.scripts: dict[tuple, asyncio.Queue] = defaultdict(asyncio.Queue)
        self.calls: list[tuple] = []
        self.down = False
        self.closed = False
        self.rest_error: BaseException | None = None

    # -- scripting ----------------------------------------------------------------------
    def push(self, method: str, step: Any, *key: Any) -> None:
        self.scripts[(method, *key)].put_nowait(step)

    def subscribes(self, method: str | None = None) -> list[tuple]:
        return [c for c in self.calls if c[0].startswith("watch") and (method in (None, c[0]))]

    def _check(self) -> None:
        if self.down:
            raise ccxt.ExchangeNotAvailable(f"{self.id} GET http://127.0.0.1:1 refused")

    async def _step(self, method: str, *key: Any) -> Any:
        self.calls.append((method, *key, self.time.now))
        self._check()
        step = await self.scripts[(method, *key)].get()
        if step is GO_DOWN:
            self.down = True
            self._check()
        if callable(step):  # a step that changes the fake, then answers
            step = step()
        if isinstance(step, BaseException):
            raise step
        return step

    # -- ccxt surface ---------------------------------------------------------------------
    async def watch_trades(self, symbol: str) -> list[dict]:
        return await self._step("watch_trades", symbol)

    async def watch_order_book(self, symbol: str) -> dict:
        return await self._step("watch_order_book", symbol)

    async def watch_ohlcv(self, symbol: str, timeframe: str) -> list[list[float]]:
        return await self._step("watch_ohlcv", symbol, timeframe)

    async def watch_ticker(self, symbol: str) -> dict:
        return await self._step("watch_ticker", symbol)

    def _rest(self, *call: Any) -> None:
        self.calls.append((*call, self.time.now))
        self._check()
        if self.rest_error is not None:
            error, self.rest_error = self.rest_error, None
            raise error

    async def fetch_trades(
        self,
        symbol: str,
        since: int | None = None,
        limit: int | None = None,
        params: dict | None = None,
    ) -> list[dict]:
        params = params or {}
        self._rest("fetch_trades", symbol, since, limit, dict(params))
        limit = limit or 500
        method = params.get("fetchTradesMethod")
        if method == "publicGetHistoricalTrades":
            if not self.apiKey:
                raise ccxt.AuthenticationError("historicalTrades endpoint requires `apiKey`")
            from_id = int(params["fromId"])
            return [dict(t) for t in self.trades if int(t["id"]) >= from_id][:limit]
        return [dict(t) for t in self.trades[-limit:]]

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[list[float]]:
        self._rest("fetch_ohlcv", symbol, timeframe, since, limit)
        limit = limit or 500
        if since is None:
            return [list(c) for c in self.candles[-limit:]]
        return [list(c) for c in self.candles if c[0] >= since][:limit]

    async def fetch_time(self) -> int:
        self._rest("fetch_time")
        return self.time.now

    async def close(self) -> None:
        self.closed = True
