"""Configuration of the local exchange server: :class:`ServeConfig` and :class:`VenueUrls`."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pivotal.localexchange.faults import FaultConfig

#: The venues the local exchange can speak, in the default failover order.
KNOWN_VENUES: tuple[str, ...] = ("binance", "bybit", "mexc")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The local exchange's fixed API key pair: local-only credentials, documented in the README
#: (they sign requests to 127.0.0.1, never a real venue). The environment overrides them.
LOCAL_API_KEY = "pivotal-local-key"
LOCAL_API_SECRET = "pivotal-local-secret"
API_KEY_ENV = "PIVOTAL_LOCAL_API_KEY"
API_SECRET_ENV = "PIVOTAL_LOCAL_API_SECRET"
#: Every venue's account when ``ServeConfig.accounts`` names none: 100,000 USDT (and 0 of
#: every base asset).
DEFAULT_BALANCES: dict[str, float] = {"USDT": 100_000.0}
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")


def _env_key() -> str:
    return os.environ.get(API_KEY_ENV) or LOCAL_API_KEY


def _env_secret() -> SecretStr:
    return SecretStr(os.environ.get(API_SECRET_ENV) or LOCAL_API_SECRET)


def credential_sources() -> tuple[str, str]:
    """Where the API key and the secret of a default ``ServeConfig`` come from (for the CLI;
    never the secret itself): ``"PIVOTAL_LOCAL_API_KEY"`` or ``"default"`` for each."""
    key = API_KEY_ENV if os.environ.get(API_KEY_ENV) else "default"
    secret = API_SECRET_ENV if os.environ.get(API_SECRET_ENV) else "default"
    return key, secret


class ServeConfig(BaseModel):
    """How the local exchange serves its flows.

    - ``venues``: the venue sites to start (each on its own port; every flow's symbol is
      listed on every venue);
    - ``speed``: market milliseconds per wall millisecond (1 = real time, 20 = twenty times
      faster); ``mode="manual"`` ignores it: the market only moves on
      :meth:`LocalExchange.advance_to` (tests);
    - ``duration_s``: wall seconds to serve before the CLI stops (``None``: until stopped);
    - ``host``: the interface to bind, 127.0.0.1 unless ``allow_remote``;
    - ``ports``: a fixed port per venue (missing or 0 = an ephemeral port);
    - ``faults``: the injected faults and REST limits; ``seed``: their random choices;
    - ``accounts``: each venue's initial balances, asset → amount (a venue not named gets
      :data:`DEFAULT_BALANCES`; every served base asset starts at 0 unless given);
    - ``api_key``/``api_secret``: the one key pair the signed endpoints accept (default the
      local pair, or ``PIVOTAL_LOCAL_API_KEY``/``PIVOTAL_LOCAL_API_SECRET`` when set);
    - ``fee_rate``: commission per fill as a fraction of the received amount (0.001 = 0.1 %,
      maker and taker alike), charged in the received asset;
    - ``check_timestamps``: whether signed requests are refused (-1021) when their
      ``timestamp`` is outside ``recvWindow`` of the market time (``/api/v3/time``); turn it
      off when the market is stepped by hand and the client keeps wall time. Default: on,
      except for a paced replay faster or slower than real time (``speed != 1``): there the
      market clock runs away from any client clock synced to it (at 30x, 5 s of
      ``recvWindow`` last a sixth of a wall second), so no client could sign in time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    venues: tuple[str, ...] = ("binance",)
    speed: float = Field(default=1.0, gt=0)
    mode: Literal["paced", "manual"] = "paced"
    duration_s: float | None = Field(default=None, gt=0)
    host: str = "127.0.0.1"
    allow_remote: bool = False
    ports: dict[str, int] = Field(default_factory=dict)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    seed: int = 0
    accounts: dict[str, dict[str, float]] = Field(default_factory=dict)
    api_key: str = Field(default_factory=_env_key, min_length=1)
    api_secret: SecretStr = Field(default_factory=_env_secret)
    fee_rate: float = Field(default=0.001, ge=0, lt=1)
    check_timestamps: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_timestamp_check(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("check_timestamps") is None:
            data = dict(data)
            paced = data.get("mode", "paced") == "paced"
            data["check_timestamps"] = not (paced and float(data.get("speed", 1.0)) != 1.0)
        return data

    def balances(self, venue: str) -> dict[str, float]:
        """The initial balances of ``venue`` (asset → amount)."""
        return dict(self.accounts.get(venue, DEFAULT_BALANCES))

    @field_validator("accounts")
    @classmethod
    def _valid_accounts(cls, accounts: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        cleaned: dict[str, dict[str, float]] = {}
        for venue, balances in accounts.items():
            name = venue.strip().lower()
            if name not in KNOWN_VENUES:
                raise ValueError(
                    f"account for unknown venue {venue!r}; known: {', '.join(KNOWN_VENUES)}"
                )
            assets: dict[str, float] = {}
            for asset, amount in balances.items():
                code = asset.strip().upper()
                if not _ASSET.match(code):
                    raise ValueError(
                        f"{name}: asset {asset!r} must be 1-20 letters/digits (e.g. USDT)"
                    )
                if not (math.isfinite(amount) and amount >= 0):
                    raise ValueError(f"{name}: balance of {code} must be >= 0, got {amount}")
                assets[code] = float(amount)
            cleaned[name] = assets
        return cleaned

    @field_validator("api_secret")
    @classmethod
    def _secret_given(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value():
            raise ValueError("api_secret must not be empty")
        return secret

    @field_validator("venues")
    @classmethod
    def _known_venues(cls, venues: tuple[str, ...]) -> tuple[str, ...]:
        if not venues:
            raise ValueError("at least one venue is needed")
        cleaned = tuple(v.strip().lower() for v in venues)
        unknown = [v for v in cleaned if v not in KNOWN_VENUES]
        if unknown:
            raise ValueError(
                f"unknown venue(s) {', '.join(unknown)}; known: {', '.join(KNOWN_VENUES)}"
            )
        if len(set(cleaned)) != len(cleaned):
            raise ValueError(f"venue listed twice in {', '.join(cleaned)}")
        return cleaned

    @model_validator(mode="after")
    def _host_and_ports(self) -> ServeConfig:
        if self.host not in _LOCAL_HOSTS and not self.allow_remote:
            raise ValueError(
                f"host {self.host!r} is not local; the local exchange binds 127.0.0.1 unless "
                "allow_remote=True"
            )
        for venue, port in self.ports.items():
            if venue not in self.venues:
                raise ValueError(f"port given for venue {venue!r}, which is not served")
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} of {venue} is outside 0..65535")
        for venue in self.accounts:
            if venue not in self.venues:
                raise ValueError(f"account given for venue {venue!r}, which is not served")
        return self


@dataclass(frozen=True, slots=True)
class VenueUrls:
    """A running venue's base URLs: ``rest`` (``http://127.0.0.1:PORT``), ``ws`` (``ws://...``)."""

    venue: str
    rest: str
    ws: str
    port: int
