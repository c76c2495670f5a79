"""Closing a symbol at the last bar before a gap in its data (the ``close`` gap policy).

What a gap is lives in :mod:`pivotal.core.gaps`. Here is what the backtest engine, the run
loop and anything else that trades through the :class:`~pivotal.core.ports.Broker` protocol
do at one when the policy is ``close``: cancel the symbol's active orders (resting entries
and protective stops alike: nothing may fill across the hole) and send a reduce-only market
order for the whole position, tagged :data:`GAP_TAG`, so the trade it closes carries exit
reason ``"gap"``. A broker that can fill at the last close (``submit_at_close``, as the
simulated broker can) fills it at the close of the last bar before the gap; any other
broker gets it through ``submit``, where a market order fills at once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pivotal.core.orders import Order, OrderRequest, OrderSide, OrderType
from pivotal.core.ports import Broker

__all__ = ["GAP_TAG", "flatten_before_gap"]

GAP_TAG = "gap"
"""The tag of a gap exit's order and fill; the closed trade's exit reason."""


@runtime_checkable
class _FillsAtClose(Protocol):
    def submit_at_close(self, request: OrderRequest) -> Order: ...


def flatten_before_gap(broker: Broker, symbol: str) -> Order | None:
    """Cancel ``symbol``'s active orders and close its position with a reduce-only market
    order tagged :data:`GAP_TAG`; returns that order (None when already flat)."""
    for order in broker.open_orders(symbol):
        broker.cancel(order.client_order_id)
    position = broker.account().positions.get(symbol)
    quantity = 0.0 if position is None else float(position.quantity)
    if quantity == 0.0:
        return None
    request = OrderRequest(
        symbol,
        OrderSide.SELL if quantity > 0 else OrderSide.BUY,
        OrderType.MARKET,
        quantity=abs(quantity),
        reduce_only=True,
        tag=GAP_TAG,
    )
    if isinstance(broker, _FillsAtClose):
        return broker.submit_at_close(request)
    return broker.submit(request)
