"""A policy (a trained agent, or a seeded random one) as a backtester ``DecisionSource``.

At each bar's close it builds the same observation the training environment would build at
that step (the encoded market window from :class:`MarketObservations` plus the position
state read from the account) and maps the chosen action to a ``TradingAction``; the
backtester then applies the same risk manager and simulated broker as the environment did.
So an agent is evaluated with exactly the fills, fees and limits it trained against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.ports import NEVER, DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction
from pivotal.rl.env import ACTIONS
from pivotal.rl.observations import MarketObservations

__all__ = ["PolicySource", "random_policy"]

Policy = Callable[[npt.NDArray[np.float32]], int]


def random_policy(seed: int) -> Policy:
    """Uniformly random actions from a seeded generator (the baseline agent)."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(len(ACTIONS)))


class PolicySource:
    """Greedy decisions of ``policy`` at every bar the observations cover.

    ``episode_length`` scales the time-in-trade feature exactly as the environment does;
    pass the training environment's value.
    """

    def __init__(
        self,
        policy: Policy,
        observations: MarketObservations,
        *,
        symbol: str,
        episode_length: int,
        initial_cash: float,
        name: str = "dqn",
    ) -> None:
        if episode_length < 1:
            raise ValueError(f"episode_length must be at least 1, got {episode_length}")
        self.name = name
        self._policy = policy
        self._obs = observations
        self._symbol = symbol
        self._trading_symbol = Symbol.parse(symbol)
        self._episode_length = int(episode_length)
        self._initial = float(initial_cash)
        self._steps: npt.NDArray[np.int64] | None = None
        self._covered: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)  # close times
        self._previous = 0.0
        self._entry = -1

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        if symbol != self._symbol:
            raise ValueError(f"{self.name} trades {self._symbol}, not {symbol}")
        close_times = candles.timestamp + self._obs.anchor.ms
        at = np.searchsorted(self._obs.times, close_times)
        at = np.minimum(at, len(self._obs.times) - 1)
        known = self._obs.times[at] == close_times
        if not known.any():
            raise ValueError(
                f"none of the {len(candles):,} {symbol} bars is covered by the agent's "
                "observations; build them over the backtest range"
            )
        self._steps = np.where(known, at, -1).astype(np.int64)
        self._covered = close_times[known].astype(np.int64)
        self._previous = 0.0
        self._entry = -1

    def _prepared(self) -> npt.NDArray[np.int64]:
        if self._steps is None:
            raise RuntimeError(f"{self.name}: call prepare(symbol, candles) before the run")
        return self._steps

    def next_wake(self, symbol: str, now_ms: int) -> int:
        """The close (UTC ms) of the first covered bar closing at or after ``now_ms``."""
        self._prepared()
        at = int(np.searchsorted(self._covered, now_ms))
        return int(self._covered[at]) if at < len(self._covered) else NEVER

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        step = int(self._prepared()[context.bar_index])
        if step < 0:
            return ()
        observation = self._obs.observe([step], [self._state(context, step)])
        action = ACTIONS[int(self._policy(observation))]
        if action is Action.HOLD:
            return ()
        return (
            TradingAction(
                symbol=self._trading_symbol,
                timestamp=context.timestamp,
                action=action,
                confidence=1.0,
                source=self.name,
            ),
        )

    def _state(self, context: DecisionContext, step: int) -> tuple[float, float, float, float]:
        """The environment's position state (side, size, unrealized, time in trade)."""
        position = context.account.positions.get(self._symbol)
        q = 0.0 if position is None else position.quantity
        if q == 0.0:
            self._entry = -1
        elif self._previous == 0.0 or (self._previous > 0.0) != (q > 0.0):
            self._entry = step
        self._previous = q
        if q == 0.0 or position is None:
            return (0.0, 0.0, 0.0, 0.0)
        equity = context.account.equity if context.account.equity > 0.0 else self._initial
        close = float(context.candles.close[-1])
        held = step - self._entry + 1
        return (
            1.0 if q > 0.0 else -1.0,
            abs(q) * close / equity,
            position.unrealized_pnl / equity,
            held / self._episode_length,
        )
