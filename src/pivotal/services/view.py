"""The one protocol every node the API serves implements, and the services registry.

A :class:`NodeView` answers the queries and takes the commands of one node: a running paper
or live session (:mod:`pivotal.services.live_view`, in the node's own process) or a finished
run read from disk (:mod:`pivotal.services.run_view`). The API, the CLI and (through the API)
the dashboard go through :class:`Services` and never touch a store, a broker or an engine.

Errors: a query or command on bad input raises :class:`QueryError` (the API answers 422 with
its message), one for an unknown node/symbol/timeframe :class:`NotFound` (404), a command on
a read-only node :class:`ReadOnly` (409).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from pivotal.services.schemas import (
    Alert,
    Balance,
    CandlesPayload,
    ClosedTrade,
    CobPayload,
    CommandResult,
    Controls,
    DecisionRow,
    EntriesCommand,
    EquityPayload,
    FillRow,
    ForceExitCommand,
    HealthPayload,
    KillCommand,
    ModelState,
    NodeInfo,
    OrderRow,
    PositionRow,
    ProcessCommand,
    RiskPayload,
    Summary,
    ThresholdsCommand,
)

__all__ = ["NodeView", "NotFound", "QueryError", "ReadOnly", "Services"]

MAX_BARS = 5000


class QueryError(ValueError):
    """Bad query or command input; the message says what was wrong and what to send."""


class NotFound(KeyError):
    """An unknown node, symbol or timeframe; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0]) if self.args else ""


class ReadOnly(PermissionError):
    """A command sent to a node that cannot take one (a finished run)."""


@runtime_checkable
class NodeView(Protocol):
    """Queries and commands of one node. Every method is safe to call from any thread."""

    @property
    def id(self) -> str: ...

    def info(self) -> NodeInfo: ...
    def summary(self) -> Summary: ...

    # market data
    def candles(
        self, symbol: str, timeframe: str, *, limit: int = 500, since_ms: int | None = None
    ) -> CandlesPayload:
        """The newest ``limit`` candles (1..MAX_BARS) of ``symbol`` in ``timeframe``, or, with
        ``since_ms``, those whose open time is >= it (the WebSocket's incremental update),
        with the pivots confirmed by the last returned bar, the PivotCNN's latest predictions
        and the decisions and fills inside the span."""
        ...

    def cob(self, symbol: str, *, seconds: int = 300) -> CobPayload: ...

    # models and decisions
    def models(self) -> list[ModelState]: ...
    def decisions(
        self, *, symbol: str | None = None, limit: int = 200, since_ms: int | None = None
    ) -> list[DecisionRow]: ...

    # trading
    def orders(self, *, open_only: bool = False, limit: int = 500) -> list[OrderRow]: ...
    def fills(self, *, limit: int = 500, since_ms: int | None = None) -> list[FillRow]: ...
    def positions(self) -> list[PositionRow]: ...
    def balances(self) -> list[Balance]: ...
    def trades(self, *, limit: int = 500) -> list[ClosedTrade]: ...
    def equity(self, *, limit: int = 5000) -> EquityPayload: ...
    def risk(self) -> RiskPayload: ...
    def alerts(self, *, limit: int = 200, since_ms: int | None = None) -> list[Alert]: ...
    def health(self) -> HealthPayload: ...

    # controls
    def controls(self) -> Controls: ...
    def set_thresholds(self, command: ThresholdsCommand) -> CommandResult: ...
    def set_entries(self, command: EntriesCommand) -> CommandResult: ...
    def force_exit(self, command: ForceExitCommand) -> CommandResult: ...
    def kill(self, command: KillCommand) -> CommandResult: ...
    def set_process(self, command: ProcessCommand) -> CommandResult: ...


class Services:
    """The nodes one server shows, by id (a running node registers itself; finished runs are
    added when the server starts)."""

    def __init__(self, views: Iterable[NodeView] = ()) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, NodeView] = {}
        for view in views:
            self.add(view)

    def add(self, view: NodeView) -> None:
        with self._lock:
            if view.id in self._views:
                raise QueryError(f"two nodes share the id {view.id!r}; give them distinct names")
            self._views[view.id] = view

    def remove(self, node_id: str) -> None:
        with self._lock:
            self._views.pop(node_id, None)

    def nodes(self) -> list[NodeView]:
        with self._lock:
            return list(self._views.values())

    def node(self, node_id: str) -> NodeView:
        with self._lock:
            view = self._views.get(node_id)
            known = ", ".join(self._views) or "none"
        if view is None:
            raise NotFound(f"no node {node_id!r} on this server (nodes: {known})")
        return view
