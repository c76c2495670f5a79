"""The kill switch: stop new entries, cancel every order, flatten every position.

:class:`KillSwitch` acts on the session's broker (the exchange's record is what counts: the
exchange broker cancels and sells on the venue) and the risk manager (new entries are refused
with the kill's reason until a person lifts it), and journals a ``kill`` entry with what it
did. It fires from:

- ``pivotal kill`` (:func:`request_kill` writes a request file beside the journal; the running
  node picks it up within a second; with no node running the command builds the broker and
  fires itself);
- the risk manager's drawdown breaker or daily loss limit (``live.kill_on_breaker``);
- Stage 11's API and dashboard, through the same request.

Flattening is a market sell of each symbol's base balance through the broker (rounded to the
venue's lot; dust below the venue's minimum is reported, not hidden).
:meth:`KillSwitch.exit_symbol` does the same for one symbol (a person's force exit through
:mod:`pivotal.node.commands`) without stopping entries.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotal.core.clock import Clock
from pivotal.core.journal import NewEntry, OrderJournal
from pivotal.data.atomic import atomic_write_text
from pivotal.node.session_broker import SessionBroker
from pivotal.trading.risk import RiskManager

__all__ = ["KillReport", "KillSwitch", "kill_request_path", "read_kill_request", "request_kill"]


def kill_request_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".kill")


def request_kill(journal: Path, reason: str) -> Path:
    """Write a kill request beside ``journal`` (atomically); the path written."""
    path = kill_request_path(journal)
    body = {"reason": reason, "requested_at": time.time(), "pid": os.getpid()}
    atomic_write_text(path, json.dumps(body))
    return path


def read_kill_request(journal: Path) -> dict[str, Any] | None:
    """The pending request (and removes it), or None. A malformed file is a request too:
    a person asked to stop, the reason is what could be read."""
    path = kill_request_path(journal)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = {"reason": f"kill request (unreadable file: {text[:80]!r})"}
    return body if isinstance(body, dict) else {"reason": "kill request"}


@dataclass
class KillReport:
    reason: str
    cancelled: list[str] = field(default_factory=list)
    flattened: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"kill switch: {self.reason}",
            f"  orders cancelled: {len(self.cancelled)}",
            "  positions flattened: "
            + (", ".join(f"{s} {q:g}" for s, q in self.flattened.items()) or "none open"),
        ]
        out += [f"  problem: {p}" for p in self.problems]
        out.append(f"  took {self.seconds:.2f} s")
        return out


class KillSwitch:
    """Stops entries, cancels all, flattens (module docstring)."""

    def __init__(
        self,
        broker: SessionBroker,
        risk: RiskManager,
        journal: OrderJournal,
        clock: Clock,
        symbols: list[str],
    ) -> None:
        self.broker = broker
        self.risk = risk
        self.journal = journal
        self.clock = clock
        self.symbols = symbols
        self.fired: KillReport | None = None

    def fire(self, reason: str) -> KillReport:
        started = time.perf_counter()
        report = KillReport(reason=reason)
        self.risk.stop_entries(f"kill switch: {reason}")
        for order in self.broker.cancel_all(None):
            report.cancelled.append(order.client_order_id)
        account = self.broker.account()
        for symbol in self.symbols:
            position = account.positions.get(symbol)
            if position is None or position.quantity == 0:
                continue
            self._flatten(symbol, position.quantity, report)
        report.seconds = time.perf_counter() - started
        self.journal.append(
            [
                NewEntry(
                    self.clock.now_ms(),
                    "kill",
                    {
                        "reason": reason,
                        "cancelled": report.cancelled,
                        "flattened": report.flattened,
                        "problems": report.problems,
                        "seconds": report.seconds,
                    },
                )
            ]
        )
        self.fired = report
        return report

    def exit_symbol(self, symbol: str, reason: str) -> KillReport:
        """Force the exit of one symbol (the dashboard's per-position exit): cancel its open
        orders, then sell what is held, as :meth:`fire` does for every symbol, without
        stopping entries or journaling a ``kill`` (the caller journals the command).
        ``report.flattened`` is empty when nothing was held."""
        started = time.perf_counter()
        report = KillReport(reason=reason)
        for order in self.broker.cancel_all(symbol):
            report.cancelled.append(order.client_order_id)
        position = self.broker.account().positions.get(symbol)
        if position is not None and position.quantity != 0:
            self._flatten(symbol, position.quantity, report)
        report.seconds = time.perf_counter() - started
        return report

    def _flatten(self, symbol: str, quantity: float, report: KillReport) -> None:
        """Sell ``quantity`` (the position held) of ``symbol`` through the broker; what was
        sold goes to ``report.flattened``, what was not to ``report.problems``."""
        try:
            order = self.broker.flatten(symbol)
        except Exception as exc:  # reported; the other symbols still flatten
            report.problems.append(f"{symbol}: flatten failed: {exc}")
            return
        if order is None:
            report.problems.append(f"{symbol}: {quantity:g} left (below the minimum)")
        elif order.reason and order.status.value == "rejected":
            report.problems.append(f"{symbol}: {order.reason}")
        elif (
            order.status.is_terminal
            and order.filled_quantity < (order.quantity or quantity) - 1e-12
        ):  # ended part filled (a book too thin for the sell): say what is left
            left = quantity - order.filled_quantity
            report.flattened[symbol] = order.filled_quantity
            report.problems.append(
                f"{symbol}: {left:g} left: the flatten order ended {order.status.value} "
                f"after {order.filled_quantity:g} ({order.reason or 'no reason given'}); "
                "fire the kill switch again or sell the rest by hand"
            )
        else:
            report.flattened[symbol] = quantity
