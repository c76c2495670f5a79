"""Portfolio accounting: net positions, cash, equity, margin and round-trip trades.

A **margin account** in the quote currency (the lead's decision, and backtesting.py's
accounting):

- ``cash = initial + realized PnL - fees``. Opening a position does **not** spend its
  notional; every fill pays ``fee`` (given on the :class:`~pivotal.core.orders.Fill`).
- ``equity = cash + Σ unrealized``, with ``unrealized = quantity × (mark - average entry)``
  (``quantity`` signed: negative = short). The exit fee is not deducted while open.
- ``margin_used = Σ |quantity| × mark / leverage``; ``available = max(equity - margin_used, 0)``.

With leverage 1 and long-only trading this is exactly backtesting.py: at entry cash falls by
``q·p·c``; at exit it rises by ``q·(exit - entry) - q·exit·c``; equity is
``cash + q·(close - entry)``. The arithmetic is written in the same order, so the figures
agree bit for bit on a single-fill entry and exit.

Positions are netted per symbol. The average entry price is quantity-weighted on increases
and unchanged on reductions; a fill through zero (a *flip*) closes the old side completely
and opens the remainder at the fill price, its fee split between the two by quantity.

A **trade** is a round trip from flat to flat (a flip ends one and starts the next):
``entry_price``/``exit_price`` are quantity-weighted averages of the entry-side and exit-side
fills, ``size`` the largest absolute position, ``pnl`` realized PnL minus both sides' fees,
``return_pct = pnl / (entry_price × size) × 100``. Times are the fills' timestamps (UTC ms);
bars are the ``bar`` passed to :meth:`Portfolio.apply_fill`.
"""

from __future__ import annotations

import math

import pandas as pd

from pivotal.core.orders import AccountSnapshot, Fill, PositionSnapshot
from pivotal.trading.records import (
    EXIT_REASON,
    TRADE_COLUMNS,
    TRADE_DTYPES,
    empty_trade_frame,
    exit_reason,
)

__all__ = ["TRADE_COLUMNS", "Portfolio", "empty_trade_frame"]

#: The columns of a trade table. They equal ``pivotal.backtest.result.TRADE_COLUMNS`` (a test
#: checks it); they are repeated here because ``trading`` sits below ``backtest`` in the layers.
#: A position smaller than this share of the quantities involved counts as flat (float dust
#: from sums like 0.1 + 0.2 - 0.3).
_FLAT_TOLERANCE = 1e-12

TradeRow = tuple[str, str, int, int, int, int, float, float, float, float, float, float, str]


def _trade_frame(rows: list[TradeRow]) -> pd.DataFrame:
    if not rows:
        return empty_trade_frame()
    frame = pd.DataFrame.from_records(rows, columns=[*TRADE_COLUMNS, EXIT_REASON])
    return frame.astype({**TRADE_DTYPES, EXIT_REASON: object})


