"""Candles from trades: batch equals pandas and Binance's own klines, streaming equals batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Candles, MarketTick, Symbol, Timeframe, TradeSide
from pivotal.core.trades import Trades
from pivotal.data.resample import resample
from pivotal.data.tick_aggregation import (
    AggregatedBars,
    RealTimeTickAggregator,
    TickBar,
    aggregate_trades,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
TRADES_FILE = "trades/binance-spot/BTC_USDT-trades-20240808T2354-20240809T0005.parquet"


def make_trades(
    ts: list[int] | np.ndarray,
    price: list[float] | np.ndarray,
    qty: list[float] | np.ndarray | None = None,
    maker: list[bool] | np.ndarray | None = None,
) -> Trades:
    n = len(ts)
    qty = np.ones(n) if qty is None else qty
    maker = np.zeros(n, bool) if maker is None else maker
    return Trades(np.asarray(ts), price, qty, maker, np.arange(n))


def random_trades(seed: int, n: int) -> Trades:
    """Arbitrary float prices and quantities, bursts of equal timestamps and long pauses."""
    rng = np.random.default_rng(seed)
    steps = np.array([0, 0, 1, 13, 400, 2_500, 61_000, 400_000])
    ts = 1_700_000_000_000 + int(rng.integers(0, 60_000)) + np.cumsum(rng.choice(steps, n))
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    return make_trades(ts, price, rng.exponential(0.37, n), rng.random(n) < 0.5)


def test_bars_by_hand() -> None:
    trades = make_trades(
        [0, 500, 999, 3_100], [10.0, 12.0, 9.0, 11.0], [1.0, 2.0, 1.0, 4.0], [0, 1, 0, 1]
    )
    filled = aggregate_trades(trades, Timeframe.S1)
    c = filled.candles
    np.testing.assert_array_equal(c.timestamp, [0, 1_000, 2_000, 3_000])
    np.testing.assert_array_equal(c.open, [10, 9, 9, 11])
    np.testing.assert_array_equal(c.high, [12, 9, 9, 11])
    np.testing.assert_array_equal(c.low, [9, 9, 9, 11])
    np.testing.assert_array_equal(c.close, [9, 9, 9, 11])
    np.testing.assert_array_equal(c.volume, [4, 0, 0, 4])
    np.testing.assert_array_equal(filled.trade_count, [3, 0, 0, 1])
    np.testing.assert_array_equal(filled.buy_volume, [2, 0, 0, 0])
    sparse = aggregate_trades(trades, Timeframe.S1, fill_empty=False)
    np.testing.assert_array_equal(sparse.candles.timestamp, [0, 3_000])
    assert sparse.bar(1) == TickBar(3_000, 11.0, 11.0, 11.0, 11.0, 4.0, 1, 0.0)


def test_empty_input_and_bad_rows() -> None:
    assert len(aggregate_trades(make_trades([], []), Timeframe.M1)) == 0
    with pytest.raises(ValueError, match="time order"):
        aggregate_trades(make_trades([5, 3], [1.0, 1.0]), Timeframe.S1)
    with pytest.raises(ValueError, match="price"):
        aggregate_trades(make_trades([1, 2], [1.0, np.nan]), Timeframe.S1)
    with pytest.raises(ValueError, match="quantit"):
        aggregate_trades(make_trades([1, 2], [1.0, 2.0], [1.0, -1.0]), Timeframe.S1)
    with pytest.raises(ValueError, match="one value per candle"):
        AggregatedBars(Timeframe.M1, Candles.empty(), np.zeros(1, np.int64), np.zeros(0))


def test_streaming_refuses_trades_out_of_time_order() -> None:
    agg = RealTimeTickAggregator(Timeframe.S1)
    agg.add(1_500, 10.0, 1.0, False)
    with pytest.raises(ValueError, match="older than the previous trade"):
        agg.add(1_400, 10.0, 1.0, False)
    with pytest.raises(ValueError, match="price"):
        agg.add(1_600, 0.0, 1.0, False)
    agg.advance(2_000)
    with pytest.raises(ValueError, match="already finished"):
        agg.add_many(make_trades([1_999], [10.0]))
    agg.add(3_200, 10.0, 1.0, True)
    assert len(agg.flush()) == 1
    with pytest.raises(ValueError, match="already finished"):
        agg.add(3_900, 10.0, 1.0, False)
    assert len(agg.add(4_000, 10.0, 1.0, False)) == 0


def test_advance_closes_bars_on_a_clock_tick() -> None:
    agg = RealTimeTickAggregator(Timeframe.S1)
    assert len(agg.advance(10_000)) == 0 and agg.current() is None  # nothing to close yet
    agg.add(10_100, 5.0, 2.0, False)
    agg.add(10_900, 6.0, 1.0, True)
    assert agg.current() == TickBar(10_000, 5.0, 6.0, 5.0, 6.0, 3.0, 2, 2.0)
    assert len(agg.advance(10_999)) == 0  # the bar ends at 11_000
    assert len(agg.advance(10_050)) == 0  # a lagging clock closes nothing
    done = agg.advance(13_500)  # the bar and two empty bars have ended
    np.testing.assert_array_equal(done.candles.timestamp, [10_000, 11_000, 12_000])
    np.testing.assert_array_equal(done.candles.close, [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(done.trade_count, [2, 0, 0])
    assert agg.current() is None
    assert len(agg.advance(13_999)) == 0
    assert len(agg.add(13_700, 7.0, 1.0, False)) == 0  # 13_000 bar is still open
    sparse = RealTimeTickAggregator(Timeframe.S1, fill_empty=False)
    sparse.add(10_100, 5.0, 2.0, False)
    assert len(sparse.advance(13_500)) == 1


def test_add_tick_takes_seed_market_ticks() -> None:
    agg = RealTimeTickAggregator(Timeframe.M1)
    tick = MarketTick(Symbol("BTC", "USDT"), 60_001, 100.0, 0.5, TradeSide.SELL, "7", True)
    agg.add_tick(tick)
    assert agg.current() == TickBar(60_000, 100.0, 100.0, 100.0, 100.0, 0.5, 1, 0.0)


ops = st.lists(
    st.tuples(st.sampled_from(["one", "many"]), st.integers(1, 300), st.booleans()),
    min_size=1,
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 1_500),
    timeframe=st.sampled_from([Timeframe.S1, Timeframe.M1]),
    fill_empty=st.booleans(),
    plan=ops,
)
def test_streaming_equals_batch(
    seed: int, n: int, timeframe: Timeframe, fill_empty: bool, plan: list[tuple[str, int, bool]]
) -> None:
    """Any mix of add / add_many / clock ticks, then flush, is bit-identical to the batch."""
    trades = random_trades(seed, n)
    ts = trades.timestamp
    rng = np.random.default_rng(seed)
    agg = RealTimeTickAggregator(timeframe, fill_empty=fill_empty)
    outputs: list[AggregatedBars] = []
    i, k = 0, 0
    while i < n:
        kind, size, tick = plan[k % len(plan)]
        k += 1
        if tick:  # a clock tick that does not pass the next trade
            low = int(ts[i - 1]) if i else int(ts[0]) - 5 * timeframe.ms
            outputs.append(agg.advance(int(rng.integers(low, int(ts[i]) + 1))))
        if kind == "many":
            outputs.append(agg.add_many(trades[i : i + size]))
        else:
            for j in range(i, min(n, i + size)):
                outputs.append(
                    agg.add(ts[j], trades.price[j], trades.quantity[j], trades.is_buyer_maker[j])
                )
        i += size
    outputs.append(agg.flush())
    streamed = AggregatedBars.concat(outputs, timeframe)
    batch = aggregate_trades(trades, timeframe, fill_empty=fill_empty)
    assert streamed.equals(batch)
    assert int(batch.trade_count.sum()) == n


# -- real Binance trades -------------------------------------------------------------------
@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    assert DATA is not None
    return pd.read_parquet(DATA / TRADES_FILE)


@needs_data
def test_real_trades_to_1s_equal_a_pandas_groupby(real: pd.DataFrame) -> None:
    trades = Trades.from_frame(real)
    key = real["timestamp"] - real["timestamp"] % 1_000
    grouped = real.groupby(key)
    expected = grouped.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("qty", "sum"),
        count=("price", "size"),
    )
    expected["buy"] = real["qty"].where(~real["is_buyer_maker"], 0.0).groupby(key).sum()
    sparse = aggregate_trades(trades, Timeframe.S1, fill_empty=False)
    assert_bars(sparse, expected)
    # filled: every second from the first to the last trade, empty ones at the previous close
    full = expected.reindex(np.arange(expected.index[0], expected.index[-1] + 1, 1_000))
    full["close"] = full["close"].ffill()
    for name in ("open", "high", "low"):
        full[name] = full[name].fillna(full["close"])
    full = full.fillna({"volume": 0.0, "count": 0, "buy": 0.0})
    filled = aggregate_trades(trades, Timeframe.S1)
    assert len(filled) == len(full) > len(sparse)
    assert_bars(filled, full)


def assert_bars(bars: AggregatedBars, expected: pd.DataFrame) -> None:
    c = bars.candles
    np.testing.assert_array_equal(c.timestamp, expected.index.to_numpy())
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(c, name), expected[name].to_numpy(), err_msg=name)
    np.testing.assert_array_equal(bars.trade_count, expected["count"].to_numpy())
    # pandas sums with Kahan compensation, we sum sequentially: equal to the last few ulps
    np.testing.assert_allclose(c.volume, expected["volume"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(bars.buy_volume, expected["buy"].to_numpy(), rtol=1e-12)


@needs_data
def test_real_trades_to_1m_equal_binance_klines(real: pd.DataFrame) -> None:
    assert DATA is not None
    bars = aggregate_trades(Trades.from_frame(real), Timeframe.M1)
    inner = slice(1, len(bars) - 1)  # the capture starts and ends mid-minute
    minutes = bars.candles.timestamp[inner]
    klines = pd.read_parquet(
        DATA / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet",
        filters=[("timestamp", ">=", int(minutes[0])), ("timestamp", "<=", int(minutes[-1]))],
    ).set_index("timestamp")
    np.testing.assert_array_equal(klines.index, minutes)
    assert len(klines) == 10
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(bars.candles, name)[inner], klines[name].to_numpy())
    np.testing.assert_array_equal(np.round(bars.candles.volume[inner], 8), klines["volume"])
    np.testing.assert_array_equal(bars.trade_count[inner], klines["trades"])
    np.testing.assert_array_equal(np.round(bars.buy_volume[inner], 8), klines["taker_buy_volume"])


@needs_data
def test_real_1s_bars_resample_and_compose(real: pd.DataFrame) -> None:
    trades = Trades.from_frame(real)
    one_s = aggregate_trades(trades, Timeframe.S1).candles
    one_m = aggregate_trades(trades, Timeframe.M1).candles
    assert_close(resample(one_s, Timeframe.S1, Timeframe.M1), one_m[1 : len(one_m) - 1])
    for target, partial, expected_bars in ((Timeframe.M5, False, 2), (Timeframe.H1, True, 2)):
        direct = resample(one_s, Timeframe.S1, target, partial=partial)
        via_1m = resample(
            resample(one_s, Timeframe.S1, Timeframe.M1, partial=partial),
            Timeframe.M1,
            target,
            partial=partial,
        )
        assert len(direct) == expected_bars
        assert_close(via_1m, direct)


def assert_close(ours: Candles, expected: Candles) -> None:
    """OHLC and open times exactly; volume to float rounding (sums of sums add differently)."""
    for name in ("timestamp", "open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(expected, name), err_msg=name)
    np.testing.assert_allclose(ours.volume, expected.volume, rtol=1e-12)


@needs_data
def test_real_trades_streamed_one_by_one_equal_batch(real: pd.DataFrame) -> None:
    trades = Trades.from_frame(real)
    agg = RealTimeTickAggregator(Timeframe.S1)
    rows = zip(
        trades.timestamp.tolist(),
        trades.price.tolist(),
        trades.quantity.tolist(),
        trades.is_buyer_maker.tolist(),
        strict=True,
    )
    outputs = [agg.add(*row) for row in rows]
    streamed = AggregatedBars.concat([*outputs, agg.flush()], Timeframe.S1)
    assert streamed.equals(aggregate_trades(trades, Timeframe.S1))
