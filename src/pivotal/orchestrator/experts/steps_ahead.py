"""The DQN's replay accelerator: its outputs at the coming steps, evaluated in batches.

The agent's observation is the market window, the position state and the PivotCNN's feature
row of the same step. In a replay the market windows are prepared and the CNN's rows are
already evaluated ahead by its own accelerator, so only the position state is unknown ahead
of the clock. It is known exactly while nothing trades:

- **flat**: the state is all zeros;
- **holding one position** (the account's only open position, in this symbol): the
  quantity, average entry price and cash stay as they are, the portfolio marks the position
  at each bar's close, so the state at each coming step follows from the closes
  (:func:`held_states`, the portfolio's and the expert's arithmetic in the same order, so the
  floats are the same bits).

:class:`StepsAhead` keeps the agent's outputs for the coming steps under those assumptions,
computed in one network pass, with the states and CNN rows they assumed. A step uses a kept
output only when the agent's weights are unchanged, the CNN row equals the row the CNN gave
at that step (a CNN whose weights changed since is never read stale) **and** the position
state the expert computed from the real account equals the assumed one bit for bit (a fill,
a stop, another position, a fee: a different state, so the step runs on its own). A
speculation that fails costs time, never a different answer. Batches start at ``min_batch``
and double (up to ``max_batch``) while they are used up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.orchestrator.experts.accelerator import BatchSizes

__all__ = ["StepsAhead", "held_states"]


@dataclass(frozen=True, slots=True, eq=False)
class _Batch:
    key: Any
    start: int
    outputs: list[Any]
    obs: npt.NDArray[np.float32]
    upstream: npt.NDArray[np.float32]
    states: npt.NDArray[np.float64]


class StepsAhead:
    """Per symbol, the agent's outputs at the coming steps (module docstring)."""

    def __init__(self, *, min_batch: int = 16, max_batch: int = 256) -> None:
        self._sizes = BatchSizes(min_batch, max_batch)
        self._batches: dict[str, _Batch] = {}
        self.hits = 0

    def get(
        self,
        symbol: str,
        i: int,
        key: Any,
        upstream: npt.NDArray[np.float32],
        state: tuple[float, ...],
    ) -> tuple[Any, npt.NDArray[np.float32]] | None:
        """The kept output and observation of step ``i``, or None."""
        batch = self._batches.get(symbol)
        if batch is None or batch.key != key:
            return None
        r = i - batch.start
        if not 0 <= r < len(batch.outputs):
            return None
        if tuple(batch.states[r].tolist()) != state:
            return None
        if not np.array_equal(batch.upstream[r], upstream):
            return None
        self.hits += 1
        return batch.outputs[r], batch.obs[r : r + 1]

    def size(self, symbol: str, i: int, key: Any) -> int:
        """How many steps the next batch of ``symbol`` should hold."""
        batch = self._batches.get(symbol)
        used_up = None  # no previous batch
        if batch is not None:
            used_up = batch.key == key and i >= batch.start + len(batch.outputs)
        return self._sizes.next(symbol, used_up)

    def put(
        self,
        symbol: str,
        key: Any,
        start: int,
        outputs: list[Any],
        obs: npt.NDArray[np.float32],
        upstream: npt.NDArray[np.float32],
        states: npt.NDArray[np.float64],
    ) -> None:
        self._batches[symbol] = _Batch(key, start, outputs, obs, upstream, states)

    def clear(self) -> None:
        self._batches.clear()


def held_states(
    *,
    quantity: float,
    average: float,
    cash: float,
    closes: npt.NDArray[np.float64],
    times: npt.NDArray[np.int64],
    entry: int,
    bar_ms: int,
    episode_length: int,
    initial: float,
) -> npt.NDArray[np.float64]:
    """The position states ``(n, 4)`` at bars closing at ``times`` at ``closes`` while one
    position of ``quantity`` at ``average``, entered at the step closing at ``entry``, is
    held and ``cash`` does not change: the portfolio's unrealized PnL
    ``quantity × (close - average)`` and equity ``cash + unrealized``, then the expert's state
    (side, ``|quantity| × close / equity``, unrealized / equity, bars held / episode length;
    equity ≤ 0 replaced by ``initial``). numpy's float64 ``+ - × /`` round as Python's, so
    the values are the bits the step itself computes."""
    closes = np.asarray(closes, dtype=np.float64)
    unrealized = quantity * (closes - average)
    equity = cash + unrealized
    equity = np.where(equity > 0.0, equity, initial)
    held = (np.asarray(times, dtype=np.int64) - entry) // bar_ms + 1
    out = np.empty((len(closes), 4), dtype=np.float64)
    out[:, 0] = 1.0 if quantity > 0.0 else -1.0
    out[:, 1] = abs(quantity) * closes / equity
    out[:, 2] = unrealized / equity
    out[:, 3] = held / episode_length
    return out
