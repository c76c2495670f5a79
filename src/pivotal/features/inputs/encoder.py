"""Encoding a ``BaseDataInput`` into one float32 tensor with a fixed, documented layout.

Shape ``(n_streams, frames, n_channels)``: streams are the spec's timeframes in order, then
its reference timeframes (``InputSpec.stream_names``: ``"1s", "1m", "1h", "1d", "reference
1s"`` for the seed's full set); frames run oldest → newest, the last frame being the newest
candle closed at the input's time. Channels, in order (:data:`BASE_CHANNELS`):

===============  ==================================================================
``open_rel``     open / close of the stream's newest candle − 1
``high_rel``     high / close of the stream's newest candle − 1
``low_rel``      low / close of the stream's newest candle − 1
``close_rel``    close / close of the stream's newest candle − 1 (0 at the last frame)
``log_volume``   log1p(volume), volume in the base asset
``log_return``   log(close / previous close) within the window; 0 at the first frame
``present``      1 for a real candle, 0 for left-padding
extras           the encoder's ``extra`` feature columns (primary streams only; 0 on
                 reference streams); NaN (indicator warm-up) becomes 0
===============  ==================================================================

A stream with fewer than ``frames`` (but at least ``min_frames``) candles is left-padded:
padded frames are 0 in every channel. Prices are divided in float64 and cast to float32.
COB, pivots and predictions are validated (when the spec requires them) but not encoded
here; they get their own encoders. :class:`~pivotal.features.inputs.dataset.
EncodedInputDataset` produces the same tensors in bulk with the same arithmetic
(:func:`source_table`, :func:`encode_windows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import BaseDataInput
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import require_complete
from pivotal.features.scalers import FeatureLayout

__all__ = [
    "BASE_CHANNELS",
    "ExtraFeatures",
    "InputEncoder",
    "InputLayout",
    "encode_windows",
    "source_table",
]

BASE_CHANNELS: tuple[str, ...] = (
    "open_rel",
    "high_rel",
    "low_rel",
    "close_rel",
    "log_volume",
    "log_return",
    "present",
)
_LOG_RETURN = BASE_CHANNELS.index("log_return")
_PRESENT = BASE_CHANNELS.index("present")

ExtraFeatures = Mapping[Timeframe, tuple[FeatureLayout, npt.NDArray[np.float64]]]
"""Per-candle feature columns by timeframe: ``(layout, matrix)`` with ``matrix`` of shape
``(len(candles), len(layout))`` aligned row for row with that timeframe's candles."""


@dataclass(frozen=True, slots=True)
class InputLayout:
    """Names and order of the encoded tensor's axes: ``shape == (streams, frames, channels)``."""

    streams: tuple[str, ...]
    frames: int
    channels: FeatureLayout

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.streams), self.frames, len(self.channels))

    def index(self, stream: str, channel: str) -> tuple[int, int]:
        """``(stream_index, channel_index)`` for names such as ``("1h", "close_rel")``."""
        if stream not in self.streams:
            raise ValueError(f"unknown stream {stream!r}; the layout has {list(self.streams)}")
        if channel not in self.channels.names:
            raise ValueError(f"unknown channel {channel!r}; the layout has {self.channels.names}")
        return self.streams.index(stream), self.channels.names.index(channel)


