"""Rewards of the trading environment (Qlib's reward part): pure formulas and one tracker.

Equity is the broker's net equity (cash after fees + unrealized PnL, quote currency), so
every reward already pays the fees. Per step, with ``e0`` the equity at bar t's close (when
the action was taken) and ``e1`` at bar t+1's close:

- ``pnl``: ``(e1 - e0) / initial_cash``;
- ``log_return``: ``log(e1 / e0)`` (``e1 <= 0`` counts as ``e1 = 1e-12 × e0``, a large
  finite penalty; the episode terminates there anyway);
- ``differential_sharpe``: Moody & Saffell (1998)'s differential Sharpe ratio of the simple
  return ``R = e1 / e0 - 1`` with moving moments ``A`` (mean) and ``B`` (second moment),
  adaptation rate ``eta``::

      D = (B·ΔA - A·ΔB / 2) / (B - A²)^(3/2),   ΔA = R - A,  ΔB = R² - B
      A ← A + eta·ΔA,   B ← B + eta·ΔB

  (``A``, ``B`` from before the update; ``D = 0`` while ``B - A² <= 1e-12``, e.g. the first
  step of an episode where ``A = B = 0``). ``A`` and ``B`` restart at 0 every episode.

Penalties are subtracted: ``drawdown_penalty × max(dd1 - dd0, 0)`` with ``dd = 1 - e /
peak`` and ``peak`` the episode's highest equity so far (start included), and
``turnover_penalty × traded notional / e0`` (the notional of this step's fills, quote).
"""

from __future__ import annotations

import math

from pivotal.rl.config import EnvConfig, RewardKind

__all__ = [
    "RewardTracker",
    "differential_sharpe",
    "drawdown",
    "log_return_reward",
    "pnl_reward",
]

_FLOOR = 1e-12
_DSR_EPS = 1e-12


def pnl_reward(e0: float, e1: float, initial_cash: float) -> float:
    """Equity change as a share of the initial cash."""
    return (e1 - e0) / initial_cash


def log_return_reward(e0: float, e1: float) -> float:
    """``log(e1 / e0)``; a non-positive ``e1`` counts as ``1e-12 × e0``."""
    return math.log(max(e1 / e0, _FLOOR))


def differential_sharpe(r: float, a: float, b: float, eta: float) -> tuple[float, float, float]:
    """One step of the differential Sharpe ratio: ``(D, A', B')`` for return ``r``."""
    delta_a = r - a
    delta_b = r * r - b
    variance = b - a * a
    d = (b * delta_a - 0.5 * a * delta_b) / variance**1.5 if variance > _DSR_EPS else 0.0
    return d, a + eta * delta_a, b + eta * delta_b


def drawdown(peak: float, equity: float) -> float:
    """``1 - equity / peak`` (0 at a new peak); ``peak`` is above 0."""
    return 1.0 - equity / peak


class RewardTracker:
    """The reward of :class:`EnvConfig` (module docstring), with its per-episode state."""

    __slots__ = ("_a", "_b", "_dd", "_peak", "dd_penalty", "eta", "initial", "kind", "to_penalty")

    def __init__(self, config: EnvConfig) -> None:
        self.kind: RewardKind = config.reward
        self.eta = config.dsr_eta
        self.dd_penalty = config.drawdown_penalty
        self.to_penalty = config.turnover_penalty
        self.initial = float(config.settings.broker.initial_cash)
        self.reset(self.initial)

    def reset(self, equity: float) -> None:
        """Start an episode at ``equity``: DSR moments to 0, peak to ``equity``."""
        self._a = 0.0
        self._b = 0.0
        self._peak = float(equity)
        self._dd = 0.0

    def __call__(self, e0: float, e1: float, traded_notional: float = 0.0) -> float:
        """The reward of one step from equity ``e0`` to ``e1`` with ``traded_notional``."""
        kind = self.kind
        if kind == "log_return":
            reward = math.log(max(e1 / e0, _FLOOR))
        elif kind == "pnl":
            reward = (e1 - e0) / self.initial
        else:
            reward, self._a, self._b = differential_sharpe(
                e1 / e0 - 1.0, self._a, self._b, self.eta
            )
        if self.dd_penalty:
            if e1 > self._peak:
                self._peak = e1
            dd = 1.0 - e1 / self._peak
            if dd > self._dd:
                reward -= self.dd_penalty * (dd - self._dd)
            self._dd = dd
        if self.to_penalty and traded_notional:
            reward -= self.to_penalty * traded_notional / e0
        return reward
