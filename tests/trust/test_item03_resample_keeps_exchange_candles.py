"""Item 3: ``pivotal data resample`` never overwrites the exchange's candles with worse ones.

Real data: Binance's BTC/USDT 1m window of 2020-05-21..2020-06-20 (it starts and ends inside a
day, so the first and last 1h/1d buckets are partial) beside Binance's own 1h and 1d candles.
Rules checked: only complete buckets are written, partial ones are skipped and counted; an
exchange candle is replaced by a resampled one only with ``--overwrite``; differences within
float rounding count as unchanged; provenance is per stored candle, not per series.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore, open_store
from pivotal.data.importers import import_files
from pivotal.data.resample import resample_complete
from pivotal.data.series import CHANGE_TOLERANCE, SeriesKey
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)

M1 = SeriesKey("binance", "BTC/USDT", "1m")
H1 = SeriesKey("binance", "BTC/USDT", "1h")
D1 = SeriesKey("binance", "BTC/USDT", "1d")
JUNE_1_2020 = 1_590_969_600_000
JUNE_20_2020 = 1_592_611_200_000
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
WINDOW = "1m/windows/BTC_USDT-1m_20200521-20200620.parquet"


def ohlcv(relative: str) -> pd.DataFrame:
    assert DATA is not None
    return pd.read_parquet(DATA / "ohlcv" / "binance-spot" / relative)[COLUMNS]


@pytest.fixture(scope="module")
def minutes() -> Candles:
    return Candles.from_frame(ohlcv(WINDOW))


@pytest.fixture
def store_dir(tmp_path: Path, minutes: Candles) -> Path:
    """The 1m window, Binance's whole 1d file, and Binance's 1h candles before June 2020
    (so resampling fills June from the 1m window), imported as a user would."""
    files = tmp_path / "files" / "binance"
    files.mkdir(parents=True)
    window_end = int(minutes.timestamp[-1]) + 60_000
    days = ohlcv("1d/BTC_USDT-1d.parquet")
    days[days.timestamp < window_end + 86_400_000].to_parquet(files / "BTC_USDT-1d.parquet")
    hours = ohlcv("1h/BTC_USDT-1h.parquet")
    hours[hours.timestamp < JUNE_1_2020].to_parquet(files / "BTC_USDT-1h.parquet")
    ohlcv(WINDOW).to_parquet(files / "BTC_USDT-1m.parquet")
    store = tmp_path / "store"
    with open_store(store) as s:
        import_files([files], s, exchange="binance")
    return store


def resample_cli(store: Path, *extra: str) -> str:
    args = ["data", "resample", "-s", "BTC/USDT", "--from", "1m", "--to", "1h,1d", *extra]
    result = run_cli([*args, "-d", str(store)], cwd=store.parent)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stdout.split())  # rich wraps long lines


def day(store: Path, ts: int) -> tuple[float, float, str]:
    with DuckDBStore(store / "pivotal.duckdb", read_only=True) as s:
        candles = s.read_candles(D1, ts, ts + 1)
        (source,) = {r.source for r in s.source_ranges(D1, ts, ts + 1)}
    return float(candles.volume[0]), float(candles.close[0]), source


def test_exchange_day_survives_a_partial_bucket(store_dir: Path, minutes: Candles) -> None:
    in_day = (minutes.timestamp >= JUNE_20_2020) & (minutes.timestamp < JUNE_20_2020 + 86_400_000)
    assert 0 < in_day.sum() < 1440  # the window ends inside 2020-06-20: a partial day
    exchange = ohlcv("1d/BTC_USDT-1d.parquet").set_index("timestamp").loc[JUNE_20_2020]
    before = day(store_dir, JUNE_20_2020)
    assert before[:2] == (exchange.volume, exchange.close)

    out = resample_cli(store_dir)

    assert day(store_dir, JUNE_20_2020) == before  # Binance's volume 30,329, close 9,358.95
    assert round(before[0]) == 30_329 and before[1] == 9_358.95
    assert before[2].startswith("import:")
    # the partial buckets are skipped and counted, computed here independently
    for tf in (Timeframe.H1, Timeframe.D1):
        bucket = minutes.timestamp // tf.ms
        counts = np.unique(bucket, return_counts=True)[1]
        partial = int((counts < tf.ms // 60_000).sum())
        assert partial >= 2  # the first and the last bucket of the window at least
        assert f"→ {tf}: " in out
        line = out.split(f"→ {tf}: ")[1].split("→")[0]
        assert f"{partial} partial candle(s) skipped" in line


def test_rounding_is_unchanged_and_mixed_sources_are_reported(
    store_dir: Path, minutes: Candles
) -> None:
    with DuckDBStore(store_dir / "pivotal.duckdb", read_only=True) as s:
        stored_days = s.read_candles(D1)
    built = resample_complete(minutes, Timeframe.M1, Timeframe.D1).candles
    stored = stored_days[np.isin(stored_days.timestamp, built.timestamp)]
    assert np.array_equal(stored.timestamp, built.timestamp)
    differs = stored.volume != built.volume
    assert differs.any()  # float rounding: the 1m volumes sum to other last bits
    np.testing.assert_allclose(built.volume, stored.volume, rtol=CHANGE_TOLERANCE)

    out = resample_cli(store_dir)
    assert (
        f"→ 1d: {len(built):,} complete candles (0 new, 0 changed, {len(built):,} unchanged" in out
    )
    assert "relative 1e-09" in out  # the tolerance is stated

    with DuckDBStore(store_dir / "pivotal.duckdb", read_only=True) as s:
        assert s.read_candles(D1).equals(stored_days)  # not one exchange day rewritten
        (d1,) = [i for i in s.series() if i.key == D1]
        assert [x.source for x in d1.sources] == ["import:BTC_USDT-1d.parquet"]
        ranges = s.source_ranges(H1)
        (h1,) = [i for i in s.series() if i.key == H1]
    # 1h: Binance's own candles up to June 2020, then the hours resampled from 1m
    assert [r.source for r in ranges] == ["import:BTC_USDT-1h.parquet", "resampled:1m"]
    assert ranges[0].last < JUNE_1_2020 <= ranges[1].first
    assert {x.source: x.rows for x in h1.sources} == {r.source: r.rows for r in ranges}
    share = round(100 * ranges[1].rows / h1.rows)
    assert f"resampled:1m {share} %" in h1.source

    listing = run_cli(["data", "list", "--json", "-d", str(store_dir)], cwd=store_dir.parent)
    rows = {c["timeframe"]: c for c in json.loads(listing.stdout)["candles"]}
    assert {s["source"] for s in rows["1h"]["sources"]} == {
        "import:BTC_USDT-1h.parquet",
        "resampled:1m",
    }
    assert rows["1m"]["source"] == "import:BTC_USDT-1m.parquet"

    again = resample_cli(store_dir)  # resampled replaces resampled: nothing changes
    assert "0 new, 0 changed" in again.split("→ 1h: ")[1]


def test_overwrite_replaces_an_exchange_candle_that_differs(store_dir: Path) -> None:
    target = JUNE_20_2020 - 86_400_000  # a complete day of the window
    with DuckDBStore(store_dir / "pivotal.duckdb") as s:
        original = s.read_candles(D1, target, target + 1)
        values = {c: np.array(original.columns()[c]) for c in COLUMNS}
        values["volume"] *= 1.5  # an exchange candle that disagrees with the 1m bars
        doctored = Candles(*values.values())
        assert s.write_candles(D1, doctored, source="import:doctored").updated == 1

    kept = resample_cli(store_dir)
    assert "1 exchange candle(s) kept" in kept and "--overwrite replaces them" in kept
    assert day(store_dir, target) == (float(doctored.volume[0]), float(original.close[0]),
                                       "import:doctored")  # fmt: skip

    forced = resample_cli(store_dir, "--overwrite")
    assert "0 new, 1 changed" in forced.split("→ 1d: ")[1]
    volume, close, source = day(store_dir, target)
    assert source == "resampled:1m"
    assert (volume, close) == pytest.approx((original.volume[0], original.close[0]), rel=1e-9)
    # still never a partial bucket, even with --overwrite
    assert day(store_dir, JUNE_20_2020)[2].startswith("import:")


def test_a_store_from_before_per_candle_sources_keeps_its_labels(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # the layout of schema version 1
        con.execute(
            "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE SEQUENCE series_id_seq;"
            "CREATE TABLE series (id INTEGER PRIMARY KEY DEFAULT nextval('series_id_seq'),"
            " exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,"
            " step_ms BIGINT NOT NULL, source VARCHAR NOT NULL DEFAULT '',"
            " UNIQUE (exchange, symbol, timeframe));"
            "CREATE TABLE candles (series_id INTEGER NOT NULL, ts BIGINT NOT NULL,"
            " open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL,"
            " close DOUBLE NOT NULL, volume DOUBLE NOT NULL);"
            "INSERT INTO series (exchange, symbol, timeframe, step_ms, source)"
            " VALUES ('binance', 'BTC/USDT', '1h', 3600000, 'download:binance');"
            "INSERT INTO candles VALUES (1, 0, 1, 2, 0.5, 1.5, 10),"
            " (1, 3600000, 1, 2, 0.5, 1.5, 10);"
        )
    with DuckDBStore(path, read_only=True) as s:  # read-only: not migrated, same answer
        assert [r.source for r in s.source_ranges(H1)] == ["download:binance"]
    with DuckDBStore(path) as s:
        assert [(r.source, r.rows) for r in s.source_ranges(H1)] == [("download:binance", 2)]
        fill = Candles([7_200_000], [1.0], [2.0], [0.5], [1.5], [10.0])
        assert s.write_candles(H1, fill, source="resampled:1m").inserted == 1
        (info,) = s.series()
    assert info.source == "download:binance 67 %, resampled:1m 33 %"
