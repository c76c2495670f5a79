"""One symbol's trades for the market frame: growable column arrays and the order-flow sums
of the window just before the cursor (:class:`~pivotal.orchestrator.frame.MarketFrame`)."""

from __future__ import annotations

import numpy as np

from pivotal.core.trades import TRADE_COLUMNS, Trades
from pivotal.features.inputs.context import MICROSTRUCTURE_KEYS
from pivotal.features.orderbook.order_flow import OrderFlowConfig, order_flow

__all__ = ["TradeLog"]

_MIN_CAPACITY = 256  # trades allocated at least when the log starts growing
_TRADE_COMPACT = 4_096  # trades dropped from the front at least per compaction


class TradeLog:
    """One symbol's trades in growable column arrays; the order-flow sums of a window."""

    __slots__ = ("_appended", "_cache", "_capacity", "_cols", "_n")

    def __init__(self) -> None:
        self._cols: dict[str, np.ndarray] = {}
        self._n = 0
        self._capacity = 0
        self._appended = 0  # trades ever appended: a cached window is stale when it changes
        self._cache: tuple[int, int, dict[str, float]] = (-1, -1, {})

    def append(self, trades: Trades, drop_before: int | None, where: str) -> None:
        ts = trades.timestamp
        if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
            raise ValueError(f"{where}: trades must be in time order; sort them first")
        if self._n and int(ts[0]) < int(self._cols["timestamp"][self._n - 1]):
            raise ValueError(
                f"{where}: a trade at {int(ts[0])} is older than the newest recorded one "
                f"({int(self._cols['timestamp'][self._n - 1])}); add trades in time order"
            )
        dead = 0
        if drop_before is not None and self._n:
            dead = int(np.searchsorted(self._cols["timestamp"][: self._n], drop_before, "left"))
            if dead < max(_TRADE_COMPACT, self._n // 2):
                dead = 0  # compact in batches: amortised O(1) per trade
        live, k = self._n - dead, len(ts)
        if dead or live + k > self._capacity:
            capacity = max(live + k, 2 * live, _MIN_CAPACITY)
            cols = {}
            for name in TRADE_COLUMNS:
                cols[name] = np.zeros(capacity, dtype=getattr(trades, name).dtype)
                if live:
                    cols[name][:live] = self._cols[name][dead : self._n]
            self._cols, self._capacity = cols, capacity
        for name in TRADE_COLUMNS:
            self._cols[name][live : live + k] = getattr(trades, name)
        self._n = live + k
        self._appended += k

    def microstructure(self, start: int, end: int, flow: OrderFlowConfig) -> dict[str, float]:
        """Order-flow sums of the trades with ``start <= timestamp < end`` ({} without any),
        computed as :class:`~pivotal.features.inputs.StandardizedDataProvider` does."""
        if self._cache[:2] == (end, self._appended):
            return self._cache[2]
        ts = self._cols["timestamp"][: self._n] if self._n else np.empty(0, np.int64)
        lo = int(np.searchsorted(ts, start, "left"))
        hi = int(np.searchsorted(ts, end, "left"))
        out: dict[str, float] = {}
        if hi > lo:
            window = Trades(*(self._cols[c][lo:hi] for c in TRADE_COLUMNS))
            summary = order_flow(window, flow)
            out = {key: float(np.sum(getattr(summary, key))) for key in MICROSTRUCTURE_KEYS}
        self._cache = (end, self._appended, out)
        return out
