"""The run recorder port: where a run's equity, decisions, events and fills go.

The kernel (:mod:`pivotal.runtime.kernel`) hands every record to a :class:`RunRecorder`
as it happens, oldest first, on the loop's one thread. Records are plain mappings of
JSON-friendly values (str, int, float, bool, None): the dicts of
:func:`pivotal.trading.execution.broker_event_record` / ``alert_record`` for ``event``, a
fill's record for ``fill``, and ``{"time": t_ms, "symbol": ..., "bar_index": ...,
"actions": n, "source": name}`` for ``decision``. Times are UTC epoch milliseconds.

:class:`MemoryRecorder` keeps everything in lists (tests, backtests that return a result
object); the store-backed recorder (``pivotal.data.run_journal.RunJournal``) buffers rows
and writes them in batches. Implementations are structural: nothing needs to import this
module to be a recorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["MemoryRecorder", "NullRecorder", "RunRecorder", "TeeRecorder"]


@runtime_checkable
class RunRecorder(Protocol):
    """Receives a run's records as they happen (one thread; no call re-enters the kernel).

    - ``equity(t_ms, value)``: the account equity (quote currency) at close time ``t_ms``,
      after that close's decisions; at most one point per ``t_ms``, in increasing time.
    - ``decision(record)``: one call of the decision source (timestamp, symbol, bar index, actions).
    - ``event(record)``: an order event, fill or risk alert record (execution's records).
    - ``fill(record)``: a fill (also reported through ``event``, as execution records it).
    - ``flush()``: make everything recorded so far durable (a no-op in memory).
    - ``close()``: flush and release; no call may follow.
    """

    def equity(self, t_ms: int, value: float) -> None: ...

    def decision(self, record: Mapping[str, Any]) -> None: ...

    def event(self, record: Mapping[str, Any]) -> None: ...

    def fill(self, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MemoryRecorder:
    """Keeps every record in memory, in arrival order (tests and backtest results)."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[float] = []
        self.decisions: list[Mapping[str, Any]] = []
        self.events: list[Mapping[str, Any]] = []
        self.fills: list[Mapping[str, Any]] = []
        self.closed = False

    def equity(self, t_ms: int, value: float) -> None:
        self.times.append(int(t_ms))
        self.values.append(float(value))

    def decision(self, record: Mapping[str, Any]) -> None:
        self.decisions.append(record)

    def event(self, record: Mapping[str, Any]) -> None:
        self.events.append(record)

    def fill(self, record: Mapping[str, Any]) -> None:
        self.fills.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def equity_curve(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``(times, equity)``: the recorded points as arrays (UTC ms, quote currency)."""
        return np.asarray(self.times, dtype=np.int64), np.asarray(self.values, dtype=np.float64)


class NullRecorder:
    """Discards everything (a run whose results are read from the broker instead)."""

    def equity(self, t_ms: int, value: float) -> None:
        pass

    def decision(self, record: Mapping[str, Any]) -> None:
        pass

    def event(self, record: Mapping[str, Any]) -> None:
        pass

    def fill(self, record: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TeeRecorder:
    """Hands every record to each of ``recorders`` in order (e.g. memory and a journal)."""

    def __init__(self, *recorders: RunRecorder) -> None:
        for recorder in recorders:
            if not isinstance(recorder, RunRecorder):
                raise TypeError(
                    "each recorder must implement RunRecorder (equity, decision, event, fill, "
                    f"flush, close), got {type(recorder).__name__}"
                )
        self.recorders = recorders

    def equity(self, t_ms: int, value: float) -> None:
        for recorder in self.recorders:
            recorder.equity(t_ms, value)

    def decision(self, record: Mapping[str, Any]) -> None:
        for recorder in self.recorders:
            recorder.decision(record)

    def event(self, record: Mapping[str, Any]) -> None:
        for recorder in self.recorders:
            recorder.event(record)

    def fill(self, record: Mapping[str, Any]) -> None:
        for recorder in self.recorders:
            recorder.fill(record)

    def flush(self) -> None:
        for recorder in self.recorders:
            recorder.flush()

    def close(self) -> None:
        for recorder in self.recorders:
            recorder.close()
