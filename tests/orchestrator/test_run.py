"""`pivotal.orchestrator.run`: the run file (validation, loading, path resolution), building
the experts from it, and the orchestrated backtest over a store: results beside buy-and-hold,
decisions after ``since`` only, every step in the inference history, and a learning span that
runs the models before trading without trading."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from pivotal.core.errors import ConfigError, DataError
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory
from pivotal.orchestrator.config import OrchestratorConfig
from pivotal.orchestrator.experts import DQNExpert, PivotCNNExpert
from pivotal.orchestrator.run import OrchestratedRun, build_experts, run_backtest_mode
from pivotal.orchestrator.run_file import RunConfig, load_run_config
from pivotal.testing.orchestrator import GRID_START, TinyExperts, train_tiny_experts
from pivotal.testing.threads import one_torch_thread

M1 = Timeframe.parse("1m")
LEARN_FROM = GRID_START + 500 * M1.ms
SINCE = GRID_START + 700 * M1.ms
UNTIL = GRID_START + 1_000 * M1.ms


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyExperts:
    """A PivotCNN and a DQN over its features, trained once on planted BTC/USDT 1m candles."""
    return train_tiny_experts(tmp_path_factory.mktemp("tiny-experts"))


def _experts(tiny: TinyExperts) -> list[dict[str, Any]]:
    return [
        {"name": "pivot_cnn", "kind": "pivot_cnn", "checkpoint": str(tiny.cnn)},
        {"name": "dqn", "kind": "dqn", "checkpoint": str(tiny.dqn), "depends_on": ["pivot_cnn"]},
    ]


def _run(tiny: TinyExperts, **fields: Any) -> RunConfig:
    """A 1m run of both experts; thresholds 0 make the gate act (BUY or SELL) at every step,
    so trades happen whatever the models learned."""
    orchestrator = {
        "experts": _experts(tiny),
        "gate": {"buy_threshold": 0.0, "sell_threshold": 0.0},
        "learning": {"horizon_bars": 5, "batch_size": 32, "holdout": 32},
        **fields.pop("orchestrator", {}),
    }
    base: dict[str, Any] = {
        "timeframe": "1m",
        "since": SINCE,
        "until": UNTIL,
        "warmup_bars": 50,
        "orchestrator": orchestrator,
    }
    return RunConfig.model_validate({**base, **fields})


def _copy_store(tiny: TinyExperts, folder: Path) -> Path:
    """A writable copy of the tiny store (the history is written into it)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "store.duckdb"
    shutil.copyfile(tiny.store, target)
    return target


@pytest.fixture(scope="module")
def learned(
    tiny: TinyExperts, tmp_path_factory: pytest.TempPathFactory
) -> tuple[OrchestratedRun, Path]:
    """One run with a learning span [LEARN_FROM, SINCE) before trading [SINCE, UNTIL)."""
    path = _copy_store(tiny, tmp_path_factory.mktemp("learned"))
    with DuckDBStore(path) as store:
        run = run_backtest_mode(store, _run(tiny, learn_from=LEARN_FROM))
    return run, path


