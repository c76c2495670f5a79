"""Reward formulas, checked against hand computations."""

from __future__ import annotations

import math

import pytest

from pivotal.rl.config import EnvConfig
from pivotal.rl.rewards import (
    RewardTracker,
    differential_sharpe,
    drawdown,
    log_return_reward,
    pnl_reward,
)


def test_pnl_and_log_return() -> None:
    assert pnl_reward(100_000.0, 101_000.0, 100_000.0) == pytest.approx(0.01)
    assert log_return_reward(100.0, 110.0) == pytest.approx(math.log(1.1))
    assert log_return_reward(100.0, 0.0) == pytest.approx(math.log(1e-12))  # finite penalty
    assert drawdown(120.0, 90.0) == pytest.approx(0.25)


def test_differential_sharpe_by_hand() -> None:
    # first step: A = B = 0, variance 0 → D = 0; moments move by eta
    d, a, b = differential_sharpe(0.02, 0.0, 0.0, 0.1)
    assert d == 0.0 and a == pytest.approx(0.002) and b == pytest.approx(0.00004)
    # second step: A = 0.002, B = 0.00004, R = -0.01
    d, a2, b2 = differential_sharpe(-0.01, a, b, 0.1)
    delta_a, delta_b = -0.01 - 0.002, 0.0001 - 0.00004
    expected = (0.00004 * delta_a - 0.5 * 0.002 * delta_b) / (0.00004 - 0.002**2) ** 1.5
    assert d == pytest.approx(expected)
    assert a2 == pytest.approx(0.002 + 0.1 * delta_a) and b2 == pytest.approx(
        0.00004 + 0.1 * delta_b
    )


def test_tracker_kinds_and_penalties() -> None:
    pnl = RewardTracker(EnvConfig(reward="pnl"))
    assert pnl(100_000.0, 99_000.0) == pytest.approx(-0.01)
    dsr = RewardTracker(EnvConfig(reward="differential_sharpe", dsr_eta=0.1))
    assert dsr(100.0, 102.0) == 0.0
    d, _, _ = differential_sharpe(-0.01, 0.002, 0.00004, 0.1)
    assert dsr(102.0, 100.98) == pytest.approx(d)
    dsr.reset(100.0)  # moments restart each episode
    assert dsr(100.0, 102.0) == 0.0

    cfg = EnvConfig(reward="log_return", drawdown_penalty=2.0, turnover_penalty=0.5)
    tracker = RewardTracker(cfg)
    tracker.reset(100.0)
    # up to a new peak, 50 traded: no drawdown, turnover 50/100
    assert tracker(100.0, 110.0, 50.0) == pytest.approx(math.log(1.1) - 0.5 * 0.5)
    # down to 99: drawdown 0.1 from the peak 110 → penalty 2 × 0.1
    assert tracker(110.0, 99.0) == pytest.approx(math.log(0.9) - 2.0 * 0.1)
    # partial recovery: drawdown shrinks, no penalty (and no bonus)
    assert tracker(99.0, 104.5) == pytest.approx(math.log(104.5 / 99.0))
    # down again to 99: only the increase from 0.05 to 0.1 is penalised
    assert tracker(104.5, 99.0) == pytest.approx(math.log(99.0 / 104.5) - 2.0 * 0.05)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="repeat 1m"):
        EnvConfig(streams=("1m",))
    with pytest.raises(ValueError, match="BTC/USDT"):
        EnvConfig(symbol="BTCUSDT")
    with pytest.raises(ValueError, match="reward"):
        EnvConfig(reward="sharpe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra_key"):
        EnvConfig(extra_key=1)  # type: ignore[call-arg]
