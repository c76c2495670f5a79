"""Supervised samples: encoded inputs paired with the targets of their anchor candle.

A sample of :class:`~pivotal.features.inputs.EncodedInputDataset` is the close of one
*anchor* candle (``t = open + anchor.ms``). Labels are computed per candle (row ``i`` of the
anchor timeframe's candles says what happens after candle ``i`` closes), so sample ``t`` takes
the targets of the candle whose open time is ``t - anchor.ms``: the newest candle the input
contains. Target conventions:

- regression targets: float32 ``(n_candles, R)``, NaN = missing (e.g. the horizon runs past
  the data); the loss ignores missing entries;
- class labels: int64 ``(n_candles,)``, ``-1`` = missing;
- context: float32 ``(n_candles, K)``, one vector per candle, finite wherever a sample uses it.

Samples whose targets are *all* missing are excluded; :attr:`BatchDataset.excluded` counts
them. Samples across a gap (:mod:`pivotal.core.gaps`) are dropped too: those whose input
window crosses one (:attr:`EncodedInputDataset.valid`) and those whose label horizon does
(the anchor candle and the candle ``label_horizon`` bars later lie in different segments).
:attr:`SupervisedDataset.dropped` counts every reason. Positions ``0..len-1`` address the
remaining samples in time order.

Batches are dicts of tensors: ``"x"`` ``(B, streams, frames, channels)`` float32,
``"context"`` ``(B, K)`` float32 (absent without context), ``"regression"`` ``(B, R)``
float32 and ``"label"`` ``(B,)`` int64 (each absent when the dataset has none).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset

from pivotal.core.gaps import (
    DEFAULT_MAX_MISSING_BARS,
    segment_ids,
    segment_starts,
    window_crosses_gap,
)
from pivotal.features.inputs.dataset import EncodedInputDataset
from pivotal.models.base import InputShape

__all__ = [
    "DROP_ALL_TARGETS_MISSING",
    "DROP_LABEL_CROSSES_GAP",
    "DROP_WARMUP_AFTER_GAP",
    "DROP_WINDOW_CROSSES_GAP",
    "Batch",
    "BatchDataset",
    "SupervisedDataset",
    "TensorSupervisedDataset",
]

DROP_WINDOW_CROSSES_GAP = "input window crosses a gap"
DROP_LABEL_CROSSES_GAP = "label horizon crosses a gap"
DROP_WARMUP_AFTER_GAP = "indicator warm-up after a gap"
DROP_ALL_TARGETS_MISSING = "all targets missing"

Batch = dict[str, torch.Tensor]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Targets:
    """Checked per-row arrays and which rows have at least one target."""

    regression: npt.NDArray[np.float32] | None
    labels: IntArray | None
    context: npt.NDArray[np.float32] | None
    has_target: npt.NDArray[np.bool_]


def _check_targets(
    rows: int,
    regression: npt.ArrayLike | None,
    labels: npt.ArrayLike | None,
    context: npt.ArrayLike | None,
    what: str,
) -> _Targets:
    """Validate arrays aligned with ``rows`` rows of ``what``; see the module docstring."""
    reg = None
    if regression is not None:
        reg = np.asarray(regression, dtype=np.float32)
        if reg.ndim == 1:
            reg = reg[:, None]
        if reg.ndim != 2 or reg.shape[0] != rows:
            raise ValueError(
                f"regression targets must have shape ({rows}, R), one row per {what}, "
                f"got {reg.shape}"
            )
        if np.isinf(reg).any():
            raise ValueError("regression targets contain infinity; use NaN for 'missing'")
    lab = None
    if labels is not None:
        raw = np.asarray(labels)
        if raw.dtype.kind not in "iu":
            raise TypeError(
                f"class labels must be integers (-1 = missing), got dtype {raw.dtype}; "
                "convert with .astype(np.int64) after replacing NaN by -1"
            )
        lab = raw.astype(np.int64)
        if lab.shape != (rows,):
            raise ValueError(
                f"class labels must have shape ({rows},), one per {what}, got {lab.shape}"
            )
        if lab.size and lab.min() < -1:
            raise ValueError(f"class labels must be >= -1 (-1 = missing), got {lab.min()}")
    ctx = None
    if context is not None:
        ctx = np.asarray(context, dtype=np.float32)
        if ctx.ndim != 2 or ctx.shape[0] != rows:
            raise ValueError(
                f"context must have shape ({rows}, K), one row per {what}, got {ctx.shape}"
            )
    if reg is None and lab is None:
        has_target = np.ones(rows, dtype=bool)  # inputs only (for prediction)
    else:
        has_target = np.zeros(rows, dtype=bool)
        if reg is not None:
            has_target |= ~np.isnan(reg).all(axis=1)
        if lab is not None:
            has_target |= lab >= 0
    return _Targets(reg, lab, ctx, has_target)


def _pin(batch: Batch) -> Batch:
    return {k: v.pin_memory() for k, v in batch.items()}


class BatchDataset(Dataset[Batch], ABC):
    """Samples addressed by position ``0..len-1`` and served as vectorised dict batches.

    ``dataset[i]`` gives one sample (tensors without the batch axis); ``dataset[[i, j]]`` a
    batch. :meth:`batches` is what the trainer iterates.
    """

    excluded: int = 0
    """Samples dropped because all their targets were missing."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def get_batch(self, indices: npt.ArrayLike) -> Batch:
        """The samples at ``indices`` (positions) as one batch; new tensors."""

    @property
    @abstractmethod
    def input_shape(self) -> InputShape:
        """The shape a model needs to read these samples."""

    @property
    @abstractmethod
    def has_regression(self) -> bool: ...

    @property
    @abstractmethod
    def has_labels(self) -> bool: ...

    def __getitem__(self, index: int | Sequence[int] | npt.NDArray[np.integer]) -> Batch:
        if isinstance(index, int | np.integer):
            return {k: v[0] for k, v in self.get_batch(np.array([index])).items()}
        return self.get_batch(index)

    def _positions(self, indices: npt.ArrayLike) -> IntArray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(
                f"sample positions must lie in [0, {len(self)}), got {idx.min()}..{idx.max()}"
            )
        return idx

    def batch_indices(
        self,
        indices: npt.ArrayLike | None = None,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> list[IntArray]:
        """Positions split into batches; shuffled with ``numpy.random.default_rng(seed)``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        idx = np.arange(len(self)) if indices is None else self._positions(indices)
        if shuffle:
            idx = np.random.default_rng(seed).permutation(idx)
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]

    def batches(
        self,
        indices: npt.ArrayLike | None = None,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        pin_memory: bool = False,
        num_workers: int = 0,
    ) -> Iterator[Batch]:
        """Yield dict batches of ``indices`` (default: all samples in order).

        Same ``seed`` → same order. ``pin_memory`` pins the tensors for fast, asynchronous
        copies to CUDA. ``num_workers > 0`` builds the batches in worker processes through a
        ``DataLoader`` (same batches, same order).
        """
        plan = self.batch_indices(indices, batch_size=batch_size, shuffle=shuffle, seed=seed)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if num_workers == 0:
            for positions in plan:
                batch = self.get_batch(positions)
                yield _pin(batch) if pin_memory else batch
            return
        loader: DataLoader[Batch] = DataLoader(
            self,
            batch_size=None,
            sampler=plan,  # each element is one batch's positions → __getitem__(array)
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
        yield from loader


class SupervisedDataset(BatchDataset):
    """An :class:`EncodedInputDataset` paired with targets aligned with its anchor candles.

    ``timestamps`` are the open times (UTC ms) of the anchor timeframe's candles that
    ``regression``, ``labels`` and ``context`` are aligned with, row for row (normally
    ``candles[inputs.anchor].timestamp``, the same candles the inputs were built from). Each
    sample ``t`` maps to the row whose open time is ``t - inputs.anchor.ms``; a sample
    without such a row is an error. Give regression targets, class labels, or both; with
    neither, every sample is kept (inputs for prediction only).

    Samples whose input window crosses a gap are dropped; with ``label_horizon`` (bars,
    :func:`~pivotal.training.labels.label_horizon`) so are those whose label horizon crosses
    one (more than ``max_missing_bars`` missing anchor bars), and with ``warmup_bars`` those
    whose anchor candle is among the first ``warmup_bars`` candles after a gap (the
    indicators and pivots are warming up again there, as they are before the first sample).
    :attr:`dropped` says how many were dropped for each reason.
    """

    def __init__(
        self,
        inputs: EncodedInputDataset,
        timestamps: npt.ArrayLike,
        *,
        regression: npt.ArrayLike | None = None,
        labels: npt.ArrayLike | None = None,
        context: npt.ArrayLike | None = None,
        label_horizon: int | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
        warmup_bars: int = 0,
    ) -> None:
        if not isinstance(inputs, EncodedInputDataset):
            raise TypeError(f"inputs must be an EncodedInputDataset, got {type(inputs).__name__}")
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.ndim != 1 or len(ts) == 0:
            raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {ts.shape}")
        if len(ts) > 1 and not (np.diff(ts) > 0).all():
            raise ValueError("timestamps must be strictly increasing (sorted candle open times)")
        targets = _check_targets(len(ts), regression, labels, context, "anchor candle")
        opens = inputs.times(np.arange(len(inputs))) - inputs.anchor.ms
        rows = np.searchsorted(ts, opens)
        found = (rows < len(ts)) & (ts[np.minimum(rows, len(ts) - 1)] == opens)
        if not found.all():
            first = int(opens[~found][0])
            raise ValueError(
                f"{int((~found).sum())} samples have no anchor candle in `timestamps` (first: "
                f"open time {first} ms); pass the open times of the {inputs.anchor} candles "
                "the inputs were built from"
            )
        window_ok = inputs.valid
        seg = segment_ids(ts, inputs.anchor.ms, max_missing_bars)
        label_ok = np.ones(len(rows), dtype=bool)
        if label_horizon is not None and label_horizon > 0 and len(rows):
            label_ok = ~window_crosses_gap(seg, rows, rows + int(label_horizon))
        warm = np.ones(len(rows), dtype=bool)
        if warmup_bars > 0 and len(rows):
            seg_start = np.flatnonzero(segment_starts(ts, inputs.anchor.ms, max_missing_bars))
            warm = (seg[rows] == 0) | (rows - seg_start[seg[rows]] >= warmup_bars)
        has_target = targets.has_target[rows]
        label_ok &= warm
        keep = window_ok & label_ok & has_target
        self.inputs = inputs
        self._sample = np.flatnonzero(keep).astype(np.int64)  # position → inputs index
        self._rows = rows[self._sample].astype(np.int64)  # position → anchor candle row
        self.excluded = int((window_ok & label_ok & ~has_target).sum())
        # samples dropped, by reason (each counted once, under its first reason)
        self.dropped: dict[str, int] = {
            DROP_WINDOW_CROSSES_GAP: int((~window_ok).sum()),
            DROP_WARMUP_AFTER_GAP: int((window_ok & ~warm).sum()),
            DROP_LABEL_CROSSES_GAP: int((window_ok & warm & ~label_ok).sum()),
            DROP_ALL_TARGETS_MISSING: self.excluded,
        }
        if targets.context is not None:
            used = targets.context[self._rows]
            if not np.isfinite(used).all():
                bad = int((~np.isfinite(used)).any(axis=1).sum())
                raise ValueError(
                    f"context has NaN or infinity in {bad} rows that samples use; fill them "
                    "(e.g. with 0) or restrict the range to rows where context is known"
                )
        self._regression = targets.regression
        self._labels = targets.labels
        self._context = targets.context
        if not len(self):
            why = "; ".join(f"{reason}: {n:,}" for reason, n in self.dropped.items() if n)
            raise ValueError(
                f"none of the {len(inputs)} samples is usable ({why}); check the label horizon "
                "against the range, or pick a range without gaps (pivotal data gaps)"
            )

    def __len__(self) -> int:
        return len(self._sample)

    @property
    def input_shape(self) -> InputShape:
        streams, frames, channels = self.inputs.layout.shape
        context = 0 if self._context is None else self._context.shape[1]
        return InputShape(streams, frames, channels, context)

    @property
    def has_regression(self) -> bool:
        return self._regression is not None

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

    def times(self, indices: npt.ArrayLike | None = None) -> IntArray:
        """Sample times (UTC ms, the anchor candle's close) at ``indices`` (default: all)."""
        idx = np.arange(len(self)) if indices is None else self._positions(indices)
        return self.inputs.times(self._sample[idx])

    def rows(self, indices: npt.ArrayLike | None = None) -> IntArray:
        """Anchor candle rows (into ``timestamps``) of the samples at ``indices``."""
        idx = np.arange(len(self)) if indices is None else self._positions(indices)
        return self._rows[idx].copy()

    def regression_at(self, rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Regression targets of anchor candle ``rows`` (``(len(rows), R)``, NaN = missing)."""
        if self._regression is None:
            raise ValueError("this dataset has no regression targets")
        return self._regression[np.asarray(rows, dtype=np.int64)]

    def labels_at(self, rows: npt.ArrayLike) -> IntArray:
        """Class labels of anchor candle ``rows`` (``-1`` = missing)."""
        if self._labels is None:
            raise ValueError("this dataset has no class labels")
        return self._labels[np.asarray(rows, dtype=np.int64)]

    def get_batch(self, indices: npt.ArrayLike) -> Batch:
        idx = self._positions(indices)
        rows = self._rows[idx]
        batch: Batch = {"x": self.inputs.get_batch(self._sample[idx])}
        if self._context is not None:
            batch["context"] = torch.from_numpy(self._context[rows])
        if self._regression is not None:
            batch["regression"] = torch.from_numpy(self._regression[rows])
        if self._labels is not None:
            batch["label"] = torch.from_numpy(self._labels[rows])
        return batch


class TensorSupervisedDataset(BatchDataset):
    """In-memory samples: ``x`` ``(N, streams, frames, channels)`` and aligned targets.

    For tests, planted signals and small experiments. Targets follow the module's
    conventions; rows whose targets are all missing are excluded.
    """

    def __init__(
        self,
        x: torch.Tensor | npt.ArrayLike,
        *,
        regression: torch.Tensor | npt.ArrayLike | None = None,
        labels: torch.Tensor | npt.ArrayLike | None = None,
        context: torch.Tensor | npt.ArrayLike | None = None,
    ) -> None:
        xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if xs.dim() != 4 or len(xs) == 0:
            raise ValueError(
                f"x must have shape (N, streams, frames, channels) with N >= 1, got "
                f"{tuple(xs.shape)}"
            )
        as_np = [None if a is None else np.asarray(a) for a in (regression, labels, context)]
        targets = _check_targets(len(xs), *as_np, "sample")
        keep = torch.from_numpy(np.flatnonzero(targets.has_target))
        if not len(keep):
            raise ValueError("every sample has all targets missing")
        self.excluded = int(len(xs) - len(keep))
        self._x = xs[keep].contiguous()
        self._regression = (
            None if targets.regression is None else torch.from_numpy(targets.regression)[keep]
        )
        self._labels = None if targets.labels is None else torch.from_numpy(targets.labels)[keep]
        self._context = None
        if targets.context is not None:
            self._context = torch.from_numpy(targets.context)[keep]
            if not torch.isfinite(self._context).all():
                raise ValueError("context contains NaN or infinity in kept samples; fill them")

    def __len__(self) -> int:
        return len(self._x)

    @property
    def input_shape(self) -> InputShape:
        streams, frames, channels = self._x.shape[1:]
        context = 0 if self._context is None else self._context.shape[1]
        return InputShape(int(streams), int(frames), int(channels), int(context))

    @property
    def has_regression(self) -> bool:
        return self._regression is not None

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

    def get_batch(self, indices: npt.ArrayLike) -> Batch:
        idx = torch.from_numpy(self._positions(indices))
        batch: Batch = {"x": self._x[idx]}
        if self._context is not None:
            batch["context"] = self._context[idx]
        if self._regression is not None:
            batch["regression"] = self._regression[idx]
        if self._labels is not None:
            batch["label"] = self._labels[idx]
        return batch
