"""The run file's ``live:`` section: how a paper or live session reaches its venue.

``pivotal run RUN_FILE --mode paper|live`` reads it (the backtest ignores it). Everything the
node builder needs besides the run's market, trading settings and orchestrator:

- ``venue`` and its endpoints: ``rest_url``/``ws_url`` point at a local exchange
  (``pivotal exchange serve``) or a proxy; unset = the venue's own hosts (live) or its sandbox
  (``testnet: true``);
- ``keys_file``: a YAML/JSON file ``{api_key, api_secret}`` outside the repository, readable by
  its owner only; without it the keys come from pivotal's config (``exchanges.<venue>.
  api_key``/``secret``, set from the environment as ``PIVOTAL_EXCHANGES__<VENUE>__API_KEY`` /
  ``__SECRET``). Paper trading needs no keys;
- ``journal``: the order journal (default ``<data dir>/trading/<run file name>.<mode>.journal``);
  a restart with the same run file and mode continues the same session from it;
- what to do with orders the journal does not know (``unknown_orders``: report them and leave
  them alone, adopt them, or cancel them), with open orders at a stop (``on_stop``), how often
  to reconcile (``reconcile_every_s``);
- the paper broker's latency and book rules; the exchange broker's ``recv_window_ms``, lookup
  attempts and timeouts.

Times are seconds or milliseconds as the key says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pivotal.config.models import StrictModel

__all__ = ["LiveSettings", "PaperSettings"]

LIVE_VENUES = ("binance", "bybit", "mexc")


class PaperSettings(StrictModel):
    """The paper broker: fills against the live book (``pivotal.trading.brokers.paper``)."""

    latency_ms: int = Field(
        default=50, ge=0, le=60_000, description="submit → first book the order may fill on"
    )
    book_stale_ms: int = Field(
        default=5_000, ge=1, description="refuse market orders when the last book is older"
    )
    quote_balance: float | None = Field(
        default=None,
        gt=0,
        description="starting quote cash; default: settings.broker.initial_cash",
    )


class LiveSettings(StrictModel):
    """The ``live:`` section of a run file (module docstring)."""

    venue: str = Field(default="binance", description="binance, bybit or mexc")
    rest_url: str | None = Field(
        default=None, description="REST base URL, e.g. a local exchange's http://127.0.0.1:PORT"
    )
    ws_url: str | None = Field(default=None, description="WebSocket base URL")
    testnet: bool = Field(default=False, description="use the venue's sandbox URLs")
    keys_file: Path | None = Field(
        default=None, description="{api_key, api_secret} file outside the repository (chmod 600)"
    )
    journal: Path | None = Field(default=None, description="the order journal file")
    unknown_orders: Literal["report", "adopt", "cancel"] = "report"
    on_stop: Literal["keep", "cancel"] = Field(
        default="keep", description="open orders at SIGTERM: keep them working or cancel them"
    )
    reconcile_every_s: float = Field(default=60.0, gt=0)
    recv_window_ms: int = Field(default=5_000, ge=1, le=60_000)
    request_timeout_s: float = Field(default=10.0, gt=0, le=120)
    lookup_attempts: int = Field(default=5, ge=1, le=50)
    kill_on_breaker: bool = Field(
        default=True,
        description="fire the kill switch when the drawdown breaker or daily loss limit trips",
    )
    duration_s: float | None = Field(
        default=None, gt=0, description="stop after this many wall seconds (None: until stopped)"
    )
    market_store: Literal["main", "session"] | None = Field(
        default=None,
        description="where the session's collected market data goes: main (the data dir's "
        "store, beside imported history) or session (a store beside the journal); default: "
        "session for a local exchange (a replay must not overwrite real history), else main",
    )
    paper: PaperSettings = Field(default_factory=PaperSettings)

    @field_validator("venue")
    @classmethod
    def _venue(cls, value: str) -> str:
        venue = value.strip().lower()
        if venue not in LIVE_VENUES:
            raise ValueError(f"venue {value!r} is not supported; use {', '.join(LIVE_VENUES)}")
        return venue

    @field_validator("rest_url", "ws_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().rstrip("/")
        if "://" not in text:
            raise ValueError(f"{value!r} is not a URL; write scheme://host:port")
        return text
