"""Waiting well: reconnect backoff with seeded jitter, subscription pacing, Retry-After.

All three take the time from a :class:`~pivotal.core.clock.Clock` and wait through an injected
``sleep`` (``asyncio.sleep`` live; tests pass one that moves a fake clock), so nothing here
reads the wall clock.

- :class:`Backoff`: the n-th reconnect after a disconnect waits
  ``min(max_s, initial_s * factor**(n-1))`` scaled by ``1 + U(-jitter, +jitter)``; the random
  numbers come from a generator seeded with ``(seed, stream)``, so a run is repeatable and
  streams that drop together do not redial together.
- :class:`SubscriptionPacer`: at most ``per_s`` (re)subscriptions in any second, per exchange;
  reconnecting every stream at once is what trips an exchange's connection limits (Binance
  closes a socket that sends more than 5 messages per second).
- :class:`RequestGate`: after a 429/418 the exchange's Retry-After holds every request to
  that exchange (streams, back-fill, probes) until it has passed.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pivotal.config.models import StreamsConfig
from pivotal.core.clock import Clock
from pivotal.data.exchanges import retry_after_s

__all__ = ["Backoff", "RequestGate", "Sleep", "SubscriptionPacer", "retry_after_from_headers"]

Sleep = Callable[[float], Awaitable[Any]]
"""Waits the given seconds (``asyncio.sleep`` or a test's fake)."""


class Backoff:
    """Reconnect waits (seconds) with seeded jitter; see the module docstring."""

    def __init__(
        self,
        *,
        initial_s: float,
        factor: float,
        max_s: float,
        jitter: float,
        rng: random.Random,
    ) -> None:
        if initial_s <= 0 or factor < 1 or max_s <= 0 or not 0 <= jitter <= 1:
            raise ValueError(
                f"backoff needs initial_s > 0, factor >= 1, max_s > 0 and 0 <= jitter <= 1; "
                f"got {initial_s}, {factor}, {max_s}, {jitter}"
            )
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng

    @classmethod
    def from_config(cls, config: StreamsConfig, stream: str) -> Backoff:
        """The backoff of one stream (``stream`` names it in the seed)."""
        return cls(
            initial_s=config.backoff_initial_s,
            factor=config.backoff_factor,
            max_s=config.backoff_max_s,
            jitter=config.jitter,
            rng=random.Random(f"{config.seed}:{stream}"),
        )

    def base(self, attempt: int) -> float:
        """The wait before jitter for the ``attempt``-th reconnect (1 = the first)."""
        exponent = max(0, attempt - 1)
        if exponent > 64:
            return self.max_s
        return min(self.max_s, self.initial_s * self.factor**exponent)

    def delay(self, attempt: int) -> float:
        """The wait before the ``attempt``-th reconnect, jittered (never negative)."""
        scale = 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        return max(0.0, self.base(attempt) * scale)


class SubscriptionPacer:
    """At most ``per_s`` acquisitions in any 1,000 ms window (per exchange)."""

    def __init__(self, per_s: int, clock: Clock, sleep: Sleep) -> None:
        if per_s < 1:
            raise ValueError(f"per_s must be at least 1, got {per_s}")
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._recent: deque[int] = deque()
        self._lock = asyncio.Lock()
        self.waits = 0
        """How many acquisitions had to wait."""

    async def acquire(self) -> float:
        """Wait for a free slot (behind earlier callers); returns the seconds waited."""
        start = self._clock.now_ms()
        async with self._lock:
            while True:
                now = self._clock.now_ms()
                while self._recent and self._recent[0] <= now - 1000:
                    self._recent.popleft()
                if len(self._recent) < self.per_s:
                    self._recent.append(now)
                    if now > start:
                        self.waits += 1
                    return (now - start) / 1000
                await self._sleep((self._recent[0] + 1000 - now) / 1000)


def retry_after_from_headers(headers: Mapping[str, Any] | None, now_ms: int) -> float | None:
    """``Retry-After`` of a reply's headers in seconds (any letter case; delta-seconds or an
    HTTP date), or None when absent or unreadable."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            return retry_after_s({"Retry-After": str(value)}, now_ms)
    return None


class RequestGate:
    """Holds requests to one exchange until ``not_before_ms`` (UTC ms)."""

    def __init__(self, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self.not_before_ms = 0
        self.blocks = 0
        """How many times the gate was closed (429/418 replies honoured)."""

    def block_for(self, seconds: float) -> None:
        """Hold requests for ``seconds`` from now (extends, never shortens, a hold)."""
        until = self._clock.now_ms() + round(max(0.0, seconds) * 1000)
        self.blocks += 1
        self.not_before_ms = max(self.not_before_ms, until)

    def remaining_s(self) -> float:
        return max(0, self.not_before_ms - self._clock.now_ms()) / 1000

    async def wait(self) -> float:
        """Wait until requests may go; returns the seconds waited."""
        waited = 0.0
        while (left := self.remaining_s()) > 0:
            waited += left
            await self._sleep(left)
        return waited
