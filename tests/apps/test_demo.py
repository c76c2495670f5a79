"""`pivotal demo` on each of its three paths: real files, a download, the simulator."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.testing.binance_server import BinanceServer
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
@pytest.mark.timeout(900)  # the whole main job (import, features, backtest, orchestrator)
def test_demo_imports_the_real_data_and_says_so(tmp_path: Path) -> None:
    result = run_cli(
        ["demo", "--quick", "--session-seconds", "45", "--data", str(DATA),
         "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "REAL market data imported from" in out
    assert "SIMULATED" not in out
    # the BTC 1m file's real outage shows in the gap columns, and statistics are printed
    assert "1,578,160" in out or "1,664,559" in out
    assert "Basic statistics" in out
    assert "24 indicators on the last 1,000 candles" in out
    assert (tmp_path / "d" / "reports" / "binance_BTC_USDT_1h-pivots.html").is_file()
    assert "sma_cross 10/30 on BTC/USDT, ETH/USDT 1h" in out
    assert (tmp_path / "d" / "reports" / "backtest_sma_cross_BTC_USDT_ETH_USDT.html").is_file()
    # stage 6: both models trained, the orchestrator traded the held-out span, report written
    assert "PivotCNN trained" in out and "DQN trained" in out
    assert "orchestrated: return" in out and "vs buy-and-hold" in out
    assert "rolling prediction accuracy" in out
    assert (tmp_path / "d" / "reports" / "orchestrator_BTCUSDT_ETHUSDT.html").is_file()
    # the run file beside the report, the checkpoints where `models list` looks, next steps
    assert (tmp_path / "d" / "reports" / "orchestrator_BTCUSDT_ETHUSDT.run.yaml").is_file()
    assert f"pivotal models list --data-dir {tmp_path / 'd'}" in out
    assert "next, try:" in out and out.count(f"--data-dir {tmp_path / 'd'}") >= 3
    # stage 10: the session against the local exchange, killed once, agrees with its record
    assert "killed the session (SIGKILL)" in out and "start: reconciliation" in out
    assert "the journal and the exchange agree" in out, out[-3000:]
    models = run_cli(["models", "list", "--data-dir", str(tmp_path / "d")], cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert "pivot_cnn" in models.stdout and "val_return" in models.stdout  # the DQN too
    stored = run_cli(
        ["decisions", "query", "--symbol", "ETH/USDT", "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
    )
    assert stored.returncode == 0, stored.stderr
    assert "stored decisions match" in stored.stdout
    listed = run_cli(["data", "list", "--json", "--data-dir", str(tmp_path / "d")], cwd=tmp_path)
    assert '"timeframe": "1s"' in listed.stdout  # built from the real trades


def _recent(candles: Candles, timeframe: Timeframe, now_ms: int) -> Candles:
    """Real candles moved in time (by whole days) so that they end just before now."""
    shift = (now_ms - int(candles.timestamp[-1])) // 86_400_000 * 86_400_000 - 86_400_000
    frame = candles.to_frame()
    frame["timestamp"] += shift
    return Candles.from_frame(frame)


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_demo_downloads_when_no_files_are_given(tmp_path: Path) -> None:
    assert DATA is not None
    now = int(time.time() * 1000)
    served = {}
    for base in ("BTC", "ETH"):
        for tf, rows in ((Timeframe.M1, 6 * 1440), (Timeframe.H1, 400 * 24)):
            path = DATA / "ohlcv" / "binance-spot" / tf.value / f"{base}_USDT-{tf.value}.parquet"
            real = Candles.from_frame(pd.read_parquet(path).tail(rows))
            served[(Symbol(base, "USDT"), tf)] = _recent(real, tf, now)
    with BinanceServer(served) as server:
        result = run_cli(
            ["demo", "--session-seconds", "0", "--data-dir", str(tmp_path / "d")],
            cwd=tmp_path,
            env={"PIVOTAL_EXCHANGES__BINANCE__REST_URL": server.url},
        )
    assert result.returncode == 0, result.stderr
    assert "REAL market data downloaded from binance" in result.stdout
    assert "binance  │ ETH/USDT │ 1h" in result.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_offline_uses_the_simulator_and_says_so(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    result = run_cli(
        ["demo", "--session-seconds", "0", "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env={
            "PIVOTAL_EXCHANGES__BINANCE__REST_URL": dead,
            "PIVOTAL_EXCHANGES__MEXC__REST_URL": dead,
            "PIVOTAL_DOWNLOAD__BACKOFF_INITIAL_S": "0.01",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "SIMULATED data, not market data" in result.stdout
    assert "simulator:seed=7" in result.stdout
    assert "using the simulator" in result.stderr
