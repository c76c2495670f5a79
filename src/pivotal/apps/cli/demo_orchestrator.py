"""The demo's orchestrator part: end to end on stored BTC/USDT and ETH/USDT 5m bars.

1. Train a small PivotCNN (5m + 1h streams, 32 frames) on BTC/USDT's training span with
   ``pivotal train``'s pipeline (pivot and direction targets).
2. Train a small DQN on the same span whose observations carry that CNN's outputs.
3. Let the orchestrator run both models over a learning span right after training, without
   trading: the learning loop matures each prediction after its horizon and trains the
   CNN's BUY/SELL/HOLD head online (candidates promoted or rolled back).
4. Trade the held-out month that follows on BTC/USDT and ETH/USDT in one account through
   the risk manager and the simulated broker, learning loop still on, every step stored in
   the inference history; then the HTML report and the console summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pivotal.apps.cli.run_cmd import summary_lines
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey

DAY_MS = 86_400_000
BASE = Timeframe.M5
SYMBOLS = ("BTC/USDT", "ETH/USDT")
STEM = "orchestrator_" + "_".join(s.replace("/", "") for s in SYMBOLS)


@dataclass(frozen=True)
class DemoSpans:
    """The demo's ranges (UTC ms): train, learn (no trading), trade (held out)."""

    train_since: int
    train_until: int
    learn_until: int
    trade_until: int


def spans(
    store: DuckDBStore, *, train_days: int = 60, learn_days: int = 7, trade_days: int = 30
) -> DemoSpans | None:
    """The newest ``train + learn + trade`` days both symbols have 5m bars for."""
    ends = []
    for symbol in SYMBOLS:
        last = store.last_timestamp(SeriesKey("binance", symbol, BASE))
        if last is None:
            return None
        ends.append(last + BASE.ms)
    end = min(ends) // DAY_MS * DAY_MS
    trade_from = end - trade_days * DAY_MS
    learn_from = trade_from - learn_days * DAY_MS
    return DemoSpans(learn_from - train_days * DAY_MS, learn_from, trade_from, end)


def run_file_path(out_dir: Path) -> Path:
    """Where the demo writes its run file: beside its report in ``out_dir``."""
    return out_dir / f"{STEM}.run.yaml"


def orchestrator_step(
    store: DuckDBStore,
    out_dir: Path,
    *,
    say: Callable[[str], None] = print,
    quick: bool = False,
    models_dir: Path | None = None,
) -> list[str]:
    """Run the four parts of the module docstring; returns the summary lines.

    The trained checkpoints go to ``models_dir`` (default: ``models`` beside ``out_dir``,
    the data dir's models folder that ``pivotal models list`` reads); the run file
    (:func:`run_file_path`), the report and the JSON go to ``out_dir``. The orchestrated run
    is read back from the run file, so ``pivotal run RUN_FILE`` repeats it."""
    import torch

    from pivotal.orchestrator.config import (
        ExpertConfig,
        GateConfig,
        HistoryConfig,
        LearningConfig,
        OrchestratorConfig,
    )
    from pivotal.orchestrator.export import write_run_json
    from pivotal.orchestrator.report import write_run_report
    from pivotal.orchestrator.run import run_backtest_mode
    from pivotal.orchestrator.run_file import RunConfig, load_run_config, write_run_file
    from pivotal.trading.brokers.config import SimulatedBrokerConfig
    from pivotal.trading.fees import FeeSchedule
    from pivotal.trading.risk import RiskConfig
    from pivotal.trading.settings import TradingSettings

    span = spans(
        store,
        train_days=10 if quick else 60,
        learn_days=1 if quick else 7,
        trade_days=2 if quick else 30,
    )
    if span is None:
        return ["no BTC/USDT and ETH/USDT 5m candles stored: the orchestrator step needs them"]
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    models = models_dir if models_dir is not None else out_dir.parent / "models"
    started = time.perf_counter()
    cnn_path = _train_cnn(store, models / "pivot_cnn", span, quick=quick)
    say(f"  PivotCNN trained in {time.perf_counter() - started:.0f} s: {cnn_path}")
    t = time.perf_counter()
    dqn_path = _train_dqn(store, models / "dqn", span, cnn_path, quick=quick)
    say(f"  DQN trained in {time.perf_counter() - t:.0f} s: {dqn_path}")
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=0.001, taker=0.001)),
        risk=RiskConfig(fraction=1.0 / len(SYMBOLS), stop_loss_pct=0.03),
    )
    run = RunConfig(
        symbols=list(SYMBOLS),
        timeframe=str(BASE),
        since=span.learn_until,
        until=span.trade_until,
        learn_from=span.train_until,
        warmup_bars=200,
        settings=settings,
        orchestrator=OrchestratorConfig(
            experts=[
                ExpertConfig(name="pivot_cnn", kind="pivot_cnn", checkpoint=cnn_path),
                ExpertConfig(name="dqn", kind="dqn", checkpoint=dqn_path, depends_on=["pivot_cnn"]),
            ],
            gate=GateConfig(buy_threshold=0.45, sell_threshold=0.45, min_confidence=0.4),
            learning=LearningConfig(
                horizon_bars=12,
                dead_band=0.002,
                batch_size=64,
                holdout=128,
                epochs=2,
                accuracy_window=300,
                degradation_drop=0.2,
                retrain_epochs=2,
                buffer=2_000,
                # one folder per run (its learning and trading span): runs stay apart
                checkpoint_dir=models
                / "online"
                / "_".join(
                    [STEM]
                    + [
                        time.strftime("%Y%m%d", time.gmtime(t / 1000))
                        for t in (span.train_until, span.learn_until, span.trade_until)
                    ]
                ),
            ),
            history=HistoryConfig(max_megabytes=256.0),
        ),
    )
    run_file = write_run_file(
        run,
        run_file_path(out_dir),
        header="The run of `pivotal demo`: train span, learning span, then the traded span.\n"
        "Repeat it with: pivotal run THIS_FILE --data-dir DATA_DIR --report out.html",
    )
    run = load_run_config(run_file)
    t = time.perf_counter()
    result = run_backtest_mode(store, run, progress=False)
    say(f"  orchestrated learning + backtest in {time.perf_counter() - t:.0f} s")
    html = write_run_report(
        out_dir / f"{STEM}.html",
        result,
        title="pivotal orchestrator: PivotCNN + DQN, held-out span",
    )
    json_path = write_run_json(result, out_dir / f"{STEM}.json")
    return [*summary_lines(result), f"report {html}", f"json {json_path}", f"run file {run_file}"]


