"""The in-memory store of model outputs (seed 003 §4.3): cross-model feeding and recent history.

Every :class:`~pivotal.core.types.ModelOutput` the coordinator accepts is recorded here, keyed
by ``(model, symbol)``. Each key keeps its last ``capacity`` outputs in time order (a ring
buffer; older ones are dropped). :meth:`ModelOutputStore.latest` gives every model's newest
output strictly *before* a time: that is what a step at ``t`` receives as
``BaseDataInput.last_predictions`` (outputs of earlier steps only, never of ``t`` itself,
whose same-step outputs travel as ``InferenceRequest.upstream``).

Times are UTC milliseconds (``ModelOutput.timestamp``, the step's close time). Per key the
timestamps never go backwards; recording a second output at the same timestamp replaces the
first (a step re-run corrects its output; there is one output per model, symbol and time).
Lookups bisect the per-key timestamp list: ``O(log n)`` per key. All methods are thread-safe
(one lock).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator

from pivotal.core.symbols import Symbol
from pivotal.core.types import ModelOutput

__all__ = ["ModelOutputStore"]


class _Ring:
    """The outputs of one (model, symbol) in time order; at most ``capacity`` live ones.

    Two parallel lists with a moving start: appending is amortized O(1) (the dead head is cut
    off once it is as long as the capacity), and the live part ``[start:]`` stays a plain
    sorted list that :func:`bisect.bisect_left` searches in O(log n).
    """

    __slots__ = ("_capacity", "_outputs", "_start", "_times")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._times: list[int] = []
        self._outputs: list[ModelOutput] = []
        self._start = 0

    def __len__(self) -> int:
        return len(self._times) - self._start

    @property
    def last_time(self) -> int | None:
        return self._times[-1] if len(self) else None

    def append(self, output: ModelOutput) -> None:
        t = int(output.timestamp)
        if len(self) and self._times[-1] == t:
            self._outputs[-1] = output
            return
        self._times.append(t)
        self._outputs.append(output)
        if len(self) > self._capacity:
            self._start += 1
            if self._start >= self._capacity:
                del self._times[: self._start]
                del self._outputs[: self._start]
                self._start = 0

    def before(self, bound: int | None) -> ModelOutput | None:
        """The newest output with timestamp < ``bound`` (``None``: the newest)."""
        if not len(self):
            return None
        if bound is None:
            return self._outputs[-1]
        i = bisect_left(self._times, bound, lo=self._start) - 1
        return self._outputs[i] if i >= self._start else None

    def between(self, since: int | None, until: int | None) -> list[ModelOutput]:
        """Outputs with ``since <= timestamp < until`` (a missing bound is open)."""
        lo = self._start if since is None else bisect_left(self._times, since, lo=self._start)
        hi = len(self._times) if until is None else bisect_left(self._times, until, lo=lo)
        return self._outputs[lo:hi]


class ModelOutputStore:
    """Recent outputs of every model per symbol (module docstring).

    ``capacity``: outputs kept per (model, symbol); the oldest are dropped beyond it.
    """

    def __init__(self, capacity: int = 1000) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ModelOutputStore capacity must be an int >= 1, got {capacity!r}")
        self._capacity = capacity
        self._lock = threading.Lock()
        # symbol (ccxt form) -> model name -> ring
        self._rings: dict[str, dict[str, _Ring]] = {}
        self._symbols: dict[str, str] = {}  # spelling as given -> ccxt form

    @property
    def capacity(self) -> int:
        return self._capacity

    def _key(self, symbol: str | Symbol) -> str:
        key = self._symbols.get(symbol) if isinstance(symbol, str) else None
        if key is None:
            key = str(Symbol.parse(symbol))
            if isinstance(symbol, str):
                self._symbols[symbol] = key
        return key

    def record(self, output: ModelOutput) -> None:
        """Keep ``output``. ``ValueError`` when it is older than the newest output already
        kept for its model and symbol (the message names both times); an output at the same
        time replaces the kept one."""
        if not isinstance(output, ModelOutput):
            raise TypeError(f"ModelOutputStore.record needs a ModelOutput, got {output!r}")
        symbol = str(output.symbol)
        with self._lock:
            models = self._rings.setdefault(symbol, {})
            ring = models.get(output.model_name)
            if ring is None:
                ring = models[output.model_name] = _Ring(self._capacity)
            last = ring.last_time
            if last is not None and output.timestamp < last:
                raise ValueError(
                    f"output of {output.model_name} for {symbol} at {output.timestamp} is "
                    f"older than the one already kept at {last}; record each model's outputs "
                    "in time order"
                )
            ring.append(output)

    def latest(self, symbol: str | Symbol, before: int | None = None) -> dict[str, ModelOutput]:
        """Every model's newest output for ``symbol`` with ``timestamp < before`` (strictly;
        ``None``: no bound), by model name (sorted). Models with none that early are absent.
        This is ``BaseDataInput.last_predictions`` for a step at ``before``."""
        with self._lock:
            models = self._rings.get(self._key(symbol), {})
            found = {name: models[name].before(before) for name in sorted(models)}
        return {name: output for name, output in found.items() if output is not None}

    def query(
        self,
        *,
        model: str | None = None,
        symbol: str | Symbol | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[ModelOutput]:
        """Outputs with ``since <= timestamp < until`` (``None``: open bound), of ``model``
        and ``symbol`` when given, ordered by time (then symbol, then model name)."""
        if since is not None and until is not None and until < since:
            raise ValueError(f"query needs since <= until, got since={since}, until={until}")
        with self._lock:
            found = [
                (s, m, ring.between(since, until)) for s, m, ring in self._select(model, symbol)
            ]
        if len(found) == 1:
            return list(found[0][2])
        rows = [(o.timestamp, s, m, o) for s, m, outputs in found for o in outputs]
        rows.sort(key=lambda row: row[:3])
        return [row[3] for row in rows]

    def models(self, symbol: str | Symbol | None = None) -> tuple[str, ...]:
        """Names of the models with outputs kept (for ``symbol`` when given), sorted."""
        with self._lock:
            return tuple(sorted({m for _, m, _ in self._select(None, symbol)}))

    def __len__(self) -> int:
        """Outputs kept, over every model and symbol."""
        with self._lock:
            return sum(len(ring) for models in self._rings.values() for ring in models.values())

    def _select(
        self, model: str | None, symbol: str | Symbol | None
    ) -> Iterator[tuple[str, str, _Ring]]:
        """The (symbol, model, ring) triples matching the filters; caller holds the lock."""
        symbols = [self._key(symbol)] if symbol is not None else sorted(self._rings)
        for s in symbols:
            models = self._rings.get(s, {})
            names = [model] if model is not None else sorted(models)
            for m in names:
                ring = models.get(m)
                if ring is not None and len(ring):
                    yield s, m, ring
