"""``pivotal run``: a run file → experts, orchestrator, run loop, results.

A :class:`RunConfig` (YAML) names the mode, the market (exchange, symbols, base timeframe,
range), the backtest settings (broker and risk) and the orchestrator (experts with their
checkpoints, gate, inference, history, learning). :func:`run_backtest_mode` reads the
candles from the store (with warm-up history before ``since``), builds the experts from
their checkpoints, runs the orchestrator through the backtester (replay clock + simulated
broker), and buy-and-hold beside it (:mod:`pivotal.orchestrator.benchmark`: the
equal-weight basket, fully invested at the first bar's close, no fees; the strategy's
``buy_and_hold_return_pct`` is that benchmark's return).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pivotal.backtest.api import attach_metrics
from pivotal.backtest.config import BacktestSettings
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.gaps import mostly_gaps_warnings
from pivotal.backtest.result import BacktestResult
from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.clock import utc_text
from pivotal.core.errors import ConfigError, DataError, ModelError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.inference_history import InferenceHistory
from pivotal.data.store import MarketDataStore
from pivotal.orchestrator.benchmark import BUY_AND_HOLD, buy_and_hold, with_benchmark
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.contracts import Expert
from pivotal.orchestrator.online_checkpoints import expert_data_warnings
from pivotal.orchestrator.orchestrator import Orchestrator
from pivotal.orchestrator.pushed import run_pushed
from pivotal.training.pipeline import read_streams

__all__ = ["OrchestratedRun", "RunConfig", "build_experts", "load_run_config", "run_backtest_mode"]


def parse_time_ms(value: Any, name: str) -> int | None:
    """``2024-01-01``, ``2024-01-01T12:00`` (UTC unless an offset is given), epoch ms, or a
    ``date``/``datetime`` (YAML reads unquoted dates as those)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a time; use YYYY-MM-DD or epoch ms")
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}: {value!r} is not a time; use YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch ms"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class RunConfig(StrictModel):
    """One run of the orchestrator (``pivotal run RUN_FILE``)."""

    mode: Literal["backtest"] = Field(
        default="backtest", description="backtest (paper and live trading are not available yet)"
    )
    exchange: str = "binance"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"], min_length=1)
    timeframe: str = Field(default="5m", description="base bars: the orchestrator decides on each")
    since: int | str | None = None
    until: int | str | None = None
    learn_from: int | str | None = Field(
        default=None,
        description="run the models with learning on over [learn_from, since) before trading "
        "(no orders); needs since",
    )
    warmup_bars: int = Field(
        default=600, ge=0, description="bars per timeframe read before since (indicator warm-up)"
    )
    seed: int = 0
    accelerate: bool = Field(
        default=True,
        description="evaluate the position-independent models in batches ahead of the clock "
        "(same decisions as pushing bars one at a time; false: push every bar through the "
        "market frame as paper and live trading do)",
    )
    settings: BacktestSettings = Field(default_factory=BacktestSettings)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return [str(Symbol.parse(s)) for s in value]

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return str(Timeframe.parse(value))

    @field_validator("since", "until", "learn_from", mode="before")
    @classmethod
    def _times(cls, value: Any, info: Any) -> int | None:
        return parse_time_ms(value, info.field_name)

    @model_validator(mode="after")
    def _span(self) -> RunConfig:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(
                f"since {utc_text(self.since)} must be before until {utc_text(self.until)}"
            )
        if self.learn_from is not None and self.since is None:
            raise ValueError("learn_from needs since: the learning span is [learn_from, since)")
        if self.learn_from is not None and self.since is not None and self.learn_from >= self.since:
            raise ValueError(
                f"learn_from {utc_text(self.learn_from)} must be before since "
                f"{utc_text(self.since)}: the "
                "learning span precedes trading"
            )
        return self

    @property
    def base(self) -> Timeframe:
        return Timeframe.parse(self.timeframe)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run file; ``ConfigError`` listing every problem with its key.

    Relative paths in it (expert checkpoints, ``orchestrator.learning.checkpoint_dir``) are
    resolved against the file's folder; ``~`` is expanded. ``{run}`` in ``checkpoint_dir`` is
    replaced by the run file's name without its suffix, so each run keeps its own online
    checkpoints."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the run file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run file is a mapping (mode:, symbols:, orchestrator:, ...)")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(map(str, e['loc'])) or 'run file'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise ConfigError(f"{path}: invalid run file:\n  " + "\n  ".join(lines)) from None

    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(path.parent / p))  # no a/../b

    experts = [
        e.model_copy(update={"checkpoint": resolve(e.checkpoint)})
        for e in config.orchestrator.experts
    ]
    learning = config.orchestrator.learning
    if learning.checkpoint_dir is not None:
        folder = Path(str(learning.checkpoint_dir).replace("{run}", path.stem))
        learning = learning.model_copy(update={"checkpoint_dir": resolve(folder)})
    orchestrator = config.orchestrator.model_copy(update={"experts": experts, "learning": learning})
    return config.model_copy(update={"orchestrator": orchestrator})


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
    )
    try:
        if not run.accelerate:
            result = run_pushed(store, run, orchestrator, candles, progress=progress)
        else:
            if run.learn_from is not None:
                _learn(orchestrator, data, run, progress=progress)
            result = run_backtest(
                candles, orchestrator, timeframe=base, settings=run.settings, progress=progress
            )
    finally:
        last = max(int(c.timestamp[-1]) + base.ms for c in candles.values())
        orchestrator.finish(now_ms=last)
    hold = buy_and_hold(result.timestamps, candles, result.initial_cash)
    result = with_benchmark(attach_metrics(result, candles, base), hold)
    note = ", ".join(
        f"{s} {base} {_day(c.timestamp[0])}..{_day(c.timestamp[-1] + base.ms)} ({len(c):,} bars)"
        for s, c in candles.items()
    )
    return OrchestratedRun(
        config=run,
        result=result,
        benchmark={BUY_AND_HOLD: hold},
        candles=candles,
        decisions=orchestrator.decisions_frame(since=run.since),
        accuracy=orchestrator.accuracy_frame(),
        events=warnings + list(orchestrator.events),
        orchestrator=orchestrator,
        stored=orchestrator.stored,
        data_note=f"{run.exchange}: {note}",
        seconds=time.perf_counter() - started,
        gaps=[dict(g) for g in result.gaps],
        checkpoints=orchestrator.checkpoints,
    )


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
    from pivotal.core.orders import AccountSnapshot

    cash = float(run.settings.broker.initial_cash)
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
            account = AccountSnapshot(
                timestamp=int(bars.timestamp[0]) if len(bars) else 0,
                currency=run.settings.broker.currency,
                cash=cash,
                equity=cash,
                margin_used=0.0,
                available=cash,
                leverage=float(run.settings.broker.leverage),
                fees_paid=0.0,
                realized_pnl=0.0,
                unrealized_pnl=0.0,
            )
            tick = None if bar is None else (lambda: bar.advance(task))
            orchestrator.learn(symbol, bars, account, progress=tick)
    finally:
        if bar is not None:
            bar.stop()


def _day(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d")
