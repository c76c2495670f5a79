"""Slippage models: the price a taker fill (market, stop, take-profit) really gets.

A model turns a *reference* price (the bar's open, the stop level, a trade's price) into an
adjusted price that is worse for the order: higher for a buy, lower for a sell. Limit fills
are never slipped (they fill at their limit or better). The broker then **clamps** the
adjusted price to the fill bar's ``[low, high]``: the simulator never fills at a price the
bar never traded, so slippage is bounded by the bar's range.

Every model is causal: it reads only data known at the fill (the volatility model uses
closes up to the *previous* bar; the order book model the newest snapshot at or before the
fill time).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pivotal.core.orders import OrderSide

if TYPE_CHECKING:
    from pivotal.core.types import COBData
    from pivotal.trading.brokers.config import SimulatedBrokerConfig

__all__ = [
    "FixedBpsSlippage",
    "NoSlippage",
    "OrderBookSlippage",
    "SlippageModel",
    "VolatilitySlippage",
    "slippage_from_config",
]


@runtime_checkable
class SlippageModel(Protocol):
    """Adjusts a taker fill's reference price; the broker clamps the result to the bar."""

    def adjust(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        *,
        symbol: str,
        bar_index: int,
        timestamp: int,
    ) -> float:
        """The fill price before clamping for ``quantity`` base units filled at
        ``timestamp`` (UTC ms) in bar ``bar_index`` of ``symbol``."""
        ...


class NoSlippage:
    """Fills at the reference price."""

    def adjust(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        *,
        symbol: str,
        bar_index: int,
        timestamp: int,
    ) -> float:
        return reference_price


class FixedBpsSlippage:
    """A fixed cost in basis points: a buy pays ``price * (1 + bps/1e4)``, a sell gets
    ``price * (1 - bps/1e4)``."""

    def __init__(self, bps: float) -> None:
        if not math.isfinite(bps) or not 0.0 <= bps <= 1000.0:
            raise ValueError(f"slippage bps must be in [0, 1000], got {bps!r}")
        self.bps = float(bps)
        self._fraction = self.bps / 10_000.0

    def adjust(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        *,
        symbol: str,
        bar_index: int,
        timestamp: int,
    ) -> float:
        if side is OrderSide.BUY:
            return reference_price * (1.0 + self._fraction)
        return reference_price * (1.0 - self._fraction)


class VolatilitySlippage:
    """Slippage proportional to recent volatility.

    The fraction is ``multiplier × std(log returns)`` of the ``window`` closes that end at
    the **previous** bar (``closes[bar - window : bar]``, so ``window - 1`` returns, sample
    standard deviation with ``ddof=1``). Near the start of the data fewer closes are used;
    with fewer than two returns the fraction is 0. Bar ``bar_index`` itself is never read,
    so a fill at its open knows nothing of its close.

    Without ``closes`` the model streams: the broker hands it each bar's close once the next
    bar arrives (:meth:`record`), it keeps the newest ``window`` per symbol, and a fill reads
    those (the same closes ``closes[bar - window : bar]`` would give; ``bar_index`` unused).
    """

    def __init__(
        self,
        multiplier: float,
        window: int,
        *,
        closes: Mapping[str, npt.NDArray[np.float64]] | None = None,
    ) -> None:
        if not math.isfinite(multiplier) or multiplier < 0:
            raise ValueError(f"volatility multiplier must be 0 or more, got {multiplier!r}")
        if window < 3:
            raise ValueError(f"volatility window must be 3 closes or more, got {window}")
        self.multiplier = float(multiplier)
        self.window = int(window)
        self._closes = (
            None
            if closes is None
            else {s: np.asarray(c, dtype=np.float64) for s, c in closes.items()}
        )
        self._recent: dict[str, deque[float]] = {}

    def record(self, symbol: str, closes: Iterable[float]) -> None:
        """Streaming mode: ``closes`` of ``symbol``'s bars before the one that fills next
        (oldest first); only the newest ``window`` are kept."""
        if self._closes is not None:
            raise ValueError("this volatility model was built over closes; it does not stream")
        recent = self._recent.get(symbol)
        if recent is None:
            recent = self._recent[symbol] = deque(maxlen=self.window)
        if isinstance(closes, np.ndarray):
            closes = closes[-self.window :]
        recent.extend(closes)

    def fraction(self, symbol: str, bar_index: int) -> float:
        """The slippage fraction for a fill in bar ``bar_index`` (closes before it only)."""
        if self._closes is None:
            recent = self._recent.get(symbol, ())
            if len(recent) < 3:
                return 0.0
            returns = np.diff(np.log(np.fromiter(recent, dtype=np.float64, count=len(recent))))
            return self.multiplier * float(np.std(returns, ddof=1))
        closes = self._closes.get(symbol)
        if closes is None:
            raise ValueError(
                f"no closes for {symbol!r} in the volatility slippage model; "
                f"it knows {sorted(self._closes)}"
            )
        window = closes[max(0, bar_index - self.window) : max(0, bar_index)]
        if len(window) < 3:
            return 0.0
        returns = np.diff(np.log(window))
        return self.multiplier * float(np.std(returns, ddof=1))

    def adjust(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        *,
        symbol: str,
        bar_index: int,
        timestamp: int,
    ) -> float:
        fraction = self.fraction(symbol, bar_index)
        if side is OrderSide.BUY:
            return reference_price * (1.0 + fraction)
        return reference_price * (1.0 - fraction)


