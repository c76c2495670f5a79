"""Live trading path: closed bar → order on the wire, the journal's write, reconciling a
large account; each beside a baseline measured in the same process, with the ratio.

Run ``python benchmarks/bench_trading.py`` (~3 min; ``--quick`` ~30 s: the smoke test's path).
One process: a ``LocalExchangeThread`` (Binance site, 127.0.0.1, manual mode, 6,000
weight/min) serves seeded synthetic 1 s flows around 100; ``ExchangeBroker`` (default config)
over a real signed ccxt 4.5.90 client and a ``SqliteOrderJournal`` (WAL, NORMAL).

1. **Bar → order on the wire** (ms): the ``Kernel`` as the live node builds it (its
   ``MarketClock`` moved to each close, ``RiskManager``, ``ActionExecutor``, the broker as
   listener, ``JournalRecorder``); a source BUYs 1.0 when flat, SELLs when long: one market
   order a bar, bars 150 ms apart. On the wire = the engine's NEW (request read, signature
   and weight checked, order accepted), stamped by an engine listener; also bar → ccxt
   ``fetch`` of the POST (risk, journal appends, loop hop, ccxt throttle, signing) and →
   ``submit`` returned; ccxt's throttle on and off (off is shipped: decision 299; the
   venue's headers pace requests). Baseline: the same kernel over
   ``SimulatedBroker`` (the backtest path). Goal: p99 < 20 ms.
2. **Journal write** (µs): ``append`` of one order snapshot (~600 B JSON); baselines
   ``synchronous="full"`` and JSON lines + flush + ``os.fsync``. Goal: p99 < 1 ms.
3. **Reconciliation**: 1,000 limit buys resting at 50 (100 on each of 10 symbols) and 10,000
   fills (market 0.2 buys / 0.1998 sells) put straight into the engine; the journal gets the
   broker's placement entries; a first ``start()`` books the fills (untimed); then
   ``start()``/``reconcile()``, throttle on and off, requests and weight counted at the
   venue. Baseline: the pure ``reconcile(journal state, venue state)`` (no I/O).

Today (2-core x86_64 VM, Python 3.11, load 0.2; ms, µs, s as headed; 252 s):

    1. bar -> order on the wire (ms)              n      p50      p99      max   p50/sim
    no throttle: bar -> engine NEW (on the wire) 300    2.45     8.05    11.28     28.8x
      bar -> ccxt fetch of the POST             300     1.59     5.32     7.12     18.7x
      bar -> submit returned (reply)            300     3.71    10.92    13.65     43.6x
      whole kernel.step                         300     3.93    11.19    16.04     43.8x
    sim: bar -> SimulatedBroker.submit returned 300     0.09     0.17     0.42
    goal p99 < 20 ms: with ccxt's throttle on 19.09 ms met; off (shipped) 8.05 ms met
    2. journal append, one order entry (µs)       n      p50      p99    p99.9 p50 ratio
    SqliteOrderJournal (WAL, NORMAL)          20000     30.9     88.6   3964.4
      same, synchronous=FULL                  20000    189.4    333.5   1266.8     6.14x
      JSON lines: write + flush + fsync       20000    173.9    338.1    426.1     5.64x
    goal p99 < 1 ms: 0.089 ms met
    3. reconcile: 1,000 open orders, 10,000 fills (s) n   median      min   vs pure
    broker.reconcile(), ccxt throttle on          3   10.707   10.507    769.1x
    broker.reconcile(), ccxt throttle off         3    1.399    1.376    100.5x
    pure reconcile(journal state, venue state)    3    0.014    0.014      1.0x
    broker.start(), throttle on / off             1   11.330 / 2.318
    JournalState.rebuild; first start (books all) 1    0.824 / 3.151
    requests / weight: reconcile 51 / 880, start() 53 / 901; start + one reconcile = 29.7 %
    of Binance's 6,000/min: within; differences: start() 0, reconciles 0, pure 0

Before three fixes (the first run, same machine): bar -> order p99 34.0 ms with ccxt's
throttle then on by default (its leaky bucket does not refill while idle, ccxt/ccxt#25556:
every order waited cost × rateLimit, one behind a REST poll up to 400 ms); the pure
reconcile 0.725 s (97 % in a deep copy of the journal state, now a copy sharing its frozen
values); 20 balance differences at start (Binance's ``commission``/``commissionAsset`` were
not read as the fee's asset). The reconcile now reads trades page by page and re-reads them
after the balance, hence more requests (51) than before (31).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from pivotal.config.models import ExchangeConfig
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock, WallClock
from pivotal.core.events import CandleClosed
from pivotal.core.journal import NewEntry, order_to_dict, request_to_dict
from pivotal.core.orders import Order, OrderRequest, OrderSide, OrderStatus, OrderType
from pivotal.core.ports import DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.types import TradingAction
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.localexchange.config import LOCAL_API_KEY, LOCAL_API_SECRET, ServeConfig
from pivotal.localexchange.engine_types import OrderSpec, OrderUpdate
from pivotal.localexchange.faults import FaultConfig, Verdict
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.node.control import MarketClock
from pivotal.node.journal_recorder import JournalRecorder
from pivotal.runtime.kernel import Kernel
from pivotal.runtime.recorder import MemoryRecorder
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.journal_state import JournalState
from pivotal.trading.reconcile import reconcile
from pivotal.trading.risk import RiskManager
from pivotal.venues.exchange_broker import ExchangeBroker, ExchangeBrokerConfig
from pivotal.venues.order_ids import client_order_id
from pivotal.venues.trading_client import ApiKeys, create_trading_client

T0 = 1_700_000_000_000
STEP = 0.0001  # lot step of the synthetic symbols (base units); tick 0.01
GOAL_WIRE_MS = 20.0
GOAL_APPEND_MS = 1.0
BUDGET = 6000  # Binance spot REQUEST_WEIGHT per minute (the local exchange's default)
PACE_S = 0.15
SYMBOLS = tuple(f"{b}/USDT" for b in ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE",
                                      "LTC", "DOT", "LINK"))  # fmt: skip


def _candles(bars: int, seed: int) -> Candles:
    """A seeded random walk of 1 s candles around 100; volume 5,000 a bar (a deep book)."""
    close = np.round(100 + np.cumsum(np.random.default_rng(seed).normal(0, 0.05, bars)), 2)
    opens = np.r_[100.0, close[:-1]]
    high, low = np.maximum(opens, close) + 0.02, np.minimum(opens, close) - 0.02
    ts = np.arange(bars, dtype=np.int64) * 1000 + T0
    return Candles(ts, opens, np.round(high, 2), np.round(low, 2), close, np.full(bars, 5e3))


def _exchange(symbols: Sequence[str], bars: int) -> LocalExchangeThread:
    """The local exchange serving ``symbols`` (seeds 1, 2, ...), stepped to its first second."""
    flows = [synthetic_flow(_candles(bars, k), "1s", s, seed=k, tick_size=0.01, step_size=STEP)
             for k, s in enumerate(symbols, 1)]  # fmt: skip
    config = ServeConfig(mode="manual", check_timestamps=False,
                         faults=FaultConfig(weight_per_minute=BUDGET))  # fmt: skip
    ex = LocalExchangeThread(flows, config).start()
    ex.advance_to(T0 + 999)
    return ex


def _factory(ex: LocalExchangeThread, throttle: bool, posts: list[int]) -> Callable[[], Any]:
    """A signed ccxt client to ``ex`` (``throttle``: ccxt's ``enableRateLimit``); ``posts``
    gets the time each new-order POST enters ccxt's ``fetch`` (signed, before the socket)."""
    urls = ex.urls["binance"]
    config = ExchangeConfig(rest_url=urls.rest, ws_url=urls.ws, timeout_s=10)
    keys = ApiKeys(LOCAL_API_KEY, LOCAL_API_SECRET, source="local exchange")

    def make() -> Any:
        client = create_trading_client("binance", config, keys, testnet=False)
        client.enableRateLimit = throttle
        fetch = client.fetch

        async def stamped(url: str, method: str = "GET", headers: Any = None,
                          body: Any = None) -> Any:  # fmt: skip
            if method == "POST" and url.split("?")[0].endswith("/order"):
                posts.append(time.perf_counter_ns())
            return await fetch(url, method, headers, body)

        client.fetch = stamped
        return client

    return make


def _pcts(values: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 99)) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    return [float(x) for x in np.percentile(arr, qs)] if len(arr) else [float("nan")] * len(qs)


