"""Order flow per second: batch against pandas, streaming twin against batch."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pivotal.core.trades import Trades
from pivotal.features.orderbook import OrderFlow, OrderFlowAccumulator, OrderFlowConfig, order_flow
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
FIELDS = ("buy_volume", "sell_volume", "buy_notional", "sell_notional", "large_buy_volume")
COUNTS = ("trade_count", "large_buy_count", "large_sell_count")


def trades(ts: list[int], price: list[float], qty: list[float], maker: list[bool]) -> Trades:
    return Trades(np.array(ts), np.array(price), np.array(qty), np.array(maker), np.arange(len(ts)))


def test_order_flow_by_hand() -> None:
    t = trades(
        [1_000, 1_400, 1_999, 4_000],
        [100.0, 101.0, 99.0, 100.0],
        [1.0, 2.0, 3.0, 0.5],
        [False, True, False, True],
    )
    flow = order_flow(t, OrderFlowConfig(large_quantity=2.0, large_notional=None))
    np.testing.assert_array_equal(flow.timestamp, [1_000, 2_000, 3_000, 4_000])
    np.testing.assert_array_equal(flow.buy_volume, [4.0, 0, 0, 0])
    np.testing.assert_array_equal(flow.sell_volume, [2.0, 0, 0, 0.5])
    np.testing.assert_array_equal(flow.buy_notional, [397.0, 0, 0, 0])
    np.testing.assert_array_equal(flow.trade_count, [3, 0, 0, 1])
    np.testing.assert_array_equal(flow.large_buy_count, [1, 0, 0, 0])
    np.testing.assert_array_equal(flow.large_sell_count, [1, 0, 0, 0])
    np.testing.assert_array_equal(flow.large_sell_volume, [2.0, 0, 0, 0])
    np.testing.assert_array_equal(flow.buy_ratio, [4 / 6, np.nan, np.nan, 0.0])
    assert flow.metrics(0)["buy_ratio"] == pytest.approx(2 / 3)
    notional = order_flow(t, OrderFlowConfig(large_notional=250.0))
    np.testing.assert_array_equal(notional.large_sell_count, [0, 0, 0, 0])  # 202 < 250
    np.testing.assert_array_equal(notional.large_buy_count, [1, 0, 0, 0])  # 297 >= 250


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        order_flow(trades([2_000, 1_000], [1.0, 1.0], [1.0, 1.0], [False, False]))
    acc = OrderFlowAccumulator()
    acc.update(trades([5_000], [1.0], [1.0], [False]))
    with pytest.raises(ValueError, match="time order"):
        acc.update(trades([4_000], [1.0], [1.0], [False]))
    with pytest.raises(ValidationError):
        OrderFlowConfig(large_notional=-1.0)
    with pytest.raises(ValidationError):
        OrderFlowConfig(window=5)  # type: ignore[call-arg]
    assert len(order_flow(trades([], [], [], []))) == 0


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_real_trades_match_pandas_groupby() -> None:
    assert DATA is not None
    path = DATA / "trades" / "binance-spot" / "BTC_USDT-trades-20240808T2354-20240809T0005.parquet"
    frame = pd.read_parquet(path)
    flow = order_flow(Trades.from_frame(frame), OrderFlowConfig(large_notional=50_000.0))
    second = frame.timestamp // 1000 * 1000
    notional = frame.price * frame.qty
    buy = ~frame.is_buyer_maker
    large = notional >= 50_000.0
    expected = (
        pd.DataFrame(
            {
                "buy_volume": frame.qty.where(buy, 0.0),
                "sell_volume": frame.qty.where(~buy, 0.0),
                "buy_notional": notional.where(buy, 0.0),
                "trade_count": 1,
                "large_sell_count": (~buy & large).astype(int),
            }
        )
        .groupby(second)
        .sum()
    )
    expected = expected.reindex(range(second.min(), second.max() + 1000, 1000), fill_value=0)
    got = flow.to_frame().set_index("timestamp")
    assert list(got.index) == list(expected.index)
    for column in expected.columns:
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-9)
    ratio = expected.buy_volume / (expected.buy_volume + expected.sell_volume)
    np.testing.assert_allclose(got.buy_ratio, ratio, rtol=1e-12)
    assert got.large_sell_count.sum() > 0


@st.composite
def trade_stream(draw: st.DrawFn) -> tuple[Trades, list[int]]:
    gaps = draw(st.lists(st.integers(0, 2_500), min_size=1, max_size=60))
    n = len(gaps)
    ts = (10_000 + np.cumsum(gaps)).tolist()
    qty = draw(st.lists(st.floats(0.001, 5.0), min_size=n, max_size=n))
    maker = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return trades(ts, [100.0] * n, qty, maker), cuts


@settings(max_examples=60, deadline=None)
@given(trade_stream())
def test_streaming_twin_equals_batch(case: tuple[Trades, list[int]]) -> None:
    t, cuts = case
    config = OrderFlowConfig(interval_ms=1000, large_quantity=2.5)
    acc = OrderFlowAccumulator(config)
    bounds = [0, *cuts, len(t)]
    parts = [acc.update(t[a:b]) for a, b in pairwise(bounds)]
    streamed = OrderFlow.concat([*parts, acc.flush()])
    batch = order_flow(t, config)
    np.testing.assert_array_equal(streamed.timestamp, batch.timestamp)
    for name in COUNTS:
        np.testing.assert_array_equal(getattr(streamed, name), getattr(batch, name))
    for name in FIELDS:
        np.testing.assert_allclose(getattr(streamed, name), getattr(batch, name), rtol=1e-12)
