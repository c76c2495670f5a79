"""How each stream is doing: counters, message rate, lag, state.

One :class:`StreamHealth` per (exchange, symbol, channel): a stream that fails over gets a
second entry under the new exchange, and the old one keeps its history (state
``failed-over``). :meth:`HealthBook.snapshot` gives plain dicts for logs, the CLI and a
dashboard.

- ``rate``: messages per second, an exponentially decaying count with time constant
  ``RATE_TAU_S`` (the count of the last ~10 s, divided by 10), decayed to the snapshot time.
- ``lag``: received time minus the exchange's event time (ms) of the newest
  ``LAG_WINDOW`` messages that carry one (candles carry none); p50 and max.
- ``state``: ``connecting`` (subscribing, first message not yet in), ``live``, ``backoff``
  (waiting to reconnect), ``failed-over`` (another exchange serves the stream), ``failed``
  (refused for good), ``stopped``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pivotal.core.clock import Clock
from pivotal.core.symbols import Symbol
from pivotal.venues.stream_events import Channel

__all__ = ["LAG_WINDOW", "RATE_TAU_S", "HealthBook", "StreamHealth", "StreamState"]

RATE_TAU_S = 10.0
LAG_WINDOW = 1024

StreamState = Literal["connecting", "live", "backoff", "failed-over", "failed", "stopped"]


@dataclass
class StreamHealth:
    """Counters of one stream on one exchange (see the module docstring)."""

    exchange: str
    symbol: Symbol
    channel: Channel
    state: StreamState = "connecting"
    messages: int = 0
    gaps: int = 0
    resyncs: int = 0
    disconnects: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    backfilled_rows: int = 0
    backfill_shortfalls: int = 0
    failovers: int = 0
    failbacks: int = 0
    backpressure_waits: int = 0
    late_rows: int = 0
    errors: int = 0
    last_message_ms: int | None = None
    last_error: str | None = None
    _rate_sum: float = 0.0
    _rate_ms: int | None = None
    _lags: deque[int] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))

    def record_message(self, received_ms: int, event_ms: int | None = None) -> None:
        """One message received at ``received_ms`` (exchange time ``event_ms`` if known)."""
        self.messages += 1
        self._rate_sum = self._decayed(received_ms) + 1.0
        self._rate_ms = received_ms
        self.last_message_ms = received_ms
        if event_ms is not None:
            self._lags.append(received_ms - int(event_ms))

    def _decayed(self, now_ms: int) -> float:
        if self._rate_ms is None:
            return 0.0
        dt = max(0, now_ms - self._rate_ms) / 1000
        return self._rate_sum * math.exp(-dt / RATE_TAU_S)

    def rate(self, now_ms: int) -> float:
        """Messages per second around ``now_ms`` (see the module docstring)."""
        return self._decayed(now_ms) / RATE_TAU_S

    def lag_ms(self) -> tuple[float | None, int | None]:
        """(p50, max) of the recent lags in ms; (None, None) before any."""
        if not self._lags:
            return None, None
        values = np.fromiter(self._lags, dtype=np.int64)
        return float(np.median(values)), int(values.max())

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        p50, worst = self.lag_ms()
        return {
            "exchange": self.exchange,
            "symbol": str(self.symbol),
            "channel": str(self.channel),
            "state": self.state,
            "messages": self.messages,
            "rate_per_s": round(self.rate(now_ms), 6),
            "lag_p50_ms": p50,
            "lag_max_ms": worst,
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "rate_limited": self.rate_limited,
            "backfilled_rows": self.backfilled_rows,
            "backfill_shortfalls": self.backfill_shortfalls,
            "failovers": self.failovers,
            "failbacks": self.failbacks,
            "backpressure_waits": self.backpressure_waits,
            "late_rows": self.late_rows,
            "errors": self.errors,
            "last_message_ms": self.last_message_ms,
            "last_error": self.last_error,
        }


class HealthBook:
    """Every stream's :class:`StreamHealth`, created on first use."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, Symbol, Channel], StreamHealth] = {}

    def get(self, exchange: str, symbol: Symbol, channel: Channel) -> StreamHealth:
        key = (exchange, symbol, channel)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = StreamHealth(exchange, symbol, channel)
        return entry

    def entries(self) -> list[StreamHealth]:
        return [
            self._entries[k] for k in sorted(self._entries, key=lambda k: (str(k[1]), k[2], k[0]))
        ]

    def snapshot(self) -> list[dict[str, Any]]:
        """One plain dict per (exchange, symbol, channel), sorted by symbol, channel, exchange."""
        now = self._clock.now_ms()
        return [entry.snapshot(now) for entry in self.entries()]

    def totals(self) -> dict[str, int]:
        """Counters summed over every stream."""
        names = (
            "messages", "gaps", "resyncs", "disconnects", "reconnects", "rate_limited",
            "backfilled_rows", "backfill_shortfalls", "failovers", "failbacks",
            "backpressure_waits", "late_rows", "errors",
        )  # fmt: skip
        return {n: sum(getattr(e, n) for e in self._entries.values()) for n in names}