# -- 1. closed bar -> order on the wire ------------------------------------------------------
class FlipSource:
    """BUY 1.0 when flat, SELL (exit) when long: one market order every bar."""

    name = "flip"

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        return None

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        long = context.position > 0
        return [TradingAction(symbol=Symbol.parse(context.symbol), timestamp=context.timestamp,
                              action="SELL" if long else "BUY", confidence=1.0,
                              source=self.name, quantity=None if long else 1.0)]  # fmt: skip


@dataclass
class WireRun:
    """ms per bar of one live run (``wire``: bar → engine NEW) or the simulated one."""

    wire: np.ndarray
    fetch: np.ndarray  # bar -> ccxt fetch of the POST
    reply: np.ndarray  # bar -> submit returned
    step: np.ndarray  # the whole kernel.step
    missed: int = 0  # bars whose order never reached the engine


def _kernel(broker: Any, clock: Any, recorder: Any, *, venue: Any, listeners: Any) -> Kernel:
    risk = RiskManager()
    executor = ActionExecutor(broker, risk, fees=FeeSchedule(), lot_size=STEP)
    return Kernel(clock=clock, broker=broker, risk=risk, source=FlipSource(),
                  executor=executor, timeframe="1s", recorder=recorder, venue=venue,
                  listeners=listeners)  # fmt: skip


