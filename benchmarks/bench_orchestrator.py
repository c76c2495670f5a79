"""Orchestrator speed on real BTC/USDT 1m bars: decision latency and a 30-day backtest.

Run ``python benchmarks/bench_orchestrator.py`` (about 8 minutes on a 2-core CPU at
today's speed, most of it the three 30-day runs; ``--profile`` adds a cProfile of the
30-day run, about 12 minutes more; ``--quick``: 2,000 bars and 300 decisions, about a
minute). Data: the real BTC/USDT 1m file of ``../shared/data``; without it the bench says
so and exits (random prices would make the models and the learning loop do other work).
Sizes are :class:`Settings`: the newest ``run_bars`` bars (43,200 = 30 days) are measured,
the ``train_bars`` before them train the experts, ``pre_bars`` more are indicator warm-up.
All of it goes into temporary DuckDB stores, the 5m stream resampled from the 1m bars
(complete buckets: the exchange's 5m candles on a gap-free span).

**Experts**, trained in the bench in seconds with the sizes of the demo's Stage 6 step
(``pivotal.apps.cli.demo_orchestrator``) on 1m bars with a 5m stream (the demo: 5m + 1h):
a PivotCNN (conv 16, 16; recurrent 16; fusion 32; 32 frames; default per-candle columns;
pivot and 12-bar direction targets; one epoch) and a DQN over its features (hidden 32, 2
heads, 16 frames, a few hundred steps). Their quality is not the point; their compute is.
The orchestrator runs both (the DQN reads the CNN's output of the same step) with the
demo's gate, the default learning loop (12-bar horizon, online updates of the CNN's action
head, promoted checkpoints saved) and the inference history; trading settings:
:data:`TRADING`, the same for the peer.

**1. Decision latency**, from a closed bar to the order at the broker, on the pushed path
(bars pushed one at a time through the runtime's loop, experts on worker threads, learning
results applied when ready, as paper and live trading run): one kernel decision (decision
context, ``Orchestrator.decide``, risk review, ``SimulatedBroker.submit``), timed by
wrapping the method on the kernel instance, over ``latency_bars`` decisions after
``latency_warmup`` untimed ones (first calls pay lazy initialisation). Three cases: learning
and history on with bars **paced as live** (each bar arrives once the learning attempts and
history batches of the earlier ones are done, ``Orchestrator.settle``: a live 1m bar leaves
60 s for ~10-20 ms of training), the same with bars **back to back** (every decision competes
with that work for the CPU and the GIL: the worst case, a replay's), and both off. The
breakdown
wraps, on the instances: the coordinator's ``run`` ("experts": the sum of its
``StepResult.latency_ms``, the expert calls; "coordinator": the rest of ``run``, input
checks, the worker-thread hand-offs, output validation), the frame's ``input``, the gate
(``DecisionMaker.decide``), the learning loop's ``on_step`` (online training included when
it fires), the history (``record_of_step`` and the batched ``flush``) and the executor
(risk review + broker submit); "rest" is the remainder (decision context, candle
publication, output store, bookkeeping). Goal: p99 < 10 ms (``--latency-only``: this part
alone, a few minutes).

**2. 30 days orchestrated**: ``run_backtest_mode`` (what ``pivotal run`` calls), every bar
a decision, wall time from the call to its return (store read, expert prepare, the
backtest, the history's last flush and retention, buy-and-hold beside it, metrics); the
experts are loaded from their checkpoints before the clock starts (fresh for each run: the
learning loop changes them). Three runs separate the costs: learning and history on (goal:
< 60 s), learning off, both off. The peer, in the same process on the same candles and
settings: ``BacktestEngine`` with ``sma_cross``; "x peer time" is the ratio of wall times.

**Threads.** ``torch.set_num_threads(1)``: each inference is one sample through a small
network, a few hundred microseconds of work that a second intra-op thread cannot split
profitably; on a 2-core host more threads only add hand-offs and contention with the
orchestrator's own thread (the experts run on the coordinator's worker threads, which
inherit the setting). The host's CPU count and 1-minute load average are printed first and
last: other processes on a small host slow every figure, so compare runs at low load.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pivotal.backtest.engine import run_backtest
from pivotal.backtest.strategies import make_strategy
from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory
from pivotal.orchestrator import orchestrator as orchestrator_module
from pivotal.orchestrator.config import (
    ExpertConfig,
    GateConfig,
    HistoryConfig,
    LearningConfig,
    OrchestratorConfig,
)
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.orchestrator.pushed import replay_loop
from pivotal.orchestrator.run import build_experts, run_backtest_mode
from pivotal.orchestrator.run_file import RunConfig
from pivotal.runtime.kernel import Kernel
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of
from pivotal.testing.training import store_candles
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings

SYMBOL = "BTC/USDT"
BASE = Timeframe.M1
STREAM = Timeframe.M5
LATENCY_GOAL_MS = 10.0
RUN_GOAL_S = 60.0
SEED = 0

CNN_HYPERPARAMETERS: dict[str, Any] = {
    "levels": 3,
    "conv_channels": [16, 16],
    "kernel_size": 3,
    "stride": 2,
    "recurrent_size": 16,
    "context_size": 8,
    "fusion_size": 32,
    "dropout": 0.0,
}
"""The demo's PivotCNN (``demo_orchestrator._train_cnn``)."""
CNN_FRAMES = 32
DQN_FRAMES = 16
DQN_HIDDEN = 32
GATE = GateConfig(buy_threshold=0.45, sell_threshold=0.45, min_confidence=0.4)
"""The demo's gate."""
TRADING = TradingSettings(
    broker=SimulatedBrokerConfig(allow_short=True),
    risk=RiskConfig(allow_short=True, stop_loss_pct=0.005, take_profit_pct=0.005),
)
"""Defaults (100,000 USDT, 0.1 % taker fee, all-in) with shorts and a 0.5 % stop-loss and
take-profit: the quickly trained models tend to vote SELL, so a long-only account would
rarely send an order, and the order path (risk review, broker submit, protective exits)
would go unmeasured; the bracket closes positions so that new entries keep coming."""

