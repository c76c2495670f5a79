"""The risk manager: every order passes through it; a refused or resized order carries the reason.

:meth:`RiskManager.review` turns a :class:`~pivotal.core.types.TradingAction` into the
orders that carry it out, with *position-target* semantics (one net position per symbol):

- BUY: flat → open a long; long → nothing ("already long", no pyramiding); short → close
  it, and open a long too when ``allow_short`` (a flip).
- SELL: the mirror image; flat → open a short when ``allow_short``, else refused
  ("shorting disabled"); long → close it (and open a short when ``allow_short``).
- CLOSE: close the whole position (nothing when flat: "already flat").
- HOLD: nothing.

Exits are reduce-only market orders for the whole position and are **never** blocked.
Entries are sized (``RiskConfig.sizing`` or ``action.quantity``), then cut to the caps
(per-symbol notional ≤ cap × equity, gross exposure ≤ max_leverage × equity, both at the
decision price), or refused when below one lot or while a halt (circuit breaker, daily
loss limit) is active. Each entry carries its reduce-only stop-loss and take-profit when
configured. Orders are returned in submission order: exit, entry, stop, take-profit.

Caps are checked at the decision price ``max(market.price, limit price)``; an order that
fills later at another price may end up slightly away from the cap. A ``fixed_fraction``
entry carries both its ``equity_fraction`` (the intent) and the ``quantity`` that fraction
buys at the caps' decision price, fees and lot size included (:func:`~pivotal.trading.risk.sizing.
fraction_quantity`; left out when not one lot is affordable): an exchange broker executes
the quantity; the simulated broker re-sizes from the fraction at the fill price while its
``size_at_fill`` is on (backtesting.py parity; never above the notional approved here when
equity is unchanged). Open (unfilled) orders are not visible in an
:class:`~pivotal.core.orders.AccountSnapshot`: callers cancel resting entries before asking
for new ones. Nothing here reads a clock: times come from the arguments.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy.typing as npt

from pivotal.core.errors import RiskRejected
from pivotal.core.orders import AccountSnapshot, OrderRequest, OrderSide, OrderType
from pivotal.core.types import Action, TradingAction
from pivotal.trading.risk.alerts import AlertLog, RiskAlert, format_money
from pivotal.trading.risk.config import RiskConfig
from pivotal.trading.risk.metrics import (
    EquityTracker,
    RiskMetrics,
    TrackerState,
    drawdown,
    historical_var,
)
from pivotal.trading.risk.sizing import (
    MarketState,
    RequestedSize,
    SizingRefused,
    ceil_to_lot,
    exit_order,
    floor_to_lot,
    fraction_quantity,
    protective_levels,
    protective_orders,
    requested_size,
)


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The risk manager's answer: the orders to submit (in order) and why.

    ``approved`` is False only when nothing of the request may be done (``orders`` is then
    empty and ``reason`` says why). An approved decision may hold no orders ("already long")
    or only part of what was asked (a flip whose entry is halted: the exit goes through, the
    reason names the refused entry). ``resized`` is True when a cap cut the entry;
    ``requested_quantity``/``final_quantity`` are the entry's size in base units before and
    after the caps (for an ``equity_fraction`` entry, estimates at the reference price), or
    the exit's size for a pure exit.
    """

    orders: tuple[OrderRequest, ...]
    approved: bool
    reason: str
    resized: bool = False
    requested_quantity: float | None = None
    final_quantity: float | None = None
    action: Action | None = None

    @property
    def entry(self) -> OrderRequest | None:
        """The order that opens or adds to a position (None if there is none)."""
        return next((o for o in self.orders if not o.reduce_only), None)

    @property
    def immediate_orders(self) -> tuple[OrderRequest, ...]:
        """The exit and entry orders: submit these now, in this order."""
        return tuple(o for o in self.orders if not _is_protective(o))

    @property
    def protective_orders(self) -> tuple[OrderRequest, ...]:
        """The reduce-only stop-loss / take-profit guarding the entry. A broker that rejects
        reduce-only orders while flat needs them submitted once the entry has filled."""
        return tuple(o for o in self.orders if _is_protective(o))


def _is_protective(order: OrderRequest) -> bool:
    return order.reduce_only and order.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT)


@dataclass(frozen=True, slots=True)
class _Entry:
    orders: tuple[OrderRequest, ...]
    reason: str
    resized: bool
    requested_quantity: float
    final_quantity: float


def _side_word(sign: float) -> str:
    return "long" if sign > 0 else "short"


