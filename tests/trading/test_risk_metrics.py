"""Risk metrics and the equity tracker: VaR/ES, exposure, drawdown, and observe ≡ observe_many."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.orders import AccountSnapshot, PositionSnapshot
from pivotal.trading.risk import (
    EquityTracker,
    RiskAlert,
    RiskConfig,
    RiskManager,
    drawdown,
    historical_var,
)

HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_704_412_800_000  # 2024-01-05 00:00 UTC


def account(equity: float, positions: tuple[tuple[str, float, float], ...] = ()) -> AccountSnapshot:
    pos = {s: PositionSnapshot(s, q, p, p, 0.0, 0.0, 0.0, 0) for s, q, p in positions}
    return AccountSnapshot(T0, "USDT", equity, equity, 0.0, equity, 1.0, 0.0, 0.0, 0.0, pos)


def equity_from_returns(returns: np.ndarray, start: float = 10_000.0) -> np.ndarray:
    return start * np.cumprod(np.concatenate(([1.0], 1.0 + returns)))


# ---------------------------------------------------------------------- VaR and ES
def test_var_and_expected_shortfall_match_numpy_on_a_known_series() -> None:
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, 0.01, 200)
    equity = equity_from_returns(returns)
    rm = RiskManager(RiskConfig(var_confidence=0.95, var_window=500))
    rm.observe_many(T0 + HOUR * np.arange(equity.size), equity)
    kept = rm.state().returns
    np.testing.assert_allclose(kept, returns, rtol=0, atol=1e-12)
    now = float(equity[-1])
    m = rm.metrics(account(now))
    cut = np.quantile(returns, 0.05)
    assert m.var == pytest.approx(-cut * now, rel=1e-9)
    assert m.expected_shortfall == pytest.approx(-returns[returns <= cut].mean() * now, rel=1e-6)
    assert m.expected_shortfall >= m.var > 0
    assert m.n_returns == 200


def test_historical_var_by_hand() -> None:
    # 40 returns: −4 %, −3 %, −2 %, −1 %, then 36 of +1 %
    returns = np.array([-0.04, -0.03, -0.02, -0.01] + [0.01] * 36)
    var, es = historical_var(returns, 0.9)
    # quantile 0.1 at position 0.1 × 39 = 3.9: −1 % + 0.9 × (1 % − (−1 %)) = 0.8 %
    assert var == pytest.approx(-0.008)
    # tail ≤ 0.008: the four losses, mean −2.5 %
    assert es == pytest.approx(0.025)


def test_var_is_nan_until_30_returns() -> None:
    rm = RiskManager()
    equity = equity_from_returns(np.full(29, 0.001))
    rm.observe_many(T0 + HOUR * np.arange(30), equity)
    m = rm.metrics(account(float(equity[-1])))
    assert m.n_returns == 29 and math.isnan(m.var) and math.isnan(m.expected_shortfall)
    rm.observe(T0 + 30 * HOUR, float(equity[-1]) * 0.99)
    assert not math.isnan(rm.metrics(account(1.0)).var)
    assert historical_var([0.01] * 10, 0.95) == (pytest.approx(math.nan, nan_ok=True),) * 2
    with pytest.raises(ValueError, match="confidence"):
        historical_var([0.0] * 40, 1.5)


def test_var_window_keeps_only_the_latest_returns() -> None:
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0, 0.02, 120)
    equity = equity_from_returns(returns)
    rm = RiskManager(RiskConfig(var_window=50))
    rm.observe_many(T0 + HOUR * np.arange(70), equity[:70])
    for i in range(70, equity.size):
        rm.observe(T0 + HOUR * i, float(equity[i]))
    np.testing.assert_allclose(rm.state().returns, returns[-50:], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- exposure, drawdown, PnL
def test_exposure_leverage_drawdown_and_daily_pnl() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.5))
    rm.observe_many(
        np.array([T0, T0 + HOUR, T0 + 2 * HOUR, T0 + DAY]),
        np.array([10_000.0, 12_000.0, 9_000.0, 9_600.0]),
    )
    acct = account(9_000.0, (("BTC/USDT", 0.2, 50_000.0), ("ETH/USDT", -2.0, 2_000.0)))
    m = rm.metrics(acct)
    assert m.gross_exposure == pytest.approx(14_000.0)
    assert m.net_exposure == pytest.approx(6_000.0)
    assert m.gross_exposure_pct == pytest.approx(14_000 / 9_000)
    assert m.net_exposure_pct == pytest.approx(6_000 / 9_000)
    assert m.leverage == pytest.approx(14_000 / 9_000)
    assert m.peak_equity == pytest.approx(12_000.0)
    assert m.drawdown == pytest.approx(0.25)
    assert m.max_drawdown == pytest.approx(0.25)  # the worst seen: 9 000 vs 12 000
    assert m.daily_pnl == pytest.approx(-600.0)  # the day started at 9 600
    assert m.positions == 2
    assert not m.halted and m.halt_reason == ""
    assert m.timestamp == T0


def test_metrics_before_any_observation_and_with_no_equity() -> None:
    m = RiskManager().metrics(account(0.0, (("BTC/USDT", 1.0, 10.0),)))
    assert math.isnan(m.leverage) and math.isnan(m.gross_exposure_pct)
    assert math.isnan(m.daily_pnl)
    assert m.drawdown == 1.0  # no equity at all


def test_drawdown_helper() -> None:
    assert drawdown(200.0, 150.0) == pytest.approx(0.25)
    assert drawdown(0.0, -5.0) == 1.0


def test_halt_shows_in_metrics() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.1))
    rm.observe_many(np.array([T0, T0 + HOUR]), np.array([100.0, 85.0]))
    m = rm.metrics(account(85.0))
    assert m.halted and m.halt_reason.startswith("circuit breaker: drawdown 15.0 % ≥ 10 %")


# ---------------------------------------------------------------------- bad observations
def test_observations_must_move_forward_and_be_finite() -> None:
    tracker = EquityTracker(0.2, None, 100)
    tracker.observe(T0, 100.0)
    with pytest.raises(ValueError, match="not after the previous observation"):
        tracker.observe(T0, 101.0)
    with pytest.raises(ValueError, match="finite"):
        tracker.observe(T0 + 1, math.nan)
    with pytest.raises(ValueError, match="increase strictly"):
        tracker.observe_many(np.array([T0 + 2, T0 + 2]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="one length"):
        tracker.observe_many(np.array([T0 + 2]), np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        tracker.observe_many(np.array([1.5e12]), np.array([1.0]))
    with pytest.raises(TypeError, match="int"):
        tracker.observe(1.5, 1.0)  # type: ignore[arg-type]
    assert tracker.observe_many(np.array([], dtype=np.int64), np.array([])) == []
    assert tracker.state().observations == 1


def test_alert_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown alert kind"):
        RiskAlert(0, "panic", None, "x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- observe ≡ observe_many
PATH = st.lists(
    st.tuples(
        st.integers(1, 10 * HOUR),  # time since the previous bar
        st.floats(-0.15, 0.12),  # return
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    path=PATH,
    cuts=st.lists(st.integers(0, 80), max_size=6),
    resets=st.lists(st.integers(0, 80), max_size=2),
    max_drawdown=st.one_of(st.none(), st.floats(0.05, 0.5)),
    daily_loss_limit=st.one_of(st.none(), st.floats(0.02, 0.3)),
    start_equity=st.one_of(st.just(0.0), st.floats(1.0, 1e6)),
)
def test_observe_many_equals_observe_bar_by_bar(
    path: list[tuple[int, float]],
    cuts: list[int],
    resets: list[int],
    max_drawdown: float | None,
    daily_loss_limit: float | None,
    start_equity: float,
) -> None:
    ts = T0 + np.cumsum([gap for gap, _ in path]).astype(np.int64)
    equity = np.maximum(start_equity, 1.0) * np.cumprod([1.0 + r for _, r in path])
    if start_equity == 0.0:
        equity = equity - equity[0]  # starts at 0: a wiped account, zero-division paths
    n = ts.size
    resets_at = sorted({r % (n + 1) for r in resets})
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts), *resets_at})

    def run(bulk: bool) -> tuple[object, list[RiskAlert]]:
        tracker = EquityTracker(max_drawdown, daily_loss_limit, 40)
        alerts: list[RiskAlert] = []
        for lo, hi in itertools.pairwise(bounds):
            if lo in resets_at and lo > 0:
                reset = tracker.reset(int(ts[lo - 1]) + 1 if lo < n else int(ts[-1]) + 1)
                alerts.extend([reset] if reset else [])
            if bulk:
                alerts.extend(tracker.observe_many(ts[lo:hi], equity[lo:hi]))
            else:
                for i in range(lo, hi):
                    alerts.extend(tracker.observe(int(ts[i]), float(equity[i])))
        return tracker.state(), alerts

    state_one, alerts_one = run(bulk=False)
    state_many, alerts_many = run(bulk=True)
    assert state_many == state_one
    assert alerts_many == alerts_one


def test_observe_many_covers_several_days_and_halts_in_one_call() -> None:
    # day 1: 100 → 90 (−10 %, trips); day 2 starts at 95 (lift) → 80 (−15.8 %, trips again)
    ts = np.array([T0, T0 + HOUR, T0 + DAY, T0 + DAY + HOUR, T0 + 2 * DAY])
    eq = np.array([100.0, 90.0, 95.0, 80.0, 81.0])
    tracker = EquityTracker(0.25, 0.1, 100)
    alerts = tracker.observe_many(ts, eq)
    kinds = [(a.kind, a.timestamp) for a in alerts]
    assert kinds == [
        ("daily_loss_limit", int(ts[1])),
        ("halt_reset", int(ts[2])),
        ("daily_loss_limit", int(ts[3])),
        ("halt_reset", int(ts[4])),
    ]
    assert tracker.halt is None
    assert tracker.state().day_start_equity == 81.0