COMPONENTS = (
    "experts",
    "coordinator",
    "frame input",
    "gate",
    "learning",
    "history",
    "risk + broker",
    "rest",
)
"""Parts of one decision's latency (module docstring), in the table's order."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes of one bench run (bars are 1m bars).

    ``pre_bars`` warm-up bars, then ``train_bars`` that train the experts, then the
    measured ``run_bars`` (the newest of the file). Latency: ``latency_warmup`` untimed then
    ``latency_bars`` timed decisions at the start of the measured span. ``dqn_steps``:
    environment steps of the DQN's training (``dqn_learning_starts`` of them before its
    first update). ``cnn_epochs``: passes of the CNN's training.
    """

    pre_bars: int = 3_000
    train_bars: int = 3_000
    run_bars: int = 43_200
    latency_warmup: int = 100
    latency_bars: int = 5_000
    cnn_epochs: int = 1
    dqn_steps: int = 600
    dqn_learning_starts: int = 200

    def __post_init__(self) -> None:
        for name in (
            "pre_bars",
            "train_bars",
            "run_bars",
            "latency_warmup",
            "latency_bars",
            "cnn_epochs",
            "dqn_steps",
            "dqn_learning_starts",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Settings.{name} must be a positive int, got {value!r}")
        if self.latency_warmup + self.latency_bars > self.run_bars:
            raise ValueError(
                f"Settings.latency_warmup + latency_bars ({self.latency_warmup} + "
                f"{self.latency_bars}) exceed run_bars ({self.run_bars}): the latency run "
                "takes its bars from the measured span; lower them or raise run_bars"
            )
        if self.dqn_learning_starts >= self.dqn_steps:
            raise ValueError(
                f"Settings.dqn_learning_starts ({self.dqn_learning_starts}) must be below "
                f"dqn_steps ({self.dqn_steps}), or the DQN never learns"
            )

    @property
    def total_bars(self) -> int:
        return self.pre_bars + self.train_bars + self.run_bars


FULL = Settings()
QUICK = Settings(
    pre_bars=1_500,
    run_bars=2_000,
    latency_warmup=20,
    latency_bars=300,
    dqn_steps=300,
    dqn_learning_starts=100,
)


# -- data -------------------------------------------------------------------------------------
def load_candles(bars: int, data: Path | None = None) -> Candles | None:
    """The newest ``bars`` real BTC/USDT 1m candles, or None when the shared data is absent."""
    data = data if data is not None else shared_data_dir()
    if data is None:
        return None
    path = data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet"
    if not path.is_file():
        return None
    frame = pd.read_parquet(path).tail(bars).reset_index(drop=True)
    return Candles.from_frame(frame)


@dataclass(frozen=True, slots=True)
class Spans:
    """UTC ms: training ``[train_since, run_since)``, the measured run ``[run_since, until)``,
    the latency run ``[run_since, latency_until)`` (warm-up decisions included)."""

    train_since: int
    run_since: int
    latency_until: int
    until: int


def spans_of(candles: Candles, settings: Settings) -> Spans:
    """The spans of ``candles`` (the newest ``settings.total_bars`` 1m bars)."""
    if len(candles) < settings.total_bars:
        raise ValueError(
            f"{len(candles):,} candles given, the settings need {settings.total_bars:,} "
            "(pre_bars + train_bars + run_bars)"
        )
    ts = candles.timestamp
    first_run = len(candles) - settings.run_bars
    latency_end = first_run + settings.latency_warmup + settings.latency_bars
    return Spans(
        train_since=int(ts[first_run - settings.train_bars]),
        run_since=int(ts[first_run]),
        latency_until=int(ts[latency_end]) if latency_end < len(ts) else int(ts[-1]) + BASE.ms,
        until=int(ts[-1]) + BASE.ms,
    )


# -- experts ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Experts:
    """Checkpoints of the two experts and the seconds their training took."""

    cnn: Path
    dqn: Path
    cnn_seconds: float
    dqn_seconds: float


def train_experts(store: DuckDBStore, folder: Path, spans: Spans, settings: Settings) -> Experts:
    """Train the PivotCNN, then the DQN over its features, on ``[train_since, run_since)``
    with the demo's sizes (module docstring)."""
    from pivotal.rl.config import EnvConfig
    from pivotal.rl.dqn import DQNConfig
    from pivotal.rl.run import DQNJob, train_dqn_job
    from pivotal.training.config import TrainingConfig
    from pivotal.training.labels import LabelConfig
    from pivotal.training.pipeline import TrainJob
    from pivotal.training.run import train_job

    started = time.perf_counter()
    cnn_job = TrainJob(
        model="pivot_cnn",
        symbol=SYMBOL,
        timeframe=str(BASE),
        streams=(str(STREAM),),
        since=spans.train_since,
        until=spans.run_since,
        frames=CNN_FRAMES,
        warmup_bars=300,
        hyperparameters=dict(CNN_HYPERPARAMETERS),
        labels=LabelConfig(horizons=(12,), dead_band=0.001, pivot_levels=3),
        training=TrainingConfig(
            epochs=settings.cnn_epochs,
            batch_size=256,
            lr=2e-3,
            seed=SEED,
            device="cpu",
            progress=False,
        ),
    )
    cnn = train_job(store, cnn_job, folder / "pivot_cnn", keep=1).best_checkpoint
    cnn_seconds = time.perf_counter() - started
    started = time.perf_counter()
    dqn_job = DQNJob(
        since=spans.train_since,
        until=spans.run_since,
        envs=2,
        eval_every=settings.dqn_steps // 2,
        cnn_checkpoint=str(cnn),
        env=EnvConfig(
            symbol=SYMBOL,
            timeframe=str(BASE),
            streams=(str(STREAM),),
            frames=DQN_FRAMES,
            episode_length=240,
        ),
        dqn=DQNConfig(
            total_steps=settings.dqn_steps,
            learning_starts=settings.dqn_learning_starts,
            buffer_size=5_000,
            batch_size=64,
            hidden=DQN_HIDDEN,
            heads=2,
            learning_rate=5e-4,
            target_update_interval=100,
            exploration_fraction=0.5,
            seed=SEED,
            device="cpu",
        ),
    )
    outcome = train_dqn_job(store, dqn_job, folder / "dqn", keep=1)
    if outcome.best_checkpoint is None:
        raise RuntimeError(f"the DQN's training kept no checkpoint in {folder / 'dqn'}")
    return Experts(cnn, outcome.best_checkpoint, cnn_seconds, time.perf_counter() - started)


def orchestrator_config(
    experts: Experts, *, learning: bool, history: bool, online_dir: Path
) -> OrchestratorConfig:
    """Both experts, the demo's gate, default learning (promoted checkpoints under
    ``online_dir``) and history, each switched on or off."""
    return OrchestratorConfig(
        experts=[
            ExpertConfig(name="pivot_cnn", kind="pivot_cnn", checkpoint=experts.cnn),
            ExpertConfig(name="dqn", kind="dqn", checkpoint=experts.dqn, depends_on=["pivot_cnn"]),
        ],
        gate=GATE,
        history=HistoryConfig(enabled=history),
        learning=LearningConfig(enabled=learning, checkpoint_dir=online_dir),
    )


# -- 1. decision latency ----------------------------------------------------------------------
@dataclass
class LatencyResult:
    """Per-decision milliseconds of one configuration: ``total`` and each of
    :data:`COMPONENTS`, timed decisions only (warm-up dropped); ``fills``: broker fills in
    the whole run."""

    case: str
    total: np.ndarray
    parts: dict[str, np.ndarray]
    fills: int

    @property
    def decisions(self) -> int:
        return len(self.total)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.total, q))


