"""Node views of finished runs: a run of the run journal or a report JSON (:class:`RunView`)
and a paper/live session journal (:class:`SessionView`), read-only.

Both read their records once, on first use (:class:`~pivotal.services.run_rows.RunRecords`),
and their candles, COB snapshots and inference history from a market store opened read-only
(:class:`MarketSource`, shared by the views of one data dir: one connection, the store's
lock serialises its queries). Commands raise :class:`~pivotal.services.view.ReadOnly`: a
finished run cannot be steered; a running node serves its own API
(``pivotal run RUN_FILE --mode paper --serve``). Every method is thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.services.candles_query import (
    PivotCache,
    SeriesCatalog,
    candles_payload,
    resolve_symbol,
)
from pivotal.services.cob_query import cob_payload
from pivotal.services.journal_rows import records_from_session
from pivotal.services.model_rows import (
    latest_records,
    model_states,
    pivot_predictions,
    predictions_in_window,
)
from pivotal.services.run_rows import (
    RunRecords,
    equity_payload,
    risk_metrics,
    run_file_settings,
)
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
    Summary,
    ThresholdsCommand,
)
from pivotal.services.view import MAX_BARS, QueryError, ReadOnly

__all__ = [
    "FinishedView",
    "MarketSource",
    "RunView",
    "SessionView",
    "check_limit",
    "find_run_file",
]

MAX_ROWS = 100_000
PROCESSES = ("streams", "inference", "learning", "trading")


@dataclass
class MarketSource:
    """A market store opened read-only with its series catalog, pivot cache and inference
    history (None when the store has none)."""

    store: DuckDBStore
    catalog: SeriesCatalog = field(init=False)
    pivots: PivotCache = field(init=False)
    _history: InferenceHistory | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _history_read: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.catalog = SeriesCatalog(self.store)
        self.pivots = PivotCache(self.store)

    @property
    def history(self) -> InferenceHistory | None:
        with self._lock:
            if not self._history_read:
                self._history_read = True
                history = InferenceHistory(self.store)
                self._history = history if history.spans() else None
            return self._history


def check_limit(limit: int, name: str = "limit", top: int = MAX_ROWS) -> int:
    """``limit`` when it is an int in ``1..top``; :class:`QueryError` otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= top:
        raise QueryError(f"{name} must be an integer from 1 to {top}, got {limit!r}")
    return limit


