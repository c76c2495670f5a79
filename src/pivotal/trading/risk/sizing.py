"""Position sizing and protective levels: pure functions of the config and the market.

Units: quantities in the base asset, prices and money in the quote asset, shares as
fractions (0.01 = 1 %). Nothing here looks at caps or halts; the manager applies those to
what these functions ask for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivotal.core.orders import OrderRequest, OrderSide, OrderType
from pivotal.trading.risk.alerts import format_money, format_share
from pivotal.trading.risk.config import RiskConfig


class SizingRefused(Exception):
    """Why an entry cannot be sized or allowed; the manager turns it into a refused decision.

    ``alert`` says whether the refusal is a *limit* (halt, cap, no equity) worth an
    ``order_refused`` alert, rather than a normal condition such as the ATR warm-up.
    """

    def __init__(self, reason: str, *, alert: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert


@dataclass(frozen=True, slots=True)
class MarketState:
    """What the risk manager knows about a symbol's market at a decision.

    ``price`` is the last close (quote per base unit), ``atr`` the latest average true range
    in price units (None or NaN during warm-up), ``taker_fee`` the fee share per fill
    (0.001 = 0.1 %), ``lot_size`` the smallest quantity step in base units.
    """

    symbol: str
    timestamp: int
    price: float
    atr: float | None = None
    taker_fee: float = 0.0
    lot_size: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", str(self.symbol))
        if not self.symbol:
            raise ValueError("MarketState.symbol must name the market, e.g. 'BTC/USDT'")
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int | np.integer):
            raise TypeError(f"MarketState.timestamp must be UTC ms as int, got {self.timestamp!r}")
        if self.timestamp < 0:
            raise ValueError(f"MarketState.timestamp must not be negative, got {self.timestamp}")
        object.__setattr__(self, "timestamp", int(self.timestamp))
        if not _is_number(self.price) or not math.isfinite(self.price) or self.price <= 0:
            raise ValueError(
                f"MarketState.price must be a finite price above 0, got {self.price!r}"
            )
        if self.atr is not None:
            if not _is_number(self.atr):
                raise TypeError(f"MarketState.atr must be a number or None, got {self.atr!r}")
            if math.isinf(self.atr) or self.atr < 0:
                raise ValueError(
                    f"MarketState.atr must be 0 or more (NaN while unknown), got {self.atr!r}"
                )
        if not _is_number(self.taker_fee) or not 0 <= self.taker_fee < 1:
            raise ValueError(
                "MarketState.taker_fee is a share in [0, 1) (0.001 = 0.1 %), "
                f"got {self.taker_fee!r}"
            )
        if not _is_number(self.lot_size) or not math.isfinite(self.lot_size) or self.lot_size <= 0:
            raise ValueError(f"MarketState.lot_size must be above 0, got {self.lot_size!r}")

    @property
    def atr_known(self) -> bool:
        return self.atr is not None and math.isfinite(self.atr)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def floor_to_lot(quantity: float, lot_size: float) -> float:
    """The largest multiple of ``lot_size`` not above ``quantity`` (0.0 if below one lot).

    Tolerates float noise: 0.3 with lot 0.1 gives 0.3, not 0.2.
    """
    if not quantity > 0:
        return 0.0
    steps = math.floor(quantity / lot_size + 1e-9)
    value = steps * lot_size
    if value > quantity * (1 + 1e-12):
        value = (steps - 1) * lot_size
    return max(value, 0.0)


def ceil_to_lot(quantity: float, lot_size: float) -> float:
    """The smallest multiple of ``lot_size`` not below ``quantity``."""
    if not quantity > 0:
        return 0.0
    return math.ceil(quantity / lot_size - 1e-9) * lot_size


def fraction_quantity(
    fraction: float,
    *,
    available: float,
    freed: float,
    leverage: float,
    price: float,
    taker_fee: float,
    lot_size: float,
) -> float | None:
    """The quantity (base units, whole lots) an ``equity_fraction`` order buys at ``price``:
    the broker's fill-time rule (``pivotal.trading.brokers.matching.affordable_lots``,
    backtesting.py's) applied at the decision, so an exchange receives a size:
    ``lots = (fraction × (available + freed) × leverage) // (lot × price × (1 + taker_fee))``.
    ``available`` is the account's free margin, ``freed`` the margin an exit submitted
    before the entry releases. None when not even one lot is affordable."""
    lots = (fraction * (available + freed) * leverage) // (lot_size * price * (1.0 + taker_fee))
    return lots * lot_size if lots > 0 else None


def require_atr(market: MarketState, purpose: str) -> float:
    """``market.atr``, or a refusal when it is unknown (warm-up) or 0."""
    if not market.atr_known:
        raise SizingRefused(f"ATR unknown yet (warm-up): {purpose} needs market.atr")
    atr = float(market.atr)  # type: ignore[arg-type]
    if atr <= 0:
        raise SizingRefused(f"ATR is 0 (a flat market): {purpose} is undefined")
    return atr


@dataclass(frozen=True, slots=True)
class ProtectiveLevels:
    """Trigger prices of the orders attached to an entry (None when not configured)."""

    stop_price: float | None
    take_profit_price: float | None


def protective_levels(
    config: RiskConfig, entry_side: OrderSide, reference: float, market: MarketState
) -> ProtectiveLevels:
    """Stop and take-profit triggers for an entry on ``entry_side`` at ``reference``.

    Long (BUY) entry: stop at ``reference × (1 - stop_loss_pct)`` or ``reference - k × ATR``,
    take-profit at ``reference × (1 + take_profit_pct)``; a short mirrors both.
    """
    sign = entry_side.sign
    stop: float | None = None
    if config.stop_loss_pct is not None:
        stop = reference * (1 - sign * config.stop_loss_pct)
    elif config.stop_loss_atr is not None:
        atr = require_atr(market, "stop_loss_atr")
        stop = reference - sign * config.stop_loss_atr * atr
        if stop <= 0:
            raise SizingRefused(
                f"stop {config.stop_loss_atr:g} × ATR {atr:g} below {reference:g} would be at "
                f"or below 0; lower stop_loss_atr"
            )
    take_profit: float | None = None
    if config.take_profit_pct is not None:
        take_profit = reference * (1 + sign * config.take_profit_pct)
        if take_profit <= 0:
            raise SizingRefused(
                f"a short's take-profit {format_share(config.take_profit_pct)} below {reference:g} "
                "would be at or below 0; lower take_profit_pct"
            )
    return ProtectiveLevels(stop, take_profit)


@dataclass(frozen=True, slots=True)
class RequestedSize:
    """An entry's size before caps.

    ``quantity`` (base units) for quantity orders; None for ``fixed_fraction``, which asks
    for ``notional = fraction × equity`` and lets the broker size it at fill time.
    ``notional`` is at the reference price; ``basis`` says in words how it was sized.
    """

    quantity: float | None
    notional: float
    basis: str

    @property
    def as_fraction(self) -> bool:
        return self.quantity is None


def requested_size(
    config: RiskConfig,
    equity: float,
    reference: float,
    market: MarketState,
    levels: ProtectiveLevels,
) -> RequestedSize:
    """Size an entry by ``config.sizing`` (``equity`` in currency, ``reference`` its price).

    - fixed_fraction: ``notional = fraction × equity``;
    - risk_per_trade: ``quantity = equity × risk_per_trade / (|reference - stop| +
      taker_fee × (reference + stop))``: the loss at the stop, fees of both fills included;
    - volatility_target: ``quantity = equity × volatility_target / ATR``.
    """
    if config.sizing == "fixed_fraction":
        notional = config.fraction * equity
        return RequestedSize(
            None,
            notional,
            f"fixed_fraction {config.fraction:g} × equity {format_money(equity)}",
        )
    if config.sizing == "risk_per_trade":
        if levels.stop_price is None:
            raise SizingRefused(
                "risk_per_trade sizing needs a stop distance: set stop_loss_pct or stop_loss_atr"
            )
        stop = levels.stop_price
        loss_per_unit = abs(reference - stop) + market.taker_fee * (reference + stop)
        quantity = equity * config.risk_per_trade / loss_per_unit
        fees = f" + fees {format_money(market.taker_fee * (reference + stop))}"
        return RequestedSize(
            quantity,
            quantity * reference,
            f"risk_per_trade {format_share(config.risk_per_trade)} of equity "
            f"{format_money(equity)} over a loss of {abs(reference - stop):g} per unit at the "
            f"stop {stop:g}" + (fees if market.taker_fee else ""),
        )
    atr = require_atr(market, "volatility_target sizing")
    quantity = equity * config.volatility_target / atr
    return RequestedSize(
        quantity,
        quantity * reference,
        f"volatility_target {format_share(config.volatility_target)} of equity "
        f"{format_money(equity)} per ATR {atr:g}",
    )


def exit_order(symbol: str, position: float, source: str) -> OrderRequest:
    """A reduce-only market order that closes the signed ``position`` (tag ``source:exit``)."""
    return OrderRequest(
        symbol,
        OrderSide.SELL if position > 0 else OrderSide.BUY,
        OrderType.MARKET,
        quantity=abs(position),
        reduce_only=True,
        tag=f"{source}:exit",
    )


def protective_orders(
    symbol: str, entry_side: OrderSide, quantity: float, levels: ProtectiveLevels, source: str
) -> tuple[tuple[OrderRequest, ...], str]:
    """The reduce-only stop-market and take-profit orders that guard an entry, and a text.

    Both sit on the opposite side of ``entry_side`` for ``quantity`` base units (a broker
    cuts reduce-only orders to the position); tags ``source:stop`` and ``source:take_profit``.
    """
    orders: list[OrderRequest] = []
    text = ""
    for price, kind, purpose, words in (
        (levels.stop_price, OrderType.STOP_MARKET, "stop", "stop"),
        (levels.take_profit_price, OrderType.TAKE_PROFIT, "take_profit", "take-profit"),
    ):
        if price is None:
            continue
        orders.append(
            OrderRequest(
                symbol,
                entry_side.opposite,
                kind,
                quantity=quantity,
                stop_price=price,
                reduce_only=True,
                tag=f"{source}:{purpose}",
            )
        )
        text += f", {words} at {price:g}"
    return tuple(orders), text
