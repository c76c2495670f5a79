"""Bybit v5 spot wire shapes of the matching engine's orders, fills and balances.

The engine speaks Binance's vocabulary (``STOP_LOSS``, ``EXPIRED`` ...); Bybit's order rows
need what the request said (``orderFilter``, ``marketUnit``, the ``orderLinkId`` or none,
``PostOnly``), kept per order in :class:`OrderMeta`. Mapping of the engine's state to
Bybit's ``orderStatus`` (:func:`bybit_status`):

- open: ``New``; ``PartiallyFilled``; ``Untriggered`` (a conditional or TP/SL order
  waiting for its trigger);
- closed: ``Filled``; ``Cancelled`` (nothing filled); ``PartiallyFilledCanceled`` (spot's
  status for a cancelled or expired order with fills); ``Deactivated`` (cancelled before
  its trigger).

Numbers are decimal strings: prices with the symbol's tick decimals, base quantities with
its step decimals, values and fees without trailing zeros. Order and execution ids are the
engine's (decimal strings). Lists come newest first, paged by an opaque ``cursor`` (the
last id of the page). The wallet is a UTA 2.0 ``UNIFIED`` account; USD values use 1 for
USDT/USDC and the last trade of ``<coin>/USDT`` (or ``<coin>/USDC``) for the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pivotal.core.symbols import Symbol
from pivotal.localexchange.bybit_wire import PARAM_ERROR
from pivotal.localexchange.engine_types import ZERO, Fill, Order
from pivotal.localexchange.venue import VenueError

if TYPE_CHECKING:
    from pivotal.localexchange.bybit import BybitSite
    from pivotal.localexchange.engine import MatchingEngine

#: The spot ``orderFilter`` kinds served: plain, conditional, TP/SL.
FILTERS: tuple[str, ...] = ("Order", "StopOrder", "tpslOrder")
#: Closed orders ``/v5/order/realtime?openOnly=1`` keeps (per account).
RECENT_CLOSED = 500
_STABLE = ("USDT", "USDC")
_CANCELLED = ("Cancelled", "PartiallyFilledCanceled", "Deactivated")


@dataclass(slots=True)
class OrderMeta:
    """What Bybit shows of an order that the engine does not keep.

    ``qty`` is the ordered quantity in ``market_unit`` (quote for a ``quoteCoin`` market
    order, else base); ``link_id`` "" when the client gave none; ``trigger_direction`` 1
    (rise) / 2 (fall) for conditional and TP/SL orders, 0 otherwise; ``base_price`` the last
    trade when placed; ``cancel_type`` ``CancelByUser`` once the client cancelled it.
    """

    order_filter: str
    order_type: str
    market_unit: str
    qty: Decimal
    link_id: str
    time_in_force: str
    trigger_direction: int = 0
    base_price: Decimal | None = None
    reduce_only: bool = False
    cancel_type: str = "UNKNOWN"


def in_filter(order: Order, meta: OrderMeta, wanted: str | None) -> bool:
    """Whether ``orderFilter=wanted`` selects the order (None: every kind). A conditional
    or TP/SL order that triggered is an active order: ``Order`` selects it too."""
    if wanted is None or meta.order_filter == wanted:
        return True
    return wanted == "Order" and order.triggered


def bybit_status(order: Order) -> str:
    """Bybit's spot ``orderStatus`` of an engine order (module docstring)."""
    waiting = order.is_stop and not order.triggered
    if order.status == "NEW":
        return "Untriggered" if waiting else "New"
    if order.status == "PARTIALLY_FILLED":
        return "PartiallyFilled"
    if order.status == "FILLED":
        return "Filled"
    if waiting:
        return "Deactivated"
    return "PartiallyFilledCanceled" if order.executed_qty > 0 else "Cancelled"


def decimals(step: Decimal) -> int:
    """Decimals of a tick or step size (``0.01`` → 2); 8 when there is none."""
    exponent = step.normalize().as_tuple().exponent
    if step <= 0 or not isinstance(exponent, int):
        return 8
    return max(0, -exponent)


def fixed(value: Decimal, places: int) -> str:
    """``value`` with ``places`` decimals (a price or quantity on its grid)."""
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def plain(value: Decimal) -> str:
    """``value`` without trailing zeros or exponent (``"0"``, ``"12.5"``)."""
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return text


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a newest-first list: ``limit`` rows with ids below ``before``."""

    limit: int
    before: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any], limit: int) -> Page:
        raw = params.get("cursor")
        if raw in (None, ""):
            return cls(limit)
        if not str(raw).isdigit():
            raise VenueError(
                PARAM_ERROR, f"params error: cursor {raw!r} is not a nextPageCursor", 200
            )
        return cls(limit, int(str(raw)))

    def cut(self, ids: Sequence[int]) -> tuple[list[int], str]:
        """The ids of this page (newest first) and the next page's cursor ("" at the end)."""
        ordered = sorted((i for i in ids if self.before is None or i < self.before),
                         reverse=True)  # fmt: skip
        page = ordered[: self.limit]
        more = len(ordered) > self.limit
        return page, str(page[-1]) if more and page else ""


