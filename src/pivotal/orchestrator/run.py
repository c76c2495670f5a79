"""``pivotal run``: a run file → experts, orchestrator, run loop, results.

A :class:`~pivotal.orchestrator.run_file.RunConfig` (the run file) names the market, the
trading settings and the orchestrator. :func:`run_backtest_mode` reads the candles from the
store (with warm-up history before ``since``), builds the experts from their checkpoints,
and runs the orchestrator over the replay: accelerated through the backtest engine (replay
clock + simulated broker), or pushed bar by bar through the runtime's loop
(:mod:`pivotal.orchestrator.pushed`); buy-and-hold runs beside it
(:mod:`pivotal.orchestrator.benchmark`: the equal-weight basket, fully invested at the first
bar's close, no fees; the strategy's ``buy_and_hold_return_pct`` is that benchmark's return).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pivotal.backtest.api import attach_metrics
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.gaps import mostly_gaps_warnings
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.core.errors import ConfigError, DataError, ModelError
from pivotal.core.timeframes import Timeframe
from pivotal.data.inference_history import InferenceHistory
from pivotal.data.store import MarketDataStore
from pivotal.orchestrator.benchmark import BUY_AND_HOLD, buy_and_hold, with_benchmark
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.contracts import Expert
from pivotal.orchestrator.online_checkpoints import expert_data_warnings
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.orchestrator.pushed import flat_account, run_pushed
from pivotal.orchestrator.run_file import RunConfig
from pivotal.training.pipeline import read_streams

__all__ = ["OrchestratedRun", "build_experts", "run_backtest_mode"]


def build_experts(config: OrchestratorConfig, *, device: str = "cpu") -> list[Expert]:
    """The experts a config names, loaded from their checkpoints.

    ``ConfigError`` naming the expert when the list is empty, a checkpoint is missing, a
    dependency does not fit the kind, or a checkpoint cannot be loaded as that kind (not a
    ``pivotal train`` checkpoint, a DQN without its job file beside it, a DQN trained on CNN
    features listed without ``depends_on``, ...)."""
    from pivotal.orchestrator.experts import DQNExpert, PivotCNNExpert

    if not config.experts:
        raise ConfigError(
            "the orchestrator has no experts: list them under orchestrator.experts "
            "(name, kind: pivot_cnn | dqn, checkpoint)"
        )
    experts: list[Expert] = []
    for e in config.experts:
        if not e.checkpoint.is_file():
            raise ConfigError(f"expert {e.name!r}: checkpoint {e.checkpoint} not found")
        if e.kind == "pivot_cnn" and e.depends_on:
            raise ConfigError(f"expert {e.name!r}: a pivot_cnn reads no other model")
        if e.kind == "dqn" and len(e.depends_on) > 1:
            raise ConfigError(f"expert {e.name!r}: a dqn reads at most one CNN expert")
        try:
            if e.kind == "pivot_cnn":
                experts.append(PivotCNNExpert(e.checkpoint, name=e.name, device=device))
            else:
                cnn = e.depends_on[0] if e.depends_on else None
                experts.append(DQNExpert(e.checkpoint, name=e.name, cnn=cnn, device=device))
        except (ValueError, OSError, ModelError) as exc:
            raise ConfigError(f"expert {e.name!r} (kind {e.kind}): {exc}") from exc
    return experts


@dataclass
class OrchestratedRun:
    """What a run produced (metrics attached to ``result`` and ``benchmark``)."""

    config: RunConfig
    result: BacktestResult
    benchmark: dict[str, BacktestResult]
    candles: dict[str, Candles]
    decisions: pd.DataFrame
    accuracy: pd.DataFrame | None
    events: list[dict[str, Any]]
    orchestrator: Orchestrator
    stored: int
    data_note: str = ""
    seconds: float = field(default=math.nan)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


def _read(store: MarketDataStore, run: RunConfig, timeframes: set[Timeframe]) -> dict[str, Any]:
    data = {}
    for symbol in run.symbols:
        data[symbol] = read_streams(
            store,
            run.exchange,
            symbol,
            tuple(sorted(timeframes, key=lambda t: t.ms)),
            run.learn_from if run.learn_from is not None else run.since,
            run.until,
            run.warmup_bars,
        )
    return data


def _read_base(store: MarketDataStore, run: RunConfig) -> dict[str, Any]:
    return {
        symbol: read_streams(store, run.exchange, symbol, (run.base,), run.since, run.until, 0)
        for symbol in run.symbols
    }


def run_backtest_mode(
    store: MarketDataStore,
    run: RunConfig,
    *,
    experts: list[Expert] | None = None,
    history: bool = True,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> OrchestratedRun:
    """Backtest the orchestrator over the run's range (module docstring).

    ``warn`` receives, before the run starts, a line per symbol whose base candles are
    mostly gaps (:func:`pivotal.backtest.gaps.mostly_gaps_warnings`). Positions are closed
    at the last bar before each gap unless ``settings.gaps`` is ``hold``; the gaps met are
    in :attr:`OrchestratedRun.gaps`."""
    import time

    started = time.perf_counter()
    experts = experts if experts is not None else build_experts(run.orchestrator)
    base = run.base
    timeframes = {base} | {tf for e in experts for tf in e.timeframes}
    # pushed: only the trading span's base bars are read here (the timeline, gap plan and
    # metrics); the market data reaches the models from a feed that reads in chunks
    data = _read(store, run, timeframes) if run.accelerate else _read_base(store, run)
    candles: dict[str, Candles] = {}
    for symbol, streams in data.items():
        bars = streams[base].between(run.since, run.until)
        if len(bars) < 2:
            raise DataError(
                f"{symbol}: {len(bars)} {base} candles in the run's range; widen since/until "
                "or import the data (pivotal data import)"
            )
        candles[symbol] = bars
    if warn is not None:
        max_missing = run.settings.max_missing_bars
        for line in mostly_gaps_warnings(candles, base, max_missing, run.since, run.until):
            warn(line)
    hist = None
    if history and run.orchestrator.history.enabled:
        from pivotal.data.duckdb_store import DuckDBStore

        if isinstance(store, DuckDBStore):
            hist = InferenceHistory(
                store, compression_level=run.orchestrator.history.compression_level
            )
    first = first_learning_bar(run, candles)
    warnings = expert_data_warnings(experts, first)  # before any online one is loaded
    journal = None
    if not run.accelerate:  # the pushed run streams its records: memory does not grow
        from pivotal.data.duckdb_store import DuckDBStore
        from pivotal.data.run_journal import RunJournal

        if isinstance(store, DuckDBStore):
            journal = RunJournal(store, meta={"mode": "replay", "symbols": list(run.symbols)})
    orchestrator = Orchestrator(
        experts,
        run.orchestrator,
        base_timeframe=base,
        data=data if run.accelerate else None,
        history=hist,
        seed=run.seed,
        load_online=f"before:{first}",  # a backtest never loads what was learned later
        max_missing_bars=run.settings.max_missing_bars,
        accelerate=run.accelerate,
        calls="inline",  # a replay: deterministic, no thread hand-offs
        recorder=journal,
    )
    try:
        if not run.accelerate:
            result = run_pushed(
                store, run, orchestrator, candles, journal=journal, progress=progress
            )
        else:
            if run.learn_from is not None:
                _learn(orchestrator, data, run, progress=progress)
            result = run_backtest(
                candles, orchestrator, timeframe=base, settings=run.settings, progress=progress
            )
    except BaseException:
        if journal is not None:
            journal.close(failed=True)
        raise
    finally:
        last = max(int(c.timestamp[-1]) + base.ms for c in candles.values())
        orchestrator.finish(now_ms=last)
    hold = buy_and_hold(result.timestamps, candles, result.initial_cash)
    result = with_benchmark(attach_metrics(result, candles, base), hold)
    note = ", ".join(
        f"{s} {base} {_day(c.timestamp[0])}..{_day(c.timestamp[-1] + base.ms)} ({len(c):,} bars)"
        for s, c in candles.items()
    )
    outcome = OrchestratedRun(
        config=run,
        result=result,
        benchmark={BUY_AND_HOLD: hold},
        candles=candles,
        decisions=orchestrator.decisions_frame(since=run.since),
        accuracy=orchestrator.accuracy_frame(),
        events=warnings + orchestrator.all_events(),
        orchestrator=orchestrator,
        stored=orchestrator.stored,
        data_note=f"{run.exchange}: {note}",
        seconds=time.perf_counter() - started,
        gaps=[dict(g) for g in result.gaps],
        checkpoints=orchestrator.checkpoints,
    )
    if journal is not None:
        journal.close()
    return outcome


def first_learning_bar(run: RunConfig, candles: dict[str, Candles]) -> int:
    """Open time (UTC ms) of the run's first learning bar: ``learn_from``, else ``since``,
    else the first base candle of the run."""
    if run.learn_from is not None:
        return int(run.learn_from)
    if run.since is not None:
        return int(run.since)
    return min(int(c.timestamp[0]) for c in candles.values())


def _learn(
    orchestrator: Orchestrator, data: dict[str, Any], run: RunConfig, *, progress: bool
) -> None:
    """The learning span: every base bar of ``[learn_from, since)`` through the
    orchestrator with a flat account (nothing traded)."""
    spans = {s: streams[run.base].between(run.learn_from, run.since) for s, streams in data.items()}
    total = sum(len(c) for c in spans.values())
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("learning span", total=total)
        bar.start()
    try:
        for symbol, bars in spans.items():
            account = flat_account(run, int(bars.timestamp[0]) if len(bars) else 0)
            tick = None if bar is None else (lambda: bar.advance(task))
            orchestrator.learn(symbol, bars, account, progress=tick)
    finally:
        if bar is not None:
            bar.stop()


def _day(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d")
