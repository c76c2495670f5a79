"""Risk alerts: events the risk manager raises for a person or the dashboard to see.

Alerts are values, collected in a bounded log and handed over by ``drain_alerts()`` (pulled,
like broker events, so one loop owns the state). Times are UTC milliseconds taken from the
arguments the manager was given, never from a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, get_args

AlertKind = Literal[
    "circuit_breaker", "daily_loss_limit", "order_resized", "order_refused", "halt_reset"
]
ALERT_KINDS: frozenset[str] = frozenset(get_args(AlertKind))

#: Alerts kept when nobody drains them; older ones are dropped (and counted).
MAX_PENDING_ALERTS = 10_000


@dataclass(frozen=True, slots=True)
class RiskAlert:
    """One risk event.

    - ``circuit_breaker``: drawdown from the peak reached ``max_drawdown``; entries halted.
    - ``daily_loss_limit``: the day's loss reached ``daily_loss_limit``; entries halted
      until the next UTC day.
    - ``order_resized`` / ``order_refused``: a limit (cap, halt) cut or refused an order.
    - ``halt_reset``: a halt was lifted (``reset_halt`` or a new UTC day).

    ``values`` holds the numbers behind the message (shares as fractions, money in the
    account currency), e.g. ``{"drawdown": 0.213, "limit": 0.2, "equity": 7870.0}``.
    """

    timestamp: int
    kind: AlertKind
    symbol: str | None
    message: str
    values: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(
                f"unknown alert kind {self.kind!r}; allowed: {', '.join(sorted(ALERT_KINDS))}"
            )
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


class AlertLog:
    """A bounded FIFO of pending alerts; ``dropped`` counts those pushed out unread."""

    def __init__(self, capacity: int = MAX_PENDING_ALERTS) -> None:
        if capacity < 1:
            raise ValueError(f"alert log capacity must be at least 1, got {capacity}")
        self._pending: deque[RiskAlert] = deque(maxlen=capacity)
        self.dropped = 0

    def push(self, alert: RiskAlert) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(alert)

    def extend(self, alerts: list[RiskAlert]) -> None:
        for alert in alerts:
            self.push(alert)

    def drain(self) -> list[RiskAlert]:
        """All pending alerts, oldest first; the log is empty afterwards."""
        out = list(self._pending)
        self._pending.clear()
        return out

    def __len__(self) -> int:
        return len(self._pending)


def format_time(timestamp_ms: int) -> str:
    """``2024-01-05 13:00 UTC`` for UTC milliseconds."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_day(day_index: int) -> str:
    """``2024-01-05`` for a UTC day index (milliseconds // 86 400 000)."""
    return datetime.fromtimestamp(day_index * 86_400, tz=UTC).strftime("%Y-%m-%d")


def format_pct(share: float, digits: int = 1) -> str:
    """A measured share as a percentage with fixed decimals: ``21.3 %`` for 0.2134."""
    return f"{share * 100:.{digits}f} %"


def format_share(share: float) -> str:
    """A configured share as a short percentage: ``20 %`` for 0.2, ``0.5 %`` for 0.005."""
    return f"{share * 100:.6g} %"


def format_money(value: float) -> str:
    """``12,345.67``."""
    return f"{value:,.2f}"
