"""``pivotal collect`` as a user runs it: a process against the local exchange writes its
health file while it runs, and SIGTERM makes it write everything it received, print its
report and exit 0: every trade it counted is in the store, with the 1s candles and COB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.site_flow import handmade_flow

from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchangeThread


def _wait_for_trades(health: Path, proc: subprocess.Popen[str], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "pivotal collect ended early"
        if health.exists():
            snapshot = json.loads(health.read_text())
            if snapshot["symbols"]["BTC/USDT"]["trades"] > 50:
                return snapshot
        time.sleep(0.2)
    raise AssertionError(f"no trades collected within {timeout_s} s")


def test_sigterm_writes_everything_received_and_exits_cleanly(tmp_path: Path) -> None:
    data_dir, health = tmp_path / "data", tmp_path / "health.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"))
    with LocalExchangeThread([handmade_flow(600)], ServeConfig(speed=5.0)) as exchange:
        rest = exchange.urls["binance"].rest
        cmd = [sys.executable, "-m", "pivotal", "collect", "--exchanges", "binance",
               "--endpoint", f"binance={rest}", "--symbols", "BTC/USDT", "--timeframes", "1s,1m",
               "--health-file", str(health), "--health-every", "0.5", "--json",
               "-d", str(data_dir)]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        try:
            running = _wait_for_trades(health, proc, timeout_s=60)
            assert running["streams"] and running["writer"]["flushes"] >= 0
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    counted = report["pipelines"]["BTC/USDT"]
    assert report["write_failures"] == 0
    with open_store(data_dir, read_only=True) as store:
        stored = store.read_trades("binance", Symbol.parse("BTC/USDT"))
        seconds = store.read_candles(SeriesKey("binance", "BTC/USDT", "1s"))
        cob = store.read_cob("binance", "BTC/USDT")
    # nothing the process received was lost at the stop
    assert len(stored) == counted["trades"] == report["written"]["trades"] > 50
    assert len(seconds) == counted["candles_1s"] > 10
    assert len(cob) == counted["cob_snapshots"] > 10
    final = json.loads(health.read_text())
    assert final["writer"]["pending"] == 0  # the health file's last word is after the flush
