"""The run journal: batched atomic writes, exact round trips, run listing, crash safety and
memory that stays flat however long the run."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pivotal.core.errors import OperationalError
from pivotal.data import run_journal as rj
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.run_journal import (
    JOURNAL_FILE_NAME,
    JournalCounts,
    RunJournal,
    RunJournalReader,
    open_journal_store,
)
from pivotal.runtime.recorder import MemoryRecorder, RunRecorder

T0 = 1_700_000_000_000
MIN = 60_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with open_journal_store(tmp_path) as s:
        yield s


def fill(i: int, symbol: str = "BTC/USDT") -> dict[str, Any]:
    return {
        "timestamp": T0 + i * MIN,
        "kind": "fill",
        "symbol": symbol,
        "side": "buy" if i % 2 else "sell",
        "quantity": 0.125 * (i + 1),
        "price": 30_000.5 + i,
        "fee": 0.03,
        "client_order_id": f"sim-{i:08d}",
    }


def decision(i: int) -> dict[str, Any]:
    return {
        "timestamp": T0 + i * MIN,
        "kind": "decision",
        "symbol": "ETH/USDT",
        "bar_index": i,
        "actions": i % 2,
        "source": "orchestrator",
    }


def stored_rows(store: DuckDBStore, run_id: str) -> JournalCounts:
    return RunJournalReader(store).run(run_id).rows


# -- round trips ------------------------------------------------------------------------------
def test_types_round_trip_exactly(store: DuckDBStore) -> None:
    records = [
        {
            "timestamp": T0,
            "kind": "order",
            "symbol": "BTC/USDT",
            "price": 0.1 + 0.2,  # not a short decimal: the exact double must come back
            "tiny": 5e-324,
            "nan": float("nan"),
            "inf": float("-inf"),
            "note": None,
            "flag": True,
            "count": np.int64(7),
            "weight": np.float32(0.5),
            "text": 'größe ✓ "quoted"\n',
            "nested": {"probabilities": [0.6, 0.3, 0.1], "gate": {"k": None}},
        },
        {
            "timestamp": T0 + MIN,
            "kind": "order",
            "symbol": "BTC/USDT",
            "price": 2.0,
            "tiny": -0.0,
            "nan": 1.5,
            "inf": 3.0,
            "note": "filled",
            "flag": False,
            "count": 8,
            "weight": 1.0,
            "text": "",
            "nested": {},
            "late": 2**62,  # a key only the second record has
        },
    ]
    with RunJournal(store, "types", batch_size=5) as journal:
        for r in records:
            journal.event(r)
        journal.equity(T0, 10_000.0)
        journal.equity(T0 + MIN, 0.1 + 0.7)
    frame = RunJournalReader(store).events_frame("types")

    assert list(frame.columns) == [*records[0], "late"]
    assert frame["timestamp"].dtype == np.int64
    assert frame["timestamp"].tolist() == [T0, T0 + MIN]
    assert frame["price"].dtype == np.float64
    assert frame["price"].tolist() == [0.1 + 0.2, 2.0]
    assert frame["tiny"].tolist() == [5e-324, -0.0] and math.copysign(1, frame["tiny"][1]) < 0
    assert math.isnan(frame["nan"][0]) and frame["inf"][0] == -math.inf
    assert frame["note"].dtype == object and frame["note"].tolist() == [None, "filled"]
    assert frame["flag"].dtype == bool and frame["flag"].tolist() == [True, False]
    assert frame["count"].dtype == np.int64 and frame["count"].tolist() == [7, 8]
    assert frame["weight"].tolist() == [0.5, 1.0]
    assert frame["symbol"].dtype == object and frame["text"].tolist() == [records[0]["text"], ""]
    assert frame["nested"].tolist() == [records[0]["nested"], {}]
    assert frame["late"].tolist() == [None, 2**62]
    equity = RunJournalReader(store).equity_frame("types")
    assert equity["timestamp"].dtype == np.int64 and equity["equity"].dtype == np.float64
    assert equity["timestamp"].tolist() == [T0, T0 + MIN]
    assert equity["equity"].tolist() == [10_000.0, 0.1 + 0.7]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.dictionaries(st.sampled_from("abcde"), json_values), max_size=12),
    batch=st.integers(1, 5),
)
def test_any_json_records_read_back_equal(
    tmp_path_factory: pytest.TempPathFactory, values: list[dict[str, Any]], batch: int
) -> None:
    records = [{"timestamp": T0 + i, **v} for i, v in enumerate(values)]
    with (
        open_journal_store(tmp_path_factory.mktemp("j")) as store,
        RunJournal(store, "p", batch_size=batch) as journal,
    ):
        for r in records:
            journal.decision(r)
        frame = journal.decisions_frame()
    assert len(frame) == len(records)
    for key in frame.columns:
        for got, record in zip(frame[key], records, strict=True):
            # a key the record lacks reads as None; ints in a float column as equal floats
            assert got == record.get(key) or (got is None and key not in record)


def test_journal_frames_equal_the_memory_recorder(store: DuckDBStore) -> None:
    journal = RunJournal(store, "same", batch_size=7)
    memory = MemoryRecorder()
    assert isinstance(journal, RunRecorder)
    for recorder in (journal, memory):
        for i in range(30):
            recorder.equity(T0 + i * MIN, 1_000.0 + i * 0.5)
            recorder.decision(decision(i))
            if i % 4 == 0:
                recorder.event(fill(i))
                recorder.fill(fill(i))
        recorder.close()
    reader = RunJournalReader(store)
    times, values = memory.equity_curve()
    pd.testing.assert_frame_equal(
        reader.equity_frame("same"), pd.DataFrame({"timestamp": times, "equity": values})
    )
    for stream, rows in (
        ("decisions", memory.decisions),
        ("events", memory.events),
        ("fills", memory.fills),
    ):
        got = getattr(reader, f"{stream}_frame")("same")
        assert got.to_dict("records") == rows, stream


# -- batching, counts, listing ------------------------------------------------------------
def test_batches_are_written_at_an_equity_point_never_between_decision_and_orders(
    store: DuckDBStore,
) -> None:
    journal = RunJournal(store, "steps", batch_size=10)
    for i in range(12):  # a step deciding for many symbols: no write inside it
        journal.decision(decision(i))
    assert journal.pending == 12 and stored_rows(store, "steps").total == 0
    journal.equity(T0, 1.0)  # the step ends
    assert journal.pending == 0 and stored_rows(store, "steps") == JournalCounts(1, 12)
    for i in range(20):  # without equity points the batch is written at 2 * batch_size
        journal.event(fill(i))
    assert journal.pending == 0 and stored_rows(store, "steps").events == 20


def test_rows_are_written_in_batches_and_counted(store: DuckDBStore) -> None:
    journal = RunJournal(store, "b", batch_size=10, meta={"strategy": "sma_cross", "days": 30})
    for i in range(9):
        journal.fill(fill(i))
    assert journal.pending == 9 and stored_rows(store, "b").total == 0
    journal.equity(T0, 1.0)  # the 10th row writes the batch: all streams together
    assert journal.pending == 0 and stored_rows(store, "b") == JournalCounts(equity=1, fills=9)
    journal.decision(decision(0))
    journal.event(fill(0))
    assert journal.flush() == JournalCounts(decisions=1, events=1)
    assert journal.flush() == JournalCounts()
    journal.equity(T0 + MIN, 2.0)
    assert journal.close() == JournalCounts(equity=2, decisions=1, events=1, fills=9)
    assert journal.close() == journal.written  # closing again changes nothing
    (info,) = RunJournalReader(store).runs()
    assert (info.run_id, info.status, info.meta) == (
        "b",
        "closed",
        {"strategy": "sma_cross", "days": 30},
    )
    assert info.rows == JournalCounts(equity=2, decisions=1, events=1, fills=9)
    assert (info.first, info.last) == (T0, T0 + 8 * MIN)
    with pytest.raises(RuntimeError, match="closed"):
        journal.fill(fill(1))


def _record_then_fail(store: DuckDBStore, run_id: str) -> None:
    with RunJournal(store, run_id) as journal:
        journal.fill(fill(3, "ETH/USDT"))
        raise ZeroDivisionError


def test_runs_are_kept_apart_listed_filtered_and_deleted(store: DuckDBStore) -> None:
    with RunJournal(store, "first") as a:
        for i in range(5):
            a.equity(T0 + i * MIN, float(i))
    with pytest.raises(ZeroDivisionError):
        _record_then_fail(store, "second")
    generated = RunJournal(store)  # a fresh random id, still open
    reader = RunJournalReader(store)
    assert [(r.run_id, r.status) for r in reader.runs()] == [
        ("first", "closed"),
        ("second", "failed"),  # the rows recorded before the exception are kept
        (generated.run_id, "open"),
    ]
    assert reader.fills_frame("second")["symbol"].tolist() == ["ETH/USDT"]
    assert reader.fills_frame("first").empty and reader.equity_frame("second").empty
    window = reader.equity_frame("first", since=T0 + MIN, until=T0 + 3 * MIN)
    assert window["equity"].tolist() == [1.0, 2.0]
    assert reader.delete_run("first") == JournalCounts(equity=5)
    assert [r.run_id for r in reader.runs()] == ["second", generated.run_id]
    assert reader.equity_frame("first").empty
    with pytest.raises(KeyError, match=r"no run 'first'.*second"):
        reader.run("first")


def test_resume_appends_and_a_duplicate_id_is_refused(store: DuckDBStore) -> None:
    with RunJournal(store, "r") as journal:
        journal.decision(decision(0))
        journal.equity(T0, 1.0)
    with pytest.raises(ValueError, match=r"already in the journal.*resume=True"):
        RunJournal(store, "r")
    with RunJournal(store, "r", resume=True) as journal:
        assert journal.runs()[0].status == "open"
        journal.decision(decision(1))
    frame = RunJournalReader(store).decisions_frame("r")
    assert frame["bar_index"].tolist() == [0, 1]
    seqs = duckdb_values(store, "SELECT seq FROM journal_decisions ORDER BY seq")
    assert seqs == [0, 1]


def duckdb_values(store: DuckDBStore, sql: str) -> list[Any]:
    with store.transaction() as con:
        return [r[0] for r in con.execute(sql).fetchall()]


# -- failures -------------------------------------------------------------------------------
def test_a_failed_batch_writes_nothing_and_stays_pending(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = RunJournal(store, "atomic", batch_size=100)
    journal.equity(T0, 1.0)
    journal.decision(decision(0))
    journal.fill(fill(0))
    real = rj._insert

    def failing(con: Any, table: str, *args: Any) -> None:
        if table == "journal_fills":  # after equity and decisions went in
            raise duckdb.IOException("disk full")
        real(con, table, *args)

    monkeypatch.setattr(rj, "_insert", failing)
    with pytest.raises(OperationalError, match=r"writing 3 rows.*nothing of this batch"):
        journal.flush()
    assert journal.pending == 3 and stored_rows(store, "atomic").total == 0
    monkeypatch.setattr(rj, "_insert", real)
    assert journal.flush() == JournalCounts(equity=1, decisions=1, fills=1)
    assert stored_rows(store, "atomic") == JournalCounts(equity=1, decisions=1, fills=1)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([("timestamp", T0)], "must be a mapping"),
        ({1: "x"}, "keys must be str"),
        ({"timestamp": float(T0)}, "int of UTC milliseconds"),
        ({"timestamp": True}, "int of UTC milliseconds"),
        ({"timestamp": 2**63}, "out of range"),
        ({"timestamp": T0, "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}, "ints of UTC ms"),
        ({"timestamp": T0, "at": pd.Timestamp("2024-01-01", tz="UTC")}, "not JSON data"),
        ({"timestamp": T0, "obj": object()}, "cannot be journaled"),
    ],
)
def test_bad_records_are_refused_when_recorded(
    store: DuckDBStore, record: Any, message: str
) -> None:
    journal = RunJournal(store, "bad", batch_size=1)
    with pytest.raises((TypeError, ValueError), match=message):
        journal.event(record)
    assert journal.pending == 0 and stored_rows(store, "bad").total == 0
    with pytest.raises(TypeError, match="must be a number"):
        journal.equity(T0, "1.0")  # type: ignore[arg-type]


def test_bad_arguments_are_refused(store: DuckDBStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        RunJournal(store, batch_size=0)
    with pytest.raises(ValueError, match="run_id"):
        RunJournal(store, "  ")
    with pytest.raises(TypeError, match="DuckDBStore"):
        RunJournal(str(tmp_path), "x")  # type: ignore[arg-type]
    with pytest.raises(OperationalError, match=r"no run journal at .*runs.duckdb"):
        open_journal_store(tmp_path / "nowhere", read_only=True)


def test_read_only_stores_read_and_refuse_writing(tmp_path: Path) -> None:
    DuckDBStore(tmp_path / "market.duckdb").close()  # a store that never held a run
    with DuckDBStore(tmp_path / "market.duckdb", read_only=True) as store:
        reader = RunJournalReader(store)
        assert reader.runs() == [] and reader.equity_frame("x").empty
        assert reader.events_frame("x").empty
        with pytest.raises(OperationalError, match="read-only"):
            RunJournal(store, "x")
    with open_journal_store(tmp_path) as store, RunJournal(store, "kept") as journal:
        journal.equity(T0, 5.0)
    assert (tmp_path / JOURNAL_FILE_NAME).exists()
    with open_journal_store(tmp_path, read_only=True) as store:
        assert RunJournalReader(store).equity_frame("kept")["equity"].tolist() == [5.0]


def test_a_newer_journal_schema_is_refused(store: DuckDBStore) -> None:
    RunJournal(store, "x").close()
    with store.transaction() as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'run_journal_version'")
    with pytest.raises(OperationalError, match=r"schema version 99.*upgrade pivotal"):
        RunJournal(store, "y")


def test_dropping_an_unclosed_journal_says_how_many_rows_were_lost(
    store: DuckDBStore, caplog: pytest.LogCaptureFixture
) -> None:
    journal = RunJournal(store, "dropped", batch_size=10)
    for i in range(9):
        journal.fill(fill(i))
    journal.equity(T0, 1.0)  # writes the first 10 rows
    for i in range(3):
        journal.fill(fill(i))
    with caplog.at_level(logging.WARNING, logger="pivotal.data.run_journal"):
        del journal
        gc.collect()
    assert "dropped without close(): 3 recorded rows were never written" in caplog.text
    assert stored_rows(store, "dropped") == JournalCounts(equity=1, fills=9)


# -- memory -------------------------------------------------------------------------------
def _journal_peak(store: DuckDBStore, run_id: str, steps: int, batch_size: int) -> int:
    """Peak traced Python memory (bytes) while journaling ``steps`` steps: an equity point
    and a decision every step, an event and a fill every 10th."""
    gc.collect()
    tracemalloc.start()
    try:
        with RunJournal(store, run_id, batch_size=batch_size) as journal:
            for i in range(steps):
                journal.equity(T0 + i * MIN, 10_000.0 + i)
                journal.decision(decision(i))
                if i % 10 == 0:
                    journal.event(fill(i))
                    journal.fill(fill(i))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_plateaus_however_long_the_run(store: DuckDBStore) -> None:
    """Bound: journaling 10x more rows (44,000 vs 4,400, batches of 500) peaks within 1.25x
    of the short run + 256 KiB, and both stay under 1 MiB of Python memory: what is held
    is one batch of encoded rows, never the run."""
    _journal_peak(store, "warm-up", 600, 500)  # first-use caches (imports, prepared SQL)
    short = _journal_peak(store, "short", 2_000, 500)
    long = _journal_peak(store, "long", 20_000, 500)
    assert stored_rows(store, "long").total == 44_000
    assert long <= 1.25 * short + 256 * 1024, (short, long)
    assert long < 2**20, long


# -- crash safety ---------------------------------------------------------------------------
_CHILD = """
import sys, time
from pivotal.data.run_journal import RunJournal, open_journal_store
mode, data_dir = sys.argv[1], sys.argv[2]
store = open_journal_store(data_dir)
journal = RunJournal(store, "crash", batch_size=100)
T0 = 1_700_000_000_000
i = 0
while True:  # the kernel's order: the step's decision, then its equity
    journal.decision({"timestamp": T0 + i * 60_000, "symbol": "BTC/USDT", "bar_index": i})
    journal.equity(T0 + i * 60_000, 1_000.0 + i)
    i += 1
    if mode == "fixed" and i == 125:  # 2 batches of 100 written, 50 rows pending
        print("ready", journal.written.total, journal.pending, flush=True)
        time.sleep(600)
    if mode == "busy" and i == 1_000:
        print("ready", flush=True)  # from here the child keeps writing until it is killed
