"""Settings of the paper broker (:mod:`pivotal.trading.brokers.paper`).

Units: money in the quote ``currency`` (USDT); quantities in base units; prices in quote per
base unit; times in milliseconds; fee rates are fractions of notional (0.001 = 0.1 %).
"""

from __future__ import annotations

import math

from pydantic import Field, ValidationInfo, field_validator

from pivotal.config.models import StrictModel
from pivotal.trading.brokers.config import check_cash, check_currency
from pivotal.trading.fees import FeeSchedule

__all__ = ["PaperBrokerConfig", "SymbolRules"]


def _step(value: float | None, name: str) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite step above 0 (or left out), got {value!r}")
    return value


class SymbolRules(StrictModel):
    """One symbol's quantity and price steps; a field left out uses the broker's default."""

    lot_size: float | None = Field(default=None, description="Quantity step in base units")
    tick_size: float | None = Field(default=None, description="Price step in quote units")

    @field_validator("lot_size", "tick_size")
    @classmethod
    def _positive(cls, value: float | None, info: ValidationInfo) -> float | None:
        return _step(value, info.field_name or "step")


class PaperBrokerConfig(StrictModel):
    """How the :class:`~pivotal.trading.brokers.paper.PaperBroker` fills orders.

    - ``initial_cash``: the quote balance the spot account starts with (no base asset held).
    - ``fees``: maker rate for resting limit fills, taker rate for everything that walks the
      book (market, triggered stop/take-profit, the marketable part of a limit).
    - ``latency_ms``: an order reaches the (simulated) venue this long after ``submit``; it
      can fill only against books (and prints) from then on.
    - ``max_book_levels``: at most this many levels per side of each book are walked
      (None: every level the book event carries).
    - ``allow_partial_fills``: False makes every fill opportunity all-or-nothing: a market
      order the book cannot fill whole EXPIRES, a limit fills only when a book or the prints
      can fill all that remains.
    - ``book_stale_ms``: a market order is refused when the newest book is older than this
      at submission (the clock's time minus the book's event time).
    - ``lot_size`` / ``tick_size``: default quantity and price steps; ``per_symbol``
      overrides them. Quantities are rounded down to the lot (below one lot: refused);
      limit prices are rounded to the tick toward the safer side (a buy down, a sell up),
      trigger prices to the nearest tick; ``tick_size`` None leaves prices as given.
    - ``id_prefix``: the broker's ids are ``{id_prefix}-{n:08d}`` (client ids it assigns),
      ``{id_prefix}-o{n:08d}`` (orders) and ``{id_prefix}-t{n:08d}`` (fills); give each
      session its own prefix when several write to one journal.
    """

    initial_cash: float = Field(default=100_000.0, description="Starting quote balance")
    currency: str = Field(default="USDT", description="Quote currency of the spot account")
    fees: FeeSchedule = Field(default_factory=FeeSchedule)
    latency_ms: int = Field(default=50, description="Delay from submit to the venue, ms")
    max_book_levels: int | None = Field(default=None, description="Levels walked per side")
    allow_partial_fills: bool = True
    book_stale_ms: int = Field(default=5_000, description="Max age of the book a market uses")
    lot_size: float = Field(default=1e-8, description="Default quantity step (base units)")
    tick_size: float | None = Field(default=None, description="Default price step (quote)")
    per_symbol: dict[str, SymbolRules] = Field(default_factory=dict)
    id_prefix: str = Field(default="paper", description="Prefix of the broker's ids")

    @field_validator("initial_cash")
    @classmethod
    def _cash(cls, value: float) -> float:
        return check_cash(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return check_currency(value)

    @field_validator("latency_ms", "book_stale_ms")
    @classmethod
    def _millis(cls, value: int, info: ValidationInfo) -> int:
        if value < 0:
            raise ValueError(f"{info.field_name} must be 0 or more milliseconds, got {value}")
        return value

    @field_validator("max_book_levels")
    @classmethod
    def _levels(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_book_levels must be 1 or more (or None: all), got {value}")
        return value

    @field_validator("lot_size")
    @classmethod
    def _lot(cls, value: float) -> float:
        return _step(value, "lot_size") or value

    @field_validator("tick_size")
    @classmethod
    def _tick(cls, value: float | None) -> float | None:
        return _step(value, "tick_size")

    @field_validator("id_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError(
                f"id_prefix must be letters, digits, '_' or '-' (non-empty), got {value!r}"
            )
        return value

    def lot(self, symbol: str) -> float:
        """The quantity step of ``symbol`` (base units)."""
        rules = self.per_symbol.get(symbol)
        return rules.lot_size if rules is not None and rules.lot_size is not None else self.lot_size

    def tick(self, symbol: str) -> float | None:
        """The price step of ``symbol`` (quote units), None when prices are not rounded."""
        rules = self.per_symbol.get(symbol)
        if rules is not None and rules.tick_size is not None:
            return rules.tick_size
        return self.tick_size
