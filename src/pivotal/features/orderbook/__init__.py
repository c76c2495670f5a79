"""Order book features: an L2 book with Binance sequencing, 1s COB buckets, order flow.

Prices in the quote currency, volumes in the base asset, times UTC ms.
"""

from pivotal.features.orderbook.book import (
    DepthEvents,
    DiffOutcome,
    OrderBook,
    ReplayStep,
    SequenceGap,
    Sequencing,
    iter_replay,
    levels_from_pairs,
    replay_depth,
)
from pivotal.features.orderbook.cob import (
    Buckets,
    COBConfig,
    COBSampler,
    Heatmap,
    ImbalanceMA,
    bucketize,
    cob_heatmap,
    iter_cob,
)
from pivotal.features.orderbook.order_flow import (
    OrderFlow,
    OrderFlowAccumulator,
    OrderFlowConfig,
    order_flow,
)

__all__ = [
    "Buckets",
    "COBConfig",
    "COBSampler",
    "DepthEvents",
    "DiffOutcome",
    "Heatmap",
    "ImbalanceMA",
    "OrderBook",
    "OrderFlow",
    "OrderFlowAccumulator",
    "OrderFlowConfig",
    "ReplayStep",
    "SequenceGap",
    "Sequencing",
    "bucketize",
    "cob_heatmap",
    "iter_cob",
    "iter_replay",
    "levels_from_pairs",
    "order_flow",
    "replay_depth",
]