def _time_submit(broker: Any, stamps: list[int]) -> None:
    """Stamp the return of each ``broker.submit`` (wrapped on the instance)."""
    submit = broker.submit

    def timed(request: OrderRequest) -> Order:
        order = submit(request)
        stamps.append(time.perf_counter_ns())
        return order

    broker.submit = timed


def _run_bars(kernel: Kernel, candles: Candles, bars: int, stamps: dict[str, list[int]],
              before: Callable[[int], None]) -> WireRun:  # fmt: skip
    """Hand ``bars`` closed bars to ``kernel.step`` (``before(close)`` first); per bar, ms
    from the hand-over to the first stamp of each list within the step."""
    out: dict[str, list[float]] = {key: [] for key in (*stamps, "step")}
    for i in range(bars):
        close = int(candles.timestamp[i]) + 1000
        before(close)
        marks = {key: len(rows) for key, rows in stamps.items()}
        event = CandleClosed("BTC/USDT", kernel.timeframe, candles.rows(i, i + 1), close)
        t0 = time.perf_counter_ns()
        kernel.step([event])
        t1 = time.perf_counter_ns()
        out["step"].append((t1 - t0) / 1e6)
        for key, rows in stamps.items():
            got = [t for t in rows[marks[key] :] if t0 <= t <= t1]
            if got:
                out[key].append((got[0] - t0) / 1e6)
    arrays = {key: np.array(values) for key, values in out.items()}
    wire = arrays["wire"]
    return WireRun(wire, arrays.get("fetch", wire), arrays.get("reply", wire), arrays["step"],
                   bars - len(wire))  # fmt: skip


def bench_wire(bars: int, tmp: Path, *, throttle: bool = True, pace_s: float = PACE_S) -> WireRun:
    """Part 1, the live path (module docstring): ``bars`` kernel steps, one order each."""
    candles = _candles(bars + 5, seed=1)
    ex = _exchange(["BTC/USDT"], bars + 5)
    stamps: dict[str, list[int]] = {"wire": [], "fetch": [], "reply": []}
    ex.exchange.engine("binance").add_listener(
        lambda u: stamps["wire"].append(time.perf_counter_ns())
        if isinstance(u, OrderUpdate) and u.execution == "NEW" else None
    )  # fmt: skip
    journal = SqliteOrderJournal(tmp / f"wire-{throttle}.sqlite")
    clock = MarketClock(T0)  # the node's clock: the feed moves it to each event time
    broker = ExchangeBroker(_factory(ex, throttle, stamps["fetch"]),
                            venue="binance", symbols=["BTC/USDT"], clock=clock,
                            journal=journal, session_id="bench")  # fmt: skip
    next_at = [time.perf_counter() + pace_s]

    def paced(close: int) -> None:  # bars pace_s apart, 0.1 s at least after a slow step
        ex.advance_to(close)  # (so the user stream has brought the last order's balances)
        now = time.perf_counter()
        time.sleep(max(0.1, next_at[0] - now))
        next_at[0] = max(next_at[0], now) + pace_s
        clock.advance_to(close)

    try:
        broker.start()
        _time_submit(broker, stamps["reply"])
        kernel = _kernel(broker, clock, JournalRecorder(journal, clock), venue=None,
                         listeners=(broker,))  # fmt: skip
        return _run_bars(kernel, candles, bars, stamps, paced)
    finally:
        broker.close()
        journal.close()
        ex.stop()


