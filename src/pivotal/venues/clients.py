"""ccxt.pro clients for the live streams: spot only, hosts replaceable.

:func:`create_stream_client` builds an async ccxt.pro client with pivotal's settings:

- ``enableRateLimit`` on (ccxt spaces REST requests by their weight), ``rateLimit`` from
  ``ExchangeConfig.rate_limit_ms`` or the exchange's declared default, ``timeout`` from
  ``timeout_s``.
- Spot only: Binance and Bybit load spot markets only; MEXC's ``fetch_markets`` is its
  ``fetch_spot_markets`` (the contract markets come from another host); no currencies call
  (a private endpoint), no margin calls. ``load_markets`` is one request.
- The API key (never the secret) when one is configured: Binance's ``historicalTrades``, which
  the trade back-fill pages by id, needs the key in ccxt. Nothing here signs a request.
- ``rest_url`` replaces the scheme and host of every REST URL (paths kept, e.g. Binance
  ``/api/v3``); ``ws_url`` does the same for every WebSocket URL. Binance's spot stream URL
  becomes ``<ws_url>/stream`` (ccxt recognises spot stream data by ``/stream`` in the URL and
  dials ``<url>/<n>``), Bybit's keeps ``/v5/public/spot``, MEXC's ``/ws``.
- A redirected client refuses, with :class:`~pivotal.core.errors.OperationalError`, any request
  or socket to another host: a client pointed at a local exchange never reaches the internet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pivotal.config.models import ExchangeConfig
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.data.exchanges import CAPABILITIES

if TYPE_CHECKING:
    import ccxt.pro

__all__ = ["STREAM_EXCHANGES", "create_stream_client", "redirect_rest", "redirect_ws"]

STREAM_EXCHANGES = ("binance", "bybit", "mexc")

#: Trades ccxt keeps per symbol between two reads of a stream (ccxt's default: 1,000).
TRADES_CACHE = 10_000
"""Exchanges whose stream clients pivotal configures and tests."""


def create_stream_client(
    exchange_id: str, config: ExchangeConfig | None = None
) -> ccxt.pro.Exchange:
    """An async ccxt.pro client for ``exchange_id`` (see the module docstring).

    Raises :class:`ConfigError` for an exchange other than binance, bybit or mexc.
    Create it inside the event loop that will use it; ``await client.close()`` when done.
    """
    import ccxt.pro

    exchange_id = exchange_id.strip().lower()
    if exchange_id not in STREAM_EXCHANGES:
        raise ConfigError(
            f"no stream client for exchange {exchange_id!r}; supported: "
            f"{', '.join(STREAM_EXCHANGES)}"
        )
    config = config or ExchangeConfig()
    caps = CAPABILITIES.get(exchange_id)
    settings: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(config.timeout_s * 1000),
    }
    rate_limit = config.rate_limit_ms or (caps.rate_limit_ms if caps else None)
    if rate_limit:
        settings["rateLimit"] = rate_limit
    if config.api_key is not None:
        settings["apiKey"] = config.api_key.get_secret_value()
    client = getattr(ccxt.pro, exchange_id)(settings)
    # ccxt keeps the newest 1,000 trades per symbol: a burst between two reads overflows it
    # (seen from 50x replays); the ids it drops would have to be fetched over REST
    client.options["tradesLimit"] = TRADES_CACHE
    _spot_only(client)
    if config.rest_url:
        redirect_rest(client, config.rest_url)
    if config.ws_url:
        redirect_ws(client, config.ws_url)
    return client


def _spot_only(client: Any) -> None:
    client.options["fetchMargins"] = False
    client.options["fetchCurrencies"] = False
    client.has["fetchCurrencies"] = False
    client.options["defaultType"] = "spot"
    if client.id == "binance":
        client.options["fetchMarkets"] = {"types": ["spot"], "loadAllOptions": False}
    elif client.id == "bybit":
        client.options["fetchMarkets"] = {"types": ["spot"]}
    elif client.id == "mexc":
        client.fetch_markets = client.fetch_spot_markets


def _base(url: str, schemes: tuple[str, ...]) -> str:
    base = url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{url!r} must be {' or '.join(schemes)}://host[:port]")
    return base


def _rewrite(urls: Any, base: str, schemes: tuple[str, ...]) -> Any:
    """Every URL string under ``urls`` with one of ``schemes`` moved to ``base`` (path kept)."""
    if isinstance(urls, str):
        parts = urlsplit(urls)
        if parts.scheme not in schemes:
            return urls
        return base + parts.path.rstrip("/")
    if isinstance(urls, dict):
        return {key: _rewrite(value, base, schemes) for key, value in urls.items()}
    return urls


def _inside(url: str, base: str) -> bool:
    return url == base or url.startswith((base + "/", base + "?"))


def redirect_rest(client: Any, rest_url: str) -> None:
    """Point every REST URL of ``client`` at ``rest_url`` and refuse requests elsewhere."""
    base = _base(rest_url, ("http", "https"))
    api = dict(client.urls["api"])
    ws = api.pop("ws", None)
    api = _rewrite(api, base, ("http", "https"))
    if ws is not None:
        api["ws"] = ws
    client.urls["api"] = api
    client.aiohttp_trust_env = False
    fetch = client.fetch

    async def guarded_fetch(
        url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        if not _inside(url, base):
            raise OperationalError(
                f"{client.id}: refused a request to {urlsplit(url).netloc or url}: rest_url "
                f"is {base}, so every request must go there (a bug in "
                "pivotal.venues.clients.redirect_rest; report it)"
            )
        return await fetch(url, method, headers, body)

    client.fetch = guarded_fetch


def redirect_ws(client: Any, ws_url: str) -> None:
    """Point every WebSocket URL of ``client`` at ``ws_url`` and refuse sockets elsewhere."""
    base = _base(ws_url, ("ws", "wss"))
    ws = _rewrite(client.urls["api"].get("ws", {}), base, ("ws", "wss"))
    if client.id == "binance":
        for kind in ("spot", "margin"):
            ws[kind] = base + "/stream"
    client.urls["api"]["ws"] = ws
    make = client.client

    def guarded_client(url: str) -> Any:
        if not _inside(url, base):
            raise OperationalError(
                f"{client.id}: refused a socket to {urlsplit(url).netloc or url}: ws_url is "
                f"{base}, so every socket must go there (a bug in "
                "pivotal.venues.clients.redirect_ws; report it)"
            )
        return make(url)

    client.client = guarded_client
