"""Building one ``BaseDataInput`` at time ``t`` (the one-at-a-time path).

Point in time: at ``t`` (UTC ms) a candle of timeframe ``tf`` is known when it has closed,
``timestamp + tf.ms <= t``; the builder takes the newest ``spec.frames`` of those per stream
(oldest first) and ignores everything later, so appending candles after ``t`` (or revising
the candle still open at ``t``) changes nothing it returns. Pivots are kept only when
confirmed at or before ``t`` and last predictions only when made at or before ``t``.
Candle windows are views of the arrays passed in, not copies.

Gaps (:mod:`pivotal.core.gaps`): a window never holds bars from both sides of a gap. It
starts at the first bar after the newest gap before ``t`` (so it may hold fewer than
``frames`` bars, which validation reports below ``min_frames``), and a stream whose newest
closed candle lies before a gap that reaches ``t`` contributes no window at all.

:class:`InputBuilder` does the same from a :class:`~pivotal.data.store.MarketDataStore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, gap_after, is_gap
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import BaseDataInput, COBData, ModelOutput, PivotPoint
from pivotal.data.series import SeriesKey, normalize_exchange
from pivotal.data.store import MarketDataStore
from pivotal.features.inputs.spec import InputSpec

__all__ = ["InputBuilder", "build_input", "closed_window", "input_at"]


def closed_window(
    candles: Candles,
    timeframe: Timeframe,
    t: int,
    frames: int,
    *,
    max_missing_bars: int | None = DEFAULT_MAX_MISSING_BARS,
) -> slice:
    """Row slice of the newest ``frames`` candles closed at ``t`` (``timestamp + tf.ms <= t``).

    ``candles`` must be sorted by open time. Use the slice on arrays aligned row for row with
    ``candles`` (indicator matrices) to get the rows that match the window. The window stays
    within one segment (module docstring): it is empty when a gap of more than
    ``max_missing_bars`` bars separates the newest closed candle from ``t``, and starts after
    the newest gap inside it. ``max_missing_bars=None`` ignores gaps.
    """
    tf = Timeframe.parse(timeframe)
    ts = candles.timestamp
    end = int(np.searchsorted(ts, t - tf.ms, side="right"))
    start = max(0, end - frames)
    if max_missing_bars is None or end == 0:
        return slice(start, end)
    if is_gap(int(ts[end - 1]), int(t), tf.ms, max_missing_bars):
        return slice(end, end)
    breaks = np.flatnonzero(gap_after(ts[start:end], tf.ms, max_missing_bars))
    if len(breaks):
        start += int(breaks[-1]) + 1
    return slice(start, end)


def _windows(
    candles_by_tf: Mapping[Timeframe, Candles],
    timeframes: Iterable[Timeframe],
    t: int,
    frames: int,
    max_missing_bars: int | None,
) -> dict[Timeframe, Candles]:
    parsed = {Timeframe.parse(tf): c for tf, c in candles_by_tf.items()}
    out = {}
    for tf in timeframes:
        window = slice(0, 0)
        if tf in parsed:
            window = closed_window(parsed[tf], tf, t, frames, max_missing_bars=max_missing_bars)
        if window.stop > window.start:
            out[tf] = parsed[tf].rows(window.start, window.stop)  # views, no re-check
    return out


def build_input(
    candles_by_tf: Mapping[Timeframe, Candles],
    symbol: Symbol | str,
    t: int,
    spec: InputSpec,
    *,
    reference: Mapping[Timeframe, Candles] | None = None,
    cob_data: COBData | None = None,
    technical_indicators: Mapping[str, float] | None = None,
    pivot_points: Iterable[PivotPoint] = (),
    last_predictions: Mapping[str, ModelOutput] | None = None,
    market_microstructure: Mapping[str, Any] | None = None,
    max_missing_bars: int | None = DEFAULT_MAX_MISSING_BARS,
) -> BaseDataInput:
    """The input for ``symbol`` at ``t`` (UTC ms): what ``spec`` asks for, known at ``t``.

    ``candles_by_tf`` and ``reference`` (the spec's reference symbol) map timeframes to sorted
    candle histories of any length; timeframes the spec does not name are ignored, and
    streams with no candle closed at ``t`` are left out (validation reports them). This does
    not validate: call :func:`~pivotal.features.inputs.validation.require_complete` (the
    encoder does).
    Refuses a COB snapshot taken after ``t``; drops pivots confirmed and predictions made
    after ``t``. Windows stay within one segment (module docstring; ``max_missing_bars=None``
    ignores gaps).
    """
    if isinstance(t, bool) or not isinstance(t, int | np.integer):
        raise TypeError(f"t must be UTC milliseconds as int, got {t!r}")
    t = int(t)
    ref_windows: dict[Timeframe, Candles] | None = None
    if reference is not None:
        ref_windows = {}
        if spec.reference_symbol is not None:
            ref_windows = _windows(
                reference, spec.reference_timeframes, t, spec.frames, max_missing_bars
            )
    return input_at(
        symbol,
        t,
        spec,
        _windows(candles_by_tf, spec.timeframes, t, spec.frames, max_missing_bars),
        reference_windows=ref_windows,
        cob_data=cob_data,
        technical_indicators=technical_indicators,
        pivot_points=pivot_points,
        last_predictions=last_predictions,
        market_microstructure=market_microstructure,
    )


def input_at(
    symbol: Symbol | str,
    t: int,
    spec: InputSpec,
    windows: Mapping[Timeframe, Candles],
    *,
    reference_windows: Mapping[Timeframe, Candles] | None = None,
    cob_data: COBData | None = None,
    technical_indicators: Mapping[str, float] | None = None,
    pivot_points: Iterable[PivotPoint] = (),
    last_predictions: Mapping[str, ModelOutput] | None = None,
    market_microstructure: Mapping[str, Any] | None = None,
) -> BaseDataInput:
    """The input for ``symbol`` at ``t`` (UTC ms) from candle ``windows`` already cut at
    ``t`` (:func:`build_input` cuts them; the market frame keeps them as bars arrive), with
    what is known at ``t`` only: refuses a COB snapshot taken after ``t``, drops pivots
    confirmed and predictions made after ``t``. ``reference_windows``: the spec's reference
    symbol's windows (None: no reference given)."""
    if cob_data is not None and cob_data.timestamp > t:
        raise ValueError(
            f"cob_data is a snapshot at {cob_data.timestamp}, after t={t}; pass the latest "
            "snapshot taken at or before t"
        )
    return BaseDataInput(
        symbol=Symbol.parse(symbol),
        timestamp=t,
        ohlcv=windows,
        reference_symbol=spec.reference_symbol if reference_windows is not None else None,
        reference_ohlcv=reference_windows or {},
        cob_data=cob_data,
        technical_indicators=technical_indicators or {},
        pivot_points=tuple(p for p in pivot_points if p.confirmed_at <= t),
        last_predictions={
            name: out for name, out in (last_predictions or {}).items() if out.timestamp <= t
        },
        market_microstructure=market_microstructure or {},
    )


class InputBuilder:
    """``build_input`` fed from a store: reads only the candles each stream needs.

    For each stream it reads candles opening in ``[t - lookback_factor * frames * tf.ms,
    t - tf.ms]``, so up to ``(lookback_factor - 1) * frames`` missing candles (outages) in
    that span still leave ``frames`` frames; a longer outage leaves fewer, which validation
    reports. With no gaps that large the result equals :func:`build_input` on the full series.
    """

    def __init__(
        self,
        store: MarketDataStore,
        exchange: str,
        spec: InputSpec,
        *,
        lookback_factor: int = 2,
        max_missing_bars: int | None = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        if lookback_factor < 1:
            raise ValueError(f"lookback_factor must be >= 1, got {lookback_factor}")
        self.store = store
        self.exchange = normalize_exchange(exchange)
        self.spec = spec
        self.lookback_factor = lookback_factor
        self.max_missing_bars = max_missing_bars

    def _read(self, symbol: Symbol, timeframes: Iterable[Timeframe], t: int) -> dict:
        out = {}
        for tf in timeframes:
            start = t - self.lookback_factor * self.spec.frames * tf.ms
            candles = self.store.read_candles(SeriesKey(self.exchange, symbol, tf), start, t)
            if len(candles):
                out[tf] = candles
        return out

    def build(self, symbol: Symbol | str, t: int, **parts: Any) -> BaseDataInput:
        """The input for ``symbol`` at ``t``; ``parts`` are passed to :func:`build_input`."""
        symbol = Symbol.parse(symbol)
        spec = self.spec
        reference = None
        if spec.reference_symbol is not None and spec.reference_timeframes:
            reference = self._read(spec.reference_symbol, spec.reference_timeframes, t)
        candles = self._read(symbol, spec.timeframes, t)
        parts.setdefault("max_missing_bars", self.max_missing_bars)
        return build_input(candles, symbol, t, spec, reference=reference, **parts)
