"""Exact OHLCV resampling to a higher timeframe, batch and streaming (identical results).

A target bucket is ``[b, b + target.ms)`` with ``b = ts - ts % target.ms``; every
:class:`~pivotal.core.timeframes.Timeframe` divides a UTC day, so ``1d`` buckets start at UTC
midnight. Each bucket aggregates the source bars whose open time falls in it: ``open`` of the
first, ``max(high)``, ``min(low)``, ``close`` of the last and ``sum(volume)`` (numpy's pairwise
sum within the bucket, the same in batch and streaming).

**Coverage.** Let ``first`` and ``last`` be the first and last source open times and ``S`` the
source duration; the data covers ``[first, last + S)``. A bucket ``[b, b + T)`` is *covered*
when ``first <= b`` and ``last + S >= b + T``. Only the first and the last bucket can fail
that; they are dropped unless ``partial=True``. Interior buckets with missing source bars
(exchange outages) are emitted from the bars present, as exchanges publish them.

**Complete buckets only.** :func:`resample_complete` is what ``pivotal data resample`` stores:
it keeps a bucket only when every one of its ``T / S`` source bars exists, and reports the
others (buckets with some bars missing) as partial. A partial bucket is not the candle the
exchange would publish for that period (its volume is short and its close may be early), so it
is never written over, or in place of, a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import OHLCVBar

__all__ = ["CandleResampler", "CompleteBuckets", "resample", "resample_complete"]


def _check_timeframes(source: Timeframe, target: Timeframe) -> tuple[int, int]:
    source, target = Timeframe.parse(source), Timeframe.parse(target)
    if target.ms % source.ms != 0:
        raise ValueError(
            f"cannot resample {source} to {target}: the target must be a whole multiple of the "
            f"source ({target.ms} ms is not a multiple of {source.ms} ms); pick a target such "
            f"as {', '.join(t.value for t in Timeframe if t.ms % source.ms == 0 and t != source)}"
        )
    return source.ms, target.ms


def _check_order(ts: npt.NDArray[np.int64], source_ms: int, previous: int | None) -> None:
    """Refuse unsorted, duplicated or off-grid source bars (a broken export, not a gap)."""
    if len(ts) == 0:
        return
    if len(ts) > 1:
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if len(bad):
            i = int(bad[0]) + 1
            raise ValueError(
                f"source candles must be sorted by timestamp without duplicates: row {i} "
                f"({int(ts[i])}) is not after row {i - 1} ({int(ts[i - 1])}); sort and "
                "de-duplicate the candles first"
            )
    if previous is not None and ts[0] <= previous:
        raise ValueError(
            f"candle at {int(ts[0])} is not after the last candle already fed ({previous}); "
            "feed each bar once, in time order"
        )
    off = np.flatnonzero(ts // source_ms * source_ms != ts)  # floor_divide is the fast path
    if len(off):
        i = int(off[0])
        raise ValueError(
            f"candle row {i} ({int(ts[i])}) is not on the {source_ms} ms source grid; pass the "
            "timeframe the candles really have"
        )


def _aggregate(candles: Candles, target_ms: int) -> tuple[Candles, npt.NDArray[np.intp]]:
    """All buckets of sorted ``candles``, plus the row where each bucket starts."""
    ts = candles.timestamp
    bucket = ts // target_ms * target_ms  # the bucket's open, UTC ms
    starts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.intp), starts))
    last = np.empty_like(starts)
    last[:-1] = starts[1:] - 1
    last[-1] = len(ts) - 1
    out = Candles(
        bucket[starts],
        candles.open[starts],
        np.maximum.reduceat(candles.high, starts),
        np.minimum.reduceat(candles.low, starts),
        candles.close[last],
        np.add.reduceat(candles.volume, starts),
    )
    return out, starts


def resample(
    candles: Candles, source: Timeframe, target: Timeframe, *, partial: bool = False
) -> Candles:
    """Aggregate ``candles`` of timeframe ``source`` into ``target`` candles.

    ``candles`` must be sorted by open time without duplicates and lie on the ``source`` grid
    (``ValueError`` otherwise); ``target`` must be a whole multiple of ``source``. Output open
    times are bucket starts (UTC ms). Edge buckets the data does not cover (see the module
    docstring: data starts after the bucket's open, or the last source bar ends before the
    bucket's end) are dropped unless ``partial=True``; interior buckets with missing bars are
    always emitted. NaN is not checked here (see :mod:`pivotal.data.validation`).
    """
    source_ms, target_ms = _check_timeframes(source, target)
    _check_order(candles.timestamp, source_ms, None)
    if len(candles) == 0:
        return Candles.empty()
    out, _ = _aggregate(candles, target_ms)
    if partial:
        return out
    lo, hi = 0, len(out)
    if candles.timestamp[0] != out.timestamp[0]:
        lo = 1
    if candles.timestamp[-1] + source_ms < out.timestamp[-1] + target_ms:
        hi -= 1
    return out if (lo, hi) == (0, len(out)) else out[lo : max(lo, hi)]


@dataclass(frozen=True, slots=True)
class CompleteBuckets:
    """The complete buckets of a resampling, and the open times of the partial ones skipped
    (buckets that hold some source bars but not all; empty buckets are neither)."""

    candles: Candles
    partial: npt.NDArray[np.int64]

    @property
    def skipped(self) -> int:
        return len(self.partial)


def resample_complete(candles: Candles, source: Timeframe, target: Timeframe) -> CompleteBuckets:
    """Aggregate ``candles`` into ``target`` buckets, keeping only buckets where all
    ``target / source`` source bars exist (see the module docstring). Same input checks as
    :func:`resample`."""
    source_ms, target_ms = _check_timeframes(source, target)
    _check_order(candles.timestamp, source_ms, None)
    if len(candles) == 0:
        return CompleteBuckets(Candles.empty(), np.empty(0, dtype=np.int64))
    out, starts = _aggregate(candles, target_ms)
    bars = np.diff(np.append(starts, len(candles)))
    complete = bars == target_ms // source_ms
    return CompleteBuckets(out[complete], out.timestamp[~complete].astype(np.int64))


@dataclass(slots=True)
class _Pending:
    """Source bars of the one bucket that is still open, kept as fed (one chunk per update)."""

    bucket: int
    chunks: list[Candles]


class CandleResampler:
    """Streaming :func:`resample`: feed source bars in any chunking, get finished buckets.

    A bucket is emitted as soon as it is known to be complete: when its last source slot
    (``b + T - S``) arrives, or when a bar of a later bucket arrives (the remaining slots
    were an outage). The first bucket is dropped when the stream starts after its open,
    unless ``partial=True``. :meth:`flush` ends the stream: it returns the open bucket only
    when partial output is wanted. Concatenated outputs equal ``resample(all bars, partial)``
    exactly, bit for bit (the open bucket's bars are buffered, so sums run in the same order).
    """

    def __init__(self, source: Timeframe, target: Timeframe, *, partial: bool = False) -> None:
        self.source = Timeframe.parse(source)
        self.target = Timeframe.parse(target)
        self._source_ms, self._target_ms = _check_timeframes(self.source, self.target)
        self.partial = partial
        self._last_ts: int | None = None
        self._first_ts: int | None = None
        self._emitted_any = False
        self._pending: _Pending | None = None

    @property
    def last_timestamp(self) -> int | None:
        """Open time (UTC ms) of the last source bar fed, or None."""
        return self._last_ts

    def update(self, bars: Candles | OHLCVBar) -> Candles:
        """Feed source bars (a ``Candles`` chunk or one ``OHLCVBar``); return finished buckets.

        Bars must continue the stream in time order on the source grid (``ValueError``
        otherwise, and the resampler is left unchanged).
        """
        chunk = self._as_candles(bars)
        _check_order(chunk.timestamp, self._source_ms, self._last_ts)
        if len(chunk) == 0:
            return Candles.empty()
        ts = chunk.timestamp
        if self._first_ts is None:
            self._first_ts = int(ts[0])
        self._last_ts = int(ts[-1])
        last_bucket = int(ts[-1] - ts[-1] % self._target_ms)
        pending = self._pending
        if pending is not None and pending.bucket == last_bucket and not self._ends(ts[-1]):
            pending.chunks.append(chunk)
            return Candles.empty()
        if pending is not None:
            chunk = Candles.concat([*pending.chunks, chunk])
        self._pending = None
        out, starts = _aggregate(chunk, self._target_ms)
        if not self._ends(ts[-1]):
            tail = int(starts[-1])
            self._pending = _Pending(int(out.timestamp[-1]), [chunk[tail:]])
            out = out[: len(out) - 1]
        return self._emit(out)

    def flush(self, partial: bool | None = None) -> Candles:
        """End the stream: the open bucket if ``partial`` (default: the constructor's)."""
        partial = self.partial if partial is None else partial
        pending, self._pending = self._pending, None
        if pending is None or not partial:
            return Candles.empty()
        out, _ = _aggregate(Candles.concat(pending.chunks), self._target_ms)
        return self._emit(out)

    def _ends(self, ts: int) -> bool:
        """Whether a bar opening at ``ts`` is the last source slot of its bucket."""
        return (int(ts) + self._source_ms) % self._target_ms == 0

    def _emit(self, out: Candles) -> Candles:
        if len(out) and not self._emitted_any:
            self._emitted_any = True
            if not self.partial and self._first_ts != int(out.timestamp[0]):
                return out[1:]
        return out

    def _as_candles(self, bars: Candles | OHLCVBar) -> Candles:
        if isinstance(bars, Candles):
            return bars
        if isinstance(bars, OHLCVBar):
            if bars.timeframe != self.source:
                raise ValueError(
                    f"bar has timeframe {bars.timeframe}, this resampler reads {self.source}; "
                    "use one resampler per source timeframe"
                )
            values = [getattr(bars, c) for c in CANDLE_COLUMNS]
            return Candles(*(np.asarray([v]) for v in values))
        raise TypeError(f"update() takes Candles or an OHLCVBar, got {type(bars).__name__}")
