"""Bad candle files are refused with a message naming file, place and reason; nothing is written.

Every refusal test runs against a store that already holds a series, and checks that
neither the series list nor the stored candles changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.core.errors import DataError
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import ImportAborted, NotCandlesError, ParseError, import_files
from pivotal.data.series import SeriesKey
from pivotal.data.validation import InvalidDataError

KEY = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
START = 1_700_006_400_000  # 2023-11-15 00:00 UTC


def candles(n: int = 40, start: int = START, step: int = 60_000) -> Candles:
    ts = start + np.arange(n, dtype=np.int64) * step
    close = 100.0 + np.arange(n)
    return Candles(ts, close - 0.5, close + 1, close - 1, close, np.full(n, 2.0))


def write_csv(path: Path, c: Candles) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    c.to_frame().to_csv(path, index=False)
    return path


def edit_line(path: Path, line: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in 1-based ``line`` of a text file."""
    lines = path.read_text().splitlines()
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    """A store that already holds 40 candles, so "nothing changed" means something."""
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        s.write_candles(KEY, candles(40, START - 40 * 60_000), source="before")
        yield s


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "binance"
    path.mkdir()
    return path


def refused(store: DuckDBStore, paths: list[Path], error: type[Exception], **flags: object) -> str:
    """Import ``paths``, expect ``error``; assert the store is unchanged; return the message."""
    before = (store.series(), store.read_candles(KEY))
    with pytest.raises(error) as info:
        import_files(paths, store, **flags)  # type: ignore[arg-type]
    after = (store.series(), store.read_candles(KEY))
    assert after[0] == before[0]
    assert after[1].equals(before[1])
    return str(info.value)


def test_non_numeric_cell_names_file_line_and_value(store: DuckDBStore, folder: Path) -> None:
    path = write_csv(folder / "BTC_USDT-1m.csv", candles())
    edit_line(path, 17, "116.0", "abc")  # line 17 = header + 16th row: high is 116.0
    message = refused(store, [path], ParseError)
    assert message == f"{path} line 17: column 'high' holds 'abc', not a number"


def test_non_numeric_cell_in_headerless_binance_file(store: DuckDBStore, folder: Path) -> None:
    path = folder / "BTCUSDT-1m-2023-11-15.csv"
    frame = candles().to_frame()
    frame["close_time"], frame["q"], frame["n"] = frame["timestamp"] + 59_999, 1.0, 3
    frame["tb"], frame["tq"], frame["ignore"] = 1.0, 1.0, 0
    frame.to_csv(path, index=False, header=False)
    edit_line(path, 5, ",2.0,", ",2.0x,")  # volume of the 5th row
    message = refused(store, [path], ParseError)
    assert message == f"{path} line 5: column 'volume' holds '2.0x', not a number"


def test_bad_time_cell_and_short_row(store: DuckDBStore, folder: Path) -> None:
    path = write_csv(folder / "BTC_USDT-1m.csv", candles())
    edit_line(path, 9, str(START + 7 * 60_000), "yesterday")
    assert "line 9: column 'timestamp' holds 'yesterday', not an epoch time" in refused(
        store, [path], ParseError
    )
    path = write_csv(folder / "BTC_USDT-1m.csv", candles())
    lines = path.read_text().splitlines()
    lines[11] = lines[11].rsplit(",", 2)[0]
    path.write_text("\n".join(lines))
    assert "line 12: 4 columns where the file has 6" in refused(store, [path], ParseError)


def test_garbage_files_are_refused(store: DuckDBStore, folder: Path) -> None:
    text = folder / "BTC_USDT-1m.csv"
    text.write_text("hello world\nthis is not a candle file\n")
    message = refused(store, [text], NotCandlesError)
    assert message.startswith(f"{text}: holds no candles (columns: hello world)")
    binary = folder / "BTC_USDT-1m.parquet"
    binary.write_bytes(bytes(range(256)))
    assert "named .parquet but the content is not parquet" in refused(store, [binary], ParseError)
    broken = folder / "BTC_USDT-1m.json"
    broken.write_text("[[1700006400000, 1, 2, 0.5, 1.5, 3],\n [1700006460000, 1, 2")
    assert f"{broken} line 2: not valid JSON" in refused(store, [broken], ParseError)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"timestamp,open,high,low,close,volume\n", "holds no rows"),
        (b"[]", "holds an empty list"),
        (b"\n\n  \n", "holds only white space"),
    ],
    ids=["zero-bytes", "header-only", "empty-json", "blank"],
)
def test_empty_files_are_refused(
    store: DuckDBStore, folder: Path, content: bytes, expected: str
) -> None:
    path = folder / ("BTC_USDT-1m.json" if content == b"[]" else "BTC_USDT-1m.csv")
    path.write_bytes(content)
    assert expected in refused(store, [path], ParseError)


