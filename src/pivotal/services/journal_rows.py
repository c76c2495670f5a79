"""A paper or live session's order journal as the API's rows.

:func:`records_from_session` reads a session journal (:class:`~pivotal.data.order_journal.
SqliteOrderJournal`, opened read-only by the caller) into :class:`~pivotal.services.run_rows.
RunRecords`: orders, fills, balances and positions from the journal's rebuilt state
(:class:`~pivotal.trading.journal_state.JournalState`), the equity curve of its ``equity``
entries, decisions of its ``decision`` entries, alerts of its ``alert``, ``kill`` and
unresolved ``reconcile`` entries, and the last applied ``command`` results (thresholds, stop
entries). The row helpers (:func:`order_row`, :func:`position_rows`, :func:`balance_rows`)
are shared with the live view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pivotal.core.journal import JournalEntry, fill_to_dict
from pivotal.core.orders import Order, PositionSnapshot
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.services.run_rows import (
    RunRecords,
    closed_trades_from_fills,
    decision_row,
    fill_row,
)
from pivotal.services.schemas import Alert, Balance, DecisionRow, OrderRow, PositionRow
from pivotal.trading.journal_state import JournalState

__all__ = [
    "alert_of_entry",
    "balance_rows",
    "decision_of_entry",
    "order_row",
    "position_rows",
    "records_from_session",
]


def order_row(order: Order) -> OrderRow:
    """An order (its request, status and fills so far) as a row."""
    request = order.request
    return OrderRow.model_construct(
        client_order_id=order.client_order_id,
        symbol=request.symbol,
        side=str(request.side),
        type=str(request.type),
        status=str(order.status),
        quantity=float(order.quantity if order.quantity is not None else request.quantity or 0.0),
        filled=float(order.filled_quantity),
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        average_price=order.average_fill_price,
        created_ms=order.created_ms,
        updated_ms=order.updated_ms,
        reason=order.reason or request.tag or "",
    )


def position_rows(positions: Mapping[str, PositionSnapshot]) -> list[PositionRow]:
    """Non-flat positions as rows (value at the mark, quote currency)."""
    return [
        PositionRow.model_construct(
            symbol=p.symbol,
            quantity=p.quantity,
            entry_price=p.average_entry_price or None,
            mark_price=p.mark_price or None,
            value=p.quantity * p.mark_price,
            unrealized_pnl=p.unrealized_pnl,
        )
        for p in positions.values()
        if not p.is_flat
    ]


def balance_rows(
    balances: Mapping[str, float], locked: Mapping[str, float] | None = None
) -> list[Balance]:
    """Asset totals (free = total - locked) as rows, skipping dust."""
    locked = locked or {}
    out = []
    for asset, total in sorted(balances.items()):
        if abs(total) < 1e-12:
            continue
        held = float(locked.get(asset, 0.0))
        out.append(
            Balance.model_construct(
                asset=asset, free=float(total) - held, locked=held, total=float(total)
            )
        )
    return out


def alert_of_entry(entry: JournalEntry) -> Alert | None:
    """An ``alert``, ``kill``, ``reconcile`` (unresolved), ``session`` (start/stop) or
    ``command`` (result) entry as an alert; None for the others."""
    data = entry.data
    if entry.kind == "alert":
        level = (
            data.get("level")
            if data.get("level") in ("info", "warning", "error", "critical")
            else "warning"
        )
        record = data.get("record") or {}
        kind = str(record.get("kind") or "alert")
        return Alert.model_construct(
            t=entry.ts, level=level, kind=kind, message=_with_symbol(entry, data.get("message", ""))
        )
    if entry.kind == "kill":
        return Alert.model_construct(
            t=entry.ts,
            level="critical",
            kind="kill",
            message=(
                f"kill switch: {data.get('reason', '')} (cancelled {data.get('cancelled', 0)}, "
                f"flattened {data.get('flattened', 0)})"
            ),
        )
    if entry.kind == "reconcile":
        level = "info" if data.get("resolved", True) else "error"
        return Alert.model_construct(
            t=entry.ts, level=level, kind="reconcile", message=str(data.get("message", ""))
        )
    if entry.kind == "session":
        event = data.get("event", "")
        detail = data.get("reason") or data.get("mode") or ""
        return Alert.model_construct(
            t=entry.ts,
            level="info",
            kind=f"session_{event}",
            message=f"session {event} {detail}".strip(),
        )
    if entry.kind == "command" and data.get("phase") == "result":
        level = "info" if data.get("accepted") else "warning"
        return Alert.model_construct(
            t=entry.ts,
            level=level,
            kind="command",
            message=f"{data.get('command', '')}: {data.get('detail', '')}",
        )
    return None


def records_from_session(
    journal: SqliteOrderJournal, *, name: str, quote: str = "USDT"
) -> RunRecords:
    """Everything the session journal holds as :class:`RunRecords` (module docstring)."""
    entries = list(journal.entries())
    state = JournalState.rebuild(entries, quote=quote)
    marks = [e for e in entries if e.kind == "session"]
    meta: Mapping[str, Any] = marks[0].data if marks else {}
    mode = str(meta.get("mode") or "paper")
    decisions = []
    alerts = []
    thresholds: dict[str, float | None] = {}
    entries_stopped = False
    killed = False
    for entry in entries:
        if entry.kind == "decision":
            row = decision_of_entry(entry)
            if row is not None:
                decisions.append(row)
        elif entry.kind == "kill":
            killed = True
        elif entry.kind == "command" and entry.data.get("accepted"):
            command, args = _command_of(entries, entry)
            if command == "thresholds":
                thresholds.update({k: v for k, v in args.items() if v is not None})
            elif command == "entries":
                entries_stopped = bool(args.get("stopped"))
        alert = alert_of_entry(entry)
        if alert is not None:
            alerts.append(alert)
    fills = sorted(
        (r for r in (fill_row(fill_to_dict(f)) for f in state.fills()) if r is not None),
        key=lambda f: f.t,
    )
    curve = state.equity_curve
    positions = state.positions()
    symbols = [str(s) for s in meta.get("symbols") or sorted({f.symbol for f in fills})]
    first_equity = curve[0][1] if curve else None
    return RunRecords(
        name=name,
        kind="live" if mode == "live" else "paper",
        source=str(journal.path),
        exchange=str(meta.get("venue") or "binance"),
        symbols=symbols,
        currency=quote,
        initial_cash=first_equity,
        equity_t=np.array([t for t, _ in curve], np.int64),
        equity_v=np.array([v for _, v in curve], np.float64),
        decisions=decisions,
        fills=fills,
        orders=[order_row(o) for o in state.orders()],
        trades=closed_trades_from_fills(fills, first_equity or 0.0),
        positions=position_rows(positions),
        balances=balance_rows(state.balances, {quote: state.locked_quote()}),
        alerts=alerts,
        thresholds=thresholds,
        entries_stopped=entries_stopped,
        killed=killed,
        started_ms=entries[0].ts if entries else None,
        last_ms=entries[-1].ts if entries else None,
    )


def _command_of(
    entries: Iterable[JournalEntry], result: JournalEntry
) -> tuple[str, dict[str, Any]]:
    """The command and arguments of a ``command`` result entry (its own, else its request's)."""
    data = result.data
    if "args" in data:
        return str(data.get("command", "")), dict(data.get("args") or {})
    request = None
    for entry in entries:
        if entry.seq >= result.seq:
            break
        if (
            entry.kind == "command"
            and entry.data.get("phase") == "request"
            and entry.data.get("command") == data.get("command")
        ):
            request = entry
    args = dict(request.data.get("args") or {}) if request is not None else {}
    return str(data.get("command", "")), args


def _with_symbol(entry: JournalEntry, message: str) -> str:
    return f"{entry.symbol}: {message}" if entry.symbol else str(message)


def decision_of_entry(entry: JournalEntry) -> DecisionRow | None:
    """A ``decision`` entry as a row: the orchestrator's decision when noted, else the
    kernel's record (module docstring)."""
    data: dict[str, Any] = dict(entry.data)
    noted = data.pop("model_decision", None)
    actions = data.get("actions")
    trading = data.pop("trading", None)
    record: dict[str, Any] = {**data, **(noted if isinstance(noted, Mapping) else {})}
    record["timestamp"] = entry.ts
    record.setdefault("symbol", entry.symbol)
    if isinstance(trading, bool) and isinstance(actions, int):
        record["executed"] = None if actions == 0 else trading
    return decision_row(record)
