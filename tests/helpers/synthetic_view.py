"""A synthetic :class:`~pivotal.services.view.NodeView` for the dashboard's browser tests.

It serves candles for any symbols × timeframes from a deterministic price path, with pivots
of all 5 levels, PivotCNN-style predictions, decision and fill markers, a COB grid and the
rest of the read API. With ``live=True`` the clock advances with wall time (``clock_ms``
minus the start), so the last bar of every timeframe changes each second and a 1 s bar
appends each second: the WebSocket hub then has 1 Hz updates on every chart, which is what
the performance test measures. Commands change its controls (it is a test double of a node:
the real command path is tested end to end against a paper node).
"""

from __future__ import annotations

import math
import threading
import time

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
    MarkerRow,
    ModelState,
    NodeInfo,
    OrderRow,
    PivotMark,
    PivotPrediction,
    PositionRow,
    ProcessCommand,
    ProcessState,
    RiskPayload,
    StreamHealth,
    Summary,
    ThresholdsCommand,
)
from pivotal.services.view import MAX_BARS, NotFound, QueryError, ReadOnly

TF_MS = {"1s": 1_000, "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
START_MS = 1_700_000_000_000  # the synthetic clock's origin (2023-11-14), a whole day


def _price(symbol: str, t: float) -> float:
    base = 40_000.0 if symbol.startswith("BTC") else 2_000.0
    x = t / 60_000.0
    return base * (1 + 0.02 * math.sin(x / 37) + 0.01 * math.sin(x / 5.3) + 0.002 * math.sin(x))


class SyntheticView:
    """A node answering the NodeView protocol from formulas (module docstring)."""

    def __init__(
        self,
        node_id: str,
        *,
        symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT"),
        timeframes: tuple[str, ...] = ("1s", "1m", "1h", "1d"),
        read_only: bool = False,
        live: bool = True,
        kind: str = "paper",
    ) -> None:
        self._id = node_id
        self.symbols = list(symbols)
        self.timeframes = list(timeframes)
        self.read_only = read_only
        self.live = live
        self.kind = kind
        self._wall0 = time.monotonic()
        self._lock = threading.Lock()
        self._controls = {
            "buy_threshold": 0.6,
            "sell_threshold": 0.6,
            "min_confidence": 0.5,
            "entries_stopped": False,
            "killed": False,
        }
        self._processes = dict.fromkeys(("streams", "inference", "learning", "trading"), True)
        self._positions = {s: 0.5 if s.startswith("BTC") else 2.0 for s in self.symbols}

    @property
    def id(self) -> str:
        return self._id

    # -- clock ------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The synthetic time: frozen for a finished run, else START + elapsed wall time."""
        elapsed = 0.0 if not self.live else time.monotonic() - self._wall0
        return START_MS + 3_600_000 * 24 * 30 + int(elapsed * 1000)

    def _check(self, symbol: str, timeframe: str | None = None) -> str:
        wanted = symbol.replace("-", "/").upper()
        for s in self.symbols:
            if wanted in (s, s.replace("/", "")):
                if timeframe is not None and timeframe not in self.timeframes:
                    raise NotFound(f"no timeframe {timeframe!r} (timeframes: {self.timeframes})")
                return s
        raise NotFound(f"no symbol {symbol!r} on node {self._id} (symbols: {self.symbols})")

    # -- nodes ------------------------------------------------------------------------------
    def info(self) -> NodeInfo:
        return NodeInfo(
            id=self._id,
            name=f"synthetic {self._id}",
            kind=self.kind,  # type: ignore[arg-type]
            status="finished" if self.read_only else "running",
            exchange="synthetic",
            symbols=self.symbols,
            timeframes=self.timeframes,
            read_only=self.read_only,
            source="tests/apps/dashboard/synthetic_view.py",
            started_ms=START_MS,
            last_ms=self.now_ms(),
        )

    def summary(self) -> Summary:
        eq = 100_000 + 250 * math.sin(self.now_ms() / 60_000)
        with self._lock:
            opened = sum(1 for q in self._positions.values() if q)
            return Summary(
                node=self._id,
                currency="USDT",
                balance=60_000.0,
                equity=eq,
                pnl=eq - 100_000,
                pnl_pct=(eq - 100_000) / 1000,
                drawdown_pct=0.4,
                max_drawdown_pct=1.2,
                closed_trades=12,
                win_rate=7 / 12,
                open_positions=opened,
                open_orders=1,
                last_ms=self.now_ms(),
                entries_stopped=bool(self._controls["entries_stopped"]),
                killed=bool(self._controls["killed"]),
            )

    # -- market data ------------------------------------------------------------------------
    def candles(
        self, symbol: str, timeframe: str, *, limit: int = 500, since_ms: int | None = None
    ) -> CandlesPayload:
        sym = self._check(symbol, timeframe)
        if not 1 <= limit <= MAX_BARS:
            raise QueryError(f"limit={limit} is outside 1..{MAX_BARS}")
        step = TF_MS[timeframe]
        now = self.now_ms()
        last = now - now % step
        first = last - (limit - 1) * step
        if since_ms is not None:
            first = max(first, since_ms - since_ms % step)
        times = list(range(first, last + 1, step))
        cols: dict[str, list[float]] = {k: [] for k in ("open", "high", "low", "close", "volume")}
        for t in times:
            end = min(t + step, now + 1)
            o, c = _price(sym, t), _price(sym, end)
            mid = _price(sym, (t + end) / 2)
            cols["open"].append(o)
            cols["close"].append(c)
            cols["high"].append(max(o, c, mid) * 1.0005)
            cols["low"].append(min(o, c, mid) * 0.9995)
            cols["volume"].append(1.0 + (t // step) % 7)
        pivots = [
            PivotMark(
                level=1 + (i // 10) % 5,
                kind="high" if (t // step) % 2 else "low",
                t=t,
                price=cols["high" if (t // step) % 2 else "low"][i],
                confirmed_t=t + 3 * step,
            )
            for i, t in enumerate(times)
            if (t // step) % 10 == 0 and t + 3 * step <= now
        ]
        predictions = []
        if pivots:
            p = pivots[-1]
            for level in (1, 2):
                up = p.kind == "low"
                predictions.append(
                    PivotPrediction(
                        model="pivot_cnn",
                        level=level,
                        kind="high" if up else "low",
                        from_t=p.t,
                        from_price=p.price,
                        t=last + 5 * level * step,
                        price=p.price * (1.01 if up else 0.99) ** level,
                        confidence=0.55 + 0.1 * level,
                        made_t=last,
                    )
                )
        markers = [
            MarkerRow(
                t=t,
                kind="decision" if (t // step) % 2 else "fill",
                side="buy" if (t // step) % 4 < 2 else "sell",
                price=cols["close"][i],
                confidence=0.7,
                quantity=0.01,
            )
            for i, t in enumerate(times)
            if (t // step) % 15 in (0, 1)
        ]
        return CandlesPayload(
            node=self._id,
            symbol=sym,
            timeframe=timeframe,
            bars=Bars(t=times, **cols),
            pivots=pivots,
            predictions=predictions,
            markers=markers,
        )

    def cob(self, symbol: str, *, seconds: int = 300) -> CobPayload:
        sym = self._check(symbol)
        now = self.now_ms() // 1000 * 1000
        times = list(range(now - (seconds - 1) * 1000, now + 1, 1000))
        mid0 = _price(sym, now)
        prices = [mid0 * (1 + (k - 10) * 0.0005) for k in range(21)]
        bids = [
            [max(0.0, 10 - k) * (1 + 0.1 * math.sin(t / 7000)) for k in range(21)] for t in times
        ]
        asks = [
            [max(0.0, k - 10) * (1 + 0.1 * math.cos(t / 9000)) for k in range(21)] for t in times
        ]
        mids = [_price(sym, t) for t in times]
        imb = {
            w: [0.1 * math.sin(t / (n * 1000)) for t in times]
            for w, n in (("1s", 1), ("5s", 5), ("15s", 15), ("60s", 60))
        }
        return CobPayload(
            node=self._id,
            symbol=sym,
            t=times,
            prices=prices,
            bids=bids,
            asks=asks,
            mid=mids,
            imbalance=imb,
        )  # type: ignore[arg-type]

    # -- models and decisions ---------------------------------------------------------------
    def models(self) -> list[ModelState]:
        t = self.now_ms()
        return [
            ModelState(
                name="pivot_cnn",
                symbol=self.symbols[0],
                state="ready",
                t=t,
                action="buy",
                confidence=0.71,
                output={"p_high": 0.3, "p_low": 0.7},
                accuracy=0.58,
                accuracy_n=120,
                gate_weight=0.4,
                version=3,
            ),
            ModelState(
                name="dqn",
                state="ready",
                t=t,
                action="hold",
                confidence=0.55,
                output={"q_buy": 0.1, "q_sell": -0.2},
                accuracy=0.52,
                accuracy_n=80,
                gate_weight=0.35,
                version=2,
            ),
            ModelState(
                name="cob_rl",
                state="error",
                error="RuntimeError: input shape (1, 20) != (1, 21)\n  at cob_rl.forward",
                gate_weight=0.25,
            ),
        ]

    def decisions(
        self, *, symbol: str | None = None, limit: int = 200, since_ms: int | None = None
    ) -> list[DecisionRow]:
        now = self.now_ms() // 1000 * 1000
        rows = [
            DecisionRow(
                t=now - k * 5000,
                symbol=self.symbols[k % len(self.symbols)],
                action=("buy", "hold", "sell")[k % 3],
                confidence=0.5 + 0.01 * k,
                p_buy=0.4,
                p_sell=0.3,
                p_hold=0.3,
                executed=k % 3 != 1,
                reason="synthetic",
                weights={"pivot_cnn": 0.4, "dqn": 0.6},
            )
            for k in range(min(limit, 40))
        ]
        rows.reverse()
        return [
            r
            for r in rows
            if (symbol is None or r.symbol == symbol) and (since_ms is None or r.t >= since_ms)
        ]

    # -- trading ----------------------------------------------------------------------------
    def orders(self, *, open_only: bool = False, limit: int = 500) -> list[OrderRow]:
        return [
            OrderRow(
                client_order_id="syn-1",
                symbol=self.symbols[0],
                side="sell",
                type="limit",
                status="open",
                quantity=0.1,
                filled=0.0,
                limit_price=_price(self.symbols[0], self.now_ms()) * 1.01,
                created_ms=self.now_ms() - 60_000,
            )
        ]

    def fills(self, *, limit: int = 500, since_ms: int | None = None) -> list[FillRow]:
        return [
            FillRow(
                t=self.now_ms() - 120_000,
                symbol=self.symbols[0],
                side="buy",
                price=40_000.0,
                quantity=0.5,
                fee=20.0,
                fee_asset="USDT",
            )
        ]

    def positions(self) -> list[PositionRow]:
        with self._lock:
            held = dict(self._positions)
        rows = []
        for s, q in held.items():
            if q:
                mark = _price(s, self.now_ms())
                rows.append(
                    PositionRow(
                        symbol=s,
                        quantity=q,
                        entry_price=mark * 0.99,
                        mark_price=mark,
                        value=q * mark,
                        unrealized_pnl=q * mark * 0.01,
                    )
                )
        return rows

    def balances(self) -> list[Balance]:
        return [
            Balance(asset="USDT", free=60_000.0, total=60_000.0),
            Balance(asset="BTC", free=0.5, total=0.5),
        ]

    def trades(self, *, limit: int = 500) -> list[ClosedTrade]:
        return [
            ClosedTrade(
                symbol=self.symbols[0],
                side="long",
                quantity=0.1,
                entry_t=START_MS + k * 3_600_000,
                exit_t=START_MS + k * 3_600_000 + 600_000,
                entry_price=40_000.0,
                exit_price=40_000.0 + (50 if k % 2 else -30),
                pnl=5.0 if k % 2 else -3.0,
                pnl_pct=0.12 if k % 2 else -0.07,
                fees=0.8,
            )
            for k in range(min(limit, 12))
        ]

    def equity(self, *, limit: int = 5000) -> EquityPayload:
        now = self.now_ms() // 60_000 * 60_000
        t = list(range(now - 299 * 60_000, now + 1, 60_000))
        eq = [100_000 + 250 * math.sin(x / 3_600_000) for x in t]
        peak, dd = -math.inf, []
        for e in eq:
            peak = max(peak, e)
            dd.append((peak - e) / peak * 100)
        return EquityPayload(
            node=self._id, t=t[-limit:], equity=eq[-limit:], drawdown_pct=dd[-limit:]
        )

    def risk(self) -> RiskPayload:
        return RiskPayload(
            node=self._id,
            metrics={"exposure": 0.4, "drawdown_pct": 0.4, "daily_pnl": 120.0, "var_95": None},
            limits={"exposure": 1.0, "drawdown_pct": 10.0, "daily_pnl": None, "var_95": None},
            entries_stopped=bool(self._controls["entries_stopped"]),
        )

    def alerts(self, *, limit: int = 200, since_ms: int | None = None) -> list[Alert]:
        return [Alert(t=START_MS, level="warning", kind="stream", message="synthetic gap resynced")]

    def health(self) -> HealthPayload:
        with self._lock:
            procs = {
                p: ProcessState(enabled=on, state="running" if on else "paused")
                for p, on in self._processes.items()
            }
        return HealthPayload(
            node=self._id,
            streams=[
                StreamHealth(
                    venue="synthetic",
                    symbol=s,
                    channel="trades",
                    state="live",
                    messages=self.now_ms() // 1000 % 100_000,
                    lag_ms=12.0,
                )
                for s in self.symbols
            ],
            processes=procs,
        )

    # -- controls ---------------------------------------------------------------------------
    def controls(self) -> Controls:
        with self._lock:
            c = dict(self._controls)
            procs = dict(self._processes)
        return Controls(
            node=self._id,
            buy_threshold=c["buy_threshold"],
            sell_threshold=c["sell_threshold"],
            min_confidence=c["min_confidence"],
            entries_stopped=c["entries_stopped"],
            processes=procs,
            killed=c["killed"],
            read_only=self.read_only,
        )  # type: ignore[arg-type]

    def _apply(self, command: str, change: dict[str, object]) -> CommandResult:
        if self.read_only:
            raise ReadOnly(f"node {self._id} is a finished run: it takes no commands")
        with self._lock:
            for key, value in change.items():
                if key in self._processes:
                    self._processes[key] = bool(value)
                elif key == "flatten":
                    for s in self._positions:
                        if value in (None, s):
                            self._positions[s] = 0.0
                elif value is not None:
                    self._controls[key] = value
        return CommandResult(
            node=self._id,
            command=command,
            accepted=True,
            detail="applied",
            applied_ms=self.now_ms(),
            controls=self.controls(),
        )

    def set_thresholds(self, command: ThresholdsCommand) -> CommandResult:
        return self._apply("thresholds", command.model_dump())

    def set_entries(self, command: EntriesCommand) -> CommandResult:
        return self._apply("entries", {"entries_stopped": command.stopped})

    def force_exit(self, command: ForceExitCommand) -> CommandResult:
        return self._apply("force-exit", {"flatten": self._check(command.symbol)})

    def kill(self, command: KillCommand) -> CommandResult:
        return self._apply("kill", {"flatten": None, "killed": True, "entries_stopped": True})

    def set_process(self, command: ProcessCommand) -> CommandResult:
        return self._apply("process", {command.process: command.enabled})