class _Clock:
    """Seconds spent in wrapped callables since the last :meth:`reset`, per component."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.expert_ms = 0.0

    def reset(self) -> None:
        self.spent = defaultdict(float)
        self.expert_ms = 0.0

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[key] += time.perf_counter() - start

        return timed


@contextmanager
def _timed_history_records(clock: _Clock) -> Iterator[None]:
    """Time ``record_of_step`` as the orchestrator module calls it (restored on exit)."""
    original = orchestrator_module.record_of_step
    orchestrator_module.record_of_step = clock.wrap("history", original)
    try:
        yield
    finally:
        orchestrator_module.record_of_step = original


def instrument(kernel: Kernel, orch: Orchestrator, clock: _Clock) -> list[dict[str, float]]:
    """Wrap the kernel's decision step and the parts of a decision on these instances;
    returns the list each decision's seconds (``"total"`` and per component) are appended
    to."""
    samples: list[dict[str, float]] = []
    coordinator_run = orch.coordinator.run

    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = coordinator_run(*args, **kwargs)
        clock.spent["coordinator"] += time.perf_counter() - start
        clock.expert_ms += sum(result.latency_ms.values())
        return result

    orch.coordinator.run = run  # type: ignore[method-assign]
    orch.frame.input = clock.wrap("frame input", orch.frame.input)  # type: ignore[method-assign]
    dm = orch.decision_maker
    dm.decide = clock.wrap("gate", dm.decide)  # type: ignore[method-assign]
    if orch.learning is not None:
        learning = orch.learning
        learning.on_step = clock.wrap("learning", learning.on_step)  # type: ignore[method-assign]
    orch.flush = clock.wrap("history", orch.flush)  # type: ignore[method-assign]
    executor = kernel.executor
    executor.execute = clock.wrap("risk + broker", executor.execute)  # type: ignore[method-assign]
    decide = kernel._decide

    def timed_decide(bar: Any, now: int) -> None:
        clock.reset()
        start = time.perf_counter()
        decide(bar, now)
        total = time.perf_counter() - start
        sample = dict(clock.spent)
        experts = clock.expert_ms / 1000.0
        sample["coordinator"] = sample.get("coordinator", 0.0) - experts
        sample["experts"] = experts
        sample["rest"] = total - sum(sample.values())
        sample["total"] = total
        samples.append(sample)

    kernel._decide = timed_decide  # type: ignore[method-assign]
    return samples


def measure_latency(
    store: DuckDBStore,
    experts: Experts,
    spans: Spans,
    settings: Settings,
    *,
    learning: bool,
    history: bool,
    online_dir: Path,
    paced: bool = False,
) -> LatencyResult:
    """Part 1 (module docstring) with learning and history each on or off; every bar of
    ``[run_since, latency_until)`` is a decision. The orchestrator runs as paper and live
    trading run it: bars pushed one at a time from a feed into its market frame (600 bars
    of each timeframe pushed before as warm-up), experts on worker threads with their
    timeout, learning results applied as soon as they are ready. ``paced``: each bar arrives
    once the background work of the earlier ones is done (:meth:`Orchestrator.settle`), as
    live bars do (a learning attempt takes ~10-20 ms, a 1m bar comes every 60 s); otherwise bars
    come back to back and every decision competes with that work for the CPU and the GIL."""
    config = orchestrator_config(experts, learning=learning, history=history, online_dir=online_dir)
    orch = Orchestrator(
        build_experts(config),
        config,
        base_timeframe=BASE,
        history=InferenceHistory(store) if history else None,
        seed=SEED,
        accelerate=False,
        calls="threads",
        apply_learning_when_ready=True,
    )
    warm = ReplayFeed.from_store(
        store,
        exchange="binance",
        symbols=[SYMBOL],
        timeframe=BASE,
        higher=[STREAM],
        start=spans.run_since - 600 * STREAM.ms,
        end=spans.run_since - STREAM.ms + 1,
    )
    while (events := warm.next_events()) is not None:
        for event in events:
            orch.on_event(event)
    feed = ReplayFeed.from_store(
        store,
        exchange="binance",
        symbols=[SYMBOL],
        timeframe=BASE,
        higher=[STREAM],
        start=spans.run_since,
        end=spans.latency_until,
    )
    orch.prepare(SYMBOL, Candles.empty())
    loop, broker = replay_loop(feed, orch, TRADING, BASE, [SYMBOL])
    clock = _Clock()
    samples = instrument(loop.kernel, orch, clock)
    try:
        with _timed_history_records(clock):
            loop.run(_Paced(feed, orch) if paced else feed)
    finally:
        orch.finish(now_ms=spans.latency_until)
    fills = len(broker.fills_frame())
    timed = samples[settings.latency_warmup :]
    if not timed:
        raise RuntimeError(f"{len(samples)} decisions made, none after the warm-up")
    return LatencyResult(
        case=_switches(learning, history) + (", paced as live" if paced else ""),
        total=np.array([s["total"] for s in timed]) * 1000.0,
        parts={c: np.array([s.get(c, 0.0) for s in timed]) * 1000.0 for c in COMPONENTS},
        fills=fills,
    )


class _Paced:
    """``feed``, each bar delivered once ``orch``'s background work is done."""

    def __init__(self, feed: ReplayFeed, orch: Orchestrator) -> None:
        self._feed = feed
        self._orch = orch

    def next_events(self) -> Any:
        self._orch.settle()
        return self._feed.next_events()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)


