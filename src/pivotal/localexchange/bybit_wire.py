"""Bybit v5 spot wire pieces: interval names, topics, the pushed order-book view.

:class:`BookView` keeps what one ``orderbook.<depth>.<SYMBOL>`` topic last pushed (the top
``depth`` levels) and turns the market's new top levels into Bybit's delta: every level
whose quantity changed or that entered the top ``depth``, and every level that left it
with quantity 0. ``u`` counts the topic's messages (+1 for each snapshot or delta), ``seq``
is the market's book update id (Binance's ``u``) at the last push.
"""

from __future__ import annotations

from collections.abc import Mapping

from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.flow import BookSnapshot

#: Bybit's kline interval names of the timeframes the market builds (no 1s, 8h, W, M).
BYBIT_INTERVALS: dict[Timeframe, str] = {
    Timeframe.M1: "1", Timeframe.M3: "3", Timeframe.M5: "5", Timeframe.M15: "15",
    Timeframe.M30: "30", Timeframe.H1: "60", Timeframe.H2: "120", Timeframe.H4: "240",
    Timeframe.H6: "360", Timeframe.H12: "720", Timeframe.D1: "D",
}  # fmt: skip
TIMEFRAME_OF = {name: tf for tf, name in BYBIT_INTERVALS.items()}
#: The spot order-book depths of ``orderbook.<depth>.<SYMBOL>``.
ORDERBOOK_DEPTHS: tuple[int, ...] = (1, 50, 200, 1000)
#: Topics one subscribe request may carry (Bybit spot).
MAX_ARGS = 10
PARAM_ERROR = 10001
TOO_MANY_VISITS = 10006

Level = tuple[float, float]


class BookView:
    """The top ``depth`` levels of one symbol as last pushed on ``orderbook.<depth>.<SYM>``.

    ``u`` counts the topic's messages (every snapshot and delta adds 1); ``seq`` is the
    market's book update id at the last push; ``live`` is False while nobody listens (the
    view is then stale and re-read from the market on the next subscription).
    """

    __slots__ = ("asks", "bids", "depth", "live", "seq", "u")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.u = 0
        self.seq = 0
        self.live = False

    def reset(self, book: BookSnapshot) -> None:
        self.bids, self.asks = dict(book.bids), dict(book.asks)
        self.seq = book.last_update_id
        self.u += 1
        self.live = True

    def update(self, book: BookSnapshot) -> tuple[list[Level], list[Level]]:
        """Move to ``book``; the changed levels per side (quantity 0: removed)."""
        bids, asks = dict(book.bids), dict(book.asks)
        changed_bids = sorted(_changes(self.bids, bids), reverse=True)
        changed_asks = sorted(_changes(self.asks, asks))
        self.bids, self.asks, self.seq = bids, asks, book.last_update_id
        if changed_bids or changed_asks:
            self.u += 1
        return changed_bids, changed_asks

    def replace(self, book: BookSnapshot) -> bool:
        """Move to ``book`` (depth 1 pushes snapshots only); True when the levels changed."""
        bids, asks = dict(book.bids), dict(book.asks)
        changed = bids != self.bids or asks != self.asks
        self.bids, self.asks, self.seq = bids, asks, book.last_update_id
        if changed:
            self.u += 1
        return changed

    def levels(self) -> tuple[list[Level], list[Level]]:
        """The view's levels, best first."""
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def _changes(old: Mapping[float, float], new: Mapping[float, float]) -> list[Level]:
    changed = [(p, q) for p, q in new.items() if old.get(p) != q]
    return changed + [(p, 0.0) for p in old if p not in new]


def topic_parts(topic: str) -> tuple[str, str, str]:
    """``orderbook.50.BTCUSDT`` → (kind, middle, market id); empty strings if malformed."""
    parts = topic.split(".")
    if len(parts) == 2:
        return parts[0], "", parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return "", "", ""


def tick_direction(previous: tuple[float, str] | None, price: float) -> str:
    """Bybit's ``L`` of a trade at ``price`` after ``previous`` (price, direction)."""
    if previous is None:
        return "ZeroPlusTick"
    if price != previous[0]:
        return "PlusTick" if price > previous[0] else "MinusTick"
    return "ZeroPlusTick" if previous[1].endswith("PlusTick") else "ZeroMinusTick"
