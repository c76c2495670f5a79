"""The bulk path: encoded inputs for every candle close of a range, as a torch ``Dataset``.

Samples are the closes of the *anchor* timeframe's candles (``t = open + anchor.ms``) with
``start <= t < end``, from the first ``t`` at which every stream has ``min_frames`` closed
candles (earlier ones are dropped; ``first_time`` says where it starts). Sample ``i`` equals
``InputEncoder(spec, extra).encode(build_input(candles, symbol, t_i, spec, reference=...),
extra sliced by closed_window)`` exactly (same float64 arithmetic, then float32).

Memory is bounded by the source: each stream keeps one float64 table (rows needed by the
range plus ``frames - 1`` padding rows, ``7 + len(extra)`` columns) built once, and the
sample times are read from the anchor's timestamps; nothing is stored per sample. A sample's
window is a ``sliding_window_view`` row of that table, found with ``searchsorted`` for the
last candle closed at ``t``; only the requested batch is materialized.

**Gaps** (:mod:`pivotal.core.gaps`): a sample whose window, in any stream, would hold bars
from both sides of a gap (more than ``max_missing_bars`` missing bars), or whose stream's
newest closed candle lies before a gap that reaches the sample time, is *invalid*:
:attr:`EncodedInputDataset.valid` is False for it and :attr:`~EncodedInputDataset.gap_invalid`
counts them. Positions stay those of every anchor close (so indices are stable); consumers
(training, RL) drop the invalid ones. Valid samples equal the one-at-a-time path.

Throughput comes from :meth:`EncodedInputDataset.get_batch` (vectorized over indices). With a
``DataLoader`` pass ``batch_size=None`` and ``sampler=BatchSampler(...)``: each index list
then goes to ``__getitem__`` as one batch, ``(batch, streams, frames, channels)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_ids, window_crosses_gap
from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs.encoder import (
    ExtraFeatures,
    InputEncoder,
    encode_windows,
    source_table,
)
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import format_time, invalid_rows
from pivotal.features.scalers import FeatureLayout

__all__ = ["EncodedInputDataset"]

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class _Stream:
    """One stream's source: full open times (for searchsorted) and the table of used rows."""

    timeframe: Timeframe
    timestamps: Int64Array  # all candles (a view of the caller's array)
    dropped: int  # source rows before the table's first row
    close: npt.NDArray[np.float64]  # closes of the table's rows
    table: npt.NDArray[np.float64]  # (frames - 1 + rows used, width), see source_table
    windows: np.ndarray  # (rows used, frames, width) sliding-window view of the table

    def ends(self, t: Int64Array) -> Int64Array:
        """Number of candles closed at each ``t`` (absolute row index of the next one)."""
        return np.searchsorted(self.timestamps, t - self.timeframe.ms, side="right")


