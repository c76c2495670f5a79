"""Domain types refuse bad values where they are built, and keep their semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pivotal.core import (
    Action,
    BaseDataInput,
    Candles,
    COBData,
    MarketTick,
    ModelOutput,
    OHLCVBar,
    PivotPoint,
    ReplayClock,
    Symbol,
    Timeframe,
    TradingAction,
)

BTC = Symbol("BTC", "USDT")


def test_timeframes_have_exact_durations_and_divide_a_day() -> None:
    expected = {
        "1s": 1_000,
        "1m": 60_000,
        "5m": 300_000,
        "15m": 900_000,
        "1h": 3_600_000,
        "4h": 14_400_000,
        "1d": 86_400_000,
    }
    for text, ms in expected.items():
        assert Timeframe.parse(text).ms == ms
    for tf in Timeframe:
        assert 86_400_000 % tf.ms == 0, tf
    assert Timeframe.M1.floor(1_700_000_059_999) == 1_700_000_040_000


def test_unknown_timeframe_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: 1s, 1m"):
        Timeframe.parse("7m")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("BTC/USDT", "BTC/USDT"), ("eth/usdt", "ETH/USDT"), ("BTC/USDT:USDT", "BTC/USDT:USDT")],
)
def test_symbols_parse_in_ccxt_form(text: str, expected: str) -> None:
    assert str(Symbol.parse(text)) == expected


def test_symbol_errors_say_how_to_write_it() -> None:
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        Symbol.parse("BTCUSDT")
    assert Symbol.from_exchange_id("ETHUSDT") == Symbol("ETH", "USDT")
    assert Symbol.from_exchange_id("ETHBTC") == Symbol("ETH", "BTC")
    assert Symbol.from_exchange_id("BTCFDUSD") == Symbol("BTC", "FDUSD")
    with pytest.raises(ValueError, match="--symbol"):
        Symbol.from_exchange_id("XYZ")


def test_candles_schema_is_enforced_and_read_only() -> None:
    c = Candles([0, 60_000], [1.0, 2.0], [2.0, 3.0], [0.5, 1.5], [1.5, 2.5], [10, 20])
    assert c.timestamp.dtype == np.int64 and c.volume.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        c.close[0] = 3.0
    with pytest.raises(ValueError, match="equal lengths"):
        Candles([0], [1.0, 2.0], [2.0], [0.5], [1.5], [1.0])
    with pytest.raises(ValueError, match="whole milliseconds"):
        Candles([0.5], [1.0], [2.0], [0.5], [1.5], [1.0])
    with pytest.raises(TypeError, match="slice"):
        c[0]  # type: ignore[index]


def test_candles_copy_their_input() -> None:
    close = np.array([1.5, 2.5])
    c = Candles([0, 60_000], [1.0, 2.0], [2.0, 3.0], [0.5, 1.5], close, [10, 20])
    close[0] = 99.0
    assert c.close[0] == 1.5


def test_candles_round_trip_through_pandas_and_arrow() -> None:
    c = Candles(
        [0, 60_000, 120_000], [1, 2, 3], [2, 3, 4], [0.5, 1.5, 2.5], [1.5, 2.5, 3.5], [1, 2, 3]
    )
    assert Candles.from_frame(c.to_frame()).equals(c)
    assert Candles.from_frame(c.to_frame(datetime_index=True)).equals(c)
    assert Candles.from_arrow(c.to_arrow()).equals(c)
    assert c.between(60_000, 120_000).timestamp.tolist() == [60_000]
    assert Candles.concat([c[:1], c[1:]]).equals(c)


@pytest.mark.parametrize("price", [math.nan, -1.0, 0.0, math.inf])
def test_bar_and_tick_refuse_bad_prices(price: float) -> None:
    with pytest.raises(ValueError, match="OHLCVBar"):
        OHLCVBar(BTC, Timeframe.M1, 0, price, 2.0, 0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="MarketTick"):
        MarketTick(BTC, 0, price, 1.0, "buy", "1", False)


def test_bar_checks_ohlc_order_and_volume() -> None:
    with pytest.raises(ValueError, match="low <= open"):
        OHLCVBar(BTC, Timeframe.M1, 0, 1.0, 0.9, 0.5, 0.8, 1.0)
    with pytest.raises(ValueError, match="volume"):
        OHLCVBar(BTC, Timeframe.M1, 0, 1.0, 2.0, 0.5, 1.5, -1.0)
    with pytest.raises(TypeError, match="milliseconds"):
        OHLCVBar(BTC, Timeframe.M1, 1.5, 1.0, 2.0, 0.5, 1.5, 1.0)  # type: ignore[arg-type]


def test_tick_side_must_agree_with_maker_flag() -> None:
    tick = MarketTick(BTC, 0, 100.0, 2.0, "sell", "7", True, {"raw": 1})
    assert tick.volume == 200.0
    with pytest.raises(ValueError, match="contradicts"):
        MarketTick(BTC, 0, 100.0, 2.0, "buy", "7", True)


def test_pivot_cannot_be_confirmed_before_its_extreme() -> None:
    PivotPoint(BTC, 1000, 5000, 100.0, "high", 1)
    with pytest.raises(ValueError, match="precedes"):
        PivotPoint(BTC, 5000, 1000, 100.0, "high", 1)


def test_trading_action_and_model_output_validate() -> None:
    action = TradingAction(BTC, 0, "buy", 0.7, "orchestrator")
    assert action.action is Action.BUY
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TradingAction(BTC, 0, "buy", 1.5, "cnn")
    with pytest.raises(ValueError, match="allowed"):
        TradingAction(BTC, 0, "moon", 0.5, "cnn")
    out = ModelOutput("rl", "dqn", BTC, 0, 0.78, {"action": "HOLD"}, {"state_value": 0.56})
    assert out.action is Action.HOLD
    with pytest.raises(TypeError):
        out.predictions["action"] = "BUY"  # type: ignore[index]


def test_cob_data_checks_shapes() -> None:
    prices = np.arange(41, dtype=float) * 10 + 60_000
    zeros = np.zeros(41)
    cob = COBData(BTC, 0, 60_200.0, 10.0, prices, zeros + 1, zeros + 2, zeros, prices)
    assert cob.price_buckets[60_000.0]["ask_volume"] == 2.0
    with pytest.raises(ValueError, match="shape"):
        COBData(BTC, 0, 60_200.0, 10.0, prices, zeros[:3], zeros, zeros, prices)


def test_base_data_input_refuses_future_information() -> None:
    candles = Candles([0, 60_000], [1.0, 2.0], [2.0, 3.0], [0.5, 1.5], [1.5, 2.5], [1, 1])
    ok = BaseDataInput(BTC, 120_000, {"1m": candles})
    assert len(ok.ohlcv_1m) == 2 and len(ok.ohlcv_1h) == 0
    with pytest.raises(ValueError, match="closes after"):
        BaseDataInput(BTC, 100_000, {"1m": candles})
    pivot = PivotPoint(BTC, 0, 200_000, 2.0, "high", 1)
    with pytest.raises(ValueError, match="not yet confirmed"):
        BaseDataInput(BTC, 120_000, {"1m": candles}, pivot_points=(pivot,))


def test_replay_clock_never_goes_back() -> None:
    clock = ReplayClock(10)
    clock.advance_to(20)
    assert clock.now_ms() == 20
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(5)
