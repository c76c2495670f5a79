"""A request limiter driven by the venue's own rate-limit headers.

ccxt spaces requests by a fixed ``rateLimit``; it does not read what the venue says is left.
:class:`HeaderRateLimiter` wraps a ccxt client's ``fetch`` (every REST request, ccxt's
internal ones included) and its ``on_rest_response`` hook (every reply):

- after each reply it reads the profile's headers: Binance ``X-MBX-USED-WEIGHT-1M`` and
  ``X-MBX-ORDER-COUNT-10S``/``-1D`` (used so far in a window aligned to the clock), Bybit
  ``X-Bapi-Limit-Status``/``X-Bapi-Limit``/``X-Bapi-Limit-Reset-Timestamp`` (left, limit,
  reset time); MEXC sends none, and ccxt's spacing is all there is;
- before each request: when a budget is used up, it waits until the window resets; when
  more than ``fraction`` (default 0.8) of it is used, it spreads the rest of the window over
  what is left (``time left / requests left``); every wait is scaled by ``1 ± jitter`` from a
  seeded generator so clients that hit the limit together do not retry together;
- a 429 or 418 reply closes a :class:`~pivotal.venues.backoff.RequestGate` for the reply's
  ``Retry-After`` (or ``block_429_s`` / ``block_418_s`` without one): every request of that
  venue waits until then.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pivotal.core.clock import Clock
from pivotal.venues.backoff import RequestGate, Sleep, retry_after_from_headers
from pivotal.venues.venue_profiles import VenueProfile

__all__ = ["Budget", "HeaderRateLimiter"]


@dataclass(slots=True)
class Budget:
    """One rate-limit budget as last reported: ``used`` of ``limit`` until ``reset_ms``."""

    name: str
    used: float
    limit: float
    reset_ms: int


def _lower(headers: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.split(",")[0].strip())
    except ValueError:
        return None


class HeaderRateLimiter:
    """See the module docstring. ``clock`` gives UTC ms (the venue's time is close enough:
    windows are seconds to a day long)."""

    def __init__(
        self,
        profile: VenueProfile,
        clock: Clock,
        *,
        fraction: float = 0.8,
        jitter: float = 0.2,
        seed: int = 0,
        sleep: Sleep = asyncio.sleep,
        block_429_s: float = 1.0,
        block_418_s: float = 120.0,
    ) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.profile = profile
        self.clock = clock
        self.fraction = fraction
        self.jitter = jitter
        self._rng = random.Random(f"{seed}:{profile.venue}:limiter")
        self._sleep = sleep
        self.block_429_s = block_429_s
        self.block_418_s = block_418_s
        self.gate = RequestGate(clock, sleep)
        self.budgets: dict[str, Budget] = {}
        self.last_status: int | None = None
        self.waits = 0
        self.waited_s = 0.0
        self.responses = 0

    # -- wiring ---------------------------------------------------------------------------
    def install(self, client: Any) -> None:
        """Wrap ``client.fetch`` and ``client.on_rest_response`` (once)."""
        fetch = client.fetch
        if getattr(fetch, "_pivotal_limited", False):
            return
        on_response = client.on_rest_response

        def observed(
            code: Any, reason: Any, url: Any, method: Any, headers: Any, *rest: Any
        ) -> Any:
            body = on_response(code, reason, url, method, headers, *rest)
            self.observe(int(code) if code is not None else None, headers)
            return body

        async def limited_fetch(
            url: str, method: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            await self.before()
            return await fetch(url, method, headers, body)

        limited_fetch._pivotal_limited = True  # type: ignore[attr-defined]
        client.on_rest_response = observed
        client.fetch = limited_fetch

    # -- reading replies ------------------------------------------------------------------
    def observe(self, status: int | None, headers: Mapping[str, Any] | None) -> None:
        """Take the budgets and any Retry-After from one reply."""
        self.responses += 1
        self.last_status = status
        now = self.clock.now_ms()
        lower = _lower(headers)
        for spec in self.profile.used_headers:
            used = _number(lower.get(spec.name))
            if used is None:
                continue
            start = now - now % spec.window_ms
            self.budgets[spec.name] = Budget(spec.name, used, spec.limit, start + spec.window_ms)
        spec_left = self.profile.remaining_headers
        if spec_left is not None:
            left = _number(lower.get(spec_left.status))
            limit = _number(lower.get(spec_left.limit))
            reset = _number(lower.get(spec_left.reset))
            if left is not None and limit:
                reset_ms = int(reset) if reset is not None else now + 1000
                self.budgets[spec_left.status] = Budget(
                    spec_left.status, max(0.0, limit - left), limit, reset_ms
                )
        if status in (418, 429):
            wait_s = retry_after_from_headers(headers, now)
            if wait_s is None:
                wait_s = self.block_418_s if status == 418 else self.block_429_s
            self.gate.block_for(wait_s)

    # -- before a request -----------------------------------------------------------------
    def delay_s(self) -> float:
        """Seconds the next request should wait for the budgets (before jitter)."""
        now = self.clock.now_ms()
        wait_ms = 0.0
        for budget in self.budgets.values():
            left_ms = budget.reset_ms - now
            if left_ms <= 0 or budget.limit <= 0:
                continue
            if budget.used >= budget.limit:
                wait_ms = max(wait_ms, left_ms)
            elif budget.used >= self.fraction * budget.limit:
                wait_ms = max(wait_ms, left_ms / max(1.0, budget.limit - budget.used))
        return wait_ms / 1000

    async def before(self) -> float:
        """Wait for the gate and the budgets; returns the seconds waited."""
        waited = await self.gate.wait()
        delay = self.delay_s()
        if delay > 0:
            delay *= 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
            await self._sleep(delay)
            waited += delay
        if waited > 0:
            self.waits += 1
            self.waited_s += waited
        return waited

    def blocked_s(self) -> float:
        """Seconds left of a Retry-After hold (0 when none)."""
        return self.gate.remaining_s()

    def snapshot(self) -> dict[str, Any]:
        return {
            "budgets": {
                b.name: {"used": b.used, "limit": b.limit, "reset_ms": b.reset_ms}
                for b in self.budgets.values()
            },
            "blocked_s": self.blocked_s(),
            "blocks": self.gate.blocks,
            "waits": self.waits,
            "waited_s": round(self.waited_s, 3),
            "responses": self.responses,
        }
