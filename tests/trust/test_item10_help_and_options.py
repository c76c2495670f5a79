"""Item 10: help and options. Every parameter of every command (walked from the typer app,
so new ones are covered) has help text and says its default; ``-h`` works like ``--help``;
flags show no ``<bool>`` value; no internal jargon in help or the README; ``train dqn`` takes
``-p NAME=VALUE``; the best.json of ``pivotal optimize`` is a job ``pivotal train --job``
accepts, and the search prints a line per trial."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from pivotal.apps.cli.main import app
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli_walk import (
    first_option,
    groups,
    is_argument,
    is_flag,
    leaves,
    plain,
)

LEAVES = leaves(app)
README = Path(__file__).resolve().parents[2] / "README.md"
JARGON = re.compile(r"\bstages? \d|\bseed 0\d\d|\bseeds? §|§ ?\d", re.IGNORECASE)
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "PIVOTAL_CONFIG": None}


def _help(words: tuple[str, ...], flag: str = "-h") -> tuple[int, str]:
    result = CliRunner().invoke(app, [*words, flag], env=ENV)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("leaf", LEAVES, ids=[leaf.name for leaf in LEAVES])
def test_every_parameter_has_help_and_says_its_default(leaf) -> None:  # type: ignore[no-untyped-def]
    problems = []
    for param in leaf.params:
        name = param.name if is_argument(param) else first_option(param)
        text = (param.help or "").strip()
        if not text:
            problems.append(f"{name}: no help text")
        if is_argument(param) or param.required or is_flag(param) or param.hidden:
            continue
        shows = param.show_default
        if param.default is None or param.default == []:
            says = "default" in text.lower() or "without it" in text.lower()
            if not isinstance(shows, str) and not says:
                problems.append(f"{name}: default None but no show_default='...' saying it")
        elif shows is False:
            problems.append(f"{name}: hides its default {param.default!r}")
    assert not problems, f"pivotal {leaf.name}: " + "; ".join(problems)


@pytest.mark.parametrize(
    "words",
    [*groups(app), *(leaf.path for leaf in LEAVES)],
    ids=[" ".join(w) or "pivotal" for w in [*groups(app), *(leaf.path for leaf in LEAVES)]],
)
def test_dash_h_is_help_without_jargon_or_bool_values(words: tuple[str, ...]) -> None:
    code, text = _help(words)
    assert code == 0, text
    assert "Usage:" in text and ("-h" in text and "--help" in text)
    assert text == _help(words, "--help")[1]
    flat = plain(text)
    assert "<bool>" not in flat, f"a flag shows a <bool> value: {flat}"
    assert not JARGON.search(flat), f"internal jargon {JARGON.search(flat)!r} in help: {flat}"


def test_readme_has_no_internal_jargon() -> None:
    found = [
        f"line {i}: {line.strip()}"
        for i, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
        if JARGON.search(line)
    ]
    assert not found, "\n".join(found)


def test_error_messages_in_source_have_no_internal_jargon() -> None:
    """Strings a user can meet (errors raised, help given) carry no stage or seed numbers."""
    root = Path(__file__).resolve().parents[2] / "src" / "pivotal"
    quoted = re.compile(r"""(?:raise \w+\(|help=|BadParameter\()\s*f?["']([^"']*)""")
    found = []
    for path in root.rglob("*.py"):
        for match in quoted.finditer(path.read_text(encoding="utf-8")):
            if JARGON.search(match.group(1)):
                found.append(f"{path.relative_to(root)}: {match.group(1)}")
    assert not found, "\n".join(found)


# -- train dqn -p ------------------------------------------------------------------------------


def test_train_dqn_takes_p_name_value_like_the_other_models() -> None:
    from pivotal.apps.cli.rl_cmd import build_dqn_job

    job = build_dqn_job(
        None,
        {"symbol": "BTC/USDT"},
        {"hidden": 16, "heads": 2, "reward": "pnl", "eval_every": 100, "env.frames": 12},
    )
    assert (job.dqn.hidden, job.dqn.heads, job.env.frames, job.eval_every) == (16, 2, 12, 100)
    assert job.env.reward == "pnl"
    with pytest.raises(typer.BadParameter, match=r"unknown DQN parameter 'nope'.*gamma"):
        build_dqn_job(None, {}, {"nope": 1})


def test_train_help_documents_p_for_dqn() -> None:
    _, text = _help(("train",))
    assert "for dqn, a field of its job" in plain(text)


# -- optimize → best.json → train --job ---------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("item10") / "data"
    n = 2000
    i = np.arange(n)
    close = 100 * np.exp(0.02 * np.sin(2 * np.pi * i / 40))
    open_ = np.concatenate([[close[0]], close[:-1]])
    candles = Candles(
        1_700_000_000_000 // 3_600_000 * 3_600_000 + i * 60_000,
        open_,
        np.maximum(open_, close) * 1.0002,
        np.minimum(open_, close) * 0.9998,
        close,
        np.ones(n),
    )
    with open_store(root) as store:
        store.write_candles(SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1), candles)
    return root


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env=ENV)
    text = result.stdout + result.stderr
    assert result.exit_code == 0, text
    return text


def test_optimize_best_json_trains_again_with_train_job(data_dir: Path) -> None:
    searched = _invoke(
        ["optimize", "cnn1d", "-n", "1", "-s", "BTC/USDT", "-t", "1m", "--frames", "8",
         "--epochs", "1", "--device", "cpu", "-d", str(data_dir)]
    )  # fmt: skip
    lines = plain(searched)
    assert re.search(
        r"trial 1/1 \(#0\): validation loss [\d.e-]+; best [\d.e-]+ \(trial #0\)", lines
    )
    best_file = data_dir / "search" / "cnn1d.best.json"
    best = json.loads(best_file.read_text())
    assert best["job"]["model"] == "cnn1d"
    assert best["job"]["hyperparameters"]["channels"] == best["params"]["channels"]
    trained = _invoke(
        ["train", "cnn1d", "--job", str(best_file), "--no-tensorboard",
         "--html", str(data_dir / "r.html"), "-d", str(data_dir)]
    )  # fmt: skip
    found = re.search(r"validation loss ([\d.e-]+)\)", plain(trained))
    assert found is not None, trained
    assert float(found.group(1)) == pytest.approx(best["value"], rel=1e-3)


def test_train_job_of_another_model_is_refused(data_dir: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("model: cnn1d\nsymbol: BTC/USDT\n")
    result = CliRunner().invoke(
        app, ["train", "pivot_cnn", "--job", str(job), "-d", str(data_dir)], env=ENV
    )
    assert result.exit_code == 2
    assert "is a job for model 'cnn1d', not 'pivot_cnn'" in plain(result.stdout + result.stderr)


def test_models_list_describes_models_without_jargon(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "list", "-d", str(tmp_path)], env=ENV)
    assert result.exit_code == 0, result.stdout
    assert "registered models" in result.stdout
    found = JARGON.search(plain(result.stdout)) or re.search(r"\bthe seeds?\b", result.stdout)
    assert found is None, plain(result.stdout)