def _switches(learning: bool, history: bool) -> str:
    return f"learning {'on' if learning else 'off'}, history {'on' if history else 'off'}"


# -- 2. the 30-day runs -----------------------------------------------------------------------
_UPDATE_EVENTS = frozenset({"promoted", "rolled_back", "retrain_promoted", "retrain_rolled_back"})
"""Learning events that end one candidate's training (online update or retrain)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One timed run over the measured span."""

    case: str
    bars: int
    seconds: float
    decisions: int
    trades: int
    stored: int = 0
    learning_events: int = 0
    peer: bool = False

    @property
    def rate(self) -> float:
        return self.bars / self.seconds


def orchestrated_run(
    store: DuckDBStore,
    experts: Experts,
    spans: Spans,
    *,
    learning: bool,
    history: bool,
    online_dir: Path,
    profile: cProfile.Profile | None = None,
) -> RunRow:
    """``run_backtest_mode`` over the measured span; experts loaded before the clock starts."""
    config = orchestrator_config(experts, learning=learning, history=history, online_dir=online_dir)
    run = RunConfig(
        symbols=[SYMBOL],
        timeframe=str(BASE),
        since=spans.run_since,
        until=spans.until,
        warmup_bars=600,
        seed=SEED,
        settings=TRADING,
        orchestrator=config,
    )
    loaded = build_experts(config)
    if profile is not None:
        profile.enable()
    start = time.perf_counter()
    try:
        out = run_backtest_mode(store, run, experts=loaded, history=history)
    finally:
        seconds = time.perf_counter() - start
        if profile is not None:
            profile.disable()
    learned = sum(1 for e in out.events if e["kind"] in _UPDATE_EVENTS)
    return RunRow(
        case=f"orchestrated: PivotCNN + DQN, {_switches(learning, history)}",
        bars=len(out.candles[SYMBOL]),
        seconds=seconds,
        decisions=int(out.result.settings["decisions"]),
        trades=len(out.result.trades) + len(out.result.open_trades),
        stored=out.stored,
        learning_events=learned,
    )


