"""The simulated broker's matching rules as pure functions: no state, no events, no clock.

:class:`~pivotal.trading.brokers.simulated.SimulatedBroker` owns the orders and the
account and calls these to decide *whether* and *at what reference price* an order fills
in a bar, how many lots an ``equity_fraction`` order buys, and whether the account can
carry a fill. Everything here reads only its arguments, so the rules can be tested (and
reused by another venue simulator) without a broker.

**Timing.** A bar is pushed to the broker when it has closed (``on_bar(symbol, candle)``);
it opens at ``candle.timestamp`` and closes at ``timestamp + bar_ms`` (UTC ms). An order
is *eligible* in a bar when ``created_ms + latency_ms <= bar open`` (an order submitted at
the close of the previous bar is eligible in this one).

**Fill rules** (in this order within a bar — pessimistic, since the path inside a bar is
unknown: market orders first, then stops, then take-profits, then limits; within a group,
in submission order):

1. GTD orders whose ``expire_at_ms <= open time`` expire.
2. Market orders fill at the bar's **open**. With ``trades`` for the symbol they fill at
   the first trade with ``timestamp >= max(created_ms + latency_ms, bar open)`` inside the
   bar (so a late submission may still fill inside the bar), else at the open if eligible.
   With ``fill_timing="current_close"`` they fill inside ``submit`` at the close of the
   last bar pushed (rejected with "no price yet" before any).
3. A buy stop triggers when ``high >= stop`` and fills at ``max(open, stop)`` (a gap above
   the stop fills at the open); a sell stop when ``low <= stop`` at ``min(open, stop)``.
4. A sell take-profit triggers when ``high >= trigger`` at ``max(open, trigger)``; a buy
   take-profit when ``low <= trigger`` at ``min(open, trigger)``.
5. A buy limit fills when ``low < limit`` (``<=`` with ``limit_fill_on_touch``) at
   ``min(open, limit)``; a sell limit when ``high > limit`` (``>=``) at ``max(open, limit)``.

Before filling, an open position is marked at the bar's open (the price at that moment),
so sizing and margin checks use no later price. Limit fills pay the maker fee and are never
slipped; everything else pays the taker fee and goes through the slippage model. Every
fill price is then clamped to the bar's ``[low, high]``. A fill's ``timestamp`` is the bar's
open (or the trade's time; the clock's time for a ``current_close`` fill).

**Sizing.** ``equity_fraction`` orders are sized at their first fill (backtesting.py's
rule, :func:`affordable_lots`): ``lots = (fraction × base × leverage) // (lot × price ×
(1 + fee rate))`` where ``base`` is ``available`` plus the margin the order frees by
closing an opposite position.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "LIMIT",
    "MARGIN_TOLERANCE",
    "MARKET",
    "NO_SHORT",
    "PHASE_NAMES",
    "STOP",
    "TAKE_PROFIT",
    "affordable_lots",
    "first_trade",
    "limit_reference",
    "margin_shortfall",
    "position_lots",
    "px",
    "qty",
    "to_lots",
    "trigger_reference",
]

#: Matching phases, in the order they are worked within a bar.
MARKET, STOP, TAKE_PROFIT, LIMIT = 0, 1, 2, 3
PHASE_NAMES = {STOP: "stop", TAKE_PROFIT: "take-profit"}
MARGIN_TOLERANCE = 1e-12
NO_SHORT = "short selling is disabled (allow_short=False): the rest would open a short"


def first_trade(
    times: np.ndarray, prices: np.ndarray, start: int, end: int
) -> tuple[int, float] | None:
    """Time and price of the first trade with ``start <= time < end``, or None."""
    k = int(np.searchsorted(times, start, side="left"))
    if k < len(times) and times[k] < end:
        return int(times[k]), float(prices[k])
    return None


def limit_reference(
    buy: bool, limit: float, opening: float, high: float, low: float, *, touch: bool
) -> float | None:
    """The reference price of a limit order in a bar (rule 5), or None when it does not
    fill: a buy when ``low < limit`` (``<=`` with ``touch``) at ``min(open, limit)``, a sell
    when ``high > limit`` (``>=``) at ``max(open, limit)``."""
    if buy:
        hit = low <= limit if touch else low < limit
        return min(opening, limit) if hit else None
    hit = high >= limit if touch else high > limit
    return max(opening, limit) if hit else None


def trigger_reference(
    upward: bool, trigger: float, opening: float, high: float, low: float
) -> float | None:
    """The reference price of a stop or take-profit triggered in a bar (rules 3 and 4), or
    None when it does not trigger. ``upward`` = it triggers on a rise (a buy stop, a sell
    take-profit): when ``high >= trigger`` at ``max(open, trigger)``; otherwise when
    ``low <= trigger`` at ``min(open, trigger)``."""
    if upward:
        return max(opening, trigger) if high >= trigger else None
    return min(opening, trigger) if low <= trigger else None


def to_lots(quantity: float, lot: float) -> int:
    """Whole lots in ``quantity``, rounded down; a quotient within float error of a whole
    number (1e-13 relative, at most 0.001 lot) counts as that number."""
    exact = quantity / lot
    nearest = round(exact)
    if abs(exact - nearest) <= min(1e-3, max(1e-9, 1e-13 * exact)):
        return int(nearest)
    return math.floor(exact)


def position_lots(position: float, lot: float) -> int:
    """A signed position in whole lots (nearest)."""
    return round(position / lot)


def affordable_lots(
    fraction: float,
    *,
    available: float,
    freed: float,
    leverage: float,
    lot: float,
    price: float,
    rate: float,
) -> int:
    """Lots an ``equity_fraction`` order buys at ``price`` (backtesting.py's sizing):
    ``(fraction × (available + freed) × leverage) // (lot × price × (1 + rate))``, 0 when
    nothing is affordable. ``freed`` is the margin released by closing an opposite
    position (``|position| × mark / leverage``), 0 otherwise."""
    lots = (fraction * (available + freed) * leverage) // (lot * price * (1.0 + rate))
    return int(lots) if lots > 0 else 0


def margin_shortfall(
    position: float,
    sign: int,
    quantity: float,
    price: float,
    rate: float,
    *,
    leverage: float,
    available: float,
    mark: float,
) -> tuple[float, float] | None:
    """``(need, room)`` when the account cannot carry ``quantity`` more on side ``sign`` at
    ``price``, None when it can.

    Need = ``(opening × price + quantity × price × rate) / leverage`` where ``opening`` is
    the part beyond an opposite ``position``; room = ``available`` + the margin the closing
    part frees (at ``mark``). A pure reduction always passes.
    """
    closing = min(quantity, abs(position)) if position * sign < 0 else 0.0
    opening = quantity - closing
    if opening <= MARGIN_TOLERANCE * quantity:
        return None
    need = (opening * price + quantity * price * rate) / leverage
    room = available
    if closing:
        room += closing * mark / leverage
    if need > room * (1.0 + MARGIN_TOLERANCE):
        return need, room
    return None


def px(value: float) -> str:
    """A price for a message (12 significant digits)."""
    return f"{value:.12g}"


def qty(value: float) -> str:
    """A quantity for a message (rounded to 12 decimals)."""
    return repr(round(value, 12))
