"""Importing every real OHLCV file of ../shared/data: row counts, spans, gaps and contents match
an independent pandas computation and manifest.json, fast; a second import changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core import Symbol, Timeframe
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import ImportResult, NotCandlesError, ProgressEvent, import_files
from pivotal.data.series import Gap, SeriesKey
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
OHLCV = ["timestamp", "open", "high", "low", "close", "volume"]
# Folder → exchange, written out here so the test does not lean on the importer's inference.
EXCHANGES = {"binance-spot": "binance", "bitstamp-coinbase": "bitstamp"}


def manifest() -> dict[str, dict]:
    assert DATA is not None
    entries = json.loads((DATA / "manifest.json").read_text())
    return {k: v for k, v in entries.items() if k.startswith("ohlcv/")}


def key_of(relative: str, entry: dict) -> SeriesKey:
    exchange = EXCHANGES[relative.split("/")[1]]
    return SeriesKey(exchange, Symbol.parse(entry["symbol"]), Timeframe(entry["timeframe"]))


def ms(text: str) -> int:
    return int(pd.Timestamp(text).tz_convert("UTC").value // 1_000_000)


@pytest.fixture(scope="module")
def expected() -> dict[SeriesKey, pd.DataFrame]:
    """Each series as pandas sees it: its files concatenated, de-duplicated and sorted."""
    assert DATA is not None
    parts: dict[SeriesKey, list[pd.DataFrame]] = {}
    for relative, entry in manifest().items():
        frame = pd.read_parquet(DATA / relative, columns=OHLCV)
        parts.setdefault(key_of(relative, entry), []).append(frame)
    series = {}
    for key, frames in parts.items():
        whole = pd.concat(frames, ignore_index=True)
        whole = whole.sort_values("timestamp", kind="stable", ignore_index=True)
        again = whole["timestamp"].duplicated().to_numpy()
        # where files overlap they must agree, else "which file wins" would matter here
        earlier = whole.shift(1)[again].to_numpy()
        assert np.array_equal(whole[again].to_numpy(), earlier), f"{key}: overlaps disagree"
        series[key] = whole[~again].reset_index(drop=True)
    return series


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    assert DATA is not None
    with DuckDBStore(tmp_path_factory.mktemp("real") / "s.duckdb") as store:
        start = time.perf_counter()
        results = import_files([DATA / "ohlcv"], store)
        yield store, results, time.perf_counter() - start


def pandas_gaps(ts: np.ndarray, step: int) -> list[Gap]:
    diffs = np.diff(ts)
    return [
        Gap(int(ts[i]) + step, int(ts[i + 1]) - step, int(diffs[i] // step) - 1)
        for i in np.flatnonzero(diffs > step)
    ]


def test_every_file_is_imported_in_seconds(imported: tuple) -> None:
    _, results, elapsed = imported
    assert DATA is not None
    files = manifest()
    assert {str(r.path.relative_to(DATA)) for r in results} == set(files)
    for r in results:
        entry = files[str(r.path.relative_to(DATA))]
        assert r.rows == entry["rows"] and r.dropped == 0
        assert (r.first, r.last) == (ms(entry["start"]), ms(entry["end"]))
        assert r.format == "parquet"
    assert sum(r.rows for r in results) > 2_400_000  # BTC 1m alone is 1,578,160 rows
    assert elapsed < 10, f"importing all real OHLCV took {elapsed:.1f} s"


def test_series_match_an_independent_pandas_computation(
    imported: tuple, expected: dict[SeriesKey, pd.DataFrame]
) -> None:
    store, _, _ = imported
    infos = {info.key: info for info in store.series()}
    assert set(infos) == set(expected)
    for key, frame in expected.items():
        ts = frame["timestamp"].to_numpy()
        gaps = pandas_gaps(ts, key.timeframe.ms)
        info = infos[key]
        assert (info.rows, info.first, info.last) == (len(frame), ts[0], ts[-1]), key
        # every missing run (info.gaps counts only those longer than pivotal.core.gaps allows)
        assert (info.missing_runs, info.missing) == (len(gaps), sum(g.missing for g in gaps)), key
        assert info.gaps == sum(g.missing > DEFAULT_MAX_MISSING_BARS for g in gaps), key
        assert store.gaps(key) == gaps, key
        back = store.read_candles(key)
        for column in OHLCV:
            np.testing.assert_array_equal(getattr(back, column), frame[column].to_numpy())


def test_single_file_series_agree_with_the_manifest(imported: tuple) -> None:
    store, _, _ = imported
    by_key: dict[SeriesKey, list[dict]] = {}
    for relative, entry in manifest().items():
        by_key.setdefault(key_of(relative, entry), []).append(entry)
    infos = {info.key: info for info in store.series()}
    checked = 0
    for key, entries in by_key.items():
        if len(entries) != 1:
            continue  # BTC/ETH 1m: the main file plus windows, covered by the pandas test
        (entry,) = entries
        step = key.timeframe.ms
        info = infos[key]
        assert (info.rows, info.missing_runs, info.missing) == (
            entry["rows"],
            entry["gaps"],
            entry["missing_bars"],
        ), key
        listed = [Gap(ms(a) + step, ms(b) - step, n) for a, b, n in entry["gap_list"]]
        assert store.gaps(key) == listed, key
        checked += 1
    assert checked >= 7


def test_importing_again_changes_nothing(imported: tuple) -> None:
    store, first, _ = imported
    assert DATA is not None
    keys = [info.key for info in store.series()]
    before = (store.series(), [store.read_candles(k) for k in keys])
    again: list[ImportResult] = import_files([DATA / "ohlcv"], store)
    assert [r.path for r in again] == [r.path for r in first]
    for r in again:
        assert (r.written.inserted, r.written.updated, r.written.unchanged) == (0, 0, r.rows)
    assert store.series() == before[0]
    for key, candles in zip(keys, before[1], strict=True):
        assert store.read_candles(key).equals(candles), key


def test_non_candle_data_is_skipped_when_walked_and_refused_when_named(tmp_path: Path) -> None:
    """Trades, order books, raw messages and REST fixtures hold no candles."""
    assert DATA is not None
    events: list[ProgressEvent] = []
    folders = [DATA / "trades", DATA / "orderbook", DATA / "messages"]
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        assert import_files(folders, store, progress=events.append) == []
        assert store.series() == []
        with pytest.raises(NotCandlesError, match=r"README\.md: holds no candles"):
            import_files([DATA / "README.md"], store)
    skipped = {e.path.name: e.detail for e in events if e.phase == "skip" and e.path}
    assert len(skipped) > 100 and all(skipped.values())
    assert (
        "pivotal data import-trades"
        in skipped["BTC_USDT-trades-20240808T2354-20240809T0005.parquet"]
    )
    assert "order-book" in skipped["BTC_USDT-depth-20240808T2354-20240809T0005.parquet"]
    assert "not a list of candles" in skipped["http_spot_market_time.json"]