def peer_run(candles: Candles) -> RunRow:
    """``sma_cross`` through ``BacktestEngine`` on the same bars and settings (best of 3)."""

    def once() -> Any:
        return run_backtest(
            {SYMBOL: candles}, make_strategy("sma_cross", {}), timeframe=BASE,
            settings=TRADING,
        )  # fmt: skip

    seconds = best_of(once, repeats=3)
    result = once()
    return RunRow(
        case="peer: BacktestEngine + sma_cross",
        bars=len(candles),
        seconds=seconds,
        decisions=int(result.settings["decisions"]),
        trades=len(result.trades) + len(result.open_trades),
        peer=True,
    )


# -- report -----------------------------------------------------------------------------------
def host_line() -> str:
    """CPU count (and the ones this process may use), torch threads, 1-minute load."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    return (
        f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({usable} usable), torch {torch.__version__} on {torch.get_num_threads()} thread(s), "
        f"1-min load {load}"
    )


def _print_table(title: str, header: Sequence[str], lines: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for line in (header, *lines):
            print("  ".join(f"{cell:>14}" for cell in line))
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for line in lines:
        table.add_row(*line)
    Console(width=160).print(table)


def latency_table(cases: Sequence[LatencyResult]) -> None:
    lines = [
        (
            f"{lat.case} ({lat.decisions:,} decisions, {lat.fills:,} fills)",
            *(f"{lat.percentile(q):.2f}" for q in (50, 90, 99)),
            f"{float(lat.total.max()):.1f}",
            f"p99 < {LATENCY_GOAL_MS:g} ms",
            "yes" if lat.percentile(99) < LATENCY_GOAL_MS else "NO",
        )
        for lat in cases
    ]
    _print_table(
        "1. decision latency, ms: closed bar -> PivotCNN + DQN + gate (+ learning, history) "
        "-> risk -> broker",
        ("case", "p50", "p90", "p99", "max", "goal", "met"),
        lines,
    )
    rows = []
    for name in (*COMPONENTS, "total"):
        row = [name]
        for lat in cases:
            part = lat.total if name == "total" else lat.parts[name]
            row += [f"{float(np.median(part)):.3f}", f"{float(part.mean()):.3f}"]
            row.append(f"{100 * float(part.mean()) / float(lat.total.mean()):.0f} %")
        rows.append(row)
    header = ["component"]
    for lat in cases:
        header += [f"p50, {lat.case}", "mean", "share"]
    _print_table("   where a decision's time goes (ms per decision)", header, rows)


def runs_table(rows: Sequence[RunRow]) -> None:
    peer = next(r for r in rows if r.peer)
    lines = []
    for row in rows:
        goal, met = "-", "-"
        if row.case.endswith("learning on, history on"):
            goal, met = f"< {RUN_GOAL_S:g} s", "yes" if row.seconds < RUN_GOAL_S else "NO"
        lines.append(
            (
                row.case,
                f"{row.bars:,}",
                f"{row.seconds:,.2f}",
                f"{row.rate:,.0f}",
                f"{row.decisions:,}",
                f"{row.trades:,}",
                f"{row.stored:,}" if not row.peer else "-",
                f"{row.seconds / peer.seconds:,.0f}x" if not row.peer else "1x",
                goal,
                met,
            )
        )
    _print_table(
        f"2. {peer.bars:,} 1m bars ({peer.bars / 1440:.1f} days), one symbol: wall time (peer: "
        "best of 3 after a warm-up)",
        ("case", "bars", "seconds", "bars/s", "decisions", "trades", "stored", "x peer time",
         "goal", "met"),
        lines,
    )  # fmt: skip
    on = {r.case.rpartition("DQN, ")[2]: r for r in rows}
    full, bare = on.get(_switches(True, True)), on.get(_switches(False, False))
    no_learning = on.get(_switches(False, True))
    if full and no_learning and bare:
        print(
            f"- costs over {full.bars:,} bars: learning loop "
            f"{full.seconds - no_learning.seconds:+.1f} s ({full.learning_events:,} candidate "
            f"updates), history {no_learning.seconds - bare.seconds:+.1f} s "
            f"({no_learning.stored:,} steps stored), models + gate + engine "
            f"{bare.seconds:.1f} s ({1000 * bare.seconds / bare.bars:.2f} ms per bar)"
        )


def profile_lines(profile: cProfile.Profile, top: int) -> str:
    """The ``top`` entries by own time and by cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- main -------------------------------------------------------------------------------------