"""


def _run_and_kill(tmp_path: Path, mode: str, *, after_s: float = 0.0) -> list[str]:
    """Start the child, wait for its "ready" line (and ``after_s`` more), SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line and line[0] == "ready", child.stderr.read() if child.stderr else ""
        time.sleep(after_s)  # lands the kill at an arbitrary point of the write loop
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return line


def test_a_killed_run_keeps_every_flushed_batch(tmp_path: Path) -> None:
    ready = _run_and_kill(tmp_path, "fixed")
    assert ready[1:] == ["200", "50"]  # what the child had written and had pending
    with open_journal_store(tmp_path, read_only=True) as store:
        reader = RunJournalReader(store)
        (info,) = reader.runs()
        assert info.status == "open"  # never closed
        assert info.rows == JournalCounts(equity=100, decisions=100)
        equity = reader.equity_frame("crash")
        assert equity["timestamp"].tolist() == [T0 + i * MIN for i in range(100)]
        assert reader.decisions_frame("crash")["bar_index"].tolist() == list(range(100))


def test_a_run_killed_while_writing_keeps_whole_batches_only(tmp_path: Path) -> None:
    _run_and_kill(tmp_path, "busy", after_s=0.3)
    with open_journal_store(tmp_path, read_only=True) as store:
        info = RunJournalReader(store).runs()[0]
        # each batch holds 50 equity points and 50 decisions: a torn batch would break this
        assert info.rows.equity == info.rows.decisions >= 1_000
        assert info.rows.total % 100 == 0
        equity = RunJournalReader(store).equity_frame("crash")
        assert equity["equity"].tolist() == [1_000.0 + i for i in range(info.rows.equity)]
