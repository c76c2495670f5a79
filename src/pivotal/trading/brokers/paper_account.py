"""The paper broker's spot account: one quote balance, base holdings, reservations.

Private to :mod:`pivotal.trading.brokers.paper`. The spot accounting rule of every paper or
live broker (units: quote currency for money, base units for quantities):

- the quote balance ``quote`` starts at ``initial_cash``; a buy fill takes
  ``quantity × price + fee`` from it, a sell fill adds ``quantity × price - fee``;
- the position of ``BASE/QUOTE`` is the base held (the sum of buys minus sells); its average
  entry price is the quantity-weighted average of the buys (a sell reduces the quantity, not
  the average); ``mark`` is the last price seen (a fill, a trade print, a candle close);
- ``unrealized = quantity × (mark - average)``; ``equity = quote + Σ quantity × mark``;
  ``cash = equity - Σ unrealized``; ``margin_used = Σ quantity × mark``;
  ``available`` = the free quote (``quote`` minus what open buy orders reserve);
  ``leverage = 1``.

Reservations (what an exchange calls *locked*): a resting buy limit reserves
``remaining × limit × (1 + max(maker, taker))`` of quote; a sell that is not reduce-only
reserves its remaining base. Free = total minus the reservations of the other orders.

Positions, realized PnL, fees and round trips are kept by a
:class:`~pivotal.trading.portfolio.Portfolio` (leverage 1, long only): its arithmetic equals
the rule above (``cash = initial + realized - fees``).
"""

from __future__ import annotations

from pivotal.core.orders import AccountSnapshot, Fill, OrderSide, PositionSnapshot
from pivotal.trading.portfolio import Portfolio

__all__ = ["SpotAccount"]


class SpotAccount:
    """Balances and reservations of the paper broker's spot account (module docstring)."""

    def __init__(self, initial_cash: float, currency: str) -> None:
        self.currency = currency
        self.quote = float(initial_cash)
        self.portfolio = Portfolio(initial_cash, currency, 1.0)
        self._quote_locks: dict[str, float] = {}
        self._base_locks: dict[str, dict[str, float]] = {}
        self._mark_ms: dict[str, int] = {}

    # -- balances ----------------------------------------------------------------------
    def held(self, symbol: str) -> float:
        """Base units of ``symbol`` held (the position; 0.0 before any fill)."""
        return self.portfolio.quantity(symbol)

    def quote_free(self) -> float:
        """Quote not reserved by open buy orders (may read a hair below 0 from rounding)."""
        return self.quote - sum(self._quote_locks.values())

    def base_free(self, symbol: str, exclude: str | None = None) -> float:
        """Base of ``symbol`` held and not reserved by open sells (``exclude``: one order's
        own reservation counts as free to it)."""
        locks = self._base_locks.get(symbol, {})
        reserved = sum(v for cid, v in locks.items() if cid != exclude)
        return self.held(symbol) - reserved

    def reserve_quote(self, client_order_id: str, amount: float) -> None:
        """Set ``client_order_id``'s quote reservation to ``amount`` (0 removes it)."""
        if amount > 0.0:
            self._quote_locks[client_order_id] = amount
        else:
            self._quote_locks.pop(client_order_id, None)

    def reserve_base(self, symbol: str, client_order_id: str, quantity: float) -> None:
        """Set ``client_order_id``'s reservation of ``symbol``'s base to ``quantity``."""
        locks = self._base_locks.setdefault(symbol, {})
        if quantity > 0.0:
            locks[client_order_id] = quantity
        else:
            locks.pop(client_order_id, None)

    def release(self, symbol: str, client_order_id: str) -> None:
        """Drop every reservation of ``client_order_id`` (the order ended)."""
        self._quote_locks.pop(client_order_id, None)
        self._base_locks.get(symbol, {}).pop(client_order_id, None)

    # -- updates -----------------------------------------------------------------------
    def apply(self, fill: Fill, index: int) -> None:
        """Book ``fill`` (``index``: the number of the book it happened at, for the trades)."""
        notional = fill.quantity * fill.price
        if fill.side is OrderSide.BUY:
            self.quote -= notional + fill.fee
        else:
            self.quote += notional - fill.fee
        self.portfolio.apply_fill(fill, index)
        self._mark_ms[fill.symbol] = max(
            self._mark_ms.get(fill.symbol, fill.timestamp), fill.timestamp
        )

    def mark(self, symbol: str, price: float, ts: int) -> None:
        """``price`` seen at ``ts`` (UTC ms) marks ``symbol`` unless a later price did."""
        if ts >= self._mark_ms.get(symbol, ts):
            self._mark_ms[symbol] = ts
            self.portfolio.mark(symbol, price)

    # -- reads -------------------------------------------------------------------------
    def snapshot(self, timestamp: int) -> AccountSnapshot:
        """The account at ``timestamp`` (UTC ms) by the spot rule; lists every symbol traded."""
        portfolio = self.portfolio
        positions: dict[str, PositionSnapshot] = dict(portfolio.snapshot(timestamp).positions)
        value = 0.0
        unrealized = 0.0
        for pos in positions.values():
            if pos.quantity:
                value += pos.quantity * pos.mark_price
                unrealized += pos.unrealized_pnl
        equity = self.quote + value
        return AccountSnapshot(
            timestamp=int(timestamp),
            currency=self.currency,
            cash=equity - unrealized,
            equity=equity,
            margin_used=value,
            available=max(self.quote_free(), 0.0),
            leverage=1.0,
            fees_paid=portfolio.fees_paid,
            realized_pnl=portfolio.realized_pnl,
            unrealized_pnl=unrealized,
            positions=positions,
        )
