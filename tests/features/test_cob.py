"""COB buckets, imbalance and moving averages against a direct pandas computation."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.features.orderbook import (
    COBConfig,
    COBSampler,
    DepthEvents,
    ImbalanceMA,
    OrderBook,
    OrderFlowConfig,
    bucketize,
    cob_heatmap,
    iter_cob,
    order_flow,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
SPAN = "20240808T2354-20240809T0005"


@cache
def spot_events(base: str) -> DepthEvents:
    assert DATA is not None
    path = DATA / "orderbook" / "binance-spot" / f"{base}_USDT-depth-{SPAN}.parquet"
    return DepthEvents(pd.read_parquet(path))


@cache
def replay_with_levels(base: str) -> tuple[list[COBData], dict[int, pd.DataFrame]]:
    """1s snapshots plus, every 7th one, the book's levels at that instant (for the oracle)."""
    events = spot_events(base)
    book = OrderBook(f"{base}/USDT")
    sampler = COBSampler(book)
    snaps: list[COBData] = []
    books: dict[int, pd.DataFrame] = {}
    for i in range(len(events)):
        for snap in sampler.advance(int(events.event_time[i])):
            if len(snaps) % 7 == 0:
                parts = []
                for side in ("bid", "ask"):
                    prices, qtys = book.side_arrays(side)
                    parts.append(pd.DataFrame({"side": side, "price": prices, "qty": qtys}))
                books[snap.timestamp] = pd.concat(parts, ignore_index=True)
            snaps.append(snap)
        events.apply(i, book)
    return snaps, books


def pandas_buckets(levels: pd.DataFrame, mid: float, size: float, n: int) -> pd.DataFrame:
    """The oracle: group levels by floor(price / size) relative to the mid's bucket."""
    centre = np.floor(mid / size + 1e-9)
    frame = levels.assign(
        k=np.floor(levels.price / size + 1e-9) - centre, pq=levels.price * levels.qty
    )
    frame = frame[frame.k.abs() <= n]
    vol = frame.pivot_table(index="k", columns="side", values="qty", aggfunc="sum")
    vol = vol.reindex(index=np.arange(-n, n + 1), columns=["bid", "ask"]).fillna(0.0)
    pq = frame.groupby("k").pq.sum().reindex(vol.index).fillna(0.0)
    total = vol.bid + vol.ask
    out = pd.DataFrame({"bid": vol.bid, "ask": vol.ask})
    out["imbalance"] = ((vol.bid - vol.ask) / total).where(total > 0, 0.0)
    edges = (centre + vol.index.to_numpy()) * size
    out["vwap"] = (pq / total).where(total > 0, edges + size / 2)
    out["edge"] = edges
    return out


