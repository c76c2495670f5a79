"""Live market data end to end: local exchange → 127.0.0.1 sockets → ccxt.pro → collector
→ the orchestrator's market frame, with the time each step takes and the rate one client
process sustains.

Run ``python benchmarks/bench_live_data.py`` (about 3 minutes; ``--quick`` runs a few
seconds per phase, for the smoke test). ``benchmarks/live_exchange_proc.py`` runs the local
exchange (:class:`~pivotal.localexchange.server.LocalExchange`, Binance site) in a
**subprocess**, so every client figure is the client's alone. It serves the recorded
BTC/USDT + ETH/USDT capture of ``../shared/data`` (seeded synthetic flows from planted 1s
candles when the data is absent: the second line says which), looped so that the market
runs as long as the ramp needs; the market stands still until every stream is subscribed,
then moves at the speed this script sets (market ms per wall ms, the server's own pacing).

The client is what ``pivotal collect`` runs, unchanged: ``create_stream_client("binance")``
→ :class:`~pivotal.venues.collector.Collector` (default ``CollectConfig`` for the two
symbols: trades, book, 1m/1h/1d klines, 1s candles from trades; a DuckDB store in a temp
dir) → :class:`~pivotal.runtime.pushed_feed.PushedFeed` → a thread doing what the
orchestrator does with pushed events: ``BarIntake.push`` (``Orchestrator.on_event``) for
each event of a group, then ``BarIntake.due`` (the first stage of ``Orchestrator.step``),
which applies them to a :class:`~pivotal.orchestrator.frame.MarketFrame` (the
orchestrator's capacity; indicators and pivots folded per candle). Times are stamped from
outside (``time.perf_counter_ns``, one process) by wrapping the ccxt client's socket
callback, the collector's ``handle`` and the feed's ``publish``; the library is not changed.

1. **depth frame → COB snapshot** (ms): from the receipt, in ccxt's socket callback, of the
   first depth-diff frame whose event time reaches the snapshot's second ``T`` (the frame
   that makes it due: the snapshot ``T`` is the book after every update before ``T``,
   emitted when the first update at or after ``T`` arrives) to its publication by
   ``SymbolPipeline.on_book``: ccxt's decode and book update, the book copied to arrays, the
   queue hop, the sampler. Beside it: ``iter_cob`` over the same depth events in batch (per
   event, per snapshot; ratio = live p50 / batch per event) and ccxt's decode + handle time
   per message and per level changed.
2. **trade frame → 1s candle in the frame** (ms): from the receipt of the frame that closes
   second ``S`` (the first trade at or after its end; or a depth frame ``close_lag_ms`` past
   it, when that came first) to the moment ``MarketFrame.candles(symbol, "1s")`` ends with
   ``S``. Beside it: ``aggregate_trades`` over the same trades plus the frame's append and
   advance, per candle (ratio = live p50 / that), and ccxt's time per trade message.
3. **sustained ingest**: the speed rises step by step (a settle second, then the step).
   Per step: frames offered by the server (written + still queued for the client) and
   received by the client per wall second, frames left queued at the server, CPU shares of
   both processes (``time.process_time``, all threads), and the lag: the server's replay
   cursor minus the newest book event time the collector has handled (the older of the two
   symbols), in wall ms (÷ speed), sampled every 0.2 s. A step is kept up when the lag does
   not grow (slope < 50 ms per s), ends under 500 ms, and no gap (book sequence or trade
   ids), resync or disconnect happened; the ramp stops at the first step that is not kept up
   or where the server fell behind its own pace. Frames per client CPU-second = received
   frames per second ÷ the client's CPU share at the fastest kept-up step.

Rows 1 and 2 are taken at live pace (1x, 120 s; ``--latency-speed``/``--latency-s``). The
first and last lines give the host's 1-minute load average: the server, the client and
other processes share a small host, so compare runs at low load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from live_exchange_proc import SYMBOLS, ServerProcess, base_flows
from pivotal.config.models import ExchangeConfig
from pivotal.core.clock import WallClock
from pivotal.core.errors import OperationalError
from pivotal.core.events import BookUpdated, CandleClosed, MarketEvent
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.data.duckdb_store import open_store
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.features.orderbook import COBConfig, DepthEvents, OrderBook, iter_cob
from pivotal.localexchange.flow import DepthDiff, SymbolFlow, TradePrint
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.frame import MarketFrame
from pivotal.orchestrator.intake import BarIntake
from pivotal.orchestrator.subscriptions import DataSubscriptionManager
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.testing.timing import best_of
from pivotal.venues.collector import CollectConfig, Collector
from pivotal.venues.stream_events import BookItem

SECOND = Timeframe.parse("1s")
GOAL_COB_MS = 100.0  # one depth@100ms interval: a snapshot is out before the next diff
GOAL_CANDLE_MS = 100.0  # a tenth of the bar: a 1s decision sees its bar at once
GOAL_RATE_X = 10.0  # bursts of 10x the capture's average rate on one core
SLOPE_LIMIT = 50.0  # lag growth (ms per s) that counts as falling behind (5 % short)
LAG_LIMIT_MS = 500.0
RAMP = (10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000)
PEERS = (
    "peers (searched; cryptofeed is not installed here, no internet):",
    "  cryptofeed publishes no throughput figure: docs/performance.md (github.com/bmoscon/"
    "cryptofeed) only says book data for 100s of symbols needs several processes;",
    "  bmoscon/cryptofeed#406 (2021, Binance L2 book): receipt -> book callback 0.43 ms at "
    "start, 4.9 ms after 12 h; the maintainer: above ~1,000 book updates/s one process may "
    "not keep up. A handling time, not a sustained rate: nothing comparable to row 3;",
    "  ccxt/ccxt#29742 (2026): ccxt Python's order book 0.745-1.214 µs per level change "
    "(depth 1000, synthetic stream, book only) vs 'ccxt µs per depth level changed' in 1 "
    "(which also counts JSON decoding and the per-message work).",
)


def _load_avg() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


# -- the client's stamps -----------------------------------------------------------------------
class _Probe:
    """Wraps a ccxt.pro client: receipt time, decode + handle time and event time of every
    frame (``perf_counter_ns`` at the entry of ccxt's socket callback)."""

    def __init__(self, client: Any, symbols: Sequence[str]) -> None:
        self.ids = {str(s).replace("/", "").lower(): str(s) for s in symbols}
        self.depth: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in symbols}
        self.trades: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in symbols}
        self.handle: dict[str, tuple[list[int], list[int]]] = {}  # kind -> (recv, ns)
        self.levels: list[int] = []
        self.frames = 0
        self._t0 = 0
        self._kind = "other"
        make = client.client

        def make_timed(url: str) -> Any:
            ws = make(url)
            if not getattr(ws, "_bench_timed", False):
                inner = ws.handle_message

                def timed(message: Any) -> None:
                    self._t0 = t0 = time.perf_counter_ns()
                    self._kind = "other"
                    inner(message)
                    rows = self.handle.setdefault(self._kind, ([], []))
                    rows[0].append(t0)
                    rows[1].append(time.perf_counter_ns() - t0)

                ws.handle_message = timed
                ws._bench_timed = True
            return ws

        client.client = make_timed
        on_message = client.handle_message

        def record(ws: Any, message: Any) -> Any:
            stream = message.get("stream") if isinstance(message, dict) else None
            if stream:
                self.frames += 1
                data = message["data"]
                name, _, kind = stream.partition("@")
                symbol = self.ids.get(name)
                if kind.startswith("depth") and symbol:
                    self._kind = "depth"
                    self.depth[symbol][0].append(int(data["E"]))
                    self.depth[symbol][1].append(self._t0)
                    self.levels.append(len(data["b"]) + len(data["a"]))
                elif kind == "trade" and symbol:
                    self._kind = "trade"
                    self.trades[symbol][0].append(int(data["T"]))
                    self.trades[symbol][1].append(self._t0)
                elif kind.startswith("kline"):
                    self._kind = "kline"
            return on_message(ws, message)

        client.handle_message = record

    def arrays(self, which: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        rows = self.depth if which == "depth" else self.trades
        return {s: (np.array(e, np.int64), np.array(r, np.int64)) for s, (e, r) in rows.items()}


class _TimedFeed(PushedFeed):
    """The runtime's feed, stamping when the collector publishes COB snapshots and 1s bars."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(WallClock(), [(s, SECOND) for s in symbols])
        self.cob_made: list[tuple[str, int, int]] = []  # (symbol, T, ns)
        self.bar_made: list[tuple[str, int, int]] = []  # (symbol, open, ns)

    def publish(self, events: Sequence[MarketEvent]) -> None:
        now = time.perf_counter_ns()
        for e in events:
            if isinstance(e, BookUpdated):
                self.cob_made.append((e.symbol, e.event_time, now))
            elif isinstance(e, CandleClosed) and e.timeframe == SECOND:
                self.bar_made.append((e.symbol, e.open_time, now))
        super().publish(events)


class _FrameThread(threading.Thread):
    """The orchestrator's intake on its own thread: push every event of a group
    (``Orchestrator.on_event``), then ``BarIntake.due`` applies them to the frame."""

    def __init__(self, feed: PushedFeed) -> None:
        super().__init__(name="bench-frame", daemon=True)
        self.feed = feed
        config = OrchestratorConfig()
        self.frame = MarketFrame(capacity=config.frame_capacity)
        self.intake = BarIntake(DataSubscriptionManager(self.frame, config.streams))
        self.seen: list[tuple[str, int, int]] = []  # (symbol, open, ns)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (group := self.feed.next_events()) is not None:
                if not group:
                    continue
                for event in group:
                    self.intake.push(event)
                self.intake.due(group[0].symbol, max(e.event_time for e in group))
                now = time.perf_counter_ns()
                for e in group:
                    if isinstance(e, CandleClosed) and e.timeframe == SECOND:
                        shown = self.frame.candles(e.symbol, SECOND)
                        if len(shown) and int(shown.timestamp[-1]) >= e.open_time:
                            self.seen.append((e.symbol, e.open_time, now))
        except BaseException as exc:  # reported by the main thread
            self.error = exc


# -- one run -------------------------------------------------------------------------------------
@dataclass
class Step:
    """One speed step: its wall window (ns), frames, CPU and lag samples."""

    speed: float
    start_ns: int
    end_ns: int
    frames: int = 0
    offered: int = 0  # frames the server queued for the client
    queued: int = 0  # frames still waiting on the server's side at the end
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    market_ms: int = 0
    lags: list[tuple[float, float, float]] = field(default_factory=list)  # (s, lag ms, behind)
    trouble: int = 0  # disconnects + resyncs + gaps during the step

    @property
    def wall_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def slope(self) -> float:
        """Lag growth in ms per wall s (least squares over the step's samples)."""
        if len(self.lags) < 3:
            return float("nan")
        t, lag = np.array([x[0] for x in self.lags]), np.array([x[1] for x in self.lags])
        return float(np.polyfit(t, lag, 1)[0])

    def end_lag(self) -> float:
        tail = [x[1] for x in self.lags[-max(1, len(self.lags) // 4) :]]
        return float(np.median(tail)) if tail else float("nan")

    def server_behind(self) -> bool:
        tail = [x[2] for x in self.lags[-max(1, len(self.lags) // 4) :]]
        return bool(tail) and float(np.median(tail)) / self.speed > LAG_LIMIT_MS

    def kept_up(self) -> bool:
        return self.slope() < SLOPE_LIMIT and self.end_lag() < LAG_LIMIT_MS and not self.trouble

    def rate(self, frames: int) -> float:
        return frames / self.wall_s


@dataclass
class Run:
    latency: Step
    ramp: list[Step]
    probe: _Probe
    feed: _TimedFeed
    frame: _FrameThread
    books: dict[str, tuple[list[int], list[int]]]  # symbol -> (book time, handle ns)
    close_lag_ms: int | None
    base_rate: float  # frames per market second (the capture at 1x)


async def _client(server: ServerProcess, args: argparse.Namespace) -> Run:
    from pivotal.venues.clients import create_stream_client

    rest, ws = server.info["rest"], server.info["ws"]
    client = create_stream_client("binance", ExchangeConfig(rest_url=rest, ws_url=ws))
    probe = _Probe(client, SYMBOLS)
    feed = _TimedFeed(SYMBOLS)
    frame = _FrameThread(feed)
    frame.start()
    config = CollectConfig(exchanges=("binance",), symbols=SYMBOLS)
    newest: dict[Symbol, int] = {}
    books: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in SYMBOLS}
    with tempfile.TemporaryDirectory() as tmp, open_store(tmp) as store:
        collector = Collector(store, {"binance": client}, config, clock=WallClock(), feed=feed)
        handle = collector.handle

        def timed_handle(item: Any) -> None:
            if isinstance(item, BookItem) and item.time_ms is not None:
                stamps = books[str(item.symbol)]
                stamps[0].append(item.time_ms)
                stamps[1].append(time.perf_counter_ns())
                handle(item)
                newest[item.symbol] = item.time_ms
            else:
                handle(item)

        collector.handle = timed_handle  # type: ignore[method-assign]
        stop = asyncio.Event()
        running = asyncio.ensure_future(collector.run(stop=stop))
        want = len(config.streams())
        try:
            health = collector.supervisor.snapshot
            deadline = time.monotonic() + 30  # every stream subscribed before the market moves
            while (await asyncio.to_thread(server.ask, "status"))["streams"] < want:
                if running.done() or time.monotonic() > deadline:
                    states = [(h["channel"], h["state"], h["last_error"]) for h in health()]
                    raise OperationalError(
                        f"the collector did not subscribe its {want} streams within 30 s; "
                        f"its streams: {states}"
                    )
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # ccxt's REST book snapshots

            def sample(step: Step) -> None:
                reply = server.ask("status")
                now = time.perf_counter_ns()
                if len(newest) == len(SYMBOLS):
                    lag = (reply["market_ms"] - min(newest.values())) / step.speed
                    step.lags.append(((now - step.start_ns) / 1e9, lag, reply["behind_ms"]))

            async def phase(speed: float, seconds: float, settle: float) -> Step:
                totals0 = collector.supervisor.health.totals()
                await asyncio.to_thread(server.ask, f"speed {speed:g}")
                step = Step(speed, time.perf_counter_ns(), 0)
                await asyncio.sleep(settle)
                start = await asyncio.to_thread(server.ask, "status")
                step.start_ns, frames0, cpu0 = (
                    time.perf_counter_ns(),
                    probe.frames,
                    time.process_time(),
                )
                end = step.start_ns + int(seconds * 1e9)
                while time.perf_counter_ns() < end and not running.done():
                    await asyncio.sleep(0.2)
                    await asyncio.to_thread(sample, step)
                step.end_ns = time.perf_counter_ns()
                step.frames, step.cpu_s = probe.frames - frames0, time.process_time() - cpu0
                reply = await asyncio.to_thread(server.ask, "status")
                step.market_ms = reply["market_ms"] - start["market_ms"]
                step.server_cpu_s = reply["cpu_s"] - start["cpu_s"]
                step.offered, step.queued = reply["offered"] - start["offered"], reply["queued"]
                totals = collector.supervisor.health.totals()
                step.trouble = sum(
                    totals[k] - totals0[k] for k in ("disconnects", "resyncs", "gaps")
                )
                return step

            latency = await phase(args.latency_speed, args.latency_s, 1.0)
            base_rate = latency.offered / max(latency.market_ms / 1000, 1e-9)
            ramp: list[Step] = []
            for speed in args.speeds:
                step = await phase(speed, args.step_s, args.settle_s)
                ramp.append(step)
                if not step.kept_up() or step.server_behind() or running.done():
                    break
            await asyncio.to_thread(server.ask, "speed 0")
        finally:
            stop.set()
            await running
            feed.close()
            frame.join(30)
    if frame.error is not None:
        raise frame.error
    return Run(latency, ramp, probe, feed, frame, books, config.close_lag_ms, base_rate)


# -- the figures -----------------------------------------------------------------------------
def _first_at(times: np.ndarray, stamps: np.ndarray, reach: int) -> int | None:
    """The stamp of the first row whose time reaches ``reach`` (times are non-decreasing)."""
    i = int(np.searchsorted(times, reach, side="left"))
    return int(stamps[i]) if i < len(times) else None


def _arrays(rows: dict[str, tuple[list[int], list[int]]]) -> dict[str, tuple[np.ndarray, ...]]:
    return {s: (np.array(t, np.int64), np.array(n, np.int64)) for s, (t, n) in rows.items()}


def _cob_latency(run: Run, step: Step) -> tuple[np.ndarray, np.ndarray]:
    """ms from the receipt of the depth frame that made each COB snapshot due (in ``step``)
    to the snapshot's publication, and to ``Collector.handle`` of the book that carried it."""
    depth, books = _arrays(run.probe.depth), _arrays(run.books)
    total, handled = [], []
    for symbol, t, made in run.feed.cob_made:
        recv = _first_at(*depth[symbol], t)
        if recv is None or not step.start_ns <= recv <= step.end_ns:
            continue
        total.append((made - recv) / 1e6)
        book = _first_at(*books[symbol], t)
        if book is not None:
            handled.append((book - recv) / 1e6)
    return np.array(total), np.array(handled)


def _bar_latency(run: Run, step: Step, stamps: list[tuple[str, int, int]]) -> np.ndarray:
    """ms from the receipt of the frame that closed each 1s bar (in ``step``) to ``stamps``:
    the first trade frame at or after the bar's end, or a depth frame ``close_lag_ms`` past
    it when that came first (the pipeline closes quiet bars so)."""
    trades, depth = _arrays(run.probe.trades), _arrays(run.probe.depth)
    out = []
    for symbol, opened, when in stamps:
        end = opened + SECOND.ms
        found = [_first_at(*trades[symbol], end)]
        if run.close_lag_ms is not None:
            found.append(_first_at(*depth[symbol], end + run.close_lag_ms))
        recv = min((f for f in found if f is not None), default=None)
        if recv is not None and step.start_ns <= recv <= step.end_ns:
            out.append((when - recv) / 1e6)
    return np.array(out)


def _handle_ms(run: Run, kind: str, step: Step) -> np.ndarray:
    recv, ns = (np.array(x, np.int64) for x in run.probe.handle.get(kind, ([], [])))
    return ns[(recv >= step.start_ns) & (recv <= step.end_ns)] / 1e6


def _batch_cob(flow: SymbolFlow) -> tuple[float, float]:
    """Seconds per depth event and per snapshot of ``iter_cob`` (best of 3) over the flow's
    depth (the REST snapshot and every diff, in the depth files' row layout)."""
    names = ("local_ts_ns", "event_time", "first_update_id", "final_update_id", "side",
             "price", "qty", "is_snapshot")  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    snap, last = flow.snapshot, flow.snapshot.last_update_id
    for side, levels in (("bid", snap.bids), ("ask", snap.asks)):
        rows += [(0, flow.start_ms, last, last, side, p, q, True) for p, q in levels]
    diffs = (e for e in flow.events() if isinstance(e, DepthDiff))
    for i, d in enumerate(diffs, 1):
        for side, levels in (("bid", d.bids), ("ask", d.asks)):
            rows += [(i, d.time_ms, d.first_id, d.last_id, side, p, q, False) for p, q in levels]
    events = DepthEvents(pd.DataFrame(rows, columns=names).assign(prev_final_update_id=-1))

    def replay() -> int:
        return sum(1 for _ in iter_cob(events, OrderBook(flow.symbol), COBConfig()))

    snapshots = replay()  # also the warm-up
    spent = best_of(replay, 3, warmup=False)
    return spent / len(events), spent / max(snapshots, 1)


def _batch_bars(flow: SymbolFlow) -> float:
    """Seconds per 1s candle (best of 3): ``aggregate_trades`` over the flow's trades, then
    each candle appended to a market frame and the cursor advanced (what the live path
    ends with)."""
    prints = [e for e in flow.events() if isinstance(e, TradePrint)]
    trades = Trades(
        timestamp=np.array([p.time_ms for p in prints], np.int64),
        price=np.array([p.price for p in prints]),
        quantity=np.array([p.qty for p in prints]),
        is_buyer_maker=np.array([p.buyer_maker for p in prints]),
        trade_id=np.array([p.trade_id for p in prints], np.int64),
    )
    symbol = str(flow.symbol)

    def batch() -> int:
        candles = aggregate_trades(trades, SECOND).candles
        frame = MarketFrame(capacity=OrchestratorConfig().frame_capacity)
        for i in range(len(candles)):
            frame.append_candles(symbol, SECOND, candles.rows(i, i + 1))
            frame.advance(symbol, int(candles.timestamp[i]) + SECOND.ms)
        return len(candles)

    return best_of(batch, 3) / max(batch(), 1)


def _row(name: str, values: np.ndarray | float, batch: float | None = None) -> str:
    """A row: n, p50, p99, max in ms (or one figure), and the ratio p50 / ``batch``."""
    if isinstance(values, float):
        return f"{name:<46}{'':>6} {values:8.3f}"
    if not len(values):
        return f"{name:<46}{0:>6} {'-':>8} {'-':>8} {'-':>8}"
    p50, p99 = np.percentile(values, [50, 99])
    ratio = "" if batch is None else f" {p50 / batch:9.0f}x"
    return f"{name:<46}{len(values):>6} {p50:8.2f} {p99:8.2f} {values.max():8.2f}{ratio}"


def _p99(values: np.ndarray) -> float:
    return float(np.percentile(values, 99)) if len(values) else float("nan")


def _report(run: Run, flows: list[SymbolFlow]) -> None:
    lat = run.latency
    cob, cob_handled = _cob_latency(run, lat)
    bars, made = _bar_latency(run, lat, run.frame.seen), _bar_latency(run, lat, run.feed.bar_made)
    per_event, per_snapshot = np.mean([_batch_cob(f) for f in flows], axis=0) * 1e3
    per_bar = float(np.mean([_batch_bars(f) for f in flows])) * 1e3
    depth_ns = np.array(run.probe.handle.get("depth", ([], []))[1], np.float64)
    per_level = depth_ns.sum() / max(int(np.sum(run.probe.levels)), 1)
    header = f"{'n':>6} {'p50':>8} {'p99':>8} {'max':>8} {'ratio':>10}"
    print(f"\nat {lat.speed:g}x for {lat.wall_s:.0f} s: {lat.rate(lat.frames):,.0f} frames/s "
          f"received; client CPU {lat.cpu_s / lat.wall_s:.0%}, server CPU "
          f"{lat.server_cpu_s / lat.wall_s:.0%}")  # fmt: skip

    print(f"\n{'1. depth frame -> COB snapshot (ms)':<46}{header}")
    print(_row("live: socket -> SymbolPipeline.on_book", cob, per_event))
    print(_row("  of which socket -> Collector.handle", cob_handled))
    print(_row("batch iter_cob, per depth event", float(per_event)))
    print(_row("batch iter_cob, per snapshot", float(per_snapshot)))
    print(_row("ccxt decode + handle, per depth message", _handle_ms(run, "depth", lat)))
    print(f"{'ccxt µs per depth level changed':<46}{'':>6} {per_level / 1e3:8.3f}")
    verdict = "PASS" if _p99(cob) < GOAL_COB_MS else "FAIL"
    print(f"goal: depth frame -> COB snapshot p99 < {GOAL_COB_MS:.0f} ms at {lat.speed:g}x: "
          f"{_p99(cob):.2f} ms {verdict}")  # fmt: skip

    print(f"\n{'2. trade frame -> 1s candle in the frame (ms)':<46}{header}")
    print(_row("live: socket -> MarketFrame (visible)", bars, per_bar))
    print(_row("  of which socket -> CandleClosed published", made))
    print(_row("batch aggregate_trades + frame, per candle", per_bar))
    print(_row("ccxt decode + handle, per trade message", _handle_ms(run, "trade", lat)))
    verdict = "PASS" if _p99(bars) < GOAL_CANDLE_MS else "FAIL"
    print(f"goal: trade frame -> 1s candle visible p99 < {GOAL_CANDLE_MS:.0f} ms at "
          f"{lat.speed:g}x: {_p99(bars):.2f} ms {verdict}")  # fmt: skip

    print(f"\n3. sustained ingest (the capture at 1x offers {run.base_rate:,.1f} frames/s)")
    print(f"{'speed':>6} {'offered/s':>10} {'got/s':>9} {'queued':>7} {'client':>7} "
          f"{'server':>7} {'lag ms':>7} {'slope':>7} {'COB p99':>8} {'bar p99':>8}  "
          "verdict")  # fmt: skip
    best: Step | None = None
    for step in run.ramp:
        ok = step.kept_up() and not step.server_behind()
        best = step if ok else best
        verdict = "kept up" if step.kept_up() else "behind"
        verdict += f" ({step.trouble} gaps/resyncs/disconnects)" if step.trouble else ""
        verdict += ", server behind its pace" if step.server_behind() else ""
        c99 = _p99(_cob_latency(run, step)[0])
        b99 = _p99(_bar_latency(run, step, run.frame.seen))
        print(f"{step.speed:>5g}x {step.rate(step.offered):>10,.0f} "
              f"{step.rate(step.frames):>9,.0f} {step.queued:>7,} {step.cpu_s / step.wall_s:>7.0%} "
              f"{step.server_cpu_s / step.wall_s:>7.0%} {step.end_lag():>7.1f} "
              f"{step.slope():>7.1f} {c99:>8.1f} {b99:>8.1f}  {verdict}")  # fmt: skip
    rate = 0.0
    if best is None:
        print("sustained: no step kept up")
    else:
        rate, share = best.rate(best.frames), best.cpu_s / best.wall_s
        print(f"sustained: {rate:,.0f} frames/s at {best.speed:g}x with the client at "
              f"{share:.0%} of a core = {rate / max(share, 1e-9):,.0f} frames per client "
              "CPU-second")  # fmt: skip
    print("\n".join(PEERS))
    need = GOAL_RATE_X * run.base_rate
    verdict = "PASS" if rate >= need else "FAIL"
    print(f"goal: sustained >= {GOAL_RATE_X:.0f}x the capture ({need:,.0f} frames/s) in one "
          f"client process: {rate:,.0f} frames/s {verdict}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase")
    parser.add_argument("--source", choices=("auto", "recorded", "synthetic"), default="auto")
    parser.add_argument("--latency-speed", type=float, default=1.0)
    parser.add_argument("--latency-s", type=float, default=120.0)
    parser.add_argument("--speeds", type=float, nargs="+", default=list(RAMP))
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--settle-s", type=float, default=1.0)
    parser.add_argument("--loops", type=int, default=0, help="capture loops (0: enough)")
    args = parser.parse_args(argv)
    if args.quick:
        args.latency_speed, args.latency_s = 5.0, 4.0
        args.speeds, args.step_s, args.settle_s = [10.0, 20.0], 2.0, 0.5
    if not args.loops:
        market_s = args.latency_speed * (args.latency_s + 1) + sum(
            s * (args.step_s + args.settle_s + 0.5) for s in args.speeds
        )
        args.loops = int(market_s // 600) + 2
    print(f"load average (1 min): {_load_avg()}")
    server = ServerProcess(args.source, args.loops)
    try:
        print(f"server: subprocess {server.proc.pid}, binance site at {server.info['rest']}; "
              f"{server.info['source']}; looped {args.loops}x, bookTicker left out")  # fmt: skip
        flows, _ = base_flows(args.source)
        run = asyncio.run(_client(server, args))
    finally:
        server.close()
    _report(run, flows)
    print(f"load average (1 min): {_load_avg()}")


if __name__ == "__main__":
    main()
