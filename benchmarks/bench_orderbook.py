"""Order-book replay speed: depth updates per second on the real Binance BTC/USDT spot capture.

Run ``python benchmarks/bench_orderbook.py``. An update is one level change (one row of the
depth parquet) applied to the book; an event is one diff-depth message. The replay applies the
REST snapshot and every diff with full sequencing checks, in one thread. Grouping the parquet
rows into events (``DepthEvents``) is timed separately. The peer is a plain pandas replay:
``groupby`` over events, applying each group's rows to two dicts, with no sequencing.
Each figure is the best of 5 runs after one warm-up. Target (issue): >= 100,000 updates/s.
"""

from __future__ import annotations

import pandas as pd

from pivotal.features.orderbook import COBConfig, DepthEvents, OrderBook, iter_cob, replay_depth
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.timing import best_of

DEPTH_FILE = "orderbook/binance-spot/BTC_USDT-depth-20240808T2354-20240809T0005.parquet"


def pandas_peer(frame: pd.DataFrame) -> tuple[dict[float, float], dict[float, float]]:
    """Plain pandas: group rows by event and set each level into a per-side dict."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for _, group in frame.groupby(["is_snapshot", "final_update_id"], sort=False, observed=True):
        for side, price, qty in zip(group.side, group.price, group.qty, strict=True):
            book = bids if side == "bid" else asks
            if qty > 0:
                book[price] = qty
            else:
                book.pop(price, None)
    return bids, asks


def main() -> None:
    data = shared_data_dir()
    if data is None:
        print(SKIP_REASON)
        return
    frame = pd.read_parquet(data / DEPTH_FILE)
    events = DepthEvents(frame)
    counts = replay_depth(events, OrderBook("BTC/USDT"))
    updates, n_events = counts["updates"], counts["applied"]
    print(
        f"file: {DEPTH_FILE}: {len(frame):,} rows, {len(events):,} events "
        f"({counts['snapshots']} snapshot), {updates:,} level updates applied"
    )
    group_s = best_of(lambda: DepthEvents(frame))
    replay_s = best_of(lambda: replay_depth(events, OrderBook("BTC/USDT")))
    cob_s = best_of(lambda: list(iter_cob(events, OrderBook("BTC/USDT"), COBConfig())), 3)
    peer_s = best_of(lambda: pandas_peer(frame), 3)
    print(f"group rows into events : {group_s * 1e3:8.1f} ms")
    print(
        f"replay (book + seq.)   : {replay_s * 1e3:8.1f} ms  {updates / replay_s:12,.0f} "
        f"updates/s  {n_events / replay_s:10,.0f} events/s"
    )
    print(
        f"group + replay         : {(group_s + replay_s) * 1e3:8.1f} ms  "
        f"{updates / (group_s + replay_s):12,.0f} updates/s"
    )
    print(f"replay + 1s COB        : {cob_s * 1e3:8.1f} ms  {updates / cob_s:12,.0f} updates/s")
    print(
        f"pandas groupby peer    : {peer_s * 1e3:8.1f} ms  {updates / peer_s:12,.0f} "
        f"updates/s  (pivotal is {peer_s / replay_s:.1f}x faster)"
    )


if __name__ == "__main__":
    main()
