"""A run's records as the API's rows: decisions, fills, closed trades, equity, risk, alerts.

:class:`RunRecords` is everything a finished run left, already in the API's shapes, built by
:func:`records_from_run_journal` (a run in the run journal: a pushed replay) or
:func:`records_from_report` (a report JSON that ``pivotal run`` / ``pivotal backtest``
wrote, format ``pivotal-run`` or ``pivotal-backtest``); the session journal's builder is
:func:`pivotal.services.journal_rows.records_from_session`. The row helpers (one record in,
one row out) are shared with the live view.

Times are UTC ms; money in the quote currency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pivotal.core.errors import DataError
from pivotal.core.orders import Fill, Liquidity, OrderSide
from pivotal.data.run_journal_read import RunJournalReader
from pivotal.orchestrator.config import GateConfig
from pivotal.services.schemas import (
    Alert,
    Balance,
    ClosedTrade,
    DecisionRow,
    EquityPayload,
    FillRow,
    OrderRow,
    PositionRow,
)
from pivotal.trading.portfolio import Portfolio

__all__ = [
    "RunRecords",
    "alert_of_record",
    "closed_trades_from_fills",
    "decision_row",
    "drawdown_pct",
    "equity_payload",
    "fill_row",
    "records_from_report",
    "records_from_run_journal",
    "risk_metrics",
    "run_file_settings",
    "run_limits",
    "run_thresholds",
]

DUST_SHARE = 0.01
"""An exit leaving less than this share of a position closes the round trip."""
_ERROR_KINDS = ("risk_circuit_breaker", "risk_kill", "failure", "isolated", "error")
_WARNING_KINDS = ("risk_", "degradation", "rolled_back", "late_bar", "gap")


@dataclass(slots=True)
class RunRecords:
    """What a finished run left, in the API's shapes (module docstring). ``equity_t`` /
    ``equity_v``: the equity curve (UTC ms, quote currency); ``thresholds``: the gate's
    ``buy_threshold``, ``sell_threshold``, ``min_confidence`` when known; ``model_events``:
    the learning events (promoted, rolled_back, degradation ...) as recorded."""

    name: str
    kind: str  # backtest | paper | live
    source: str
    exchange: str
    symbols: list[str]
    timeframe: str | None = None
    currency: str = "USDT"
    initial_cash: float | None = None
    equity_t: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    equity_v: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    decisions: list[DecisionRow] = field(default_factory=list)
    fills: list[FillRow] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    trades: list[ClosedTrade] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    balances: list[Balance] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    model_events: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    limits: dict[str, float | None] = field(default_factory=dict)
    entries_stopped: bool = False
    killed: bool = False
    started_ms: int | None = None
    last_ms: int | None = None


# -- one record -> one row -------------------------------------------------------------------
def decision_row(record: Mapping[str, Any]) -> DecisionRow | None:
    """A decision record as a row: the orchestrator's (``model_decision``, with
    probabilities and each model's contribution), a report's flattened one (``p_buy``,
    ``w_<model>``), or the kernel's (``actions``: how many actions it returned). None for a
    record without a time or symbol."""
    t = _int(record.get("timestamp", record.get("time")))
    symbol = record.get("symbol")
    if t is None or not isinstance(symbol, str):
        return None
    probs = record.get("probabilities")
    p_buy, p_sell, p_hold = (
        (record.get("p_buy"), record.get("p_sell"), record.get("p_hold"))
        if not isinstance(probs, list | tuple) or len(probs) != 3
        else probs
    )
    weights: dict[str, float] = {}
    for c in record.get("contributions") or ():
        if isinstance(c, list | tuple) and len(c) >= 4:
            weights[str(c[0])] = float(c[3])
        elif isinstance(c, Mapping) and "model" in c:
            weights[str(c["model"])] = float(c.get("weight", 0.0))
    for key, value in record.items():
        if key.startswith("w_") and _num(value) is not None:
            weights[key[2:]] = float(value)
    action = record.get("action")
    if action is None and "actions" in record:  # the kernel's record of a call
        n = _int(record.get("actions")) or 0
        action = "hold" if n == 0 else f"{n} action{'s' if n > 1 else ''}"
    executed = record.get("executed")
    return DecisionRow.model_construct(
        t=t,
        symbol=symbol,
        action=str(action or "").lower(),
        confidence=_num(record.get("confidence")),
        p_buy=_num(p_buy),
        p_sell=_num(p_sell),
        p_hold=_num(p_hold),
        executed=executed if isinstance(executed, bool) else None,
        reason=str(record.get("reason") or record.get("source") or ""),
        weights=weights,
    )


def fill_row(record: Mapping[str, Any]) -> FillRow | None:
    """A fill record (the kernel's ``kind: fill`` record, or :func:`pivotal.core.journal.
    fill_to_dict`'s) as a row; None when it lacks a time, price or quantity."""
    t = _int(record.get("timestamp"))
    price, qty = _num(record.get("price")), _num(record.get("quantity"))
    if t is None or price is None or qty is None:
        return None
    trade_id = record.get("venue_trade_id")
    return FillRow.model_construct(
        t=t,
        symbol=str(record.get("symbol", "")),
        side=str(record.get("side", "")).lower(),
        price=price,
        quantity=qty,
        fee=_num(record.get("fee")) or 0.0,
        fee_asset=record.get("fee_asset"),
        client_order_id=record.get("client_order_id"),
        trade_id=None if trade_id is None else str(trade_id),
    )


def alert_of_record(record: Mapping[str, Any]) -> Alert | None:
    """An event record worth showing as an alert (risk alerts, refusals, learning events,
    failures), with a level from its kind; None for order changes and fills."""
    kind = str(record.get("kind", ""))
    t = _int(record.get("timestamp"))
    if t is None or kind in ("order", "fill", "decision"):
        return None
    level = record.get("level")
    if level not in ("info", "warning", "error", "critical"):
        if kind.startswith(_ERROR_KINDS):
            level = "error"
        elif kind.startswith(_WARNING_KINDS) or "refused" in kind:
            level = "warning"
        else:
            level = "info"
    symbol = record.get("symbol")
    model = record.get("model")
    who = " ".join(str(x) for x in (symbol, model) if isinstance(x, str))
    message = str(record.get("message", ""))
    return Alert.model_construct(
        t=t, level=level, kind=kind, message=f"{who}: {message}" if who else message
    )


# -- whole runs ------------------------------------------------------------------------------
def closed_trades_from_fills(
    fills: Sequence[FillRow], initial_cash: float = 0.0
) -> list[ClosedTrade]:
    """Round trips from fills in time order (the :class:`~pivotal.trading.portfolio.Portfolio`
    booking: position-target fills, partial exits, flips). An exit that leaves less than
    :data:`DUST_SHARE` of the position (a spot fee taken in the base asset, lot-step
    rounding) closes it."""
    portfolio = Portfolio(max(initial_cash, 1.0))
    held: dict[str, float] = {}
    for i, f in enumerate(sorted(fills, key=lambda f: f.t)):
        try:
            side = OrderSide(f.side)
        except ValueError:
            continue
        position = held.get(f.symbol, 0.0)
        quantity = f.quantity
        if position and (position > 0) != (side.sign > 0):
            rest = abs(position) - quantity
            if 0 < rest <= DUST_SHARE * abs(position):
                quantity = abs(position)
        held[f.symbol] = position + side.sign * quantity
        portfolio.apply_fill(
            Fill(
                order_id=f.client_order_id or f"fill-{i}",
                client_order_id=f.client_order_id or f"fill-{i}",
                symbol=f.symbol,
                side=side,
                quantity=quantity,
                price=f.price,
                fee=f.fee,
                liquidity=Liquidity.TAKER,
                timestamp=f.t,
            ),
            i,
        )
    return trades_of_frame(portfolio.closed_trades().to_dict(orient="records"))


def trades_of_frame(rows: Iterable[Mapping[str, Any]]) -> list[ClosedTrade]:
    """Trade-table rows (the backtest's ``entry_time``/``exit_time`` ms, ``size``, ``pnl``,
    ``fees``, ``return_pct``; a report's ``entry_time_ms``...) as :class:`ClosedTrade`."""
    out = []
    for r in rows:
        entry = _int(r.get("entry_time_ms", r.get("entry_time")))
        exit_ = _int(r.get("exit_time_ms", r.get("exit_time")))
        if entry is None or exit_ is None or exit_ < 0:
            continue
        out.append(
            ClosedTrade.model_construct(
                symbol=str(r["symbol"]),
                side="short" if str(r.get("side")) == "short" else "long",
                quantity=float(r.get("size", r.get("quantity", 0.0))),
                entry_t=entry,
                exit_t=exit_,
                entry_price=float(r["entry_price"]),
                exit_price=float(r["exit_price"]),
                pnl=float(r["pnl"]),
                pnl_pct=_num(r.get("return_pct")),
                fees=float(r.get("fees", 0.0)),
            )
        )
    return out


def drawdown_pct(equity: np.ndarray) -> np.ndarray:
    """Drawdown from the running peak, in % (0 at a peak, negative below it)."""
    if not len(equity):
        return np.empty(0, np.float64)
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (equity / peak - 1.0) * 100.0, 0.0)
    return dd


def equity_payload(node: str, t: np.ndarray, v: np.ndarray, limit: int) -> EquityPayload:
    """The equity curve and its drawdown; more than ``limit`` points are thinned evenly (the
    last point always kept; drawdown computed on the full curve first)."""
    dd = drawdown_pct(v)
    if len(t) > limit > 0:
        idx = np.unique(np.linspace(0, len(t) - 1, limit).round().astype(np.int64))
        t, v, dd = t[idx], v[idx], dd[idx]
    return EquityPayload.model_construct(
        node=node, t=t.tolist(), equity=v.tolist(), drawdown_pct=dd.tolist()
    )


def risk_metrics(
    t: np.ndarray, v: np.ndarray, *, day_ms: int = 86_400_000
) -> dict[str, float | None]:
    """Metrics of an equity curve: current and max drawdown (%), total return (%), the last
    UTC day's PnL, the volatility of per-point returns (%) and a 95 % historical VaR of one
    point's return (% of equity, positive = loss)."""
    if not len(v):
        return {"equity": None, "drawdown_pct": None, "max_drawdown_pct": None}
    dd = drawdown_pct(v)
    returns = np.diff(v) / v[:-1] if len(v) > 1 else np.empty(0)
    returns = returns[np.isfinite(returns)]
    day_start = (int(t[-1]) // day_ms) * day_ms
    before = np.searchsorted(t, day_start, side="left")
    base = float(v[before - 1]) if before > 0 else float(v[0])
    return {
        "equity": float(v[-1]),
        "peak_equity": float(np.max(v)),
        "drawdown_pct": float(dd[-1]),
        "max_drawdown_pct": float(np.min(dd)),
        "total_return_pct": float((v[-1] / v[0] - 1.0) * 100.0) if v[0] else None,
        "daily_pnl": float(v[-1]) - base,
        "volatility_pct": float(np.std(returns) * 100.0) if len(returns) > 1 else None,
        "var_95_pct": float(-np.quantile(returns, 0.05) * 100.0) if len(returns) > 20 else None,
    }


def records_from_run_journal(reader: RunJournalReader, run_id: str, *, exchange: str) -> RunRecords:
    """A run of the run journal (equity, decisions, events, fills) as :class:`RunRecords`;
    closed trades are rebuilt from its fills. ``exchange``: the market store's exchange (the
    journal's meta does not record one)."""
    info = reader.run(run_id)
    meta = dict(info.meta)
    eq = reader.equity_frame(run_id)
    decisions = reader.decisions_frame(run_id)
    events = reader.events_frame(run_id)
    fills_frame = reader.fills_frame(run_id)
    rows = [r for r in _rows(decisions)]
    model_rows = [r for r in rows if r.get("kind") == "model_decision"]
    decision_rows = _dedupe([decision_row(r) for r in (model_rows or rows)])
    fills = _dedupe([fill_row(r) for r in _rows(fills_frame)])
    event_rows = list(_rows(events))
    v = eq["equity"].to_numpy()
    rec = RunRecords(
        name=str(meta.get("name") or run_id),
        kind="backtest",
        source=f"run journal: {run_id}",
        exchange=str(meta.get("exchange") or exchange),
        symbols=[str(s) for s in meta.get("symbols") or sorted({d.symbol for d in decision_rows})],
        timeframe=meta.get("timeframe"),
        initial_cash=float(v[0]) if len(v) else None,
        equity_t=eq["timestamp"].to_numpy(),
        equity_v=v,
        decisions=decision_rows,
        fills=fills,
        alerts=_dedupe([alert_of_record(r) for r in event_rows]),
        model_events=[r for r in event_rows if "model" in r],
        thresholds=run_thresholds(meta),
        started_ms=info.first,
        last_ms=info.last,
    )
    rec.trades = closed_trades_from_fills(fills, rec.initial_cash or 0.0)
    return rec


def records_from_report(path: Path) -> RunRecords:
    """A report JSON (``pivotal-run``: an orchestrated run; ``pivotal-backtest``: a
    strategy backtest) as :class:`RunRecords`. A report keeps no equity curve, so the curve is
    the equity after each closed trade (initial cash + cumulative net PnL), exact at those
    times, ending at the report's final equity. ``DataError`` for a file that is not such a
    report."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the report {path}: {exc}") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt not in ("pivotal-run", "pivotal-backtest"):
        raise DataError(
            f"{path} is not a pivotal report (format {fmt!r}); give a report JSON that "
            "`pivotal run --json` or `pivotal backtest` wrote, a session journal or a run id"
        )
    run = data.get("run") or {} if fmt == "pivotal-run" else {}
    result = data.get("result") if fmt == "pivotal-run" else data
    settings = result.get("settings") or {}
    trades = trades_of_frame(result.get("trades") or [])
    initial = float(result.get("initial_cash") or 0.0)
    metrics = result.get("metrics") or {}
    t0 = _int(metrics.get("start"))
    t = np.array(([t0] if t0 is not None else []) + [x.exit_t for x in trades], np.int64)
    pnl = np.cumsum([0.0] * (t0 is not None) + [x.pnl for x in trades])
    v = initial + pnl
    # the run's last point is its final equity (open positions marked, every fee paid), which
    # the closed trades alone do not give
    final = _num(result.get("final_equity"))
    equity = result.get("equity")
    end = _int(metrics.get("end"))
    if end is None and isinstance(equity, dict):
        end = _int(equity.get("last_time_ms"))
    if final is not None and end is not None and (not len(t) or end >= int(t.max())):
        t, v = np.append(t, end), np.append(v, final)
    order = np.argsort(t, kind="stable")
    events = list(data.get("events") or [])
    decisions = _dedupe([decision_row(r) for r in data.get("decisions") or []])
    broker = settings.get("broker") or {}
    rec = RunRecords(
        name=path.stem,
        kind="backtest",
        source=str(path),
        exchange=str(run.get("exchange") or settings.get("exchange") or "binance"),
        symbols=[str(s) for s in run.get("symbols") or settings.get("symbols") or []],
        timeframe=run.get("timeframe") or settings.get("timeframe"),
        currency=str(broker.get("currency") or "USDT"),
        initial_cash=initial,
        equity_t=t[order],
        equity_v=v[order],
        decisions=decisions,
        trades=trades,
        alerts=_dedupe([alert_of_record(r) for r in events]),
        model_events=[r for r in events if "model" in r],
        thresholds=run_thresholds(run),
        limits=run_limits((run.get("settings") or settings).get("risk") or {}),
        started_ms=t0,
        last_ms=_int(metrics.get("end")),
    )
    for open_trade in result.get("open_trades") or []:
        rec.positions.append(
            PositionRow.model_construct(
                symbol=str(open_trade["symbol"]),
                quantity=float(open_trade.get("size", 0.0))
                * (-1.0 if open_trade.get("side") == "short" else 1.0),
                entry_price=_num(open_trade.get("entry_price")),
                mark_price=None,
                value=None,
                unrealized_pnl=_num(open_trade.get("pnl")),
            )
        )
    final = _num(result.get("final_equity"))
    if final is not None:
        rec.balances = [
            Balance.model_construct(asset=rec.currency, free=final, locked=0.0, total=final)
        ]
    return rec


# -- helpers ---------------------------------------------------------------------------------
def run_thresholds(run: Mapping[str, Any]) -> dict[str, float | None]:
    """The gate's thresholds of a run file / report ``run`` section (``orchestrator.gate``),
    the gate's defaults where an orchestrated run leaves them out; all None for a run without
    an orchestrator (a strategy backtest)."""
    orchestrator = run.get("orchestrator")
    gate = (orchestrator or {}).get("gate") or run.get("gate")
    keys = ("buy_threshold", "sell_threshold", "min_confidence")
    if not isinstance(orchestrator, Mapping) and not isinstance(gate, Mapping):
        return dict.fromkeys(keys)
    defaults = GateConfig()
    gate = gate if isinstance(gate, Mapping) else {}
    return {k: _num(gate.get(k, getattr(defaults, k))) for k in keys}


def run_file_settings(path: Path) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """The thresholds (:func:`run_thresholds`) and risk limits (:func:`run_limits`) a run file
    (YAML) sets; empty when it cannot be read."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}, {}
    if not isinstance(data, Mapping):
        return {}, {}
    risk = (data.get("settings") or {}).get("risk") or {}
    return run_thresholds(data), run_limits(risk if isinstance(risk, Mapping) else {})


def run_limits(risk: Mapping[str, Any]) -> dict[str, float | None]:
    """The risk settings shown as limits (fraction, caps, drawdown and daily-loss limits,
    stop loss), None where unset."""
    keys = (
        "fraction",
        "max_position_fraction",
        "max_drawdown",
        "daily_loss_limit",
        "stop_loss_pct",
    )
    return {k: _num(risk.get(k)) for k in keys}


def _rows(frame: Any) -> Iterable[dict[str, Any]]:
    if frame is None or not len(frame):
        return []
    return (
        {
            k: v
            for k, v in r.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        for r in frame.to_dict(orient="records")
    )


def _dedupe(rows: Iterable[Any]) -> list[Any]:
    return [r for r in rows if r is not None]


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(float(value)):
        return float(value)
    return None
