"""One account's balances for the matching engine: free and locked amounts per asset.

Amounts are :class:`~decimal.Decimal` in the asset's units. An open order *locks* what it
may spend (a buy limit its price × quantity of the quote asset, a sell its quantity of the
base asset); fills spend from the lock (or from the free amount for orders that never locked)
and credit what was received. Every change marks its asset *touched* so the engine can
report the changed balances once per action (:meth:`Ledger.take_touched`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from pivotal.localexchange.engine_types import ZERO, OrderRejected, dec

INSUFFICIENT = "Account has insufficient balance for requested action."


class Ledger:
    """Free/locked balances per asset; assets never seen read as zero."""

    def __init__(self, initial: Mapping[str, Decimal | float], assets: Iterable[str] = ()) -> None:
        self._free: dict[str, Decimal] = {asset: ZERO for asset in assets}
        self._locked: dict[str, Decimal] = {asset: ZERO for asset in self._free}
        for asset, amount in initial.items():
            value = dec(amount)
            if value < 0:
                raise ValueError(f"initial balance of {asset} is negative: {value}")
            self._free[asset] = value
            self._locked.setdefault(asset, ZERO)
        self._touched: set[str] = set()

    def free(self, asset: str) -> Decimal:
        return self._free.get(asset, ZERO)

    def locked(self, asset: str) -> Decimal:
        return self._locked.get(asset, ZERO)

    def total(self, asset: str) -> Decimal:
        return self.free(asset) + self.locked(asset)

    def require(self, asset: str, amount: Decimal) -> None:
        """Raise :class:`OrderRejected` (insufficient balance) unless ``amount`` is free."""
        if amount > self.free(asset):
            raise OrderRejected("insufficient_balance", INSUFFICIENT)

    def lock(self, asset: str, amount: Decimal) -> None:
        """Move ``amount`` from free to locked (refused when not free)."""
        self.require(asset, amount)
        self._free[asset] = self.free(asset) - amount
        self._locked[asset] = self.locked(asset) + amount
        self._touched.add(asset)

    def unlock(self, asset: str, amount: Decimal) -> None:
        """Move ``amount`` from locked back to free."""
        if amount > self.locked(asset):
            raise AssertionError(f"unlock {amount} {asset} > locked {self.locked(asset)}")
        self._locked[asset] = self.locked(asset) - amount
        self._free[asset] = self.free(asset) + amount
        self._touched.add(asset)

    def debit(self, asset: str, amount: Decimal) -> None:
        """Spend ``amount`` of the free balance (checked by the caller)."""
        if amount > self.free(asset):
            raise AssertionError(f"debit {amount} {asset} > free {self.free(asset)}")
        self._free[asset] = self.free(asset) - amount
        self._touched.add(asset)

    def credit(self, asset: str, amount: Decimal) -> None:
        """Add ``amount`` to the free balance."""
        self._free[asset] = self.free(asset) + amount
        self._locked.setdefault(asset, ZERO)
        self._touched.add(asset)

    def take_touched(self) -> dict[str, tuple[Decimal, Decimal]]:
        """The assets changed since the last call → (free, locked); forgets them."""
        out = {asset: (self.free(asset), self.locked(asset)) for asset in sorted(self._touched)}
        self._touched.clear()
        return out

    def snapshot(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Every asset → (free, locked), by asset name."""
        return {asset: (self.free(asset), self.locked(asset)) for asset in sorted(self._free)}
