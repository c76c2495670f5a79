"""Seed 003's StandardizedDataProvider: the full ``BaseDataInput`` at ``t``, and its tensors.

For a symbol at ``t`` (UTC ms) :meth:`StandardizedDataProvider.build` reads from the store,
for each stream of the spec, the candles closed at ``t`` within the last ``history_bars``
bars, and fills in everything else seed 003 lists:

- ``technical_indicators``: the raw indicator feature set
  (:func:`~pivotal.features.indicators.compute_indicator_features`) of each primary
  timeframe's newest closed candle, keyed ``"<timeframe>/<column>"`` (``"1m/rsi"``); NaN
  while an indicator warms up;
- ``pivot_points``: the Williams pivots (all levels) of ``pivot_timeframe``'s closed
  candles that are confirmed by ``t`` (a pivot is known at its confirm bar's close);
- ``cob_data``: the newest snapshot at or before ``t`` from its COB source: by default the
  snapshots stored in the store (:class:`StoredCOB`: what a live collector stored, or what
  ``pivotal data import`` computed from recorded depth; none stored, none given), else the
  :class:`COBHistory` (or other :class:`COBSource`) passed as ``cob``;
- ``last_predictions``: each model's newest output made at or before ``t`` from a
  :class:`PredictionLog`;
- ``market_microstructure``: order-flow sums over the trades of ``[t - flow_window_ms, t)``
  (aggressive buy/sell volume, trade count, large trades; empty without stored trades).

:meth:`StandardizedDataProvider.encode` turns that into the model's two tensors: ``x`` from
the :class:`InputEncoder` with the per-candle columns of :func:`candle_columns` computed on
the same closed candles, and ``context`` from the :class:`ContextEncoder`.

**Equal to the bulk path.** Every column is causal, so when the history read reaches back
to the first stored candle (``history_bars`` large enough), ``encode(symbol, t).x`` equals
sample ``t`` of an :class:`EncodedInputDataset` built over the whole stored series with
``candle_columns`` as its extras (tested). With a shorter history the indicator columns
converge to the same values after their warm-up (EMA-type seeding decays geometrically; the
OBV column is a windowed share, VWAP restarts each session), while the highest pivot levels
may differ, since they depend on long history: pick ``history_bars`` accordingly.

**Gaps.** The history read at ``t`` never reaches back past a gap of more than
``max_missing_bars`` bars (:func:`~pivotal.features.inputs.builder.closed_window`): after a
gap the indicators and pivots start again, as in the bulk path, and a stream whose newest
closed candle is before a gap that reaches ``t`` is missing (validation says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import BaseDataInput
from pivotal.data.series import SeriesKey, normalize_exchange
from pivotal.data.store import MarketDataStore
from pivotal.features.indicators.feature_set import compute_indicator_features
from pivotal.features.inputs.builder import build_input, closed_window
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.context import MICROSTRUCTURE_KEYS, ContextEncoder
from pivotal.features.inputs.encoder import InputEncoder
from pivotal.features.inputs.history import COBSource, PredictionLog, cob_source
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.orderbook.order_flow import OrderFlowConfig, order_flow
from pivotal.features.pivots.williams import to_pivot_points, williams_pivots

__all__ = ["EncodedInput", "StandardizedDataProvider"]


@dataclass(frozen=True, slots=True)
class EncodedInput:
    """One encoded sample: ``x`` ``(streams, frames, channels)``, ``context`` ``(size,)`` and
    the ``BaseDataInput`` they were encoded from."""

    x: torch.Tensor
    context: torch.Tensor
    input: BaseDataInput


@dataclass(frozen=True, slots=True)
class _Derived:
    indicators: Mapping[str, np.ndarray]
    pivots: pd.DataFrame | None


class StandardizedDataProvider:
    """Builds and encodes the standardized input from a store (see the module docstring)."""

    def __init__(
        self,
        store: MarketDataStore,
        exchange: str,
        spec: InputSpec,
        *,
        columns: ColumnsConfig | None = None,
        context: ContextEncoder | None = None,
        history_bars: int = 2_000,
        pivot_timeframe: Timeframe | str | None = None,
        cob: COBSource | None = None,
        predictions: PredictionLog | None = None,
        flow_window_ms: int = 60_000,
        flow: OrderFlowConfig | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        if history_bars < spec.frames:
            raise ValueError(
                f"history_bars ({history_bars}) must be at least the spec's frames "
                f"({spec.frames}); more gives the indicators and pivots their warm-up"
            )
        if flow_window_ms < 1:
            raise ValueError(f"flow_window_ms must be >= 1, got {flow_window_ms}")
        self.store = store
        self.exchange = normalize_exchange(exchange)
        self.spec = spec
        self.columns = columns or ColumnsConfig()
        self.context = context or ContextEncoder(spec.prediction_sources)
        self.history_bars = history_bars
        self.max_missing_bars = max_missing_bars
        if pivot_timeframe is None:
            pivot_timeframe = Timeframe.M1 if Timeframe.M1 in spec.timeframes else None
            pivot_timeframe = pivot_timeframe or spec.timeframes[0]
        self.pivot_timeframe = Timeframe.parse(pivot_timeframe)
        if self.pivot_timeframe not in spec.timeframes:
            raise ValueError(
                f"pivot_timeframe {self.pivot_timeframe} is not one of the spec's timeframes "
                f"{[str(tf) for tf in spec.timeframes]}"
            )
        self.cob = cob if cob is not None else cob_source(store, self.exchange)
        self.predictions = predictions if predictions is not None else PredictionLog()
        self.flow_window_ms = flow_window_ms
        self.flow = flow or OrderFlowConfig()
        self.encoder = InputEncoder(spec, self.columns.layout())

    # -- reading --------------------------------------------------------------------------
    def _closed(self, symbol: Symbol, tf: Timeframe, t: int) -> Candles:
        start = t - self.history_bars * tf.ms
        candles = self.store.read_candles(SeriesKey(self.exchange, symbol, tf), start, t)
        window = closed_window(
            candles, tf, t, self.history_bars, max_missing_bars=self.max_missing_bars
        )
        return candles[window]

    def _histories(self, symbol: Symbol, t: int) -> tuple[dict, dict]:
        primary = {tf: self._closed(symbol, tf, t) for tf in self.spec.timeframes}
        reference: dict[Timeframe, Candles] = {}
        if self.spec.reference_symbol is not None:
            reference = {
                tf: self._closed(self.spec.reference_symbol, tf, t)
                for tf in self.spec.reference_timeframes
            }
        return primary, reference

    def _microstructure(self, symbol: Symbol, t: int) -> dict[str, float]:
        trades = self.store.read_trades(self.exchange, symbol, t - self.flow_window_ms, t)
        if not len(trades):
            return {}
        flow = order_flow(trades, self.flow)
        return {key: float(np.sum(getattr(flow, key))) for key in MICROSTRUCTURE_KEYS}

    # -- public -------------------------------------------------------------------------
    def build(self, symbol: Symbol | str, t: int) -> BaseDataInput:
        """The ``BaseDataInput`` of ``symbol`` at ``t``; not validated (encode validates)."""
        return self._build(Symbol.parse(symbol), int(t))[0]

    def _derive(self, history: Candles, tf: Timeframe) -> _Derived:
        """Raw indicators and pivots of one stream's closed history, computed once per build
        and shared by the input's parts and the encoded columns."""
        cfg = self.columns
        gaps = {"step_ms": tf.ms, "max_missing_bars": self.max_missing_bars}
        indicators = compute_indicator_features(history, cfg.indicator, allow_short=True, **gaps)
        pivots = None
        if cfg.pivots or tf == self.pivot_timeframe:
            pivots = williams_pivots(
                history.high,
                history.low,
                levels=cfg.pivot_levels,
                strength=cfg.pivot_strength,
                timestamps=history.timestamp,
                **gaps,
            )
        return _Derived(indicators, pivots)

    def _build(self, symbol: Symbol, t: int) -> tuple[BaseDataInput, dict, dict]:
        primary, reference = self._histories(symbol, t)
        derived = {tf: self._derive(c, tf) for tf, c in primary.items() if len(c)}
        latest = {
            f"{tf}/{name}": float(values[-1])
            for tf, d in derived.items()
            for name, values in d.indicators.items()
        }
        pivots = []
        if self.pivot_timeframe in derived:
            pivot_candles = primary[self.pivot_timeframe]
            pivots = to_pivot_points(
                derived[self.pivot_timeframe].pivots,
                symbol,
                pivot_candles.timestamp,
                bar_ms=self.pivot_timeframe.ms,
            )
        inp = build_input(
            primary,
            symbol,
            t,
            self.spec,
            reference=reference if self.spec.reference_symbol is not None else None,
            cob_data=self.cob.latest(symbol, t),
            technical_indicators=latest,
            pivot_points=pivots,
            last_predictions=self.predictions.latest(symbol, t),
            market_microstructure=self._microstructure(symbol, t),
            max_missing_bars=self.max_missing_bars,
        )
        return inp, primary, derived

    def encode(self, symbol: Symbol | str, t: int) -> EncodedInput:
        """Build, validate (``DataError`` listing what is missing) and encode the input."""
        symbol = Symbol.parse(symbol)
        t = int(t)
        inp, primary, derived = self._build(symbol, t)
        extra = {}
        for tf, d in derived.items():
            history = primary[tf]
            snapshots = ()
            if self.columns.cob:
                snapshots = self.cob.between(symbol, int(history.timestamp[0]), t)
            layout, matrix = candle_columns(
                history,
                tf,
                self.columns,
                snapshots,
                indicators=d.indicators,
                pivots=d.pivots,
                max_missing_bars=self.max_missing_bars,
            )
            rows = len(inp.ohlcv[tf]) if tf in inp.ohlcv else 0
            extra[tf] = (layout, matrix[len(history) - rows :])
        x = self.encoder.encode(inp, extra)
        return EncodedInput(x=x, context=self.context.encode(inp), input=inp)
