"""Schema 3: a schema-2 (and a schema-1) store file is migrated in place, in one transaction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from helpers.cob import assert_same_cob, synthetic_cob
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.core.errors import OperationalError
from pivotal.core.trades import Trades
from pivotal.data import duckdb_store
from pivotal.data.duckdb_store import SCHEMA_VERSION, DuckDBStore
from pivotal.data.series import SeriesKey, SourceShare

BTC = Symbol("BTC", "USDT")
KEY = SeriesKey("binance", BTC, Timeframe.M1)

_V2 = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE SEQUENCE series_id_seq;
CREATE TABLE series (id INTEGER PRIMARY KEY DEFAULT nextval('series_id_seq'),
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    step_ms BIGINT NOT NULL, source VARCHAR NOT NULL DEFAULT '',
    UNIQUE (exchange, symbol, timeframe));
CREATE TABLE candles (series_id INTEGER NOT NULL, ts BIGINT NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL,
    close DOUBLE NOT NULL, volume DOUBLE NOT NULL, source VARCHAR DEFAULT '');
CREATE TABLE trades (exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
    trade_id BIGINT NOT NULL, ts BIGINT NOT NULL, price DOUBLE NOT NULL,
    quantity DOUBLE NOT NULL, is_buyer_maker BOOLEAN NOT NULL);
INSERT INTO series (exchange, symbol, timeframe, step_ms, source)
    VALUES ('binance', 'BTC/USDT', '1m', 60000, 'import:a.parquet');
INSERT INTO candles VALUES (1, 0, 1, 2, 0.5, 1.5, 10, 'import:a.parquet'),
    (1, 60000, 1.5, 2, 1, 1.8, 12, 'import:a.parquet');
INSERT INTO trades VALUES ('binance', 'BTC/USDT', 1, 1000, 100.0, 0.5, true),
    ('binance', 'BTC/USDT', 2, 1500, 101.0, 0.25, false);
"""

OLD_TRADES = Trades([1000, 1500], [100.0, 101.0], [0.5, 0.25], [True, False], [1, 2])


def v2_store(path: Path) -> Path:
    """A store file in the exact layout pivotal wrote at schema version 2."""
    with duckdb.connect(str(path)) as con:
        con.execute(_V2)
    return path


def _columns(path: Path, table: str) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [r[1] for r in con.execute(f"PRAGMA table_info('{table}')").fetchall()]


def _version(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0]


def test_a_v2_store_is_read_as_it_is_when_opened_read_only(tmp_path: Path) -> None:
    path = v2_store(tmp_path / "v2.duckdb")
    with DuckDBStore(path, read_only=True) as store:
        trades = store.read_trades("binance", BTC)
        assert store.read_cob("binance", BTC) == []
        assert len(store.read_cob_arrays("binance", BTC)) == 0
        assert store.cob_symbols() == []
        assert store.trade_sources("binance", BTC) == []
    np.testing.assert_array_equal(trades.trade_id, [1, 2])
    assert "source" not in _columns(path, "trades") and _version(path) == "2"


def test_opening_a_v2_store_migrates_it_in_place(tmp_path: Path) -> None:
    path = v2_store(tmp_path / "v2.duckdb")
    with DuckDBStore(path) as store:
        assert store.read_candles(KEY).close.tolist() == [1.5, 1.8]  # candles untouched
        assert [r.source for r in store.source_ranges(KEY)] == ["import:a.parquet"]
        assert store.trade_sources("binance", BTC) == [SourceShare("", 2)]  # old rows: ''
        new = Trades([2000], [102.0], [1.0], [False], [3])
        assert store.write_trades("binance", BTC, new, source="stream:binance").inserted == 1
        again = store.write_trades("binance", BTC, OLD_TRADES, source="import:t.parquet")
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
        assert sorted(store.trade_sources("binance", BTC), key=lambda s: s.source) == [
            SourceShare("import:t.parquet", 2),  # equal rows without a label take it
            SourceShare("stream:binance", 1),
        ]
        snaps = synthetic_cob(5)
        assert store.write_cob("binance", BTC, snaps, source="s").inserted == 5
        assert_same_cob(store.read_cob("binance", BTC), snaps)
    assert _version(path) == str(SCHEMA_VERSION) == "3"
    assert _columns(path, "trades")[-1] == "source"
    with DuckDBStore(path) as store:  # reopening changes nothing more
        assert len(store.read_cob("binance", BTC)) == 5
        assert len(store.read_trades("binance", BTC)) == 3


def test_a_v1_store_is_migrated_to_v3_in_one_go(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:
        v1 = _V2.replace("'schema_version', '2'", "'schema_version', '1'")
        v1 = v1.replace(", source VARCHAR DEFAULT '');", ");")
        v1 = v1.replace("12, 'import:a.parquet');", "12);").replace(
            "10, 'import:a.parquet'),", "10),"
        )
        con.execute(v1)
    assert "source" not in _columns(path, "candles")
    with DuckDBStore(path) as store:
        assert [r.source for r in store.source_ranges(KEY)] == ["import:a.parquet"]
        assert store.trade_sources("binance", BTC) == [SourceShare("", 2)]
    assert _version(path) == "3"


def test_a_failed_migration_leaves_the_v2_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v2_store(tmp_path / "v2.duckdb")
    failing = duckdb_store._SCHEMA + "\nSELECT error('disk full (injected)');"
    monkeypatch.setattr(duckdb_store, "_SCHEMA", failing)
    with pytest.raises(duckdb.Error, match="injected"):
        DuckDBStore(path)
    assert _version(path) == "2"
    assert "source" not in _columns(path, "trades")
    with duckdb.connect(str(path), read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert "cob_snapshots" not in tables
    monkeypatch.undo()
    with DuckDBStore(path) as store:  # the next open migrates
        assert store.trade_sources("binance", BTC) == [SourceShare("", 2)]


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = v2_store(tmp_path / "v9.duckdb")
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = '9'")
    with pytest.raises(OperationalError, match="schema version 9, newer"):
        DuckDBStore(path)


def test_a_new_store_starts_at_v3(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "new.duckdb") as store:
        c = Candles([0], [1.0], [2.0], [0.5], [1.5], [3.0])
        store.write_candles(KEY, c, source="x")
    assert _version(tmp_path / "new.duckdb") == "3"
    assert "source" in _columns(tmp_path / "new.duckdb", "trades")


def test_imported_trades_are_labelled_with_their_file(tmp_path: Path) -> None:
    from pivotal.data.trade_import import import_trade_files

    path = tmp_path / "binance" / "BTC_USDT-trades-x.parquet"
    path.parent.mkdir()
    frame = OLD_TRADES.to_frame()
    frame.to_parquet(path)
    with DuckDBStore(v2_store(tmp_path / "v2.duckdb")) as store:
        (result,) = import_trade_files([path], store)
        assert result.written.unchanged == 2  # the same trades were stored unlabelled
        assert store.trade_sources("binance", BTC) == [SourceShare(f"import:{path.name}", 2)]