def _position(account: AccountSnapshot, symbol: str) -> float:
    pos = account.positions.get(symbol)
    return 0.0 if pos is None else float(pos.quantity)


class RiskManager:
    """Sizes and limits orders, watches the equity curve, trips halts and raises alerts.

    Per bar the caller reports the equity (``observe``) before asking for decisions
    (``review`` / ``review_order``), so that halts act on the bar that tripped them.
    """

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config if config is not None else RiskConfig()
        self._tracker = EquityTracker(
            self.config.max_drawdown, self.config.daily_loss_limit, self.config.var_window
        )
        self._alerts = AlertLog()
        self._stopped: str | None = None

    # ------------------------------------------------------------------ equity and halts
    def observe(self, timestamp: int, equity: float) -> None:
        """Report the account equity at one bar (UTC ms, strictly increasing)."""
        self._alerts.extend(self._tracker.observe(timestamp, equity))

    def observe_many(self, timestamps: npt.ArrayLike, equity: npt.ArrayLike) -> None:
        """Report a span of bars at once (vectorized); same effect as ``observe`` per bar."""
        self._alerts.extend(self._tracker.observe_many(timestamps, equity))

    @property
    def halted(self) -> bool:
        """True while new entries are halted (circuit breaker, daily loss limit, or a person:
        :meth:`stop_entries`)."""
        return self._tracker.halt is not None or self._stopped is not None

    @property
    def halt_reason(self) -> str:
        halt = self._tracker.halt
        if halt is not None:
            return halt.reason
        return self._stopped or ""

    def stop_entries(self, reason: str) -> None:
        """Halt new entries until :meth:`allow_entries` (the kill switch, a person's "stop
        new entries"); exits, stops and take-profits still pass. ``reason`` is what every
        refused entry says."""
        if not reason.strip():
            raise ValueError("stop_entries needs a reason (it is what refused entries say)")
        self._stopped = reason

    def allow_entries(self) -> None:
        """Lift :meth:`stop_entries` (the equity halts keep their own rules)."""
        self._stopped = None

    def reset_halt(self, timestamp: int) -> None:
        """Lift all halts; drawdown and daily loss are measured afresh from the last equity."""
        alert = self._tracker.reset(timestamp)
        if alert is not None:
            self._alerts.push(alert)

    def drain_alerts(self) -> list[RiskAlert]:
        """Alerts raised since the last call, oldest first."""
        return self._alerts.drain()

    @property
    def dropped_alerts(self) -> int:
        """Alerts pushed out of the bounded log before anyone drained them."""
        return self._alerts.dropped

    def state(self) -> TrackerState:
        """The equity tracker's full state (peaks, day, halts, kept returns)."""
        return self._tracker.state()

    def metrics(self, account: AccountSnapshot) -> RiskMetrics:
        """Exposure, leverage, drawdown, VaR/ES, halt and daily PnL for ``account`` now."""
        equity = float(account.equity)
        gross = float(account.gross_exposure)
        net = float(account.net_exposure)
        positive = math.isfinite(equity) and equity > 0
        tracker = self._tracker
        peak = equity if math.isnan(tracker.peak_equity) else max(tracker.peak_equity, equity)
        current = drawdown(peak, equity)
        var_r, es_r = historical_var(tracker.returns, self.config.var_confidence)
        day_start = tracker.day_start_equity
        return RiskMetrics(
            timestamp=account.timestamp,
            equity=equity,
            gross_exposure=gross,
            net_exposure=net,
            gross_exposure_pct=gross / equity if positive else math.nan,
            net_exposure_pct=net / equity if positive else math.nan,
            leverage=gross / equity if positive else math.nan,
            peak_equity=peak,
            drawdown=current,
            max_drawdown=max(tracker.max_drawdown, current),
            var=var_r * equity,
            expected_shortfall=es_r * equity,
            var_confidence=self.config.var_confidence,
            n_returns=len(tracker.returns),
            halted=self.halted,
            halt_reason=self.halt_reason,
            daily_pnl=equity - day_start if math.isfinite(day_start) else math.nan,
            positions=sum(1 for p in account.positions.values() if not p.is_flat),
        )

    # ------------------------------------------------------------------ decisions
    def review_strict(
        self, action: TradingAction, account: AccountSnapshot, market: MarketState
    ) -> RiskDecision:
        """Like :meth:`review`, but a refusal raises :class:`RiskRejected` with its reason."""
        decision = self.review(action, account, market)
        if not decision.approved:
            raise RiskRejected(decision.reason)
        return decision

    def review(
        self, action: TradingAction, account: AccountSnapshot, market: MarketState
    ) -> RiskDecision:
        """The orders that carry out ``action`` now, within the limits (see the module doc)."""
        symbol = str(action.symbol)
        self._check_market(symbol, market)
        act = action.action
        q = _position(account, symbol)
        if act is Action.HOLD:
            return RiskDecision((), True, "hold: no orders", action=act)
        if act is Action.CLOSE:
            if q == 0:
                return RiskDecision((), True, "already flat", action=act)
            return RiskDecision(
                (exit_order(symbol, q, action.source),),
                True,
                f"close {_side_word(q)} {abs(q):g} {symbol}",
                requested_quantity=abs(q),
                final_quantity=abs(q),
                action=act,
            )
        side = OrderSide.BUY if act is Action.BUY else OrderSide.SELL
        if q * side.sign > 0:
            return RiskDecision((), True, f"already {_side_word(q)}", action=act)
        if q == 0 and side is OrderSide.SELL and not self.config.allow_short:
            return RiskDecision(
                (),
                False,
                "shorting disabled: SELL while flat opens nothing (set allow_short=True to "
                "open shorts)",
                action=act,
            )
        exits: tuple[OrderRequest, ...] = ()
        exit_text = ""
        if q != 0:
            exits = (exit_order(symbol, q, action.source),)
            exit_text = f"close {_side_word(q)} {abs(q):g} {symbol}"
            if not self.config.allow_short:
                why = (
                    "shorting disabled: no short opened"
                    if side is OrderSide.SELL
                    else "no flip: allow_short is off"
                )
                return RiskDecision(
                    exits,
                    True,
                    f"{exit_text} ({why})",
                    requested_quantity=abs(q),
                    final_quantity=abs(q),
                    action=act,
                )
        try:
            entry = self._entry(side, action, account, market)
        except SizingRefused as refusal:
            if refusal.alert:
                self._alert_refused(market, f"{_side_word(side.sign)} entry", refusal.reason)
            if exits:
                return RiskDecision(
                    exits,
                    True,
                    f"{exit_text}; {_side_word(side.sign)} entry refused: {refusal.reason}",
                    action=act,
                )
            return RiskDecision((), False, refusal.reason, action=act)
        reason = f"{exit_text}; {entry.reason}" if exits else entry.reason
        return RiskDecision(
            exits + entry.orders,
            True,
            reason,
            resized=entry.resized,
            requested_quantity=entry.requested_quantity,
            final_quantity=entry.final_quantity,
            action=act,
        )

    def review_order(
        self, request: OrderRequest, account: AccountSnapshot, market: MarketState
    ) -> RiskDecision:
        """Check a raw order: reduce-only and reducing orders always pass; the part that opens
        or adds to a position meets the same halts, shorting rule and caps as ``review``
        (cut, or refused when below one lot). No protective orders are attached."""
        symbol = request.symbol
        self._check_market(symbol, market)
        if request.reduce_only:
            return RiskDecision(
                (request,),
                True,
                "reduce-only order: always allowed",
                requested_quantity=request.quantity,
                final_quantity=request.quantity,
            )
        q = _position(account, symbol)
        sign = request.side.sign
        reference = request.limit_price or request.stop_price or market.price
        cap_price = max(market.price, reference)
        if request.quantity is not None:
            quantity = float(request.quantity)
        else:
            equity = float(account.equity)
            if not (math.isfinite(equity) and equity > 0):
                reason = f"equity {equity:g} is not above 0: an equity_fraction order is unsized"
                self._alert_refused(market, "order", reason)
                return RiskDecision((), False, reason)
            fraction = float(request.equity_fraction)  # type: ignore[arg-type]
            quantity = fraction * equity * self._leverage(account) / reference
        reducing = min(quantity, abs(q)) if q * sign < 0 else 0.0
        opening = quantity - reducing
        if opening <= 0:
            return RiskDecision(
                (request,),
                True,
                f"reduces the {_side_word(q)} position: always allowed",
                requested_quantity=quantity,
                final_quantity=quantity,
            )
        base = abs(q) if q * sign > 0 else 0.0
        try:
            if sign < 0 and not self.config.allow_short:
                raise SizingRefused(
                    "shorting disabled: the order would open a short (set allow_short=True)"
                )
            self._check_halt()
            equity = self._equity(account)
            room, cap_text = self._room(symbol, equity, account)
            allowed = (room - base * cap_price) / cap_price
            if allowed <= 0:
                raise SizingRefused(
                    f"{symbol} position {format_money(base * cap_price)} leaves no room under "
                    f"{cap_text}",
                    alert=True,
                )
        except SizingRefused as refusal:
            if reducing > 0:
                cut = dataclasses.replace(
                    request, quantity=reducing, equity_fraction=None, reduce_only=True
                )
                reason = (
                    f"cut to a reduce-only {reducing:g} (closing the {_side_word(q)}); "
                    f"the rest refused: {refusal.reason}"
                )
                if refusal.alert:
                    self._alert_resized(market, reason, quantity, reducing)
                return RiskDecision(
                    (cut,),
                    True,
                    reason,
                    resized=True,
                    requested_quantity=quantity,
                    final_quantity=reducing,
                )
            if refusal.alert:
                self._alert_refused(market, "order", refusal.reason)
            return RiskDecision((), False, refusal.reason, requested_quantity=quantity)
        if opening <= allowed:
            return RiskDecision(
                (request,),
                True,
                "within limits",
                requested_quantity=quantity,
                final_quantity=quantity,
            )
        new_open = floor_to_lot(allowed, market.lot_size)
        if new_open <= 0 and reducing <= 0:
            reason = (
                f"{cap_text} leaves room for {allowed:g} {symbol}, below one lot "
                f"{market.lot_size:g}"
            )
            self._alert_refused(market, "order", reason)
            return RiskDecision((), False, reason, requested_quantity=quantity)
        if request.equity_fraction is not None and reducing <= 0:
            new_request = dataclasses.replace(
                request, equity_fraction=request.equity_fraction * allowed / opening
            )
            final = allowed
        else:
            final = reducing + new_open
            new_request = dataclasses.replace(
                request, quantity=final, equity_fraction=None, reduce_only=new_open <= 0
            )
        reason = f"resized from {quantity:g} to {final:g} {symbol} by {cap_text}"
        self._alert_resized(market, reason, quantity, final)
        return RiskDecision(
            (new_request,),
            True,
            reason,
            resized=True,
            requested_quantity=quantity,
            final_quantity=final,
        )

    # ------------------------------------------------------------------ internals
    def _check_market(self, symbol: str, market: MarketState) -> None:
        if market.symbol != symbol:
            raise ValueError(
                f"market state is for {market.symbol!r} but the order is for {symbol!r}; "
                "pass the MarketState of the same symbol"
            )

    def _check_halt(self) -> None:
        halt = self._tracker.halt
        if halt is not None:
            raise SizingRefused(halt.reason, alert=True)
        if self._stopped is not None:
            raise SizingRefused(self._stopped, alert=True)

    @staticmethod
    def _equity(account: AccountSnapshot) -> float:
        equity = float(account.equity)
        if not (math.isfinite(equity) and equity > 0):
            raise SizingRefused(f"equity {equity:g} is not above 0: no new entries", alert=True)
        return equity

    @staticmethod
    def _leverage(account: AccountSnapshot) -> float:
        leverage = float(account.leverage)
        if not (math.isfinite(leverage) and leverage > 0):
            raise ValueError(
                f"account.leverage must be a finite number above 0, got {account.leverage!r}"
            )
        return leverage

    def _room(self, symbol: str, equity: float, account: AccountSnapshot) -> tuple[float, str]:
        """Max |notional| of ``symbol``'s position and the cap that sets it (in words)."""
        share = self.config.position_cap(symbol)
        symbol_room = share * equity
        gross_other = sum(p.notional for s, p in account.positions.items() if s != symbol)
        max_gross = self.config.max_leverage * equity
        gross_room = max_gross - gross_other
        if gross_room < symbol_room:
            text = (
                f"the leverage cap: max_leverage {self.config.max_leverage:g} × equity "
                f"{format_money(equity)} = {format_money(max_gross)} gross, of which other "
                f"positions use {format_money(gross_other)}"
            )
            room = gross_room
        else:
            text = (
                f"the per-symbol cap: {share:g} × equity {format_money(equity)} = "
                f"{format_money(symbol_room)} notional for {symbol}"
            )
            room = symbol_room
        if room <= 0:
            raise SizingRefused(f"no room for {symbol}: {text}", alert=True)
        return room, text

    def _entry(
        self, side: OrderSide, action: TradingAction, account: AccountSnapshot, market: MarketState
    ) -> _Entry:
        """Size, cap and protect an entry from flat; raises SizingRefused."""
        cfg = self.config
        symbol = market.symbol
        self._check_halt()
        equity = self._equity(account)
        limit = action.price
        reference = float(limit) if limit is not None else market.price
        cap_price = max(market.price, reference)
        levels = protective_levels(cfg, side, reference, market)
        if action.quantity is not None:
            if action.quantity <= 0:
                raise SizingRefused(
                    "requested quantity is 0: give a positive quantity, or none to let the "
                    "configured sizing decide"
                )
            size = RequestedSize(
                float(action.quantity),
                float(action.quantity) * reference,
                f"requested {action.quantity:g}",
            )
        else:
            size = requested_size(cfg, equity, reference, market, levels)
        room, cap_text = self._room(symbol, equity, account)
        lot = market.lot_size
        word = _side_word(side.sign)
        cut = ""
        entry_q: float | None
        entry_fraction: float | None
        if size.quantity is None:  # fixed_fraction: a quantity at the decision price + intent
            resized = size.notional > room
            notional = min(size.notional, room)
            requested_q = size.notional / reference
            final_q = notional / reference
            if notional / cap_price < lot:
                raise SizingRefused(
                    f"{word} entry of {format_money(notional)} notional ({size.basis}"
                    + (f", cut by {cap_text}" if resized else "")
                    + f") is below one lot {lot:g} {symbol}",
                    alert=resized,
                )
            leverage = self._leverage(account)
            fraction = notional / (equity * leverage)
            held = account.positions.get(symbol)
            freed = 0.0  # a flip: the exit, submitted first, frees the position's margin
            if held is not None and held.quantity * side.sign < 0:
                freed = abs(held.quantity) * held.mark_price / leverage
            entry_q = fraction_quantity(
                fraction,
                available=float(account.available),
                freed=freed,
                leverage=leverage,
                price=cap_price,
                taker_fee=market.taker_fee,
                lot_size=lot,
            )
            if entry_q is not None:  # never above the notional approved at the caps' price
                entry_q = min(entry_q, floor_to_lot(notional / cap_price, lot)) or None
            entry_fraction = fraction
            protect_q = ceil_to_lot(final_q, lot)
            text = f"open {word} {fraction:g} of equity × leverage ≈ {final_q:g} {symbol}"
            if resized:
                cut = (
                    f"resized from {format_money(size.notional)} to {format_money(notional)} "
                    f"notional by {cap_text}"
                )
        else:
            requested_q = size.quantity
            max_q = room / cap_price
            resized = requested_q > max_q
            final_q = floor_to_lot(min(requested_q, max_q), lot)
            if final_q <= 0:
                if resized:
                    raise SizingRefused(
                        f"{cap_text} leaves room for {max_q:g} {symbol}, below one lot {lot:g}",
                        alert=True,
                    )
                raise SizingRefused(
                    f"{word} entry of {requested_q:g} {symbol} ({size.basis}) is below one lot "
                    f"{lot:g}"
                )
            entry_q, entry_fraction = final_q, None
            protect_q = final_q
            text = f"open {word} {final_q:g} {symbol}"
            if resized:
                cut = f"resized from {requested_q:g} to {final_q:g} {symbol} by {cap_text}"
        entry = OrderRequest(
            symbol,
            side,
            OrderType.LIMIT if limit is not None else OrderType.MARKET,
            quantity=entry_q,
            equity_fraction=entry_fraction,
            limit_price=limit,
            tag=f"{action.source}:entry",
        )
        if limit is not None:
            text += f" with a limit at {limit:g}"
        protective, protect_text = protective_orders(symbol, side, protect_q, levels, action.source)
        text += protect_text
        orders = (entry, *protective)
        reason = f"{text} ({size.basis})"
        if resized:
            reason += f"; {cut}"
            self._alert_resized(market, reason, requested_q, final_q)
        return _Entry(orders, reason, resized, requested_q, final_q)

    def _alert_refused(self, market: MarketState, what: str, reason: str) -> None:
        self._alerts.push(
            RiskAlert(
                market.timestamp,
                "order_refused",
                market.symbol,
                f"{market.symbol} {what} refused: {reason}",
                {"price": market.price},
            )
        )

    def _alert_resized(
        self, market: MarketState, reason: str, requested: float, final: float
    ) -> None:
        self._alerts.push(
            RiskAlert(
                market.timestamp,
                "order_resized",
                market.symbol,
                f"{market.symbol}: {reason}",
                {"requested_quantity": requested, "final_quantity": final, "price": market.price},
            )
        )
