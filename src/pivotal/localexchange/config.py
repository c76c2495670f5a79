"""Configuration of the local exchange server: :class:`ServeConfig` and :class:`VenueUrls`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pivotal.localexchange.faults import FaultConfig

#: The venues the local exchange can speak, in the default failover order.
KNOWN_VENUES: tuple[str, ...] = ("binance", "bybit", "mexc")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


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
    - ``faults``: the injected faults and REST limits; ``seed``: their random choices.
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
        return self


@dataclass(frozen=True, slots=True)
class VenueUrls:
    """A running venue's base URLs: ``rest`` (``http://127.0.0.1:PORT``), ``ws`` (``ws://...``)."""

    venue: str
    rest: str
    ws: str
    port: int
