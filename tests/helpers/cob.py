"""Seeded COB snapshots for store tests, and a bit-for-bit comparison of snapshots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData

T0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC


def synthetic_cob(
    n: int,
    *,
    seed: int = 7,
    symbol: str = "BTC/USDT",
    start: int = T0,
    buckets: int = 20,
    ma_buckets: int = 5,
    windows: Sequence[int] = (1, 5, 15, 60),
) -> list[COBData]:
    """``n`` consecutive 1s snapshots of a random walk (the first k the same for every n):
    ``2 * buckets + 1`` buckets of 10, imbalance MAs NaN while each window warms up,
    order-flow metrics on every third second only (empty otherwise, as with no trades) with
    the names in varying order."""
    rng = np.random.default_rng(seed)
    width, central = 2 * buckets + 1, 2 * ma_buckets + 1
    mid = 60_000.0
    out = []
    for i in range(n):  # snapshot i does not depend on n
        mid += rng.normal(0.0, 3.0)
        first = np.floor(mid / 10.0) - buckets
        edges = (first + np.arange(width)) * 10.0
        bid = np.round(rng.exponential(0.5, width), 5)
        ask = np.round(rng.exponential(0.5, width), 5)
        bid[rng.random(width) < 0.2] = 0.0
        total = bid + ask
        with np.errstate(invalid="ignore", divide="ignore"):
            imbalance = np.where(total > 0, (bid - ask) / total, 0.0)
        vwap = edges + 10.0 * rng.random(width)
        ma = {}
        for w in windows:
            values = rng.uniform(-1.0, 1.0, central)
            ma[w] = np.full(central, np.nan) if i < w - 1 else values
        flow: dict[str, float] = {}
        if i % 3 == 0:
            flow = {"buy_volume": float(rng.exponential()), "trade_count": float(i % 17)}
            if i % 2:
                flow = dict(reversed(list(flow.items())))
        out.append(
            COBData(
                symbol=Symbol.parse(symbol),
                timestamp=start + 1000 * i,
                current_price=float(mid),
                bucket_size=10.0,
                bucket_prices=edges,
                bid_volume=bid,
                ask_volume=ask,
                imbalance=imbalance,
                volume_weighted_prices=vwap,
                imbalance_ma=ma,
                order_flow_metrics=flow,
            )
        )
    return out


def _bits(value: object) -> bytes:
    return np.asarray(value, dtype=np.float64).tobytes()


def assert_same_cob(got: Sequence[COBData], want: Sequence[COBData]) -> None:
    """Every field bit for bit (NaN payloads included), mapping keys in the same order."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        where = f"snapshot at {w.timestamp}"
        assert g.symbol == w.symbol, where
        assert type(g.timestamp) is int and g.timestamp == w.timestamp, where
        for name in ("current_price", "bucket_size"):
            assert _bits(getattr(g, name)) == _bits(getattr(w, name)), (where, name)
        for name in ("bucket_prices", "bid_volume", "ask_volume", "imbalance"):
            assert _bits(getattr(g, name)) == _bits(getattr(w, name)), (where, name)
        name = "volume_weighted_prices"
        assert _bits(getattr(g, name)) == _bits(getattr(w, name)), (where, name)
        assert list(g.imbalance_ma) == list(w.imbalance_ma), where
        for k in w.imbalance_ma:
            assert _bits(g.imbalance_ma[k]) == _bits(w.imbalance_ma[k]), (where, k)
        assert list(g.order_flow_metrics) == list(w.order_flow_metrics), where
        for k, v in w.order_flow_metrics.items():
            assert _bits(g.order_flow_metrics[k]) == _bits(v), (where, k)
