"""The store-backed StandardizedDataProvider: every part filled in, point in time, and equal to
the bulk dataset when both see the same history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.trades import Trades
from pivotal.core.types import COBData, ModelOutput
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.features.indicators import compute_indicator_features
from pivotal.features.inputs import EncodedInputDataset, InputSpec
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.context import ContextEncoder
from pivotal.features.inputs.history import COBHistory, PredictionLog
from pivotal.features.inputs.provider import StandardizedDataProvider
from pivotal.features.pivots import williams_pivots
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

BTC = Symbol("BTC", "USDT")
SPEC = InputSpec.candles(["1m", "1h"], frames=48, min_frames=24)
N_MINUTES = 3_000


@pytest.fixture(scope="module")
def real() -> dict[Timeframe, Candles]:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    root = data / "ohlcv/binance-spot"
    m1 = pd.read_parquet(root / "1m/BTC_USDT-1m.parquet").iloc[200_000 : 200_000 + N_MINUTES]
    c1m = Candles.from_frame(m1.reset_index(drop=True))
    h1 = pd.read_parquet(root / "1h/BTC_USDT-1h.parquet").reset_index(drop=True)
    c1h_all = Candles.from_frame(h1)
    lo = np.searchsorted(c1h_all.timestamp, c1m.timestamp[0])
    hi = np.searchsorted(c1h_all.timestamp, c1m.timestamp[-1], side="right")
    return {Timeframe.M1: c1m, Timeframe.H1: c1h_all[lo:hi]}


@pytest.fixture
def store(tmp_path: Path, real: dict[Timeframe, Candles]) -> DuckDBStore:
    store = DuckDBStore(tmp_path / "s.duckdb")
    for tf, candles in real.items():
        store.write_candles(SeriesKey("binance", BTC, tf), candles)
    return store


def test_provider_equals_the_bulk_dataset_over_the_same_history(
    store: DuckDBStore, real: dict[Timeframe, Candles]
) -> None:
    columns = ColumnsConfig()
    extra = {tf: candle_columns(c, tf, columns) for tf, c in real.items()}
    start = int(real[Timeframe.M1].timestamp[0])
    end = int(real[Timeframe.M1].timestamp[-1]) + 60_000
    bulk = EncodedInputDataset(SPEC, real, start, end, extra=extra)
    provider = StandardizedDataProvider(store, "binance", SPEC, history_bars=50_000)
    rng = np.random.default_rng(3)
    picks = np.r_[0, len(bulk) - 1, rng.integers(0, len(bulk), 6)]
    for i, t in zip(picks, bulk.times(picks), strict=True):
        got = provider.encode(BTC, int(t))
        np.testing.assert_array_equal(got.x.numpy(), bulk[int(i)].numpy(), err_msg=f"t={t}")
    assert got.x.shape == bulk.layout.shape
    # the encoded channels carry real indicator and pivot values, not just zeros
    names = bulk.layout.channels.names
    assert np.abs(got.x[0, :, names.index("ind_rsi_unit")].numpy()).max() > 0.1
    assert np.abs(got.x[0, :, names.index("pivot1_high_logrel")].numpy()).max() > 0


def test_every_part_is_filled_and_known_at_t(
    store: DuckDBStore, real: dict[Timeframe, Candles]
) -> None:
    m1 = real[Timeframe.M1]
    t = int(m1.timestamp[2_000]) + 30_000  # half-way through a minute: that candle is open
    trades = Trades(
        timestamp=np.array([t - 90_000, t - 30_000, t - 20_000, t + 1_000], dtype=np.int64),
        price=np.array([1.0, 100.0, 100.0, 100.0]),
        quantity=np.array([5.0, 2.0, 3.0, 7.0]),
        is_buyer_maker=np.array([False, False, True, False]),
        trade_id=np.array(["1", "2", "3", "4"]),
    )
    store.write_trades("binance", BTC, trades)
    cob = COBHistory()
    for ts in (t - 2_000, t - 1_000, t + 1_000):
        cob.record(_snapshot(ts))
    log = PredictionLog()
    for ts in (t - 5_000, t + 5_000):
        log.record(_output("cnn", ts))
    provider = StandardizedDataProvider(
        store, "binance", SPEC, history_bars=50_000, cob=cob, predictions=log
    )
    inp = provider.build(BTC, t)

    closed = m1[:2_000]  # candle 2000 opened at t - 30 s and is still open
    assert inp.ohlcv[Timeframe.M1].timestamp[-1] == closed.timestamp[-1]
    expected = compute_indicator_features(closed)
    assert inp.technical_indicators["1m/rsi"] == pytest.approx(expected["rsi"][-1], rel=1e-12)
    assert "1h/macd" in inp.technical_indicators

    pivots = williams_pivots(closed.high, closed.low, levels=5, strength=2)
    assert len(inp.pivot_points) == len(pivots)  # exactly those confirmed by the last close
    assert all(p.confirmed_at <= t for p in inp.pivot_points)
    assert {p.level for p in inp.pivot_points} >= {1, 2, 3}

    assert inp.cob_data is not None and inp.cob_data.timestamp == t - 1_000
    assert inp.last_predictions["cnn"].timestamp == t - 5_000
    # trades of [t - 60 s, t): one aggressive buy of 2, one aggressive sell of 3
    assert inp.market_microstructure["buy_volume"] == pytest.approx(2.0)
    assert inp.market_microstructure["sell_volume"] == pytest.approx(3.0)
    assert inp.market_microstructure["trade_count"] == 2


def test_appending_data_after_t_changes_nothing(
    tmp_path: Path, real: dict[Timeframe, Candles]
) -> None:
    m1 = real[Timeframe.M1]
    t = int(m1.timestamp[1_500])
    store = DuckDBStore(tmp_path / "growing.duckdb")
    store.write_candles(SeriesKey("binance", BTC, Timeframe.H1), real[Timeframe.H1])
    key = SeriesKey("binance", BTC, Timeframe.M1)
    store.write_candles(key, m1[:1_501])  # up to the candle still open at t
    before = StandardizedDataProvider(store, "binance", SPEC, history_bars=50_000).encode(BTC, t)
    store.write_candles(key, m1)  # the future arrives
    after = StandardizedDataProvider(store, "binance", SPEC, history_bars=50_000).encode(BTC, t)
    np.testing.assert_array_equal(before.x.numpy(), after.x.numpy())
    assert before.input.technical_indicators.keys() == after.input.technical_indicators.keys()
    np.testing.assert_array_equal(
        list(before.input.technical_indicators.values()),
        list(after.input.technical_indicators.values()),
    )
    assert before.input.pivot_points == after.input.pivot_points


def test_provider_checks_its_arguments(store: DuckDBStore) -> None:
    with pytest.raises(ValueError, match="history_bars"):
        StandardizedDataProvider(store, "binance", SPEC, history_bars=10)
    with pytest.raises(ValueError, match="pivot_timeframe"):
        StandardizedDataProvider(store, "binance", SPEC, pivot_timeframe="1d")


def test_context_vector_layout_and_values(
    store: DuckDBStore, real: dict[Timeframe, Candles]
) -> None:
    t = int(real[Timeframe.M1].timestamp[2_500])
    log = PredictionLog()
    log.record(_output("cnn", t - 2_000))
    cob = COBHistory()
    cob.record(_snapshot(t - 1_000))
    spec = InputSpec.candles(["1m", "1h"], frames=48, min_frames=24)
    context = ContextEncoder(["cnn", "rl"], cob=True)
    provider = StandardizedDataProvider(
        store, "binance", spec, history_bars=50_000, predictions=log, cob=cob, context=context
    )
    got = provider.encode(BTC, t)
    names = context.layout().names
    assert got.context.shape == (context.size,)
    value = dict(zip(names, got.context.tolist(), strict=True))
    assert value["cnn_present"] == 1.0 and value["rl_present"] == 0.0
    assert value["cnn_p_buy"] == pytest.approx(0.7)
    assert value["cnn_log_age_s"] == pytest.approx(np.log1p(2.0))
    assert value["flow_buy_ratio"] == 0.5  # no trades stored
    assert value["cob_present"] == 1.0
    assert value["cob_imbalance_all"] == pytest.approx((6.0 - 4.0) / 10.0)


def test_histories_refuse_out_of_order_entries_and_stay_bounded() -> None:
    cob = COBHistory(capacity=3)
    for ts in range(10):
        cob.record(_snapshot(1_000 * ts))
    with pytest.raises(ValueError, match="time order"):
        cob.record(_snapshot(500))
    assert cob.latest(BTC, 9_500).timestamp == 9_000
    assert cob.latest(BTC, -1) is None
    assert len(cob.between(BTC, 0, 10_000)) <= 6  # trimmed to the last 3..6 entries
    log = PredictionLog()
    log.record(_output("cnn", 10))
    with pytest.raises(ValueError, match="time order"):
        log.record(_output("cnn", 5))
    assert list(log.models()) == ["cnn"]


def test_cob_columns_take_the_newest_snapshot_by_each_close() -> None:
    ts = 1_700_000_000_000 + 60_000 * np.arange(4, dtype=np.int64)
    candles = Candles(ts, np.full(4, 10.0), np.full(4, 11.0), np.full(4, 9.0), np.full(4, 10.0),
                      np.ones(4))  # fmt: skip
    snaps = [_snapshot(int(ts[1]) + 30_000), _snapshot(int(ts[1]) + 60_000)]
    cfg = ColumnsConfig(indicators=False, pivots=False, cob=True)
    layout, matrix = candle_columns(candles, "1m", cfg, snaps)
    present = matrix[:, layout.names.index("cob_present")]
    np.testing.assert_array_equal(present, [0.0, 1.0, 1.0, 1.0])
    age = matrix[:, layout.names.index("cob_log_age_s")]
    assert age[1] == 0.0  # taken exactly at candle 1's close
    assert age[2] == pytest.approx(np.log1p(60.0))
    assert np.isnan(matrix[0, 0])


def _snapshot(ts: int) -> COBData:
    prices = 100.0 + np.arange(-2, 2, dtype=np.float64)
    return COBData(
        symbol=BTC,
        timestamp=ts,
        current_price=100.0,
        bucket_size=1.0,
        bucket_prices=prices,
        bid_volume=np.array([1.0, 2.0, 3.0, 0.0]),
        ask_volume=np.array([0.0, 1.0, 1.0, 2.0]),
        imbalance=np.zeros(4),
        volume_weighted_prices=prices,
    )


def _output(name: str, ts: int) -> ModelOutput:
    return ModelOutput(
        model_type="cnn",
        model_name=name,
        symbol=BTC,
        timestamp=ts,
        confidence=0.7,
        predictions={"action_probabilities": {"BUY": 0.7, "SELL": 0.1, "HOLD": 0.2}},
    )
