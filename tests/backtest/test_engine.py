"""The event-driven engine: backtesting.py's trades on real data, the vectorized path's trades
on random signals, quiet-bar skipping that changes nothing, no look-ahead, determinism."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracles.backtesting_oracle import BACKTESTING_ALL_IN, run_sma_cross
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.signals import Signals
from pivotal.backtest.strategies import SignalStrategy, make_strategy
from pivotal.backtest.vectorized import run_signals
from pivotal.core.candles import Candles
from pivotal.core.ports import DecisionContext
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import TradingAction
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings

FEE = 0.001


def _real(name: str, rows: int | None = None, timeframe: str = "1m") -> Candles:
    root = shared_data_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    path = Path(root) / "ohlcv" / "binance-spot" / timeframe / f"{name}_USDT-{timeframe}.parquet"
    frame = pd.read_parquet(path)
    if rows is not None:
        frame = frame.iloc[-rows:]
    return Candles.from_frame(frame.reset_index(drop=True))


def _settings(fill: str = "next_open", **risk: object) -> TradingSettings:
    return TradingSettings(
        broker=SimulatedBrokerConfig(
            initial_cash=100_000.0,
            fees=FeeSchedule(maker=FEE, taker=FEE),
            fill_timing=fill,
        ),
        risk=RiskConfig(fraction=BACKTESTING_ALL_IN, **risk),
    )


def _assert_same_trades(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert len(ours) == len(theirs)
    for column in ("entry_bar", "exit_bar", "entry_time", "exit_time"):
        np.testing.assert_array_equal(ours[column].to_numpy(), theirs[column].to_numpy())
    # FractionalBacktest reports (p·1e-8)/1e-8, one ulp off the market price in ~9 % of
    # trades; our prices are the market's own, hence rtol 1e-15 rather than equality.
    for column in ("entry_price", "exit_price"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-15)
    np.testing.assert_allclose(ours["size"], theirs["size"], rtol=1e-12)
    np.testing.assert_allclose(ours["pnl"], theirs["pnl"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["fees"], theirs["fees"], rtol=1e-9)


@pytest.mark.parametrize(("name", "rows"), [("ETH", None), ("BTC", 150_000)])
def test_sma_cross_matches_backtesting_py_on_real_data(name: str, rows: int | None) -> None:
    candles = _real(name, rows)
    symbol = f"{name}/USDT"
    oracle = run_sma_cross(candles, fast=10, slow=30, commission=FEE, symbol=symbol)
    result = run_backtest(
        {symbol: candles},
        make_strategy("sma_cross", {"fast": 10, "slow": 30}),
        timeframe="1m",
        settings=_settings(),
    )
    assert len(oracle.trades) > 100
    _assert_same_trades(result.trades, oracle.trades)
    assert result.final_equity == pytest.approx(oracle.final_equity, rel=1e-9)
    np.testing.assert_allclose(result.equity, oracle.equity, rtol=1e-9)
    assert len(result.open_trades) == len(oracle.open_trade)
    if len(oracle.open_trade):
        assert result.open_trades["size"].iloc[0] == pytest.approx(
            oracle.open_trade["size"].iloc[0], rel=1e-12
        )
        assert result.open_trades["entry_bar"].iloc[0] == oracle.open_trade["entry_bar"].iloc[0]


class _EveryBar:
    """The same decisions, but woken at every bar (no quiet-bar skipping)."""

    def __init__(self, inner: SignalStrategy) -> None:
        self.inner = inner
        self.name = inner.name

    def warmup_bars(self) -> int:
        return self.inner.warmup_bars()

    def prepare(self, symbol: str, candles: Candles) -> None:
        self.inner.prepare(symbol, candles)

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        return self.inner.decide(context)


def _random_strategy(n: int, seed: int, rate: float = 0.01) -> SignalStrategy:
    rng = np.random.default_rng(seed)
    entries = rng.random(n) < rate
    exits = rng.random(n) < rate
    return SignalStrategy("random", lambda c: Signals(entries, exits, 0))


@pytest.mark.parametrize("risk", [{}, {"stop_loss_pct": 0.004, "take_profit_pct": 0.006}])
def test_skipping_quiet_bars_changes_nothing(risk: dict[str, float]) -> None:
    candles = _real("ETH", 20_000)
    settings = _settings(**risk)
    fast = run_backtest(
        {"ETH/USDT": candles}, _random_strategy(20_000, 3), timeframe="1m", settings=settings
    )
    slow = run_backtest(
        {"ETH/USDT": candles},
        _EveryBar(_random_strategy(20_000, 3)),
        timeframe="1m",
        settings=settings,
    )
    assert len(fast.trades) > 20
    pd.testing.assert_frame_equal(fast.trades, slow.trades)
    pd.testing.assert_frame_equal(fast.fills, slow.fills)
    np.testing.assert_allclose(fast.equity, slow.equity, rtol=1e-13)
    if risk:
        assert fast.fills["tag"].str.endswith(":stop").any()


@pytest.mark.parametrize("fill", ["next_open", "current_close"])
@pytest.mark.parametrize("seed", [0, 1])
def test_engine_and_vectorized_path_give_the_same_trades(fill: str, seed: int) -> None:
    candles = _real("BTC", 30_000)
    strategy = _random_strategy(len(candles), seed)
    event = run_backtest({"BTC/USDT": candles}, strategy, timeframe="1m", settings=_settings(fill))
    entries, exits = strategy.signals("BTC/USDT")
    fast = run_signals(
        candles,
        (entries, exits),
        symbol="BTC/USDT",
        cash=100_000.0,
        fee=FEE,
        fraction=BACKTESTING_ALL_IN,
        fill_timing=fill,
    )
    assert len(event.trades) > 50
    _assert_same_trades(event.trades, fast.trades)
    np.testing.assert_allclose(event.equity, fast.equity, rtol=1e-9)
    assert event.final_equity == pytest.approx(fast.final_equity, rel=1e-12)


def test_no_look_ahead_truncated_data_gives_the_same_past() -> None:
    candles = _real("ETH", 12_000)
    cut = 7_000
    full = run_backtest(
        {"ETH/USDT": candles},
        make_strategy("sma_cross", {"fast": 5, "slow": 20}),
        timeframe="1m",
        settings=_settings(stop_loss_pct=0.003),
    )
    part = run_backtest(
        {"ETH/USDT": candles[:cut]},
        make_strategy("sma_cross", {"fast": 5, "slow": 20}),
        timeframe="1m",
        settings=_settings(stop_loss_pct=0.003),
    )
    np.testing.assert_array_equal(full.equity[:cut], part.equity)
    done = full.trades[full.trades["exit_bar"] < cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(done, part.trades.reset_index(drop=True))


def test_same_inputs_same_result() -> None:
    candles = _real("BTC", 10_000)
    runs = [
        run_backtest(
            {"BTC/USDT": candles},
            make_strategy("rsi_reversion", {}),
            timeframe="1m",
            settings=_settings(stop_loss_pct=0.002),
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].equity, runs[1].equity)
    pd.testing.assert_frame_equal(runs[0].trades, runs[1].trades)
    assert runs[0].events == runs[1].events


def _equity_identity(result) -> None:  # type: ignore[no-untyped-def]
    """final equity = initial cash + closed trades' net PnL + open trades' PnL."""
    expected = result.initial_cash + result.trades["pnl"].sum() + result.open_trades["pnl"].sum()
    assert result.final_equity == pytest.approx(expected, rel=1e-9)


def test_two_symbols_share_one_account() -> None:
    btc, eth = _real("BTC", 20_000), _real("ETH", 20_000)
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=FEE, taker=FEE)),
        risk=RiskConfig(fraction=0.5),
    )
    result = run_backtest(
        {"BTC/USDT": btc, "ETH/USDT": eth},
        make_strategy("sma_cross", {"fast": 10, "slow": 30}),
        timeframe="1m",
        settings=settings,
    )
    assert set(result.trades["symbol"]) == {"BTC/USDT", "ETH/USDT"}
    assert len(result.equity) == len(np.union1d(btc.timestamp, eth.timestamp))
    _equity_identity(result)
    # Entry and exit bars index the shared timeline: the bar's time is the trade's time.
    for row in result.trades.itertuples():
        assert result.timestamps[row.entry_bar] == row.entry_time


def test_circuit_breaker_halts_entries_and_is_reported() -> None:
    candles = _real("ETH", 30_000)
    result = run_backtest(
        {"ETH/USDT": candles},
        make_strategy("sma_cross", {"fast": 3, "slow": 8}),
        timeframe="1m",
        settings=_settings(max_drawdown=0.01),
    )
    trips = [e for e in result.events if e["kind"] == "risk_circuit_breaker"]
    assert len(trips) == 1
    tripped_at = trips[0]["timestamp"]
    entries = result.fills[result.fills["tag"].str.endswith(":entry")]
    assert (entries["timestamp"] <= tripped_at).all()
    refused = [e for e in result.events if e["kind"] == "risk_refused"]
    assert refused and all("circuit breaker" in e["message"] for e in refused)
    peak = np.maximum.accumulate(result.equity)
    assert (1 - result.equity / peak).max() >= 0.01
    _equity_identity(result)


def test_higher_timeframes_show_only_closed_bars() -> None:
    candles = _real("BTC", 5_000)
    hourly = _real("BTC", None, "1h")
    seen: list[tuple[int, int]] = []

    class Probe(_EveryBar):
        def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
            bars = context.higher[Timeframe.H1]
            if len(bars):
                seen.append((context.timestamp, int(bars.timestamp[-1])))
            return ()

    run_backtest(
        {"BTC/USDT": candles},
        Probe(make_strategy("buy_and_hold", {})),
        timeframe="1m",
        settings=_settings(),
        higher={"BTC/USDT": {Timeframe.H1: hourly}},
    )
    assert len(seen) == len(candles)
    hour = Timeframe.H1.ms
    for now, last_open in seen:
        assert last_open + hour <= now < last_open + 2 * hour


def test_bad_input_is_refused_with_a_reason() -> None:
    candles = _real("BTC", 1_000)
    with pytest.raises(ValueError, match="aligned"):
        run_backtest({"BTC/USDT": candles}, make_strategy("buy_and_hold"), timeframe="1h")
    with pytest.raises(ValueError, match="at least one symbol"):
        run_backtest({}, make_strategy("buy_and_hold"), timeframe="1m")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("moon")


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cap=st.floats(0.05, 0.95),
    drawdown=st.sampled_from([None, 0.02, 0.05]),
)
def test_random_signals_never_breach_the_risk_limits(
    seed: int, cap: float, drawdown: float | None
) -> None:
    candles = planted_candles(3_000, seed=seed % 7)
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=FEE, taker=FEE)),
        risk=RiskConfig(
            fraction=1.0, max_position_fraction=cap, stop_loss_pct=0.004, max_drawdown=drawdown
        ),
    )
    result = run_backtest(
        {"BTC/USDT": candles}, _random_strategy(len(candles), seed, 0.05), timeframe="1m",
        settings=settings,
    )  # fmt: skip
    entries = result.fills[result.fills["tag"].str.endswith(":entry")]
    for fill in entries.itertuples():
        equity_before = result.equity[fill.bar - 1]  # flat before a long-only entry
        assert fill.quantity * fill.price <= cap * equity_before * (1 + 1e-12)
    trips = [e["timestamp"] for e in result.events if e["kind"] == "risk_circuit_breaker"]
    if drawdown is None:
        assert not trips
    elif trips:
        assert (entries["timestamp"] <= trips[0]).all()
    else:
        peak = np.maximum.accumulate(result.equity)
        assert (1 - result.equity / peak).max() < drawdown
    _equity_identity(result)