@dataclass
class Report:
    """Everything one bench run measured."""

    settings: Settings
    experts: Experts
    latency: list[LatencyResult]
    runs: list[RunRow] = field(default_factory=list)
    profile: str = ""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_CASES = (("full", True, True), ("no_learning", False, True), ("bare", False, False))


def run_bench(
    settings: Settings, candles: Candles, *, profile: bool = False, latency_only: bool = False
) -> Report:
    """Train the experts, measure parts 1 and 2 (module docstring). Each orchestrated run
    gets a fresh temporary store holding the candles, so no run's history slows another's."""
    spans = spans_of(candles, settings)
    with tempfile.TemporaryDirectory(prefix="bench_orchestrator_") as tmp:
        root = Path(tmp)

        def fresh(name: str) -> DuckDBStore:
            return store_candles(
                root / f"{name}.duckdb", candles, symbol=SYMBOL, streams=(str(STREAM),)
            )

        with fresh("training") as store:
            experts = train_experts(store, root / "experts", spans, settings)
        _say(f"experts trained ({experts.cnn_seconds + experts.dqn_seconds:.0f} s)")
        latency = []
        with fresh("latency") as store:
            for (name, learning, history), paced in (
                (_CASES[0], True),
                (_CASES[0], False),
                (_CASES[2], False),
            ):
                latency.append(
                    measure_latency(
                        store, experts, spans, settings, learning=learning, history=history,
                        online_dir=root / f"latency_{name}_{paced}", paced=paced,
                    )
                )  # fmt: skip
                _say(f"latency, {latency[-1].case}: p99 {latency[-1].percentile(99):.1f} ms")
        if latency_only:
            return Report(settings, experts, latency)
        runs = [peer_run(candles.between(spans.run_since, spans.until))]
        for name, learning, history in _CASES:
            with fresh(name) as store:
                runs.append(
                    orchestrated_run(
                        store, experts, spans, learning=learning, history=history,
                        online_dir=root / f"online_{name}",
                    )
                )  # fmt: skip
            _say(f"{runs[-1].case}: {runs[-1].seconds:.1f} s")
        report = Report(settings, experts, latency, runs)
        if profile:
            prof = cProfile.Profile()
            with fresh("profile") as store:
                orchestrated_run(
                    store, experts, spans, learning=True, history=True,
                    online_dir=root / "online_profile", profile=prof,
                )  # fmt: skip
            report.profile = profile_lines(prof, 25)
    return report


