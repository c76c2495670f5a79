"""`pivotal run` and `pivotal decisions query` as a user runs them: an orchestrated backtest
from a run file over the data dir's store (learning span, then trading), its summary beside
buy-and-hold and its HTML report, then the stored decisions read back by symbol, model and
time; and clear refusals (paper/live mode, unknown keys, a checkpoint that does not fit)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pivotal.data.duckdb_store import STORE_FILE_NAME, open_store
from pivotal.testing.cli import run_cli
from pivotal.testing.orchestrator import GRID_START, train_tiny_experts
from pivotal.testing.threads import one_torch_thread

MINUTE = 60_000
LEARN_FROM = GRID_START + 500 * MINUTE
SINCE = GRID_START + 700 * MINUTE
UNTIL = GRID_START + 1_000 * MINUTE
N_LEARN = (SINCE - LEARN_FROM) // MINUTE
N_TRADE = (UNTIL - SINCE) // MINUTE


def _iso(ms: int, fmt: str = "%Y-%m-%dT%H:%M") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)


@dataclass(frozen=True)
class Home:
    """A user's folder: ``run.yaml``, ``models/`` (checkpoints it names by relative path) and
    ``data/`` (the store with BTC/USDT 1m and 5m candles)."""

    root: Path
    cnn: str
    dqn: str

    def run_file(
        self, name: str = "run.yaml", *, extra: str = "", dqn_reads_cnn: bool = True
    ) -> str:
        depends = ", depends_on: [pivot_cnn]" if dqn_reads_cnn else ""
        text = (
            "mode: backtest\n"
            "symbols: [BTC/USDT]\n"
            "timeframe: 1m\n"
            f'learn_from: "{_iso(LEARN_FROM)}"\n'
            f"since: {_iso(SINCE, '%Y-%m-%dT%H:%M:%SZ')}\n"  # unquoted: a YAML datetime
            f"until: {UNTIL}\n"
            "warmup_bars: 50\n"
            f"{extra}"
            "orchestrator:\n"
            "  experts:\n"
            f"    - {{name: pivot_cnn, kind: pivot_cnn, checkpoint: {self.cnn}}}\n"
            f"    - {{name: dqn, kind: dqn, checkpoint: {self.dqn}{depends}}}\n"
            "  gate: {buy_threshold: 0.0, sell_threshold: 0.0}\n"
            "  learning: {horizon_bars: 5, batch_size: 32, holdout: 32}\n"
        )
        (self.root / name).write_text(text, encoding="utf-8")
        return name


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("run-cmd")
    tiny = train_tiny_experts(root / "models")
    # `--data-dir data` opens data/pivotal.duckdb
    (root / "data").mkdir()
    shutil.copyfile(tiny.store, root / "data" / STORE_FILE_NAME)
    home = Home(root, str(tiny.cnn.relative_to(root)), str(tiny.dqn.relative_to(root)))
    home.run_file()
    return home


@pytest.fixture(scope="module")
def ran(home: Home) -> subprocess.CompletedProcess[str]:
    """`pivotal run` once; the decisions tests read what it stored."""
    return run_cli(
        ["run", "run.yaml", "--mode", "backtest", "--data-dir", "data",
         "--report", "out.html", "--json", "out.json"],
        cwd=home.root,
    )  # fmt: skip


def _words(text: str) -> str:
    """Text with rich's panel borders and line wrapping taken out."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _query(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(["decisions", "query", "--data-dir", "data", *args], cwd=home.root)
    assert done.returncode == 0, done.stderr
    return done


def _matches(stdout: str) -> int:
    found = re.search(r"([\d,]+) stored decisions match \(showing (\d+)\)", stdout)
    assert found is not None, stdout
    return int(found.group(1).replace(",", ""))


