"""The store's streaming-append block: DuckDB's checkpoint vacuum is off inside it, back to
its previous setting after the outermost block, also when the block raises; the history
writer holds it while it writes and gives it back at close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.orchestrator.history_writer import HistoryWriter


def _vacuum_tasks(store: DuckDBStore) -> int:
    with store.transaction() as con:
        row = con.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()
    assert row is not None
    return int(row[0])


def test_the_vacuum_is_off_inside_and_restored_after(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        with store.transaction() as con:
            con.execute("SET max_vacuum_tasks = 37")
        with store.appending():
            assert _vacuum_tasks(store) == 0
            with store.appending():  # nested: still off
                assert _vacuum_tasks(store) == 0
            assert _vacuum_tasks(store) == 0
        assert _vacuum_tasks(store) == 37
        with pytest.raises(RuntimeError), store.appending():
            raise RuntimeError("boom")
        assert _vacuum_tasks(store) == 37


def _record(i: int) -> InferenceRecord:
    return InferenceRecord(
        symbol="BTC/USDT",
        timestamp=1_700_000_000_000 + i * 60_000,
        action="HOLD",
        confidence=0.5,
        decision={},
        outputs={},
        hidden={},
        tensors={"m": {"x": np.full((1, 4), i, dtype=np.float32)}},
        input={},
    )


def test_the_history_writer_holds_the_block_while_it_writes(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        before = _vacuum_tasks(store)
        assert before > 0
        writer = HistoryWriter(InferenceHistory(store), batch=2)
        writer.add(_record(0))
        assert _vacuum_tasks(store) == before  # nothing handed to the writer yet
        writer.add(_record(1))  # a batch: the writer is writing
        writer.settle()
        assert _vacuum_tasks(store) == 0
        writer.extend([_record(2), _record(3), _record(4)])
        writer.close()
        assert writer.written == 5
        assert _vacuum_tasks(store) == before
        writer.add(_record(5))  # a later batch takes the block again, close gives it back
        writer.close()
        assert _vacuum_tasks(store) == before