# -- the run file ---------------------------------------------------------------------------
def test_times_are_read_as_utc_milliseconds() -> None:
    config = RunConfig.model_validate(
        {"since": "2023-11-15", "until": "2023-11-15T12:30", "learn_from": 1_699_900_000_000}
    )
    assert config.since == 1_700_006_400_000
    assert config.until == 1_700_006_400_000 + (12 * 60 + 30) * 60_000
    assert config.learn_from == 1_699_900_000_000
    assert config.base == Timeframe.parse("5m")
    assert config.symbols == ["BTC/USDT"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"bogus": 1}, ["bogus"]),
        ({"orchestrator": {"gate": {"treshold": 0.5}}}, ["treshold"]),
        ({"since": "2024-01-02", "until": "2024-01-01"}, ["since", "before until"]),
        ({"since": "2024-01-02", "until": "2024-01-02"}, ["since", "before until"]),
        ({"since": "2024-01-02", "learn_from": "2024-01-02"}, ["learn_from", "before since"]),
        ({"since": "2024-01-02", "learn_from": "2024-01-03"}, ["learn_from", "before since"]),
        ({"learn_from": "2024-01-01"}, ["learn_from needs since"]),
        ({"timeframe": "7x"}, ["timeframe", "7x"]),
        ({"symbols": ["BTCUSDT"]}, ["BTCUSDT", "BASE/QUOTE"]),
        ({"symbols": []}, ["symbols"]),
        ({"since": "yesterday"}, ["since", "yesterday"]),
        ({"mode": "sim"}, ["mode", "backtest", "paper", "live"]),
    ],
)
def test_run_config_refuses_bad_fields_by_name(data: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate(data)
    for word in words:
        assert word in str(caught.value)


def test_load_resolves_relative_paths_against_the_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    absolute = tmp_path / "elsewhere" / "dqn.pt"
    (folder / "run.yaml").write_text(
        "timeframe: 1m\n"
        "since: 2023-11-15\n"  # unquoted: YAML reads a date
        "until: 2023-11-16T00:00:00Z\n"  # unquoted: YAML reads a datetime
        "orchestrator:\n"
        "  experts:\n"
        "    - {name: cnn, kind: pivot_cnn, checkpoint: models/cnn.pt}\n"
        f"    - {{name: dqn, kind: dqn, checkpoint: {absolute}, depends_on: [cnn]}}\n"
        "  learning: {checkpoint_dir: online}\n",
        encoding="utf-8",
    )
    config = load_run_config(folder / "run.yaml")
    cnn, dqn = config.orchestrator.experts
    assert cnn.checkpoint == folder / "models" / "cnn.pt"
    assert dqn.checkpoint == absolute
    assert config.orchestrator.learning.checkpoint_dir == folder / "online"
    assert config.since == 1_700_006_400_000
    assert config.until == 1_700_006_400_000 + 86_400_000


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("mode: backtest\nsymbols: [BTC/USDT\n", ["cannot read"]),
        ("- a\n- b\n", ["mapping"]),
        ("timeframe: 1m\nwarmup: 10\n", ["warmup", "Extra inputs"]),
        ("orchestrator: {learning: {horizon_bar: 3}}\n", ["orchestrator.learning.horizon_bar"]),
        ("since: 2024-01-02\nuntil: 2024-01-01\n", ["run file", "before until"]),
    ],
)
def test_load_reports_problems_as_config_errors(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_load_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_run_config(tmp_path / "nope.yaml")


# -- experts --------------------------------------------------------------------------------
def test_build_experts_loads_both_kinds(tiny: TinyExperts) -> None:
    experts = build_experts(OrchestratorConfig.model_validate({"experts": _experts(tiny)}))
    assert [e.name for e in experts] == ["pivot_cnn", "dqn"]
    assert isinstance(experts[0], PivotCNNExpert)
    assert isinstance(experts[1], DQNExpert)


def test_build_experts_refuses_a_missing_checkpoint(tiny: TinyExperts, tmp_path: Path) -> None:
    config = OrchestratorConfig.model_validate(
        {"experts": [{"name": "cnn", "kind": "pivot_cnn", "checkpoint": str(tmp_path / "x.pt")}]}
    )
    with pytest.raises(ConfigError, match=r"'cnn'.*x\.pt not found"):
        build_experts(config)


def test_build_experts_refuses_a_cnn_that_reads_another_model(tiny: TinyExperts) -> None:
    config = OrchestratorConfig.model_validate(
        {
            "experts": [
                {"name": "a", "kind": "pivot_cnn", "checkpoint": str(tiny.cnn)},
                {
                    "name": "b",
                    "kind": "pivot_cnn",
                    "checkpoint": str(tiny.cnn),
                    "depends_on": ["a"],
                },
            ]
        }
    )
    with pytest.raises(ConfigError, match="'b': a pivot_cnn reads no other model"):
        build_experts(config)


@pytest.mark.parametrize(
    ("experts", "words"),
    [
        # trained on the CNN's features but listed without the CNN it reads
        ([{"name": "q", "kind": "dqn", "checkpoint": "dqn"}], ["'q'", "PivotCNN features"]),
        # a DQN checkpoint given as a pivot_cnn, and the other way round
        ([{"name": "c", "kind": "pivot_cnn", "checkpoint": "dqn"}], ["'c'", "pivotal train"]),
        ([{"name": "d", "kind": "dqn", "checkpoint": "cnn"}], ["'d'", "dqn.job.json"]),
    ],
)
def test_build_experts_reports_checkpoints_that_do_not_load_as_config_errors(
    tiny: TinyExperts, experts: list[dict[str, str]], words: list[str]
) -> None:
    paths = {"cnn": str(tiny.cnn), "dqn": str(tiny.dqn)}
    config = OrchestratorConfig.model_validate(
        {"experts": [{**e, "checkpoint": paths[e["checkpoint"]]} for e in experts]}
    )
    with pytest.raises(ConfigError) as caught:
        build_experts(config)
    for word in words:
        assert word in str(caught.value)


def test_build_experts_refuses_a_dqn_that_reads_two_models(tiny: TinyExperts) -> None:
    config = OrchestratorConfig.model_validate(
        {
            "experts": [
                {"name": "a", "kind": "pivot_cnn", "checkpoint": str(tiny.cnn)},
                {"name": "b", "kind": "pivot_cnn", "checkpoint": str(tiny.cnn)},
                {"name": "q", "kind": "dqn", "checkpoint": str(tiny.dqn), "depends_on": ["a", "b"]},
            ]
        }
    )
    with pytest.raises(ConfigError, match="'q': a dqn reads at most one"):
        build_experts(config)


def test_build_experts_refuses_an_empty_list() -> None:
    with pytest.raises(ConfigError, match="no experts"):
        build_experts(OrchestratorConfig())


# -- the orchestrated backtest --------------------------------------------------------------
def test_run_reports_metrics_beside_buy_and_hold(learned: tuple[OrchestratedRun, Path]) -> None:
    run, _ = learned
    candles = run.candles["BTC/USDT"]
    assert int(candles.timestamp[0]) == SINCE
    assert int(candles.timestamp[-1]) + M1.ms == UNTIL
    metrics = run.result.metrics
    assert {"total_return_pct", "max_drawdown_pct", "n_trades", "fees_paid"} <= set(metrics)
    assert int(metrics["start"]) == SINCE
    assert np.isfinite(metrics["total_return_pct"])
    hold = run.benchmark["buy and hold"]
    assert hold.metrics["n_trades"] + len(hold.open_trades) >= 1
    assert int(hold.metrics["start"]) == SINCE
    assert np.isfinite(hold.metrics["total_return_pct"])
    assert len(hold.equity) == len(run.result.equity) == len(candles)
    assert "BTC/USDT 1m" in run.data_note and f"{len(candles):,} bars" in run.data_note


def test_decisions_cover_every_trading_bar_after_since(
    learned: tuple[OrchestratedRun, Path],
) -> None:
    run, _ = learned
    decisions = run.decisions
    candles = run.candles["BTC/USDT"]
    assert len(decisions) == len(candles)
    assert decisions["timestamp"].tolist() == (candles.timestamp + M1.ms).tolist()
    assert (decisions["timestamp"] > SINCE).all() and (decisions["timestamp"] <= UNTIL).all()
    assert set(decisions["symbol"]) == {"BTC/USDT"}
    assert {"share_pivot_cnn", "share_dqn"} <= set(decisions.columns)
    # thresholds 0: the gate acts at every step that is not a tie
    assert set(decisions["action"]) <= {"BUY", "SELL", "HOLD"}
    assert (decisions["action"] != "HOLD").sum() > len(decisions) // 2


def test_every_step_is_stored_including_the_learning_span(
    learned: tuple[OrchestratedRun, Path],
) -> None:
    run, path = learned
    n_learn = (SINCE - LEARN_FROM) // M1.ms
    n_trade = len(run.decisions)
    assert run.stored == len(run.orchestrator.decisions) == n_learn + n_trade
    with DuckDBStore(path, read_only=True) as store:
        history = InferenceHistory(store)
        assert history.count() == run.stored
        assert history.count(symbol="BTC/USDT", until=SINCE + 1) == n_learn
        assert history.count(since=SINCE + 1) == n_trade
        assert history.count(model="dqn") == run.stored
        first = history.summary(limit=1)
    assert int(first["timestamp"].iloc[0]) == LEARN_FROM + M1.ms


def test_the_learning_span_runs_before_trading_and_trades_nothing(
    learned: tuple[OrchestratedRun, Path],
) -> None:
    run, _ = learned
    steps = [d.timestamp for d in run.orchestrator.decisions]
    assert steps == sorted(steps)
    assert steps[0] == LEARN_FROM + M1.ms
    # the learning loop worked on the span: predictions matured and updates ran before since
    assert run.accuracy is not None
    assert (run.accuracy["timestamp"] <= SINCE).any()
    assert any(e["timestamp"] <= SINCE for e in run.events)
    # trading starts at since: every fill and trade is inside [since, until]
    trades = run.result.trades
    assert len(trades) > 0
    assert (trades["entry_time"] >= SINCE).all()
    assert (run.result.fills["timestamp"] >= SINCE).all()
    assert int(run.result.timestamps[0]) >= SINCE


def test_history_off_stores_nothing_and_runs_repeat(tiny: TinyExperts, tmp_path: Path) -> None:
    path = _copy_store(tiny, tmp_path)
    config = _run(
        tiny, timeframe="5m", orchestrator={"learning": {"enabled": False}}, warmup_bars=20
    )
    with DuckDBStore(path) as store:
        first = run_backtest_mode(store, config, history=False)
        again = run_backtest_mode(store, config, history=False)
        assert first.stored == again.stored == 0
        assert InferenceHistory(store).count() == 0
    assert len(first.decisions) == len(first.candles["BTC/USDT"]) == (UNTIL - SINCE) // 300_000
    assert first.decisions.equals(again.decisions)
    assert first.result.equity.tolist() == again.result.equity.tolist()


def test_a_range_without_candles_is_a_data_error(tiny: TinyExperts, tmp_path: Path) -> None:
    path = _copy_store(tiny, tmp_path)
    end = int(tiny.candles.timestamp[-1]) + M1.ms
    config = _run(tiny, since=end + 60 * M1.ms, until=end + 120 * M1.ms)
    with DuckDBStore(path) as store, pytest.raises(DataError, match="BTC/USDT"):
        run_backtest_mode(store, config)
