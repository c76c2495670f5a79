"""The L2 book: real replays against the bookTicker oracle, sequencing, gaps and resyncs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core.errors import DataError
from pivotal.features.orderbook import (
    DepthEvents,
    DiffOutcome,
    OrderBook,
    Sequencing,
    iter_replay,
    levels_from_pairs,
    replay_depth,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
FILES = {
    ("spot", "BTC"): "BTC_USDT-depth-20240808T2354-20240809T0005.parquet",
    ("spot", "ETH"): "ETH_USDT-depth-20240808T2354-20240809T0005.parquet",
    ("usdm", "BTC"): "BTC_USDT-depth-20240808T2354-20240808T2359.parquet",
    ("usdm", "ETH"): "ETH_USDT-depth-20240808T2354-20240808T2359.parquet",
}
MIDNIGHT_MS = 1_723_161_600_000  # 2024-08-09 00:00 UTC


def _path(market: str, base: str) -> Path:
    assert DATA is not None
    return DATA / "orderbook" / f"binance-{market}" / FILES[(market, base)]


@cache
def depth_frame(market: str, base: str) -> pd.DataFrame:
    return pd.read_parquet(_path(market, base))


@cache
def book_ticker(market: str, base: str) -> dict[int, tuple[float, float]]:
    path = _path(market, base)
    frame = pd.read_parquet(path.with_name(path.name.replace("depth", "bookticker")))
    return {
        int(u): (float(b), float(a))
        for u, b, a in zip(frame.update_id, frame.bid_price, frame.ask_price, strict=True)
    }


def new_book(market: str, base: str) -> OrderBook:
    return OrderBook(f"{base}/USDT", Sequencing(market))


def levels(book: OrderBook) -> tuple[dict[float, float], dict[float, float]]:
    return tuple(dict(zip(*book.side_arrays(s), strict=True)) for s in ("bid", "ask"))  # type: ignore[return-value]


# ------------------------------------------------------------------ real data
@needs_data
@pytest.mark.parametrize(("market", "base"), list(FILES))
def test_real_replay_matches_book_ticker_and_never_crosses(market: str, base: str) -> None:
    events = DepthEvents(depth_frame(market, base))
    ticker = book_ticker(market, base)
    book = new_book(market, base)
    checks = 0
    for step in iter_replay(events, book):
        if step.outcome is not DiffOutcome.APPLIED:
            continue
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None
        assert bid[0] < ask[0], f"crossed book after u={step.final_update_id}"
        expected = ticker.get(book.last_update_id)
        if expected is not None:
            checks += 1
            assert (bid[0], ask[0]) == expected, f"u={book.last_update_id}"
    assert checks >= 500  # README: 1,072 / 1,056 / 629 checks; ETH USD-M has 551
    assert book.gaps == 0 and book.resyncs == 0 and book.snapshots == 1
    assert 0 < book.dropped <= 10  # diffs received before the snapshot and older than it


@needs_data
def test_spot_snapshot_to_diffs_continuity_across_midnight() -> None:
    events = DepthEvents(depth_frame("spot", "BTC"))
    book = new_book("spot", "BTC")
    steps = list(iter_replay(events, book))
    snap = next(s for s in steps if s.is_snapshot)
    # Diffs received before the snapshot were buffered; the first one newer than it straddles
    # lastUpdateId + 1 and was applied when the snapshot arrived.
    newer = np.flatnonzero(~events.is_snapshot & (events.final_update_id > snap.final_update_id))
    first = newer[0]
    assert first < snap.index
    assert events.first_update_id[first] <= snap.final_update_id + 1
    assert book.applied == len(newer)  # every later diff applied, none lost
    times = events.event_time[newer]
    assert (times < MIDNIGHT_MS).any() and (times >= MIDNIGHT_MS).any()
    assert book.gaps == 0 and book.in_sync


@needs_data
@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_injected_gap_is_counted_and_resync_restores_the_book(market: str) -> None:
    frame = depth_frame(market, "BTC")
    events = DepthEvents(frame)
    k = len(events) // 2
    gapped = frame.drop(frame.index[events.starts[k] : events.ends[k]])
    book = new_book(market, "BTC")
    outcomes = [s.outcome for s in iter_replay(DepthEvents(gapped), book)]
    assert outcomes.count(DiffOutcome.GAP) == 1
    assert outcomes[k] is DiffOutcome.GAP  # the event after the missing one
    assert set(outcomes[k + 1 :]) == {DiffOutcome.BUFFERED}
    assert book.gaps == 1 and not book.in_sync and len(book) == 0
    gap = book.gap_log[0]
    assert gap.first_update_id == events.first_update_id[k + 1]
    expected = events.final_update_id[k - 1] + (1 if market == "spot" else 0)
    assert gap.expected == expected

    # Resync from a snapshot taken later by an intact book: buffered events catch up.
    reference = new_book(market, "BTC")
    for i in range(k + 50):
        events.apply(i, reference)
    bids, asks = (np.column_stack(reference.side_arrays(s)) for s in ("bid", "ask"))
    book.apply_snapshot(reference.last_update_id, bids, asks)
    for i in range(k + 50, len(events)):
        events.apply(i, reference)
    assert book.resyncs == 1 and book.in_sync and book.gaps == 1
    assert levels(book) == levels(reference)
    assert book.last_update_id == reference.last_update_id


@needs_data
@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_out_of_order_events_force_a_resync(market: str) -> None:
    frame = depth_frame(market, "ETH")
    events = DepthEvents(frame)
    k = len(events) // 3
    a, b, c = events.starts[k], events.starts[k + 1], events.ends[k + 1]
    order = np.r_[0:a, b:c, a:b, c : len(frame)]  # events k and k+1 swapped
    book = new_book(market, "ETH")
    outcomes = [s.outcome for s in iter_replay(DepthEvents(frame.iloc[order]), book)]
    assert outcomes[k] is DiffOutcome.GAP
    assert outcomes[k + 1] is DiffOutcome.BUFFERED
    assert book.gaps == 1 and not book.in_sync


@needs_data
def test_duplicate_event_is_dropped_and_counted_book_stays_exact() -> None:
    frame = depth_frame("spot", "BTC")
    events = DepthEvents(frame)
    k = len(events) // 2
    dup = frame.iloc[events.starts[k] : events.ends[k]].copy()
    dup["local_ts_ns"] += 1  # a redelivery: same event, received again later
    at = events.ends[k + 2]
    replayed = pd.concat([frame.iloc[:at], dup, frame.iloc[at:]])
    book = new_book("spot", "BTC")
    outcomes = [s.outcome for s in iter_replay(DepthEvents(replayed), book)]
    assert outcomes[k + 3] is DiffOutcome.STALE
    assert book.gaps == 0 and book.dropped == 2 + 1  # two pre-snapshot diffs + the duplicate
    reference = new_book("spot", "BTC")
    replay_depth(events, reference)
    assert levels(book) == levels(reference)


# ------------------------------------------------------------------ synthetic
def synthetic_diffs(n: int, seed: int = 7) -> list[tuple[int, int, list, list]]:
    """Seeded random diffs around 100.0: (U, u, bids, asks) with contiguous ids from 11."""
    rng = np.random.default_rng(seed)
    out, next_id = [], 11
    for _ in range(n):
        size = int(rng.integers(1, 6))
        bids = [(round(99.9 - 0.1 * int(rng.integers(0, 20)), 1), float(rng.integers(0, 4)))]
        asks = [(round(100.1 + 0.1 * int(rng.integers(0, 20)), 1), float(rng.integers(0, 4)))]
        out.append((next_id, next_id + size - 1, bids, asks))
        next_id += size
    return out


SNAP_BIDS = [(99.9, 1.0), (99.8, 2.0)]
SNAP_ASKS = [(100.1, 1.5), (100.2, 3.0)]


def test_synthetic_sequence_applies_and_reports_depth() -> None:
    book = OrderBook("BTC/USDT")
    assert book.apply_diff("BTC/USDT", 5, 10, [(99.9, 9.0)], []) is DiffOutcome.BUFFERED
    assert book.apply_snapshot(10, SNAP_BIDS, SNAP_ASKS) == 0  # buffered one is stale
    assert book.dropped == 1 and book.best_bid() == (99.9, 1.0) and book.mid() == 100.0
    for first, final, bids, asks in synthetic_diffs(200):
        assert book.apply_diff("BTC/USDT", first, final, bids, asks) is DiffOutcome.APPLIED
    bids, asks = book.depth(3)
    assert bids.shape[1] == 2 and np.all(np.diff(bids[:, 0]) < 0)
    assert np.all(np.diff(asks[:, 0]) > 0)
    assert bids[0, 0] == book.best_bid()[0] and asks[0, 0] == book.best_ask()[0]  # type: ignore[index]
    assert book.gaps == 0 and book.applied == 200


def test_synthetic_gap_then_resync_and_buffer_replay() -> None:
    diffs = synthetic_diffs(10)
    book = OrderBook("ETH/USDT")
    book.apply_snapshot(10, SNAP_BIDS, SNAP_ASKS)
    book.apply_diff("ETH/USDT", *diffs[0])
    assert book.apply_diff("ETH/USDT", *diffs[2]) is DiffOutcome.GAP
    assert book.apply_diff("ETH/USDT", *diffs[3]) is DiffOutcome.BUFFERED
    assert (book.gaps, book.in_sync, book.best_bid()) == (1, False, None)
    # A snapshot at diffs[1]'s final id lets the two buffered events apply in order.
    assert book.apply_snapshot(diffs[1][1], SNAP_BIDS, SNAP_ASKS) == 2
    assert book.resyncs == 1 and book.in_sync and book.last_update_id == diffs[3][1]


def test_usdm_continuity_uses_pu() -> None:
    book = OrderBook("BTC/USDT:USDT", "usdm")
    book.apply_snapshot(100, SNAP_BIDS, SNAP_ASKS)
    assert book.apply_diff("BTC/USDT:USDT", 90, 100, [], [], 80) is DiffOutcome.APPLIED
    assert book.apply_diff("BTC/USDT:USDT", 120, 130, [(99.9, 0)], [], 100) is DiffOutcome.APPLIED
    assert book.best_bid() == (99.8, 2.0)
    assert book.apply_diff("BTC/USDT:USDT", 140, 150, [], [], 135) is DiffOutcome.GAP
    with pytest.raises(ValueError, match="pu"):
        book.apply_diff("BTC/USDT:USDT", 151, 160, [], [])


def test_wrong_symbol_diff_is_a_clear_error() -> None:
    book = OrderBook("BTC/USDT")
    book.apply_snapshot(10, SNAP_BIDS, SNAP_ASKS)
    with pytest.raises(DataError, match=r"ETH/USDT.*BTC/USDT order book"):
        book.apply_diff("ETH/USDT", 11, 11, [(99.9, 1.0)], [])
    assert book.apply_diff("btc/usdt", 11, 11, [], []) is DiffOutcome.APPLIED


@pytest.mark.parametrize("level", [(float("nan"), 1.0), (100.0, -1.0), (0.0, 1.0)])
def test_bad_levels_are_refused(level: tuple[float, float]) -> None:
    book = OrderBook("BTC/USDT")
    with pytest.raises(DataError, match="book level"):
        book.apply_snapshot(1, [level], [])
    book.apply_snapshot(1, SNAP_BIDS, SNAP_ASKS)
    with pytest.raises(DataError, match="book level"):
        book.apply_diff("BTC/USDT", 2, 2, [level], [])


def test_wire_levels_and_bad_frames() -> None:
    assert levels_from_pairs([["100.5", "0.25"]]) == [(100.5, 0.25)]
    with pytest.raises(DataError, match="lacks columns"):
        DepthEvents(pd.DataFrame({"price": [1.0]}))
