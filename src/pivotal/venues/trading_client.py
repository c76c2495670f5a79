"""Signed ccxt.pro clients for trading, and the API keys they sign with.

:func:`create_trading_client` builds the async client the live broker trades through:

- spot only (no currency, margin or derivative market calls), ccxt's ``enableRateLimit`` on
  only for a venue that reports no usage headers (pivotal's header limiter paces the others),
  ``verbose`` off (ccxt's verbose mode prints requests), the venue profile's options
  (:mod:`~pivotal.venues.venue_profiles`: Binance FULL order replies, Bybit's unified account);
- ``testnet=True``: ccxt's ``set_sandbox_mode(True)`` (Binance and Bybit testnets); MEXC has
  no testnet and is refused with :class:`ConfigError`;
- ``ExchangeConfig.rest_url`` / ``ws_url``: every REST URL (public *and* private, e.g.
  Binance ``/api/v3``, Bybit ``/v5``, MEXC ``/api/v3``) and every WebSocket URL (market
  streams, Binance's WebSocket API ``/ws-api/v3`` that carries the user data stream, Bybit's
  ``/v5/private`` and ``/v5/trade``) keep their paths and move to that host, applied after
  the sandbox switch; the client then refuses any request or socket elsewhere
  (:func:`~pivotal.venues.clients.redirect_rest`, :func:`~pivotal.venues.clients.redirect_ws`).
  A client pointed at a local REST host must be given a local ``ws_url`` too, or the user
  stream would dial the real venue.

:class:`ApiKeys` holds a key pair; ``repr``/``str`` never show the secret. Keys come from the
environment (``PIVOTAL_EXCHANGES__<VENUE>__API_KEY`` / ``__SECRET``, pivotal's config
variables) or from a YAML/JSON
file ``{api_key: ..., api_secret: ...}`` that only its owner may read and that lies outside
the git work tree (so it cannot be committed by accident).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pivotal.config.models import ExchangeConfig
from pivotal.core.errors import ConfigError
from pivotal.venues.clients import redirect_rest, redirect_ws
from pivotal.venues.venue_profiles import PROFILES, profile

if TYPE_CHECKING:
    import ccxt.pro

__all__ = ["ApiKeys", "create_trading_client", "git_work_tree"]

_LOCAL = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """An API key and its secret; ``source`` says where they came from (no secret in it)."""

    api_key: str
    api_secret: str = field(repr=False)
    source: str = "given"

    def __post_init__(self) -> None:
        for name in ("api_key", "api_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty string (from {self.source})")

    def __repr__(self) -> str:
        key = self.api_key
        shown = key if len(key) <= 8 else f"{key[:4]}…{key[-4:]}"
        return f"ApiKeys(api_key={shown!r}, api_secret='***', source={self.source!r})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, venue: str, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """``PIVOTAL_EXCHANGES__<VENUE>__API_KEY`` and ``PIVOTAL_EXCHANGES__<VENUE>__SECRET``:
        the variables pivotal's config loader reads as ``exchanges.<venue>.api_key`` /
        ``secret`` (so the node and a script read the same ones)."""
        env = os.environ if environ is None else environ
        prefix = f"PIVOTAL_EXCHANGES__{venue.strip().upper()}__"
        names = (f"{prefix}API_KEY", f"{prefix}SECRET")
        key, secret = env.get(names[0]), env.get(names[1])
        missing = [n for n, v in zip(names, (key, secret), strict=True) if not v]
        if missing:
            raise ConfigError(
                f"no API keys for {venue}: set {' and '.join(missing)} in the environment "
                "(or give a key file)"
            )
        assert key is not None and secret is not None
        return cls(key, secret, source=f"environment {names[0]}/{names[1]}")

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, cwd: str | os.PathLike[str] | None = None
    ) -> ApiKeys:
        """Keys from a YAML or JSON file ``{api_key: ..., api_secret: ...}``.

        Refused (:class:`ConfigError`) when the file is readable by its group or others (run
        ``chmod 600``) or lies inside the git work tree of ``cwd`` (default: the current
        directory): move it out, e.g. to ``~/.config/pivotal/``."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"API key file {file} does not exist (or is not a file)")
        resolved = file.resolve()
        tree = git_work_tree(Path(cwd) if cwd is not None else Path.cwd())
        if tree is not None and resolved.is_relative_to(tree):
            raise ConfigError(
                f"API key file {file} lies inside the git work tree {tree}: a commit could "
                "publish it; move it outside the repository (e.g. ~/.config/pivotal/keys.yaml)"
            )
        mode = stat.S_IMODE(resolved.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"API key file {file} is readable by others (mode {mode:04o}): run chmod 600 {file}"
            )
        text = resolved.read_text(encoding="utf-8")
        try:
            if resolved.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"API key file {file} is not valid YAML/JSON: {exc}") from None
        if not isinstance(data, Mapping) or "api_key" not in data or "api_secret" not in data:
            raise ConfigError(
                f"API key file {file} must hold a mapping with api_key and api_secret"
            )
        return cls(str(data["api_key"]), str(data["api_secret"]), source=f"file {file}")

    @classmethod
    def from_config(cls, venue: str, config: ExchangeConfig) -> ApiKeys:
        """The keys of ``exchanges.<venue>`` (``api_key`` and ``secret``)."""
        if config.api_key is None or config.secret is None:
            raise ConfigError(
                f"exchanges.{venue} has no api_key/secret; set PIVOTAL_{venue.upper()}_API_KEY "
                "and _SECRET or give a key file"
            )
        return cls(
            config.api_key.get_secret_value(),
            config.secret.get_secret_value(),
            source=f"config exchanges.{venue}",
        )


