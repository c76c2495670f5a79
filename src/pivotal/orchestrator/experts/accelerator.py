"""The replay accelerator: a network evaluated in batches ahead of the clock.

An expert whose output does not depend on the position (the PivotCNN) can, in a replay,
run many upcoming samples of its prepared bulk inputs through its network at once, and
convert the whole batch to outputs at once; each step then only picks its row. The batch is
thrown away when the weights change (the learning loop promoted a candidate, a checkpoint
was loaded), detected by :func:`weights_key`, and the next step starts a new one from
itself, so nothing evaluated with old weights is used after a change. Batches start small
and double while they are used up without a change (up to ``max_batch``), so a run whose
weights change often does not evaluate samples it then discards.

Batched arithmetic differs from one sample's in the last bits (float rounding), so an
accelerated step and a stored step replayed one sample at a time agree to about 1e-7,
not bit for bit; the pushed path (one sample per step) is the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pivotal.features.inputs.dataset import EncodedInputDataset
from pivotal.orchestrator.experts.tensor_lists import weights_key

__all__ = ["BatchAccelerator", "BatchSizes", "PreparedSamples"]

Convert = Callable[[Mapping[str, torch.Tensor], npt.NDArray[np.int64]], tuple[Sequence[Any], Any]]
"""``convert(outputs, timestamps)`` → (one converted output per sample, per-sample rows)."""


@dataclass(frozen=True, slots=True, eq=False)
class PreparedSamples:
    """One symbol's prepared inputs: the dataset and its sample close times (UTC ms), and the
    anchor candles' close times and closes (for prices in real units)."""

    inputs: EncodedInputDataset
    times: npt.NDArray[np.int64]
    close_times: npt.NDArray[np.int64]
    closes: npt.NDArray[np.float64]

    def close_at(self, t: int) -> float | None:
        i = int(self.close_times.searchsorted(t))
        if i < len(self.close_times) and int(self.close_times[i]) == t:
            return float(self.closes[i])
        return None


@dataclass(frozen=True, slots=True, eq=False)
class _Batch:
    key: tuple[int, int]
    start: int
    x: npt.NDArray[np.float32]  # the network's input (its memory, as numpy: cheap to slice)
    converted: Sequence[Any]
    rows: Any
    size: int  # samples in the batch


class BatchSizes:
    """Per symbol, how many samples the next batch evaluates ahead: ``min_batch`` at first
    and after a batch was dropped unfinished (the weights changed, the step left it),
    doubling up to ``max_batch`` while batches are used up."""

    def __init__(self, min_batch: int, max_batch: int) -> None:
        if not 1 <= min_batch <= max_batch:
            raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
        self.min_batch = min_batch
        self.max_batch = max_batch
        self._size: dict[str, int] = {}

    def next(self, symbol: str, used_up: bool | None) -> int:
        """The next batch's size; ``used_up``: whether the previous batch was used to its
        end (None: there was none)."""
        size = self._size.get(symbol, self.min_batch)
        if used_up is not None:
            size = min(2 * size, self.max_batch) if used_up else self.min_batch
            self._size[symbol] = size
        return size


class BatchAccelerator:
    """Per symbol, the current batch of evaluated samples (module docstring)."""

    def __init__(self, *, min_batch: int = 16, max_batch: int = 256) -> None:
        self._sizes = BatchSizes(min_batch, max_batch)
        self._batches: dict[str, _Batch] = {}
        self.evaluated = 0  # samples run through the network
        self.used = 0  # samples a step read

    def clear(self) -> None:
        self._batches.clear()

    def ahead(self, symbol: str, i: int, model: torch.nn.Module) -> tuple[int, Any] | None:
        """``(start, rows)``: the per-sample rows of ``symbol``'s current batch from sample
        ``i`` on (``start == i``), when that batch holds ``i`` and was run with the current
        weights; None otherwise (nothing is evaluated here)."""
        batch = self._batches.get(symbol)
        if batch is None or batch.key != weights_key(model):
            return None
        r = i - batch.start
        if not 0 <= r < batch.size:
            return None
        return i, batch.rows[r:]

    def at(
        self,
        symbol: str,
        i: int,
        *,
        count: int,
        model: torch.nn.Module,
        inputs: Callable[[npt.NDArray[np.int64]], torch.Tensor],
        times: npt.NDArray[np.int64],
        convert: Convert,
    ) -> tuple[npt.NDArray[np.float32], Any, Any]:
        """Sample ``i`` of ``count``: its network input ``(1, ...)`` (a numpy view of the
        batch's input tensor), its converted output and its row. ``inputs(rows)`` gives the
        standardised inputs of sample indices; ``times`` the sample times."""
        key = weights_key(model)
        batch = self._batches.get(symbol)
        if batch is not None and batch.key == key and batch.start <= i < batch.start + batch.size:
            r = i - batch.start
        else:
            used_up = None  # no previous batch
            if batch is not None:
                used_up = batch.key == key and i >= batch.start + batch.size
            size = self._sizes.next(symbol, used_up)
            rows = np.arange(i, min(i + size, count), dtype=np.int64)
            x = inputs(rows)
            with torch.inference_mode():
                outputs = model(x, None)
                converted, per_row = convert(outputs, times[rows])
            batch = _Batch(key, i, x.detach().cpu().numpy(), converted, per_row, int(x.shape[0]))
            self._batches[symbol] = batch
            self.evaluated += len(rows)
            r = 0
        self.used += 1
        return batch.x[r : r + 1], batch.converted[r], batch.rows[r]
