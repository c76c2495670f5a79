"""One dedicated daemon thread per expert, so that a call can be awaited with a timeout.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined when the interpreter
exits, so one hung model call would block shutdown forever, and a hung call would also hold
one of the pool's threads for good. A :class:`CallWorker` is a daemon thread that runs one
call at a time; when a call overruns its timeout the caller :meth:`~CallWorker.abandon` s the
worker (never joins it) and starts a new one for the next call. The abandoned thread ends as
soon as the hung call returns, and its late result is dropped.

The hand-off uses two bare locks as binary semaphores (``_go``: a job is ready; ``_done``:
the result is ready): the cheapest primitive ``threading`` offers, a few microseconds per
call on top of the two thread switches.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

__all__ = ["CallWorker", "InlineCall"]


class CallWorker:
    """A daemon thread that runs ``fn(arg)`` calls submitted one at a time.

    Use: :meth:`submit`, then :meth:`wait` (``True`` when the call came back within the
    timeout), then read :attr:`result` / :attr:`error` / :attr:`elapsed_s`. A worker whose
    call overran is :meth:`abandon` ed; :meth:`close` ends an idle one.
    """

    __slots__ = (
        "_arg",
        "_closed",
        "_done",
        "_fn",
        "_go",
        "_thread",
        "elapsed_s",
        "error",
        "name",
        "result",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._fn: Callable[[Any], Any] | None = None
        self._arg: Any = None
        self._closed = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed_s = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"pivotal-{name}", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ident(self) -> int | None:
        """The worker thread's id."""
        return self._thread.ident

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            fn, arg = self._fn, self._arg
            if self._closed or fn is None:
                return
            self._fn = self._arg = None
            start = perf_counter()
            try:
                self.result = fn(arg)
                self.error = None
            except BaseException as exc:  # the caller decides what a failure means
                self.result = None
                self.error = exc
            self.elapsed_s = perf_counter() - start
            if self._closed:  # abandoned while the call ran: nobody waits for it
                return
            self._done.release()

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Start ``fn(arg)`` on the worker thread; the previous call must have been awaited."""
        if self._closed:
            raise RuntimeError(f"worker {self.name} is closed; start a new one")
        self._fn = fn
        self._arg = arg
        self._go.release()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the submitted call; ``True`` when it returned
        (or raised) in time."""
        return self._done.acquire(timeout=max(timeout_s, 0.0))

    def abandon(self) -> None:
        """Give up on the running call: the thread ends when the call returns, and drops its
        result. Never blocks."""
        self._closed = True
        # Wakes the thread if it is idle; harmless while it is busy. RuntimeError: the job
        # was not picked up yet (the lock is free), and the thread will see _closed first.
        with contextlib.suppress(RuntimeError):
            self._go.release()

    close = abandon


class InlineCall:
    """A :class:`CallWorker` stand-in that runs the call on the caller's thread.

    For replays: no thread hand-off (two thread switches per expert call), and nothing that
    depends on wall time, so a run is deterministic. The price: a hung model hangs the
    replay (no timeout can interrupt a call on the caller's own thread); its latency is still
    measured and :meth:`wait` always reports the call as returned.
    """

    __slots__ = ("elapsed_s", "error", "name", "result")

    closed = False
    ident = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed_s = 0.0

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Run ``fn(arg)`` now; keep its result or the exception it raised."""
        start = perf_counter()
        try:
            self.result = fn(arg)
            self.error = None
        except Exception as exc:  # the coordinator decides what a failure means
            self.result = None
            self.error = exc
        self.elapsed_s = perf_counter() - start

    def wait(self, timeout_s: float) -> bool:
        return True

    def abandon(self) -> None:
        pass

    close = abandon
