"""One encoded observation from rolling candle windows: the pushed twin of the bulk dataset.

:class:`ObservationBuilder` turns the :class:`~pivotal.features.inputs.rolling.RollingCandles`
of a symbol's timeframes at time ``t`` into the ``(streams, frames, channels)`` float32 array
that :class:`~pivotal.features.inputs.dataset.EncodedInputDataset` gives for the sample
closing at ``t`` when built over the whole history with ``extra`` = each stream's
:func:`~pivotal.features.inputs.columns.candle_columns`: the same layout, the same float64
arithmetic on the candles (:func:`~pivotal.features.inputs.encoder.encode_windows`), and
column values equal to the batch's within the streaming tolerance (rtol 1e-10, atol 1e-8
before the float32 cast). It is ``None`` exactly where the dataset has no valid sample at
``t``: ``t`` is not the close of an anchor candle, a stream has fewer than ``min_frames``
candles closed at ``t``, a stream's window would hold candles from both sides of a gap, or a
gap lies between a stream's newest closed candle and ``t`` (:mod:`pivotal.core.gaps`).

The cost is that of copying and encoding ``frames`` rows per stream; nothing depends on the
history's length. A stream that gained no candle since the builder's previous observation
reuses its encoded block (held rows never change), so a 1h stream is encoded once an hour.
Windows must fit in the rolling windows: ``frames <= capacity``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.encoder import BASE_CHANNELS, InputEncoder, encode_windows
from pivotal.features.inputs.rolling import RollingCandles
from pivotal.features.inputs.spec import InputSpec

__all__ = ["ObservationBuilder"]

_N_BASE = len(BASE_CHANNELS)
_LOG_VOLUME = BASE_CHANNELS.index("log_volume")
_LOG_RETURN = BASE_CHANNELS.index("log_return")
_PRESENT = BASE_CHANNELS.index("present")


class ObservationBuilder:
    """Encoded observations of ``spec`` from rolling windows (module docstring).

    ``anchor`` (default: the spec's first timeframe) is the timeframe whose closes are sample
    times, as in the dataset. ``columns`` (default ``ColumnsConfig()``) must be the column
    config of the primary streams' :class:`RollingCandles`: their rows are the extra channels.
    ``max_missing_bars`` sets the gap rule of the validity checks (the dataset's).
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        anchor: Timeframe | str | None = None,
        columns: ColumnsConfig | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        if spec.required:
            parts = ", ".join(sorted(p.value for p in spec.required))
            raise ValueError(
                f"the observation builder encodes candle streams only, but the spec requires "
                f"{parts}; use a spec with required=frozenset() for it"
            )
        self.spec = spec
        self.columns = columns or ColumnsConfig()
        self.encoder = InputEncoder(spec, self.columns.layout())
        self.layout = self.encoder.layout
        """The layout of every observation (equal to the dataset's)."""
        self.anchor = spec.timeframes[0] if anchor is None else Timeframe.parse(anchor)
        if self.anchor not in spec.timeframes:
            raise ValueError(f"anchor {self.anchor} is not one of the spec's {spec.stream_names}")
        self.max_missing_bars = max_missing_bars
        self._width = self.encoder.width
        # per stream: (rolling window, candles closed, encoded block) of the last observation;
        # held rows never change, so a stream without a new candle reuses its block
        self._cache: list[tuple[RollingCandles | None, int, np.ndarray]] = [
            (None, -1, np.empty(0, np.float32))
        ] * len(spec.streams)

    def observe(
        self,
        streams: Mapping[Timeframe, RollingCandles],
        t: int,
        reference: Mapping[Timeframe, RollingCandles] | None = None,
    ) -> npt.NDArray[np.float32] | None:
        """The observation closing at ``t`` (UTC ms), a new float32 array of
        ``layout.shape``, or None where the dataset has no valid sample (module docstring).
        ``streams`` holds the primary timeframes, ``reference`` the spec's reference
        timeframes (their extra channels are 0, as in the dataset). Raises ``ValueError``
        when a stream is missing, its columns differ from the builder's, or it holds fewer
        candles than a window needs (``frames`` > its capacity)."""
        t = int(t)
        spec = self.spec
        anchor = streams.get(self.anchor)
        if anchor is None:
            raise ValueError(f"observe needs the anchor stream {self.anchor}; got {list(streams)}")
        closed = anchor.closed_count(t)
        if not closed or int(anchor.timestamps[closed - 1]) + self.anchor.ms != t:
            return None  # the dataset samples anchor closes only
        out = np.empty(self.layout.shape, dtype=np.float32)
        for s, (is_ref, tf) in enumerate(spec.streams):
            source = (reference or {}) if is_ref else streams
            rolling = source.get(tf)
            if rolling is None:
                kind = f"reference {spec.reference_symbol} " if is_ref else ""
                raise ValueError(f"observe needs the {kind}{tf} stream; it is not given")
            if not is_ref and rolling.layout != self.encoder.extra:
                raise ValueError(
                    f"the {tf} stream's columns {rolling.layout.names} differ from the "
                    f"builder's {self.encoder.extra.names if self.encoder.extra else ()}"
                )
            if not self._encode(s, rolling, tf, t, out, with_columns=not is_ref):
                return None
        return out

    def _encode(
        self,
        s: int,
        rolling: RollingCandles,
        tf: Timeframe,
        t: int,
        out: np.ndarray,
        *,
        with_columns: bool,
    ) -> bool:
        """Write stream ``s`` of the observation into ``out``; False where it has none."""
        ends = rolling.first_index + rolling.closed_count(t)
        held, cached_ends, block = self._cache[s]
        if held is rolling and cached_ends == ends and self._fresh(rolling, tf, t, ends):
            out[s] = block
            return True
        window = self._window(rolling, tf, t, with_columns=with_columns)
        if window is None:
            return False
        table, last_close, present = window
        encode_windows(table, last_close, present, out[s : s + 1])
        self._cache[s] = (rolling, ends, out[s].copy())
        return True

    def _fresh(self, rolling: RollingCandles, tf: Timeframe, t: int, ends: int) -> bool:
        """Whether no gap separates the newest candle closed at ``t`` from ``t``."""
        if self.max_missing_bars is None:
            return True
        newest = int(rolling.timestamps[ends - rolling.first_index - 1])
        return (t - newest) // tf.ms - 1 <= self.max_missing_bars

    def _window(
        self, rolling: RollingCandles, tf: Timeframe, t: int, *, with_columns: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The stream's source-table window ``(1, frames, width)``, its newest close and its
        number of real rows; None where the dataset's sample would be missing or invalid."""
        frames = self.spec.frames
        end = rolling.closed_count(t)  # held rows closed at t
        ends = rolling.first_index + end  # candles closed at t since the first
        if ends < self.spec.min_frames:
            return None
        n = min(ends, frames)
        if end < n:
            raise ValueError(
                f"the {tf} window needs {n} candles closed at {t} but the rolling window "
                f"holds {end} of them (capacity {rolling.capacity}); raise the capacity to "
                f"at least the spec's {frames} frames"
            )
        last = end - 1
        first_abs = ends - n
        if self.max_missing_bars is not None:
            if rolling.segment_start(last) > first_abs:
                return None  # the window would hold bars from both sides of a gap
            newest = int(rolling.timestamps[last])
            if (t - newest) // tf.ms - 1 > self.max_missing_bars:
                return None  # a gap separates the newest closed candle from t
        start = end - n
        candles = rolling.candles(end).rows(start, end)
        table = np.zeros((1, frames, self._width), dtype=np.float64)
        body = table[0, frames - n :]
        body[:, 0] = candles.open
        body[:, 1] = candles.high
        body[:, 2] = candles.low
        body[:, 3] = candles.close
        body[:, _LOG_VOLUME] = np.log1p(candles.volume)
        if n > 1:
            body[1:, _LOG_RETURN] = np.log(candles.close[1:] / candles.close[:-1])
        body[:, _PRESENT] = 1.0
        if with_columns and self._width > _N_BASE:
            extra = body[:, _N_BASE:]
            extra[...] = rolling.column_rows(start, end)
            extra[np.isnan(extra)] = 0.0  # NaN (not known yet) -> 0, as source_table
        return table, candles.close[-1:].copy(), np.array([n])
