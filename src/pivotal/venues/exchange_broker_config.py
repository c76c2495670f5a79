"""Settings of the live exchange broker (:class:`ExchangeBrokerConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pivotal.config.models import StrictModel

__all__ = ["ExchangeBrokerConfig"]


class ExchangeBrokerConfig(StrictModel):
    """How :class:`~pivotal.venues.exchange_broker.ExchangeBroker` talks to its venue.

    Times in seconds unless the name says ms.
    """

    quote: str = Field(default="USDT", description="The account's quote currency")
    recv_window_ms: int = Field(
        default=5000, gt=0, le=60_000, description="How long a signed request stays valid (ms)"
    )
    clock_resync_s: float = Field(default=300.0, gt=0, description="Clock resync interval")
    call_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for one venue call from the loop thread"
    )
    transient_retries: int = Field(
        default=3, ge=0, le=20, description="Retries of a rate-limited / failed call"
    )
    retry_initial_s: float = Field(default=0.25, gt=0)
    retry_max_s: float = Field(default=4.0, gt=0)
    jitter: float = Field(default=0.3, ge=0, le=1)
    seed: int = Field(default=0, description="Seeds the jitter (repeatable runs)")
    lookup_attempts: int = Field(
        default=4, ge=1, le=50, description="Lookups by client id after a lost reply"
    )
    lookup_initial_s: float = Field(default=0.2, gt=0)
    lookup_max_s: float = Field(default=2.0, gt=0)
    rate_limit_fraction: float = Field(
        default=0.8, gt=0, le=1, description="Share of a header budget after which requests slow"
    )
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="REST polling interval while the user stream is down"
    )
    audit_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="REST poll interval while the user stream is live (catches missed fills)",
    )
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    fills_margin_ms: int = Field(
        default=300_000, ge=0, description="Look-back before the last journaled fill at start"
    )
    fills_lookback_ms: int = Field(
        default=86_400_000, gt=0, description="Fill history fetched when the journal has none"
    )
    unknown_orders: Literal["report", "adopt", "cancel"] = Field(
        default="adopt", description="What reconciliation does with venue orders the journal lacks"
    )
    mark_max_age_s: float = Field(
        default=30.0, gt=0, description="A mark older than this is refreshed from the ticker"
    )
    stream_balance: bool = Field(default=True, description="Watch balances on the user stream")
