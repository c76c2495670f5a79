"""The DQN's replay accelerator: its outputs at flat steps, evaluated in batches.

The agent's observation is the market window, the position state and the PivotCNN's feature
row of the same step. While the account is flat the position state is all zeros, so in a
replay (market windows prepared, the CNN's rows already evaluated ahead by its own
accelerator) the observations of the coming steps are known as long as the account stays
flat: :class:`FlatSteps` keeps the agent's outputs for them, computed in one network pass.
A step uses a kept output only when the account is flat, the agent's weights are unchanged
and the CNN row it was computed with equals the row the CNN gave at that step (so a CNN whose
weights changed since is never read stale); any other step runs the agent on its own.
Batches start at ``min_batch`` and double (up to ``max_batch``) while they are used up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FlatSteps"]


@dataclass(frozen=True, slots=True, eq=False)
class _Batch:
    key: Any
    start: int
    outputs: list[Any]
    obs: npt.NDArray[np.float32]
    upstream: npt.NDArray[np.float32]


class FlatSteps:
    """Per symbol, the agent's outputs at the coming flat steps (module docstring)."""

    def __init__(self, *, min_batch: int = 16, max_batch: int = 256) -> None:
        self.min_batch = min_batch
        self.max_batch = max_batch
        self._batches: dict[str, _Batch] = {}
        self._size: dict[str, int] = {}
        self.hits = 0

    def get(
        self, symbol: str, i: int, key: Any, upstream: npt.NDArray[np.float32]
    ) -> tuple[Any, npt.NDArray[np.float32]] | None:
        """The kept output and observation of step ``i``, or None."""
        batch = self._batches.get(symbol)
        if batch is None or batch.key != key:
            return None
        r = i - batch.start
        if not 0 <= r < len(batch.outputs) or not np.array_equal(batch.upstream[r], upstream):
            return None
        self.hits += 1
        return batch.outputs[r], batch.obs[r : r + 1]

    def size(self, symbol: str, i: int, key: Any) -> int:
        """How many steps the next batch of ``symbol`` should hold."""
        batch = self._batches.get(symbol)
        size = self._size.get(symbol, self.min_batch)
        if batch is not None:
            used_up = batch.key == key and i >= batch.start + len(batch.outputs)
            size = min(2 * size, self.max_batch) if used_up else self.min_batch
            self._size[symbol] = size
        return size

    def put(
        self,
        symbol: str,
        key: Any,
        start: int,
        outputs: list[Any],
        obs: npt.NDArray[np.float32],
        upstream: npt.NDArray[np.float32],
    ) -> None:
        self._batches[symbol] = _Batch(key, start, outputs, obs, upstream)

    def clear(self) -> None:
        self._batches.clear()
