"""The risk manager's configuration: sizing, stops, caps, halts and VaR, as one frozen model.

Units: every ``*_fraction``, ``*_pct``, ``risk_per_trade``, ``volatility_target``,
``max_drawdown`` and ``daily_loss_limit`` is a share (0.01 = 1 %), never a percentage
number. ``max_leverage`` is gross exposure divided by equity. ``stop_loss_atr`` counts ATRs.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pivotal.config.models import StrictModel

SizingMethod = Literal["fixed_fraction", "risk_per_trade", "volatility_target"]


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


class RiskConfig(StrictModel):
    """How the :class:`~pivotal.trading.risk.manager.RiskManager` sizes and limits orders.

    Sizing (``sizing``) decides the size of an entry when the action gives none:

    - ``fixed_fraction``: the entry's notional is ``fraction × equity`` (``fraction`` may
      exceed 1 up to ``max_leverage``); sent with its ``equity_fraction`` and the quantity
      it buys at the decision price (an exchange executes that; the simulated broker
      re-sizes at the fill price while ``size_at_fill`` is on).
    - ``risk_per_trade``: ``quantity = equity × risk_per_trade / loss per unit at the stop``
      (stop distance plus taker fees); needs ``stop_loss_pct`` or ``stop_loss_atr``.
    - ``volatility_target``: ``quantity = equity × volatility_target / ATR``: one ATR move
      costs ``volatility_target`` of equity.

    Limits apply to every entry, whatever sized it: per-symbol notional at most
    ``symbol_caps.get(symbol, max_position_fraction) × equity``, gross exposure after the
    order at most ``max_leverage × equity``. ``max_drawdown`` and ``daily_loss_limit`` halt
    new entries (exits are never blocked).
    """

    sizing: SizingMethod = Field(
        default="fixed_fraction", description="How entries are sized when no quantity is given"
    )
    fraction: float = Field(
        default=1.0,
        description="fixed_fraction: entry notional as a share of equity, in (0, max_leverage]",
    )
    risk_per_trade: float = Field(
        default=0.01, description="risk_per_trade: share of equity lost if the stop is hit"
    )
    volatility_target: float = Field(
        default=0.01, description="volatility_target: share of equity one ATR move may cost"
    )
    stop_loss_pct: float | None = Field(
        default=None, description="Protective stop this share away from the entry price"
    )
    stop_loss_atr: float | None = Field(
        default=None, description="Protective stop this many ATRs away from the entry price"
    )
    take_profit_pct: float | None = Field(
        default=None, description="Take-profit this share away from the entry price"
    )
    max_position_fraction: float = Field(
        default=1.0, description="Max |notional| of one symbol's position as a share of equity"
    )
    symbol_caps: dict[str, float] = Field(
        default_factory=dict,
        description="Per-symbol override of max_position_fraction, e.g. {'ETH/USDT': 0.5}",
    )
    max_leverage: float = Field(
        default=1.0, description="Max gross exposure / equity after an order"
    )
    max_drawdown: float | None = Field(
        default=None,
        description="Circuit breaker: halt new entries once equity is this share below its peak",
    )
    daily_loss_limit: float | None = Field(
        default=None,
        description="Halt new entries for the rest of the UTC day once equity is this share "
        "below the day's first equity",
    )
    allow_short: bool = Field(default=False, description="Whether SELL may open a short")
    var_confidence: float = Field(
        default=0.95, description="Confidence of the historical VaR / expected shortfall"
    )
    var_window: int = Field(
        default=1440, description="Per-bar equity returns kept for VaR (the most recent ones)"
    )

    @field_validator(
        "fraction", "risk_per_trade", "volatility_target", "max_position_fraction", "max_leverage"
    )
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        name = info.field_name or "value"
        _finite(name, value)
        if value <= 0:
            raise ValueError(f"{name} must be above 0, got {value!r}")
        return value

    @field_validator("risk_per_trade", "volatility_target")
    @classmethod
    def _share_at_most_one(cls, value: float, info: ValidationInfo) -> float:
        name = info.field_name or "value"
        if value > 1:
            raise ValueError(f"{name} is a share of equity in (0, 1] (0.01 = 1 %), got {value!r}")
        return value

    @field_validator("stop_loss_pct", "max_drawdown", "daily_loss_limit")
    @classmethod
    def _open_unit(cls, value: float | None, info: ValidationInfo) -> float | None:
        name = info.field_name or "value"
        if value is None:
            return None
        _finite(name, value)
        if not 0 < value < 1:
            raise ValueError(f"{name} is a share in (0, 1) (0.2 = 20 %), got {value!r}")
        return value

    @field_validator("stop_loss_atr", "take_profit_pct")
    @classmethod
    def _optional_positive(cls, value: float | None, info: ValidationInfo) -> float | None:
        name = info.field_name or "value"
        if value is None:
            return None
        _finite(name, value)
        if value <= 0:
            raise ValueError(f"{name} must be above 0 (or unset), got {value!r}")
        return value

    @field_validator("symbol_caps")
    @classmethod
    def _caps(cls, value: dict[str, float]) -> dict[str, float]:
        caps: dict[str, float] = {}
        for symbol, cap in value.items():
            key = symbol.strip().upper()
            if not key:
                raise ValueError("symbol_caps keys must be symbols such as 'BTC/USDT', got ''")
            if not math.isfinite(cap) or cap <= 0:
                raise ValueError(
                    f"symbol_caps[{symbol!r}] must be a share of equity above 0, got {cap!r}"
                )
            caps[key] = cap
        return caps

    @field_validator("var_confidence")
    @classmethod
    def _confidence(cls, value: float) -> float:
        if not 0.5 <= value < 1:
            raise ValueError(f"var_confidence must lie in [0.5, 1) (e.g. 0.95), got {value!r}")
        return value

    @field_validator("var_window")
    @classmethod
    def _window(cls, value: int) -> int:
        if value < 30:
            raise ValueError(
                f"var_window must be at least 30 bars (VaR needs 30 returns), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        if self.stop_loss_pct is not None and self.stop_loss_atr is not None:
            raise ValueError(
                "stop_loss_pct and stop_loss_atr are mutually exclusive; set only one "
                f"(got stop_loss_pct={self.stop_loss_pct}, stop_loss_atr={self.stop_loss_atr})"
            )
        if self.fraction > self.max_leverage:
            raise ValueError(
                f"fraction {self.fraction} exceeds max_leverage {self.max_leverage}: an entry "
                "of that size would break the leverage cap; lower fraction or raise max_leverage"
            )
        return self

    def position_cap(self, symbol: str) -> float:
        """Max |notional| / equity for ``symbol``: its ``symbol_caps`` entry, else the default."""
        return self.symbol_caps.get(str(symbol).strip().upper(), self.max_position_fraction)

    @property
    def has_stop(self) -> bool:
        return self.stop_loss_pct is not None or self.stop_loss_atr is not None

    @property
    def uses_atr(self) -> bool:
        """Whether a review reads the ATR (an ATR stop or volatility-target sizing)."""
        return self.stop_loss_atr is not None or self.sizing == "volatility_target"
