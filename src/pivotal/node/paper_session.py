"""The paper broker as a session broker: journal deposit, restart, kill-switch actions.

:class:`PaperSession` gives :class:`~pivotal.trading.brokers.paper.PaperBroker` what the node
asks of every session broker (:class:`~pivotal.node.session_broker.SessionBroker`):

- ``start``: a new journal gets the deposit (a ``session`` entry with the quote balance, the
  journal state's starting balances); a journal with entries restores the broker from them
  (:mod:`pivotal.trading.brokers.paper_restore`: fills booked again, ids continued, orders
  working at the stop cancelled with the reason);
- ``reconcile``: the paper broker *is* the venue, so there is nothing outside to compare with;
  it reports the account it holds;
- ``cancel_all`` and ``flatten`` (a reduce-only market sell of what is held).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pivotal.core.clock import Clock
from pivotal.core.events import MarketEvent
from pivotal.core.journal import NewEntry, OrderJournal
from pivotal.core.orders import (
    AccountSnapshot,
    Fill,
    Order,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderType,
)
from pivotal.trading.brokers.paper import PaperBroker
from pivotal.trading.journal_state import JournalState

__all__ = ["PaperSession", "SessionOutcome"]


@dataclass
class SessionOutcome:
    """A start's or reconciliation's result for a broker with nothing to reconcile against."""

    messages: list[str] = field(default_factory=list)
    ok: bool = True

    def lines(self) -> list[str]:
        return list(self.messages)


class PaperSession:
    """A :class:`PaperBroker` with the session duties (module docstring)."""

    def __init__(self, broker: PaperBroker, journal: OrderJournal, clock: Clock) -> None:
        self.broker = broker
        self.journal = journal
        self.clock = clock

    # -- Broker ------------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        return self.broker.submit(request)

    def cancel(self, client_order_id: str) -> Order:
        return self.broker.cancel(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.broker.open_orders(symbol)

    def order(self, client_order_id: str) -> Order:
        return self.broker.order(client_order_id)

    def account(self) -> AccountSnapshot:
        return self.broker.account()

    def drain_events(self) -> list[OrderEvent | Fill]:
        return self.broker.drain_events()

    def on_event(self, event: MarketEvent) -> None:
        self.broker.on_event(event)

    # -- session -----------------------------------------------------------------------------
    def start(self) -> SessionOutcome:
        entries = list(self.journal.entries())
        config = self.broker.config
        deposits = [
            e for e in entries if e.kind == "session" and isinstance(e.data.get("balances"), dict)
        ]
        now = self.clock.now_ms()
        if not deposits:
            cash = float(config.initial_cash)
            self.journal.append(
                [
                    NewEntry(
                        now,
                        "session",
                        {"event": "deposit", "balances": {config.currency: cash}},
                    )
                ]
            )
            return SessionOutcome([f"paper account opened with {cash:,.2f} {config.currency}"])
        deposit = float(deposits[0].data["balances"].get(config.currency, config.initial_cash))
        state = JournalState.rebuild(entries, quote=config.currency)
        return SessionOutcome(self.broker.restore(state, deposit))

    def reconcile(self) -> SessionOutcome:
        return SessionOutcome([])

    def cancel_all(self, symbol: str | None = None) -> Sequence[Order]:
        return [self.broker.cancel(o.client_order_id) for o in self.broker.open_orders(symbol)]

    def flatten(self, symbol: str) -> Order | None:
        held = self.broker.account().positions.get(symbol)
        if held is None or held.quantity <= 0:
            return None
        return self.broker.submit(
            OrderRequest(
                symbol=symbol,
                side=OrderSide.SELL,
                type=OrderType.MARKET,
                quantity=held.quantity,
                reduce_only=True,
                tag="kill",
            )
        )

    def close(self) -> None:
        self.broker.drain_events()  # journals what is still queued