def check_extra(matrix: npt.ArrayLike, rows: int, layout: FeatureLayout, where: str) -> np.ndarray:
    """``matrix`` as float64 ``(rows, len(layout))``; refuses infinities (NaN is allowed)."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (rows, len(layout)):
        raise ValueError(
            f"{where}: extra features must have shape ({rows}, {len(layout)}) aligned row for "
            f"row with the candles, got {array.shape}"
        )
    if np.isinf(array).any():
        raise ValueError(f"{where}: extra features contain infinity; use NaN for 'unknown'")
    return array


def source_table(candles: Candles, extra: np.ndarray | None, width: int, pad: int) -> np.ndarray:
    """Per-candle float64 table ``(pad + n, width)`` the windows are cut from.

    Columns: open, high, low, close, log1p(volume), log(close / previous close) (0 at row 0),
    1.0 (present), then ``extra`` with NaN → 0 (zeros when None). The first ``pad`` rows are
    all zero (left-padding).
    """
    n = len(candles)
    table = np.zeros((pad + n, width), dtype=np.float64)
    body = table[pad:]
    body[:, 0] = candles.open
    body[:, 1] = candles.high
    body[:, 2] = candles.low
    body[:, 3] = candles.close
    body[:, 4] = np.log1p(candles.volume)
    if n > 1:
        body[1:, _LOG_RETURN] = np.log(candles.close[1:] / candles.close[:-1])
    body[:, _PRESENT] = 1.0
    if extra is not None and extra.shape[1]:
        body[:, len(BASE_CHANNELS) :] = np.nan_to_num(extra, nan=0.0)
    return table


def encode_windows(
    windows: np.ndarray,
    last_close: np.ndarray,
    n_present: np.ndarray,
    out: np.ndarray,
) -> None:
    """Encode ``windows`` ``(batch, frames, width)`` of :func:`source_table` rows into ``out``.

    ``last_close`` ``(batch,)`` is each window's newest close; ``n_present`` ``(batch,)`` its
    number of real candles (the rest, at the start, is padding); ``out`` a float32
    ``(batch, frames, width)`` array or view, written in place. ``windows`` must be a scratch
    copy: its price columns are overwritten (divided in place to spare a temporary).
    """
    frames = windows.shape[1]
    prices = windows[..., :4]
    np.divide(prices, last_close[:, None, None], out=prices)
    np.subtract(prices, 1.0, out=out[..., :4], casting="same_kind")
    out[..., 4:] = windows[..., 4:]
    out[:, 0, _LOG_RETURN] = 0.0
    for i in np.flatnonzero(n_present < frames):
        out[i, : frames - int(n_present[i])] = 0.0


class InputEncoder:
    """Turns a validated ``BaseDataInput`` into a ``(streams, frames, channels)`` tensor.

    ``extra`` declares per-candle feature columns (indicators aligned with each primary
    timeframe's candles) appended after :data:`BASE_CHANNELS`; :meth:`encode` then needs them
    for every primary timeframe.
    """

    def __init__(self, spec: InputSpec, extra: FeatureLayout | None = None) -> None:
        self.spec = spec
        self.extra = extra
        names = BASE_CHANNELS + (extra.names if extra is not None else ())
        self.layout = InputLayout(spec.stream_names, spec.frames, FeatureLayout(names))

    @property
    def width(self) -> int:
        return len(self.layout.channels)

    def extra_for(self, extra: ExtraFeatures | None, tf: Timeframe, rows: int) -> np.ndarray | None:
        """The checked extra matrix of primary timeframe ``tf`` (``None`` without extras)."""
        if self.extra is None:
            if extra:
                raise ValueError("extra features given, but the encoder was built without extra")
            return None
        if not extra or tf not in extra:
            raise ValueError(f"the encoder needs extra features {self.extra.names} for {tf}")
        layout, matrix = extra[tf]
        self.extra.check(layout, f"extra features for {tf}")
        return check_extra(matrix, rows, layout, f"extra features for {tf}")

    def encode(self, inp: BaseDataInput, extra: ExtraFeatures | None = None) -> torch.Tensor:
        """Validate ``inp`` (``DataError`` listing what is missing) and encode it.

        ``extra`` maps each primary timeframe to ``(layout, matrix)`` aligned row for row with
        ``inp.ohlcv[tf]`` (slice full-history matrices with
        :func:`~pivotal.features.inputs.builder.closed_window`). Returns a new float32 tensor
        of shape ``self.layout.shape``.
        """
        require_complete(inp, self.spec)
        frames = self.spec.frames
        out = np.zeros((1, *self.layout.shape), dtype=np.float32)
        for s, (is_ref, tf) in enumerate(self.spec.streams):
            candles = (inp.reference_ohlcv if is_ref else inp.ohlcv)[tf]
            matrix = None if is_ref else self.extra_for(extra, tf, len(candles))
            start = max(0, len(candles) - frames)
            window = candles.rows(start, len(candles))
            n = len(window)
            rows = None if matrix is None else matrix[start:]
            table = source_table(window, rows, self.width, frames - n)
            encode_windows(table[None], window.close[-1:], np.array([n]), out[:, s])
        return torch.from_numpy(out[0])
