"""Reference strategies as decision sources: ``sma_cross``, ``rsi_reversion``, ``buy_and_hold``.

Each computes its causal signal arrays once (:mod:`pivotal.backtest.signals`) and then
answers at a bar's close: BUY on an entry signal when flat, CLOSE on an exit signal when
long. They are long-only, like backtesting.py's classic ``SmaCross``; the risk manager
sizes the entry (all-in by default, sized at the fill price, as backtesting.py does).
``next_wake`` points the engine at the next signal bar's close (a UTC ms time), so bars
without a signal cost no Python call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.backtest.signals import STRATEGY_SIGNALS, Signals, parse_params
from pivotal.core.candles import Candles
from pivotal.core.ports import NEVER, DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction

__all__ = ["SignalStrategy", "make_strategy", "strategy_names"]


class SignalStrategy:
    """A :class:`~pivotal.core.ports.DecisionSource` driven by entry/exit signal arrays."""

    def __init__(
        self,
        name: str,
        compute: Callable[[Candles], Signals],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.params = dict(params or {})
        self._compute = compute
        self._entries: dict[str, npt.NDArray[np.bool_]] = {}
        self._exits: dict[str, npt.NDArray[np.bool_]] = {}
        self._wakes: dict[str, npt.NDArray[np.int64]] = {}
        self._symbols: dict[str, Symbol] = {}

    def warmup_bars(self) -> int:
        return 0  # signals are False during their own warm-up

    def prepare(self, symbol: str, candles: Candles) -> None:
        signals = self._compute(candles)
        if len(signals.entries) != len(candles) or len(signals.exits) != len(candles):
            raise ValueError(
                f"{self.name} produced {len(signals.entries)} signals for {len(candles)} bars"
            )
        self._entries[symbol] = np.asarray(signals.entries, dtype=bool)
        self._exits[symbol] = np.asarray(signals.exits, dtype=bool)
        events = np.flatnonzero(self._entries[symbol] | self._exits[symbol])
        self._wakes[symbol] = candles.timestamp[events] + _bar_ms(candles)
        self._symbols[symbol] = Symbol.parse(symbol)

    def signals(self, symbol: str) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """The prepared (entries, exits) for ``symbol``."""
        return self._entries[symbol], self._exits[symbol]

    def next_wake(self, symbol: str, now_ms: int) -> int:
        """The close (UTC ms) of the first signal bar closing at or after ``now_ms``."""
        wakes = self._wakes[symbol]
        at = int(np.searchsorted(wakes, now_ms, side="left"))
        return int(wakes[at]) if at < len(wakes) else NEVER

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        j = context.bar_index
        position = context.position
        symbol = context.symbol
        if position == 0.0 and self._entries[symbol][j]:
            action, reason = Action.BUY, "entry signal"
        elif position > 0.0 and self._exits[symbol][j]:
            action, reason = Action.CLOSE, "exit signal"
        else:
            return ()
        return (
            TradingAction(
                symbol=self._symbols[symbol],
                timestamp=context.timestamp,
                action=action,
                confidence=1.0,
                source=self.name,
                reason=reason,
            ),
        )


def _bar_ms(candles: Candles) -> int:
    """The series' bar length in ms: the smallest step between consecutive opens (a series
    on one timeframe's grid with two adjacent bars anywhere; gaps only make steps longer).
    With fewer than two bars, 1 ms: the wake-up then falls inside the bar, which is enough
    for the runtime to pick that bar (it wakes at the first close at or after it)."""
    if len(candles) < 2:
        return 1
    return int(np.diff(candles.timestamp).min())


def strategy_names() -> list[str]:
    return sorted(STRATEGY_SIGNALS)


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> SignalStrategy:
    """A reference strategy by name; ``params`` may be strings (from the CLI) or values."""
    if name not in STRATEGY_SIGNALS:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(strategy_names())}")
    values = parse_params(name, dict(params or {}))
    spec = STRATEGY_SIGNALS[name]

    def compute(candles: Candles) -> Signals:
        return spec.signals(candles, **values)

    return SignalStrategy(name, compute, values)
