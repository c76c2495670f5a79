"""The SQLite order journal: exact round trips, one transaction per append, survival of a
SIGKILL mid-loop, readers beside the writer, one writer only, clear errors for wrong files."""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pivotal.core.errors import DataError, OperationalError
from pivotal.core.journal import JournalEntry, NewEntry, OrderJournal
from pivotal.data.order_journal import (
    APPLICATION_ID,
    ORDER_JOURNAL_SCHEMA_VERSION,
    SessionInfo,
    SqliteOrderJournal,
)

T0 = 1_700_000_000_000


def entry(i: int, kind: str = "fill", cid: str | None = None, **data: object) -> NewEntry:
    return NewEntry(T0 + i, kind, {"i": i, **data}, cid, "BTC/USDT" if cid else None)


def test_round_trip_keeps_every_field_and_counts_seq_from_one(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "orders.sqlite"
    with SqliteOrderJournal(path) as journal:
        assert isinstance(journal, OrderJournal)
        assert journal.last_seq() == 0 and list(journal.entries()) == []
        written = [
            NewEntry(T0, "decision", {"score": math.nan, "up": math.inf, "xs": [1, 2.5, None]}),
            NewEntry(T0 + 1, "intent", {"request": {"symbol": "BTC/USDT"}}, "pv1", "BTC/USDT"),
            NewEntry(T0 + 2, "alert", {"level": "warn", "message": "é ✓", "n": np.int64(3)}),
            NewEntry(T0 + 3, "equity", {"equity": np.float64(1.5), "v": np.array([1, 2])}),
        ]
        assert journal.append(written) == [1, 2, 3, 4]
        assert journal.append([]) == []
        assert journal.last_seq() == 4
        got = list(journal.entries())
    assert [e.seq for e in got] == [1, 2, 3, 4]
    first = got[0]
    assert isinstance(first, JournalEntry) and first.kind == "decision" and first.ts == T0
    assert math.isnan(first.data["score"]) and first.data["up"] == math.inf
    assert first.data["xs"] == [1, 2.5, None]
    assert (got[1].client_order_id, got[1].symbol) == ("pv1", "BTC/USDT")
    assert got[2].data == {"level": "warn", "message": "é ✓", "n": 3}
    assert got[3].data == {"equity": 1.5, "v": [1, 2]}
    with SqliteOrderJournal.open_readonly(path) as again:  # the file holds it, not a cache
        assert [(e.seq, e.kind, e.client_order_id) for e in again.entries()] == [
            (e.seq, e.kind, e.client_order_id) for e in got
        ]


def test_filters_pages_and_sessions(tmp_path: Path) -> None:
    with SqliteOrderJournal(tmp_path / "o.sqlite") as journal:
        journal.append([entry(0, "alert")])  # before any session: no session
        assert journal.open_session("s1", {"mode": "paper", "balances": {"USDT": 10}}, ts=T0) == 2
        batch = [entry(i, "fill" if i % 3 else "order", cid=f"pv{i % 5}") for i in range(4_500)]
        seqs = journal.append(batch)
        assert seqs == list(range(3, 4_503))
        assert journal.end_session(ts=T0 + 9, reason="done") == 4_503
        assert journal.end_session() is None and journal.session is None
        journal.open_session("s2", {"event": "restart"}, ts=T0 + 10)
        journal.append([entry(9_999, "kill")])

        everything = list(journal.entries())  # crosses the 2,000-row pages
        assert [e.seq for e in everything] == list(range(1, 4_506))
        assert [e.seq for e in journal.entries(since_seq=4_000)] == list(range(4_001, 4_506))
        orders = list(journal.entries(kinds=["order"]))
        assert len(orders) == 1_500 and {e.kind for e in orders} == {"order"}
        assert list(journal.entries(kinds=[])) == []
        pv2 = list(journal.entries(client_order_id="pv2", kinds=("fill",)))
        assert [e.data["i"] for e in pv2] == [i for i in range(4_500) if i % 5 == 2 and i % 3]
        s1 = journal.session_entries("s1")
        assert len(s1) == 4_502 and s1[0].kind == "session" and s1[-1].data["event"] == "stop"
        assert [e.kind for e in journal.session_entries("s2")] == ["session", "kill"]
        with pytest.raises(ValueError, match="not among"):
            journal.entries(kinds=["fills"])
        (one, two) = journal.sessions()
    assert one == SessionInfo(
        "s1", 2, 4_503, T0, T0 + 4_499, 4_502,
        {"event": "start", "mode": "paper", "balances": {"USDT": 10}, "session": "s1"}, True,
    )  # fmt: skip
    assert (two.session_id, two.first_seq, two.entries, two.stopped) == ("s2", 4_504, 2, False)
    assert two.meta["event"] == "restart"


def _boom_trigger(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON entries WHEN NEW.client_order_id = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    con.commit()
    con.close()


def test_a_batch_that_fails_midway_writes_nothing_and_the_journal_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    with SqliteOrderJournal(path) as journal:
        assert journal.append([entry(0), entry(1)]) == [1, 2]
    _boom_trigger(path)  # the third row of the next batch fails inside the transaction
    with SqliteOrderJournal(path) as journal:
        with pytest.raises(OperationalError, match="nothing of this batch was written"):
            journal.append([entry(2, cid="a"), entry(3, cid="b"), entry(4, cid="boom")])
        assert journal.last_seq() == 2
        assert [e.seq for e in journal.entries()] == [1, 2]
        # a value that is not JSON data is refused before anything is written
        bad = NewEntry(T0, "alert", {"at": dt.datetime.now()})
        with pytest.raises(TypeError, match=r"journal entry 1 \(alert\).*datetime"):
            journal.append([entry(5, "alert"), bad])
        with pytest.raises(TypeError, match="NewEntry"):
            journal.append([{"ts": 1, "kind": "alert"}])  # type: ignore[list-item]
        assert journal.last_seq() == 2
        assert journal.append([entry(6, cid="c")]) == [3]  # no gap after a rolled back batch


_CHILD = """
import sys
from pivotal.core.journal import NewEntry
from pivotal.data.order_journal import SqliteOrderJournal

journal = SqliteOrderJournal(sys.argv[1])
journal.open_session("crash", ts=0)
batch = 0
while True:
    seqs = journal.append(
        [NewEntry(batch, "fill", {"batch": batch, "part": p, "pad": "x" * 300}, f"pv{batch}")
         for p in range(3)]
    )
    print(batch, *seqs, flush=True)
    batch += 1
"""


def test_a_writer_killed_while_appending_keeps_every_returned_batch_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    returned: dict[int, list[int]] = {}
    try:
        assert child.stdout is not None
        while len(returned) < 1_500:  # kill it mid-loop, between or inside appends
            line = child.stdout.readline().split()
            assert line, child.stderr.read() if child.stderr else ""
            returned[int(line[0])] = [int(s) for s in line[1:]]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with SqliteOrderJournal(path) as journal:  # the dead writer's lock is gone
        stored = list(journal.entries(kinds=["fill"]))
        by_seq = {e.seq: e for e in stored}
        for batch, seqs in returned.items():  # every append that returned is there
            assert [by_seq[s].data["batch"] for s in seqs] == [batch] * 3
        parts = Counter(e.data["batch"] for e in stored)
        assert set(parts.values()) == {3}  # whole batches only, none torn
        assert sorted(parts) == list(range(len(parts))) and len(parts) >= len(returned)
        assert [e.seq for e in stored] == list(range(2, 2 + len(stored)))
        nxt = journal.last_seq() + 1
        assert journal.append([entry(0)]) == [nxt]


def test_a_reader_reads_while_the_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    writer = SqliteOrderJournal(path)
    writer.append([entry(0)])
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(1, 1_501):
                writer.append([entry(i, cid=f"pv{i}"), entry(i, "order", cid=f"pv{i}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    with SqliteOrderJournal.open_readonly(path) as reader:
        thread.start()
        seen: list[int] = []
        while not done.is_set() or not seen or seen[-1] < 3_001:
            rows = list(reader.entries())
            seqs = [e.seq for e in rows]
            assert seqs == list(range(1, len(rows) + 1))  # a consistent prefix, never torn
            assert len(rows) % 2 == 1  # whole batches of two after the first entry
            seen.append(reader.last_seq())
        thread.join()
        assert not errors and seen == sorted(seen) and len(set(seen)) > 2
        with pytest.raises(OperationalError, match="read-only"):
            reader.append([entry(1)])
        with pytest.raises(OperationalError, match="read-only"):
            reader.open_session("x")
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        writer.last_seq()


def test_one_writer_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with SqliteOrderJournal(path):
        with pytest.raises(OperationalError, match=rf"another process \(pid {os.getpid()}\)"):
            SqliteOrderJournal(path)
        with SqliteOrderJournal.open_readonly(path) as reader:
            assert reader.last_seq() == 0
    with SqliteOrderJournal(path, synchronous="full") as again:  # released at close
        assert again.append([entry(0)]) == [1]
        assert again._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert again._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError, match="synchronous"):
        SqliteOrderJournal(path, synchronous="off")  # type: ignore[arg-type]


def test_files_that_are_not_order_journals_are_refused_by_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, this is not a database " * 100)
    with pytest.raises(DataError, match=rf"{text} is not a pivotal order journal.*\.journal"):
        SqliteOrderJournal(text)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE candles (ts INTEGER)")
    con.commit()
    con.close()
    for opener in (SqliteOrderJournal, SqliteOrderJournal.open_readonly):
        with pytest.raises(
            DataError, match=r"other.sqlite is not a pivotal order journal.*candles"
        ):
            opener(other)
    assert text.read_text().startswith("hello")  # nothing was changed

    newer = tmp_path / "newer.sqlite"
    SqliteOrderJournal(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE journal_meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(DataError, match=r"schema version 99, newer .*\(1\); upgrade pivotal"):
        SqliteOrderJournal.open_readonly(newer)
    con = sqlite3.connect(newer)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.execute(f"UPDATE journal_meta SET value = '{ORDER_JOURNAL_SCHEMA_VERSION}'")
    con.execute("UPDATE journal_meta SET value = 'pivotal-order-journal' WHERE key = 'format'")
    con.execute("PRAGMA application_id = 7")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="application_id 0x7"):
        SqliteOrderJournal(newer)

    missing = tmp_path / "nope.sqlite"
    with pytest.raises(OperationalError, match=r"no order journal at .*nope\.sqlite"):
        SqliteOrderJournal.open_readonly(missing)
    with pytest.raises(OperationalError, match="no order journal"):
        SqliteOrderJournal(missing, create=False)
    assert not missing.exists()


def test_damaged_entry_data_names_the_seq(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with SqliteOrderJournal(path) as journal:
        journal.append([entry(0), entry(1)])
    con = sqlite3.connect(path)
    con.execute("UPDATE entries SET data = '{oops' WHERE seq = 2")
    con.commit()
    con.close()
    with (
        SqliteOrderJournal.open_readonly(path) as journal,
        pytest.raises(DataError, match="entry 2 holds data that is not JSON"),
    ):
        list(journal.entries())


def test_open_session_validates_and_restores_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with SqliteOrderJournal(path) as journal:
        with pytest.raises(ValueError, match="non-empty"):
            journal.open_session(" ")
        before = time.time_ns() // 1_000_000
        journal.open_session("a")
        (start,) = journal.session_entries("a")
        assert start.ts >= before and journal.session == "a"
        with pytest.raises(TypeError, match="cannot be journaled"):
            journal.open_session("b", {"bad": object()})
        assert journal.session == "a"  # unchanged: nothing was journaled for "b"
        assert [s.session_id for s in journal.sessions()] == ["a"]


def test_an_empty_file_read_only_is_a_journal_not_yet_created(tmp_path: Path) -> None:
    """A reader that opens a journal while its node creates it is told to try again."""
    empty = tmp_path / "run.paper.journal"
    sqlite3.connect(empty).close()
    with pytest.raises(DataError, match=r"the file is empty.*creating it"):
        SqliteOrderJournal.open_readonly(empty)
    SqliteOrderJournal(empty).close()  # a writer creates it there
    SqliteOrderJournal.open_readonly(empty).close()