def test_out_of_order_rows_are_refused_by_line(store: DuckDBStore, folder: Path) -> None:
    c = candles()
    order = np.arange(40)
    order[[20, 21]] = [21, 20]
    path = write_csv(folder / "BTC_USDT-1m.csv", c[order])
    message = refused(store, [path], InvalidDataError)
    assert "1 of 40 rows refused" in message
    assert "out of order" in message and "line 23 (2023-11-15T00:20:00.000Z)" in message
    assert "--drop-invalid" in message


@pytest.mark.parametrize(
    ("damage", "reason", "line"),
    [
        (lambda f: f.drop(index=30).pipe(lambda g: pd.concat([g, f.iloc[[29]]])), "duplicate", 0),
        (lambda f: f.assign(close=f.close.where(f.index != 12)), "NaN or infinite", 14),
        (lambda f: f.assign(volume=f.volume.where(f.index != 7, -1.0)), "negative volume", 9),
        (lambda f: f.assign(timestamp=f.timestamp + 30_000), "not on the 1m grid", 2),
        (lambda f: f.assign(low=f.low.where(f.index != 3, 200.0)), "low above open", 5),
    ],
    ids=["duplicate", "nan", "negative-volume", "30s-offset", "low-above-open"],
)
def test_invalid_rows_are_refused_with_reason_and_line(
    store: DuckDBStore, folder: Path, damage: object, reason: str, line: int
) -> None:
    frame = damage(candles().to_frame())  # type: ignore[operator]
    path = folder / "BTC_USDT-1m.csv"
    frame.sort_values("timestamp", kind="stable").to_csv(path, index=False)
    message = refused(store, [path], InvalidDataError)
    assert message.startswith(f"{path}: ")
    assert reason in message
    if line:
        assert re.search(rf"line {line}\b", message)


def test_timeframe_that_contradicts_the_rows(store: DuckDBStore, folder: Path) -> None:
    minutes = write_csv(folder / "BTC_USDT-1h.csv", candles())  # 1m rows, named 1h
    message = refused(store, [minutes], DataError)
    assert message == (
        f"{minutes}: consecutive rows are mostly 1m apart, but the timeframe is 1h (from the "
        "file name); if the file holds 1m candles, pass --timeframe 1m"
    )
    hours = write_csv(folder / "BTC_USDT-1m.csv", candles(step=3_600_000))  # 1h rows, named 1m
    message = refused(store, [hours], DataError)
    assert "at least 1h apart, but the timeframe is 1m (from the file name)" in message
    assert "(from --timeframe)" in refused(store, [hours], DataError, timeframe="5m")
    stray = candles(step=3_600_000).to_frame().copy()  # a few off-grid rows: validation's job
    stray.loc[[4, 9], "timestamp"] += 60_000
    stray.to_csv(hours, index=False)
    message = refused(store, [hours], InvalidDataError, timeframe="1h")
    assert "2 × timestamp not on the 1h grid" in message and "line 6" in message


def test_uninferable_series_names_the_flag_to_pass(
    store: DuckDBStore, folder: Path, tmp_path: Path
) -> None:
    path = write_csv(folder / "prices.csv", candles())
    message = refused(store, [path], DataError)
    assert "cannot tell the symbol" in message and "pass --symbol" in message
    assert "pass --timeframe" in message and "(the rows are 1m apart)" in message
    unknown_quote = write_csv(folder / "BTCXYZ-1m.csv", candles())
    assert "pass --symbol" in refused(store, [unknown_quote], DataError)
    elsewhere = write_csv(tmp_path / "plain" / "BTC_USDT-1m.csv", candles())
    assert "cannot tell the exchange" in refused(store, [elsewhere], DataError)
    weekly = write_csv(folder / "BTC_USDT-1w.csv", candles(step=7 * 86_400_000))
    assert "timeframe '1w', which pivotal does not store" in refused(store, [weekly], DataError)


