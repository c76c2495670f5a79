"""The inference history: exact round trips, SQL filters, retention, atomic appends."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data import inference_history as ih
from pivotal.data import inference_record
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.data.inference_payload import (
    pack_payload,
    pack_payloads,
    payload_header,
    record_arrays,
)
from pivotal.data.series import SeriesKey

T0 = 1_700_000_000_000
MIN = 60_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


@pytest.fixture
def history(store: DuckDBStore) -> InferenceHistory:
    return InferenceHistory(store)


def record(
    i: int = 0,
    symbol: str = "BTC/USDT",
    models: tuple[str, ...] = ("cnn", "dqn"),
    ts: int | None = None,
    seed: int = 0,
    **overrides: Any,
) -> InferenceRecord:
    rng = np.random.default_rng(seed + i)
    fields: dict[str, Any] = {
        "symbol": symbol,
        "timestamp": T0 + i * MIN if ts is None else ts,
        "action": ("BUY", "SELL", "HOLD")[i % 3],
        "confidence": 0.5 + 0.01 * (i % 40),
        "decision": {
            "probabilities": [0.6, 0.3, 0.1],
            "gate": "vote",
            "reason": "threshold met",
            "contributions": [{"model": m, "weight": 1 / len(models)} for m in models],
            "skipped": {},
        },
        "outputs": {
            m: {"model_type": m, "confidence": 0.6, "action": "BUY", "predictions": {"p": [i]}}
            for m in models
        },
        "hidden": {m: {"h": rng.normal(size=(1, 8)).astype(np.float32)} for m in models},
        "tensors": {m: {"x": rng.normal(size=(1, 4, 10, 7)).astype(np.float32)} for m in models},
        "input": {"windows": {"1m": {"first_open": T0 - 59 * MIN, "last_open": T0, "rows": 60}}},
    }
    fields.update(overrides)
    return InferenceRecord(**fields)


def same_arrays(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> None:
    assert list(a) == list(b)
    for model in a:
        assert list(a[model]) == list(b[model])
        for name, x in a[model].items():
            y = b[model][name]
            assert y.dtype == x.dtype and y.dtype.str == x.dtype.str
            assert y.shape == x.shape
            assert y.tobytes() == x.tobytes()


# -- round trip -------------------------------------------------------------------------------
def test_round_trip_is_exact(history: InferenceHistory) -> None:
    rng = np.random.default_rng(7)
    tensors = {
        "dqn": {  # model order is kept (replay runs models in the record's order)
            "obs": rng.normal(size=(1, 30, 5)).astype(np.float32),
            "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
            "fortran": np.asfortranarray(rng.normal(size=(3, 4))),
            "strided": np.arange(20, dtype=np.int64)[::3],
            "scalar": np.array(3.5, dtype=np.float16),
            "empty": np.zeros((0, 3), dtype=np.int32),
        },
        "cnn": {
            "x": np.array([[np.nan, np.inf], [-np.inf, -0.0]], dtype=np.float32),
            "flags": np.array([True, False, True]),
            "bytes": np.arange(256, dtype=np.uint8),
            "times": np.array([T0, T0 + MIN], dtype="datetime64[ms]"),
            "names": np.array(["BUY", "HOLD"]),
            "complex": np.array([1 + 2j], dtype=np.complex64),
        },
    }
    hidden = {"cnn": {"features": rng.normal(size=(1, 64))}, "dqn": {}}
    decision = {"probabilities": [0.5, 0.25, 0.25], "nested": {"a": [1, "two", None, True]}}
    outputs = {"cnn": {"model_type": "cnn", "predictions": {"pivot": [0.1, 0.2]}}}
    inp = {"windows": {"1m": {"first_open": 1, "last_open": 2, "rows": 2}}, "pivots": []}
    rec = InferenceRecord("ETH/USDT", T0, "sell", 0.75, decision, outputs, hidden, tensors, inp)
    assert history.append([rec]) == 1
    (back,) = history.query()
    assert (back.symbol, back.timestamp, back.action, back.confidence) == (
        "ETH/USDT",
        T0,
        "SELL",
        0.75,
    )
    assert back.decision == decision and back.outputs == outputs and back.input == inp
    same_arrays(tensors, dict(back.tensors))
    same_arrays(hidden, dict(back.hidden))
    assert back.models == rec.models == ("cnn", "dqn")
    assert back.tensors["dqn"]["obs"].flags.writeable  # usable by torch.from_numpy


def test_json_parts_store_nan_as_null_and_numpy_as_plain(history: InferenceHistory) -> None:
    decision = {
        "probabilities": (0.5, float("nan"), float("inf")),
        "count": np.int64(3),
        "weight": np.float32(0.25),
        "ok": np.bool_(True),
        "vector": np.array([1.0, np.nan]),
        1: "int key",
    }
    history.append([record(decision=decision)])
    (back,) = history.query()
    assert back.decision == {
        "probabilities": [0.5, None, None],
        "count": 3,
        "weight": 0.25,
        "ok": True,
        "vector": [1.0, None],
        "1": "int key",
    }


def test_compression_shrinks_a_compressible_payload(store: DuckDBStore) -> None:
    zeros = {"m": {"x": np.zeros((100, 1000), dtype=np.float32)}}  # 400 KB
    for level in (1, 6, 9):
        history = InferenceHistory(store, compression_level=level)
        history.append([record(symbol=f"L{level}", models=(), tensors=zeros)])
    stored = InferenceHistory(store, compression_level=0)
    stored.append([record(symbol="L0", models=(), tensors=zeros)])
    sizes = stored.summary().set_index("symbol")
    assert (sizes["raw_bytes"] > 400_000).all()
    assert sizes.loc["L0", "bytes"] > 400_000  # level 0 stores
    for level in (1, 6, 9):
        assert sizes.loc[f"L{level}", "bytes"] < 5_000
    assert stored.size_bytes() == int(sizes["bytes"].sum())
    back = stored.query(symbol="L9")[0].tensors["m"]["x"]
    assert back.shape == (100, 1000) and not back.any()


def test_a_batch_packs_to_the_same_bytes_as_each_record() -> None:
    records = [record(i) for i in range(40)]
    headers = [payload_header(r) for r in records]
    for level in (0, 3):
        single = [
            pack_payload(h, record_arrays(r), level) for h, r in zip(headers, records, strict=True)
        ]
        assert pack_payloads(headers, records, level) == single


def _version_1(rec: InferenceRecord) -> bytes:
    """``rec`` as pivotal wrote it before zstd (format version 1: zlib, byte planes)."""
    header = zlib.compress(payload_header(rec), 6)
    groups: dict[int, list[np.ndarray]] = {}
    for a in record_arrays(rec):
        groups.setdefault(a.itemsize, []).append(a)
    planes = b"".join(
        np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in members])
        .reshape(-1, size)
        .T.tobytes()
        for size, members in groups.items()
    )
    return b"PIH1" + len(header).to_bytes(4, "little") + header + zlib.compress(planes, 6)


def test_histories_written_in_format_1_are_still_read(
    history: InferenceHistory, store: DuckDBStore
) -> None:
    rec = record(3, decision={"note": "v1", "p": [0.25, 0.75]})
    history.append([rec])
    with store.transaction() as con:
        con.execute("UPDATE inference_history SET payload = ?", [_version_1(rec)])
    back = history.query()[0]
    assert back.decision == rec.decision and back.outputs == rec.outputs
    same_arrays(dict(rec.tensors), dict(back.tensors))
    same_arrays(dict(rec.hidden), dict(back.hidden))


def test_numpy_values_in_the_json_parts_are_written_as_python_numbers(
    history: InferenceHistory,
) -> None:
    """A float32 goes through ``.item()``: it comes back as the float64 it converts to (what
    format 1 stored), not as its shortest float32 text."""
    x = np.float32(0.1)
    history.append([record(0, decision={"x": x, "n": np.int64(7), "a": np.arange(2.0)})])
    back = history.query()[0].decision
    assert back["x"] == float(x) != 0.1 and back["n"] == 7 and back["a"] == [0.0, 1.0]


def test_the_split_modules_keep_one_public_api() -> None:
    """The record and the codec moved to their own modules; ``inference_history`` still
    exports the same names, and they are the same objects."""
    assert set(ih.__all__) == {
        "HISTORY_SCHEMA_VERSION",
        "InferenceHistory",
        "InferenceRecord",
        "RetentionReport",
    }
    assert ih.InferenceRecord is inference_record.InferenceRecord
    assert pack_payload(payload_header(record(0)), [], 3)[:4] == b"PIH2"


# -- queries ----------------------------------------------------------------------------------
@pytest.fixture
def filled(history: InferenceHistory) -> InferenceHistory:
    batch = [
        record(
            i, symbol=("BTC/USDT", "ETH/USDT")[i % 2], models=(("cnn",), ("cnn", "dqn"))[i % 3 == 0]
        )
        for i in range(30)
    ]
    assert history.append(batch) == 30
    return history


def test_query_filters_by_symbol_model_and_time(filled: InferenceHistory) -> None:
    eth = filled.query(symbol="ETH/USDT")
    assert [r.timestamp for r in eth] == [T0 + i * MIN for i in range(1, 30, 2)]
    dqn = filled.query(model="dqn")
    assert [r.timestamp for r in dqn] == [T0 + i * MIN for i in range(0, 30, 3)]
    assert all("dqn" in r.tensors for r in dqn)
    window = filled.query(since=T0 + 5 * MIN, until=T0 + 9 * MIN)  # [since, until)
    assert [r.timestamp for r in window] == [T0 + i * MIN for i in range(5, 9)]
    both = filled.query(symbol="BTC/USDT", model="dqn", since=T0 + 1)
    assert [r.timestamp for r in both] == [T0 + i * MIN for i in (6, 12, 18, 24)]
    assert filled.query(symbol="SOL/USDT") == [] and filled.query(model="lstm") == []
    assert filled.count() == 30
    assert filled.count(symbol="ETH/USDT") == 15
    assert filled.count(model="dqn", until=T0 + 10 * MIN) == 4


def test_query_order_and_limit(filled: InferenceHistory) -> None:
    newest = filled.query(limit=3, descending=True)
    assert [r.timestamp for r in newest] == [T0 + i * MIN for i in (29, 28, 27)]
    oldest = filled.query(limit=2)
    assert [r.timestamp for r in oldest] == [T0, T0 + MIN]
    assert filled.query(limit=0) == []


def test_same_step_twice_keeps_both_in_append_order(history: InferenceHistory) -> None:
    history.append([record(0, decision={"run": 1})])
    history.append([record(0, decision={"run": 2})])
    assert [r.decision["run"] for r in history.query()] == [1, 2]
    assert [r.decision["run"] for r in history.query(descending=True)] == [2, 1]


def test_summary_has_one_row_per_record(filled: InferenceHistory) -> None:
    frame = filled.summary(model="dqn", limit=4)
    assert list(frame.columns) == [
        "timestamp",
        "symbol",
        "action",
        "confidence",
        "models",
        "bytes",
        "raw_bytes",
    ]
    assert frame["timestamp"].tolist() == [T0 + i * MIN for i in (0, 3, 6, 9)]
    assert frame["models"].tolist() == [("cnn", "dqn")] * 4
    assert (frame["bytes"] > 0).all() and frame["action"].tolist() == ["BUY"] * 4
    assert filled.summary(symbol="none").empty


def test_bad_query_arguments_are_refused(filled: InferenceHistory) -> None:
    with pytest.raises(ValueError, match="since must be an int"):
        filled.query(since=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be >= 0"):
        filled.query(limit=-1)
    with pytest.raises(ValueError, match="symbol must be a str"):
        filled.count(symbol=Symbol("BTC", "USDT"))  # type: ignore[arg-type]


# -- retention --------------------------------------------------------------------------------
def test_retention_by_age(filled: InferenceHistory) -> None:
    now = T0 + 30 * MIN
    report = filled.apply_retention(now_ms=now, max_age_ms=10 * MIN)
    assert (report.deleted_by_age, report.deleted_by_size, report.kept) == (20, 0, 10)
    assert filled.query(limit=1)[0].timestamp == now - 10 * MIN  # exactly max_age: kept
    assert report.bytes_kept == filled.size_bytes()
    again = filled.apply_retention(now_ms=now, max_age_ms=10 * MIN)
    assert (again.deleted, again.bytes_freed, again.kept) == (0, 0, 10)


def test_retention_by_size_removes_the_oldest_first(filled: InferenceHistory) -> None:
    sizes = filled.summary()["bytes"].tolist()
    budget = sum(sizes[-7:]) + sizes[-8] // 2  # room for the 7 newest, not for the 8th
    before = filled.size_bytes()
    report = filled.apply_retention(now_ms=T0, max_bytes=budget)
    assert (report.deleted_by_size, report.kept) == (23, 7)
    assert report.bytes_kept == sum(sizes[-7:]) == filled.size_bytes() <= budget
    assert report.bytes_freed == before - report.bytes_kept
    assert [r.timestamp for r in filled.query()] == [T0 + i * MIN for i in range(23, 30)]
    assert filled.apply_retention(now_ms=T0, max_bytes=0).kept == 0
    assert filled.count() == 0


def test_retention_by_age_then_size(filled: InferenceHistory) -> None:
    sizes = filled.summary()["bytes"].tolist()
    report = filled.apply_retention(
        now_ms=T0 + 30 * MIN, max_age_ms=10 * MIN, max_bytes=sum(sizes[-4:])
    )
    assert (report.deleted_by_age, report.deleted_by_size, report.kept) == (20, 6, 4)
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        filled.apply_retention(now_ms=T0, max_bytes=-1)


# -- validation and atomicity -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"symbol": ""}, "symbol must be a non-empty str"),
        ({"ts": 1.5}, "timestamp must be an int"),
        ({"ts": True}, "timestamp must be an int"),
        ({"confidence": float("nan")}, "confidence must be finite"),
        ({"confidence": "high"}, "confidence must be a number"),
        ({"action": "JUMP"}, "unknown action"),
        ({"tensors": {"cnn": {"x": [1.0, 2.0]}}}, r"tensors\['cnn'\]\['x'\] is a list"),
        ({"hidden": {"cnn": {"h": np.array([object()])}}}, "cannot be stored without pickling"),
        ({"tensors": {"cnn": np.zeros(3)}}, r"tensors\['cnn'\] must map array name"),
        ({"outputs": {"": {}}}, "keys must be non-empty str"),
        ({"decision": [1, 2]}, "decision must be a mapping"),
    ],
)
def test_bad_records_are_refused_when_built(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(**overrides)


def test_a_bad_record_in_a_batch_writes_nothing(history: InferenceHistory) -> None:
    bad_json = record(2, decision={"when": {"at": object()}})
    with pytest.raises(ValueError, match=r"record 2 of 4 .*decision\['when'\]\['at'\] is a"):
        history.append([record(0), record(1), bad_json, record(3)])
    mutated = record(1)
    mutated.tensors["cnn"]["x"] = [0.0]  # type: ignore[index]  # changed after it was built
    with pytest.raises(ValueError, match=r"record 1 of 2 .*tensors\['cnn'\]\['x'\] is a list"):
        history.append([record(0), mutated])
    with pytest.raises(TypeError, match="item 1 of the batch is a dict"):
        history.append([record(0), {"symbol": "BTC/USDT"}])  # type: ignore[list-item]
    assert history.count() == 0


def test_a_failing_insert_rolls_the_batch_back(
    history: InferenceHistory, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    history.append([record(0)])
    real_frame = ih._frame

    def frame_with_a_null_symbol(*args: Any) -> pa.Table:
        table = real_frame(*args)
        symbols = table.column("symbol").to_pylist()
        symbols[-1] = None  # NOT NULL fails on the last row, after the others were inserted
        return table.set_column(1, "symbol", pa.array(symbols, pa.string()))

    monkeypatch.setattr(ih, "_frame", frame_with_a_null_symbol)
    with pytest.raises(duckdb.ConstraintException):
        history.append([record(i) for i in range(1, 5)])
    monkeypatch.undo()
    assert history.count() == 1  # nothing of the failed batch
    assert history.append([record(9)]) == 1  # the connection is usable again
    key = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
    c = Candles(*(np.array([v], dtype=float) for v in (0, 1, 2, 0.5, 1.5)), np.array([1.0]))
    store.write_candles(key, c)
    assert len(store.read_candles(key)) == 1 and history.count() == 2


# -- the store --------------------------------------------------------------------------------
def test_reopening_the_store_keeps_the_records(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        InferenceHistory(s).append([record(i) for i in range(3)])
        InferenceHistory(s)  # creating it again changes nothing
    with DuckDBStore(path) as s:
        again = InferenceHistory(s)
        assert again.count() == 3
        same_arrays(dict(record(2).tensors), dict(again.query()[-1].tensors))
    with DuckDBStore(path, read_only=True) as s:
        assert InferenceHistory(s).count(model="dqn") == 3


def test_read_only_store_without_history_and_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    DuckDBStore(path).close()
    with DuckDBStore(path, read_only=True) as s:
        empty = InferenceHistory(s)  # reads see nothing; writes say what to do
        assert empty.query() == [] and empty.count() == 0 and empty.size_bytes() == 0
        assert empty.summary().empty
        with pytest.raises(OperationalError, match="open it writable"):
            empty.append([record(0)])
        with pytest.raises(OperationalError, match="open it writable"):
            empty.apply_retention(now_ms=T0, max_age_ms=0)
    with DuckDBStore(path) as s:
        InferenceHistory(s)
        with s.transaction() as con:
            con.execute("UPDATE meta SET value = '99' WHERE key = 'inference_history_version'")
        with pytest.raises(OperationalError, match="schema version 99"):
            InferenceHistory(s)


def test_corrupt_payload_is_a_data_error(history: InferenceHistory, store: DuckDBStore) -> None:
    rec = record(0)
    history.append([rec])
    good = pack_payload(payload_header(rec), record_arrays(rec), 6)
    corrupt = {
        b"PIH9" + good[4:]: "unknown format",
        good[:4] + b"\x07" + good[5:]: "unknown codec",
        good[:-10]: "corrupt",  # zstd frame cut
        pack_payload(payload_header(rec), [], 0)[:12]: "header is cut short",
        pack_payload(payload_header(rec), record_arrays(rec)[1:], 6): "cut short",  # arrays missing
        pack_payload(payload_header(rec), [*record_arrays(rec), np.zeros(3)], 6): "bytes after",
    }
    for payload, message in corrupt.items():
        with store.transaction() as con:
            con.execute("UPDATE inference_history SET payload = ?", [payload])
        with pytest.raises(DataError, match=message):
            history.query()
    with store.transaction() as con:
        con.execute("UPDATE inference_history SET payload = ?", [good])
    same_arrays(dict(rec.tensors), dict(history.query()[0].tensors))


def test_compression_level_is_checked(store: DuckDBStore) -> None:
    with pytest.raises(ValueError, match="compression_level"):
        InferenceHistory(store, compression_level=23)
