"""Trading fees: a maker and a taker rate, with per-symbol overrides.

Rates are **fractions of the fill's notional** (``0.001`` = 0.1 %), charged on every fill,
entry and exit alike, in the quote currency: ``fee = quantity * price * rate`` (the way
backtesting.py's relative ``commission`` works). Limit orders pay the maker rate; market,
stop and take-profit orders pay the taker rate.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from pivotal.config.models import StrictModel
from pivotal.core.orders import Liquidity

__all__ = ["FeeSchedule", "SymbolFees"]

_MAX_RATE = 0.1


def _check_rate(value: float, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} fee rate must be a number, got {type(value).__name__}")
    if not 0.0 <= value < _MAX_RATE:
        raise ValueError(
            f"{name} fee rate must be a fraction in [0, {_MAX_RATE}) (0.001 = 0.1 %), got {value!r}"
        )
    return float(value)


class SymbolFees(StrictModel):
    """The maker and taker rates of one symbol (fractions: 0.001 = 0.1 %)."""

    maker: float = Field(description="Rate for limit (maker) fills, a fraction in [0, 0.1)")
    taker: float = Field(description="Rate for market/stop (taker) fills, a fraction in [0, 0.1)")

    @field_validator("maker", "taker")
    @classmethod
    def _rate(cls, value: float, info: ValidationInfo) -> float:
        return _check_rate(value, info.field_name or "fee")


class FeeSchedule(StrictModel):
    """Default maker/taker rates plus per-symbol overrides keyed by symbol (``"BTC/USDT"``)."""

    maker: float = Field(default=0.001, description="Default maker rate (fraction, 0.001 = 0.1 %)")
    taker: float = Field(default=0.001, description="Default taker rate (fraction, 0.001 = 0.1 %)")
    per_symbol: dict[str, SymbolFees] = Field(
        default_factory=dict, description="Overrides by symbol; others use maker/taker"
    )

    @field_validator("maker", "taker")
    @classmethod
    def _rate(cls, value: float, info: ValidationInfo) -> float:
        return _check_rate(value, info.field_name or "fee")

    def rate(self, symbol: str, liquidity: Liquidity | str) -> float:
        """The fee rate (a fraction of notional) for a ``liquidity`` fill on ``symbol``."""
        kind = Liquidity(liquidity)
        override = self.per_symbol.get(symbol)
        if override is not None:
            return override.maker if kind is Liquidity.MAKER else override.taker
        return self.maker if kind is Liquidity.MAKER else self.taker

    def rates(self, symbol: str) -> tuple[float, float]:
        """``(maker, taker)`` for ``symbol``: what a broker caches once per symbol."""
        return self.rate(symbol, Liquidity.MAKER), self.rate(symbol, Liquidity.TAKER)
