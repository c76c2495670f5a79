"""Fakes for runtime tests: a broker (and venue), a risk manager, a listener, a recorder and
a source that log their calls into one list, so a test can read the order of a step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.events import MarketEvent
from pivotal.core.orders import AccountSnapshot, Order, OrderRequest
from pivotal.core.ports import NEVER, BrokerEvent, DecisionContext
from pivotal.core.types import TradingAction
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig, RiskManager

MINUTE = 60_000


def candles(n: int, *, start: int = 0, bar_ms: int = MINUTE, skip: Sequence[int] = ()) -> Candles:
    """``n`` simple candles on the ``bar_ms`` grid from ``start``, leaving out rows ``skip``."""
    keep = np.setdiff1d(np.arange(n), np.asarray(skip, dtype=np.int64))
    close = 100.0 + np.sin(keep / 3.0)
    return Candles(
        start + keep * bar_ms, close, close + 0.5, close - 0.5, close + 0.1, np.ones(len(keep))
    )


class LoggingBroker:
    """A Broker (protocol) and Venue that logs ``on_bar`` and ``drain_events`` calls."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def on_bar(self, symbol: str, candle: Candles) -> None:
        self.log.append(("on_bar", symbol, int(candle.timestamp[0])))

    def submit(self, request: OrderRequest) -> Order:
        raise AssertionError("the logging source asks for no orders")

    def cancel(self, client_order_id: str) -> Order:
        raise AssertionError("nothing to cancel")

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return []

    def order(self, client_order_id: str) -> Order:
        raise KeyError(client_order_id)

    def account(self) -> AccountSnapshot:
        return AccountSnapshot(
            timestamp=0,
            currency="USDT",
            cash=1_000.0,
            equity=1_000.0,
            margin_used=0.0,
            available=1_000.0,
            leverage=1.0,
            fees_paid=0.0,
            realized_pnl=0.0,
            unrealized_pnl=0.0,
        )

    def drain_events(self) -> list[BrokerEvent]:
        self.log.append(("drain",))
        return []


class LoggingRisk(RiskManager):
    def __init__(self, log: list[Any]) -> None:
        super().__init__(RiskConfig())
        self.log = log

    def observe(self, timestamp: int, equity: float) -> None:
        self.log.append(("observe", timestamp))
        super().observe(timestamp, equity)


class LoggingListener:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def on_event(self, event: MarketEvent) -> None:
        self.log.append(("listen", event.symbol, event.event_time))


class LoggingRecorder:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def equity(self, t_ms: int, value: float) -> None:
        self.log.append(("equity", t_ms))

    def decision(self, record: Any) -> None:
        self.log.append(("decision", record["symbol"], record["timestamp"]))

    def event(self, record: Any) -> None:
        self.log.append(("event", record["kind"]))

    def fill(self, record: Any) -> None:
        self.log.append(("fill",))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class WakeSource:
    """Decides nothing; wakes at the close times ``wake(symbol, now)`` gives (every bar by
    default) and logs its calls."""

    name = "wake_source"

    def __init__(
        self,
        log: list[Any],
        *,
        warmup: int = 0,
        wake: Callable[[str, int], int] | None = None,
    ) -> None:
        self.log = log
        self.warmup = warmup
        self.wake = wake
        self.contexts: list[DecisionContext] = []

    def warmup_bars(self) -> int:
        return self.warmup

    def prepare(self, symbol: str, candles: Candles) -> None:
        pass

    def next_wake(self, symbol: str, now_ms: int) -> int:
        self.log.append(("next_wake", symbol, now_ms))
        return now_ms if self.wake is None else self.wake(symbol, now_ms)

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        self.log.append(("decide", context.symbol, context.timestamp))
        self.contexts.append(context)
        return ()


def executor(broker: LoggingBroker, risk: RiskManager) -> ActionExecutor:
    return ActionExecutor(broker, risk, fees=FeeSchedule(maker=0.0, taker=0.001), lot_size=1e-6)


__all__ = [
    "MINUTE",
    "NEVER",
    "LoggingBroker",
    "LoggingListener",
    "LoggingRecorder",
    "LoggingRisk",
    "WakeSource",
    "candles",
    "executor",
]
