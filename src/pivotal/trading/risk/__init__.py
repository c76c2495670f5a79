"""The risk manager: sizing, limits, the drawdown circuit breaker and live risk metrics."""

from pivotal.trading.risk.alerts import ALERT_KINDS, AlertKind, RiskAlert
from pivotal.trading.risk.config import RiskConfig, SizingMethod
from pivotal.trading.risk.manager import RiskDecision, RiskManager
from pivotal.trading.risk.metrics import (
    EquityTracker,
    Halt,
    RiskMetrics,
    TrackerState,
    drawdown,
    historical_var,
)
from pivotal.trading.risk.sizing import (
    MarketState,
    ProtectiveLevels,
    RequestedSize,
    SizingRefused,
    ceil_to_lot,
    exit_order,
    floor_to_lot,
    protective_levels,
    protective_orders,
    requested_size,
)

__all__ = [
    "ALERT_KINDS",
    "AlertKind",
    "EquityTracker",
    "Halt",
    "MarketState",
    "ProtectiveLevels",
    "RequestedSize",
    "RiskAlert",
    "RiskConfig",
    "RiskDecision",
    "RiskManager",
    "RiskMetrics",
    "SizingMethod",
    "SizingRefused",
    "TrackerState",
    "ceil_to_lot",
    "drawdown",
    "exit_order",
    "floor_to_lot",
    "historical_var",
    "protective_levels",
    "protective_orders",
    "requested_size",
]
