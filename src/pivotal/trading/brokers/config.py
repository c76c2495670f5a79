"""Settings of the simulated broker (backtests and paper trading).

Units: money in the quote ``currency``; quantities in base units; ``latency_ms`` in
milliseconds; ``slippage_bps`` in basis points (1 bp = 0.01 %); fee rates are fractions.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pivotal.config.models import StrictModel
from pivotal.trading.fees import FeeSchedule

__all__ = ["SimulatedBrokerConfig"]


def check_cash(value: float) -> float:
    """A starting balance: finite and above 0 (every broker config's ``initial_cash``)."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"initial_cash must be a finite amount above 0, got {value!r}")
    return value


def check_currency(value: str) -> str:
    """An account currency code, upper case (every broker config's ``currency``)."""
    value = value.strip().upper()
    if not value:
        raise ValueError("currency must be a non-empty asset code such as USDT")
    return value


class SimulatedBrokerConfig(StrictModel):
    """How the :class:`~pivotal.trading.brokers.simulated.SimulatedBroker` fills orders.

    - ``fill_timing``: ``"next_open"`` fills a market order at the open of the first bar
      that opens after it was submitted (plus ``latency_ms``), like backtesting.py;
      ``"current_close"`` fills it at once, inside ``submit``, at the close of the last bar
      the broker has seen (backtesting.py's ``trade_on_close``).
    - ``slippage``: the model applied to taker fills (market, stop, take-profit), never to
      limit fills; ``slippage_bps`` is the fixed model's cost and the order book model's
      fallback; the volatility model uses ``volatility_multiplier`` × the standard deviation
      of the last ``volatility_window`` closes' log returns.
    - ``limit_fill_on_touch``: a buy limit fills when the low merely *touches* the limit
      (``low <= limit``) instead of trading through it (``low < limit``).
    - ``max_volume_fraction``: at most this share of a bar's volume fills per bar and
      symbol (the rest waits for later bars); None = no cap.
    - ``lot_size``: quantities are whole multiples of it (1e-8 = one satoshi for BTC).
    - ``leverage``: margin needed is ``|notional| / leverage``; 1 = a cash account.
    - ``allow_short``: whether a sell may open or increase a short position.
    - ``size_at_fill``: an order carrying ``equity_fraction`` is sized at its first fill
      from the fill price (backtesting.py's rule: the default, so results stay equal to
      backtesting.py's), even when it also carries the ``quantity`` the risk manager
      computed at the decision price. False behaves as an exchange does: the order's
      ``quantity`` is executed as given, and an order with no quantity is rejected.
    """

    initial_cash: float = Field(default=100_000.0, description="Starting cash (quote currency)")
    currency: str = Field(default="USDT", description="Quote currency of the account")
    fees: FeeSchedule = Field(default_factory=FeeSchedule)
    fill_timing: Literal["next_open", "current_close"] = "next_open"
    latency_ms: int = Field(default=0, description="Delay from submit to eligibility, ms")
    slippage: Literal["none", "fixed", "volatility", "orderbook"] = "none"
    slippage_bps: float = Field(default=0.0, description="Fixed slippage / order book fallback")
    volatility_multiplier: float = 1.0
    volatility_window: int = 20
    limit_fill_on_touch: bool = False
    max_volume_fraction: float | None = None
    lot_size: float = Field(default=1e-8, description="Quantity step in base units")
    leverage: float = 1.0
    allow_short: bool = False
    size_at_fill: bool = True

    @field_validator("initial_cash")
    @classmethod
    def _cash(cls, value: float) -> float:
        return check_cash(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return check_currency(value)

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"latency_ms must be 0 or more milliseconds, got {value}")
        return value

    @field_validator("slippage_bps")
    @classmethod
    def _bps(cls, value: float) -> float:
        if not math.isfinite(value) or not 0.0 <= value <= 1000.0:
            raise ValueError(f"slippage_bps must be in [0, 1000] basis points, got {value!r}")
        return value

    @field_validator("volatility_multiplier")
    @classmethod
    def _multiplier(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"volatility_multiplier must be 0 or more, got {value!r}")
        return value

    @field_validator("volatility_window")
    @classmethod
    def _window(cls, value: int) -> int:
        if value < 3:
            raise ValueError(
                f"volatility_window must be 3 closes or more (2 log returns), got {value}"
            )
        return value

    @field_validator("max_volume_fraction")
    @classmethod
    def _volume(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ValueError(
                f"max_volume_fraction must be in (0, 1] or None (no cap), got {value!r}"
            )
        return value

    @field_validator("lot_size")
    @classmethod
    def _lot(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"lot_size must be a finite quantity above 0, got {value!r}")
        return value

    @field_validator("leverage")
    @classmethod
    def _leverage(cls, value: float) -> float:
        if not math.isfinite(value) or value < 1.0:
            raise ValueError(f"leverage must be 1 (no leverage) or more, got {value!r}")
        return value

    @model_validator(mode="after")
    def _timing(self) -> SimulatedBrokerConfig:
        if self.fill_timing == "current_close" and self.latency_ms:
            raise ValueError(
                "latency_ms applies to fill_timing='next_open' only; with 'current_close' a "
                "market order fills inside submit, so set latency_ms to 0"
            )
        return self