def _train_cnn(store: DuckDBStore, folder: Path, span: DemoSpans, *, quick: bool) -> Path:
    from pivotal.training.config import TrainingConfig
    from pivotal.training.labels import LabelConfig
    from pivotal.training.pipeline import TrainJob
    from pivotal.training.run import train_job

    job = TrainJob(
        model="pivot_cnn",
        symbol=SYMBOLS[0],
        timeframe=str(BASE),
        streams=("1h",),
        since=span.train_since,
        until=span.train_until,
        frames=32,
        warmup_bars=300,
        hyperparameters={
            "levels": 3,
            "conv_channels": [16, 16],
            "kernel_size": 3,
            "stride": 2,
            "recurrent_size": 16,
            "context_size": 8,
            "fusion_size": 32,
            "dropout": 0.0,
        },
        labels=LabelConfig(horizons=(12,), dead_band=0.002, pivot_levels=3),
        training=TrainingConfig(
            epochs=1 if quick else 3,
            batch_size=256,
            lr=2e-3,
            seed=0,
            device="cpu",
            progress=False,
        ),
    )
    return train_job(store, job, folder, keep=1).best_checkpoint


def _train_dqn(
    store: DuckDBStore, folder: Path, span: DemoSpans, cnn: Path, *, quick: bool
) -> Path:
    from pivotal.rl.config import EnvConfig
    from pivotal.rl.dqn import DQNConfig
    from pivotal.rl.run import DQNJob, train_dqn_job
    from pivotal.trading.brokers.config import SimulatedBrokerConfig
    from pivotal.trading.fees import FeeSchedule
    from pivotal.trading.settings import TradingSettings

    steps = 800 if quick else 6_000
    job = DQNJob(
        since=span.train_since,
        until=span.train_until,
        envs=4,
        eval_every=steps // 3,
        cnn_checkpoint=str(cnn),
        env=EnvConfig(
            symbol=SYMBOLS[0],
            timeframe=str(BASE),
            streams=("1h",),
            frames=16,
            episode_length=288,
            settings=TradingSettings(
                broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=0.001, taker=0.001))
            ),
        ),
        dqn=DQNConfig(
            total_steps=steps,
            learning_starts=500,
            buffer_size=20_000,
            batch_size=64,
            hidden=32,
            heads=2,
            learning_rate=5e-4,
            target_update_interval=250,
            exploration_fraction=0.5,
            seed=0,
            device="cpu",
        ),
    )
    outcome = train_dqn_job(store, job, folder, keep=2)
    return outcome.best_checkpoint or folder / "dqn_final.pt"
