"""Settings of one backtest: the simulated broker's and the risk manager's, composed."""

from __future__ import annotations

from pydantic import Field

from pivotal.config.models import StrictModel
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.risk import RiskConfig


class BacktestSettings(StrictModel):
    """Everything besides data and strategy that decides a backtest's outcome.

    ``atr_period`` is the ATR the risk manager sees (volatility sizing, ATR stops).
    """

    broker: SimulatedBrokerConfig = Field(default_factory=SimulatedBrokerConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    atr_period: int = Field(default=14, ge=1, le=1000)
