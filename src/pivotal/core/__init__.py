"""Domain types, timeframes, symbols, errors and the clock. No I/O; imports nothing of ours."""

from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.clock import Clock, ReplayClock, WallClock
from pivotal.core.errors import (
    ConfigError,
    DataError,
    ModelError,
    OperationalError,
    PivotalError,
    RiskRejected,
    TransientError,
)
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import (
    Action,
    BaseDataInput,
    COBData,
    MarketTick,
    ModelOutput,
    OHLCVBar,
    PivotKind,
    PivotPoint,
    TradeSide,
    TradingAction,
)

__all__ = [
    "CANDLE_COLUMNS",
    "COBData",
    "Action",
    "BaseDataInput",
    "Candles",
    "Clock",
    "ConfigError",
    "DataError",
    "MarketTick",
    "ModelError",
    "ModelOutput",
    "OHLCVBar",
    "OperationalError",
    "PivotKind",
    "PivotPoint",
    "PivotalError",
    "ReplayClock",
    "RiskRejected",
    "Symbol",
    "Timeframe",
    "TradeSide",
    "TradingAction",
    "TransientError",
    "WallClock",
]