def bench_sim(bars: int) -> WireRun:
    """Part 1's baseline: the backtest path over the same bars (bar → submit returned)."""
    clock = ReplayClock(T0)
    sim = SimulatedBroker(clock, SimulatedBrokerConfig(lot_size=STEP), bar_ms=1000,
                          symbols=["BTC/USDT"])  # fmt: skip
    stamps: dict[str, list[int]] = {"wire": []}
    _time_submit(sim, stamps["wire"])
    kernel = _kernel(sim, clock, MemoryRecorder(), venue=sim, listeners=())
    return _run_bars(kernel, _candles(bars + 5, seed=1), bars, stamps, clock.advance_to)


# -- 2. journal write ------------------------------------------------------------------------
def _order_entry(i: int) -> NewEntry:
    cid = client_order_id("bench", T0 + i, "BTC/USDT", 0)
    request = OrderRequest("BTC/USDT", OrderSide.BUY, OrderType.LIMIT, quantity=0.25,
                           limit_price=50.0, client_order_id=cid)  # fmt: skip
    order = Order(request, cid, cid, OrderStatus.PARTIALLY_FILLED, T0 + i, T0 + i + 5, 0.25,
                  filled_quantity=0.1, average_fill_price=50.0, fees_paid=0.005,
                  venue_order_id=str(100_000 + i))  # fmt: skip
    return NewEntry(T0 + i, "order", {"order": order_to_dict(order)}, cid, "BTC/USDT")


def _each_us(write: Callable[[NewEntry], Any], entries: list[NewEntry], warmup: int) -> np.ndarray:
    times = []
    for entry in entries:
        t0 = time.perf_counter_ns()
        write(entry)
        times.append(time.perf_counter_ns() - t0)
    return np.array(times[warmup:]) / 1e3


def bench_journal(n: int, tmp: Path, warmup: int = 200) -> dict[str, np.ndarray]:
    """Part 2: µs per append of one order entry, per store (``n`` each after ``warmup``)."""
    entries = [_order_entry(i) for i in range(n + warmup)]
    out: dict[str, np.ndarray] = {}
    for mode in ("normal", "full"):
        with SqliteOrderJournal(tmp / f"append-{mode}.sqlite", synchronous=mode) as journal:  # type: ignore[arg-type]
            out[mode] = _each_us(lambda e, j=journal: j.append([e]), entries, warmup)
    with open(tmp / "append.jsonl", "a", encoding="utf-8") as fh:

        def write(e: NewEntry) -> None:
            row = {"ts": e.ts, "kind": e.kind, "client_order_id": e.client_order_id,
                   "symbol": e.symbol, "data": e.data}  # fmt: skip
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

        out["jsonl"] = _each_us(write, entries, warmup)
    return out


# -- 3. reconciliation -----------------------------------------------------------------------
class WeightMeter:
    """Counts the requests and weight the venue's rate limiter accepted (wraps ``charge``)."""

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.requests, self.weight, self.waited_s = 0, 0, 0.0
        charge = limiter.charge

        def counted(weight: int) -> Verdict:
            verdict = charge(weight)
            if verdict.status == 200:
                self.requests += 1
                self.weight += weight
            return verdict

        limiter.charge = counted

    def fresh_window(self, need: int) -> None:
        """Wait for the next one-minute window when this one cannot take ``need`` more weight
        under 80 % of the budget (where the broker's header limiter starts to slow down)."""
        if self.limiter.used() + need > 0.8 * BUDGET:
            wait = self.limiter.reset_in_s() + 0.2
            self.waited_s += wait
            time.sleep(wait)


