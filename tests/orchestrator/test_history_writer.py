"""The history writer: batched writes on its own thread, back-pressure, and what a crash or a
refused batch loses (at most the unflushed batches, said with a count)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.orchestrator.history_writer import HistoryWriter

T0 = 1_700_000_000_000
MIN = 60_000


def _record(i: int) -> InferenceRecord:
    rng = np.random.default_rng(i)
    return InferenceRecord(
        symbol="BTC/USDT",
        timestamp=T0 + i * MIN,
        action=("BUY", "SELL", "HOLD")[i % 3],
        confidence=0.5,
        decision={"probabilities": [0.5, 0.3, 0.2], "gate": "vote"},
        outputs={"cnn": {"model_type": "cnn", "confidence": 0.5, "action": "BUY"}},
        hidden={"cnn": {"h": rng.normal(size=(1, 4)).astype(np.float32)}},
        tensors={"cnn": {"x": rng.normal(size=(1, 2, 5, 3)).astype(np.float32)}},
    )


class _SlowHistory:
    """Records the batches it is given; each append waits for ``gate`` first (when set),
    and the batches listed in ``refuse`` (by number) raise."""

    def __init__(self, *, gate: threading.Event | None = None, refuse: Sequence[int] = ()):
        self.gate = gate
        self.refuse = set(refuse)
        self.batches: list[list[InferenceRecord]] = []
        self.threads: set[str] = set()
        self.entered = threading.Semaphore(0)

    def append(self, records: Sequence[InferenceRecord]) -> int:
        self.threads.add(threading.current_thread().name)
        self.entered.release()
        if self.gate is not None and not self.gate.wait(timeout=60):
            raise RuntimeError("the test never opened the gate")
        number = len(self.batches)
        self.batches.append(list(records))
        if number in self.refuse:
            raise OSError("disk full")
        return len(records)


def test_steps_are_written_in_batches_on_the_writer_thread(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "h.duckdb") as store:
        history = InferenceHistory(store)
        writer = HistoryWriter(history, batch=4)
        records = [_record(i) for i in range(10)]
        for r in records:
            writer.add(r)
        assert writer.stats.pending <= 10
        assert writer.flush() + 8 >= 10  # the partial batch at least, by this call
        assert writer.written == 10 and writer.stats.pending == 0 and writer.stats.lost == 0
        stored = history.query(symbol="BTC/USDT")
        assert [r.timestamp for r in stored] == [r.timestamp for r in records]
        np.testing.assert_array_equal(stored[3].tensors["cnn"]["x"], records[3].tensors["cnn"]["x"])
        writer.close()
        writer.add(_record(10))  # a closed writer starts its thread again
        writer.close()
        assert history.count() == 11


def test_the_decision_thread_hands_over_and_waits_only_for_back_pressure() -> None:
    gate = threading.Event()
    fake = _SlowHistory(gate=gate)
    writer = HistoryWriter(fake, batch=3, max_pending=1)  # type: ignore[arg-type]
    for i in range(3):
        writer.add(_record(i))  # the third hands the first batch over
    assert fake.entered.acquire(timeout=30)  # the writer is inside append, blocked
    for i in range(3, 5):
        writer.add(_record(i))  # collecting the next batch does not wait
    assert writer.stats.waits == 0 and writer.stats.pending == 5
    # the next full batch must wait for the first (max_pending=1): open the gate meanwhile
    opener = threading.Timer(0.2, gate.set)
    opener.start()
    try:
        writer.add(_record(5))
    finally:
        opener.cancel()
        gate.set()
    assert writer.stats.waits == 1 and writer.stats.waited_s > 0
    writer.close()
    assert [len(b) for b in fake.batches] == [3, 3]
    assert fake.threads == {"history-writer"}


def test_settle_waits_for_handed_batches_and_keeps_the_collecting_one() -> None:
    gate = threading.Event()
    fake = _SlowHistory(gate=gate)
    writer = HistoryWriter(fake, batch=3, max_pending=2)  # type: ignore[arg-type]
    for i in range(5):
        writer.add(_record(i))  # one batch handed over (blocked in append), two collecting
    assert fake.entered.acquire(timeout=30)
    opener = threading.Timer(0.2, gate.set)
    opener.start()
    try:
        writer.settle()
    finally:
        opener.cancel()
        gate.set()
    assert writer.written == 3 and writer.stats.pending == 2  # nothing handed over early
    assert [len(b) for b in fake.batches] == [3]
    writer.close()
    assert [len(b) for b in fake.batches] == [3, 2]


def test_unflushed_steps_never_exceed_the_collecting_and_handed_batches() -> None:
    gate = threading.Event()
    fake = _SlowHistory(gate=gate)
    writer = HistoryWriter(fake, batch=4, max_pending=2)  # type: ignore[arg-type]
    opener = threading.Timer(0.3, gate.set)
    opener.start()
    try:
        for i in range(40):
            writer.add(_record(i))
            assert writer.stats.pending <= 4 * (1 + 2)
    finally:
        opener.cancel()
        gate.set()
    writer.close()
    assert writer.written == 40


def test_a_refused_batch_is_counted_and_logged_and_the_next_ones_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _SlowHistory(refuse=[1])
    writer = HistoryWriter(fake, batch=2)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="pivotal.orchestrator.history_writer"):
        for i in range(7):
            writer.add(_record(i))
        writer.close()
    stats = writer.stats
    assert (stats.written, stats.lost, stats.pending) == (5, 2, 0)
    assert "a batch of 2 steps" in caplog.text and "disk full" in caplog.text
    assert "2 steps of the inference history were lost" in caplog.text


def test_a_writer_that_was_never_closed_says_how_many_steps_it_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _SlowHistory()
    writer = HistoryWriter(fake, batch=5, name="crashed-writer")  # type: ignore[arg-type]
    for i in range(7):  # one batch handed over, two steps still collecting
        writer.add(_record(i))
    writer.flush()  # the first 7 are written
    for i in range(7, 10):
        writer.add(_record(i))
    counts: Any = writer._counts  # kept to read the count after the writer is gone
    with caplog.at_level(logging.ERROR, logger="pivotal.orchestrator.history_writer"):
        del writer  # the run died without finish(): nothing flushes the last three
        gc.collect()
    assert "crashed-writer: 3 steps of the inference history were never written" in caplog.text
    assert counts.lost == 3 and counts.written == 7


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        HistoryWriter(_SlowHistory(), batch=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pending"):
        HistoryWriter(_SlowHistory(), max_pending=0)  # type: ignore[arg-type]