class OrderBookSlippage:
    """Walk the consolidated order book (COB) for the fill's quantity.

    Uses the newest :class:`~pivotal.core.types.COBData` of the symbol stamped **at or
    before** the fill time. A buy consumes ``ask_volume`` bucket by bucket from the lowest
    price upward; a sell consumes ``bid_volume`` from the highest price downward. Each
    bucket's price is its ``volume_weighted_prices`` entry where that is above 0, else its
    ``bucket_prices`` entry. The fill price is the volume-weighted average of what was
    consumed. If the book is too thin, the rest fills at the price of the **last bucket of
    the walk** (the highest bucket for a buy, the lowest for a sell). With no snapshot at or
    before the fill time (or none for the symbol, or an empty side) the model falls back to
    ``fallback_bps`` of fixed slippage on the reference price.
    """

    def __init__(self, books: Mapping[str, Sequence[COBData]], fallback_bps: float = 0.0) -> None:
        self._fallback = FixedBpsSlippage(fallback_bps)
        self._books: dict[str, Sequence[COBData]] = {}
        self._times: dict[str, list[int]] = {}
        for symbol, snapshots in books.items():
            times = [int(s.timestamp) for s in snapshots]
            if any(b < a for a, b in itertools.pairwise(times)):
                raise ValueError(
                    f"order book snapshots of {symbol!r} must be sorted by timestamp, oldest first"
                )
            self._books[symbol] = snapshots
            self._times[symbol] = times

    def snapshot_at(self, symbol: str, timestamp: int) -> COBData | None:
        """The newest snapshot of ``symbol`` stamped at or before ``timestamp``, or None."""
        times = self._times.get(symbol)
        if not times:
            return None
        k = bisect.bisect_right(times, timestamp)
        return None if k == 0 else self._books[symbol][k - 1]

    def adjust(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        *,
        symbol: str,
        bar_index: int,
        timestamp: int,
    ) -> float:
        book = self.snapshot_at(symbol, timestamp)
        if book is not None:
            price = walk_book(book, side, quantity)
            if price is not None:
                return price
        return self._fallback.adjust(
            side, reference_price, quantity, symbol=symbol, bar_index=bar_index, timestamp=timestamp
        )


def walk_book(book: COBData, side: OrderSide, quantity: float) -> float | None:
    """The average price of ``quantity`` taken from ``book`` (see :class:`OrderBookSlippage`);
    None when the side it takes from holds no volume at all."""
    prices = np.where(
        book.volume_weighted_prices > 0, book.volume_weighted_prices, book.bucket_prices
    )
    if side is OrderSide.BUY:
        volume = book.ask_volume
    else:
        volume = book.bid_volume[::-1]
        prices = prices[::-1]
    if len(volume) == 0 or not float(volume.sum()) > 0:
        return None
    before = np.cumsum(volume) - volume
    taken = np.clip(quantity - before, 0.0, volume)
    filled = float(taken.sum())
    cost = float(np.dot(taken, prices))
    rest = quantity - filled
    if rest > 0:
        cost += rest * float(prices[-1])
    return cost / quantity


def slippage_from_config(
    config: SimulatedBrokerConfig,
    *,
    closes: Mapping[str, npt.NDArray[np.float64]] | None = None,
    books: Mapping[str, Sequence[COBData]] | None = None,
) -> SlippageModel:
    """The model that ``config.slippage`` names, built over the broker's data.

    ``"volatility"`` streams (fed by the broker's :meth:`VolatilitySlippage.record`) unless
    ``closes`` are given; ``"orderbook"`` needs ``books``; a symbol without snapshots uses
    the fallback bps.
    """
    kind = config.slippage
    if kind == "none":
        return NoSlippage()
    if kind == "fixed":
        return FixedBpsSlippage(config.slippage_bps)
    if kind == "volatility":
        return VolatilitySlippage(
            config.volatility_multiplier, config.volatility_window, closes=closes
        )
    if kind == "orderbook":
        if books is None:
            raise ValueError(
                "slippage='orderbook' needs order book snapshots: pass books={symbol: [COBData]}"
                " to the broker, or choose slippage 'none', 'fixed' or 'volatility'"
            )
        return OrderBookSlippage(books, config.slippage_bps)
    raise ValueError(
        f"unknown slippage model {kind!r}; use 'none', 'fixed', 'volatility' or 'orderbook'"
    )
