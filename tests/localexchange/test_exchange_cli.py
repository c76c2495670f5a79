"""``pivotal exchange serve``: clear errors, URLs at start, fault counts at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.binance_kit import T0, small_flow, write_recording
from pivotal.apps.cli.main import app
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.data.simulator import SimulatorConfig, simulate_candles

pytestmark = pytest.mark.network

runner = CliRunner()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("messages")
    return write_recording(folder / "btcusdt_20231114.gz", small_flow(seconds=30))


def serve(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["exchange", "serve", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--venue", "kraken"], "unknown venue(s) kraken"),
        (["--speed", "0"], "must be > 0"),
        (["--speed", "-2"], "must be > 0"),
        (["--duration", "0"], "must be > 0 seconds"),
        (["--host", "0.0.0.0"], "not local"),
        (["--port", "bybit=9000"], "not served"),
        (["--port", "binance:9000"], "VENUE=PORT"),
    ],
)
def test_bad_options_are_usage_errors(recording: Path, args: list[str], message: str) -> None:
    code, output = serve("--messages", str(recording), "--duration", "0.1", *args)
    assert code == 2, output
    assert message in " ".join(output.split())


def test_missing_file_and_unknown_symbol(recording: Path, tmp_path: Path) -> None:
    code, output = serve("--messages", str(tmp_path / "nope.gz"))
    assert code == 2 and "no such file" in output
    code, output = serve("--messages", str(recording), "--symbol", "XRP/USDT")
    assert code == 2 and "XRP/USDT not in the message files" in " ".join(output.split())
    code, output = serve("--messages", str(recording), "--since", "2024-01-01")
    assert code == 2 and "either --messages or stored candles" in " ".join(output.split())


def test_no_default_messages_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIVOTAL_SHARED_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    import pivotal.localexchange.sources as sources

    monkeypatch.setattr(sources, "find_shared_data", lambda: None)
    code, output = serve("--duration", "0.1")
    assert code == 2
    assert "pass --messages FILE" in " ".join(output.split())


def test_serves_recorded_messages_and_prints_urls_and_fault_counts(recording: Path) -> None:
    code, output = serve(
        "--messages", str(recording), "--duration", "0.3", "--speed", "50", "--json"
    )
    assert code == 0, output
    start, end = (json.loads(line) for line in output.strip().splitlines())
    urls = start["venues"]["binance"]
    assert urls["rest"].startswith("http://127.0.0.1:") and urls["ws"].startswith("ws://127.0.0.1:")
    assert start["symbols"] == ["BTC/USDT"] and start["start_ms"] == T0
    assert end["faults"] == {} and end["market_ms"] > T0
    code, output = serve("--messages", str(recording), "--duration", "0.2")
    assert code == 0, output
    assert "binance  REST http://127.0.0.1:" in output and "no faults" in output


def _store_with_candles(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    sim = simulate_candles(180, SimulatorConfig(seed=3, start_ms=1_704_067_200_000))
    with open_store(data_dir) as store:
        store.write_candles(SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1), sim.candles)
    return data_dir


def test_serves_stored_candles_and_refuses_dates_outside_them(tmp_path: Path) -> None:
    data_dir = _store_with_candles(tmp_path)
    common = ["-d", str(data_dir), "--symbol", "BTC/USDT", "--timeframe", "1m"]
    code, output = serve(*common, "--since", "2024-01-01T01:00", "--until", "2024-01-01T02:00",
                         "--duration", "0.2", "--json")  # fmt: skip
    assert code == 0, output
    start = json.loads(output.strip().splitlines()[0])
    assert start["start_ms"] >= 1_704_070_800_000 and "synthetic" in start["sources"]["BTC/USDT"]
    code, output = serve(*common, "--since", "2025-01-01", "--duration", "0.2")
    assert code == 1
    assert "choose --since/--until inside that span" in " ".join(output.split())
    code, output = serve("-d", str(data_dir), "--symbol", "ETH/USDT", "--timeframe", "1m")
    assert code == 2 and "no stored candles for binance ETH/USDT 1m" in " ".join(output.split())


def test_sigterm_stops_the_server_and_prints_the_counts(recording: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"))
    cmd = [sys.executable, "-m", "pivotal", "exchange", "serve", "--messages", str(recording),
           "--json", "--weight-per-minute", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        start = json.loads(proc.stdout.readline())
        rest = start["venues"]["binance"]["rest"]
        urllib.request.urlopen(rest + "/api/v3/ping", timeout=5).close()
        with pytest.raises(urllib.error.HTTPError, match="429"):  # over the 1-weight budget
            urllib.request.urlopen(rest + "/api/v3/ping", timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["faults"] == {"rate_limit": 1}
