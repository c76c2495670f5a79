"""The COB heatmap (time x price) and the imbalance moving averages from stored snapshots.

Each stored 1 s snapshot has its own bucket grid centred on its mid price; the heatmap puts
every snapshot's bucket sizes on one common grid (the newest snapshot's bucket size, from the
lowest to the highest bucket seen, at most :data:`MAX_PRICES` buckets around the newest mid).
The imbalance MAs per window (1 s, 5 s, 15 s, 60 s) are the mean over the central buckets of
each snapshot's stored moving averages (None while warming up).
"""

from __future__ import annotations

import numpy as np

from pivotal.data.store import MarketDataStore
from pivotal.services.schemas import CobPayload
from pivotal.services.view import QueryError

__all__ = ["MAX_PRICES", "MAX_SECONDS", "cob_payload"]

MAX_PRICES = 200
MAX_SECONDS = 3_600


def cob_payload(
    store: MarketDataStore, exchange: str, symbol: str, *, seconds: int, node_id: str
) -> CobPayload:
    """The newest ``seconds`` (1..MAX_SECONDS) of stored COB snapshots of ``symbol`` (ccxt
    form, already resolved) as a heatmap (module docstring); empty lists when none are stored."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_SECONDS:
        raise QueryError(f"seconds must be an integer from 1 to {MAX_SECONDS}, got {seconds!r}")
    try:
        cob = store.read_cob_arrays(exchange, symbol, last=seconds)
    except ValueError as exc:  # a configuration change inside the range
        raise QueryError(f"{exc}; ask for fewer seconds") from None
    if not len(cob):
        return CobPayload(
            node=node_id, symbol=symbol, t=[], prices=[], bids=[], asks=[], mid=[], imbalance={}
        )
    keep = cob.timestamp >= int(cob.timestamp[-1]) - seconds * 1000 + 1
    t = cob.timestamp[keep]
    size = float(cob.bucket_size[keep][-1])
    lows = cob.bucket_prices[keep]
    idx = np.rint(lows / size).astype(np.int64)
    mid_idx = int(np.rint(float(cob.current_price[keep][-1]) / size))
    lo = max(int(idx.min()), mid_idx - MAX_PRICES // 2)
    hi = min(int(idx.max()), mid_idx + MAX_PRICES // 2)
    width = hi - lo + 1
    bids = np.zeros((len(t), width))
    asks = np.zeros((len(t), width))
    cols = idx - lo
    inside = (cols >= 0) & (cols < width)
    rows = np.broadcast_to(np.arange(len(t))[:, None], cols.shape)
    np.add.at(bids, (rows[inside], cols[inside]), cob.bid_volume[keep][inside])
    np.add.at(asks, (rows[inside], cols[inside]), cob.ask_volume[keep][inside])
    imbalance = {}
    for window, values in sorted(cob.imbalance_ma.items()):
        part = values[keep]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(part, axis=1) if part.shape[1] else np.full(len(t), np.nan)
        imbalance[f"{window}s"] = [None if np.isnan(x) else float(x) for x in mean]
    return CobPayload.model_construct(
        node=node_id,
        symbol=symbol,
        t=t.tolist(),
        prices=((np.arange(lo, hi + 1) + 0.5) * size).tolist(),
        bids=bids.tolist(),
        asks=asks.tolist(),
        mid=cob.current_price[keep].tolist(),
        imbalance=imbalance,
    )
