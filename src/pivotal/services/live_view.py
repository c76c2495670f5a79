"""The node view of a running paper or live session, in the node's own process.

:class:`LiveNodeView` answers the API's queries without touching the trading loop's objects:

- **state** (controls, model states, risk, stream health, processes, positions, balances,
  open orders) from the node's :attr:`~pivotal.node.trading_node.TradingNode.snapshot`, an
  immutable object the node replaces whole every half second (:mod:`pivotal.node.snapshot`);
- **history** (decisions, fills, orders, alerts, equity, closed trades) from the node's order
  journal, read incrementally through a read-only connection of its own
  (:class:`~pivotal.services.live_journal.JournalTail`);
- **candles and the order book** from the node's store objects (the collected market data's
  store first, then the data dir's), shared in-process: every read goes through the store's
  own lock, and the DuckDB file is never opened a second time;
- **commands** through :class:`~pivotal.node.commands.NodeCommands`: the node applies them
  between two steps on its own thread and journals them; the caller waits (``timeout_s``) and
  gets a :class:`~pivotal.services.schemas.CommandResult` with the controls after it.

Every method is thread-safe. Times are UTC ms on the node's clock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from pivotal.core.timeframes import Timeframe
from pivotal.data.store import MarketDataStore
from pivotal.node.commands import Command, CommandOutcome, ControlState
from pivotal.node.snapshot import NodeSnapshot
from pivotal.node.trading_node import TradingNode
from pivotal.services.candles_query import SeriesCatalog, candles_payload, resolve_symbol
from pivotal.services.cob_query import cob_payload
from pivotal.services.journal_rows import balance_rows, order_row, position_rows
from pivotal.services.live_journal import JournalTail
from pivotal.services.model_rows import predictions_in_window, predictions_of_points
from pivotal.services.run_rows import closed_trades_from_fills, equity_payload, risk_metrics
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
    MarkerRow,
    ModelState,
    NodeInfo,
    OrderRow,
    PositionRow,
    ProcessCommand,
    ProcessState,
    RiskPayload,
    StreamHealth,
    Summary,
    ThresholdsCommand,
)
from pivotal.services.view import MAX_BARS, NotFound, QueryError

__all__ = ["LiveNodeView", "node_id_of"]

MAX_ROWS = 100_000
_CATALOG_EVERY_S = 5.0
_STATUS = {"starting": "running", "running": "running", "stopping": "stopping"}
_MODEL_STATES = ("ready", "warming", "disabled", "error", "unknown")


def node_id_of(text: str) -> str:
    """A URL-safe id from a name (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "node"


def _limit(value: int, name: str = "limit", top: int = MAX_ROWS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise QueryError(f"{name} must be an integer from 1 to {top}, got {value!r}")
    return value


def _since(rows: list[Any], limit: int, since_ms: int | None) -> list[Any]:
    if since_ms is not None:
        if isinstance(since_ms, bool) or not isinstance(since_ms, int):
            raise QueryError(f"since_ms must be an integer of UTC ms, got {since_ms!r}")
        rows = [r for r in rows if r.t >= since_ms]
    return rows[-limit:]


class _Stores:
    """The node's stores for candles: the collected data's store, then the data dir's; each
    with a series catalog refreshed at most every few seconds (a live store gains series).
    A store that can no longer be read (closed when its node stopped) is left out."""

    def __init__(self, stores: list[MarketDataStore]) -> None:
        self.stores = stores
        self.catalogs = [SeriesCatalog(s) for s in stores]
        self._lock = threading.Lock()
        self._fresh = [0.0] * len(stores)
        self._gone = [False] * len(stores)

    def live(self) -> list[int]:
        """The indices of the stores still readable, their catalogs refreshed when stale."""
        out = []
        for i in range(len(self.stores)):
            with self._lock:
                stale = time.monotonic() - self._fresh[i] > _CATALOG_EVERY_S
                if stale:
                    self._fresh[i] = time.monotonic()
            if stale and not self._gone[i]:
                try:
                    self.catalogs[i].refresh()
                except Exception:  # closed with its node: nothing more to read there
                    self._gone[i] = True
            if not self._gone[i]:
                out.append(i)
        return out

    def symbols(self, exchange: str) -> set[str]:
        return {s for i in self.live() for s in self.catalogs[i].symbols(exchange)}

    def timeframes(self, exchange: str, symbols: list[str]) -> list[str]:
        found = {
            s.timeframe
            for i in self.live()
            for s in self.catalogs[i].spans(exchange)
            if s.symbol in symbols
        }
        return sorted(found, key=lambda tf: Timeframe.parse(tf).ms)

    def older_than(self, i: int) -> tuple[MarketDataStore, SeriesCatalog] | None:
        """The next readable store after ``i`` (the data dir's after the collected one)."""
        for j in self.live():
            if j > i:
                return self.stores[j], self.catalogs[j]
        return None

    def holding(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """The first store with ``symbol`` in ``timeframe`` (None: none has it)."""
        try:
            value = Timeframe.parse(timeframe).value
        except ValueError:
            return None
        for i in self.live():
            if self.catalogs[i].span(exchange, symbol, value) is not None:
                return i
        return None


class LiveNodeView:
    """The :class:`~pivotal.services.view.NodeView` of a running node (module docstring).
    ``node_id``: the id in URLs (default: from the journal's name); ``timeout_s``: how long a
    command waits for the node's loop; ``on_command``: called with every command's result
    (the API pushes it to its WebSocket clients)."""

    def __init__(
        self,
        node: TradingNode,
        *,
        node_id: str | None = None,
        name: str | None = None,
        timeout_s: float = 10.0,
        on_command: Callable[[CommandResult], None] | None = None,
    ) -> None:
        self.node = node
        label = node.journal_path.name.removesuffix(".journal")
        self._name = name or label
        self._id = node_id_of(node_id or label)
        self.timeout_s = timeout_s
        self.listeners: list[Callable[[CommandResult], None]] = []
        if on_command is not None:
            self.listeners.append(on_command)
        self.tail = JournalTail(node.journal_path)
        collected = node.market.store
        stores = [collected] if collected is node.store else [collected, node.store]
        self.stores = _Stores(stores)
        self._candles_memo: dict[tuple[Any, ...], CandlesPayload] = {}
        self.exchange = node.run_config.exchange

    @property
    def id(self) -> str:
        return self._id

    @property
    def snap(self) -> NodeSnapshot:
        return self.node.snapshot  # one reference: the node replaces it whole

    def close(self) -> None:
        self.tail.close()

    def _rows(self) -> dict[str, Any]:
        self.tail.update()
        return self.tail.snapshot()

    # -- nodes ---------------------------------------------------------------------------
    def info(self) -> NodeInfo:
        snap = self.snap
        rows = self._rows()
        return NodeInfo(
            id=self._id,
            name=self._name,
            kind="live" if snap.mode == "live" else "paper",
            status=_STATUS.get(snap.status, "stopped"),  # type: ignore[arg-type]
            exchange=snap.venue,
            symbols=list(snap.symbols),
            timeframes=self.stores.timeframes(self.exchange, list(snap.symbols))
            or list(snap.timeframes),
            read_only=snap.status == "stopped",
            source=str(self.node.journal_path),
            started_ms=snap.started_ms if snap.started_ms is not None else rows["first_ms"],
            last_ms=snap.t_ms,
        )

    def summary(self) -> Summary:
        snap = self.snap
        rows = self._rows()
        account = snap.account
        metrics = risk_metrics(rows["equity_t"], rows["equity_v"])
        start = float(rows["equity_v"][0]) if len(rows["equity_v"]) else None
        equity = account.equity if account is not None else metrics.get("equity")
        pnl = (equity - start) if equity is not None and start is not None else 0.0
        trades = closed_trades_from_fills(rows["fills"], start or 0.0)
        wins = sum(1 for t in trades if t.pnl > 0)
        return Summary(
            node=self._id,
            currency=account.currency if account is not None else "USDT",
            balance=float(account.cash) if account is not None else float(equity or 0.0),
            equity=None if equity is None else float(equity),
            pnl=float(pnl),
            pnl_pct=float(pnl / start * 100.0) if start else None,
            drawdown_pct=metrics.get("drawdown_pct"),
            max_drawdown_pct=metrics.get("max_drawdown_pct"),
            closed_trades=len(trades),
            win_rate=wins / len(trades) if trades else None,
            open_positions=len(self.positions()),
            open_orders=len(snap.open_orders),
            last_ms=snap.t_ms,
            entries_stopped=snap.controls.entries_stopped,
            killed=snap.controls.killed,
        )

    # -- market data ---------------------------------------------------------------------
    def candles(
        self, symbol: str, timeframe: str, *, limit: int = 500, since_ms: int | None = None
    ) -> CandlesPayload:
        _limit(limit, top=MAX_BARS)
        name = resolve_symbol(symbol, set(self.snap.symbols) | self.stores.symbols(self.exchange))
        i = self.stores.holding(self.exchange, name, timeframe)
        if i is None:
            known = self.stores.timeframes(self.exchange, [name])
            raise NotFound(
                f"no {timeframe!r} candles of {name} on this node yet (timeframes: "
                f"{', '.join(known) or 'none'})"
            )
        rows = self._rows()
        markers = self._markers(name, rows)
        collected = self.stores.stores[i] is self.node.market.store
        # a store may hold bars the node's market has not reached (a local replay's data dir;
        # an earlier run's collected bars): only those closed by the node's time; the
        # collected bars are preceded by the data dir's older ones when they are few
        older = self.stores.older_than(i) if collected else None
        payload = candles_payload(
            self.stores.stores[i],
            self.exchange,
            name,
            timeframe,
            limit=limit,
            since_ms=since_ms,
            node_id=self._id,
            markers=markers,
            catalog=self.stores.catalogs[i],
            until_ms=self.snap.t_ms,
            history=older,
            memo=self._candles_memo,
        )
        predictions = [
            p
            for m in self.snap.models
            if m.symbol == name and m.pivot_points and m.t is not None
            for p in predictions_of_points(
                m.pivot_points, m.confidence, m.t, payload.pivots, model=m.name
            )
        ]
        predictions = predictions_in_window(
            predictions, payload.bars.t, Timeframe.parse(payload.timeframe).ms
        )
        if predictions:
            payload = payload.model_copy(update={"predictions": predictions})
        return payload

    def _markers(self, symbol: str, rows: dict[str, Any]) -> list[MarkerRow]:
        markers = [
            MarkerRow.model_construct(
                t=f.t,
                kind="fill",
                side="buy" if f.side == "buy" else "sell",
                price=f.price,
                confidence=None,
                quantity=f.quantity,
                label=f"{f.side} {f.quantity:g} @ {f.price:g}",
            )
            for f in rows["fills"][-5_000:]
            if f.symbol == symbol
        ]
        markers += [
            MarkerRow.model_construct(
                t=d.t,
                kind="decision",
                side=d.action,
                price=None,
                confidence=d.confidence,
                quantity=None,
                label=d.reason[:120],
            )
            for d in rows["decisions"][-5_000:]
            if d.symbol == symbol and d.action in ("buy", "sell", "close")
        ]
        markers.sort(key=lambda m: m.t)
        return markers

    def cob(self, symbol: str, *, seconds: int = 300) -> CobPayload:
        if 0 not in self.stores.live():
            raise QueryError(
                f"node {self._id!r} has stopped and its collected order book store is closed; "
                "serve its data dir (pivotal serve --data-dir) to see its history"
            )
        store = self.stores.stores[0]
        known = {s for _, s, *_ in store.cob_symbols()} | set(self.snap.symbols)
        name = resolve_symbol(symbol, known)
        return cob_payload(store, self.exchange, name, seconds=seconds, node_id=self._id)

    # -- models and decisions ------------------------------------------------------------
    def models(self) -> list[ModelState]:
        return [
            ModelState(
                name=m.name,
                symbol=m.symbol,
                state=m.state if m.state in _MODEL_STATES else "unknown",  # type: ignore[arg-type]
                t=m.t,
                action=m.action,
                confidence=m.confidence,
                output=dict(m.output),
                accuracy=m.accuracy,
                accuracy_n=m.accuracy_n,
                gate_weight=m.gate_weight,
                version=m.version,
                error=m.error,
            )
            for m in self.snap.models
        ]

    def decisions(
        self, *, symbol: str | None = None, limit: int = 200, since_ms: int | None = None
    ) -> list[DecisionRow]:
        _limit(limit)
        rows: list[DecisionRow] = self._rows()["decisions"]
        if symbol is not None:
            name = resolve_symbol(symbol, self.snap.symbols)
            rows = [d for d in rows if d.symbol == name]
        return _since(rows, limit, since_ms)

    # -- trading -------------------------------------------------------------------------
    def orders(self, *, open_only: bool = False, limit: int = 500) -> list[OrderRow]:
        _limit(limit)
        if open_only:  # the broker's own list, as of the snapshot
            return [order_row(o) for o in self.snap.open_orders][-limit:]
        rows: list[OrderRow] = self._rows()["orders"]
        return rows[-limit:]

    def fills(self, *, limit: int = 500, since_ms: int | None = None) -> list[FillRow]:
        _limit(limit)
        return _since(self._rows()["fills"], limit, since_ms)

    def positions(self) -> list[PositionRow]:
        account = self.snap.account
        return [] if account is None else position_rows(account.positions)

    def balances(self) -> list[Balance]:
        account = self.snap.account
        if account is None:
            return []
        quote = account.currency
        totals = {quote: float(account.cash)}
        for p in account.positions.values():
            if not p.is_flat:
                base = p.symbol.split("/")[0]
                totals[base] = totals.get(base, 0.0) + float(p.quantity)
        locked = {quote: max(0.0, float(account.cash) - float(account.available))}
        return balance_rows(totals, locked)

    def trades(self, *, limit: int = 500) -> list[ClosedTrade]:
        _limit(limit)
        rows = self._rows()
        start = float(rows["equity_v"][0]) if len(rows["equity_v"]) else 0.0
        return closed_trades_from_fills(rows["fills"], start)[-limit:]

    def equity(self, *, limit: int = 5000) -> EquityPayload:
        _limit(limit)
        rows = self._rows()
        return equity_payload(self._id, rows["equity_t"], rows["equity_v"], limit)

    def risk(self) -> RiskPayload:
        snap = self.snap
        rows = self._rows()
        metrics = dict(risk_metrics(rows["equity_t"], rows["equity_v"]))
        limits: dict[str, float | None] = {}
        breaker = None
        if snap.risk is not None:
            metrics.update(snap.risk.metrics)
            limits = dict(snap.risk.limits)
            breaker = snap.risk.breaker
        if snap.controls.killed and breaker is None:
            breaker = "killed"
        return RiskPayload(
            node=self._id,
            metrics=metrics,
            limits=limits,
            entries_stopped=snap.controls.entries_stopped,
            breaker=breaker,
        )

    def alerts(self, *, limit: int = 200, since_ms: int | None = None) -> list[Alert]:
        _limit(limit)
        return _since(self._rows()["alerts"], limit, since_ms)

    def health(self) -> HealthPayload:
        snap = self.snap
        streams = [
            StreamHealth(
                venue=str(r.get("exchange") or snap.venue),
                symbol=str(r.get("symbol", "")),
                channel=str(r.get("channel", "")),
                state=str(r.get("state", "unknown")),
                messages=int(r.get("messages") or 0),
                lag_ms=r.get("lag_p50_ms"),
                gaps=int(r.get("gaps") or 0),
                resyncs=int(r.get("resyncs") or 0),
                reconnects=int(r.get("reconnects") or 0),
                rate_limited=int(r.get("rate_limited") or 0),
                last_error=r.get("last_error"),
            )
            for r in snap.streams
        ]
        processes = {
            name: ProcessState(enabled=p.enabled, state=p.state, detail=p.detail)
            for name, p in snap.processes.items()
        }
        errors = [a for a in self._rows()["alerts"] if a.level in ("error", "critical")][-50:]
        return HealthPayload(node=self._id, streams=streams, processes=processes, errors=errors)

    # -- controls ------------------------------------------------------------------------
    def _controls(self, state: ControlState, status: str) -> Controls:
        return Controls(
            node=self._id,
            buy_threshold=state.buy_threshold,
            sell_threshold=state.sell_threshold,
            min_confidence=state.min_confidence,
            entries_stopped=state.entries_stopped,
            processes=dict(state.processes),
            killed=state.killed,
            read_only=status == "stopped",
        )

    def controls(self) -> Controls:
        snap = self.snap
        return self._controls(snap.controls, snap.status)

    def _send(self, api_name: str, name: str, args: dict[str, Any]) -> CommandResult:
        outcome: CommandOutcome = self.node.commands.submit(
            Command(name, args, source="api"), self.timeout_s
        )
        controls = None if outcome.controls is None else self._controls(outcome.controls, "")
        result = CommandResult(
            node=self._id,
            command=api_name,
            accepted=outcome.accepted,
            detail=outcome.detail,
            applied_ms=outcome.applied_ms,
            controls=controls if controls is not None else self.controls(),
        )
        for listener in list(self.listeners):
            try:
                listener(result)
            except Exception:  # a listener's fault is not the command's
                continue
        return result

    def set_thresholds(self, command: ThresholdsCommand) -> CommandResult:
        return self._send("thresholds", "thresholds", command.model_dump(exclude_none=True))

    def set_entries(self, command: EntriesCommand) -> CommandResult:
        return self._send("entries", "entries", {"stopped": command.stopped})

    def force_exit(self, command: ForceExitCommand) -> CommandResult:
        return self._send("force-exit", "force_exit", {"symbol": command.symbol})

    def kill(self, command: KillCommand) -> CommandResult:
        if command.confirm is not True:
            raise QueryError("the kill switch needs confirm: true (it flattens everything)")
        return self._send("kill", "kill", {"reason": command.reason})

    def set_process(self, command: ProcessCommand) -> CommandResult:
        return self._send(
            "process", "process", {"process": command.process, "enabled": command.enabled}
        )