@needs_data
@pytest.mark.parametrize(("base", "size"), [("BTC", 10.0), ("ETH", 1.0)])
def test_real_bucket_volumes_and_imbalance_match_pandas(base: str, size: float) -> None:
    snaps, books = replay_with_levels(base)
    assert len(snaps) > 600  # ~11 minutes of seconds, no hole
    by_time = {s.timestamp: s for s in snaps}
    for t, levels in books.items():
        snap = by_time[t]
        assert snap.bucket_size == size and len(snap.bucket_prices) == 41
        assert snap.bucket_prices[20] <= snap.current_price < snap.bucket_prices[20] + size
        expected = pandas_buckets(levels, snap.current_price, size, 20)
        np.testing.assert_allclose(snap.bucket_prices, expected.edge, rtol=0, atol=1e-9)
        np.testing.assert_allclose(snap.bid_volume, expected.bid, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(snap.ask_volume, expected.ask, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(snap.imbalance, expected.imbalance, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(snap.volume_weighted_prices, expected.vwap, rtol=1e-12)
        assert snap.bid_volume[21:].sum() == 0 and snap.ask_volume[:20].sum() == 0


@needs_data
@pytest.mark.parametrize("base", ["BTC", "ETH"])
def test_real_imbalance_moving_averages_match_pandas_rolling(base: str) -> None:
    snaps, _ = replay_with_levels(base)
    times = np.array([s.timestamp for s in snaps])
    assert np.all(np.diff(times) == 1000)
    central = pd.DataFrame([s.imbalance[15:26] for s in snaps], index=times)
    for window in (1, 5, 15, 60):
        expected = central.rolling(window).mean().to_numpy()
        got = np.array([s.imbalance_ma[window] for s in snaps])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
        assert np.isnan(got[: window - 1]).all() and not np.isnan(got[window - 1 :]).any()


@needs_data
def test_iter_cob_equals_sampler_and_uses_no_later_event() -> None:
    events = spot_events("ETH")
    snaps = list(iter_cob(events, OrderBook("ETH/USDT")))
    manual, _ = replay_with_levels("ETH")
    assert [s.timestamp for s in snaps] == [s.timestamp for s in manual]
    np.testing.assert_array_equal(snaps[123].bid_volume, manual[123].bid_volume)
    # The snapshot stamped T is the book after exactly the events with event time < T.
    target = snaps[300]
    book = OrderBook("ETH/USDT")
    for i in range(len(events)):
        if events.event_time[i] < target.timestamp:
            events.apply(i, book)
    bp, bq = book.side_arrays("bid")
    ap, aq = book.side_arrays("ask")
    direct = bucketize(bp, bq, ap, aq, book.mid(), 1.0, 20)  # type: ignore[arg-type]
    np.testing.assert_array_equal(direct.ask_volume, target.ask_volume)
    assert book.mid() == target.current_price


@needs_data
def test_cob_carries_order_flow_of_the_previous_second() -> None:
    assert DATA is not None
    path = DATA / "trades" / "binance-spot" / f"BTC_USDT-trades-{SPAN}.parquet"
    flow = order_flow(Trades.from_frame(pd.read_parquet(path)), OrderFlowConfig())
    by_t = flow.by_timestamp()
    snaps = list(iter_cob(spot_events("BTC"), OrderBook("BTC/USDT"), order_flow=by_t))
    with_flow = [s for s in snaps if s.order_flow_metrics]
    assert len(with_flow) > 500
    s = with_flow[50]
    assert s.order_flow_metrics == by_t[s.timestamp - 1000]


@needs_data
def test_heatmap_places_each_snapshot_on_the_absolute_grid() -> None:
    snaps, _ = replay_with_levels("BTC")
    heat = cob_heatmap(snaps, "total_volume")
    assert heat.matrix.shape == (len(snaps), len(heat.prices))
    assert np.all(np.diff(heat.prices) == 10.0) and np.all(np.diff(heat.times) == 1000)
    for row in (0, 200, len(snaps) - 1):
        snap = snaps[row]
        cols = np.searchsorted(heat.prices, snap.bucket_prices)
        np.testing.assert_array_equal(heat.prices[cols], snap.bucket_prices)
        np.testing.assert_array_equal(heat.matrix[row, cols], snap.bid_volume + snap.ask_volume)
        assert np.isnan(np.delete(heat.matrix[row], cols)).all()
    imb = cob_heatmap(snaps, "imbalance").matrix
    assert np.nanmax(np.abs(imb)) <= 1.0


# ------------------------------------------------------------------ synthetic
def test_bucketize_by_hand() -> None:
    b = bucketize([99.0, 100.0, 97.5], [1.0, 2.0, 4.0], [101.0, 103.2], [3.0, 1.0], 100.5, 1.0, 2)
    np.testing.assert_array_equal(b.bucket_prices, [98, 99, 100, 101, 102])
    np.testing.assert_array_equal(b.bid_volume, [0, 1, 2, 0, 0])  # 97.5 is outside, 100.0 on edge
    np.testing.assert_array_equal(b.ask_volume, [0, 0, 0, 3, 0])  # 103.2 is outside
    np.testing.assert_array_equal(b.imbalance, [0, 1, 1, -1, 0])
    np.testing.assert_array_equal(b.volume_weighted_prices, [98.5, 99, 100, 101, 102.5])
    mixed = bucketize([10.2], [1.0], [10.6], [3.0], 10.4, 1.0, 0)
    assert mixed.imbalance[0] == -0.5 and mixed.volume_weighted_prices[0] == pytest.approx(10.5)
    with pytest.raises(ValueError, match="bucket_size"):
        bucketize([], [], [], [], 100.0, 0.0, 2)


def test_imbalance_ma_matches_rolling_with_a_break_and_refresh() -> None:
    rng = np.random.default_rng(3)
    ma = ImbalanceMA((1, 3, 7), 4)
    ma._REFRESH = 5  # exercise the exact re-summation path
    times = list(range(0, 30_000, 1000)) + list(range(40_000, 60_000, 1000))
    values = rng.uniform(-1, 1, (len(times), 4))
    got = {w: [] for w in (1, 3, 7)}
    for t, v in zip(times, values, strict=True):
        for w, m in ma.push(t, v).items():
            got[w].append(m)
    frame = pd.DataFrame(values, index=times).reindex(range(0, 60_000, 1000))
    for w in (1, 3, 7):
        expected = frame.rolling(w).mean().loc[times].to_numpy()
        np.testing.assert_allclose(np.array(got[w]), expected, rtol=1e-12, equal_nan=True)


def test_config_is_strict_and_bucket_sizes_resolve() -> None:
    config = COBConfig()
    assert config.bucket_size("BTC/USDT", 60_000.0) == 10.0
    assert config.bucket_size("ETH/USDT:USDT", 2_700.0) == 1.0
    assert config.bucket_size("SOL/USDT", 150.0) == pytest.approx(0.01)
    assert COBConfig(bucket_sizes={"sol/usdt": 0.5}).bucket_size("SOL/USDT", 150.0) == 0.5
    with pytest.raises(ValidationError):
        COBConfig(bucket=20)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ma_buckets"):
        COBConfig(buckets=3, ma_buckets=5)
    with pytest.raises(ValidationError, match="ma_windows_s"):
        COBConfig(ma_windows_s=(0, 5))


def test_sampler_skips_seconds_without_a_usable_book() -> None:
    book = OrderBook("BTC/USDT")
    config = COBConfig(buckets=2, ma_buckets=1, ma_windows_s=(1, 2), bucket_sizes={"BTC/USDT": 1})
    sampler = COBSampler(book, config)
    assert sampler.advance(1_500) == []  # first event time: nothing before it
    assert sampler.advance(3_200) == []  # no snapshot yet: seconds 2 and 3 skipped
    book.apply_snapshot(1, [(98.5, 1.0)], [(101.5, 3.0)])
    snaps = sampler.advance(5_000)
    assert [s.timestamp for s in snaps] == [4_000, 5_000]
    assert snaps[0].imbalance_ma[1][1] == snaps[0].imbalance[2] == 0.0  # mid bucket empty
    assert np.isnan(snaps[0].imbalance_ma[2]).all() and not np.isnan(snaps[1].imbalance_ma[2]).any()
    np.testing.assert_array_equal(snaps[1].bid_volume, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(snaps[1].ask_volume, [0, 0, 0, 3, 0])