class _Position:
    """One symbol's net position and its current round trip (mutable, internal)."""

    __slots__ = (
        "average",
        "fees",
        "mark",
        "opened_ms",
        "quantity",
        "realized",
        "symbol",
        "t_bar",
        "t_entry_price",
        "t_entry_qty",
        "t_exit_price",
        "t_exit_qty",
        "t_fees",
        "t_realized",
        "t_side",
        "t_size",
        "t_time",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.quantity = 0.0
        self.average = 0.0
        self.mark = math.nan
        self.realized = 0.0
        self.fees = 0.0
        self.opened_ms: int | None = None
        self._reset_trade()

    def _reset_trade(self) -> None:
        self.t_side = 0
        self.t_time = -1
        self.t_bar = -1
        self.t_entry_qty = 0.0
        self.t_entry_price = math.nan
        self.t_exit_qty = 0.0
        self.t_exit_price = math.nan
        self.t_size = 0.0
        self.t_realized = 0.0
        self.t_fees = 0.0

    def open_trade(
        self, side: int, quantity: float, price: float, fee: float, ms: int, bar: int
    ) -> None:
        self.t_side = side
        self.t_time = ms
        self.t_bar = bar
        self.t_entry_qty = quantity
        self.t_entry_price = price
        self.t_exit_qty = 0.0
        self.t_exit_price = math.nan
        self.t_size = quantity
        self.t_realized = 0.0
        self.t_fees = fee
        self.opened_ms = ms

    @property
    def unrealized(self) -> float:
        return self.quantity * (self.mark - self.average) if self.quantity else 0.0


def _weighted(avg: float, qty: float, price: float, add: float) -> float:
    """Quantity-weighted average of ``qty`` at ``avg`` and ``add`` at ``price`` (exactly
    ``price`` for the first fill)."""
    return price if qty == 0.0 else (avg * qty + price * add) / (qty + add)


class Portfolio:
    """Cash, positions and trades of one margin account (see the module docstring).

    Feed it fills with :meth:`apply_fill` and prices with :meth:`mark`; read ``equity``,
    ``cash``, ``available`` or a full :meth:`snapshot`.
    """

    def __init__(self, initial_cash: float, currency: str = "USDT", leverage: float = 1.0) -> None:
        if not isinstance(initial_cash, int | float) or not math.isfinite(initial_cash):
            raise ValueError(f"initial_cash must be a finite number, got {initial_cash!r}")
        if initial_cash <= 0:
            raise ValueError(f"initial_cash must be above 0, got {initial_cash!r}")
        if not isinstance(currency, str) or not currency:
            raise ValueError(f"currency must be a non-empty asset code, got {currency!r}")
        if not math.isfinite(leverage) or leverage < 1.0:
            raise ValueError(f"leverage must be 1 (no leverage) or more, got {leverage!r}")
        self.initial_cash = float(initial_cash)
        self.currency = currency
        self.leverage = float(leverage)
        self._cash = float(initial_cash)
        self._realized = 0.0
        self._fees = 0.0
        self._positions: dict[str, _Position] = {}
        self._open: dict[str, _Position] = {}
        self._closed: list[TradeRow] = []
        # snapshot cache: valid while no fill or mark changed the state (the engine asks for
        # the account several times per decision)
        self._version = 0
        self._cached: tuple[int, int, AccountSnapshot] | None = None

    # -- updates ------------------------------------------------------------------------
    def apply_fill(self, fill: Fill, bar: int) -> float:
        """Book one fill made in bar ``bar``; returns the PnL it realized (before fees).

        ``cash`` changes by exactly ``realized - fill.fee``; the symbol's mark becomes the
        fill price (the newest price known).
        """
        if not isinstance(fill, Fill):
            raise TypeError(f"apply_fill takes a Fill, got {type(fill).__name__}")
        self._version += 1
        pos = self._positions.get(fill.symbol)
        if pos is None:
            pos = self._positions[fill.symbol] = _Position(fill.symbol)
        qty = float(fill.quantity)
        price = float(fill.price)
        fee = float(fill.fee)
        side = fill.side.sign
        held = pos.quantity
        realized = 0.0
        if held == 0.0:
            pos.quantity = side * qty
            pos.average = price
            pos.open_trade(side, qty, price, fee, fill.timestamp, bar)
            self._open[pos.symbol] = pos
        elif (held > 0.0) == (side > 0):
            size = abs(held)
            pos.average = _weighted(pos.average, size, price, qty)
            pos.quantity = held + side * qty
            pos.t_entry_price = _weighted(pos.t_entry_price, pos.t_entry_qty, price, qty)
            pos.t_entry_qty += qty
            pos.t_size = max(pos.t_size, abs(pos.quantity))
            pos.t_fees += fee
        else:
            size = abs(held)
            closed = min(qty, size)
            scale = _FLAT_TOLERANCE * max(size, qty)
            rest = qty - closed
            if rest <= scale:
                rest = 0.0
            remaining = size - closed
            if remaining <= scale:
                remaining = 0.0
            realized = (closed if held > 0.0 else -closed) * (price - pos.average)
            fee_close = fee if rest == 0.0 else fee * (closed / qty)
            pos.t_exit_price = _weighted(pos.t_exit_price, pos.t_exit_qty, price, closed)
            pos.t_exit_qty += closed
            pos.t_realized += realized
            pos.t_fees += fee_close
            if remaining == 0.0:
                self._close_trade(pos, fill.timestamp, bar, exit_reason(fill.tag))
                if rest > 0.0:
                    pos.quantity = side * rest
                    pos.average = price
                    pos.open_trade(side, rest, price, fee - fee_close, fill.timestamp, bar)
                else:
                    pos.quantity = 0.0
                    pos.average = 0.0
                    pos.opened_ms = None
                    del self._open[pos.symbol]
            else:
                pos.quantity = held + side * closed
        pos.realized += realized
        pos.fees += fee
        pos.mark = price
        self._cash += realized - fee
        self._realized += realized
        self._fees += fee
        return realized

    def _close_trade(self, pos: _Position, ms: int, bar: int, reason: str) -> None:
        pnl = pos.t_realized - pos.t_fees
        self._closed.append(
            (
                pos.symbol,
                "long" if pos.t_side > 0 else "short",
                pos.t_time,
                int(ms),
                pos.t_bar,
                int(bar),
                pos.t_entry_price,
                pos.t_exit_price,
                pos.t_size,
                pnl,
                pos.t_fees,
                pnl / (pos.t_entry_price * pos.t_size) * 100.0,
                reason,
            )
        )
        pos._reset_trade()

    def mark(self, symbol: str, price: float) -> None:
        """Set ``symbol``'s mark price (the latest close); a never-traded symbol is ignored."""
        if not price > 0.0 or price == math.inf:
            raise ValueError(f"mark price of {symbol!r} must be finite and above 0, got {price!r}")
        pos = self._positions.get(symbol)
        if pos is not None and pos.mark != price:
            pos.mark = price
            self._version += 1

    # -- reads --------------------------------------------------------------------------
    @property
    def cash(self) -> float:
        """Initial cash + realized PnL - fees (positions do not spend their notional)."""
        return self._cash

    @property
    def unrealized_pnl(self) -> float:
        total = 0.0
        for pos in self._open.values():
            total += pos.quantity * (pos.mark - pos.average)
        return total

    @property
    def equity(self) -> float:
        """``cash + Σ unrealized`` at the current marks."""
        return self._cash + self.unrealized_pnl

    @property
    def margin_used(self) -> float:
        """``Σ |quantity| × mark / leverage``."""
        total = 0.0
        for pos in self._open.values():
            total += abs(pos.quantity) * pos.mark / self.leverage
        return total

    @property
    def available(self) -> float:
        """``max(equity - margin_used, 0)``: what new positions may still use as margin."""
        return max(self.equity - self.margin_used, 0.0)

    @property
    def realized_pnl(self) -> float:
        return self._realized

    @property
    def fees_paid(self) -> float:
        return self._fees

    def fees_by_symbol(self) -> dict[str, float]:
        """Fees paid per symbol (quote currency)."""
        return {s: p.fees for s, p in self._positions.items()}

    def quantity(self, symbol: str) -> float:
        """Signed net position of ``symbol`` in base units (0.0 when flat or never traded)."""
        pos = self._positions.get(symbol)
        return 0.0 if pos is None else pos.quantity

    def average_entry_price(self, symbol: str) -> float:
        """Average entry price of the open position; NaN when flat."""
        pos = self._positions.get(symbol)
        return math.nan if pos is None or pos.quantity == 0.0 else pos.average

    def mark_price(self, symbol: str) -> float:
        """The last mark (or fill) price of ``symbol``; NaN when never traded."""
        pos = self._positions.get(symbol)
        return math.nan if pos is None else pos.mark

    def position(self, symbol: str) -> PositionSnapshot:
        """``symbol``'s position (a flat, zero snapshot when never traded)."""
        pos = self._positions.get(symbol)
        if pos is None:
            return PositionSnapshot(symbol, 0.0, 0.0, math.nan, 0.0, 0.0, 0.0, None)
        return self._position_snapshot(pos)

    @staticmethod
    def _position_snapshot(pos: _Position) -> PositionSnapshot:
        return PositionSnapshot(
            symbol=pos.symbol,
            quantity=pos.quantity,
            average_entry_price=pos.average if pos.quantity else 0.0,
            mark_price=pos.mark,
            realized_pnl=pos.realized,
            unrealized_pnl=pos.unrealized,
            fees_paid=pos.fees,
            opened_ms=pos.opened_ms,
        )

    def snapshot(self, timestamp: int) -> AccountSnapshot:
        """The account at ``timestamp`` (UTC ms); lists every symbol ever traded."""
        cached = self._cached
        if cached is not None and cached[0] == self._version and cached[1] == timestamp:
            return cached[2]
        snapshot = self._snapshot(timestamp)
        self._cached = (self._version, timestamp, snapshot)
        return snapshot

    def _snapshot(self, timestamp: int) -> AccountSnapshot:
        unrealized = self.unrealized_pnl
        equity = self._cash + unrealized
        margin = self.margin_used
        return AccountSnapshot(
            timestamp=int(timestamp),
            currency=self.currency,
            cash=self._cash,
            equity=equity,
            margin_used=margin,
            available=max(equity - margin, 0.0),
            leverage=self.leverage,
            fees_paid=self._fees,
            realized_pnl=self._realized,
            unrealized_pnl=unrealized,
            positions={s: self._position_snapshot(p) for s, p in self._positions.items()},
        )

    # -- trades -------------------------------------------------------------------------
    @property
    def trade_count(self) -> int:
        """Number of closed round trips."""
        return len(self._closed)

    def closed_trades(self) -> pd.DataFrame:
        """Closed round trips, oldest first, with :data:`TRADE_COLUMNS` and ``exit_reason``."""
        return _trade_frame(self._closed)

    def open_trades(self) -> pd.DataFrame:
        """Open round trips marked at the current marks: ``exit_time``/``exit_bar`` are -1,
        ``exit_price`` NaN; ``pnl`` is realized-so-far (partial exits) plus unrealized minus
        the fees paid so far (the exit fee is not deducted until paid)."""
        rows: list[TradeRow] = []
        for pos in self._open.values():
            pnl = pos.t_realized + pos.unrealized - pos.t_fees
            rows.append(
                (
                    pos.symbol,
                    "long" if pos.t_side > 0 else "short",
                    pos.t_time,
                    -1,
                    pos.t_bar,
                    -1,
                    pos.t_entry_price,
                    math.nan,
                    pos.t_size,
                    pnl,
                    pos.t_fees,
                    pnl / (pos.t_entry_price * pos.t_size) * 100.0,
                    "",
                )
            )
        return _trade_frame(rows)
