"""Williams market structure: recursive swing pivots, support/resistance and PivotBounds.

:func:`williams_pivots` (batch) and :class:`StreamingWilliamsPivots` (bar by bar) compute the
same pivots; every pivot carries the bar at which it becomes known (``confirm_index``) and
consumers use only pivots with ``confirm_index <= now``. See :mod:`.williams` for the exact
definitions and :mod:`.levels` for support/resistance and normalization bounds.
"""

from pivotal.features.pivots.levels import (
    PivotBounds,
    PriceLevel,
    pivot_bounds_series,
    support_resistance,
)
from pivotal.features.pivots.streaming import StreamingWilliamsPivots
from pivotal.features.pivots.williams import (
    Pivot,
    pivots_known_at,
    pivots_to_frame,
    to_pivot_points,
    williams_pivots,
)

__all__ = [
    "Pivot",
    "PivotBounds",
    "PriceLevel",
    "StreamingWilliamsPivots",
    "pivot_bounds_series",
    "pivots_known_at",
    "pivots_to_frame",
    "support_resistance",
    "to_pivot_points",
    "williams_pivots",
]
