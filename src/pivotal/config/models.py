"""The configuration schema. Every key is optional; unknown keys are refused.

One frozen model per component, composed into :class:`PivotalConfig`. Later stages add
their sections here (features, models, trading, ...), each with its own model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/pivotal``, else ``~/.local/share/pivotal``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pivotal"


class ExchangeConfig(StrictModel):
    """Connection settings for one exchange (keyed by its ccxt id under ``exchanges``)."""

    rest_url: str | None = Field(
        default=None,
        description="REST base URL (scheme://host[:port]); replaces the exchange's own, "
        "e.g. for a proxy or a local test server",
    )
    ws_url: str | None = Field(
        default=None,
        description="WebSocket base URL (ws[s]://host[:port]); replaces the exchange's own "
        "stream host (paths kept), e.g. for a local test exchange",
    )
    api_key: SecretStr | None = Field(default=None, description="API key (prefer the env var)")
    secret: SecretStr | None = Field(default=None, description="API secret (prefer the env var)")
    rate_limit_ms: int | None = Field(
        default=None, gt=0, description="Minimum ms between requests; default: ccxt's value"
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="HTTP timeout in seconds")

    @field_validator("rest_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:8080")
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://, e.g. ws://127.0.0.1:8081")
        return value


class DownloadConfig(StrictModel):
    """How ``pivotal data download`` talks to exchanges."""

    fallback_exchanges: list[str] = Field(
        default_factory=lambda: ["binance", "mexc"],
        description="Exchanges tried in order when the requested one fails (seed 003)",
    )
    max_retries: int = Field(default=6, ge=0, le=50)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    page_limit: int = Field(default=1000, ge=1, le=5000, description="Candles per request")

    @field_validator("fallback_exchanges")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value]


class StoreConfig(StrictModel):
    """Where and how market data is stored."""

    backend: Literal["duckdb"] = "duckdb"


class MarketConfig(StrictModel):
    """Which markets the system follows by default."""

    symbols: list[str] = Field(default_factory=lambda: ["ETH/USDT", "BTC/USDT"])
    reference_symbol: str = "BTC/USDT"
    timeframes: list[str] = Field(default_factory=lambda: ["1s", "1m", "1h", "1d"])

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return [str(Symbol.parse(v)) for v in value]

    @field_validator("reference_symbol")
    @classmethod
    def _reference(cls, value: str) -> str:
        return str(Symbol.parse(value))

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: list[str]) -> list[str]:
        return [Timeframe.parse(v).value for v in value]


class GapsConfig(StrictModel):
    """What counts as a gap in a candle series (see ``pivotal.core.gaps``)."""

    max_missing_bars: int = Field(
        default=DEFAULT_MAX_MISSING_BARS,
        ge=0,
        description="A missing run of more than this many bars is a gap: indicators, pivots, "
        "model windows and labels restart after it",
    )


class StreamsConfig(StrictModel):
    """Live market data streams (``pivotal.venues``): reconnects, pacing, failover."""

    backoff_initial_s: float = Field(
        default=0.5, gt=0, description="Seconds before the first reconnect after a disconnect"
    )
    backoff_factor: float = Field(default=2.0, ge=1, description="Growth per failed reconnect")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest wait between reconnects")
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each wait is scaled by 1 +/- this fraction (seeded)"
    )
    seed: int = Field(default=0, description="Seed of the jitter (deterministic reconnect waits)")
    resubscribe_per_s: int = Field(
        default=5,
        ge=1,
        le=100,
        description="At most this many (re)subscriptions per second per "
        "exchange (Binance closes a connection sending more than 5 messages per second)",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Items held for the consumer; when full, streams wait "
        "(counted as back-pressure), nothing is dropped",
    )
    book_depth: int = Field(default=20, ge=1, le=5000, description="Levels per side in book items")
    backfill_page_limit: int = Field(
        default=1000, ge=1, le=5000, description="Rows per REST request when back-filling"
    )
    failover: list[str] = Field(
        default_factory=lambda: ["binance", "mexc"],
        description="Exchanges in order of preference for every symbol's streams",
    )
    failover_after_s: float = Field(
        default=30.0,
        gt=0,
        description="Switch to the next exchange when the active one has "
        "been down (no successful reconnect) this long",
    )
    probe_every_s: float = Field(
        default=10.0,
        gt=0,
        description="While failed over, seconds between probes of the "
        "preferred exchange (a cheap REST call); it is switched back when one succeeds",
    )

    @field_validator("failover")
    @classmethod
    def _venues(cls, value: list[str]) -> list[str]:
        ids = [v.strip().lower() for v in value]
        if not ids or len(set(ids)) != len(ids) or not all(ids):
            raise ValueError("must name at least one exchange, each once, e.g. [binance, mexc]")
        return ids


class PivotalConfig(StrictModel):
    """The whole configuration (``pivotal.yaml``)."""

    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    store: StoreConfig = Field(default_factory=StoreConfig)
    markets: MarketConfig = Field(default_factory=MarketConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    exchanges: dict[str, ExchangeConfig] = Field(default_factory=dict)
    gaps: GapsConfig = Field(default_factory=GapsConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(os.path.expandvars(str(value))).expanduser()

    @field_validator("exchanges")
    @classmethod
    def _lower(cls, value: dict[str, ExchangeConfig]) -> dict[str, ExchangeConfig]:
        return {k.strip().lower(): v for k, v in value.items()}

    def exchange(self, exchange_id: str) -> ExchangeConfig:
        """Settings for ``exchange_id`` (defaults when the file names none)."""
        return self.exchanges.get(exchange_id.lower(), ExchangeConfig())
