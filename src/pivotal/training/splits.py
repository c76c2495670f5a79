"""Chronological data splits with purge gaps, and walk-forward folds.

Samples are numbered ``0..n-1`` in time order (sample ``k`` is usually the close of anchor
candle ``k``). Every set is a contiguous run of samples; sets never overlap, keep time
order (train, then validation, then test) and are separated by at least ``purge`` dropped
samples (plus ``embargo`` in :func:`chronological_split`).

**Choosing the purge.** A sample at bar ``k`` reads input bars ``k-frames+1 .. k`` and its
label reads bars ``k+1 .. k+label_horizon``. A training sample must not have seen, through
its label, any bar that a later set's sample reads as input (or label): with the last
training sample at ``k`` and the first validation sample at ``v``, that needs
``k + label_horizon < v - frames + 1``, i.e. ``v - k >= label_horizon + frames``. With one
sample per bar the sets must therefore be separated by

    ``purge >= label_horizon + frames - 1``

dropped samples; :func:`purge_for` computes it (also for one sample every ``stride`` bars).
``label_horizon`` is :func:`pivotal.training.labels.label_horizon`; ``frames`` is the input
window in anchor bars: for multi-timeframe inputs use the longest stream's lookback
expressed in anchor bars (300 hourly frames = 18,000 one-minute bars).

**Embargo.** ``embargo`` samples are dropped on top of the purge at each boundary, as a
margin against serial dependence that outlasts the label window (volatility clusters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["PARTS", "Split", "chronological_split", "purge_for", "walk_forward"]

IntArray = npt.NDArray[np.int64]
PARTS: tuple[str, str, str] = ("train", "validation", "test")


def _count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def purge_for(label_horizon: int, frames: int = 1, stride: int = 1) -> int:
    """Samples to drop between sets so no label window touches a later set's inputs.

    ``label_horizon``: future bars a label reads (``>= 0``); ``frames``: input window in bars
    (``>= 1``, the newest bar being the sample's own); ``stride``: bars between consecutive
    samples. Returns the least ``purge`` with ``(purge + 1) * stride >= label_horizon +
    frames``, i.e. ``label_horizon + frames - 1`` for ``stride=1``.
    """
    h = _count(label_horizon, "label_horizon", 0)
    f = _count(frames, "frames", 1)
    s = _count(stride, "stride", 1)
    return max(0, math.ceil((h + f) / s) - 1)


def _samples(n_or_times: Any) -> tuple[int, IntArray | None]:
    """``(n, times)`` from a sample count or an array of sample times (UTC ms)."""
    if isinstance(n_or_times, int | np.integer) and not isinstance(n_or_times, bool):
        return _count(n_or_times, "n", 1), None
    if isinstance(n_or_times, bool | float | str):
        raise TypeError(f"give a sample count (int) or sample times, got {n_or_times!r}")
    times = np.asarray(n_or_times)
    if times.dtype.kind == "M":
        times = times.astype("datetime64[ms]").astype(np.int64)
    if times.ndim != 1 or times.dtype.kind not in "iu":
        raise TypeError(
            f"sample times must be a 1-D array of int UTC ms or datetime64, got "
            f"{times.dtype} with shape {times.shape}"
        )
    times = times.astype(np.int64)
    if len(times) == 0:
        raise ValueError("sample times are empty; nothing to split")
    if np.any(np.diff(times) <= 0):
        first = int(np.flatnonzero(np.diff(times) <= 0)[0])
        raise ValueError(
            f"sample times must increase strictly (samples in time order), but time "
            f"{int(times[first + 1])} at sample {first + 1} follows {int(times[first])}"
        )
    return len(times), times


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    """Train, validation and test sample indices of ``n`` samples, in time order.

    Each part is a contiguous, increasing int64 index array (``validation`` may be empty,
    as in walk-forward folds without one). Consecutive non-empty parts are separated by at
    least ``purge + embargo`` samples that belong to no part. ``times`` (optional) are the
    times of all ``n`` samples (UTC ms), from which :meth:`span` reads each part's first and
    last sample time, e.g. for a checkpoint to record the data it was trained on.
    """

    train: IntArray
    validation: IntArray
    test: IntArray
    n: int
    purge: int
    embargo: int = 0
    times: IntArray | None = None

    def __post_init__(self) -> None:
        n = _count(self.n, "n", 1)
        _count(self.purge, "purge")
        _count(self.embargo, "embargo")
        if self.times is not None:
            _, times = _samples(self.times)
            if times is None or len(times) != n:
                raise ValueError(f"times must hold one time per sample ({n})")
            times.flags.writeable = False
            object.__setattr__(self, "times", times)
        previous: tuple[str, int] | None = None
        for part in PARTS:
            values = np.array(getattr(self, part), dtype=np.int64).reshape(-1)
            if len(values) and (values[0] < 0 or values[-1] >= n):
                raise ValueError(f"Split.{part} holds indices outside 0..{n - 1}")
            if len(values) > 1 and np.any(np.diff(values) != 1):
                raise ValueError(f"Split.{part} must be a contiguous increasing run of samples")
            if part != "validation" and not len(values):
                raise ValueError(f"Split.{part} is empty")
            if len(values) and previous is not None:
                gap = int(values[0]) - previous[1] - 1
                if gap < self.purge + self.embargo:
                    raise ValueError(
                        f"only {gap} sample(s) separate {previous[0]} from {part}; purge + "
                        f"embargo = {self.purge + self.embargo} required"
                    )
            if len(values):
                previous = (part, int(values[-1]))
            values.flags.writeable = False
            object.__setattr__(self, part, values)

    def part(self, name: str) -> IntArray:
        """The index array of ``"train"``, ``"validation"`` or ``"test"``."""
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; parts: {', '.join(PARTS)}")
        indices: IntArray = getattr(self, name)
        return indices

    def range(self, name: str) -> tuple[int, int]:
        """``(start, stop)`` of a part, as for ``slice(start, stop)`` (``(0, 0)`` when empty)."""
        indices = self.part(name)
        return (int(indices[0]), int(indices[-1]) + 1) if len(indices) else (0, 0)

    def span(self, name: str) -> tuple[int, int] | None:
        """First and last sample time of a part (UTC ms); None without times or when empty."""
        indices = self.part(name)
        if self.times is None or not len(indices):
            return None
        return int(self.times[indices[0]]), int(self.times[indices[-1]])

    def spans(self) -> dict[str, tuple[int, int] | None]:
        return {name: self.span(name) for name in PARTS}

    def to_dict(self) -> dict[str, Any]:
        """Plain description (sizes, index ranges, UTC spans) for checkpoints and logs."""
        out: dict[str, Any] = {"n": self.n, "purge": self.purge, "embargo": self.embargo}
        for name in PARTS:
            start, stop = self.range(name)
            entry: dict[str, Any] = {"size": stop - start, "start": start, "stop": stop}
            span = self.span(name)
            if span is not None:
                entry.update(first_time=span[0], last_time=span[1])
                entry.update(first_utc=_iso(span[0]), last_utc=_iso(span[1]))
            out[name] = entry
        return out


def _fractions(train: float, validation: float, test: float) -> Mapping[str, float]:
    values = {"train": train, "validation": validation, "test": test}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
            raise TypeError(f"{name} must be a fraction (float), got {value!r}")
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
    if train <= 0 or test <= 0:
        raise ValueError(f"train and test fractions must be > 0, got {train} and {test}")
    if abs(train + validation + test - 1.0) > 1e-9:
        raise ValueError(
            f"train + validation + test must be 1, got {train} + {validation} + {test} = "
            f"{train + validation + test}"
        )
    return values


def chronological_split(
    n_or_times: Any,
    train: float = 0.7,
    validation: float = 0.15,
    test: float = 0.15,
    *,
    purge: int,
    embargo: int = 0,
) -> Split:
    """Split ``n`` time-ordered samples into train, validation and test (see the module doc).

    ``n_or_times``: the sample count, or the samples' times (UTC ms or datetime64, strictly
    increasing), which the split then keeps for :meth:`Split.span`. The boundaries sit at
    ``round(n * train)`` and ``round(n * (train + validation))``: the test set is exactly the
    samples from the second boundary on, and each earlier set gives up its last
    ``purge + embargo`` samples to the gap (so their sizes shrink, the later sets' do not).
    ``validation=0`` gives train and test only. Choose ``purge`` with :func:`purge_for`.
    Raises ``ValueError`` when the fractions do not sum to 1 or a set would be empty.
    """
    n, times = _samples(n_or_times)
    _fractions(train, validation, test)
    p = _count(purge, "purge")
    e = _count(embargo, "embargo")
    gap = p + e
    first = round(n * train)
    second = round(n * (train + validation)) if validation > 0 else first
    if validation > 0 and second - first - gap <= 0:
        raise ValueError(
            f"the validation set is empty: {n} samples × {validation} = {second - first} "
            f"sample(s), minus a gap of {gap} (purge {p} + embargo {e}); use more samples, a "
            "larger validation fraction, or validation=0"
        )
    if first - gap <= 0 or second >= n:
        raise ValueError(
            f"{n} samples are too few to split {train}/{validation}/{test} with a gap of {gap} "
            f"(purge {p} + embargo {e}) between sets: train or test would be empty"
        )
    val = np.arange(first, second - gap) if validation > 0 else np.arange(0)
    return Split(
        train=np.arange(0, first - gap),
        validation=val,
        test=np.arange(second, n),
        n=n,
        purge=p,
        embargo=e,
        times=times,
    )


def walk_forward(
    n_or_times: Any,
    n_splits: int,
    *,
    test_size: int,
    purge: int,
    mode: Literal["expanding", "rolling"] = "expanding",
    train_size: int | None = None,
    validation_size: int = 0,
) -> list[Split]:
    """Walk-forward folds: ``n_splits`` consecutive test blocks at the end of the data.

    Fold ``f`` (``0..n_splits-1``) tests samples ``[s_f, s_f + test_size)`` with
    ``s_f = n - (n_splits - f) * test_size``. Before the test block come, separated by
    ``purge`` samples each, an optional validation block of ``validation_size`` samples and
    the training block ending ``purge`` samples before it. ``mode="expanding"``: training
    starts at sample 0 (it grows by ``test_size`` each fold). ``mode="rolling"``: the
    ``train_size`` samples right before the gap (default: the first fold's expanding size,
    so fold 0 is identical in both modes and every rolling fold trains on as many samples).
    ``train_size`` is only for rolling mode. Returns :class:`Split` objects in fold order.
    """
    n, times = _samples(n_or_times)
    k = _count(n_splits, "n_splits", 1)
    size = _count(test_size, "test_size", 1)
    p = _count(purge, "purge")
    v = _count(validation_size, "validation_size")
    if mode not in ("expanding", "rolling"):
        raise ValueError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    if mode == "expanding" and train_size is not None:
        raise ValueError("train_size applies to mode='rolling' only; expanding folds start at 0")

    def train_end(test_start: int) -> int:
        return test_start - p - (v + p if v else 0)

    first_test = n - k * size
    available = train_end(first_test)
    if first_test < 0 or available <= 0:
        raise ValueError(
            f"{n} samples are too few for {k} test block(s) of {size} with purge {p} and "
            f"validation_size {v}: the first fold would have {max(available, 0)} training "
            "sample(s)"
        )
    width = available
    if mode == "rolling" and train_size is not None:
        width = _count(train_size, "train_size", 1)
        if width > available:
            raise ValueError(
                f"train_size {width} exceeds the {available} samples available before the "
                "first fold's gap; lower train_size, n_splits or test_size"
            )
    folds: list[Split] = []
    for f in range(k):
        start = first_test + f * size
        end = train_end(start)
        begin = 0 if mode == "expanding" else end - width
        val = np.arange(start - p - v, start - p) if v else np.arange(0)
        folds.append(
            Split(
                train=np.arange(begin, end),
                validation=val,
                test=np.arange(start, start + size),
                n=n,
                purge=p,
                times=times,
            )
        )
    return folds