@dataclass
class Phase:
    """One broker on the journal: its ``start()`` and ``reconcile()`` times (s)."""

    start_s: float
    start_fields: list[str]  # the fields of the differences start() found
    reconcile_s: list[float] = field(default_factory=list)
    differences: int = 0  # found by the reconciles after start()
    cost: tuple[int, int] = (0, 0)  # requests, weight of one reconcile()
    start_cost: tuple[int, int] = (0, 0)  # of start()


@dataclass
class ReconcileResult:
    open_orders: int
    fills: int
    first_s: float  # the first start(): books every fill
    first_booked: int
    rebuild_s: float
    throttled: Phase | None = None
    free: Phase | None = None
    venue_state_s: list[float] = field(default_factory=list)
    pure_s: list[float] = field(default_factory=list)
    venue_fills: int = 0
    pure_differences: int = 0
    waited_s: float = 0.0


def _populate(ex: LocalExchangeThread, per_open: int, per_fills: int,
              journal: SqliteOrderJournal) -> tuple[int, int]:  # fmt: skip
    """Orders straight into the engine; the journal gets the broker's placement entries."""
    engine = ex.exchange.engine("binance")

    def place_one(name: str, i: int, buy: bool, qty: str, limit: bool) -> tuple[Any, ...]:
        cid = client_order_id("seed", T0, name, i, "l" if limit else "m")
        req = OrderRequest(name, OrderSide.BUY if buy else OrderSide.SELL,
                           OrderType.LIMIT if limit else OrderType.MARKET, quantity=float(qty),
                           limit_price=50.0 if limit else None, client_order_id=cid)  # fmt: skip
        spec = OrderSpec(Symbol.resolve(name), "BUY" if buy else "SELL",
                         "LIMIT" if limit else "MARKET", quantity=Decimal(qty),
                         price=Decimal(50) if limit else None, client_order_id=cid)  # fmt: skip
        return (req, *engine.place(spec))

    async def place() -> list[tuple[Any, ...]]:
        placed: list[tuple[Any, ...]] = []
        for name in SYMBOLS:
            i = filled = 0
            while filled < per_fills:  # alternate market buys and sells until enough fills
                placed.append(place_one(name, i, i % 2 == 0, "0.1998" if i % 2 else "0.2", False))
                filled, i = filled + len(placed[-1][2]), i + 1
            placed += [place_one(name, j, True, "0.25", True) for j in range(per_open)]
        return placed

    statuses = {"NEW": OrderStatus.OPEN, "FILLED": OrderStatus.FILLED}
    entries: list[NewEntry] = []
    for req, snap, _ in ex.call(place(), 300):
        cid, ts, qty = req.client_order_id or "", T0 + 1000, float(snap.executed_qty)
        status = statuses.get(snap.status, OrderStatus.EXPIRED)
        order = Order(req, cid, cid, status, ts, ts, req.quantity, filled_quantity=qty,
                      venue_order_id=str(snap.order_id),
                      average_fill_price=float(snap.cum_quote) / qty if qty else None)  # fmt: skip
        intent = {"request": request_to_dict(req), "order_id": cid, "notes": [],
                  "local_stop": False}  # fmt: skip
        done = {"order": order_to_dict(order)}
        entries += [NewEntry(ts, "intent", intent, cid, req.symbol),
                    NewEntry(ts, "submitted", {"attempt": 1}, cid, req.symbol),
                    NewEntry(ts, "order", done, cid, req.symbol)]  # fmt: skip
    for i in range(0, len(entries), 3000):
        journal.append(entries[i : i + 3000])
    return len(engine.open_orders()), len(engine.fills())


def _broker(ex: LocalExchangeThread, journal: SqliteOrderJournal, throttle: bool) -> ExchangeBroker:
    config = ExchangeBrokerConfig(poll_interval_s=0.2)  # the stream's first poll comes soon
    return ExchangeBroker(_factory(ex, throttle, []), venue="binance", symbols=SYMBOLS,
                          clock=WallClock(), journal=journal, config=config,
                          session_id="bench")  # fmt: skip


