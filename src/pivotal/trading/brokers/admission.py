"""What the simulated broker checks when an order arrives, and which orders protect an entry.

Private to :mod:`pivotal.trading.brokers.simulated`; the rules:

**Refusals.** ``submit`` returns a ``REJECTED`` order (the account untouched) for an unknown
symbol (one the broker was not built with, or, without ``symbols``, one no bar has reached
yet), a reduce-only order while flat or on the position's side, a sell that would open or
increase a short when ``allow_short`` is False, a quantity below one lot, insufficient margin
(``matching.margin_shortfall``; ``ref`` = the limit price or the last close; skipped before
the first price), or a GTD time already passed. The margin and the short rule are checked
again at every fill; an order refused then is REJECTED (nothing filled yet) or CANCELLED
(partly filled: ``ORDER_TRANSITIONS`` allows no rejection after a fill). Reduce-only orders
are cut to the position at fill (their quantity becomes what was held, so closing it
completes them: FILLED, as on exchanges).

**Protective orders.** A reduce-only stop or take-profit may be submitted *with* the entry
it protects, before that entry has filled: it is accepted while an active entry order on
the opposite side exists, rests untriggered until there is a position for it to reduce, and
then works within the entry's own bar (the entry fills at the open first, the stop may
trigger later in that bar). Whenever a symbol is flat, reduce-only orders that protect no
active entry (none on the opposite side submitted before them) are CANCELLED with
"position closed" (or "entry ended" when their entry was rejected or cancelled).

:func:`submit_refusal` also rounds a quantity order to whole lots on ``work`` (``lots``,
``quantity``), the one effect it has; everything else is read from its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pivotal.trading.brokers import matching as m
from pivotal.trading.brokers.working import Book, Working

#: ``margin(book, sign, quantity, price, fee rate)`` -> None or why the account cannot
#: carry that much more (the broker's ``_margin_shortfall``).
MarginCheck = Callable[[Book, int, float, float, float], "str | None"]


def unknown_symbol(symbol: str, known: Iterable[str], *, fixed: bool) -> str:
    """Why ``symbol`` cannot be traded: not among the ``fixed`` symbols, or no bar yet."""
    if fixed:
        return f"unknown symbol {symbol!r}; this broker trades {sorted(known)}"
    return (
        f"unknown symbol {symbol!r}: no bar of it has reached this broker yet; "
        f"it knows {sorted(known)}"
    )


def protects_entry(active: Sequence[Working], work: Working) -> bool:
    """Whether ``active`` holds a non-reduce-only order on the opposite side of ``work``,
    submitted before it and still active (the entry a reduce-only ``work`` protects)."""
    entry_side = work.request.side.opposite
    return any(
        not other.request.reduce_only
        and other.request.side is entry_side
        and other.seq < work.seq
        and other.order.status.is_active
        for other in active
    )


def submit_refusal(
    work: Working,
    book: Book,
    *,
    now: int,
    at_close: bool,
    position: float,
    lot: float,
    allow_short: bool,
    size_at_fill: bool,
    margin: MarginCheck,
) -> str | None:
    """Why ``work`` is refused at submission (``now``, UTC ms), or None to accept it.

    ``position`` is the symbol's signed position in base units; ``at_close`` says a market
    order fills at once at the last close; ``size_at_fill`` that an order carrying
    ``equity_fraction`` is sized at its fill (``work.lots`` stays None), else by its
    ``quantity`` (none: refused). The margin is checked at the limit price or the
    last close (not before the first bar: then at the fill).
    """
    request = work.request
    if request.expire_at_ms is not None and request.expire_at_ms <= now:
        return f"expire time {request.expire_at_ms} has already passed (now {now})"
    by_fraction = request.equity_fraction is not None and size_at_fill
    if not by_fraction:  # a fraction-sized order gets its lots at the fill
        if request.quantity is None:
            return (
                "an equity_fraction order without a quantity: this broker executes quantities"
                " (size_at_fill=False, as an exchange); give the quantity computed at the "
                "decision"
            )
        lots = m.to_lots(request.quantity, lot)
        if lots == 0:
            return (
                f"quantity {request.quantity!r} is below the lot size {lot!r}; "
                "order at least one lot"
            )
        work.lots = lots
        as_lots = lots * lot
        exact = abs(as_lots - request.quantity) <= 1e-12 * request.quantity
        work.quantity = float(request.quantity) if exact else as_lots
    sign = request.side.sign
    if request.reduce_only:
        if work.phase in (m.STOP, m.TAKE_PROFIT) and protects_entry(book.active, work):
            return None  # attached to an entry that has not filled yet
        if position == 0.0:
            return f"reduce-only order while flat: there is no {book.symbol} position to reduce"
        if position * sign > 0:
            return (
                f"reduce-only {request.side.value} would increase the "
                f"{'long' if position > 0 else 'short'} position of {m.qty(position)}"
            )
    elif sign < 0 and not allow_short:
        held = max(m.position_lots(position, lot), 0)
        if work.lots is None and held == 0:
            return (
                "short selling is disabled (allow_short=False): a sell sized by "
                f"equity_fraction needs a long {book.symbol} position to sell from"
            )
        if work.lots is not None and work.lots > held:
            return (
                f"short selling is disabled (allow_short=False): selling "
                f"{m.qty(work.quantity or 0.0)} would open a short from a position of "
                f"{m.qty(position)}"
            )
    if at_close and work.phase == m.MARKET and book.bar < 0:
        return "no price yet: fill_timing='current_close' needs a bar passed to on_bar first"
    if work.lots is not None and not request.reduce_only:
        if request.limit_price is not None:
            ref = request.limit_price
        elif book.bar >= 0:
            ref = book.close
        else:
            return None  # no price known yet: the margin is checked at the fill
        rate = book.maker if work.phase == m.LIMIT else book.taker
        shortfall = margin(book, sign, work.quantity or 0.0, ref, rate)
        if shortfall is not None:
            return f"insufficient margin: {shortfall}"
    return None
