"""Technical indicators: TA-Lib batch values behind typed functions, O(1) streaming twins.

Batch functions (:mod:`.batch`) take float64 arrays and return arrays of the same length with
NaN during warm-up; each streaming class (:mod:`.streaming`) takes one bar per ``update`` and,
started on the same first bar, returns the batch value of that bar. :mod:`.feature_set` bundles
them into the fixed-column feature set used by models.
"""

from pivotal.features.indicators.batch import (
    TIME_FEATURE_NAMES,
    atr,
    bollinger,
    ema,
    log_returns,
    macd,
    momentum,
    obv,
    rolling_volatility,
    rsi,
    sma,
    stochastic,
    time_features,
    vwap,
    wma,
)
from pivotal.features.indicators.feature_set import (
    FEATURE_COLUMNS,
    IndicatorConfig,
    StreamingIndicatorSet,
    compute_indicator_features,
)
from pivotal.features.indicators.streaming import (
    StreamingATR,
    StreamingBollinger,
    StreamingEMA,
    StreamingMACD,
    StreamingRSI,
    StreamingSMA,
    StreamingStochastic,
    StreamingWMA,
)
from pivotal.features.indicators.streaming_own import (
    StreamingLogReturn,
    StreamingMomentum,
    StreamingOBV,
    StreamingTimeFeatures,
    StreamingVolatility,
    StreamingVWAP,
)

__all__ = [
    "FEATURE_COLUMNS",
    "TIME_FEATURE_NAMES",
    "IndicatorConfig",
    "StreamingATR",
    "StreamingBollinger",
    "StreamingEMA",
    "StreamingIndicatorSet",
    "StreamingLogReturn",
    "StreamingMACD",
    "StreamingMomentum",
    "StreamingOBV",
    "StreamingRSI",
    "StreamingSMA",
    "StreamingStochastic",
    "StreamingTimeFeatures",
    "StreamingVWAP",
    "StreamingVolatility",
    "StreamingWMA",
    "atr",
    "bollinger",
    "compute_indicator_features",
    "ema",
    "log_returns",
    "macd",
    "momentum",
    "obv",
    "rolling_volatility",
    "rsi",
    "sma",
    "stochastic",
    "time_features",
    "vwap",
    "wma",
]