class EncodedInputDataset(Dataset[torch.Tensor]):
    """Encoded inputs for every close of ``anchor`` candles in ``[start, end)`` (UTC ms).

    ``candles`` maps each of ``spec.timeframes`` to the symbol's sorted candle history;
    ``reference`` the same for the spec's reference timeframes. ``anchor`` (default: the
    spec's first timeframe) must be one of ``spec.timeframes``. ``extra`` declares per-candle
    features aligned row for row with the full ``candles`` (see ``InputEncoder``).
    Raises ``DataError`` when a stream is absent, never reaches ``min_frames`` in the range,
    or holds NaN/non-positive values in the rows used; ``ValueError`` when the spec requires
    parts this path cannot supply (COB, pivots, predictions, ...).
    """

    def __init__(
        self,
        spec: InputSpec,
        candles: Mapping[Timeframe, Candles],
        start: int,
        end: int,
        *,
        anchor: Timeframe | str | None = None,
        reference: Mapping[Timeframe, Candles] | None = None,
        extra: ExtraFeatures | None = None,
        extra_layout: FeatureLayout | None = None,
        max_missing_bars: int | None = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        if spec.required:
            parts = ", ".join(sorted(p.value for p in spec.required))
            raise ValueError(
                f"the bulk dataset encodes candle streams only, but the spec requires {parts}; "
                "use a spec with required=frozenset() for it"
            )
        if extra and extra_layout is None:
            extra_layout = next(iter(extra.values()))[0]
        self.spec = spec
        self.encoder = InputEncoder(spec, extra_layout)
        self.layout = self.encoder.layout
        anchor_tf = spec.timeframes[0] if anchor is None else Timeframe.parse(anchor)
        if anchor_tf not in spec.timeframes:
            raise ValueError(f"anchor {anchor_tf} is not one of the spec's {spec.stream_names}")
        self.anchor = anchor_tf
        primary = {Timeframe.parse(tf): c for tf, c in candles.items()}
        refs = {Timeframe.parse(tf): c for tf, c in (reference or {}).items()}
        sources: list[tuple[str, Timeframe, Candles | None, np.ndarray | None]] = []
        for is_ref, tf in spec.streams:
            name = f"reference {spec.reference_symbol} {tf}" if is_ref else str(tf)
            source = (refs if is_ref else primary).get(tf)
            matrix = None
            if not is_ref and source is not None:
                matrix = self.encoder.extra_for(extra, tf, len(source))
            sources.append((name, tf, source, matrix))

        # sample times: closes of anchor candles in [start, end), from the first complete one
        m = spec.min_frames
        first = int(start)
        for name, tf, source, _ in sources:
            if source is None or len(source) < m:
                rows = 0 if source is None else len(source)
                raise DataError(f"{name} has {rows} candles in all (needs ≥ {m})")
            first = max(first, int(source.timestamp[m - 1]) + tf.ms)
        anchor_ts = primary[anchor_tf].timestamp
        self._anchor_ts = anchor_ts
        self._lo = int(np.searchsorted(anchor_ts, first - anchor_tf.ms, side="left"))
        self._hi = max(self._lo, int(np.searchsorted(anchor_ts, end - anchor_tf.ms, side="left")))
        self.first_time = int(anchor_ts[self._lo]) + anchor_tf.ms if len(self) else None
        if not len(self):
            raise DataError(
                f"no {anchor_tf} close in [{format_time(start)}, {format_time(end)}) has "
                f"≥ {m} closed candles in every stream (first complete at {format_time(first)})"
            )
        t_first, t_last = self.times(np.array([0, len(self) - 1]))
        self._streams = tuple(
            self._stream(name, tf, source, matrix, int(t_first), int(t_last))
            for name, tf, source, matrix in sources
            if source is not None
        )
        self.max_missing_bars = max_missing_bars
        self.valid = self._valid([(tf, s) for _, tf, s, _ in sources if s is not None])
        """Per sample, False when its window crosses a gap (module docstring)."""
        self.gap_invalid = int(len(self.valid) - self.valid.sum())

    def _valid(self, sources: list[tuple[Timeframe, Candles]]) -> npt.NDArray[np.bool_]:
        valid = np.ones(len(self), dtype=bool)
        if self.max_missing_bars is None:
            return valid
        t = self.times(np.arange(len(self)))
        frames = self.spec.frames
        for tf, source in sources:
            ts = source.timestamp
            seg = segment_ids(ts, tf.ms, self.max_missing_bars)
            last = np.searchsorted(ts, t - tf.ms, side="right") - 1
            first = np.maximum(last - frames + 1, 0)
            valid &= ~window_crosses_gap(seg, first, last)
            valid &= (t - ts[last]) // tf.ms - 1 <= self.max_missing_bars
        return valid

    def _stream(
        self,
        name: str,
        tf: Timeframe,
        source: Candles,
        matrix: np.ndarray | None,
        t_first: int,
        t_last: int,
    ) -> _Stream:
        frames = self.spec.frames
        ts = source.timestamp
        lo = max(0, int(np.searchsorted(ts, t_first - tf.ms, side="right")) - frames)
        hi = int(np.searchsorted(ts, t_last - tf.ms, side="right"))
        used = source[lo:hi]
        bad = invalid_rows(used)
        if bad:
            raise DataError(
                f"{name} has {bad} candles with NaN, infinite or non-positive values between "
                f"{format_time(int(used.timestamp[0]))} and {format_time(int(used.timestamp[-1]))}"
            )
        rows = None if matrix is None else matrix[lo:hi]
        table = source_table(used, rows, self.encoder.width, frames - 1)
        windows = sliding_window_view(table, (frames, table.shape[1]))[:, 0]
        return _Stream(tf, ts, lo, used.close, table, windows)

    def __len__(self) -> int:
        return self._hi - self._lo

    def times(self, indices: npt.ArrayLike) -> Int64Array:
        """Sample times ``t`` (UTC ms, an anchor candle's close) of ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range for {len(self)} samples")
        idx = np.where(idx < 0, idx + len(self), idx)
        return self._anchor_ts[self._lo + idx] + self.anchor.ms

    def get_batch(self, indices: npt.ArrayLike) -> torch.Tensor:
        """Encoded samples ``(len(indices), streams, frames, channels)`` float32, a new tensor."""
        t = self.times(indices)
        frames = self.spec.frames
        out = np.empty((len(t), *self.layout.shape), dtype=np.float32)
        for s, stream in enumerate(self._streams):
            ends = stream.ends(t)
            rows = ends - stream.dropped - 1  # table row of the newest closed candle
            encode_windows(
                stream.windows[rows],
                stream.close[rows],
                np.minimum(ends, frames),
                out[:, s],
            )
        return torch.from_numpy(out)

    def __getitem__(self, index: int | Sequence[int] | npt.NDArray[np.integer]) -> torch.Tensor:
        """One sample ``(streams, frames, channels)``, or a batch for a sequence of indices."""
        if isinstance(index, int | np.integer):
            return self.get_batch(np.array([index]))[0]
        return self.get_batch(index)

    @property
    def source_bytes(self) -> int:
        """Bytes of the per-stream tables this dataset holds (its memory beyond the inputs)."""
        return sum(s.table.nbytes for s in self._streams)
