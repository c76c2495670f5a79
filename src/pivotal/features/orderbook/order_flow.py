"""Order-flow metrics from trades, per fixed interval (1 s by default).

Units: volumes in the base asset, notionals in the quote currency, timestamps UTC ms.
The aggressor of a trade bought when ``is_buyer_maker`` is False (its volume is aggressive buy
volume) and sold when it is True. Interval ``i`` starts at ``timestamp[i]`` (a multiple of
``interval_ms``) and holds trades with ``start <= t < start + interval_ms``. Intervals run
contiguously from the first trade's to the last trade's; empty ones have zero volumes and a
NaN ``buy_ratio``. A trade is large when ``quantity >= large_quantity`` or
``price * quantity >= large_notional`` (a threshold left as None is not used).

:func:`order_flow` is the batch form; :class:`OrderFlowAccumulator` is the streaming twin: fed
the same trades in chunks of any size, it emits the same intervals (sums equal up to float
rounding of the chunk split; counts exactly), each once the first later trade closes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from pivotal.core.trades import Trades

_SUMS = (
    "buy_volume",
    "sell_volume",
    "buy_notional",
    "sell_notional",
    "trade_count",
    "large_buy_count",
    "large_sell_count",
    "large_buy_volume",
    "large_sell_volume",
)


class OrderFlowConfig(BaseModel):
    """Interval length and large-trade thresholds (quantity in base, notional in quote)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_ms: int = Field(1000, ge=1)
    large_quantity: float | None = Field(None, gt=0)
    large_notional: float | None = Field(100_000.0, gt=0)


@dataclass(frozen=True, slots=True, eq=False)
class OrderFlow:
    """Columnar order-flow metrics, one row per interval (see the module docstring)."""

    timestamp: npt.NDArray[np.int64]
    buy_volume: npt.NDArray[np.float64]
    sell_volume: npt.NDArray[np.float64]
    buy_notional: npt.NDArray[np.float64]
    sell_notional: npt.NDArray[np.float64]
    trade_count: npt.NDArray[np.int64]
    large_buy_count: npt.NDArray[np.int64]
    large_sell_count: npt.NDArray[np.int64]
    large_buy_volume: npt.NDArray[np.float64]
    large_sell_volume: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def buy_ratio(self) -> npt.NDArray[np.float64]:
        """buy_volume / (buy_volume + sell_volume); NaN for intervals without trades."""
        total = self.buy_volume + self.sell_volume
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.buy_volume / total, np.nan)

    def metrics(self, i: int) -> dict[str, float]:
        """Row ``i`` as a flat mapping (for ``COBData.order_flow_metrics``)."""
        out = {name: float(getattr(self, name)[i]) for name in _SUMS}
        out["buy_ratio"] = float(self.buy_ratio[i])
        return out

    def by_timestamp(self) -> dict[int, dict[str, float]]:
        """{interval start: metrics}, the form :class:`COBSampler` takes."""
        return {int(t): self.metrics(i) for i, t in enumerate(self.timestamp)}

    @staticmethod
    def concat(parts: list[OrderFlow]) -> OrderFlow:
        """Rows of ``parts`` one after another."""
        if not parts:
            return _empty()
        return OrderFlow(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(OrderFlow))
        )

    def to_frame(self) -> object:
        """A pandas DataFrame with one column per metric, buy_ratio included."""
        import pandas as pd

        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return pd.DataFrame(data | {"buy_ratio": self.buy_ratio})


def _empty() -> OrderFlow:
    return OrderFlow(np.zeros(0, np.int64), *(_zeros(name, 0) for name in _SUMS))


def _zeros(name: str, n: int) -> npt.NDArray:
    return np.zeros(n, dtype=np.int64 if name.endswith("count") else np.float64)


def _aggregate(trades: Trades, config: OrderFlowConfig, start: int, stop: int) -> OrderFlow:
    """Intervals ``start, start + iv, ..., stop`` (inclusive) over trades inside them."""
    iv = config.interval_ms
    n = (stop - start) // iv + 1
    idx = (trades.timestamp - start) // iv
    qty, price = trades.quantity, trades.price
    notional = price * qty
    buy = ~trades.is_buyer_maker
    large = np.zeros(len(trades), dtype=bool)
    if config.large_quantity is not None:
        large |= qty >= config.large_quantity
    if config.large_notional is not None:
        large |= notional >= config.large_notional

    def total(mask: npt.NDArray[np.bool_], weights: npt.NDArray | None) -> npt.NDArray:
        w = None if weights is None else weights[mask]
        out = np.bincount(idx[mask], weights=w, minlength=n)  # int64 when empty, even weighted
        return out.astype(np.int64 if weights is None else np.float64)

    return OrderFlow(
        start + np.arange(n, dtype=np.int64) * iv,
        total(buy, qty),
        total(~buy, qty),
        total(buy, notional),
        total(~buy, notional),
        np.bincount(idx, minlength=n).astype(np.int64),
        total(buy & large, None),
        total(~buy & large, None),
        total(buy & large, qty),
        total(~buy & large, qty),
    )


def _check_sorted(trades: Trades, after: int | None) -> None:
    ts = trades.timestamp
    if len(ts) and (np.any(ts[1:] < ts[:-1]) or (after is not None and ts[0] < after)):
        raise ValueError("order flow needs trades in time order; sort them by timestamp first")


def order_flow(trades: Trades, config: OrderFlowConfig | None = None) -> OrderFlow:
    """Per-interval order flow of time-ordered ``trades`` (see the module docstring)."""
    config = config or OrderFlowConfig()
    _check_sorted(trades, None)
    if len(trades) == 0:
        return _empty()
    iv = config.interval_ms
    ts = trades.timestamp
    return _aggregate(trades, config, int(ts[0]) // iv * iv, int(ts[-1]) // iv * iv)


class OrderFlowAccumulator:
    """Streaming :func:`order_flow`: :meth:`update` returns the intervals that closed."""

    def __init__(self, config: OrderFlowConfig | None = None) -> None:
        self.config = config or OrderFlowConfig()
        self._open: OrderFlow | None = None  # the one interval still accumulating
        self._last_ts: int | None = None

    def update(self, trades: Trades) -> OrderFlow:
        """Add time-ordered ``trades`` (not earlier than those before); return closed rows."""
        _check_sorted(trades, self._last_ts)
        if len(trades) == 0:
            return _empty()
        iv = self.config.interval_ms
        ts = trades.timestamp
        start = int(ts[0]) // iv * iv if self._open is None else int(self._open.timestamp[0])
        chunk = _aggregate(trades, self.config, start, int(ts[-1]) // iv * iv)
        if self._open is not None:
            for name in _SUMS:
                getattr(chunk, name)[0] += getattr(self._open, name)[0]
        self._last_ts = int(ts[-1])
        closed = OrderFlow(*(getattr(chunk, f.name)[:-1] for f in fields(OrderFlow)))
        self._open = OrderFlow(*(getattr(chunk, f.name)[-1:].copy() for f in fields(OrderFlow)))
        return closed

    def flush(self) -> OrderFlow:
        """Close and return the interval still open (empty when none)."""
        out, self._open = (self._open or _empty()), None
        return out

    def pending(self) -> Mapping[str, float] | None:
        """Metrics of the open interval so far, or None."""
        return None if self._open is None else self._open.metrics(0)
