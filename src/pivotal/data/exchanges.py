"""The ccxt edge: exchange capabilities as data, the REST client factory, error mapping.

What each exchange can serve (timeframes, candles per request, 1-second klines, its default
request spacing) is declared in :data:`CAPABILITIES`, so the download service can decide
before any request whether an exchange is worth asking. :func:`create_client` builds a sync
ccxt client from :class:`~pivotal.config.models.ExchangeConfig`; ccxt is imported inside it
because importing ccxt takes about a second.

Redirection (``rest_url``): every URL under the client's ``urls['api']`` (nested dicts
included) keeps its path and gets ``rest_url`` as scheme and host, e.g. binance
``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:8080/api/v3``. A guard around
the client's ``fetch`` then refuses, with :class:`OperationalError`, any request whose URL
does not start with ``rest_url``: a redirected client can never reach the internet.
Environment proxies are ignored for redirected clients.

Reachability (``preflight_timeout_s``): before the first request to each host, and again
whenever a request fails without any HTTP reply, the client resolves the host (DNS) and opens
a TCP connection to it, each within the timeout. A host that cannot be resolved or refuses the
connection raises :class:`ExchangeUnreachable` at once (a missing network is not something a
retry schedule fixes); the verdict is remembered, so the next request to that host fails
just as fast. Skipped when a proxy would carry the request (the proxy resolves the host).

Errors: :func:`is_retryable` classifies a ccxt error with the HTTP status of the reply
(:func:`track_responses` records it), :func:`to_operational_error` maps the others to
:class:`OperationalError` with what to do.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pivotal.config.models import ExchangeConfig
from pivotal.core.errors import OperationalError
from pivotal.core.timeframes import Timeframe

if TYPE_CHECKING:
    import ccxt

log = logging.getLogger(__name__)

_ALL = frozenset(Timeframe)

PREFLIGHT_TIMEOUT_S = 3.0
"""Seconds a DNS lookup, and then a TCP connection, of an exchange's API host may take before
the host counts as unreachable (at most this, or the client's HTTP timeout if shorter)."""


class ExchangeUnreachable(OperationalError):
    """The exchange's API host cannot be resolved or connected to: no network, a DNS failure,
    a firewall. Not retried; the download tries the next exchange at once."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host


@dataclass(frozen=True, slots=True)
class ExchangeCapabilities:
    """What one exchange's spot REST API serves for candle downloads.

    ``max_candles_per_request`` is the page size we ask for (some exchanges document a
    larger limit than they honour: MEXC documents 1000 and serves 500).
    ``rate_limit_ms`` is the default spacing between requests of weight 1 (ccxt's
    ``rateLimit``); ``ExchangeConfig.rate_limit_ms`` overrides it. ``full_pages``: a page
    shorter than asked for means the requested range holds no more candles, so the download
    can stop without one more (empty) request. ``klines_are_lists``: the raw klines reply is
    a JSON list of rows (Binance's format), so rows ccxt silently drops can be detected.
    """

    exchange_id: str
    timeframes: frozenset[Timeframe]
    max_candles_per_request: int
    rate_limit_ms: int
    full_pages: bool = True
    klines_are_lists: bool = True

    @property
    def serves_seconds(self) -> bool:
        """Whether 1-second klines are served (one page is then only 1000 seconds)."""
        return Timeframe.S1 in self.timeframes

    def supports(self, timeframe: Timeframe) -> bool:
        return timeframe in self.timeframes


CAPABILITIES: dict[str, ExchangeCapabilities] = {
    "binance": ExchangeCapabilities(
        exchange_id="binance",
        timeframes=_ALL,
        max_candles_per_request=1000,
        rate_limit_ms=50,
    ),
    "mexc": ExchangeCapabilities(
        exchange_id="mexc",
        timeframes=frozenset(
            {
                Timeframe.M1,
                Timeframe.M5,
                Timeframe.M15,
                Timeframe.M30,
                Timeframe.H1,
                Timeframe.H4,
                Timeframe.D1,
            }
        ),
        max_candles_per_request=500,
        rate_limit_ms=50,
    ),
}


def capabilities(exchange_id: str) -> ExchangeCapabilities:
    """Declared capabilities; for other ccxt exchanges, derived from ccxt's description.

    Raises :class:`OperationalError` when ccxt does not know the exchange.
    """
    exchange_id = exchange_id.strip().lower()
    if exchange_id in CAPABILITIES:
        return CAPABILITIES[exchange_id]
    cls = _ccxt_class(exchange_id)
    described = cls().describe()
    served = {tf for tf in Timeframe if tf.value in (described.get("timeframes") or {})}
    return ExchangeCapabilities(
        exchange_id=exchange_id,
        timeframes=frozenset(served),
        max_candles_per_request=500,
        rate_limit_ms=int(described.get("rateLimit") or 1000),
        full_pages=False,
        klines_are_lists=False,
    )


def create_client(
    exchange_id: str,
    config: ExchangeConfig,
    *,
    with_credentials: bool = False,
    preflight_timeout_s: float | None = None,
) -> ccxt.Exchange:
    """A sync ccxt client for ``exchange_id`` with pivotal's settings applied.

    - ``enableRateLimit`` on, ``rateLimit`` = ``config.rate_limit_ms`` or the declared default;
      ``timeout`` = ``config.timeout_s``.
    - Markets: spot only (binance ``options['fetchMarkets']['types'] = ['spot']``; mexc's
      ``fetch_markets`` replaced by its ``fetch_spot_markets``), no currency or margin calls.
    - Credentials only when ``with_credentials`` (downloads use public endpoints and never
      pass keys). Keys are never logged.
    - ``config.rest_url``, ``preflight_timeout_s`` (None: no reachability check): see the
      module docstring.
    """
    exchange_id = exchange_id.strip().lower()
    cls = _ccxt_class(exchange_id)
    caps = capabilities(exchange_id)
    settings: dict[str, Any] = {
        "enableRateLimit": True,
        "rateLimit": config.rate_limit_ms or caps.rate_limit_ms,
        "timeout": int(config.timeout_s * 1000),
    }
    if with_credentials:
        if config.api_key is not None:
            settings["apiKey"] = config.api_key.get_secret_value()
        if config.secret is not None:
            settings["secret"] = config.secret.get_secret_value()
    client = cls(settings)
    _spot_only(client, public=not with_credentials)
    if preflight_timeout_s is not None:
        check_reachability(client, min(preflight_timeout_s, config.timeout_s))
    if config.rest_url:
        redirect(client, config.rest_url)  # outermost: refuses a foreign URL before any check
    return client


def check_reachability(client: ccxt.Exchange, timeout_s: float) -> None:
    """Make ``client`` check each API host before its first request and after a request that
    got no reply at all (see the module docstring)."""
    import ccxt

    fetch = client.fetch
    verdicts: dict[tuple[str, int], ExchangeUnreachable | None] = {}

    def where(url: str) -> tuple[str, int] | None:
        """The (host, port) a request goes to; None when there is nothing to probe (no host,
        or a proxy carries the request)."""
        parts = urlsplit(url)
        if not parts.hostname or _uses_proxy(client, url):
            return None
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)

    def check(url: str, again: bool = False) -> None:
        target = where(url)
        if target is None:
            return
        if again or target not in verdicts:
            verdicts[target] = probe_host(client.id, target[0], target[1], timeout_s)
        verdict = verdicts[target]
        if verdict is not None:
            raise verdict

    def checked_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        check(url)
        try:
            return fetch(url, method, headers, body)
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable):
            raise  # the host answered (429, 418, 5xx, maintenance): nothing to probe
        except ccxt.NetworkError:
            check(url, again=True)  # no reply at all: did the network go?
            raise

    client.fetch = checked_fetch


def probe_host(
    exchange_id: str, host: str, port: int, timeout_s: float
) -> ExchangeUnreachable | None:
    """None when ``host`` resolves and accepts a TCP connection on ``port`` within
    ``timeout_s`` each; else the error that says which step failed and what to do."""
    addresses, failure = _resolve(host, port, timeout_s)
    if failure is not None:
        return ExchangeUnreachable(
            f"{exchange_id}: cannot resolve {host}: no network? ({failure}); check the internet "
            "connection and DNS (or set a proxy)",
            host,
        )
    refused = None
    deadline = time.monotonic() + timeout_s  # for all the host's addresses together
    for family, kind, proto, _, address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
            return None
        except TimeoutError:
            refused = f"no answer within {timeout_s:g} s: no network, or a firewall drops it"
        except OSError as exc:
            refused = exc.strerror or str(exc)
            if isinstance(exc, ConnectionRefusedError):
                refused = "connection refused"
    return ExchangeUnreachable(
        f"{exchange_id}: cannot connect to {host}:{port}: {refused or 'no address'}; check the "
        "internet connection, a firewall or the exchange's status",
        host,
    )


def _resolve(host: str, port: int, timeout_s: float) -> tuple[list[Any], str | None]:
    """``getaddrinfo`` with a timeout (it has none of its own): (addresses, None) or
    ([], why not). The lookup runs in a daemon thread that is left behind on timeout."""
    answers: queue.Queue[tuple[list[Any], str | None]] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            answers.put((socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), None))
        except OSError as exc:
            answers.put(([], f"DNS lookup failed: {exc.strerror or exc}"))

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    try:
        return answers.get(timeout=timeout_s)
    except queue.Empty:
        return [], f"no DNS answer within {timeout_s:g} s"


def _uses_proxy(client: ccxt.Exchange, url: str) -> bool:
    """Whether ``client`` would send this request through a proxy (then the proxy, not this
    machine, resolves and connects to the host)."""
    for name in ("proxies", "proxy", "proxyUrl", "proxy_url", "httpProxy", "http_proxy",
                 "httpsProxy", "https_proxy", "socksProxy", "socks_proxy"):  # fmt: skip
        if getattr(client, name, None):
            return True
    session = getattr(client, "session", None)
    if session is None or not getattr(session, "trust_env", False):
        return False
    import requests.utils

    return bool(requests.utils.get_environ_proxies(url))


def redirect(client: ccxt.Exchange, rest_url: str) -> None:
    """Point every API URL of ``client`` at ``rest_url`` and refuse requests elsewhere."""
    base = rest_url.rstrip("/")
    client.urls["api"] = _rewrite(client.urls.get("api"), base)
    client.session.trust_env = False
    fetch = client.fetch

    def guarded_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if not (url == base or url.startswith(base + "/") or url.startswith(base + "?")):
            raise OperationalError(
                f"{client.id}: refused a request to {urlsplit(url).netloc or url}: "
                f"rest_url is set to {base}, so every request must go there. This is a bug in "
                "the URL redirection (pivotal.data.exchanges.redirect); report it."
            )
        return fetch(url, method, headers, body)

    client.fetch = guarded_fetch


def _rewrite(urls: Any, base: str) -> Any:
    if isinstance(urls, str):
        parts = urlsplit(urls)
        if not parts.scheme:
            return urls
        return base + parts.path.rstrip("/")
    if isinstance(urls, dict):
        return {key: _rewrite(value, base) for key, value in urls.items()}
    return urls


def _spot_only(client: ccxt.Exchange, *, public: bool) -> None:
    client.options["fetchMargins"] = False
    if public:
        # currencies come from private endpoints; markets alone name base and quote assets
        client.options["fetchCurrencies"] = False
        client.has["fetchCurrencies"] = False
    if client.id == "binance":
        client.options["fetchMarkets"] = {"types": ["spot"], "loadAllOptions": False}
    elif client.id == "mexc":
        # ccxt's mexc.fetch_markets always adds the contract (swap) markets from another
        # endpoint; downloads need spot only.
        client.fetch_markets = client.fetch_spot_markets


def _ccxt_class(exchange_id: str) -> type[ccxt.Exchange]:
    import ccxt

    cls = getattr(ccxt, exchange_id, None)
    if exchange_id not in ccxt.exchanges or cls is None:
        raise OperationalError(
            f"unknown exchange {exchange_id!r}: ccxt {ccxt.__version__} has no such id; "
            f"use one of ccxt's ids, e.g. {', '.join(sorted(CAPABILITIES))}"
        )
    return cls


@dataclass
class ResponseTracker:
    """Status, headers and body of a client's latest HTTP reply (None: no reply yet)."""

    status: int | None = None
    headers: Any = None
    body: str | None = None

    def clear(self) -> None:
        self.status = self.headers = self.body = None


def track_responses(client: ccxt.Exchange) -> ResponseTracker:
    """Record every reply of ``client`` (ccxt keeps headers but not the status code)."""
    tracker = ResponseTracker()
    on_response = client.on_rest_response

    def track(code: int, reason: str, url: str, method: str, headers: Any, *rest: Any) -> Any:
        body = on_response(code, reason, url, method, headers, *rest)
        tracker.status, tracker.headers, tracker.body = int(code), headers, body
        return body

    client.on_rest_response = track
    return tracker


def is_retryable(exc: Exception, status: int | None) -> bool:
    """Worth retrying: HTTP 408/418/429/5xx, or, without a reply, a ccxt network failure.

    Other 4xx replies are not retried even where ccxt calls them "not available" (404).
    """
    import ccxt

    if status in (408, 418, 429) or (status is not None and status >= 500):
        return True
    if status is not None and 400 <= status < 500:
        return False
    return isinstance(exc, ccxt.OperationFailed)


def to_operational_error(exc: Exception, where: str, exchange_id: str) -> OperationalError:
    """A non-retryable ccxt error as an :class:`OperationalError` that says what to do."""
    import ccxt

    if isinstance(exc, ccxt.BadSymbol):
        hint = "the exchange does not know this symbol; check it or use another exchange"
    elif isinstance(exc, ccxt.AuthenticationError):
        hint = f"the exchange refused the credentials; check exchanges.{exchange_id} keys"
    elif isinstance(exc, ccxt.BadRequest):
        hint = "the exchange refused the request as invalid (an API change or a pivotal bug)"
    else:
        hint = "the exchange refused the request; not retried"
    return OperationalError(f"{where}: {hint} ({type(exc).__name__}: {short_message(exc)})")


def retry_after_s(headers: Any, now_ms: int) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = None if headers is None else headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp() * 1000
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now_ms) / 1000)


def short_message(exc: Exception, limit: int = 200) -> str:
    """The error's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