def test_explicit_flags_override_and_are_checked(store: DuckDBStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "plain" / "prices.csv", candles())
    assert "--timeframe: unknown timeframe '7m'" in refused(
        store, [path], DataError, exchange="binance", symbol="BTC/USDT", timeframe="7m"
    )
    assert "--symbol 'BTC-XYZ'" in refused(
        store, [path], DataError, exchange="binance", symbol="BTC-XYZ", timeframe="1m"
    )
    (result,) = import_files([path], store, exchange="Bybit", symbol="ETHUSDT", timeframe="1m")
    assert str(result.key) == "bybit ETH/USDT 1m"


def test_one_bad_file_stops_the_whole_run(store: DuckDBStore, folder: Path) -> None:
    good = write_csv(folder / "ETH_USDT-1m.csv", candles())
    bad = write_csv(folder / "BTC_USDT-1m.csv", candles())
    edit_line(bad, 3, "102.0", "")  # an empty high cell: NaN
    missing = folder / "SOL_USDT-1m.csv"
    message = refused(store, [good, bad, missing], ImportAborted)
    assert message.startswith("2 of 3 files cannot be imported, so nothing was written")
    assert f"{bad}: 1 of 40 rows refused" in message and "line 3" in message
    assert f"{missing}: no such file or directory" in message
    assert len(store.series()) == 1  # the good ETH file was not written either


def test_non_candle_files_error_when_named_and_are_skipped_when_walked(
    store: DuckDBStore, folder: Path
) -> None:
    trades = folder / "BTC_USDT-trades.csv"
    trades.write_text("id,price,qty,time,is_buyer_maker\n1,100.0,0.5,1700006400000,true\n")
    message = refused(store, [trades], NotCandlesError)
    assert "holds no candles" in message and "pivotal data import-trades" in message
    write_csv(folder / "ETH_USDT-1m.csv", candles())
    events: list[object] = []
    results = import_files([folder], store, progress=events.append)
    assert [r.path.name for r in results] == ["ETH_USDT-1m.csv"]
    skips = [e for e in events if e.phase == "skip"]  # type: ignore[attr-defined]
    assert [e.path for e in skips] == [trades]  # type: ignore[attr-defined]


def test_sub_millisecond_times_are_refused(store: DuckDBStore, folder: Path) -> None:
    frame = candles().to_frame()
    frame["timestamp"] = frame["timestamp"] * 1000
    frame.loc[4, "timestamp"] += 500  # µs not on a whole millisecond
    path = folder / "BTC_USDT-1m.csv"
    frame.to_csv(path, index=False)
    message = refused(store, [path], ParseError)
    assert message.startswith(f"{path} line 6: column 'timestamp' holds")
    assert "us time that is not a whole millisecond" in message


def test_drop_invalid_stores_only_the_valid_rows(store: DuckDBStore, folder: Path) -> None:
    c = candles(60, START)
    frame = c.to_frame().copy()  # to_frame shares Candles' read-only arrays
    frame.loc[5, "volume"] = -1.0
    frame.loc[9, "close"] = np.nan
    frame.loc[20, "timestamp"] += 30_000
    frame = pd.concat([frame.iloc[:40], frame.iloc[[39]], frame.iloc[40:]])  # a duplicate
    order = np.arange(len(frame))
    order[[50, 51]] = [51, 50]  # and a swap: the later-timed row of the two is dropped
    path = folder / "BTC_USDT-1m.csv"
    frame.iloc[order].to_csv(path, index=False)
    (result,) = import_files([path], store, drop_invalid=True)
    assert (result.rows, result.dropped, result.written.inserted) == (61, 5, 56)
    stored = store.read_candles(KEY, START)
    expected = np.delete(c.timestamp, [5, 9, 20, 49])  # row 49 of c sits at file row 51
    np.testing.assert_array_equal(stored.timestamp, expected)
    assert stored.equals(c[np.isin(c.timestamp, expected)])
