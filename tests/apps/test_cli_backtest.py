"""`pivotal backtest` as a user runs it: real candles from a file or the store, HTML and JSON
reports that agree with the library, and clear refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pivotal.backtest.api import backtest
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli import run_cli
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.settings import TradingSettings


def _eth_file() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    return Path(root) / "ohlcv" / "binance-spot" / "1m" / "ETH_USDT-1m.parquet"


def test_backtest_from_a_file_writes_reports_that_match_the_library(tmp_path: Path) -> None:
    data = _eth_file()
    since = "2025-08-01"
    done = run_cli(
        [
            "backtest", "--symbol", "ETH/USDT", "--timeframe", "1m", "--strategy", "sma_cross",
            "--param", "fast=10", "--param", "slow=30", "--cash", "100000", "--fee", "0.001",
            "--data", str(data), "--since", since, "--report", "out.html", "--json", "out.json",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ETH/USDT 1m:" in done.stdout and "Return [%]" in done.stdout
    html = (tmp_path / "out.html").read_text()
    assert "<html" in html and "plotly" in html.lower()
    report = json.loads((tmp_path / "out.json").read_text())
    assert {"trades", "final_equity", "metrics"} <= set(report)
    assert set(report["trades"][0]) >= {
        "entry_time", "exit_time", "side", "entry_price", "exit_price", "size", "pnl", "fees",
    }  # fmt: skip

    frame = pd.read_parquet(data)
    frame = frame[frame["timestamp"] >= pd.Timestamp(since, tz="UTC").value // 1_000_000]
    candles = Candles.from_frame(frame.reset_index(drop=True))
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=0.001, taker=0.001))
    )
    expected = backtest(
        {"ETH/USDT": candles},
        "sma_cross",
        {"fast": 10, "slow": 30},
        timeframe="1m",
        settings=settings,
    )
    assert len(report["trades"]) == len(expected.trades) > 10
    assert report["final_equity"] == pytest.approx(expected.final_equity, rel=1e-12)
    assert [t["entry_price"] for t in report["trades"]] == expected.trades["entry_price"].tolist()


def test_backtest_reads_the_store_and_both_engines_agree(tmp_path: Path) -> None:
    with open_store(tmp_path / "data") as store:
        store.write_candles(
            SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1),
            planted_candles(6_000, seed=3),
        )
    outputs = {}
    for engine in ("event", "vectorized"):
        done = run_cli(
            ["backtest", "-s", "BTC/USDT", "--strategy", "rsi_reversion", "--engine", engine,
             "-d", "data", "--json", f"{engine}.json"],
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
    assert outputs["event"]["trades"] == outputs["vectorized"]["trades"]
    assert outputs["event"]["final_equity"] == pytest.approx(
        outputs["vectorized"]["final_equity"], rel=1e-12
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "moon"], "unknown strategy 'moon'"),
        (["--param", "fastest=3"], "fast"),
        (["--param", "fast=50", "--param", "slow=10"], "fast"),
        (["--engine", "vectorized", "--stop-loss", "0.02"], "vectorized engine cannot honour"),
        (["--fee", "0.5"], "fee"),
        (["--symbol", "BTC/USDT,ETH/USDT"], "one symbol"),
    ],
)
def test_bad_input_is_refused_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    data = _eth_file()
    done = run_cli(["backtest", "--data", str(data), "--since", "2025-08-15", *args], cwd=tmp_path)
    assert done.returncode != 0
    assert message in (done.stderr + done.stdout)
    assert "Traceback" not in done.stderr


def test_missing_candles_say_how_to_get_them(tmp_path: Path) -> None:
    done = run_cli(["backtest", "-s", "SOL/USDT", "-d", "data"], cwd=tmp_path)
    assert done.returncode != 0
    assert "no market-data store" in done.stderr
    with open_store(tmp_path / "data") as store:
        store.write_candles(
            SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1), planted_candles(100, seed=1)
        )
    done = run_cli(["backtest", "-s", "SOL/USDT", "-d", "data"], cwd=tmp_path)
    assert done.returncode != 0
    message = " ".join(done.stderr.replace("│", " ").split())
    assert "symbol SOL/USDT is not in the store (it has BTC/USDT)" in message
    assert "pivotal data import" in message
