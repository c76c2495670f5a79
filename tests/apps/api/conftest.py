"""Fixtures of the API tests: a finished run read by the real :class:`RunView` (queries,
schemathesis, refusals) and :class:`MemoryNode`, a small running node kept in memory that
takes commands (a finished run refuses them) and grows its candles on demand."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pivotal.apps.api.auth import ApiTokens
from pivotal.apps.cli.main import app as cli
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.services.schemas import (
    Alert,
    Balance,
    Bars,
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
    ProcessState,
    RiskPayload,
    Summary,
    ThresholdsCommand,
)
from pivotal.services.view import MAX_BARS, NotFound, QueryError, Services

MINUTE = 60_000
T0 = 1_767_225_600_000  # 2026-01-01 UTC


class MemoryNode:
    """A running paper node in memory: 1m candles per symbol, decisions, controls that the
    commands change. Thread-safe like the protocol asks."""

    def __init__(self, node_id: str = "paper", symbols: tuple[str, ...] = ("BTC/USDT",)) -> None:
        self._id = node_id
        self._lock = threading.Lock()
        self.symbols = symbols
        self.bars: dict[str, list[tuple[int, float]]] = {
            s: [(T0 + i * MINUTE, 100.0 + i) for i in range(50)] for s in symbols
        }
        self.decision_rows: list[DecisionRow] = []
        self.thresholds = (0.6, 0.6, 0.5)
        self.entries_stopped = False
        self.killed = False
        self.processes = {"streams": True, "inference": True, "learning": True, "trading": True}

    @property
    def id(self) -> str:
        return self._id

    # -- changes the tests make ---------------------------------------------------------
    def append_bar(self, symbol: str, close: float, last_close: float | None = None) -> int:
        """Open a bar closing at ``close`` (and, at once, close the last at ``last_close``)."""
        with self._lock:
            rows = self.bars[symbol]
            if last_close is not None:
                rows[-1] = (rows[-1][0], last_close)
            t = rows[-1][0] + MINUTE
            rows.append((t, close))
            return t

    def update_last(self, symbol: str, close: float) -> None:
        with self._lock:
            rows = self.bars[symbol]
            rows[-1] = (rows[-1][0], close)

    def decide(self, symbol: str, *rows: tuple[int, str]) -> None:
        """Record decisions ``(t, action)`` at once."""
        with self._lock:
            self.decision_rows += [DecisionRow(t=t, symbol=symbol, action=a) for t, a in rows]

    # -- queries ------------------------------------------------------------------------
    def info(self) -> NodeInfo:
        return NodeInfo(
            id=self._id, name=self._id, kind="paper", status="running", exchange="local",
            symbols=list(self.symbols), timeframes=["1m"], read_only=False, source="memory",
        )  # fmt: skip

    def summary(self) -> Summary:
        return Summary(
            node=self._id, currency="USDT", balance=1000.0, equity=1000.0, pnl=0.0,
            entries_stopped=self.entries_stopped, killed=self.killed,
        )  # fmt: skip

    def candles(
        self, symbol: str, timeframe: str, *, limit: int = 500, since_ms: int | None = None
    ) -> CandlesPayload:
        if symbol not in self.bars:
            raise NotFound(f"no symbol {symbol!r} (symbols: {', '.join(self.symbols)})")
        if timeframe != "1m":
            raise NotFound(f"no {timeframe} candles (timeframes: 1m)")
        if not 1 <= limit <= MAX_BARS:
            raise QueryError(f"limit {limit} is outside 1..{MAX_BARS}")
        with self._lock:
            rows = list(self.bars[symbol])
        if since_ms is not None:
            rows = [r for r in rows if r[0] >= since_ms]
        rows = rows[-limit:]
        closes = [c for _, c in rows]
        bars = Bars(
            t=[t for t, _ in rows], open=closes, high=closes, low=closes, close=closes,
            volume=[1.0] * len(rows),
        )  # fmt: skip
        return CandlesPayload(node=self._id, symbol=symbol, timeframe="1m", bars=bars, pivots=[])

    def cob(self, symbol: str, *, seconds: int = 300) -> CobPayload:
        return CobPayload(
            node=self._id, symbol=symbol, t=[], prices=[], bids=[], asks=[], mid=[], imbalance={}
        )

    def models(self) -> list[ModelState]:
        return [ModelState(name="pivot_cnn", state="ready")]

    def decisions(
        self, *, symbol: str | None = None, limit: int = 200, since_ms: int | None = None
    ) -> list[DecisionRow]:
        with self._lock:
            rows = [
                d for d in self.decision_rows
                if (symbol is None or d.symbol == symbol) and (since_ms is None or d.t >= since_ms)
            ]  # fmt: skip
        return rows[-limit:]

    def orders(self, *, open_only: bool = False, limit: int = 500) -> list[OrderRow]:
        return []

    def fills(self, *, limit: int = 500, since_ms: int | None = None) -> list[FillRow]:
        return []

    def positions(self) -> list[PositionRow]:
        return []

    def balances(self) -> list[Balance]:
        return [Balance(asset="USDT", free=1000.0, total=1000.0)]

    def trades(self, *, limit: int = 500) -> list[ClosedTrade]:
        return []

    def equity(self, *, limit: int = 5000) -> EquityPayload:
        return EquityPayload(node=self._id, t=[T0], equity=[1000.0], drawdown_pct=[0.0])

    def risk(self) -> RiskPayload:
        return RiskPayload(
            node=self._id, metrics={}, limits={}, entries_stopped=self.entries_stopped
        )

    def alerts(self, *, limit: int = 200, since_ms: int | None = None) -> list[Alert]:
        return []

    def health(self) -> HealthPayload:
        processes = {
            name: ProcessState(enabled=on, state="running" if on else "paused")
            for name, on in self.processes.items()
        }
        return HealthPayload(node=self._id, streams=[], processes=processes)

    # -- controls -----------------------------------------------------------------------
    def controls(self) -> Controls:
        buy, sell, conf = self.thresholds
        return Controls(
            node=self._id, buy_threshold=buy, sell_threshold=sell, min_confidence=conf,
            entries_stopped=self.entries_stopped, processes=dict(self.processes),
            killed=self.killed, read_only=False,
        )  # fmt: skip

    def _result(self, command: str, detail: str) -> CommandResult:
        return CommandResult(
            node=self._id, command=command, accepted=True, detail=detail,
            applied_ms=T0, controls=self.controls(),
        )  # fmt: skip

    def set_thresholds(self, command: ThresholdsCommand) -> CommandResult:
        buy, sell, conf = self.thresholds
        self.thresholds = (
            buy if command.buy_threshold is None else command.buy_threshold,
            sell if command.sell_threshold is None else command.sell_threshold,
            conf if command.min_confidence is None else command.min_confidence,
        )
        return self._result("thresholds", "thresholds set")

    def set_entries(self, command: EntriesCommand) -> CommandResult:
        self.entries_stopped = command.stopped
        return self._result("entries", "entries stopped" if command.stopped else "allowed")

    def force_exit(self, command: ForceExitCommand) -> CommandResult:
        if command.symbol not in self.symbols:
            raise NotFound(f"no symbol {command.symbol!r}")
        return self._result("force-exit", f"{command.symbol} flat")

    def kill(self, command: KillCommand) -> CommandResult:
        self.killed = True
        self.entries_stopped = True
        return self._result("kill", command.reason)

    def set_process(self, command: ProcessCommand) -> CommandResult:
        self.processes[command.process] = command.enabled
        return self._result("process", f"{command.process} {command.enabled}")


@pytest.fixture
def tokens() -> ApiTokens:
    return ApiTokens.generate()


@pytest.fixture
def memory_node() -> MemoryNode:
    return MemoryNode()


@pytest.fixture(scope="session")
def memory_node_class() -> type[MemoryNode]:
    """The class, for fixtures of wider scope that build their own node."""
    return MemoryNode


# -- a finished run on disk, read by the real views --------------------------------------------
RUN_SYMBOLS = ("BTC/USDT", "ETH/USDT")
RUN_TIMEFRAMES = (Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1)


def write_market(root: Path, bars: int) -> None:
    """``bars`` candles of BTC/USDT and ETH/USDT in 1s, 1m, 1h and 1d (a swinging price, so
    every pivot level has pivots)."""
    with open_store(root) as store:
        for k, name in enumerate(RUN_SYMBOLS):
            base, quote = name.split("/")
            for tf in RUN_TIMEFRAMES:
                i = np.arange(bars)
                close = (100 + 50 * k) * np.exp(
                    0.03 * np.sin(2 * np.pi * i / 37) + 0.01 * np.sin(i / 5)
                )
                open_ = np.concatenate([[close[0]], close[:-1]])
                candles = Candles(
                    T0 + i * tf.ms, open_, np.maximum(open_, close) * 1.001,
                    np.minimum(open_, close) * 0.999, close, np.ones(bars),
                )  # fmt: skip
                store.write_candles(SeriesKey("binance", Symbol(base, quote), tf), candles)


def make_run_dir(root: Path, bars: int = 2000) -> Path:
    """A data dir holding a market store and the report of a backtest over both symbols
    (``reports/bt.json``, written by ``pivotal backtest --json``)."""
    write_market(root, bars)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(
        cli,
        ["backtest", "-s", ",".join(RUN_SYMBOLS), "-t", "1m", "--json",
         str(root / "reports" / "bt.json"), "-d", str(root)],
        env={"COLUMNS": "200", "NO_COLOR": "1", "PIVOTAL_CONFIG": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("api-run") / "data")


@pytest.fixture(scope="session")
def run_services(run_dir: Path) -> Services:
    from pivotal.services.discover import views_from_data_dir

    return Services(views_from_data_dir(run_dir))
