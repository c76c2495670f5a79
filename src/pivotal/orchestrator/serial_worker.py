"""One background thread that runs submitted jobs one after another, in submission order.

The learning loop's candidate training and the inference history's batched writes run on a
:class:`SerialWorker` each, so the orchestrator's decision thread only hands work over and
later collects the result (:class:`concurrent.futures.Future`). Jobs run strictly in FIFO
order on one thread: a job may rely on everything an earlier job did (the learning loop's
training copy evolves job after job, exactly as it would on one thread).

The thread is a daemon started on the first :meth:`SerialWorker.submit`; :meth:`close` lets
it finish the queued jobs and stops it (a later submit starts a new thread). A worker that
is never closed stops when it is garbage-collected or at interpreter exit (its queued jobs
may then not run).
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["SerialWorker"]

T = TypeVar("T")

_STOP = object()


def _serve(jobs: queue.SimpleQueue[Any]) -> None:
    """The thread's loop: run each ``(future, fn)`` until the stop marker."""
    while True:
        item = jobs.get()
        if item is _STOP:
            return
        future, fn = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = fn()
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)
        else:
            future.set_result(result)


def _stop(jobs: queue.SimpleQueue[Any]) -> None:
    jobs.put(_STOP)


class SerialWorker:
    """A single daemon thread named ``name`` running submitted callables in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def started(self) -> bool:
        """Whether a thread is running (started by a submit, stopped by :meth:`close`)."""
        return self._thread is not None

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` (no arguments); its result or exception lands in the returned
        future."""
        with self._lock:
            if self._thread is None:
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=_serve, args=(self._jobs,), name=self.name, daemon=True
                )
                self._thread.start()
                self._finalizer = weakref.finalize(self, _stop, self._jobs)
            future: Future[T] = Future()
            self._jobs.put((future, fn))
            return future

    def close(self, timeout: float | None = None) -> None:
        """Run the jobs already queued, then stop the thread (waits up to ``timeout`` s, all
        of them when None). Idempotent."""
        with self._lock:
            thread, finalizer = self._thread, self._finalizer
            self._thread = self._finalizer = None
        if thread is None or finalizer is None:
            return
        finalizer()  # puts the stop marker once
        if thread is not threading.current_thread():
            thread.join(timeout)
