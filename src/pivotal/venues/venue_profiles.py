"""What differs between the venues the live broker trades, as data: one :class:`VenueProfile`
per venue (binance, bybit, mexc), read by :mod:`~pivotal.venues.exchange_broker` and its
helpers instead of ``if venue == ...`` branches.

Facts checked against ccxt 4.5.90 (``binance.py``, ``bybit.py``, ``mexc.py`` and their
``pro`` twins) and the venues' API documentation:

- **Client order ids.** Binance ``newClientOrderId`` on create, ``origClientOrderId`` on
  query/cancel (≤ 36 chars of ``[.A-Za-z0-9:/_-]``); Bybit ``orderLinkId`` (≤ 36 chars of
  letters, digits, ``-`` and ``_``); MEXC ``newClientOrderId`` / ``origClientOrderId``
  (pivotal keeps to 32). ccxt passes the unified ``clientOrderId`` param to each of them;
  :attr:`VenueProfile.create_id_param` and :attr:`lookup_id_param` are the ccxt params used.
- **Spot stop orders.** Binance: ``STOP_LOSS`` / ``TAKE_PROFIT`` (ccxt params
  ``stopLossPrice`` / ``takeProfitPrice`` on a market order). Bybit: a conditional spot
  order (ccxt ``triggerPrice`` → ``orderFilter=StopOrder``; queried and cancelled with
  ``trigger=True``). MEXC: none on spot; the broker watches such orders itself.
- **"Status unknown" codes.** Binance -1006/-1007 (and -1000/-1001, internal errors, where
  the order may or may not have been placed); Bybit 10000 (server timeout), 10016 and 170001
  (internal errors). MEXC documents none; its timeouts and 5xx replies are the cases.
- **Rate-limit headers.** Binance ``X-MBX-USED-WEIGHT-1M`` (6,000 per minute per IP) and
  ``X-MBX-ORDER-COUNT-10S`` / ``-1D`` (100 per 10 s, 200,000 per day per account); Bybit
  ``X-Bapi-Limit-Status`` (left), ``X-Bapi-Limit`` and ``X-Bapi-Limit-Reset-Timestamp``;
  MEXC sends none.
- **Sandbox.** Binance and Bybit have testnets (``set_sandbox_mode``); MEXC has none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pivotal.core.errors import ConfigError

__all__ = ["PROFILES", "RemainingHeaders", "UsedHeader", "VenueProfile", "profile"]


@dataclass(frozen=True, slots=True)
class UsedHeader:
    """A header that counts what was *used* of a budget of ``limit`` per ``window_ms``
    (Binance ``X-MBX-USED-WEIGHT-1M``: weight used in the current minute)."""

    name: str
    limit: int
    window_ms: int


@dataclass(frozen=True, slots=True)
class RemainingHeaders:
    """Headers that say what is *left* (``status``) of ``limit`` until ``reset`` (UTC ms)."""

    status: str
    limit: str
    reset: str


@dataclass(frozen=True, slots=True)
class VenueProfile:
    """One venue's trading facts (module docstring). Codes are strings as the venue sends
    them (``"-1007"``, ``"110072"``)."""

    venue: str
    #: the ccxt ``create_order`` param that carries our client id, and the venue's own name
    create_id_param: str
    wire_id_param: str
    #: the ccxt param that finds / cancels an order by client id
    lookup_id_param: str
    id_max_length: int
    id_pattern: re.Pattern[str]
    #: "fetch_order": one query by client id finds open and closed orders; "open_then_closed":
    #: the open orders, then the closed ones, each filtered by the id (Bybit v5)
    lookup: Literal["fetch_order", "open_then_closed"]
    #: how a stop (STOP_MARKET) and a take-profit reach the venue: ccxt params naming the
    #: trigger, or None when the venue has no spot stop orders (watched locally)
    stop_param: str | None
    take_profit_param: str | None
    #: extra ccxt params for querying / cancelling a stop order (Bybit: trigger=True)
    stop_query_params: Mapping[str, Any] = field(default_factory=dict)
    unknown_status_codes: frozenset[str] = frozenset()
    clock_codes: frozenset[str] = frozenset()
    duplicate_codes: frozenset[str] = frozenset()
    #: text that tells a duplicate-id refusal apart when its code is shared (Binance -2010)
    duplicate_text: str = ""
    unknown_order_codes: frozenset[str] = frozenset()
    user_stream: tuple[str, ...] = ("watch_orders", "watch_my_trades", "watch_balance")
    #: keys of a raw trade (``trade["info"]``) that hold the client order id
    trade_client_id_keys: tuple[str, ...] = ()
    used_headers: tuple[UsedHeader, ...] = ()
    remaining_headers: RemainingHeaders | None = None
    has_sandbox: bool = True
    #: the most trades one ``fetch_my_trades`` may ask for (Binance 1000, Bybit and MEXC 100)
    trades_page: int = 100
    #: ccxt options set on the trading client (spot market types, unified account, ...)
    client_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def native_stops(self) -> bool:
        """Whether the venue keeps spot stop orders itself."""
        return self.stop_param is not None

    def valid_client_id(self, client_order_id: str) -> bool:
        return (
            0 < len(client_order_id) <= self.id_max_length
            and self.id_pattern.fullmatch(client_order_id) is not None
        )

    def create_params(self, client_order_id: str) -> dict[str, Any]:
        return {self.create_id_param: client_order_id}

    def lookup_params(self, client_order_id: str, *, stop: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {self.lookup_id_param: client_order_id}
        if stop:
            params.update(self.stop_query_params)
        return params


_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")

PROFILES: dict[str, VenueProfile] = {
    "binance": VenueProfile(
        venue="binance",
        create_id_param="newClientOrderId",
        wire_id_param="newClientOrderId",
        lookup_id_param="origClientOrderId",
        id_max_length=36,
        id_pattern=_ID_CHARS,
        lookup="fetch_order",
        stop_param="stopLossPrice",
        take_profit_param="takeProfitPrice",
        unknown_status_codes=frozenset({"-1000", "-1001", "-1006", "-1007"}),
        clock_codes=frozenset({"-1021"}),
        duplicate_codes=frozenset({"-2010"}),
        duplicate_text="Duplicate order",
        unknown_order_codes=frozenset({"-2011", "-2013"}),
        trade_client_id_keys=("c", "clientOrderId"),
        trades_page=1000,
        used_headers=(
            UsedHeader("x-mbx-used-weight-1m", 6000, 60_000),
            UsedHeader("x-mbx-order-count-10s", 100, 10_000),
            UsedHeader("x-mbx-order-count-1d", 200_000, 86_400_000),
        ),
        client_options={
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            "newOrderRespType": {"market": "FULL", "limit": "FULL"},
        },
    ),
    "bybit": VenueProfile(
        venue="bybit",
        create_id_param="clientOrderId",
        wire_id_param="orderLinkId",
        lookup_id_param="orderLinkId",
        id_max_length=36,
        id_pattern=_ID_CHARS,
        lookup="open_then_closed",
        stop_param="triggerPrice",
        take_profit_param="triggerPrice",
        stop_query_params={"trigger": True},
        unknown_status_codes=frozenset({"10000", "10016", "170001"}),
        clock_codes=frozenset({"10002"}),
        duplicate_codes=frozenset({"110072"}),
        unknown_order_codes=frozenset({"110001", "170213"}),
        trade_client_id_keys=("orderLinkId",),
        remaining_headers=RemainingHeaders(
            status="x-bapi-limit-status",
            limit="x-bapi-limit",
            reset="x-bapi-limit-reset-timestamp",
        ),
        # a unified trading account (every new Bybit account): without these ccxt asks
        # /v5/user/query-api and /v5/account/info before its first private call
        client_options={"enableUnifiedAccount": True, "enableUnifiedMargin": False},
    ),
    "mexc": VenueProfile(
        venue="mexc",
        create_id_param="clientOrderId",
        wire_id_param="newClientOrderId",
        lookup_id_param="clientOrderId",
        id_max_length=32,
        id_pattern=_ID_CHARS,
        lookup="fetch_order",
        stop_param=None,
        take_profit_param=None,
        clock_codes=frozenset({"700003"}),
        unknown_order_codes=frozenset({"-2011", "-2013"}),
        trade_client_id_keys=("clientOrderId", "c"),
        has_sandbox=False,
    ),
}


def profile(venue: str) -> VenueProfile:
    """The profile of ``venue``; :class:`ConfigError` for a venue without one."""
    key = venue.strip().lower()
    if key not in PROFILES:
        raise ConfigError(
            f"no trading profile for venue {venue!r}; the live broker trades {', '.join(PROFILES)}"
        )
    return PROFILES[key]
