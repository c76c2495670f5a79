"""The simulator is deterministic, labelled as simulated, valid, and has the planted structure
it claims: regimes, volatility clustering, and trades that rebuild its candles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Candles, Timeframe
from pivotal.data.simulator import (
    SIMULATOR_SOURCE_PREFIX,
    Regime,
    SimulatedCandles,
    SimulatorConfig,
    simulate_candles,
    simulate_trades,
)
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.data.validation import validate_candles, validate_trades


def same(a: SimulatedCandles, b: SimulatedCandles) -> bool:
    return (
        a.candles.equals(b.candles)
        and np.array_equal(a.regime, b.regime)
        and np.array_equal(a.volatility, b.volatility)
    )


def test_same_seed_same_market_other_seed_other_market() -> None:
    config = SimulatorConfig(seed=7)
    assert same(simulate_candles(5_000, config), simulate_candles(5_000, config))
    assert not simulate_candles(5_000, config).candles.equals(
        simulate_candles(5_000, dataclasses.replace(config, seed=8)).candles
    )
    first = simulate_trades(simulate_candles(2_000, config)).trades
    again = simulate_trades(simulate_candles(2_000, config)).trades
    assert all(
        np.array_equal(getattr(first, c), getattr(again, c))
        for c in ("timestamp", "price", "quantity", "is_buyer_maker", "trade_id")
    )


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    short, long = simulate_candles(1_000), simulate_candles(5_000)
    assert short.candles.equals(long.candles[:1_000])
    np.testing.assert_array_equal(short.regime, long.regime[:1_000])


def test_output_says_it_is_simulated() -> None:
    sim = simulate_candles(10, SimulatorConfig(seed=42))
    assert sim.source == "simulator:seed=42"
    assert sim.source.startswith(SIMULATOR_SOURCE_PREFIX + ":")
    assert not isinstance(sim, Candles) and isinstance(sim.candles, Candles)
    assert simulate_trades(sim).source == sim.source


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3_000),
    timeframe=st.sampled_from([Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1]),
    tail_df=st.sampled_from([None, 2.5, 5.0]),
    decimals=st.sampled_from([None, 0, 2]),
)
def test_candles_are_valid(
    seed: int, n: int, timeframe: Timeframe, tail_df: float | None, decimals: int | None
) -> None:
    config = SimulatorConfig(
        seed=seed, timeframe=timeframe, tail_df=tail_df, price_decimals=decimals
    )
    sim = simulate_candles(n, config)
    report = validate_candles(sim.candles, timeframe)
    assert report.ok, report.describe()
    c = sim.candles
    assert len(sim) == n and np.all(c.volume > 0)
    if n:
        assert c.timestamp[0] == config.start_ms
        assert np.all(np.diff(c.timestamp) == timeframe.ms)
        np.testing.assert_array_equal(c.open[1:], c.close[:-1])  # 24/7: open = previous close
    if decimals is not None:
        np.testing.assert_array_equal(np.round(c.close, decimals), c.close)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 800),
    timeframe=st.sampled_from([Timeframe.S1, Timeframe.M1, Timeframe.H4]),
    mean_trades=st.sampled_from([4.0, 9.5, 40.0]),
)
def test_trades_rebuild_the_candles(
    seed: int, n: int, timeframe: Timeframe, mean_trades: float
) -> None:
    sim = simulate_candles(n, SimulatorConfig(seed=seed, timeframe=timeframe))
    trades = simulate_trades(sim, mean_trades_per_bar=mean_trades).trades
    assert validate_trades(trades).ok
    bars = aggregate_trades(trades, timeframe)
    for name in ("timestamp", "open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(bars.candles, name), getattr(sim.candles, name))
    np.testing.assert_allclose(bars.candles.volume, sim.candles.volume, rtol=1e-12)
    assert np.all(bars.trade_count >= 4)


def test_volatility_clusters_and_regimes_differ() -> None:
    sim = simulate_candles(200_000, SimulatorConfig(seed=1))
    r = np.diff(np.log(sim.candles.close))
    a = np.abs(r)
    assert np.corrcoef(a[1:], a[:-1])[0, 1] > 0.15  # |returns| cluster
    assert abs(np.corrcoef(r[1:], r[:-1])[0, 1]) < 0.02  # returns themselves do not
    regimes = sim.config.regimes
    seen = np.bincount(sim.regime, minlength=len(regimes))
    assert np.all(seen > 0)
    realized = [r[sim.regime[1:] == i].std() for i in range(len(regimes))]
    order = np.argsort([reg.volatility for reg in regimes])
    assert np.all(np.diff(np.asarray(realized)[order]) > 0)  # calmer regimes move less
    spells = np.diff(np.flatnonzero(np.diff(sim.regime.astype(int)) != 0))
    mean_bars = np.mean([reg.mean_duration_hours for reg in regimes]) * 60
    assert 0.3 * mean_bars < spells.mean() < 3 * mean_bars


def test_without_garch_and_regimes_returns_have_no_clustering() -> None:
    config = SimulatorConfig(
        seed=2,
        regimes=(Regime("flat", drift=0.0, volatility=0.5, mean_duration_hours=1.0),),
        garch_alpha=0.0,
        garch_beta=0.0,
        tail_df=None,
    )
    sim = simulate_candles(200_000, config)
    a = np.abs(np.diff(np.log(sim.candles.close)))
    assert abs(np.corrcoef(a[1:], a[:-1])[0, 1]) < 0.02
    assert np.all(sim.regime == 0)
    np.testing.assert_allclose(sim.volatility, 0.5 * np.sqrt(60_000 / (365.25 * 86_400_000)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start_ms": 1_704_067_200_001}, "grid"),
        ({"start_price": 0.0}, "start_price"),
        ({"garch_alpha": 0.2, "garch_beta": 0.8}, "stationary"),
        ({"tail_df": 2.0}, "tail_df"),
        ({"seed": -1}, "seed"),
        ({"regimes": ()}, "regimes"),
        ({"volume_per_hour": 0.0}, "volume_per_hour"),
    ],
)
def test_config_refuses_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**changes)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="volatility"):
        Regime("x", drift=0.0, volatility=0.0, mean_duration_hours=1.0)
    with pytest.raises(ValueError, match="n_bars"):
        simulate_candles(-1)
    with pytest.raises(ValueError, match="mean_trades_per_bar"):
        simulate_trades(simulate_candles(3), mean_trades_per_bar=2.0)
