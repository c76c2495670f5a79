"""The one path from a decision to the broker: risk review, then ``Broker.submit``.

Every mode takes this path: the runtime's kernel (:mod:`pivotal.runtime.kernel`, stepped
by the backtest engine, the RL env and the run loop for replay, paper and live) and
anything else that turns
:class:`~pivotal.core.types.TradingAction` s into orders. For each action of one decision,
in order:

1. the symbol's :class:`~pivotal.trading.risk.MarketState` at the decision: the last close
   (quote per base unit), the ATR in price units (None while it warms up), the taker fee
   rate (a fraction: 0.001 = 0.1 %) and the lot size (base units);
2. :meth:`RiskManager.review <pivotal.trading.risk.RiskManager.review>` against the account
   as it stands (a refused or resized review is recorded as an event with the reason);
3. each approved :class:`~pivotal.core.orders.OrderRequest`, in the order the review gives
   (exit, entry, stop, take-profit), goes to :meth:`Broker.submit
   <pivotal.core.ports.Broker.submit>`;
4. after any submission the account is read again, so the next action of the same decision
   is reviewed against the account the previous one left.

Only the :class:`~pivotal.core.ports.Broker` protocol is used, never a broker's internals,
so a simulated broker and an exchange adapter are driven the same way.

The event records (plain dicts, the shape a backtest result and a run loop keep) are built
here too: :func:`broker_event_record` for fills and order changes, :func:`alert_record` for
risk alerts, and the ``risk_refused`` / ``risk_resized`` records :meth:`ActionExecutor.execute`
returns. Every record has ``timestamp`` (UTC ms), ``kind`` and ``symbol``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pivotal.core.orders import AccountSnapshot, Fill, Liquidity, OrderEvent
from pivotal.core.ports import Broker, BrokerEvent
from pivotal.core.types import TradingAction
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import MarketState, RiskAlert, RiskManager

__all__ = ["ActionExecutor", "alert_record", "broker_event_record"]


class ActionExecutor:
    """Reviews a decision's actions with the risk manager and submits the approved orders.

    ``fees`` gives the taker rate the risk manager sizes with (per symbol, a fraction of
    notional); ``lot_size`` is the quantity step in base units the sizes are rounded to
    (the broker's own step, e.g. ``SimulatedBrokerConfig.lot_size``).
    """

    def __init__(
        self, broker: Broker, risk: RiskManager, *, fees: FeeSchedule, lot_size: float
    ) -> None:
        if not isinstance(broker, Broker):
            raise TypeError(
                f"broker must implement pivotal.core.ports.Broker, got {type(broker).__name__}"
            )
        if not isinstance(risk, RiskManager):
            raise TypeError(f"risk must be a RiskManager, got {type(risk).__name__}")
        if not isinstance(fees, FeeSchedule):
            raise TypeError(f"fees must be a FeeSchedule, got {type(fees).__name__}")
        if (
            isinstance(lot_size, bool)
            or not isinstance(lot_size, int | float)
            or not math.isfinite(lot_size)
            or lot_size <= 0
        ):
            raise ValueError(
                f"lot_size must be a finite quantity step above 0 in base units, got {lot_size!r}"
            )
        self.broker = broker
        self.risk = risk
        self.fees = fees
        self.lot_size = float(lot_size)
        self._taker: dict[str, float] = {}

    def execute(
        self,
        actions: Sequence[TradingAction],
        account: AccountSnapshot,
        *,
        symbol: str,
        timestamp: int,
        price: float,
        atr: float | None,
    ) -> list[dict[str, Any]]:
        """Carry out ``actions`` (one decision for ``symbol`` at ``timestamp``, UTC ms).

        ``account`` is the account the decision saw; ``price`` the symbol's last close;
        ``atr`` its ATR in price units (None or NaN while unknown). Returns the
        ``risk_refused`` / ``risk_resized`` records, oldest first (empty when every action
        was approved as asked). Fills and order changes arrive later through
        ``Broker.drain_events``; risk alerts through ``RiskManager.drain_alerts``.
        """
        records: list[dict[str, Any]] = []
        if not actions:
            return records
        market = MarketState(
            symbol=symbol,
            timestamp=timestamp,
            price=price,
            atr=None if atr is None or math.isnan(atr) else atr,
            taker_fee=self._taker_fee(symbol),
            lot_size=self.lot_size,
        )
        broker = self.broker
        review = self.risk.review
        for action in actions:
            decision = review(action, account, market)
            if not decision.approved or decision.resized:
                records.append(
                    {
                        "timestamp": timestamp,
                        "kind": "risk_refused" if not decision.approved else "risk_resized",
                        "symbol": symbol,
                        "action": str(action.action),
                        "message": decision.reason,
                    }
                )
            for request in decision.orders:
                broker.submit(request)
            if decision.orders:
                account = broker.account()
        return records

    def _taker_fee(self, symbol: str) -> float:
        rate = self._taker.get(symbol)
        if rate is None:
            rate = self._taker[symbol] = self.fees.rate(symbol, Liquidity.TAKER)
        return rate


def broker_event_record(event: BrokerEvent) -> dict[str, Any]:
    """A fill (``kind="fill"``) or an order change (``kind="order"``) as a plain record.

    Both carry the venue's ids (``venue_order_id``; a fill also ``venue_trade_id``; None
    where the venue gave none); the raw payload stays on the event, not in the record.
    """
    if isinstance(event, Fill):
        return {
            "timestamp": event.timestamp,
            "kind": "fill",
            "symbol": event.symbol,
            "side": str(event.side),
            "quantity": event.quantity,
            "price": event.price,
            "fee": event.fee,
            "client_order_id": event.client_order_id,
            "venue_order_id": event.venue_order_id,
            "venue_trade_id": event.venue_trade_id,
        }
    if isinstance(event, OrderEvent):
        return {
            "timestamp": event.timestamp,
            "kind": "order",
            "symbol": event.order.symbol,
            "status": str(event.status),
            "client_order_id": event.order.client_order_id,
            "venue_order_id": event.order.venue_order_id,
            "message": event.reason,
        }
    raise TypeError(
        f"a broker event is a Fill or an OrderEvent, got {type(event).__name__}: "
        "the broker must report only those from drain_events()"
    )


def alert_record(alert: RiskAlert) -> dict[str, Any]:
    """A risk alert as a record of kind ``risk_<alert kind>`` (e.g. ``risk_circuit_breaker``)."""
    return {
        "timestamp": alert.timestamp,
        "kind": f"risk_{alert.kind}",
        "symbol": alert.symbol,
        "message": alert.message,
    }