class FinishedView:
    """A finished run's queries over its :class:`RunRecords` (loaded once by ``load``) and
    its market store; commands refused (module docstring)."""

    def __init__(
        self, node_id: str, load: Callable[[], RunRecords], market: MarketSource | None
    ) -> None:
        self._id = node_id
        self._load = load
        self._records: RunRecords | None = None
        self._lock = threading.Lock()
        self.market = market

    @property
    def id(self) -> str:
        return self._id

    @property
    def records(self) -> RunRecords:
        with self._lock:
            if self._records is None:
                self._records = self._load()
            return self._records

    # -- nodes ---------------------------------------------------------------------------
    def info(self) -> NodeInfo:
        rec = self.records
        return NodeInfo(
            id=self._id,
            name=rec.name,
            kind=rec.kind,  # type: ignore[arg-type]
            status="finished",
            exchange=rec.exchange,
            symbols=list(rec.symbols),
            timeframes=self._timeframes(),
            read_only=True,
            source=rec.source,
            started_ms=rec.started_ms,
            last_ms=rec.last_ms,
        )

    def summary(self) -> Summary:
        rec = self.records
        risk = risk_metrics(rec.equity_t, rec.equity_v)
        equity = risk["equity"]
        start = rec.initial_cash if rec.initial_cash is not None else equity
        pnl = (equity - start) if equity is not None and start is not None else 0.0
        wins = sum(1 for t in rec.trades if t.pnl > 0)
        cash = next((b.total for b in rec.balances if b.asset == rec.currency), equity or 0.0)
        return Summary(
            node=self._id,
            currency=rec.currency,
            balance=float(cash),
            equity=equity,
            pnl=float(pnl),
            pnl_pct=float(pnl / start * 100.0) if start else None,
            drawdown_pct=risk["drawdown_pct"],
            max_drawdown_pct=risk["max_drawdown_pct"],
            closed_trades=len(rec.trades),
            win_rate=wins / len(rec.trades) if rec.trades else None,
            open_positions=len(rec.positions),
            open_orders=sum(1 for o in rec.orders if _is_open(o)),
            last_ms=rec.last_ms,
            entries_stopped=rec.entries_stopped,
            killed=rec.killed,
        )

    # -- market data ---------------------------------------------------------------------
    def candles(
        self, symbol: str, timeframe: str, *, limit: int = 500, since_ms: int | None = None
    ) -> CandlesPayload:
        market = self._market()
        rec = self.records
        check_limit(limit, top=MAX_BARS)
        name = resolve_symbol(symbol, market.catalog.symbols(rec.exchange))
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
            for f in rec.fills
            if f.symbol == name
        ]
        markers += [
            MarkerRow.model_construct(
                t=d.t,
                kind="decision",
                side=d.action,  # type: ignore[arg-type]
                price=None,
                confidence=d.confidence,
                quantity=None,
                label=d.reason[:120],
            )
            for d in rec.decisions
            if d.symbol == name and d.action in ("buy", "sell", "close")
        ]
        markers.sort(key=lambda m: m.t)
        payload = candles_payload(
            market.store,
            rec.exchange,
            name,
            timeframe,
            limit=limit,
            since_ms=since_ms,
            node_id=self._id,
            markers=markers,
            catalog=market.catalog,
            pivots=market.pivots,
        )
        history = market.history if self._uses_models() else None
        if history is not None and payload.bars.t:
            newest = latest_records(history, [name])
            predictions = predictions_in_window(
                [p for r in newest for p in pivot_predictions(r, payload.pivots)],
                payload.bars.t,
                Timeframe.parse(payload.timeframe).ms,
            )
            payload = payload.model_copy(update={"predictions": predictions})
        return payload

    def cob(self, symbol: str, *, seconds: int = 300) -> CobPayload:
        market = self._market()
        rec = self.records
        known = {s for _, s, *_ in market.store.cob_symbols()} | set(rec.symbols)
        name = resolve_symbol(symbol, known)
        return cob_payload(market.store, rec.exchange, name, seconds=seconds, node_id=self._id)

    # -- models and decisions ------------------------------------------------------------
    def models(self) -> list[ModelState]:
        rec = self.records
        history = self.market.history if self.market is not None and self._uses_models() else None
        latest = latest_records(history, rec.symbols)
        return model_states(latest, rec.model_events, rec.decisions[-1_000:])

    def decisions(
        self, *, symbol: str | None = None, limit: int = 200, since_ms: int | None = None
    ) -> list[DecisionRow]:
        check_limit(limit)
        rows = self.records.decisions
        if symbol is not None:
            name = resolve_symbol(symbol, self.records.symbols)
            rows = [d for d in rows if d.symbol == name]
        return _newest(rows, limit, since_ms)

    # -- trading -------------------------------------------------------------------------
    def orders(self, *, open_only: bool = False, limit: int = 500) -> list[OrderRow]:
        check_limit(limit)
        rows = [o for o in self.records.orders if not open_only or _is_open(o)]
        return rows[-limit:]

    def fills(self, *, limit: int = 500, since_ms: int | None = None) -> list[FillRow]:
        check_limit(limit)
        return _newest(self.records.fills, limit, since_ms)

    def positions(self) -> list[PositionRow]:
        return list(self.records.positions)

    def balances(self) -> list[Balance]:
        return list(self.records.balances)

    def trades(self, *, limit: int = 500) -> list[ClosedTrade]:
        check_limit(limit)
        return self.records.trades[-limit:]

    def equity(self, *, limit: int = 5000) -> EquityPayload:
        check_limit(limit)
        rec = self.records
        return equity_payload(self._id, rec.equity_t, rec.equity_v, limit)

    def risk(self) -> RiskPayload:
        rec = self.records
        return RiskPayload(
            node=self._id,
            metrics=risk_metrics(rec.equity_t, rec.equity_v),
            limits=dict(rec.limits),
            entries_stopped=rec.entries_stopped,
            breaker="killed" if rec.killed else None,
        )

    def alerts(self, *, limit: int = 200, since_ms: int | None = None) -> list[Alert]:
        check_limit(limit)
        return _newest(self.records.alerts, limit, since_ms)

    def health(self) -> HealthPayload:
        rec = self.records
        finished = ProcessState(enabled=False, state="finished", detail="the run has ended")
        errors = [a for a in rec.alerts if a.level in ("error", "critical")][-50:]
        return HealthPayload(
            node=self._id, streams=[], processes=dict.fromkeys(PROCESSES, finished), errors=errors
        )

    # -- controls ------------------------------------------------------------------------
    def controls(self) -> Controls:
        rec = self.records
        return Controls(
            node=self._id,
            buy_threshold=rec.thresholds.get("buy_threshold"),
            sell_threshold=rec.thresholds.get("sell_threshold"),
            min_confidence=rec.thresholds.get("min_confidence"),
            entries_stopped=rec.entries_stopped,
            processes=dict.fromkeys(PROCESSES, False),
            killed=rec.killed,
            read_only=True,
        )

    def set_thresholds(self, command: ThresholdsCommand) -> CommandResult:
        raise self._read_only("thresholds")

    def set_entries(self, command: EntriesCommand) -> CommandResult:
        raise self._read_only("entries")

    def force_exit(self, command: ForceExitCommand) -> CommandResult:
        raise self._read_only("force-exit")

    def kill(self, command: KillCommand) -> CommandResult:
        raise self._read_only("kill")

    def set_process(self, command: ProcessCommand) -> CommandResult:
        raise self._read_only("process")

    # -- helpers -------------------------------------------------------------------------
    def _read_only(self, command: str) -> ReadOnly:
        return ReadOnly(
            f"node {self._id!r} is a finished run ({self.records.source}): it takes no "
            f"{command} command. To steer a running node, start it with its API: "
            "pivotal run RUN_FILE --mode paper --serve"
        )

    def _uses_models(self) -> bool:
        """Whether the run's decisions came from models (an orchestrated run): only then does
        the store's inference history describe it."""
        return any(d.weights for d in self.records.decisions[-100:])

    def _market(self) -> MarketSource:
        if self.market is None:
            raise QueryError(
                f"node {self._id!r} has no market-data store beside it, so it has no candles "
                "or order book to show; serve it with --data-dir pointing at the store"
            )
        return self.market

    def _timeframes(self) -> list[str]:
        if self.market is None:
            return []
        rec = self.records
        spans = [s for s in self.market.catalog.spans(rec.exchange) if s.symbol in rec.symbols]
        order = {s.timeframe: s for s in spans}
        from pivotal.core.timeframes import Timeframe

        return sorted(order, key=lambda tf: Timeframe.parse(tf).ms)