def _secs(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds ``fn()`` took, what it returned)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _phase(broker: ExchangeBroker, meter: WeightMeter, repeats: int) -> Phase:
    before = (meter.requests, meter.weight)
    took, report = _secs(broker.start)
    phase = Phase(took, [d.field for d in report.differences])
    phase.start_cost = (meter.requests - before[0], meter.weight - before[1])
    deadline = time.monotonic() + 15  # the stream's first REST poll over: 0.5 s quiet
    while time.monotonic() < deadline:
        seen = meter.requests
        time.sleep(0.5)
        if meter.requests == seen and broker.stream is not None and broker.stream.polls >= 1:
            break
    before = (meter.requests, meter.weight)
    for _ in range(repeats):
        took, report = _secs(broker.reconcile)
        phase.reconcile_s.append(took)
        phase.differences += len(report.differences)
    phase.cost = ((meter.requests - before[0]) // repeats, (meter.weight - before[1]) // repeats)
    return phase


def bench_reconcile(per_open: int, per_fills: int, tmp: Path, repeats: int = 3) -> ReconcileResult:
    """Part 3 (module docstring): ``per_open`` open orders and ``per_fills`` fills on each of
    the 10 symbols."""
    ex = _exchange(SYMBOLS, 30)
    meter = WeightMeter(ex.exchange.sites["binance"].limiter)
    path = tmp / "reconcile.sqlite"
    try:
        with SqliteOrderJournal(path) as journal:
            n_open, n_fills = _populate(ex, per_open, per_fills, journal)
            first = _broker(ex, journal, throttle=False)
            first_s, booked = _secs(first.start)
            first.close()
        with SqliteOrderJournal(path) as journal:
            rebuild_s, _ = _secs(lambda: JournalState.rebuild(journal.entries(), quote="USDT"))
            result = ReconcileResult(n_open, n_fills, first_s, len(booked.book_fills), rebuild_s)
            for throttle in (True, False):  # weight: start + poll ~600, 480 a venue state
                meter.fresh_window(600 + 480 * repeats * (1 if throttle else 2))
                broker = _broker(ex, journal, throttle)
                try:
                    phase = _phase(broker, meter, repeats)
                    if throttle:
                        result.throttled = phase
                        continue
                    result.free = phase
                    for _ in range(repeats):
                        took, state = _secs(broker.venue_state)
                        result.venue_state_s.append(took)
                    result.venue_fills, local = len(state.fills), broker.journal_state
                    for _ in range(repeats):
                        took, pure = _secs(lambda a=local, b=state: reconcile(a, b))
                        result.pure_s.append(took)
                        result.pure_differences += len(pure.differences)
                finally:
                    broker.close()
        result.waited_s = meter.waited_s
    finally:
        ex.stop()
    return result


# -- report ----------------------------------------------------------------------------------
def _row(name: str, values: np.ndarray, base: float | None = None) -> str:
    p50, p99 = _pcts(values)
    worst = float(values.max()) if len(values) else float("nan")
    ratio = f" {p50 / base:8.1f}x" if base else ""
    return f"{name:<46}{len(values):>5} {p50:8.2f} {p99:8.2f} {worst:8.2f}{ratio}"


def report_wire(live: WireRun, free: WireRun, sim: WireRun, bars: int) -> None:
    base = _pcts(sim.reply)[0]
    print(f"\n{'1. closed bar -> order on the wire (ms)':<46}{'n':>5} {'p50':>8} {'p99':>8} "
          f"{'max':>8} {'p50/sim':>9}")  # fmt: skip
    for label, run in (("live", live), ("no throttle", free)):
        print(_row(f"{label}: bar -> engine NEW (on the wire)", run.wire, base))
        print(_row("  bar -> ccxt fetch of the POST", run.fetch, base))
        print(_row("  bar -> submit returned (reply)", run.reply, base))
        print(_row("  whole kernel.step", run.step, _pcts(sim.step)[0]))
    print(_row("sim: bar -> SimulatedBroker.submit returned", sim.reply))
    print(_row("sim: whole kernel.step", sim.step))
    print(f"bars without an order on the wire: {live.missed}, {free.missed} (throttle off), "
          f"{sim.missed} (sim) of {bars}")  # fmt: skip
    for label, run in (("", live), (" (ccxt throttle off)", free)):
        p99 = _pcts(run.wire)[1]
        print(f"goal: bar -> order on the wire p99 < {GOAL_WIRE_MS:.0f} ms{label}: {p99:.2f} ms "
              f"{'met' if p99 < GOAL_WIRE_MS else 'NOT met'}")  # fmt: skip


def report_journal(r: dict[str, np.ndarray]) -> None:
    print(f"\n{'2. journal append, one order entry (µs)':<46}{'n':>5} {'p50':>8} {'p99':>8} "
          f"{'p99.9':>8} {'p50 ratio':>9}")  # fmt: skip
    base = _pcts(r["normal"], (50,))[0]
    for key, label in (("normal", "SqliteOrderJournal (WAL, synchronous=NORMAL)"),
                       ("full", "  same, synchronous=FULL (fsync each)"),
                       ("jsonl", "  JSON lines: write + flush + fsync")):  # fmt: skip
        p50, p99, p999 = _pcts(r[key], (50, 99, 99.9))
        ratio = f" {p50 / base:8.2f}x" if key != "normal" else ""
        print(f"{label:<46}{len(r[key]):>5} {p50:8.1f} {p99:8.1f} {p999:8.1f}{ratio}")
    p99 = _pcts(r["normal"])[1] / 1e3
    verdict = "met" if p99 < GOAL_APPEND_MS else "NOT met"
    print(f"goal: append p99 < {GOAL_APPEND_MS:.0f} ms: {p99:.3f} ms {verdict}")


def report_reconcile(r: ReconcileResult) -> None:
    assert r.throttled is not None and r.free is not None
    pure = statistics.median(r.pure_s)
    print(f"\n3. reconciliation: {r.open_orders:,} open orders, {r.fills:,} fills on "
          f"{len(SYMBOLS)} symbols (venue state: {r.venue_fills:,} fills)")  # fmt: skip
    print(f"{'(seconds)':<46}{'n':>5} {'median':>8} {'min':>8} {'':>8} {'vs pure':>9}")
    rows = (("broker.reconcile(), ccxt throttle on", r.throttled.reconcile_s),
            ("broker.reconcile(), ccxt throttle off", r.free.reconcile_s),
            ("  venue_state() alone (I/O), throttle off", r.venue_state_s),
            ("pure reconcile(journal state, venue state)", r.pure_s),
            ("broker.start(), ccxt throttle on", [r.throttled.start_s]),
            ("broker.start(), ccxt throttle off", [r.free.start_s]),
            ("  JournalState.rebuild of the journal", [r.rebuild_s]),
            (f"first start(): booked {r.first_booked:,} fills", [r.first_s]))  # fmt: skip
    for label, values in rows:
        med = statistics.median(values)
        print(f"{label:<46}{len(values):>5} {med:8.3f} {min(values):8.3f} {'':>8} "
              f"{med / pure:8.1f}x")  # fmt: skip
    (requests, weight), (start_requests, start_weight) = r.free.cost, r.free.start_cost
    total = start_weight + weight
    print(f"requests / weight: reconcile {requests} / {weight}, start() {start_requests} / "
          f"{start_weight}; start + one reconcile = {total} of Binance's {BUDGET:,}/min "
          f"({total / BUDGET:.1%}): {'within' if total <= BUDGET else 'OVER'}; at most "
          f"{BUDGET // max(weight, 1)} reconciles a minute")  # fmt: skip
    starts = [f"{len(p.start_fields)} ({', '.join(sorted(set(p.start_fields))) or '-'})"
              for p in (r.throttled, r.free)]  # fmt: skip
    print(f"differences: start() {starts[0]}, then {starts[1]}; reconciles after start "
          f"{r.throttled.differences + r.free.differences}; pure {r.pure_differences}; "
          f"waited {r.waited_s:.0f} s for fresh weight windows")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke test)")
    args = parser.parse_args(argv)
    sizes = (30, 2_000, 10, 100, 1) if args.quick else (300, 20_000, 100, 1000, 3)
    bars, appends, per_open, per_fills, repeats = sizes
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load (1 min) {os.getloadavg()[0]:.2f}")  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-trading-") as tmp:
        live = bench_wire(bars, Path(tmp))
        free = bench_wire(bars, Path(tmp), throttle=False)
        report_wire(live, free, bench_sim(bars), bars)
        report_journal(bench_journal(appends, Path(tmp)))
        report_reconcile(bench_reconcile(per_open, per_fills, Path(tmp), repeats))
    print(f"\nran {time.perf_counter() - started:.0f} s; load (1 min) {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
