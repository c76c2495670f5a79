"""Reference strategy signals: backtesting.py's crossover rule, causality, RSI levels, registry."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.backtest.signals import (
    STRATEGY_SIGNALS,
    Signals,
    buy_and_hold,
    crossed_above,
    parse_params,
    rsi_reversion,
    sma_cross,
)


def tick_walk(n: int, seed: int, tick: float = 0.01) -> np.ndarray:
    """A random walk rounded to a coarse tick, so SMAs tie exactly now and then."""
    rng = np.random.default_rng(seed)
    return np.round((100 + np.cumsum(rng.choice([-1, 0, 1], size=n) * tick)) / tick) * tick


def crossover_loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """backtesting.lib.crossover called bar by bar on the last two values (the oracle: the
    calling test skips when backtesting.py, a dev dependency, is not installed)."""
    crossover = pytest.importorskip(
        "backtesting.lib", reason="backtesting.py (a dev dependency, the oracle) is not installed"
    ).crossover
    out = np.zeros(len(a), dtype=bool)
    for i in range(1, len(a)):
        out[i] = bool(crossover(a[i - 1 : i + 1], b[i - 1 : i + 1]))
    return out


# -- the crossover rule -----------------------------------------------------------------------
def test_touching_then_crossing_is_not_a_cross_like_backtesting() -> None:
    a = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 1.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    # 1<2 then 2>2? no; 2<2? no: touching the line and leaving it never counts
    assert crossed_above(a, b).tolist() == [False] * 6
    assert crossed_above(a, b).tolist() == crossover_loop(a, b).tolist()
    assert crossed_above(b, a).tolist() == crossover_loop(b, a).tolist()
    # a strict cross on both bars does count, at the bar where it is above
    c = np.array([1.0, 3.0, 1.0])
    assert crossed_above(c, b[:3]).tolist() == [False, True, False]
    assert crossed_above(b[:3], c).tolist() == [False, False, True]


def test_nan_never_crosses() -> None:
    a = np.array([np.nan, 1.0, 3.0, np.nan, 3.0, 1.0, 3.0])
    b = np.array([2.0, np.nan, 2.0, 2.0, 2.0, 2.0, 2.0])
    expected = [False, False, False, False, False, False, True]
    assert crossed_above(a, b).tolist() == expected
    assert crossover_loop(a, b).tolist() == expected


def test_crossed_above_scalar_level_and_short_input() -> None:
    assert crossed_above(np.array([1.0, 3.0]), 2.0).tolist() == [False, True]
    assert crossed_above(np.array([5.0]), 2.0).tolist() == [False]
    assert crossed_above(np.empty(0), 2.0).tolist() == []


@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (1, 2), (3, 7)])
def test_sma_cross_equals_backtesting_crossover_on_talib_smas(fast: int, slow: int) -> None:
    close = tick_walk(5_000, seed=fast * 100 + slow)
    f, s = talib.SMA(close, fast), talib.SMA(close, slow)
    ties = np.sum(f == s)
    assert ties > 0, "the tick-rounded walk should produce exact SMA ties to test"
    sig = sma_cross(close, fast, slow)
    assert np.array_equal(sig.entries, crossover_loop(f, s))
    assert np.array_equal(sig.exits, crossover_loop(s, f))
    assert sig.entries.any() and sig.exits.any()
    assert not (sig.entries & sig.exits).any()
    assert sig.warmup == slow
    assert not sig.entries[:slow].any() and not sig.exits[:slow].any()


def test_sma_cross_uses_the_raw_close_not_a_rescaled_one() -> None:
    """Signals are defined on the prices given; scaling the close may break float ties."""
    close = tick_walk(3_000, seed=3)
    sig = sma_cross(close)
    f, s = talib.SMA(close, 10), talib.SMA(close, 30)
    assert np.array_equal(sig.entries, (np.r_[False, (f[:-1] < s[:-1]) & (f[1:] > s[1:])]))


@pytest.mark.parametrize(
    ("fast", "slow", "match"),
    [
        (30, 10, "smaller than slow"),
        (10, 10, "smaller than slow"),
        (0, 10, "fast must be an integer >= 1"),
        (2.5, 10, "fast must be an integer"),
        (True, 10, "fast must be an integer"),
        (5, "30", "slow must be an integer"),
    ],
)
def test_sma_cross_refuses_bad_periods(fast: object, slow: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sma_cross(np.arange(100.0), fast, slow)  # type: ignore[arg-type]


def test_signals_refuse_nan_close() -> None:
    close = np.arange(100.0)
    close[50] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sma_cross(close)
    with pytest.raises(ValueError, match="NaN"):
        rsi_reversion(close)


def test_short_input_gives_no_signal() -> None:
    for sig in (sma_cross(np.arange(20.0)), rsi_reversion(np.arange(10.0)), sma_cross([])):
        assert not sig.entries.any() and not sig.exits.any()
        assert len(sig.entries) == len(sig.exits) == len(sig)


# -- causality --------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 400),
    cut=st.floats(0.0, 1.0),
    name=st.sampled_from(sorted(STRATEGY_SIGNALS)),
)
def test_truncating_the_input_leaves_past_signals_unchanged(
    seed: int, n: int, cut: float, name: str
) -> None:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    k = max(1, int(cut * n))
    strategy = STRATEGY_SIGNALS[name]
    params = {"fast": 3, "slow": 8} if name == "sma_cross" else {}
    params = {"period": 5} if name == "rsi_reversion" else params
    full = strategy(close, **params)
    part = strategy(close[:k], **params)
    assert np.array_equal(part.entries, full.entries[:k])
    assert np.array_equal(part.exits, full.exits[:k])
    assert part.warmup == full.warmup


# -- RSI reversion ----------------------------------------------------------------------------
def test_rsi_reversion_on_a_dip_and_a_spike() -> None:
    up_down = [1.0, -1.0] * 10
    moves = up_down + [-1.0] * 15 + [1.0] * 40 + [-1.0] * 10  # RSI ends near 50
    close = 200 + np.cumsum(np.r_[0.0, moves])
    sig = rsi_reversion(close, period=14, lower=30, upper=70)
    r = talib.RSI(close, 14)
    (entries,) = np.nonzero(sig.entries)
    (exits,) = np.nonzero(sig.exits)
    # one entry: the first bar after the dip where RSI is back at or above 30
    assert len(entries) == 1 and len(exits) == 1
    dip_end = 1 + 20 + 15
    assert entries[0] > dip_end
    assert r[entries[0] - 1] < 30 <= r[entries[0]]
    assert np.all(r[dip_end : entries[0]] < 30)
    # one exit: the first bar after the spike where RSI is back at or below 70
    spike_end = dip_end + 40
    assert exits[0] > spike_end
    assert r[exits[0] - 1] > 70 >= r[exits[0]]
    assert np.all(r[spike_end : exits[0]] > 70)


def test_rsi_reversion_matches_its_definition_and_counts_equality_as_crossed() -> None:
    close = tick_walk(4_000, seed=11, tick=0.5)
    r = talib.RSI(close, 6)
    sig = rsi_reversion(close, period=6, lower=25, upper=75)
    prev, cur = r[:-1], r[1:]
    assert np.array_equal(sig.entries[1:], (prev < 25) & (cur >= 25))
    assert np.array_equal(sig.exits[1:], (prev > 75) & (cur <= 75))
    assert sig.entries.any() and sig.exits.any()
    assert not sig.entries[: sig.warmup].any() and not sig.exits[: sig.warmup].any()
    # an RSI landing exactly on the level: pick a level that the series hits exactly
    hits = np.flatnonzero((prev < cur) & np.isfinite(prev))
    level = next(float(cur[i]) for i in hits if 0 < cur[i] < 100 and cur[i] != 50.0)
    exact = rsi_reversion(close, period=6, lower=level, upper=max(level + 1, 99.0))
    landing = np.flatnonzero((prev < level) & (cur == level)) + 1
    assert len(landing) > 0 and exact.entries[landing].all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lower": 70, "upper": 30}, "0 < lower < upper < 100"),
        ({"lower": 0, "upper": 70}, "0 < lower < upper < 100"),
        ({"lower": 30, "upper": 100}, "0 < lower < upper < 100"),
        ({"period": 1}, "period must be an integer >= 2"),
        ({"lower": "30"}, "lower must be a number"),
    ],
)
def test_rsi_reversion_refuses_bad_levels(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rsi_reversion(np.arange(100.0), **kwargs)  # type: ignore[arg-type]


# -- buy and hold -----------------------------------------------------------------------------
def test_buy_and_hold() -> None:
    sig = buy_and_hold(10, start=3)
    assert np.flatnonzero(sig.entries).tolist() == [3]
    assert not sig.exits.any() and sig.warmup == 3 and len(sig) == 10
    with pytest.raises(ValueError, match="start"):
        buy_and_hold(10, start=10)
    with pytest.raises(ValueError, match="n must be"):
        buy_and_hold(0)


# -- the Signals type -------------------------------------------------------------------------
def test_signals_validate_their_arrays() -> None:
    ok = np.zeros(3, dtype=bool)
    with pytest.raises(TypeError, match="bool array"):
        Signals(np.zeros(3), ok, 0)
    with pytest.raises(TypeError, match="bool array"):
        Signals([False] * 3, ok, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 bars but exits has 2"):
        Signals(ok, ok[:2], 0)
    with pytest.raises(ValueError, match="warmup"):
        Signals(ok, ok, -1)


# -- registry and parameters ------------------------------------------------------------------
def test_registry_describes_every_parameter() -> None:
    assert set(STRATEGY_SIGNALS) == {"sma_cross", "rsi_reversion", "buy_and_hold"}
    close = tick_walk(500, seed=5)
    for name, strategy in STRATEGY_SIGNALS.items():
        assert strategy.name == name and strategy.description
        for param in strategy.params:
            assert param.description and isinstance(param.default, param.kind)
        assert parse_params(name, {}) == strategy.defaults
        sig = strategy(close)
        assert isinstance(sig, Signals) and len(sig) == len(close)
    custom = STRATEGY_SIGNALS["sma_cross"](close, fast=5, slow=20)
    assert np.array_equal(custom.entries, sma_cross(close, 5, 20).entries)


def test_parse_params_converts_strings_and_fills_defaults() -> None:
    assert parse_params("sma_cross", {"fast": "5"}) == {"fast": 5, "slow": 30}
    assert parse_params("sma_cross", {"fast": 5, "slow": " 50 "}) == {"fast": 5, "slow": 50}
    params = parse_params("rsi_reversion", {"lower": "25.5", "upper": 80})
    assert params == {"period": 14, "lower": 25.5, "upper": 80.0}
    assert isinstance(params["upper"], float)
    assert parse_params("buy_and_hold", {"start": "7"}) == {"start": 7}


@pytest.mark.parametrize(
    ("strategy", "raw", "match"),
    [
        ("nope", {}, "unknown strategy 'nope'; available: buy_and_hold, rsi_reversion"),
        ("sma_cross", {"fats": "5"}, r"unknown parameter\(s\) \['fats'\].*allowed: fast \(int"),
        ("sma_cross", {"fast": "1.5"}, "'fast' of strategy 'sma_cross' must be an integer"),
        ("sma_cross", {"fast": True}, "must be a int"),
        ("sma_cross", {"fast": "40"}, r"fast \(40\) must be smaller than slow \(30\)"),
        ("rsi_reversion", {"lower": "low"}, "'lower' of strategy 'rsi_reversion' must be a"),
        ("rsi_reversion", {"upper": "nan"}, "must be finite"),
        ("rsi_reversion", {"lower": "80"}, "0 < lower < upper < 100"),
        ("buy_and_hold", {"start": "-1"}, "start must be an integer >= 0"),
    ],
)
def test_parse_params_errors_say_what_is_allowed(
    strategy: str, raw: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        parse_params(strategy, raw)


def test_calling_a_strategy_with_an_unknown_parameter_fails_clearly() -> None:
    with pytest.raises(ValueError, match="allowed: period"):
        STRATEGY_SIGNALS["rsi_reversion"](np.arange(50.0), fast=3)
