"""Item 7: every command, given wrong arguments of each kind, says what is wrong — the bad
value and what is expected — and exits 1 or 2, never with a Python traceback.

The commands are enumerated from the typer app, so a command added later is covered: its
required parameters need a valid value in ``VALID`` (the test says which one is missing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pivotal.apps.cli.main import app
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli_walk import (
    Leaf,
    first_option,
    is_argument,
    is_enum,
    is_existing_path,
    leaves,
    plain,
)

LEAVES = leaves(app)
TRACEBACK = "Traceback (most recent call last)"

#: a valid value for each parameter a command requires ("{home}": the test's folder)
VALID = {
    "exchange": "binance",
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "source": "1h",
    "targets": "1d",
    "out": "{home}/out",
    "trials": "1",
    "model": "cnn1d",
    "checkpoint": "{home}/not-a-checkpoint.pt",
    "paths": "{home}/candles.csv",
    "config_file": "{home}/run.yaml",
    "run_file": "{home}/run.yaml",
}

#: parameters taking timeframes, symbols, dates
TIMEFRAMES = {"timeframe", "timeframes", "source", "targets", "streams"}
SYMBOLS = {"symbol", "symbols"}
DATES = {"since", "until", "start"}
#: free-text options whose value must be one of a known set (enums are found by type)
CHOICES = {"strategy", "device", "mode", "optimizer", "scheduler"}
#: commands that create what they are given (a new symbol, a new store) rather than read it
CREATES = {
    "collect",
    "data download",
    "data import",
    "data import-trades",
    "data simulate",
    "demo",
    "config show",
    "config path",
    "models list",
}
#: (command, kind) pairs where the bad value is not reached; each with its reason
EXEMPT = {
    ("evaluate", "missing store"): "the checkpoint is read (and refused) before the store",
    ("run", "missing store"): "the run file is read (and refused) before the store",
    ("data aggregate", "missing store"): "it writes: an empty store is created, then "
    "'no trades stored' is said",
    ("data resample", "missing store"): "it writes: an empty store is created, then "
    "'nothing stored' is said",
    ("decisions query", "unknown symbol"): "the test store holds no decisions ('none yet' is "
    "said); tests/trust/test_item08_clear_messages.py queries a real history",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("item07")
    n = 300
    close = 100 + np.sin(np.arange(n) / 5)
    start = 1_704_067_200_000
    candles = Candles(
        start + np.arange(n) * 3_600_000, close, close + 1, close - 1, close, np.ones(n)
    )
    with open_store(root / "data") as store:
        store.write_candles(SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.H1), candles)
    (root / "not-a-checkpoint.pt").write_bytes(b"not a checkpoint")
    (root / "candles.csv").write_text("timestamp,open,high,low,close,volume\n")
    (root / "run.yaml").write_text("mode: backtest\n")
    return root


def _run(home: Path, args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, args, env={"COLUMNS": "200", "NO_COLOR": "1", "PIVOTAL_CONFIG": None}
    )
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{TRACEBACK}\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, text


def _base(leaf: Leaf, home: Path, skip: str | None = None) -> list[str]:
    """Valid values for every required parameter of ``leaf`` (but ``skip``), and the test
    store as ``--data-dir``."""
    args: list[str] = []
    for param in leaf.params:
        optional_but_needed = param.name in ("symbol", "timeframe") or (
            is_argument(param) and param.name in VALID
        )
        if param.name == skip or not (param.required or optional_but_needed):
            continue
        assert param.name in VALID, (
            f"`pivotal {leaf.name}` requires {param.name}: add a valid value to VALID"
        )
        value = VALID[param.name].format(home=home)
        args += [value] if is_argument(param) else [first_option(param), value]
    if leaf.param("data_dir") is not None and skip != "data_dir":
        args += ["--data-dir", str(home / "data")]
    return args


def _set(leaf: Leaf, home: Path, name: str, value: str) -> list[str]:
    param = leaf.param(name)
    assert param is not None
    given = [value] if is_argument(param) else [first_option(param), value]
    return [*leaf.path, *_base(leaf, home, skip=name), *given]


def _cases(home_marker: str = "{home}") -> Iterator[tuple[str, str, str, list[str], list[str]]]:
    """``(command, kind, parameter, argv (with {home}), expected words)``."""
    for leaf in LEAVES:
        names = {p.name for p in leaf.params}
        for param in leaf.params:
            name = param.name
            if name in TIMEFRAMES:
                yield leaf.name, "wrong timeframe", name, ["7m"], ["7m", "1h"]
            if name in SYMBOLS:
                yield leaf.name, "bad symbol form", name, ["BTC/US/DT"], ["BTC/US/DT", "BASE/QUOTE"]
                if leaf.name not in CREATES:
                    yield leaf.name, "unknown symbol", name, ["NOPE/USDT"], ["NOPE/USDT"]
            if name in DATES:
                yield leaf.name, "bad date", name, ["2024-13-45"], ["2024-13-45", "YYYY-MM-DD"]
            if is_existing_path(param) or name in ("config", "pivotal_config"):
                missing = f"{home_marker}/no-such-file.yaml"
                yield leaf.name, "nonexistent file", name, [missing], ["no-such-file.yaml"]
            if is_enum(param) or name in CHOICES:
                yield leaf.name, "unknown option value", name, ["nosuch"], ["nosuch"]
            if name == "model" and is_argument(param):
                yield leaf.name, "unknown model", name, ["nosuchmodel"], ["nosuchmodel", "cnn1d"]
        if {"since", "until"} <= names:
            yield (
                leaf.name,
                "since after until",
                "since/until",
                ["2024-03-01", "2024-01-01"],
                ["2024-03-01", "2024-01-01", "after"],
            )
        if "data_dir" in names and leaf.name not in CREATES:
            yield (
                leaf.name,
                "missing store",
                "data_dir",
                [f"{home_marker}/no-store-here"],
                ["no-store-here"],
            )


CASES = [c for c in _cases() if (c[0], c[1]) not in EXEMPT]


def _argv(leaf: Leaf, home: Path, kind: str, name: str, values: list[str]) -> list[str]:
    values = [v.format(home=home) for v in values]
    if kind == "since after until":
        return [
            *leaf.path,
            *_base(leaf, home),
            "--since",
            values[0],
            "--until",
            values[1],
        ]
    return _set(leaf, home, name, values[0])


@pytest.mark.parametrize(
    ("command", "kind", "name", "values", "expected"),
    CASES,
    ids=[f"{c[0]}:{c[1]}:{c[2]}" for c in CASES],
)
def test_wrong_argument_is_a_clear_message_not_a_traceback(
    home: Path, command: str, kind: str, name: str, values: list[str], expected: list[str]
) -> None:
    leaf = next(leaf for leaf in LEAVES if leaf.name == command)
    code, text = _run(home, _argv(leaf, home, kind, name, values))
    assert TRACEBACK not in text, text
    assert code in (1, 2), f"exit {code}: {text}"
    flat = plain(text)
    for word in expected:
        assert word in flat, f"{word!r} not said by `pivotal {command}` ({kind}): {flat}"


def test_every_command_is_exercised() -> None:
    covered = {c[0] for c in CASES}
    assert covered >= {leaf.name for leaf in LEAVES if leaf.params} - {"config path"}


# -- the cases of the issue, with their specific messages ---------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backtest", "-t", "7m"], ["--timeframe", "'7m' is not a timeframe", "1m, 3m, 5m"]),
        (["backtest", "-s", "BTC/US/DT"], ["--symbol", "BTC/US/DT", "BASE/QUOTE"]),
        (["backtest", "-s", "NOPE/USDT"], ["NOPE/USDT is not in the store", "BTC/USDT"]),
        (["backtest", "-s", "BTC/USDT", "-t", "1d"], ["no 1d candles for BTC/USDT", "1h"]),
        (["train", "nosuchmodel"], ["unknown model 'nosuchmodel'", "cnn1d", "dqn"]),
        (["optimize", "dqn", "-n", "1"], ["dqn is trained with `pivotal train dqn`"]),
        (
            ["data", "resample", "-e", "binance", "-s", "BTC/USDT", "--from", "1h", "--to", "1m"],
            ["cannot resample 1h to 1m", "longer", "2h"],
        ),
        (
            ["backtest", "--since", "2024-03-01", "--until", "2024-01-01"],
            ["--since 2024-03-01 is after --until 2024-01-01"],
        ),
    ],
)
def test_the_issues_cases_say_what_is_expected(
    home: Path, args: list[str], expected: list[str]
) -> None:
    code, text = _run(home, [*args, "--data-dir", str(home / "data")])
    assert TRACEBACK not in text, text
    assert code in (1, 2), text
    flat = plain(text)
    for word in expected:
        assert word in flat, flat


@pytest.mark.parametrize("typed", ["BTCUSDT", "btcusdt", "btc/usdt", "BTC-USDT"])
def test_symbol_forms_are_accepted_when_unambiguous(home: Path, typed: str) -> None:
    code, text = _run(home, ["backtest", "-s", typed, "-t", "1h", "--data-dir", str(home / "data")])
    assert code == 0, text
    assert "BTC/USDT 1h: 300 bars" in plain(text)


def test_ambiguous_symbol_names_the_candidates(home: Path) -> None:
    code, text = _run(home, ["backtest", "-s", "BTCBUSD", "--data-dir", str(home / "data")])
    assert code == 2
    assert "BTC/BUSD or BTCB/USD" in plain(text)


def test_unexpected_error_is_reported_without_traceback(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pivotal.apps.cli.config_cmd as config_cmd

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(config_cmd, "load_context", broken)
    code, text = _run(home, ["config", "show"])
    assert code == 1
    assert TRACEBACK not in text
    assert "internal error: RuntimeError: boom" in plain(text)
    assert "PIVOTAL_DEBUG=1" in plain(text)


# -- DQN checkpoints: paths relative to the checkpoint; the market of the CNN it reads ------


def test_dqn_checkpoint_finds_its_cnn_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pivotal.rl.run import JOB_FILE, DQNJob, job_as_saved, read_job

    (tmp_path / "models" / "pivot_cnn").mkdir(parents=True)
    (tmp_path / "models" / "dqn").mkdir()
    cnn = tmp_path / "models" / "pivot_cnn" / "cnn.pt"
    cnn.write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)  # training was given a path relative to its cwd
    job = DQNJob.model_validate({"cnn_checkpoint": "models/pivot_cnn/cnn.pt"})
    folder = tmp_path / "models" / "dqn"
    saved = job_as_saved(job, folder)
    assert saved.cnn_checkpoint == "../pivot_cnn/cnn.pt"
    (folder / JOB_FILE).write_text(saved.model_dump_json())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    found = read_job(folder / "dqn_e1.pt").cnn_checkpoint
    assert found is not None and Path(found) == cnn.resolve()


def test_dqn_job_of_a_moved_cnn_is_a_clear_error(tmp_path: Path) -> None:
    from pivotal.core.errors import ModelError
    from pivotal.rl.run import JOB_FILE, build_observations, read_job

    (tmp_path / JOB_FILE).write_text('{"cnn_checkpoint": "../gone/cnn.pt"}')
    job = read_job(tmp_path / "dqn.pt")  # the orchestrator's DQN expert needs no CNN file
    assert job.cnn_checkpoint == str((tmp_path.parent / "gone" / "cnn.pt").resolve())
    with pytest.raises(ModelError, match=r"reads PivotCNN features from .*gone/cnn\.pt"):
        build_observations({}, job)


def _fake_cnn(monkeypatch: pytest.MonkeyPatch) -> None:
    from pivotal.apps.cli import rl_cmd

    monkeypatch.setattr(rl_cmd, "_cnn_market", lambda _: ("BTC/USDT", "1m", ("5m",), 8))


def test_dqn_takes_the_market_of_its_cnn(monkeypatch: pytest.MonkeyPatch) -> None:
    from pivotal.apps.cli.rl_cmd import build_dqn_job

    _fake_cnn(monkeypatch)
    job = build_dqn_job(None, {"cnn_checkpoint": "cnn.pt", "streams": None, "timeframe": None})
    assert (job.env.symbol, job.env.timeframe, job.env.streams) == ("BTC/USDT", "1m", ("5m",))
    assert job.env.frames == 8


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"streams": ("1h",)}, "--streams 1h does not match the CNN"),
        ({"timeframe": "5m"}, "--timeframe 5m does not match the CNN"),
        ({"frames": 4}, "--frames 4 is fewer than the 8 frames the CNN reads"),
    ],
)
def test_dqn_options_that_contradict_its_cnn_are_refused(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, object], expected: str
) -> None:
    import typer

    from pivotal.apps.cli.rl_cmd import build_dqn_job

    _fake_cnn(monkeypatch)
    with pytest.raises(typer.BadParameter, match=expected):
        build_dqn_job(None, {"cnn_checkpoint": "cnn.pt", **options})


@pytest.mark.slow
def test_train_dqn_on_a_cnn_then_evaluate_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: `train dqn --cnn` with a cwd-relative path and no --streams, then
    `evaluate` of its checkpoint from another working directory."""
    import shutil

    from pivotal.data.duckdb_store import STORE_FILE_NAME
    from pivotal.testing.orchestrator import train_tiny_experts

    experts = train_tiny_experts(tmp_path / "experts")
    (tmp_path / "data").mkdir()
    shutil.copy(experts.store, tmp_path / "data" / STORE_FILE_NAME)
    shutil.copytree(experts.cnn.parent, tmp_path / "cnn")
    monkeypatch.chdir(tmp_path)
    params = "hidden=16 heads=2 learning_starts=100 batch_size=16 buffer_size=1000 eval_every=100"
    code, text = _run(
        tmp_path,
        ["train", "dqn", "--cnn", f"cnn/{experts.cnn.name}", "-s", "BTC/USDT", "--steps", "200",
         "--envs", "2", "--episode-length", "50", "--device", "cpu", "--out", "dqn",
         "--no-tensorboard", "--html", "dqn.html", "-d", "data",
         *[a for p in params.split() for a in ("-p", p)]],
    )  # fmt: skip
    assert code == 0, text
    checkpoint = sorted((tmp_path / "dqn").glob("dqn_*.pt"))[0]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, text = _run(tmp_path, ["evaluate", str(checkpoint), "-d", str(tmp_path / "data")])
    assert code == 0, text
    assert "held-out range" in text


def test_training_report_skips_a_target_with_no_known_outcome(tmp_path: Path) -> None:
    """A pivot target that never confirms in the test range used to end `pivotal train`
    with a traceback after training (plotting an all-NaN truth)."""
    from pivotal.training.report import EvaluationReport, TargetEvaluation, write_html

    report = EvaluationReport(
        "pivot_cnn",
        None,
        (TargetEvaluation("pivot_price_l5", "regression", {"mse": 1.0}, {"mean": {"mse": 2.0}}),),
    )
    out = write_html(
        report,
        tmp_path / "r.html",
        predictions={"pivot_price_l5": np.ones(20)},
        truth={"pivot_price_l5": np.full(20, np.nan)},
    )
    assert out.is_file()