def print_report(report: Report, origin: str) -> None:
    s = report.settings
    print(host_line())
    print(
        f"data: {origin}; experts trained on the {s.train_bars:,} bars before them "
        f"(PivotCNN {report.experts.cnn_seconds:.1f} s, DQN {report.experts.dqn_seconds:.1f} s)"
    )
    latency_table(report.latency)
    if report.runs:
        runs_table(report.runs)
    if report.profile:
        print(
            "cProfile of the 30-day run (learning on, history on). It sees the main thread "
            "only: the experts' inference runs on the coordinator's worker threads and shows "
            "as the main thread's wait in {method 'acquire' of '_thread.lock' objects}."
        )
        print(report.profile)
    print(host_line())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 bars, 300 decisions")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of the 30-day run")
    parser.add_argument("--latency-only", action="store_true", help="part 1 only (a few minutes)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    candles = load_candles(settings.total_bars)
    if candles is None:
        print(
            "skipped: the real BTC/USDT 1m file (ohlcv/binance-spot/1m/BTC_USDT-1m.parquet "
            "under ../shared/data, or $PIVOTAL_SHARED_DATA) was not found"
        )
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    span = f"{len(candles) - settings.pre_bars - settings.train_bars:,}"
    origin = f"real BTC/USDT 1m, newest {span} bars measured"
    report = run_bench(settings, candles, profile=args.profile, latency_only=args.latency_only)
    print_report(report, origin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