class BybitViews:
    """Renders the engine's state for one Bybit site (REST rows and private pushes)."""

    def __init__(self, site: BybitSite, engine: MatchingEngine) -> None:
        self.site = site
        self.engine = engine
        self._meta: dict[int, OrderMeta] = {}
        self._pending: OrderMeta | None = None
        self._newest = 0  # the highest order id seen
        self._price_dp: dict[Symbol, int] = {}
        self._qty_dp: dict[Symbol, int] = {}
        for symbol in engine.symbols:
            rules = engine.rules(symbol)
            self._price_dp[symbol] = decimals(rules.tick_size)
            self._qty_dp[symbol] = decimals(rules.step_size)

    # -- order metadata -------------------------------------------------------------------
    @contextlib.contextmanager
    def placing(self, meta: OrderMeta) -> Iterator[None]:
        """Attach ``meta`` to the order the engine creates inside this block: the engine
        pushes its updates (to the private stream) before ``place`` returns its id."""
        self._pending = meta
        try:
            yield
        finally:
            self._pending = None

    def meta(self, order: Order) -> OrderMeta:
        """The order's :class:`OrderMeta` (derived from the engine's order when it was not
        placed through this site)."""
        found = self._meta.get(order.order_id)
        if found is None and self._pending is not None and order.order_id > self._newest:
            found, self._pending = self._pending, None  # the first new order: the one placed
            self._meta[order.order_id] = found
        self._newest = max(self._newest, order.order_id)
        if found is None:
            market = order.type in ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
            quote = order.quote_quantity > 0
            found = OrderMeta(
                order_filter="StopOrder" if order.is_stop else "Order",
                order_type="Market" if market else "Limit",
                market_unit=("quoteCoin" if quote else "baseCoin") if market else "",
                qty=order.quote_quantity if quote else order.quantity,
                link_id=order.client_order_id,
                time_in_force="IOC" if market else order.time_in_force,
            )
            self._meta[order.order_id] = found
        return found

    def recent_closed(self, symbol: Symbol | None) -> list[Order]:
        """The newest :data:`RECENT_CLOSED` closed orders (of ``symbol`` or all)."""
        symbols = [symbol] if symbol is not None else list(self.engine.symbols)
        closed = [o for s in symbols for o in self.engine.orders(s, limit=1_000_000)
                  if not o.is_open]  # fmt: skip
        closed.sort(key=lambda o: o.order_id)
        return closed[-RECENT_CLOSED:]

    # -- rows -----------------------------------------------------------------------------
    def order_row(self, order: Order, *, category: bool = False) -> dict[str, Any]:
        """Bybit's order object (``/v5/order/realtime`` row; ``category`` for the stream)."""
        meta = self.meta(order)
        symbol = order.symbol
        p, q = self._price_dp[symbol], self._qty_dp[symbol]
        status = bybit_status(order)
        is_open = order.is_open
        leaves = order.remaining if is_open else ZERO
        limit_price = order.price if meta.order_type == "Limit" else ZERO
        value_price = limit_price or order.stop_price or (meta.base_price or ZERO)
        fees = self._fees(order)
        qty_text = plain(meta.qty) if meta.market_unit == "quoteCoin" else fixed(meta.qty, q)
        stop = meta.order_filter != "Order"
        if meta.market_unit == "quoteCoin" and is_open:
            leaves_value = meta.qty - order.cum_quote
        else:
            leaves_value = leaves * value_price
        row: dict[str, Any] = {
            "orderId": str(order.order_id),
            "orderLinkId": meta.link_id,
            "blockTradeId": "",
            "symbol": symbol.exchange_id,
            "price": fixed(limit_price, p),
            "qty": qty_text,
            "side": "Buy" if order.side == "BUY" else "Sell",
            "isLeverage": "0",
            "positionIdx": 0,
            "orderStatus": status,
            "cancelType": meta.cancel_type if status in _CANCELLED else "UNKNOWN",
            "rejectReason": self._reject_reason(order),
            "avgPrice": fixed(order.cum_quote / order.executed_qty, p)
            if order.executed_qty > 0
            else "",
            "leavesQty": fixed(leaves, q),
            "leavesValue": plain(leaves_value),
            "cumExecQty": fixed(order.executed_qty, q),
            "cumExecValue": plain(order.cum_quote),
            "cumExecFee": plain(sum(fees.values(), ZERO)),
            "cumFeeDetail": {asset: plain(v) for asset, v in fees.items()},
            "feeCurrency": next(iter(fees), ""),
            "timeInForce": meta.time_in_force,
            "orderType": meta.order_type,
            "stopOrderType": {"StopOrder": "Stop", "tpslOrder": "tpslOrder"}.get(
                meta.order_filter, ""
            ),
            "orderIv": "",
            "marketUnit": meta.market_unit,
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "0",
            "triggerPrice": fixed(order.stop_price if stop else ZERO, p),
            "takeProfit": fixed(ZERO, p),
            "stopLoss": fixed(ZERO, p),
            "ocoTriggerBy": "OcoTriggerByUnknown",
            "tpLimitPrice": fixed(ZERO, p),
            "slLimitPrice": fixed(ZERO, p),
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": meta.trigger_direction,
            "triggerBy": "LastPrice" if stop else "",
            "lastPriceOnCreated": "",
            "basePrice": "" if meta.base_price is None else fixed(meta.base_price, p),
            "reduceOnly": meta.reduce_only,
            "closeOnTrigger": False,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms),
        }
        if category:
            row = {"category": "spot", **row}
        return row

    @staticmethod
    def _reject_reason(order: Order) -> str:
        if order.status != "EXPIRED":
            return "EC_NoError"
        if order.executed_qty == 0:
            return "EC_NoImmediateQtyToFill"
        return "EC_CancelForNoFullFill"

    def _fees(self, order: Order) -> dict[str, Decimal]:
        fees: dict[str, Decimal] = {}
        for fill in self.engine.fills(order_id=order.order_id):
            if fill.commission > 0:
                asset = fill.commission_asset
                fees[asset] = fees.get(asset, ZERO) + fill.commission
        return fees

    def execution_row(
        self, fill: Fill, order: Order, leaves: Decimal, *, category: bool = False
    ) -> dict[str, Any]:
        """Bybit's execution object; ``leaves`` is the order's base quantity left after it."""
        meta = self.meta(order)
        p, q = self._price_dp[fill.symbol], self._qty_dp[fill.symbol]
        qty_text = plain(meta.qty) if meta.market_unit == "quoteCoin" else fixed(meta.qty, q)
        row: dict[str, Any] = {
            "symbol": fill.symbol.exchange_id,
            "orderId": str(fill.order_id),
            "orderLinkId": meta.link_id,
            "side": "Buy" if fill.side == "BUY" else "Sell",
            "orderPrice": fixed(order.price if meta.order_type == "Limit" else ZERO, p),
            "orderQty": qty_text,
            "leavesQty": fixed(leaves, q),
            "orderType": meta.order_type,
            "stopOrderType": {"StopOrder": "Stop", "tpslOrder": "tpslOrder"}.get(
                meta.order_filter, ""
            ),
            "execFee": plain(fill.commission),
            "feeCurrency": fill.commission_asset,
            "execId": str(fill.fill_id),
            "execPrice": fixed(fill.price, p),
            "execQty": fixed(fill.qty, q),
            "execType": "Trade",
            "execValue": plain(fill.quote_qty),
            "execTime": str(fill.time_ms),
            "isMaker": fill.maker,
            "feeRate": plain(self.engine.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": fixed(fill.price, p),
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": "",
            "execPnl": "0",
            "seq": fill.fill_id,
            "isLeverage": "0",
            "extraFees": "",
        }
        if category:
            row = {"category": "spot", **row}
        return row

    def leaves_after(self, order: Order, fills: Iterable[Fill]) -> dict[int, Decimal]:
        """Each of the order's fills → the base quantity left after it."""
        left, out = order.quantity, {}
        for fill in sorted(fills, key=lambda f: f.fill_id):
            left -= fill.qty
            out[fill.fill_id] = max(left, ZERO)
        return out

    # -- pages ----------------------------------------------------------------------------
    def order_page(self, orders: Sequence[Order], page: Page) -> dict[str, Any]:
        by_id = {o.order_id: o for o in orders}
        ids, cursor = page.cut(list(by_id))
        rows = [self.order_row(by_id[i]) for i in ids]
        return {"category": "spot", "list": rows, "nextPageCursor": cursor}

    def fill_page(self, fills: Sequence[Fill], page: Page) -> dict[str, Any]:
        by_id = {f.fill_id: f for f in fills}
        ids, cursor = page.cut(list(by_id))
        rows = []
        orders: dict[int, tuple[Order, dict[int, Decimal]]] = {}
        for fill_id in ids:
            fill = by_id[fill_id]
            if fill.order_id not in orders:
                order = self.engine.order(fill.symbol, order_id=fill.order_id)
                own = self.engine.fills(order_id=fill.order_id)
                orders[fill.order_id] = (order, self.leaves_after(order, own))
            order, leaves = orders[fill.order_id]
            rows.append(self.execution_row(fill, order, leaves[fill_id]))
        return {"category": "spot", "list": rows, "nextPageCursor": cursor}

    # -- the wallet -----------------------------------------------------------------------
    def usd_price(self, coin: str) -> Decimal:
        """USD value of one ``coin`` (module docstring); 0 when nothing prices it."""
        if coin in _STABLE:
            return Decimal(1)
        for symbol in self.engine.symbols:
            if symbol.base == coin and symbol.quote in _STABLE:
                last = self.engine.last_price(symbol)
                if last is not None:
                    return last
        return ZERO

    def wallet(self, wanted: set[str] | None = None) -> dict[str, Any]:
        """The ``UNIFIED`` account of ``wallet-balance`` and the ``wallet`` stream: the coins
        ``wanted`` (None: every coin with a balance)."""
        balances = self.engine.balances()
        coins = []
        equity = available = ZERO
        for coin, (free, locked) in sorted(balances.items()):
            total = free + locked
            price = self.usd_price(coin)
            equity += total * price
            available += free * price
            if (wanted is None and total == 0) or (wanted is not None and coin not in wanted):
                continue
            coins.append(self.coin_balance(coin, free, locked, price))
        total_text = plain(equity.quantize(Decimal("0.00000001")))
        return {
            "accountType": "UNIFIED",
            "accountIMRate": "0",
            "accountMMRate": "0",
            "accountLTV": "0",
            "totalEquity": total_text,
            "totalWalletBalance": total_text,
            "totalMarginBalance": total_text,
            "totalAvailableBalance": plain(available.quantize(Decimal("0.00000001"))),
            "totalPerpUPL": "0",
            "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0",
            "coin": coins,
        }

    @staticmethod
    def coin_balance(coin: str, free: Decimal, locked: Decimal, price: Decimal) -> dict[str, Any]:
        """One coin of the wallet: ``walletBalance`` = ``equity`` = free + locked, ``locked``
        by open orders; ``availableToWithdraw`` is "" (deprecated for UTA since 2025)."""
        total = free + locked
        return {
            "coin": coin,
            "equity": plain(total),
            "usdValue": plain((total * price).quantize(Decimal("0.00000001"))),
            "walletBalance": plain(total),
            "locked": plain(locked),
            "spotHedgingQty": "0",
            "borrowAmount": "0",
            "availableToWithdraw": "",
            "availableToBorrow": "",
            "accruedInterest": "0",
            "totalOrderIM": "0",
            "totalPositionIM": "0",
            "totalPositionMM": "0",
            "unrealisedPnl": "0",
            "cumRealisedPnl": "0",
            "bonus": "0",
            "marginCollateral": True,
            "collateralSwitch": True,
        }

    def coin(self, coin: str) -> dict[str, Any]:
        """``/v5/asset/coin/query-info`` row: one chain named after the coin."""
        chain = {
            "chainType": coin,
            "confirmation": "1",
            "withdrawFee": "0",
            "depositMin": "0",
            "withdrawMin": "0",
            "chain": coin,
            "chainDeposit": "1",
            "chainWithdraw": "1",
            "minAccuracy": "8",
            "withdrawPercentageFee": "0",
            "contractAddress": "",
            "safeConfirmNumber": "1",
        }
        return {"name": coin, "coin": coin, "remainAmount": "1000000", "chains": [chain]}


def account_info(now_ms: int) -> dict[str, Any]:
    """``/v5/account/info``: a UTA 2.0 Pro account (``unifiedMarginStatus`` 6), regular
    margin, no spot hedging."""
    return {
        "marginMode": "REGULAR_MARGIN",
        "updatedTime": str(now_ms),
        "unifiedMarginStatus": 6,
        "dcpStatus": "OFF",
        "timeWindow": 10,
        "smpGroup": 0,
        "isMasterTrader": False,
        "spotHedgingStatus": "OFF",
    }


def api_key_info(api_key: str) -> dict[str, Any]:
    """``/v5/user/query-api``: the local key, spot trading only, on a UTA (``uta`` 1)."""
    return {
        "id": "1",
        "note": "pivotal local exchange (local-only key)",
        "apiKey": api_key,
        "readOnly": 0,
        "secret": "",
        "permissions": {"Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"],
                        "ContractTrade": [], "Options": [], "Derivatives": [],
                        "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": []},
        "ips": ["*"],
        "type": 1,
        "deadlineDay": -1,
        "expiredAt": "",
        "createdAt": "2024-01-01T00:00:00Z",
        "unified": 0,
        "uta": 1,
        "userID": 1,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
    }  # fmt: skip
