"""How orders are executed and risked in every mode: the broker's settings, the risk
manager's, the ATR it sees and what happens at a gap in the data (backtest, replay, paper)."""

from __future__ import annotations

from pydantic import Field

from pivotal.config.models import StrictModel
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, GapPolicy
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.risk import RiskConfig


class TradingSettings(StrictModel):
    """Everything besides data and strategy that decides a run's outcome (any mode).

    ``atr_period`` is the ATR the risk manager sees (volatility sizing, ATR stops).
    ``gaps`` is what happens to a position at a gap in the data (a missing run of more than
    ``max_missing_bars`` bars): ``close`` (default) exits at the close of the last bar before
    it and takes no entry on that bar; ``hold`` carries the position through.
    """

    broker: SimulatedBrokerConfig = Field(default_factory=SimulatedBrokerConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    atr_period: int = Field(default=14, ge=1, le=1000)
    gaps: GapPolicy = GapPolicy.CLOSE
    max_missing_bars: int = Field(default=DEFAULT_MAX_MISSING_BARS, ge=0)
