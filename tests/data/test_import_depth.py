"""Order-book depth files through `pivotal data import`: stored as their 1s COB snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.cob import assert_same_cob
from pivotal.core import Symbol, Timeframe
from pivotal.core.errors import DataError
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import ImportAborted, import_files
from pivotal.data.importers.depth import depth_market, is_depth_file
from pivotal.data.series import SeriesKey
from pivotal.features.orderbook import DepthEvents, OrderBook, iter_cob
from pivotal.features.orderbook.recorded import cob_from_depth_files
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
T0 = 1_723_161_600_000
TST = Symbol("TST", "USDT")


def depth_frame(seconds: int = 20, seed: int = 3, snapshot: bool = True) -> pd.DataFrame:
    """A small spot recording: a REST snapshot (5 levels a side around 100) then a diff every
    100 ms changing two levels, with contiguous update ids."""
    rng = np.random.default_rng(seed)
    rows = []
    if snapshot:
        for k in range(5):
            rows.append((0, -1, 1, 100, "bid", 99.5 - 0.5 * k, 1.0 + k, True))
            rows.append((0, -1, 1, 100, "ask", 100.5 + 0.5 * k, 1.5 + k, True))
    last = 100
    for i in range(seconds * 10):
        t = T0 + 100 * i + 7
        bid = 99.5 - 0.5 * int(rng.integers(0, 5))
        ask = 100.5 + 0.5 * int(rng.integers(0, 5))
        for side, price in (("bid", bid), ("ask", ask)):
            rows.append((i + 1, t, last + 1, last + 1, side, price, float(rng.uniform(0.1, 3))))
        last += 1
    frame = pd.DataFrame(
        [r if len(r) == 8 else (*r, False) for r in rows],
        columns=[
            "local_ts_ns",
            "event_time",
            "first_update_id",
            "final_update_id",
            "side",
            "price",
            "qty",
            "is_snapshot",
        ],
    )
    frame["local_ts_ns"] = frame["local_ts_ns"] * 1_000_000 + 1
    frame["prev_final_update_id"] = -1
    frame["transaction_time"] = -1
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return path


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


def test_a_depth_file_is_stored_as_its_cob_snapshots(tmp_path: Path, store: DuckDBStore) -> None:
    frame = depth_frame()
    path = write(frame, tmp_path / "binance-spot" / "TST_USDT-depth-20240809.parquet")
    assert is_depth_file(path) and depth_market(path) == ("binance", TST)
    events: list = []
    (result,) = import_files([path], store, depth=cob_from_depth_files, progress=events.append)
    expected = list(iter_cob(DepthEvents(frame), OrderBook(TST)))
    assert len(expected) == 19  # 20 s of diffs: a snapshot at each whole second after the first
    assert (result.kind, result.format, result.rows) == ("cob", "depth-parquet", 19)
    assert result.key == SeriesKey("binance", TST, Timeframe.S1)
    assert (result.first, result.last) == (expected[0].timestamp, expected[-1].timestamp)
    assert result.written.inserted == 19 and result.files == (path,)
    assert_same_cob(store.read_cob("binance", TST), expected)
    assert [e.phase for e in events] == ["start", "read", "write", "done"]
    assert store.series() == []  # no candles were made up


def test_flags_name_the_market_and_a_depth_file_beside_candles(
    tmp_path: Path, store: DuckDBStore
) -> None:
    folder = tmp_path / "recordings"
    write(depth_frame(), folder / "book.parquet")
    candles = pd.DataFrame(
        {"timestamp": T0 + 60_000 * np.arange(5), "open": 1.0, "high": 2.0, "low": 0.5,
         "close": 1.5, "volume": 3.0}
    )  # fmt: skip
    write(candles, folder / "TST_USDT-1m.parquet")
    with pytest.raises(DataError, match=r"cannot tell the exchange .*--exchange.*--symbol"):
        import_files([folder / "book.parquet"], store, depth=cob_from_depth_files)
    results = import_files(
        [folder], store, exchange="mexc", symbol="TST/USDT", depth=cob_from_depth_files
    )
    assert [r.kind for r in results] == ["candles", "cob"]
    assert store.cob_symbols()[0][:3] == ("mexc", "TST/USDT", 19)
    assert len(store.read_candles(SeriesKey("mexc", TST, "1m"))) == 5


def test_without_a_depth_reader_depth_files_are_skipped_or_refused(
    tmp_path: Path, store: DuckDBStore
) -> None:
    path = write(depth_frame(), tmp_path / "binance" / "TST_USDT-depth-1.parquet")
    events: list = []
    assert import_files([tmp_path / "binance"], store, progress=events.append) == []
    (skip,) = [e for e in events if e.phase == "skip"]
    assert "order-book depth file" in skip.detail
    with pytest.raises(DataError, match="order-book depth file"):
        import_files([path], store)


def test_a_depth_file_without_a_snapshot_fails_the_run_and_nothing_is_written(
    tmp_path: Path, store: DuckDBStore
) -> None:
    good = write(depth_frame(), tmp_path / "binance" / "TST_USDT-depth-1.parquet")
    bad = write(depth_frame(snapshot=False), tmp_path / "binance" / "ETH_USDT-depth-1.parquet")
    with pytest.raises(DataError, match=r"no COB snapshot.*REST depth snapshot"):
        import_files([bad], store, depth=cob_from_depth_files)
    with pytest.raises(ImportAborted, match="1 of 2 files cannot be imported"):
        import_files([good, bad], store, depth=cob_from_depth_files)
    assert store.cob_symbols() == []
    broken = write(depth_frame().drop(columns=["qty"]), tmp_path / "x" / "binance" / "a.parquet")
    assert not is_depth_file(broken)  # not recognised as depth: a candle-file error instead


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_the_cli_imports_the_recorded_order_books(tmp_path: Path) -> None:
    assert DATA is not None
    store = tmp_path / "store"
    args = ["data", "import", str(DATA / "orderbook" / "binance-spot"), "-d", str(store)]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "binance BTC/USDT COB 1s" in result.stdout
    listed = run_cli(["data", "list", "--json", "-d", str(store)], cwd=tmp_path)
    cob = {(c[0], c[1]): c[2] for c in json.loads(listed.stdout)["cob"]}
    assert cob == {("binance", "BTC/USDT"): 650, ("binance", "ETH/USDT"): 650}
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "650 │   0 │" in again.stdout  # nothing new
    quotes = DATA / "orderbook/binance-spot/BTC_USDT-bookticker-20240808T2354-20240809T0005.parquet"
    refused = run_cli(["data", "import", str(quotes), "-d", str(store)], cwd=tmp_path)
    assert refused.returncode == 1 and "takes depth files" in refused.stderr
