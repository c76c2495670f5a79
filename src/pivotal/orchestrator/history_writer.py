"""Batched inference-history writes on a writer thread.

The orchestrator builds each step's :class:`~pivotal.data.inference_history.InferenceRecord`
on its decision thread (:func:`~pivotal.orchestrator.records.record_of_step`: references to
the step's arrays and its JSON header, encoded while the step's data is fresh in the cache)
and gives it to :meth:`HistoryWriter.add`. Every ``batch`` records are handed to a writer
thread as one batch, which :meth:`InferenceHistory.append` turns into byte planes,
compresses (without the GIL) and inserts in one transaction; the decision thread never
waits for that unless ``max_pending`` batches are already waiting to be written
(back-pressure, counted in :attr:`HistoryWriter.stats`).

**What a crash loses.** A step is *flushed* once its batch is committed. At any time at most
the batch being collected plus ``max_pending`` handed-over batches are unflushed
(``pending``); a process that dies loses those and no more. When a batch cannot be written
(the store refuses it), its steps are counted as lost and logged with their span, and the
writer goes on with the next batch (trading does not stop for the history). A writer that
was never closed (the run died before ``close``) logs, when it is dropped or at interpreter
exit, how many steps it held unwritten (those are lost; batches already handed over are
still written by the thread, unless the interpreter ends first). :meth:`flush` writes
everything and waits; :meth:`close` flushes and stops the thread.

While it writes, the writer holds the store's streaming-append block
(:meth:`~pivotal.data.duckdb_store.DuckDBStore.appending`: DuckDB's checkpoint vacuum off,
so a growing table is not rewritten again and again); :meth:`close` ends it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass

from pivotal.data.inference_history import InferenceHistory, InferenceRecord
from pivotal.orchestrator.serial_worker import SerialWorker

__all__ = ["HistoryStats", "HistoryWriter"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 512


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """Steps ``written`` (committed), ``lost`` (a batch the store refused, or unwritten at
    exit), ``pending`` (not flushed yet); ``waits``: times :meth:`HistoryWriter.add` waited
    for the writer (back-pressure), ``waited_s`` seconds in all (``perf_counter``)."""

    written: int
    lost: int
    pending: int
    waits: int
    waited_s: float


class _Counts:
    """Counters shared with the writer thread and the exit hook (under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written = 0
        self.lost = 0
        self.pending = 0  # added, not yet committed or lost
        self.buffered = 0  # of which not handed to the writer thread yet


def _write(history: InferenceHistory, records: list[InferenceRecord], counts: _Counts) -> int:
    """The writer thread's job: one batch in one transaction; a refused batch is lost."""
    try:
        written = history.append(records)
    except Exception as exc:  # the store refused it: count, say so, go on with the next
        with counts.lock:
            counts.lost += len(records)
            counts.pending -= len(records)
        logger.error(
            "inference history: a batch of %d steps (%s @ %d .. %s @ %d) was not written and "
            "is lost: %s",
            len(records),
            records[0].symbol,
            records[0].timestamp,
            records[-1].symbol,
            records[-1].timestamp,
            exc,
        )
        return 0
    with counts.lock:
        counts.written += written
        counts.pending -= len(records)
    return written


def _report_unclosed(counts: _Counts, name: str) -> None:
    """A writer dropped (or the interpreter exiting) with steps it never handed over: those
    are lost; batches already handed over are still being written (or, at exit, may not
    be)."""
    with counts.lock:
        unwritten, handed = counts.buffered, counts.pending - counts.buffered
        if unwritten <= 0 and handed <= 0:
            return
        counts.lost += unwritten
        counts.pending -= unwritten
        counts.buffered = 0
    logger.error(
        "%s: %d steps of the inference history were never written (the run ended without "
        "closing the writer)%s",
        name,
        unwritten,
        f"; {handed} more were still being written" if handed else "",
    )


class HistoryWriter:
    """Writes ``history`` records in batches of ``batch`` on a writer thread (module
    docstring); at most ``max_pending`` full batches wait for the writer."""

    def __init__(
        self,
        history: InferenceHistory,
        *,
        batch: int = DEFAULT_BATCH,
        max_pending: int = 1,
        name: str = "history-writer",
    ) -> None:
        for label, value in (("batch", batch), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        self.history = history
        self.batch = batch
        self.max_pending = max_pending
        self.name = name
        self._buffer: list[InferenceRecord] = []
        self._handed: deque[Future[int]] = deque()
        self._counts = _Counts()
        self._waits = 0
        self._waited = 0.0
        self._worker = SerialWorker(name)
        self._appending: ExitStack | None = None  # the store's appending() block, while writing
        weakref.finalize(self, _report_unclosed, self._counts, name)

    @property
    def written(self) -> int:
        """Steps committed so far."""
        with self._counts.lock:
            return self._counts.written

    @property
    def stats(self) -> HistoryStats:
        with self._counts.lock:
            counts = self._counts
            return HistoryStats(
                counts.written, counts.lost, counts.pending, self._waits, self._waited
            )

    def add(self, record: InferenceRecord) -> None:
        """Queue one step's record; hands a full batch to the writer."""
        self._buffer.append(record)
        with self._counts.lock:
            self._counts.pending += 1
            self._counts.buffered += 1
        if len(self._buffer) >= self.batch:
            self._hand_over()

    def extend(self, records: Sequence[InferenceRecord]) -> None:
        """:meth:`add` each of ``records``."""
        for record in records:
            self.add(record)

    def flush(self) -> int:
        """Hand over the partial batch and wait until everything queued is written; returns
        the steps committed by this call (lost batches not counted)."""
        self._hand_over()
        written = 0
        while self._handed:
            written += self._handed.popleft().result()
        return written

    def settle(self) -> None:
        """Wait until the batches already handed to the writer are written (the batch being
        collected stays; nothing is handed over early)."""
        for handed in list(self._handed):
            handed.result()

    def close(self) -> int:
        """:meth:`flush`, then stop the writer thread (a later :meth:`add` starts it again);
        returns the steps this call committed. Logs the steps lost so far, if any."""
        written = self.flush()
        self._worker.close()
        if self._appending is not None:  # vacuum back on: later deletes are reclaimed
            self._appending.close()
            self._appending = None
        stats = self.stats
        if stats.lost:
            logger.error("%s: %d steps of the inference history were lost", self.name, stats.lost)
        return written

    def _hand_over(self) -> None:
        if not self._buffer:
            return
        while len(self._handed) >= self.max_pending:
            oldest = self._handed[0]
            if not oldest.done():
                self._waits += 1
                started = time.perf_counter()
                oldest.result()
                self._waited += time.perf_counter() - started
            self._handed.popleft()
        records, self._buffer = self._buffer, []
        history, counts = self.history, self._counts
        if self._appending is None and hasattr(history, "appending"):
            self._appending = ExitStack()
            self._appending.enter_context(history.appending())
        with counts.lock:
            counts.buffered = 0
        self._handed.append(self._worker.submit(lambda: _write(history, records, counts)))
        while self._handed and self._handed[0].done():  # forget finished batches
            self._handed.popleft()
