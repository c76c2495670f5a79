"""`pivotal data ...` end to end in a subprocess: exit codes, messages, what lands in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.binance_server import BinanceServer
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)


def listing(tmp_path: Path, store: Path) -> dict[str, object]:
    result = run_cli(["data", "list", "--json", "-d", str(store)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def real_1m(rows: int, offset: int = 0) -> pd.DataFrame:
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv" / "binance-spot" / "1m" / "ETH_USDT-1m.parquet")
    return frame.iloc[offset : offset + rows][
        ["timestamp", "open", "high", "low", "close", "volume"]
    ].reset_index(drop=True)


@needs_data
def test_import_bad_file_exits_nonzero_and_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    good = tmp_path / "binance" / "ETH_USDT-1m.csv"
    good.parent.mkdir()
    real_1m(300).to_csv(good, index=False)
    assert run_cli(["data", "import", str(good), "-d", str(store)], cwd=tmp_path).returncode == 0
    before = listing(tmp_path, store)

    bad = tmp_path / "later" / "binance" / "ETH_USDT-1m.csv"
    bad.parent.mkdir(parents=True)
    frame = real_1m(100, offset=300)
    frame.loc[40, "volume"] = -3.0
    frame.to_csv(bad, index=False)
    result = run_cli(["data", "import", str(bad), "-d", str(store)], cwd=tmp_path)
    assert result.returncode == 1
    assert str(bad) in result.stderr
    assert "negative volume" in result.stderr
    assert "line 42" in result.stderr  # row 40 after the header line
    assert "Traceback" not in result.stderr
    assert listing(tmp_path, store) == before


@needs_data
def test_resample_and_gaps_from_the_cli(tmp_path: Path) -> None:
    store = tmp_path / "store"
    src = tmp_path / "binance" / "ETH_USDT-1m.parquet"
    src.parent.mkdir()
    real_1m(3 * 1440).to_parquet(src)
    assert run_cli(["data", "import", str(src), "-d", str(store)], cwd=tmp_path).returncode == 0
    result = run_cli(
        [
            "data",
            "resample",
            "-e",
            "binance",
            "-s",
            "ETH/USDT",
            "--from",
            "1m",
            "--to",
            "1h,1d",
            "-d",
            str(store),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = {c["timeframe"]: c["rows"] for c in listing(tmp_path, store)["candles"]}  # type: ignore[index]
    assert rows == {"1m": 3 * 1440, "1h": 72, "1d": 3}
    gaps = run_cli(
        ["data", "gaps", "-e", "binance", "-s", "ETH/USDT", "-t", "1h", "-d", str(store)],
        cwd=tmp_path,
    )
    assert gaps.returncode == 0, gaps.stderr
    assert "no missing candles (72 in a row)" in gaps.stdout


@needs_data
def test_download_command_against_a_local_exchange(tmp_path: Path) -> None:
    frame = real_1m(2500)
    candles = Candles.from_frame(frame)
    store = tmp_path / "store"
    with BinanceServer({(Symbol("ETH", "USDT"), Timeframe.M1): candles}) as server:
        args = [
            "data",
            "download",
            "--symbols",
            "ETH/USDT",
            "--timeframes",
            "1m",
            "--since",
            str(int(candles.timestamp[0])),
            "--until",
            str(int(candles.timestamp[-1]) + 60_000),
            "-d",
            str(store),
        ]
        env = {"PIVOTAL_EXCHANGES__BINANCE__REST_URL": server.url}
        first = run_cli(args, cwd=tmp_path, env=env)
        assert first.returncode == 0, first.stderr
        second = run_cli(args, cwd=tmp_path, env=env)
        assert second.returncode == 0, second.stderr
    with open_store(store, read_only=True) as s:
        stored = s.read_candles(SeriesKey("binance", "ETH/USDT", "1m"))
    assert stored.equals(candles)
    assert "2,500" in first.stdout


def test_simulate_is_labelled_everywhere(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = run_cli(["data", "simulate", "--bars", "500", "-d", str(store)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SIMULATED DATA" in result.stderr
    (series,) = listing(tmp_path, store)["candles"]  # type: ignore[misc]
    assert series["exchange"] == "simulator"
    assert series["source"].startswith("simulator:seed=")
    assert series["rows"] == 500


@needs_data
def test_trades_import_then_aggregate_to_seconds(tmp_path: Path) -> None:
    assert DATA is not None
    store = tmp_path / "store"
    files = sorted(str(p) for p in (DATA / "trades" / "binance-spot").glob("BTC*.parquet"))
    result = run_cli(["data", "import-trades", *files, "-d", str(store)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli(
        ["data", "aggregate", "-e", "binance", "-s", "BTC/USDT", "-t", "1s", "-d", str(store)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    trades = pd.read_parquet(files[0])
    seconds = trades["timestamp"] // 1000
    expected = int(seconds.max() - seconds.min() + 1)  # empty seconds become zero-volume bars
    (series,) = listing(tmp_path, store)["candles"]  # type: ignore[misc]
    assert series["rows"] == expected


@needs_data
def test_importing_a_folder_without_candles_says_why(tmp_path: Path) -> None:
    assert DATA is not None
    result = run_cli(["data", "import", str(DATA / "trades"), "-d", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 1
    assert "no candle files found" in result.stderr
    assert "import-trades" in result.stderr
