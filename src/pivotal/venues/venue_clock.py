"""The venue's clock as seen from here, and ccxt's ``timeDifference`` that follows it.

Signed requests carry a timestamp the venue accepts only inside ``[server − recvWindow,
server + 1 s)`` (Binance -1021, Bybit 10002, MEXC 700003 otherwise). :class:`VenueClock`
measures ``offset = server time − local midpoint`` with one ``fetch_time`` (the midpoint of
the local times before and after the request, so half the round trip is not counted as
drift), and writes it into the ccxt client: ccxt stamps requests with
``milliseconds() − options['timeDifference']``, so ``timeDifference = −offset``. ccxt's own
``adjustForTimeDifference`` is turned off: the broker resyncs every ``resync_s`` seconds and at
once after a timestamp refusal.

``recvWindow`` (ms, default 5,000, at most 60,000) is set in the client's options; the three
venues' ccxt classes all read ``options['recvWindow']`` when signing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["VenueClock"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class VenueClock:
    """Offset of the venue's clock (``offset_ms``) and the client settings that follow it.

    ``local_ms`` is the local clock ccxt itself uses (the wall clock); tests pass another.
    """

    def __init__(
        self,
        *,
        recv_window_ms: int = 5000,
        resync_s: float = 300.0,
        local_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError(f"recv_window_ms must be in 1..60000, got {recv_window_ms}")
        if resync_s <= 0:
            raise ValueError(f"resync_s must be above 0, got {resync_s}")
        self.recv_window_ms = recv_window_ms
        self.resync_s = resync_s
        self._local_ms = local_ms
        self.offset_ms = 0
        self.round_trip_ms: int | None = None
        self.synced_at_ms: int | None = None
        self.syncs = 0

    def configure(self, client: Any) -> None:
        """Set ``recvWindow`` and the current offset on ``client``; ccxt's automatic time
        adjustment off."""
        client.options["recvWindow"] = self.recv_window_ms
        client.options["adjustForTimeDifference"] = False
        client.options["timeDifference"] = -self.offset_ms

    async def sync(self, client: Any) -> int:
        """Measure the offset with ``client.fetch_time()`` and apply it; returns it (ms).

        Raises what ``fetch_time`` raises (the caller decides whether that is fatal)."""
        before = self._local_ms()
        server = await client.fetch_time()
        after = self._local_ms()
        if server is None:
            raise ValueError(f"{getattr(client, 'id', 'venue')} fetch_time returned no time")
        self.offset_ms = round(float(server) - (before + after) / 2)
        self.round_trip_ms = after - before
        self.synced_at_ms = after
        self.syncs += 1
        self.configure(client)
        return self.offset_ms

    def due(self) -> bool:
        """Whether ``resync_s`` has passed since the last sync (or there was none)."""
        if self.synced_at_ms is None:
            return True
        return self._local_ms() - self.synced_at_ms >= self.resync_s * 1000

    def venue_now_ms(self) -> int:
        """The venue's time now, as far as the last sync knows (UTC ms)."""
        return self._local_ms() + self.offset_ms

    def local_ms(self) -> int:
        return self._local_ms()

    def snapshot(self) -> dict[str, Any]:
        return {
            "offset_ms": self.offset_ms,
            "round_trip_ms": self.round_trip_ms,
            "synced_at_ms": self.synced_at_ms,
            "syncs": self.syncs,
            "recv_window_ms": self.recv_window_ms,
        }