def test_run_backtest_prints_the_summary_and_writes_the_report(
    home: Home, ran: subprocess.CompletedProcess[str]
) -> None:
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert re.search(r"orchestrated: return [-+]\d+\.\d+ % vs buy-and-hold [-+]\d+\.\d+ %", out)
    assert "BTC/USDT 1m" in out and f"({N_TRADE:,} bars)" in out
    assert f"decisions: {N_TRADE:,} (" in out
    assert f"inference history: {N_LEARN + N_TRADE:,} steps stored" in out
    assert "report: out.html" in out and "json: out.json" in out
    html = (home.root / "out.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "plotly" in html.lower()


def test_decisions_query_lists_every_stored_step(
    home: Home, ran: subprocess.CompletedProcess[str]
) -> None:
    assert ran.returncode == 0, ran.stderr
    done = _query(home, "--symbol", "BTC/USDT", "--limit", "5")
    assert _matches(done.stdout) == N_LEARN + N_TRADE
    assert "(showing 5)" in done.stdout
    # oldest first: the learning span's first step closes one bar after learn_from
    assert _iso(LEARN_FROM + MINUTE, "%Y-%m-%d %H:%M:%S") in done.stdout
    assert "pivot_cnn, dqn" in done.stdout
    latest = _query(home, "--symbol", "BTC/USDT", "--limit", "1", "--latest")
    assert _iso(UNTIL, "%Y-%m-%d %H:%M:%S") in latest.stdout


def test_decisions_query_filters_by_model_and_time(
    home: Home, ran: subprocess.CompletedProcess[str]
) -> None:
    assert ran.returncode == 0, ran.stderr
    assert _matches(_query(home, "--model", "dqn").stdout) == N_LEARN + N_TRADE
    # steps closing after since: the trading span only
    after = _query(home, "--symbol", "BTC/USDT", "--since", _iso(SINCE + MINUTE))
    assert _matches(after.stdout) == N_TRADE
    before = _query(home, "--until", _iso(SINCE + MINUTE))
    assert _matches(before.stdout) == N_LEARN
    # an unknown model is a usage error naming the models the history holds
    nothing = run_cli(
        ["decisions", "query", "--data-dir", "data", "--model", "no_such_model"], cwd=home.root
    )
    assert nothing.returncode == 2
    message = _words(nothing.stderr)
    assert "no_such_model" in message and "dqn" in message and "pivot_cnn" in message


def test_decisions_query_details_prints_each_record_as_json(
    home: Home, ran: subprocess.CompletedProcess[str]
) -> None:
    assert ran.returncode == 0, ran.stderr
    done = _query(home, "--symbol", "BTC/USDT", "--details", "--limit", "2", "--latest")
    decoder = json.JSONDecoder()
    text, records = done.stdout.strip(), []
    while text:
        record, end = decoder.raw_decode(text)
        records.append(record)
        text = text[end:].strip()
    assert len(records) == 2
    first, second = records
    assert first["time"] == _iso(UNTIL, "%Y-%m-%d %H:%M:%S")
    assert second["time"] == _iso(UNTIL - MINUTE, "%Y-%m-%d %H:%M:%S")
    for record in records:
        assert record["symbol"] == "BTC/USDT"
        assert record["action"] in {"BUY", "SELL", "HOLD"}
        assert 0.0 <= record["confidence"] <= 1.0
        assert set(record["outputs"]) == {"pivot_cnn", "dqn"}
        models = [c["model"] for c in record["decision"]["contributions"]]
        assert sorted(models) == ["dqn", "pivot_cnn"]


def test_decisions_query_on_an_empty_store_says_so(home: Home) -> None:
    with open_store(home.root / "empty"):
        pass
    done = run_cli(["decisions", "query", "-s", "BTC/USDT", "-d", "empty"], cwd=home.root)
    assert done.returncode == 0, done.stderr
    assert "no stored decisions match" in done.stdout


def test_live_on_a_real_venue_needs_the_real_money_flag(home: Home) -> None:
    done = run_cli(["run", "run.yaml", "--mode", "live", "-d", "data"], cwd=home.root)
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "--i-understand-real-money" in message and "binance" in message, done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_mode_is_refused_by_name(home: Home) -> None:
    done = run_cli(["run", "run.yaml", "--mode", "sim", "-d", "data"], cwd=home.root)
    assert done.returncode == 2
    assert "'sim' is not one of backtest, paper, live" in _words(done.stderr), done.stderr


def test_a_run_file_with_an_unknown_key_is_refused_by_name(home: Home) -> None:
    name = home.run_file("typo.yaml", extra="warmup: 10\n")
    done = run_cli(["run", name, "-d", "data"], cwd=home.root)
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "config error" in message and "warmup" in message, done.stderr
    assert "Traceback" not in done.stderr


def test_a_dqn_listed_without_the_cnn_it_reads_is_a_config_error(home: Home) -> None:
    name = home.run_file("no_depends.yaml", dqn_reads_cnn=False)
    done = run_cli(["run", name, "-d", "data", "--no-history"], cwd=home.root)
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "config error" in message and "'dqn'" in message, done.stderr
    assert "Traceback" not in done.stderr


def test_no_accelerate_pushes_every_bar_and_decides_the_same(
    home: Home, ran: subprocess.CompletedProcess[str]
) -> None:
    """`--no-accelerate` runs the pushed path (every bar through the market frame, records
    streamed to the run journal) and gives the accelerated run's decisions and trades."""
    assert ran.returncode == 0, ran.stderr
    pushed = run_cli(
        ["run", "run.yaml", "--data-dir", "data", "--no-accelerate", "--json", "pushed.json",
         "--no-history"],
        cwd=home.root,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    a = json.loads((home.root / "out.json").read_text(encoding="utf-8"))
    b = json.loads((home.root / "pushed.json").read_text(encoding="utf-8"))
    actions = [(d["timestamp"], d["symbol"], d["action"]) for d in a["decisions"]]
    assert actions == [(d["timestamp"], d["symbol"], d["action"]) for d in b["decisions"]]
    assert len(actions) > 100
    assert a["result"]["trades"] == b["result"]["trades"]
    assert a["result"]["equity"] == b["result"]["equity"]
    assert a["result"]["final_equity"] == b["result"]["final_equity"]


def test_a_mistyped_data_dir_is_refused_without_creating_a_store(home: Home) -> None:
    done = run_cli(["run", "run.yaml", "--data-dir", "dta"], cwd=home.root)
    assert done.returncode == 2
    assert "no market-data store" in _words(done.stderr) and "--data-dir" in done.stderr
    assert not (home.root / "dta").exists()
