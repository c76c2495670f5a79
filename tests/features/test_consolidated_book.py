"""The consolidated multi-venue book and the rolling heatmap against direct computations:
``bucketize`` per venue, sums over venues, plain means for the imbalance averages, and
``cob_heatmap`` for the heatmap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.errors import ConfigError, DataError
from pivotal.core.symbols import Symbol
from pivotal.features.orderbook.cob import COBConfig, bucketize, cob_heatmap
from pivotal.features.orderbook.consolidated import (
    ConsolidatedBook,
    ConsolidatedBooks,
    ConsolidatedConfig,
    VenueMarket,
)
from pivotal.features.orderbook.heatmap import RollingHeatmap, heatmap_from_snapshots

COB = COBConfig(buckets=20, ma_buckets=5, ma_windows_s=(1, 5, 15), bucket_sizes={"BTC/USDT": 10.0})


def book_side(rng: np.random.Generator, mid: float, sign: int, n: int = 200) -> np.ndarray:
    """``n`` levels moving away from ``mid`` (bids for sign -1, asks for +1), best first."""
    prices = mid + sign * (0.5 + np.cumsum(rng.uniform(0.05, 3.0, n)))
    return np.column_stack([np.round(prices, 2), rng.uniform(0.001, 3.0, n)])


def config(**kw: object) -> ConsolidatedConfig:
    return ConsolidatedConfig(cob=COB, **kw)  # type: ignore[arg-type]


def test_one_venue_equals_bucketize() -> None:
    rng = np.random.default_rng(1)
    bids, asks = book_side(rng, 60_000, -1), book_side(rng, 60_000, 1)
    book = ConsolidatedBook("BTC/USDT", ["binance"], config())
    assert book.update("binance", bids, asks, 1_000)
    snap = book.snapshot(1_000)
    assert snap is not None
    assert snap.mid == (bids[0, 0] + asks[0, 0]) / 2
    ref = bucketize(bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1], snap.mid, 10.0, 20)
    np.testing.assert_array_equal(snap.bucket_prices, ref.bucket_prices)
    np.testing.assert_array_equal(snap.bid_volume, ref.bid_volume)
    np.testing.assert_array_equal(snap.ask_volume, ref.ask_volume)
    np.testing.assert_array_equal(snap.imbalance, ref.imbalance)
    np.testing.assert_allclose(snap.volume_weighted_prices, ref.volume_weighted_prices)
    np.testing.assert_array_equal(snap.venue_bid_volume[0], ref.bid_volume)
    assert snap.bid_volume.sum() > 0 and snap.ask_volume.sum() > 0
    assert snap.contributors == ("binance",)
    cob = snap.to_cob()
    assert cob.symbol == Symbol("BTC", "USDT") and cob.current_price == snap.mid
    np.testing.assert_array_equal(cob.bid_volume, snap.bid_volume)


def test_combined_is_the_sum_of_venue_rows_each_bucketized_around_the_consolidated_mid() -> None:
    rng = np.random.default_rng(2)
    venues = ["binance", "coinbase", "kraken"]
    cfg = config(markets={"BTC/USDT": {"kraken": VenueMarket(symbol="BTC/EUR", price_scale=1.1)}})
    book = ConsolidatedBook("BTC/USDT", venues, cfg)
    raw = {}
    for i, venue in enumerate(venues):
        mid = 60_000 + 7 * i if venue != "kraken" else 60_003 / 1.1
        raw[venue] = (book_side(rng, mid, -1), book_side(rng, mid, 1))
        book.update(venue, *raw[venue], 5_000 + i)
    snap = book.snapshot(6_000)
    assert snap is not None and snap.contributing.all()
    scaled = {
        v: (b * [1.1, 1], a * [1.1, 1]) if v == "kraken" else (b, a) for v, (b, a) in raw.items()
    }
    best_bid = max(b[:, 0].max() for b, _ in scaled.values())
    best_ask = min(a[:, 0].min() for _, a in scaled.values())
    assert snap.best_bid == best_bid and snap.best_ask == best_ask
    assert snap.mid == (best_bid + best_ask) / 2
    for j, venue in enumerate(venues):
        b, a = scaled[venue]
        ref = bucketize(b[:, 0], b[:, 1], a[:, 0], a[:, 1], snap.mid, 10.0, 20)
        np.testing.assert_array_equal(snap.venue_bid_volume[j], ref.bid_volume)
        np.testing.assert_array_equal(snap.venue_ask_volume[j], ref.ask_volume)
        assert snap.venue_best_bid[j] == b[:, 0].max() and snap.venue_best_ask[j] == a[:, 0].min()
        assert snap.venue_mid[j] == (b[:, 0].max() + a[:, 0].min()) / 2
    np.testing.assert_allclose(snap.bid_volume, snap.venue_bid_volume.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(snap.ask_volume, snap.venue_ask_volume.sum(axis=0), rtol=1e-12)
    total = snap.bid_volume + snap.ask_volume
    np.testing.assert_allclose(
        snap.imbalance, np.where(total > 0, (snap.bid_volume - snap.ask_volume) / total, 0.0)
    )
    # the combined volume-weighted price pools every level of every venue in the bucket
    every = np.vstack([np.vstack(s) for s in scaled.values()])
    k = np.floor(every[:, 0] / 10.0 + 1e-9).astype(int) - round(snap.bucket_prices[0] / 10)
    for j in np.flatnonzero(total):
        sel = k == j
        assert snap.volume_weighted_prices[j] == pytest.approx(
            (every[sel, 0] * every[sel, 1]).sum() / every[sel, 1].sum(), rel=1e-12
        )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    venues=st.integers(1, 5),
    levels=st.integers(1, 60),
    spread=st.floats(0.01, 50.0),
)
def test_levels_inside_the_grid_are_counted_once(
    seed: int, venues: int, levels: int, spread: float
) -> None:
    rng = np.random.default_rng(seed)
    names = [f"v{i}" for i in range(venues)]
    book = ConsolidatedBook("BTC/USDT", names, config())
    sides = []
    for name in names:
        mid = 60_000 + rng.normal(0, spread)
        bids, asks = book_side(rng, mid, -1, levels), book_side(rng, mid, 1, levels)
        sides.append((bids, asks))
        book.update(name, bids, asks, 1)
    snap = book.snapshot(1)
    assert snap is not None
    low, high = snap.bucket_prices[0], snap.bucket_prices[-1] + 10.0
    for j, (bids, asks) in enumerate(sides):
        for side, got in ((bids, snap.venue_bid_volume[j]), (asks, snap.venue_ask_volume[j])):
            inside = (side[:, 0] >= low + 1e-6) & (side[:, 0] < high - 1e-6)
            edge = np.isclose(side[:, 0], low) | np.isclose(side[:, 0], high)
            expected = side[inside, 1].sum()
            assert got.sum() == pytest.approx(expected, abs=side[edge, 1].sum() + 1e-9)
    assert snap.bid_volume.sum() == pytest.approx(snap.venue_bid_volume.sum())
    assert snap.crossed == (snap.best_bid > snap.best_ask)


def test_imbalance_averages_are_plain_means_of_the_central_buckets() -> None:
    rng = np.random.default_rng(3)
    book = ConsolidatedBook("BTC/USDT", ["a", "b"], config())
    central = []
    snaps = []
    for s in range(40):
        t = 10_000 + 1000 * s
        for venue in ("a", "b"):
            mid = 60_000 + rng.normal(0, 20)
            book.update(venue, book_side(rng, mid, -1), book_side(rng, mid, 1), t - 10)
        snap = book.snapshot(t)
        assert snap is not None
        central.append(snap.imbalance[15:26])
        snaps.append(snap)
    for i, snap in enumerate(snaps):
        for w in (1, 5, 15):
            got = snap.imbalance_ma[w]
            if i + 1 < w:
                assert np.isnan(got).all()
            else:
                np.testing.assert_allclose(got, np.mean(central[i + 1 - w : i + 1], axis=0))
    again = book.snapshot(snaps[-1].timestamp)  # a second look at the same second
    assert again is not None
    np.testing.assert_array_equal(again.imbalance_ma[5], snaps[-1].imbalance_ma[5])
    with pytest.raises(DataError, match="time order"):
        book.snapshot(snaps[-1].timestamp - 1000)


def test_stale_venues_are_flagged_and_left_out() -> None:
    rng = np.random.default_rng(4)
    book = ConsolidatedBook("BTC/USDT", ["a", "b", "c"], config(stale_after_ms=2_000))
    a = (book_side(rng, 60_000, -1), book_side(rng, 60_000, 1))
    b = (book_side(rng, 60_010, -1), book_side(rng, 60_010, 1))
    book.update("a", *a, 1_000)
    # b's venue clock is off: staleness follows the receive time when it is given
    book.update("b", *b, 900_000, received_ms=4_000)
    snap = book.snapshot(2_900)
    assert snap is not None
    assert snap.contributors == ("a", "b")
    assert snap.venue_age_ms.tolist() == [1_900, 0, -1]  # b arrives "later": age 0
    assert snap.stale.tolist() == [False, False, False]
    snap = book.snapshot(4_500)
    assert snap is not None
    assert snap.stale.tolist() == [True, False, False]
    assert snap.contributors == ("b",)
    assert snap.venue_age_ms.tolist() == [3_500, 500, -1]
    assert math.isnan(snap.venue_best_bid[2]) and snap.venue_best_bid[0] == a[0][:, 0].max()
    assert not snap.venue_bid_volume[0].any() and not snap.venue_ask_volume[0].any()
    ref = bucketize(b[0][:, 0], b[0][:, 1], b[1][:, 0], b[1][:, 1], snap.mid, 10.0, 20)
    np.testing.assert_array_equal(snap.bid_volume, ref.bid_volume)
    assert snap.best_bid_venue == snap.best_ask_venue == "b"
    assert book.snapshot(20_000) is None  # nobody fresh
    book.update("a", *a, 19_500)
    snap = book.snapshot(20_000)
    assert snap is not None and snap.contributors == ("a",)
    book.clear("a")
    assert book.snapshot(20_000) is None


def test_books_crossing_each_other_are_reported_not_refused() -> None:
    book = ConsolidatedBook("BTC/USDT", ["a", "b", "c"], config())
    book.update("a", [[101.0, 1.0]], [[102.0, 2.0]], 1)
    book.update("b", [[103.0, 3.0], [100.0, 1.0]], [[104.0, 1.0]], 1)
    snap = book.snapshot(1)
    assert snap is not None
    assert (snap.best_bid, snap.best_bid_venue, snap.best_ask, snap.best_ask_venue) == (
        103.0,
        "b",
        102.0,
        "a",
    )
    assert snap.crossed and not snap.locked and snap.mid == 102.5
    assert snap.contributors == ("a", "b")
    # a venue whose own book is crossed is broken: flagged and left out
    book.update("c", [[105.0, 1.0]], [[99.0, 1.0]], 1)
    snap = book.snapshot(2)
    assert snap is not None
    assert snap.venue_crossed.tolist() == [False, False, True] and snap.contributors == ("a", "b")
    book.update("b", [[102.0, 3.0]], [[104.0, 1.0]], 2)
    snap = book.snapshot(3)
    assert snap is not None and snap.locked and not snap.crossed
    # a one-sided venue book does not contribute either
    book.update("a", [[101.0, 1.0]], np.empty((0, 2)), 3)
    snap = book.snapshot(4)
    assert snap is not None and snap.contributors == ("b",)


def test_out_of_order_updates_are_dropped_and_counted() -> None:
    book = ConsolidatedBook("BTC/USDT", ["a"], config())
    assert book.update("a", [[100.0, 1.0]], [[101.0, 1.0]], 1_000, nonce=10)
    assert not book.update("a", [[90.0, 1.0]], [[91.0, 1.0]], 1_001, nonce=9)
    # an earlier time alone is no reason: venue book times mix clocks (see the module)
    assert book.update("a", [[99.0, 2.0], [98.0, 0.0]], [[101.0, 1.0]], 999, nonce=10)
    snap = book.snapshot(1_000)
    assert snap is not None and snap.best_bid == 99.0
    assert book.update("a", [[97.0, 2.0]], [[101.0, 1.0]], 999)  # no nonce: taken
    assert not book.update("a", [[90.0, 1.0]], [[91.0, 1.0]], 2_000, nonce=3)
    assert book.dropped["a"] == 2 and book.updates["a"] == 3


def test_bad_input_is_refused_with_the_reason() -> None:
    book = ConsolidatedBook("BTC/USDT", ["a"], config())
    with pytest.raises(DataError, match="no venue 'b'"):
        book.update("b", [[1.0, 1.0]], [[2.0, 1.0]], 1)
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        book.update("a", [1.0, 2.0], [[2.0, 1.0]], 1)
    for bad in ([[-1.0, 1.0]], [[1.0, -1.0]], [[math.nan, 1.0]], [[1.0, math.inf]]):
        with pytest.raises(DataError, match="positive"):
            book.update("a", bad, [[2.0, 1.0]], 1)
    with pytest.raises(ConfigError, match="distinct"):
        ConsolidatedBook("BTC/USDT", ["a", "a"])
    with pytest.raises(ConfigError, match="positive"):
        book.set_price_scale("a", 0.0)
    with pytest.raises(ValueError, match="price_scale"):
        VenueMarket(price_scale=-1.0)


def test_price_scale_changes_apply_to_later_updates() -> None:
    book = ConsolidatedBook("ETH/USD", ["kraken"], config())
    book.update("kraken", [[2000.0, 1.0]], [[2001.0, 1.0]], 1)
    book.set_price_scale("kraken", 1.5)
    snap = book.snapshot(1)
    assert snap is not None and snap.best_bid == 2000.0
    book.update("kraken", [[2000.0, 1.0]], [[2001.0, 1.0]], 2)
    snap = book.snapshot(2)
    assert snap is not None and snap.best_bid == 3000.0 and snap.best_ask == 3001.5


def test_books_route_venue_symbols_through_the_alias_map() -> None:
    cfg = config(
        markets={
            "BTC/USDT": {"coinbase": VenueMarket(symbol="BTC/USD")},
            "ETH/USD": {"kraken": VenueMarket(symbol="eth/chf", price_scale=1.1)},
        }
    )
    books = ConsolidatedBooks(
        ["BTC/USDT", "ETH/USD", "ETH/CHF"], ["binance", "coinbase", "kraken"], cfg
    )
    assert [b.symbol for b in books.route("coinbase", "BTC/USD")] == [Symbol("BTC", "USDT")]
    assert books.route("coinbase", "BTC/USDT") == ()
    assert [str(b.symbol) for b in books.route("kraken", "ETH/CHF")] == ["ETH/USD", "ETH/CHF"]
    fed = books.update("kraken", "ETH/CHF", [[2000.0, 1.0]], [[2001.0, 1.0]], 5)
    assert len(fed) == 2
    usd, chf = books.snapshots(5)[Symbol("ETH", "USD")], books.snapshots(5)[Symbol("ETH", "CHF")]
    assert usd is not None and chf is not None
    assert usd.best_bid == pytest.approx(2200.0) and chf.best_bid == 2000.0
    assert books.update("binance", "DOGE/USDT", [[1.0, 1.0]], [[2.0, 1.0]], 5) == ()
    assert books.unrouted[("binance", "DOGE/USDT")] == 1
    with pytest.raises(DataError, match="no consolidated book"):
        books.book("XRP/USDT")


def test_advance_gives_point_in_time_snapshots() -> None:
    book = ConsolidatedBook("BTC/USDT", ["a", "b"], config())
    events = [
        (1_500, "a", 100.0),
        (1_700, "b", 110.0),
        (2_500, "a", 200.0),
        (4_100, "b", 300.0),
    ]
    out = []
    for t, venue, bid in events:
        out += book.advance(t)
        book.update(venue, [[bid, 1.0]], [[bid + 1, 1.0]], t)
    assert [s.timestamp for s in out] == [2_000, 3_000, 4_000]
    assert [(s.best_bid, s.best_bid_venue) for s in out] == [
        (110.0, "b"),
        (200.0, "a"),
        (200.0, "a"),
    ]


# ----------------------------------------------------------------------------- heatmap


def drifting_snapshots(n: int, venues: tuple[str, ...] = ("a", "b")) -> list:
    rng = np.random.default_rng(5)
    book = ConsolidatedBook("BTC/USDT", list(venues), config(stale_after_ms=1_500))
    mid = 60_000.0
    out = []
    for s in range(n):
        mid += rng.normal(0, 40)
        t = 1_000_000 + 1000 * s
        for venue in venues:
            if venue == "b" and 20 <= s < 30:
                continue  # b goes silent for a while: its rows are NaN there
            book.update(venue, book_side(rng, mid, -1, 50), book_side(rng, mid, 1, 50), t - 5)
        snap = book.snapshot(t)
        assert snap is not None
        out.append(snap)
    return out


def test_streaming_heatmap_equals_batch_and_cob_heatmap() -> None:
    snaps = drifting_snapshots(150)
    heat = RollingHeatmap(capacity=60, width=81, venues=("a", "b"))
    lows = []
    for snap in snaps:
        heat.push(snap)
        lows.append(heat.low)
        assert len(heat) <= 60
    assert len(set(lows)) >= 3  # the price drifted and the grid moved twice
    for value in ("total_volume", "bid_volume", "ask_volume", "imbalance"):
        times, prices, values = heat.matrix(value)
        batch = heatmap_from_snapshots(snaps, capacity=60, width=81, value=value)
        np.testing.assert_array_equal(times, batch.times)
        np.testing.assert_array_equal(prices, batch.prices)
        np.testing.assert_array_equal(values, batch.matrix)
        # the independent oracle: cob_heatmap of the kept rows on its own grid, cut to ours
        oracle = cob_heatmap([s.to_cob() for s in snaps[-60:]], value)
        np.testing.assert_array_equal(times, oracle.times)
        cols = np.rint(prices / 10.0).astype(int) - int(np.rint(oracle.prices[0] / 10.0))
        inside = (cols >= 0) & (cols < oracle.matrix.shape[1])
        expected = np.full(values.shape, np.nan)
        expected[:, inside] = oracle.matrix[:, cols[inside]]
        np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert values.shape == (60, 81) and times.dtype == np.int64 and prices.dtype == np.float64
    newest = snaps[-1]
    covered = np.isin(np.rint(prices / 10), np.rint(newest.bucket_prices / 10))
    assert covered.sum() == 41 and not np.isnan(values[-1, covered]).any()
    assert np.isnan(values[-1, ~covered]).all()


def test_heatmap_per_venue_rows() -> None:
    snaps = drifting_snapshots(40)
    heat = RollingHeatmap(capacity=100, width=61, venues=("a", "b"))
    for snap in snaps:
        heat.push(snap)
    _, _, total = heat.matrix()
    _, _, a = heat.matrix(venue="a")
    _, _, b = heat.matrix(venue="b")
    silent = np.array([not s.contributing[1] for s in snaps])
    assert silent[21:30].all() and not silent[:21].any() and not silent[30:].any()
    assert np.isnan(b[silent]).all()
    np.testing.assert_allclose(total[silent], a[silent])
    both = ~silent
    np.testing.assert_allclose(total[both], a[both] + b[both], rtol=1e-12)
    with pytest.raises(DataError, match="no venue"):
        heat.matrix(venue="c")
    with pytest.raises(DataError, match="value must be"):
        heat.matrix("spread")


def test_heatmap_refuses_rows_out_of_order_or_of_another_grid() -> None:
    snaps = drifting_snapshots(3)
    heat = RollingHeatmap(capacity=10, width=41)
    heat.push(snaps[1])
    with pytest.raises(DataError, match="time order"):
        heat.push(snaps[0])
    with pytest.raises(ConfigError, match="narrower"):
        RollingHeatmap(capacity=10, width=11).push(snaps[0])
    empty = RollingHeatmap(capacity=5, width=41).matrix()
    assert empty.matrix.shape == (0, 41)
    cob = snaps[2].to_cob()
    heat.push(cob)  # COBData rows work too
    assert heat.matrix().times.tolist() == [snaps[1].timestamp, snaps[2].timestamp]
