"""The kernel's recorder for a paper or live session: decisions, equity and alerts to the
order journal, each durable before the step goes on.

The kernel records a decision *before* its orders go out and the equity after them
(:mod:`pivotal.runtime.kernel`), so with :class:`JournalRecorder` every decision is in the
journal before the broker journals the order intents it caused. Order changes and fills are
journaled by the broker itself (it writes them before handing them to the loop), so the
kernel's copies of those records are not written twice; risk records (refusals, resizes,
breaker alerts) become ``alert`` entries. ``on_alert`` sees every risk record (the node fires
the kill switch on a breaker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pivotal.core.clock import Clock
from pivotal.core.journal import NewEntry, OrderJournal

__all__ = ["JournalRecorder"]

_BROKER_KINDS = frozenset({"order", "fill"})


def _plain(value: Any) -> Any:
    """JSON data from a record value (numpy scalars and arrays included)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return value


def _symbol(record: Mapping[str, Any]) -> str | None:
    symbol = record.get("symbol")
    return symbol if isinstance(symbol, str) else None


class JournalRecorder:
    """A :class:`~pivotal.runtime.recorder.RunRecorder` writing to an order journal."""

    def __init__(
        self,
        journal: OrderJournal,
        clock: Clock,
        *,
        on_alert: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.on_alert = on_alert
        self.decisions = 0
        self.alerts = 0

    def equity(self, t_ms: int, value: float) -> None:
        self.journal.append([NewEntry(int(t_ms), "equity", {"equity": float(value)})])

    def decision(self, record: Mapping[str, Any]) -> None:
        self.decisions += 1
        ts = int(record.get("timestamp", self.clock.now_ms()))
        symbol = record.get("symbol")
        self.journal.append(
            [
                NewEntry(
                    ts,
                    "decision",
                    _plain(record),
                    symbol=symbol if isinstance(symbol, str) else None,
                )
            ]
        )

    def event(self, record: Mapping[str, Any]) -> None:
        kind = str(record.get("kind", ""))
        if kind in _BROKER_KINDS:
            return  # the broker journaled it before the loop saw it
        self.alerts += 1
        ts = int(record.get("timestamp", self.clock.now_ms()))
        symbol = record.get("symbol")
        data = {
            "level": "warning",
            "message": str(record.get("reason") or record.get("message") or kind),
        }
        data["record"] = _plain(record)
        self.journal.append(
            [NewEntry(ts, "alert", data, symbol=symbol if isinstance(symbol, str) else None)]
        )
        if self.on_alert is not None:
            self.on_alert(record)

    def fill(self, record: Mapping[str, Any]) -> None:
        return  # journaled by the broker (see event)

    def flush(self) -> None:
        return  # every append is durable when it returns

    def close(self) -> None:
        return  # the node closes the journal it opened