def git_work_tree(start: Path) -> Path | None:
    """The git work tree ``start`` lies in (the folder holding ``.git``), or None."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in _LOCAL


def create_trading_client(
    exchange_id: str, config: ExchangeConfig, keys: ApiKeys, *, testnet: bool
) -> ccxt.pro.Exchange:
    """A signed async ccxt.pro client (module docstring). Create it inside the event loop
    that will use it; ``await client.close()`` when done."""
    import ccxt.pro

    venue = exchange_id.strip().lower()
    if venue not in PROFILES:
        raise ConfigError(
            f"no trading client for exchange {exchange_id!r}; supported: {', '.join(PROFILES)}"
        )
    prof = profile(venue)
    if testnet and not prof.has_sandbox:
        raise ConfigError(
            f"{venue} has no testnet (sandbox): trade it live, or test against the local "
            "exchange (pivotal exchange serve) with exchanges.<venue>.rest_url/ws_url"
        )
    if config.rest_url and _is_local(config.rest_url) and not config.ws_url:
        raise ConfigError(
            f"exchanges.{venue}.rest_url points at a local host ({config.rest_url}) but ws_url "
            "is not set: the user stream would dial the real venue; set ws_url too"
        )
    settings: dict[str, Any] = {
        # the venue's own usage headers drive pivotal's limiter (header_limiter); ccxt's token
        # bucket does not refill while idle (ccxt#25556), so with it on every order waited
        # ~10 ms and one behind a poll up to 400 ms. Venues without headers keep it on.
        "enableRateLimit": not (prof.used_headers or prof.remaining_headers),
        "timeout": int(config.timeout_s * 1000),
        "apiKey": keys.api_key,
        "secret": keys.api_secret,
        "verbose": False,
    }
    if config.rate_limit_ms:
        settings["rateLimit"] = config.rate_limit_ms
    client = getattr(ccxt.pro, venue)(settings)
    _spot_trading(client)
    client.options.update(dict(prof.client_options))
    if testnet:
        client.set_sandbox_mode(True)
    if config.rest_url:
        redirect_rest(client, config.rest_url)
    if config.ws_url:
        redirect_ws(client, config.ws_url)
    return client


def _spot_trading(client: Any) -> None:
    client.options["defaultType"] = "spot"
    client.options["fetchMargins"] = False
    client.options["fetchCurrencies"] = False
    client.has["fetchCurrencies"] = False
    if client.id == "binance":
        client.options["fetchMarkets"] = {"types": ["spot"], "loadAllOptions": False}
    elif client.id == "bybit":
        client.options["fetchMarkets"] = {"types": ["spot"]}
    elif client.id == "mexc":
        client.fetch_markets = client.fetch_spot_markets
