"""A scripted decision source for session tests: trades on a fixed schedule of bar close
times, so a session restarted at any moment decides exactly what an uninterrupted one would.

At the close ``c`` of a base bar (``n = c // bar_ms``): flat and ``n % every == 0`` → BUY;
holding and ``n % every == hold`` → SELL; otherwise nothing. Sizes come from the risk
manager as in every mode. It reads only the base timeframe and keeps no state of its own
(the position comes from the account in the decision context).
"""

from __future__ import annotations

from collections.abc import Sequence

from pivotal.core.candles import Candles
from pivotal.core.events import MarketEvent
from pivotal.core.ports import DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import TradingAction

__all__ = ["ScriptedSource"]


class ScriptedSource:
    """BUY/SELL on a schedule of close times (module docstring)."""

    name = "scripted"

    def __init__(self, base: Timeframe | str, *, every: int = 3, hold: int = 1) -> None:
        if every < 2 or not 0 < hold < every:
            raise ValueError(f"need every >= 2 and 0 < hold < every, got {every}, {hold}")
        self.base = Timeframe.parse(base)
        self.every = every
        self.hold = hold
        self.timeframes: tuple[Timeframe, ...] = (self.base,)
        self.events = 0

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        return None

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def on_event(self, event: MarketEvent) -> None:
        self.events += 1

    def finish(self, now_ms: int | None = None) -> None:
        return None

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        n = context.timestamp // self.base.ms
        price = float(context.candles.close[-1])
        action = None
        if context.position <= 0 and n % self.every == 0:
            action = "BUY"
        elif context.position > 0 and n % self.every == self.hold:
            action = "SELL"
        if action is None:
            return []
        return [
            TradingAction(
                symbol=Symbol.parse(context.symbol),
                timestamp=context.timestamp,
                action=action,
                confidence=1.0,
                source=self.name,
                price=price,
                reason=f"schedule: bar {n}",
            )
        ]
