"""Item 8: messages that say what is true. ``--since`` after ``--until`` names both dates
(never the symbol, never epoch milliseconds); ``decisions query`` says what span the history
holds when asked for more (retention prunes older steps) and which models it has; a DQN
checkpoint used where a PivotCNN is expected is called a DQN checkpoint, with the fix."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pivotal.apps.cli.main import app
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.data.series import SeriesKey
from pivotal.testing.cli_walk import plain

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "PIVOTAL_CONFIG": None}
DAY = 86_400_000
FIRST = 1_769_644_800_000  # 2026-01-29 00:00 UTC
LAST = FIRST + 21 * DAY  # 2026-02-19 00:00 UTC


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, plain(result.stdout), plain(result.stderr)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with BTC/USDT 1h candles and a history of daily decisions by two models
    (pivot_cnn and dqn on BTC/USDT, pivot_cnn only on ETH/USDT) from 2026-01-29 to 02-19."""
    root = tmp_path_factory.mktemp("item08") / "data"
    n = 200
    close = 100 + np.sin(np.arange(n) / 5)
    candles = Candles(
        FIRST + np.arange(n) * 3_600_000, close, close + 1, close - 1, close, np.ones(n)
    )
    records = [
        InferenceRecord(
            symbol,
            ts,
            "HOLD",
            0.5,
            outputs={name: {"p_buy": 0.2} for name in models},
        )
        for ts in range(FIRST, LAST + 1, DAY)
        for symbol, models in (("BTC/USDT", ("pivot_cnn", "dqn")), ("ETH/USDT", ("pivot_cnn",)))
    ]
    with open_store(root) as store:
        store.write_candles(SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.H1), candles)
        InferenceHistory(store).append(records)
    return root


# -- --since after --until ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["backtest", "-s", "BTC/USDT", "-t", "1h"],
        ["train", "cnn1d", "-s", "BTC/USDT", "-t", "1h"],
        ["features", "compute", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", "--out", "x"],
        ["pivots", "show", "-e", "binance", "-s", "BTC/USDT", "-t", "1h", "--out", "x.html"],
        ["decisions", "query", "-s", "BTC/USDT"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_since_after_until_names_both_dates(data_dir: Path, command: list[str]) -> None:
    code, out, err = _run(
        [*command, "--since", "2026-02-10", "--until", "2026-02-01", "-d", str(data_dir)]
    )
    assert code == 2
    text = out + err
    assert "--since 2026-02-10 is after --until 2026-02-01" in text
    assert not re.search(r"\d{13}", text), f"epoch milliseconds in: {text}"
    assert "no 1h candles" not in text and "not in the store" not in text  # not the symbol


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        (
            "since: 2026-01-20\nuntil: 2026-01-10\n",
            "since 2026-01-20 must be before until 2026-01-10",
        ),
        (
            "since: 2026-01-20\nuntil: 2026-02-10\nlearn_from: 2026-01-25 12:00\n",
            "learn_from 2026-01-25 12:00 UTC must be before since 2026-01-20",
        ),
    ],
)
def test_a_run_files_span_in_the_wrong_order_names_the_dates(
    tmp_path: Path, spans: str, expected: str
) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "symbols: [BTC/USDT]\ntimeframe: 5m\n"
        + spans
        + "orchestrator:\n  experts:\n  - {name: cnn, kind: pivot_cnn, checkpoint: cnn.pt}\n"
    )
    code, out, err = _run(["run", str(run_file), "-d", str(tmp_path)])
    text = plain(out + err)
    assert code == 2, text
    assert expected in " ".join(text.split())
    assert not re.search(r"\d{13}", text), f"epoch milliseconds in: {text}"
    assert "Value error" not in text


# -- decisions query ----------------------------------------------------------------------------


def test_range_before_the_retained_history_says_what_is_held(data_dir: Path) -> None:
    code, out, err = _run(
        ["decisions", "query", "-s", "BTC/USDT", "--since", "2026-01-20", "-d", str(data_dir)]
    )
    assert code == 0, err
    assert (
        "history holds 2026-01-29 00:00:00..2026-02-19 00:00:00 UTC for BTC/USDT; earlier "
        "steps are not stored" in err
    )
    assert "retention" in err and "max_age_days" in err
    assert "22 stored decisions match" in out


def test_range_within_the_history_adds_no_note(data_dir: Path) -> None:
    code, out, err = _run(
        ["decisions", "query", "-s", "BTC/USDT", "--since", "2026-02-01", "-d", str(data_dir)]
    )
    assert code == 0
    assert "history holds" not in err
    assert "19 stored decisions match" in out  # 02-01 .. 02-19


def test_unknown_model_names_the_models_the_history_has(data_dir: Path) -> None:
    code, out, err = _run(["decisions", "query", "--model", "foo", "-d", str(data_dir)])
    assert code == 2
    text = out + err
    assert "no stored decisions by model 'foo'; the history has decisions by dqn, pivot_cnn" in text
    assert "pivotal run" not in text


def test_model_not_in_a_symbols_history_is_named_per_symbol(data_dir: Path) -> None:
    code, out, err = _run(
        ["decisions", "query", "-s", "ETH/USDT", "--model", "dqn", "-d", str(data_dir)]
    )
    assert code == 2
    assert "no stored decisions by model 'dqn' for ETH/USDT" in out + err
    assert "the history has decisions by pivot_cnn" in out + err


def test_unknown_symbol_names_the_symbols_the_history_has(data_dir: Path) -> None:
    code, out, err = _run(["decisions", "query", "-s", "SOL/USDT", "-d", str(data_dir)])
    assert code == 2
    assert "the history holds no decisions for SOL/USDT; it has BTC/USDT, ETH/USDT" in out + err


def test_symbol_typed_without_slash_is_resolved_against_the_history(data_dir: Path) -> None:
    code, out, _ = _run(["decisions", "query", "-s", "ethusdt", "-d", str(data_dir)])
    assert code == 0
    assert "22 stored decisions match" in out


# -- a DQN checkpoint where a PivotCNN is expected ---------------------------------------------


def _dqn_checkpoint(folder: Path) -> Path:
    from pivotal.rl.dqn import DQNAgent, DQNConfig, QNetwork

    config = DQNConfig(hidden=8, heads=2, total_steps=10, learning_starts=0, device="cpu")
    agent = DQNAgent(QNetwork(4, 6, 3, hidden=8, heads=2), config)
    return agent.save(folder / "dqn_e1.pt")


def test_dqn_checkpoint_as_pivot_cnn_is_called_a_dqn_checkpoint(tmp_path: Path) -> None:
    from pivotal.rl.cnn_features import read_job_and_scaling

    path = _dqn_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="DQN") as raised:
        read_job_and_scaling(path)
    message = str(raised.value)
    assert "is a DQN agent's (written by `pivotal train dqn`)" in message
    assert "kind: dqn" in message
    assert "not written by" not in message


def test_evaluate_of_a_dqn_checkpoint_without_its_job_says_so(tmp_path: Path) -> None:
    path = _dqn_checkpoint(tmp_path)
    with open_store(tmp_path / "data"):
        pass
    code, out, err = _run(["evaluate", str(path), "-d", str(tmp_path / "data")])
    assert code == 1
    assert "is a DQN agent's" in out + err and "dqn.job.json" in out + err
