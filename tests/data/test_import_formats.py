"""Every supported file format imports a real slice of candles back exactly; names infer series."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import import_files, infer_names, read_candle_file
from pivotal.data.series import SeriesKey
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
WINDOW = "ohlcv/binance-spot/1m/windows/BTC_USDT-1m_20230316-20230501.parquet"
KEY = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)


@pytest.fixture(scope="module")
def real_slice() -> Candles:
    """2,000 real BTC/USDT 1m candles around the 2023-03-24 Binance outage: 72 zero-volume
    bars, then an 80-minute gap."""
    if DATA is None:
        pytest.skip(SKIP_REASON)
    candles = Candles.from_arrow(pq.read_table(DATA / WINDOW))
    outage = int(np.datetime64("2023-03-24T12:00", "ms").astype(np.int64))
    i = int(np.searchsorted(candles.timestamp, outage))
    return candles[i - 1000 : i + 1000]


def _frame(c: Candles) -> pd.DataFrame:
    return c.to_frame()


def _binance_frame(c: Candles, micro: bool) -> pd.DataFrame:
    """The 12 Binance Data Vision kline columns; times in µs when ``micro`` (2025+ spot files)."""
    f = 1000 if micro else 1
    return pd.DataFrame(
        {
            "open_time": c.timestamp * f,
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "close_time": (c.timestamp + 60_000) * f - 1,
            "quote_volume": c.volume * c.close,
            "count": np.arange(len(c)) + 7,
            "taker_buy_volume": c.volume / 2,
            "taker_buy_quote_volume": c.volume * c.close / 2,
            "ignore": 0,
        }
    )


def csv_plain(c: Candles, d: Path) -> Path:
    _frame(c).to_csv(d / "BTC_USDT-1m.csv", index=False)
    return d / "BTC_USDT-1m.csv"


def csv_gzip(c: Candles, d: Path) -> Path:
    _frame(c).to_csv(d / "BTC_USDT-1m.csv.gz", index=False, compression="gzip")
    return d / "BTC_USDT-1m.csv.gz"


def csv_iso_dates_mixed_case(c: Candles, d: Path) -> Path:
    frame = _frame(c).rename(columns=str.capitalize)
    frame.insert(0, "Date", pd.to_datetime(frame.pop("Timestamp"), unit="ms").astype(str))
    frame["Trades"] = 1  # an extra column is ignored
    frame.to_csv(d / "BTC_USDT-1m.csv", index=False)
    return d / "BTC_USDT-1m.csv"


def csv_seconds_semicolons(c: Candles, d: Path) -> Path:
    frame = _frame(c).rename(columns={"timestamp": "time"})
    frame["time"] //= 1000
    frame.to_csv(d / "BTC_USDT-1m.csv", index=False, sep=";")
    return d / "BTC_USDT-1m.csv"


def binance(header: bool, micro: bool) -> Callable[[Candles, Path], Path]:
    def write(c: Candles, d: Path) -> Path:
        path = d / "BTCUSDT-1m-2023-03-24.csv"
        _binance_frame(c, micro).to_csv(path, index=False, header=header)
        return path

    write.__name__ = f"binance_{'header' if header else 'no_header'}_{'us' if micro else 'ms'}"
    return write


def binance_zip(c: Candles, d: Path) -> Path:
    path = d / "BTCUSDT-1m-2023-03.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        text = _binance_frame(c, micro=True).to_csv(index=False, header=False)
        archive.writestr("BTCUSDT-1m-2023-03.csv", text)
    return path


def _freqtrade_rows(c: Candles) -> str:
    rows = [[int(t), *map(float, v)] for t, *v in zip(*c.columns().values(), strict=True)]
    return json.dumps(rows)


def freqtrade_json(c: Candles, d: Path) -> Path:
    (d / "BTC_USDT-1m.json").write_text(_freqtrade_rows(c))
    return d / "BTC_USDT-1m.json"


def freqtrade_json_gz(c: Candles, d: Path) -> Path:
    (d / "BTC_USDT-1m.json.gz").write_bytes(gzip.compress(_freqtrade_rows(c).encode()))
    return d / "BTC_USDT-1m.json.gz"


def freqtrade_feather(c: Candles, d: Path) -> Path:
    frame = c.to_frame(datetime_index=True).rename_axis("date").reset_index()
    frame.to_feather(d / "BTC_USDT-1m.feather")
    return d / "BTC_USDT-1m.feather"


def parquet_ours(c: Candles, d: Path) -> Path:
    table = c.to_arrow().append_column("trades", pa.array(np.arange(len(c))))
    pq.write_table(table, d / "BTC_USDT-1m.parquet", compression="zstd")
    return d / "BTC_USDT-1m.parquet"


def parquet_date_column(c: Candles, d: Path) -> Path:
    c.to_frame(datetime_index=True).rename_axis("date").to_parquet(d / "BTC_USDT-1m.parquet")
    return d / "BTC_USDT-1m.parquet"


WRITERS: list[tuple[Callable[[Candles, Path], Path], str]] = [
    (csv_plain, "csv"),
    (csv_gzip, "csv+gzip"),
    (csv_iso_dates_mixed_case, "csv"),
    (csv_seconds_semicolons, "csv"),
    (binance(header=False, micro=False), "binance-csv"),
    (binance(header=False, micro=True), "binance-csv"),
    (binance(header=True, micro=False), "binance-csv"),
    (binance(header=True, micro=True), "binance-csv"),
    (binance_zip, "binance-csv+zip"),
    (freqtrade_json, "freqtrade-json"),
    (freqtrade_json_gz, "freqtrade-json+gzip"),
    (freqtrade_feather, "feather"),
    (parquet_ours, "parquet"),
    (parquet_date_column, "parquet"),
]


@pytest.mark.parametrize(("write", "fmt"), WRITERS, ids=[w.__name__ for w, _ in WRITERS])
def test_every_format_round_trips_exactly(
    real_slice: Candles, tmp_path: Path, write: Callable[[Candles, Path], Path], fmt: str
) -> None:
    folder = tmp_path / "binance"
    folder.mkdir()
    path = write(real_slice, folder)
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        (result,) = import_files([path], store)
        back = store.read_candles(KEY)
    assert result.key == KEY
    assert result.format == fmt
    assert (result.rows, result.dropped, result.written.inserted) == (2000, 0, 2000)
    assert (result.first, result.last) == (real_slice.timestamp[0], real_slice.timestamp[-1])
    assert back.equals(real_slice)


def test_content_decides_the_format_not_the_extension(real_slice: Candles, tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1m.csv"  # gzip bytes under a plain .csv name
    path.write_bytes(gzip.compress(_frame(real_slice).to_csv(index=False).encode()))
    parsed = read_candle_file(path)
    assert parsed.format == "csv+gzip"
    assert parsed.first_line == 2
    assert parsed.candles.equals(real_slice)


def test_daily_binance_files_merge_into_one_series(real_slice: Candles, tmp_path: Path) -> None:
    folder = tmp_path / "binance-spot"
    folder.mkdir()
    halves = [real_slice[:1200], real_slice[1000:]]  # 200 overlapping rows, identical
    for i, part in enumerate(halves):
        path = folder / f"BTCUSDT-1m-2023-03-2{i + 4}.csv"
        _binance_frame(part, micro=i == 1).to_csv(path, index=False, header=False)
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        results = import_files([folder], store)
        assert [r.written.inserted for r in results] == [1200, 800]
        assert results[1].written.unchanged == 200
        assert store.read_candles(KEY).equals(real_slice)


def test_progress_reports_files_bytes_and_rows(real_slice: Candles, tmp_path: Path) -> None:
    folder = tmp_path / "binance"
    folder.mkdir()
    paths = [parquet_ours(real_slice, folder), freqtrade_json(real_slice[:10], folder)]
    (folder / "README.md").write_text("notes")
    events = []
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        import_files([folder], store, progress=events.append)
    phases = [e.phase for e in events]
    assert phases == ["start", "skip", "read", "read", "write", "write", "done"]
    total = sum(p.stat().st_size for p in paths)
    assert events[0].files_total == 2 and events[0].bytes_total == total
    assert events[1].path == folder / "README.md" and "extension" in events[1].detail
    assert events[-1].rows_done == events[-1].rows_total == 2010
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


NAMES = [
    ("/u/user_data/data/binance/BTC_USDT-1m.json", "binance", "BTC/USDT", "1m"),
    ("/u/user_data/data/binance/ETH_USDT-5m.feather", "binance", "ETH/USDT", "5m"),
    ("/u/data/binance/futures/BTC_USDT_USDT-1h-futures.feather", "binance", "BTC/USDT:USDT", "1h"),
    ("/s/ohlcv/binance-spot/1m/BTC_USDT-1m.parquet", "binance", "BTC/USDT", "1m"),
    ("/s/binance-spot/windows/ETH_USDT-1m_20200521-20200620.parquet", "binance", "ETH/USDT", "1m"),
    ("/s/ohlcv/bitstamp-coinbase/BTC_USD-1d.parquet", "bitstamp", "BTC/USD", "1d"),
    ("/d/binance/BTCUSDT-1m-2024-01-01.csv", "binance", "BTC/USDT", "1m"),
    ("/d/binance-usdm/ETHUSDT-1h-2024-01.zip", "binanceusdm", "ETH/USDT", "1h"),
    ("/d/bybit/SOLUSDC-15m-2024-01-01.csv.zip", "bybit", "SOL/USDC", "15m"),
    ("/v/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip", "binance", "BTC/USDT", "1m"),
    ("/v/futures/um/klines/BTCUSDT/4h/BTCUSDT-4h-2024-01.zip", "binanceusdm", "BTC/USDT", "4h"),
    ("/k/kraken/ETHBTC_4h.csv.gz", "kraken", "ETH/BTC", "4h"),
    ("/k/mexc/history/BTC_USDT-1d.json.gz", "mexc", "BTC/USDT", "1d"),
    ("/k/my files/prices.csv", None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("path", "exchange", "symbol", "timeframe"), NAMES)
def test_series_is_inferred_from_the_path(
    path: str, exchange: str | None, symbol: str | None, timeframe: str | None
) -> None:
    hints = infer_names(Path(path))
    assert hints.exchange == exchange
    assert (str(hints.symbol) if hints.symbol else None) == symbol
    assert hints.timeframe_text == timeframe


def test_freqtrade_mark_candles_are_not_trade_candles() -> None:
    hints = infer_names(Path("/u/binance/futures/BTC_USDT_USDT-1h-mark.feather"))
    assert hints.candle_type == "mark" and not hints.is_trade_candles