class RunView(FinishedView):
    """A finished orchestrated run or backtest: a run of the data dir's run journal or a
    report JSON (``load`` builds its records), with the data dir's market store."""


class SessionView(FinishedView):
    """A paper/live session journal (``<data dir>/trading/*.journal``) opened read-only, with
    candles from ``<journal>.market.duckdb`` when present, else the data dir's store."""

    def __init__(
        self,
        node_id: str,
        journal_path: Path,
        market: MarketSource | None,
        *,
        run_file: Path | None = None,
    ) -> None:
        self.journal_path = Path(journal_path)
        self.run_file = run_file
        super().__init__(node_id, self._read, market)

    def _read(self) -> RunRecords:
        journal = SqliteOrderJournal.open_readonly(self.journal_path)
        try:
            records = records_from_session(journal, name=_session_name(self.journal_path))
        finally:
            journal.close()
        if self.run_file is not None:  # the run file's settings, then the commands applied
            thresholds, limits = run_file_settings(self.run_file)
            records.thresholds = {**thresholds, **records.thresholds}
            records.limits = {**limits, **records.limits}
            records.source = f"{records.source} (run file {self.run_file})"
        return records


def _session_name(path: Path) -> str:
    return path.name.removesuffix(".journal")


def find_run_file(journal: Path, data_dir: Path | None) -> Path | None:
    """The run file of a session journal ``<data dir>/trading/<run file stem>.<mode>.journal``
    (:func:`pivotal.node.paths.journal_path`): ``<stem>.yaml``/``.yml`` in the data dir, its
    ``reports/`` folder (where ``pivotal demo`` writes it) or the folder above it; None when
    there is none."""
    stem = _session_name(journal).rsplit(".", 1)[0]
    folders = [
        journal.parent.parent,
        journal.parent.parent / "reports",
        journal.parent.parent.parent,
    ]
    if data_dir is not None:
        folders[:0] = [data_dir, data_dir / "reports"]
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _is_open(order: OrderRow) -> bool:
    return order.status in ("new", "submitted", "open", "partially_filled", "pending_cancel")


def _newest(rows: list, limit: int, since_ms: int | None) -> list:  # type: ignore[type-arg]
    if since_ms is not None:
        rows = [r for r in rows if r.t >= since_ms]
    return rows[-limit:]
