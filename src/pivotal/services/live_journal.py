"""A running node's order journal, read incrementally for the live view.

:class:`JournalTail` opens the node's journal read-only (its own SQLite connection: the node
keeps writing through its own, WAL lets both work) and, on each :meth:`JournalTail.update`,
reads only the entries appended since the last one, converting them once into the API's rows
with the shared converters of :mod:`pivotal.services.run_rows` and
:mod:`pivotal.services.journal_rows`: decisions, fills, orders (latest state per client id),
alerts and the equity curve. Thread-safe (one lock); an update costs one indexed query.

Decision entries of a node with commands carry ``model_decision`` (the orchestrator's
decision record), ``thresholds`` and ``trading`` (:class:`pivotal.node.commands.
NotedRecorder`); a row's ``executed`` is True when the step's actions were sent, False when
trading was off, None for a step without actions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pivotal.core.journal import JournalEntry, order_from_dict
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.services.journal_rows import alert_of_entry, decision_of_entry, order_row
from pivotal.services.run_rows import fill_row
from pivotal.services.schemas import Alert, DecisionRow, FillRow, OrderRow

__all__ = ["JournalTail", "decision_of_entry"]

MAX_DECISIONS = 50_000
MAX_ALERTS = 20_000
MAX_ORDERS = 20_000
_MIN_INTERVAL_S = 0.1  # updates closer together than this reuse the last read


class JournalTail:
    """The rows of one node's journal, kept current (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._reader: SqliteOrderJournal | None = None
        self._seq = 0
        self._read_at = 0.0
        self.decisions: deque[DecisionRow] = deque(maxlen=MAX_DECISIONS)
        self.alerts: deque[Alert] = deque(maxlen=MAX_ALERTS)
        self.fills: list[FillRow] = []
        self.orders: dict[str, OrderRow] = {}
        self.equity_t: list[int] = []
        self.equity_v: list[float] = []
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self._fill_ids: set[tuple[str, str]] = set()
        self._rows: dict[str, Any] | None = None  # the last snapshot(), until new entries

    def update(self) -> None:
        """Read the entries appended since the last update (at most every 0.1 s)."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at < _MIN_INTERVAL_S:
                return
            self._read_at = now
            if self._reader is None:
                if not self.path.exists():
                    return
                self._reader = SqliteOrderJournal.open_readonly(self.path)
            for entry in self._reader.entries(since_seq=self._seq):
                self._seq = entry.seq
                self._take(entry)
                self._rows = None

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def snapshot(self) -> dict[str, Any]:
        """Copies of every row list, so callers filter without the lock; the same object
        until new entries arrive (callers must not change it)."""
        with self._lock:
            if self._rows is not None:
                return self._rows
            equity_t = np.asarray(self.equity_t, np.int64)
            equity_v = np.asarray(self.equity_v, np.float64)
            equity_t.setflags(write=False)
            equity_v.setflags(write=False)
            self._rows = {
                "decisions": list(self.decisions),
                "alerts": list(self.alerts),
                "fills": list(self.fills),
                "orders": list(self.orders.values()),
                "equity_t": equity_t,
                "equity_v": equity_v,
                "first_ms": self.first_ms,
                "last_ms": self.last_ms,
            }
            return self._rows

    def _take(self, entry: JournalEntry) -> None:
        if self.first_ms is None:
            self.first_ms = entry.ts
        self.last_ms = entry.ts
        kind = entry.kind
        if kind == "decision":
            row = decision_of_entry(entry)
            if row is not None:
                self.decisions.append(row)
        elif kind == "fill":
            self._fill(entry)
        elif kind == "order":
            self._order(entry)
        elif kind == "equity":
            value = entry.data.get("equity")
            if isinstance(value, int | float) and (
                not self.equity_t or entry.ts > self.equity_t[-1]
            ):
                self.equity_t.append(int(entry.ts))
                self.equity_v.append(float(value))
        alert = alert_of_entry(entry)
        if alert is not None:
            self.alerts.append(alert)

    def _fill(self, entry: JournalEntry) -> None:
        fill = entry.data.get("fill")
        if not isinstance(fill, Mapping):
            return
        row = fill_row(fill)
        if row is None:
            return
        key = (str(row.client_order_id), str(row.trade_id or f"{row.t}:{row.quantity}"))
        if key in self._fill_ids:
            return
        self._fill_ids.add(key)
        self.fills.append(row)

    def _order(self, entry: JournalEntry) -> None:
        data = entry.data.get("order")
        if not isinstance(data, Mapping):
            return
        try:
            row = order_row(order_from_dict(data))
        except (KeyError, ValueError, TypeError):
            return  # an entry of an older format: the order shows at its next change
        self.orders.pop(row.client_order_id, None)  # newest last
        self.orders[row.client_order_id] = row
        while len(self.orders) > MAX_ORDERS:
            self.orders.pop(next(iter(self.orders)))
