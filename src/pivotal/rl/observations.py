"""The market part of the environment's observations, built once in bulk (Qlib's interpreter).

:class:`MarketObservations` turns candles into Stage 2's encoded, standardized input for
every step: step ``i`` is the ``i``-th anchor candle close at which every stream has
``frames`` closed candles (the :class:`~pivotal.features.inputs.EncodedInputDataset`
sample ``i``). Per step it gives ``(frames, features)`` float32, ``features = streams ×
channels`` flattened per frame (stream-major: all channels of the anchor, then the next
stream's), standardized per channel with a :class:`~pivotal.features.scalers.StandardScaler`:

- ``fit_scaler(train_until_ms)`` fits on samples with ``time < train_until_ms`` only
  (leakage control: nothing after the training span shapes the scaling), or
- a fitted scaler (e.g. a checkpoint's) is passed in for evaluation.

Windows come from the dataset's vectorized ``get_batch`` for a whole array of steps (one
call for all environments of a vector env); :meth:`MarketObservations.precompute` keeps a
range materialized so that a step is one fancy-index. Optional ``extra`` per-step features
(the PivotCNN's predictions and hidden states) are joined by exact close time.

Gaps (:mod:`pivotal.core.gaps`): the per-candle columns restart after every gap, and
:attr:`MarketObservations.valid` is False at the steps whose window (in any stream) would hold
bars from both sides of a gap (the first ``frames - 1`` steps after one, or a stream whose
newest candle is before a gap): an episode must not start there (within an episode that
stops at the last bar before a gap, every later step is valid again).

Everything here is causal: step ``i`` reads candles closed at ``times[i]`` and columns
computed from them only (see :mod:`pivotal.features.inputs.columns`); NaN anywhere in what
is returned raises :class:`~pivotal.core.errors.DataError` naming the step's time and the
feature, so an agent is never fed NaN.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.dataset import EncodedInputDataset
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import format_time
from pivotal.features.scalers import StandardScaler

__all__ = ["STATE_FEATURES", "ExtraTable", "MarketObservations"]

Int64Array = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

#: Per-step features the environment appends (position state), broadcast to every frame.
STATE_FEATURES: tuple[str, ...] = ("side", "position_share", "unrealized_share", "time_in_trade")
#: ``(times int64 (n,), values float32 (n, k))`` or with names as a third item.
ExtraTable = (
    tuple[npt.ArrayLike, npt.ArrayLike] | tuple[npt.ArrayLike, npt.ArrayLike, tuple[str, ...]]
)


class MarketObservations:
    """Encoded, standardized market windows for every step of a candle history.

    ``candles`` maps each timeframe (anchor and streams) to the symbol's candles; ``spec``
    names the timeframes in encoding order (``spec.timeframes``; use ``min_frames ==
    frames``), ``anchor`` the one whose closes are the steps (default: the first).
    ``columns`` selects the per-candle columns (``None``: :class:`ColumnsConfig` defaults,
    as training uses). ``scaler``: a fitted :class:`StandardScaler` over the channel layout,
    or ``None`` and :meth:`fit_scaler` before reading. ``extra``: ``(times, values)`` or
    ``(times, values, names)`` per-step features joined by exact close time.
    """

    def __init__(
        self,
        candles: Mapping[Timeframe | str, Candles],
        spec: InputSpec,
        *,
        anchor: Timeframe | str | None = None,
        columns: ColumnsConfig | None = None,
        scaler: StandardScaler | None = None,
        extra: ExtraTable | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        data = {Timeframe.parse(tf): c for tf, c in candles.items()}
        missing = [str(tf) for tf in spec.timeframes if tf not in data]
        if missing:
            raise ValueError(
                f"candles missing for timeframe(s) {missing}; the spec encodes "
                f"{[str(t) for t in spec.timeframes]}"
            )
        if spec.min_frames != spec.frames:
            raise ValueError(
                f"observations need full windows: use min_frames == frames ({spec.frames}), "
                f"got min_frames={spec.min_frames}"
            )
        anchor_tf = spec.timeframes[0] if anchor is None else Timeframe.parse(anchor)
        for tf in spec.timeframes:
            _check_candles(data[tf], tf)
        cfg = columns or ColumnsConfig()
        per_candle = {
            tf: candle_columns(data[tf], tf, cfg, max_missing_bars=max_missing_bars)
            for tf in spec.timeframes
        }
        anchor_candles = data[anchor_tf]
        start = int(anchor_candles.timestamp[0])
        end = int(anchor_candles.timestamp[-1]) + anchor_tf.ms
        self.dataset = EncodedInputDataset(
            spec,
            {tf: data[tf] for tf in spec.timeframes},
            start,
            end,
            anchor=anchor_tf,
            extra=per_candle,
            max_missing_bars=max_missing_bars,
        )
        self.spec = spec
        self.max_missing_bars = max_missing_bars
        #: per step, False where the market window would cross a gap (module docstring)
        self.valid: npt.NDArray[np.bool_] = self.dataset.valid
        self.anchor = anchor_tf
        self.candles = anchor_candles
        self.frames = spec.frames
        layout = self.dataset.layout
        self.channels = layout.channels
        self.streams = layout.streams
        n = len(self.dataset)
        self.times: Int64Array = self.dataset.times(np.arange(n, dtype=np.int64))
        #: anchor candle index of each step (``candles.timestamp[bars[i]] + anchor.ms == times[i]``)
        self.bars: Int64Array = np.searchsorted(
            anchor_candles.timestamp, self.times - anchor_tf.ms
        ).astype(np.int64)
        self.opens: Float64Array = anchor_candles.open[self.bars]
        self.highs: Float64Array = anchor_candles.high[self.bars]
        self.lows: Float64Array = anchor_candles.low[self.bars]
        self.closes: Float64Array = anchor_candles.close[self.bars]
        self.market_features = len(self.streams) * len(self.channels)
        self.market_names: tuple[str, ...] = tuple(
            f"{stream}:{channel}" for stream in self.streams for channel in self.channels.names
        )
        self._mean32 = np.zeros(len(self.channels), dtype=np.float32)
        self._std32 = np.ones(len(self.channels), dtype=np.float32)
        self.scaler: StandardScaler | None = None
        if scaler is not None:
            self.use_scaler(scaler)
        self._extra_rows, self._extra_values, self.extra_names = self._join_extra(extra)
        self._cache: Float32Array | None = None
        self._cache_lo = 0

    # -- layout ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times)

    @property
    def extra_width(self) -> int:
        return len(self.extra_names)

    @property
    def feature_names(self) -> list[str]:
        """Names of an environment observation's last axis: market, state, then extra."""
        return [*self.market_names, *STATE_FEATURES, *self.extra_names]

    @property
    def width(self) -> int:
        """Length of an environment observation's last axis (``len(feature_names)``)."""
        return self.market_features + len(STATE_FEATURES) + self.extra_width

    def step_at(self, time_ms: int) -> int:
        """The step whose close time is ``time_ms``; ``ValueError`` when there is none."""
        i = int(np.searchsorted(self.times, time_ms))
        if i >= len(self.times) or int(self.times[i]) != int(time_ms):
            raise ValueError(f"no step closes at {format_time(int(time_ms))}")
        return i

    # -- scaling ----------------------------------------------------------------------------
    def fit_scaler(self, train_until_ms: int, *, sample: int = 4096) -> StandardScaler:
        """Fit a per-channel :class:`StandardScaler` on the steps with ``time <
        train_until_ms`` only (at most ``sample`` of the valid ones, evenly spaced, as
        training does), use it from now on and return it."""
        train = int(np.searchsorted(self.times, int(train_until_ms), side="left"))
        if train == 0:
            raise ValueError(
                f"no step closes before {format_time(int(train_until_ms))}: the first is at "
                f"{format_time(int(self.times[0]))}; fit on a later time"
            )
        usable = np.flatnonzero(self.valid[:train])  # no window across a gap
        if not len(usable):
            usable = np.arange(train)
        picks = usable[np.linspace(0, len(usable) - 1, min(int(sample), len(usable))).astype(int)]
        x = self.dataset.get_batch(picks).numpy().astype(np.float64)
        scaler = StandardScaler().fit(x.reshape(-1, len(self.channels)), self.channels, slice(None))
        self.use_scaler(scaler)
        return scaler

    def use_scaler(self, scaler: StandardScaler) -> None:
        """Standardize with ``scaler`` (fitted on this channel layout) from now on."""
        if not isinstance(scaler, StandardScaler):
            raise TypeError(f"scaler must be a StandardScaler, got {type(scaler).__name__}")
        if scaler.layout is None:
            raise ValueError("the scaler is not fitted: fit it, or call fit_scaler(...)")
        scaler.layout.check(self.channels, "MarketObservations scaler")
        self.scaler = scaler
        self._mean32 = np.asarray(scaler.mean, dtype=np.float32)
        self._std32 = np.asarray(scaler.std, dtype=np.float32)
        self._cache = None

    # -- reading ----------------------------------------------------------------------------
    def precompute(self, start: int = 0, stop: int | None = None) -> int:
        """Materialize the standardized windows of steps ``[start, stop)`` so that reading
        them is one index operation; returns the bytes held (``steps × frames × features ×
        4``). Steps outside the range are still computed on demand."""
        stop = len(self) if stop is None else int(stop)
        if not 0 <= start < stop <= len(self):
            raise ValueError(f"precompute range [{start}, {stop}) is outside [0, {len(self)})")
        self._cache = None
        cache = np.empty((stop - start, self.frames, self.market_features), dtype=np.float32)
        chunk = 4096
        for lo in range(start, stop, chunk):
            hi = min(lo + chunk, stop)
            cache[lo - start : hi - start] = self.market(np.arange(lo, hi, dtype=np.int64))
        self._cache, self._cache_lo = cache, start
        return int(cache.nbytes)

    def market(self, steps: npt.ArrayLike) -> Float32Array:
        """Standardized windows ``(len(steps), frames, market_features)`` float32 (new array).

        Raises ``DataError`` naming the step time and feature on NaN (e.g. a scaler with NaN
        parameters), ``ValueError`` if no scaler is set."""
        if self.scaler is None:
            raise ValueError(
                "no scaler: call fit_scaler(train_until_ms) or pass a fitted scaler first"
            )
        idx = np.asarray(steps, dtype=np.int64)
        cache = self._cache
        if cache is not None:
            rel = idx - self._cache_lo
            if rel.size and rel.min() >= 0 and rel.max() < len(cache):
                return cache[rel]
        x = self.dataset.get_batch(idx).numpy()  # (n, streams, frames, channels)
        np.subtract(x, self._mean32, out=x)
        np.divide(x, self._std32, out=x)
        out = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(
            len(idx), self.frames, self.market_features
        )
        if np.isnan(out).any():
            self._raise_nan(idx, out, self.market_names)
        return out

    def extra(self, steps: npt.ArrayLike) -> Float32Array:
        """Extra features ``(len(steps), k)`` of the steps (``k = 0`` without extras).

        ``DataError`` when a step's close time has no extra row or its row holds NaN."""
        idx = np.asarray(steps, dtype=np.int64)
        if self._extra_values is None:
            return np.empty((len(idx), 0), dtype=np.float32)
        rows = self._extra_rows[idx]
        if rows.size and rows.min() < 0:
            first = int(idx[np.argmax(rows < 0)])
            raise DataError(
                f"the extra features have no row for the step closing at "
                f"{format_time(int(self.times[first]))} (step {first}); compute them for every "
                "step the environment uses"
            )
        values = self._extra_values[rows]
        if np.isnan(values).any():
            self._raise_nan(idx, values[:, None, :], self.extra_names)
        return values

    def check_extra_covers(self, start: int, stop: int) -> None:
        """Raise ``DataError`` if any step in ``[start, stop)`` has no extra row."""
        if self._extra_values is None:
            return
        missing = np.flatnonzero(self._extra_rows[start:stop] < 0)
        if missing.size:
            self.extra(np.array([start + int(missing[0])], dtype=np.int64))

    def observe(self, steps: npt.ArrayLike, state: npt.ArrayLike) -> Float32Array:
        """Full observations ``(n, frames, width)``: market windows, the ``(n, 4)`` position
        ``state`` (:data:`STATE_FEATURES`) and the extra features, both broadcast over the
        frames."""
        idx = np.asarray(steps, dtype=np.int64)
        st = np.asarray(state, dtype=np.float32)
        out = np.empty((len(idx), self.frames, self.width), dtype=np.float32)
        m = self.market_features
        s = len(STATE_FEATURES)
        out[:, :, :m] = self.market(idx)
        if not np.isfinite(st).all():
            self._raise_nan(idx, st[:, None, :], STATE_FEATURES)
        out[:, :, m : m + s] = st[:, None, :]
        if self._extra_values is not None:
            out[:, :, m + s :] = self.extra(idx)[:, None, :]
        return out

    # -- internals --------------------------------------------------------------------------
    def _raise_nan(
        self, idx: Int64Array, values: np.ndarray, names: tuple[str, ...] | list[str]
    ) -> None:
        where = np.argwhere(~np.isfinite(values))[0]
        step = int(idx[where[0]])
        raise DataError(
            f"observation at {format_time(int(self.times[step]))} (step {step}) has NaN or "
            f"infinity in feature {names[int(where[-1])]!r}; an agent must never see NaN: fix "
            "the input (candles, extra features or scaler)"
        )

    def _join_extra(
        self, extra: ExtraTable | None
    ) -> tuple[Int64Array, Float32Array | None, tuple[str, ...]]:
        n = len(self.times)
        if extra is None:
            return np.zeros(n, dtype=np.int64), None, ()
        if len(extra) not in (2, 3):
            raise TypeError("extra must be (times, values) or (times, values, names)")
        times = np.asarray(extra[0])
        values = np.asarray(extra[1], dtype=np.float32)
        if times.ndim != 1 or not np.issubdtype(times.dtype, np.integer):
            raise TypeError(f"extra times must be a 1-D int64 array of UTC ms, got {times.dtype}")
        times = times.astype(np.int64, copy=False)
        if values.ndim != 2 or values.shape[0] != len(times):
            raise ValueError(
                f"extra values must be (len(times), k) = ({len(times)}, k), got {values.shape}"
            )
        if len(times) > 1 and np.any(np.diff(times) <= 0):
            raise ValueError("extra times must be strictly increasing (one row per close time)")
        k = values.shape[1]
        names = tuple(extra[2]) if len(extra) == 3 else tuple(f"extra_{j}" for j in range(k))
        if len(names) != k:
            raise ValueError(f"extra has {k} columns but {len(names)} names")
        pos = np.searchsorted(times, self.times)
        found = pos < len(times)
        found[found] = times[pos[found]] == self.times[found]
        rows = np.where(found, pos, -1).astype(np.int64)
        return rows, values, names


def _check_candles(candles: Candles, timeframe: Timeframe) -> None:
    """``DataError`` naming the first candle with NaN, infinite or non-positive prices, or a
    NaN/infinite/negative volume (features of such a candle would be NaN)."""
    prices = np.stack([candles.open, candles.high, candles.low, candles.close])
    bad = ~(np.isfinite(prices) & (prices > 0)).all(axis=0)
    bad |= ~(np.isfinite(candles.volume) & (candles.volume >= 0))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{timeframe} candle opening at {format_time(int(candles.timestamp[first]))} (row "
            f"{first}) has a NaN, infinite or non-positive value ({int(bad.sum())} such candles); "
            "repair or drop them before building observations"
        )
