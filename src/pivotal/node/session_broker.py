"""What the node needs from a session's broker besides the :class:`~pivotal.core.ports.Broker`
protocol: start (rebuild from the journal, reconcile), periodic reconciliation, the kill
switch's cancel-all and flatten, marks from the market events, and a clean close.

The exchange broker (:class:`pivotal.venues.exchange_broker.ExchangeBroker`) and the paper
broker (:class:`pivotal.trading.brokers.paper.PaperBroker`, through
:class:`pivotal.node.paper_session.PaperSession`) both satisfy :class:`SessionBroker`; the node
never asks which one it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pivotal.core.events import MarketEvent
from pivotal.core.orders import Order
from pivotal.core.ports import Broker

__all__ = ["ReconcileOutcome", "SessionBroker"]


@runtime_checkable
class ReconcileOutcome(Protocol):
    """A reconciliation's result: ``ok`` (nothing unresolved) and lines for people."""

    @property
    def ok(self) -> bool: ...

    def lines(self) -> list[str]: ...


@runtime_checkable
class SessionBroker(Broker, Protocol):
    def start(self) -> ReconcileOutcome: ...

    def reconcile(self) -> ReconcileOutcome: ...

    def cancel_all(self, symbol: str | None = None) -> Sequence[Order]: ...

    def flatten(self, symbol: str) -> Order | None: ...

    def on_event(self, event: MarketEvent) -> None: ...

    def close(self) -> None: ...
