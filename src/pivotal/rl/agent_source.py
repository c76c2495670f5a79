"""The agent's side of the runtime kernel: its action as a decision source, its fills counted.

:class:`~pivotal.rl.env.TradingEnv` steps the same :class:`~pivotal.runtime.kernel.Kernel`
as a backtest: the action the agent chose is what :class:`AgentSource` answers when the
kernel asks at the bar's close (so it goes through the executor: risk review, then the
broker), and :class:`StepFills` is the kernel's recorder, counting the fills of a step and
their notional (the reward's turnover).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pivotal.core.candles import Candles
from pivotal.core.ports import DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction
from pivotal.runtime.recorder import NullRecorder

__all__ = ["AgentSource", "StepFills"]


class AgentSource:
    """Answers every close with :attr:`action` (set by the env before asking), full size."""

    def __init__(self, symbol: Symbol, name: str) -> None:
        self.symbol = symbol
        self.name = name
        self.action = Action.HOLD

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        pass

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms  # the env decides when to ask

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        return (TradingAction(self.symbol, context.timestamp, self.action, 1.0, self.name),)


class StepFills(NullRecorder):
    """A run recorder that counts fills and their notional (quote currency) since
    :meth:`reset`; everything else it drops."""

    def __init__(self) -> None:
        self.fills = 0
        self.notional = 0.0

    def reset(self) -> None:
        self.fills = 0
        self.notional = 0.0

    def fill(self, record: Mapping[str, Any]) -> None:
        self.fills += 1
        self.notional += record["quantity"] * record["price"]
