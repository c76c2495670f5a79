"""The base frame that stays current: what the orchestrator knows about the market.

A :class:`MarketFrame` holds, per symbol, bounded rolling windows of candles of any number of
timeframes (the newest ``capacity`` candles each, seed 003's 1,500 by default), COB snapshots
and trades, and a cursor ``known_until`` (UTC ms) per symbol. Only what the cursor has reached
is visible: a candle of timeframe ``tf`` once it has *closed* (``open + tf.ms <=
known_until``), a pivot once *confirmed* (its confirm bar closed), the newest COB snapshot
taken at or before the cursor, the trades of the window just before it.

**Pushed, incremental, bounded.** Candles are pushed as they close
(:meth:`~MarketFrame.append_candles`) and the cursor moves with :meth:`~MarketFrame.advance`.
Each candle is folded into its window once: its per-candle columns
(:class:`~pivotal.features.inputs.streaming_columns.StreamingCandleColumns`: the raw indicator
feature set, the scale-free indicator and newest-pivot columns) and the Williams pivots it
confirms are computed by the streaming twins at O(1) cost, so no work grows with the history.
Values equal the batch computations over the whole history
(:func:`~pivotal.features.indicators.compute_indicator_features`,
:func:`~pivotal.features.pivots.williams.williams_pivots`,
:func:`~pivotal.features.inputs.candle_columns`) within rtol 1e-10 / atol 1e-8, at every bar
and across gaps; they depend on the candles since the first one pushed, not on the window.
Re-appending a bar the frame holds is a no-op, so a replay may publish its bars through the
same subscription path as live. A replay may also :meth:`~MarketFrame.load` whole histories
up front: they are kept as a backlog (the caller's arrays, not copied) and fed into the
windows as the cursor reaches each candle's close, so nothing is derived ahead of the cursor.

**Gaps** (:mod:`pivotal.core.gaps`): indicators and pivots restart after every gap of more
than ``max_missing_bars`` bars (as if each segment were a separate series); an input's candle
windows never hold bars from both sides of a gap (they start after it, and a stream whose
newest closed candle lies before a gap reaching the cursor has no window), and it carries
neither the indicators of such a stale stream nor pivots from before the gap. An expert whose
spec then lacks frames is skipped by the coordinator's input validation.

**Reading.** :meth:`~MarketFrame.input` builds the standardized ``BaseDataInput`` (windows
are views of the rolling buffers, which are never overwritten in place, so a view keeps its
values while the frame grows); :meth:`~MarketFrame.observe` builds the encoded tensor of an
:class:`~pivotal.features.inputs.observation.ObservationBuilder` from the windows directly,
equal to the bulk dataset's sample. A spec may read at most ``capacity`` frames.

The frame is owned by one thread (the orchestrator's); other threads hand it data through
the :class:`~pivotal.orchestrator.subscriptions.DataSubscriptionManager`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import BaseDataInput, COBData, ModelOutput, PivotPoint
from pivotal.features.inputs.builder import input_at
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.history import COBHistory
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.inputs.rolling import DEFAULT_CAPACITY, RollingCandles
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import InputReport, check_input
from pivotal.features.orderbook.order_flow import OrderFlowConfig
from pivotal.orchestrator.frame_series import FrameSeries, check_candles, check_order, columns_key
from pivotal.orchestrator.trade_log import TradeLog

__all__ = ["MarketFrame", "RowSplit"]

_EMPTY = Candles.empty()


class RowSplit(NamedTuple):
    """How candles offered to a series relate to it (see :meth:`MarketFrame.split_rows`).

    ``new``: rows opening after the newest held row (they extend the series); ``stale``:
    open times the series lacks that fall before its newest row (the frame only grows at its
    end). The other rows open at times the series holds already."""

    new: Candles
    stale: npt.NDArray[np.int64]


def _ms(t: Any) -> int:
    if isinstance(t, bool) or not isinstance(t, int | np.integer):
        raise TypeError(f"t must be UTC milliseconds as int, got {t!r}")
    return int(t)


class _Market:
    """Everything the frame holds of one symbol."""

    __slots__ = ("known", "series", "symbol", "trades")

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.series: dict[Timeframe, FrameSeries] = {}
        self.known: int | None = None
        self.trades: TradeLog | None = None

    def visible(self, tf: Timeframe | None) -> tuple[FrameSeries | None, int]:
        """The series of ``tf`` and its rows closed at the cursor (0 when none)."""
        series = None if tf is None else self.series.get(tf)
        if series is None or self.known is None:
            return None, 0
        return series, series.closed_end(self.known)


class MarketFrame:
    """Candles, derived indicators and pivots, COB snapshots and trades per symbol, visible up
    to each symbol's cursor (module docstring).

    ``capacity``: candles kept per (symbol, timeframe) window (seed 003's 1,500; a spec may
    read at most that many frames). ``columns``: indicator periods (``columns.indicator``),
    pivot ``pivot_levels`` / ``pivot_strength`` and the per-candle columns an
    :class:`~pivotal.features.inputs.observation.ObservationBuilder` reads (COB columns are
    not streamed and are left out). ``pivot_timeframe``: whose pivots :meth:`input`
    reports; None: ``1m`` when the spec reads it, else the spec's first timeframe (as the
    :class:`~pivotal.features.inputs.StandardizedDataProvider` chooses). ``max_pivots``: the
    newest confirmed pivots an input carries. ``cob_capacity``: COB snapshots kept per
    symbol. ``trade_window_ms``: the trades ``[t - trade_window_ms, t)`` summed into an
    input's ``market_microstructure``; ``flow`` sets their large-trade thresholds.
    ``max_missing_bars``: a missing run of more than this many bars is a gap (module
    docstring).
    """

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        columns: ColumnsConfig | None = None,
        pivot_timeframe: Timeframe | str | None = None,
        max_pivots: int = 20,
        cob_capacity: int = 86_400,
        trade_window_ms: int = 60_000,
        flow: OrderFlowConfig | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        for name, value, least in (
            ("capacity", capacity, 2),
            ("max_pivots", max_pivots, 0),
            ("cob_capacity", cob_capacity, 1),
            ("trade_window_ms", trade_window_ms, 1),
            ("max_missing_bars", max_missing_bars, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        self.columns = columns or ColumnsConfig()
        self.capacity = capacity
        self._window_columns = self.columns.model_copy(update={"cob": False})
        self._other_columns: dict[str, ColumnsConfig] = {}
        self.pivot_timeframe = None if pivot_timeframe is None else Timeframe.parse(pivot_timeframe)
        self.max_pivots = max_pivots
        self.max_missing_bars = max_missing_bars
        self.trade_window_ms = trade_window_ms
        self.flow = flow or OrderFlowConfig()
        self._cob = COBHistory(cob_capacity)
        self._markets: dict[Symbol, _Market] = {}
        self._lookup: dict[str | Symbol, _Market] = {}  # any spelling -> its market
        # the windows the latest input() handed out, by id: (window, running invalid counts)
        self._handed: dict[int, tuple[Candles, npt.NDArray[np.int64]]] = {}

    def _market(self, symbol: str | Symbol) -> _Market | None:
        """The market of ``symbol`` (any spelling), None when the frame has none."""
        market = self._lookup.get(symbol)
        if market is None:
            market = self._markets.get(Symbol.parse(symbol))
            if market is not None:
                self._lookup[symbol] = market
        return market

    def _ensure(self, symbol: str | Symbol) -> _Market:
        market = self._market(symbol)
        if market is None:
            sym = Symbol.parse(symbol)
            market = self._markets[sym] = self._lookup[symbol] = _Market(sym)
        return market

    def _series(self, market: _Market, tf: Timeframe) -> FrameSeries:
        return FrameSeries(
            market.symbol,
            tf,
            capacity=self.capacity,
            columns=self._window_columns,
            max_missing_bars=self.max_missing_bars,
            max_pivots=self.max_pivots,
            other_columns=tuple(self._other_columns.values()),
        )

    def keep_columns(self, columns: ColumnsConfig) -> None:
        """Also compute ``columns`` per candle (another expert's job columns), for
        :meth:`observe` with a builder that reads them. Call it before candles arrive: the
        streaming indicators must see every candle from the first."""
        key = columns_key(columns)
        if key == columns_key(self._window_columns) or key in self._other_columns:
            return
        if any(m.series for m in self._markets.values()):
            raise ValueError(
                "keep_columns must be called before the frame holds candles: the indicators "
                "of the new columns would miss the candles already folded in"
            )
        self._other_columns[key] = columns.model_copy(update={"cob": False})

    def _pivot_tf(self, timeframes: Sequence[Timeframe]) -> Timeframe | None:
        """The configured pivot timeframe, else ``1m`` when held, else the finest."""
        if self.pivot_timeframe is not None:
            return self.pivot_timeframe
        if not timeframes:
            return None
        return Timeframe.M1 if Timeframe.M1 in timeframes else min(timeframes, key=lambda t: t.ms)

    # -- data in ------------------------------------------------------------------------
    def load(self, symbol: str, candles: Mapping[Timeframe | str, Candles]) -> None:
        """Whole candle histories of ``symbol`` known in advance (a replay). Nothing of them
        is visible until :meth:`advance`; they are kept as a backlog (the given arrays, not
        copied) and each candle is folded into its window when the cursor reaches its close,
        as if it had been appended then. Refuses a timeframe that already holds candles (grow
        it with :meth:`append_candles`); on any error nothing is loaded."""
        sym = Symbol.parse(symbol)
        market = self._markets.get(sym)
        existing = {} if market is None else market.series
        checked: dict[Timeframe, Candles] = {}
        for key, history in candles.items():
            tf = Timeframe.parse(key)
            if tf in checked:
                raise ValueError(f"load({sym}) names timeframe {tf} twice")
            if tf in existing and existing[tf].held:
                raise ValueError(
                    f"{sym} {tf} already holds {existing[tf].held} candles; grow it with "
                    "append_candles instead of loading it again"
                )
            checked[tf] = check_candles(history, f"load({sym}, {tf})")
        market = self._ensure(sym)
        for tf, history in checked.items():
            series = market.series.get(tf)
            if series is None:
                series = market.series[tf] = self._series(market, tf)
            series.add_backlog(history)
            if market.known is not None:
                series.feed(market.known)

    def split_rows(self, symbol: str, timeframe: Timeframe | str, candles: Candles) -> RowSplit:
        """Which of ``candles`` (sorted by open time) extend ``symbol``'s ``timeframe``
        history and which it lacks but cannot take (:class:`RowSplit`). Rows older than the
        oldest candle the window keeps count as held (the frame can no longer tell)."""
        market = self._market(symbol)
        series = None if market is None else market.series.get(Timeframe.parse(timeframe))
        nothing = np.empty(0, np.int64)
        newest = None if series is None else series.last_open()
        if series is None or newest is None or not len(candles):
            return RowSplit(candles, nothing)
        k = int(candles.timestamp.searchsorted(newest, side="right"))
        if not k:
            return RowSplit(candles, nothing)
        older = candles.timestamp[:k]
        found = series.contains(older)
        new = _EMPTY if k == len(candles) else candles[k:]
        return RowSplit(new, older[~found])

    def append_candles(self, symbol: str, timeframe: Timeframe | str, candles: Candles) -> int:
        """Grow ``symbol``'s ``timeframe`` history (live) by closed candles; returns rows added.

        Rows opening at a time the frame already holds are ignored (the first version
        stays), so re-publishing a loaded bar is a no-op. New rows must open after the
        newest known row: a row the frame lacks that opens earlier raises ``ValueError``
        naming its open time. Each new row is folded into the window now (O(1) per row; with
        a :meth:`load` backlog still pending, after it, as the cursor reaches it); the
        result equals what :meth:`load` of the whole history gives. Append only closed
        candles: a row, once held, is never revised."""
        tf = Timeframe.parse(timeframe)
        where = f"append_candles({symbol}, {tf})"
        check_order(candles, where)  # split_rows relies on it; values are checked below
        split = self.split_rows(symbol, tf, candles)
        if len(split.stale):
            shown = ", ".join(str(int(t)) for t in split.stale[:5])
            raise ValueError(
                f"{where}: candle(s) opening at {shown}{' ...' if len(split.stale) > 5 else ''} "
                f"fall before the newest known candle (opening at {self.last_open(symbol, tf)})"
                " and are not in the frame; the frame only grows at its end"
            )
        if not len(split.new):
            return 0
        self._fold(symbol, tf, split.new, where)
        return len(split.new)

    def take_candles(self, symbol: str, timeframe: Timeframe | str, candles: Candles) -> RowSplit:
        """:meth:`split_rows`, then the new rows appended as :meth:`append_candles` appends
        them (the rows the frame holds are ignored; the stale ones, which
        :meth:`append_candles` refuses, are left out and returned): what a subscription
        applies, splitting the candles once."""
        tf = Timeframe.parse(timeframe)
        split = self.split_rows(symbol, tf, candles)
        if len(split.new):
            self._fold(symbol, tf, split.new, f"append_candles({symbol}, {tf})")
        return split

    def _fold(self, symbol: str, tf: Timeframe, new: Candles, where: str) -> None:
        """Check ``new`` (rows opening after every row held) and fold it into the series."""
        check_candles(new, where)
        market = self._ensure(symbol)
        series = market.series.get(tf)
        if series is None:
            series = market.series[tf] = self._series(market, tf)
        if series.backlog_left:
            series.add_backlog(new)
            if market.known is not None:
                series.feed(market.known)
        else:
            series.extend(new)

    def add_cob(self, snapshot: COBData) -> None:
        """Record a COB snapshot; refuses one older than its symbol's newest."""
        if not isinstance(snapshot, COBData):
            raise TypeError(f"add_cob takes a COBData snapshot, got {type(snapshot).__name__}")
        self._cob.record(snapshot)

    def add_trades(self, symbol: str, trades: Trades) -> None:
        """Record ``symbol``'s trades (time order, none older than the newest recorded).
        Trades before ``known_until - trade_window_ms`` can never be read again (the cursor
        only moves forward) and are discarded in batches."""
        if not isinstance(trades, Trades):
            raise TypeError(f"add_trades takes Trades, got {type(trades).__name__}")
        if not len(trades):
            return
        market = self._ensure(symbol)
        if market.trades is None:
            market.trades = TradeLog()
        known = market.known
        drop_before = None if known is None else known - self.trade_window_ms
        market.trades.append(trades, drop_before, f"add_trades({market.symbol})")

    def advance(self, symbol: str, t: int) -> None:
        """Make ``symbol``'s data known until ``t`` (UTC ms); ``t`` never goes back."""
        t = _ms(t)
        market = self._lookup.get(symbol) or self._ensure(symbol)
        if market.known is not None and t < market.known:
            raise ValueError(
                f"advance({market.symbol}, {t}) goes back: it is known until {market.known} "
                "already; the cursor only moves forward (use a new MarketFrame to replay)"
            )
        market.known = t
        for series in market.series.values():
            if series.backlog_left:
                series.feed(t)

    # -- reading ------------------------------------------------------------------------
    def known_until(self, symbol: str) -> int | None:
        """The cursor of ``symbol`` (UTC ms), None before its first :meth:`advance`."""
        market = self._market(symbol)
        return None if market is None else market.known

    def symbols(self) -> tuple[str, ...]:
        """Symbols holding candle histories, sorted."""
        return tuple(str(s) for s in sorted(s for s, m in self._markets.items() if m.series))

    def timeframes(self, symbol: str) -> tuple[Timeframe, ...]:
        """``symbol``'s candle timeframes, shortest first (() when it has none)."""
        market = self._market(symbol)
        return () if market is None else tuple(sorted(market.series, key=lambda tf: tf.ms))

    def last_open(self, symbol: str, timeframe: Timeframe | str) -> int | None:
        """Open time of the newest candle held (visible or not), None when there is none."""
        market = self._market(symbol)
        series = None if market is None else market.series.get(Timeframe.parse(timeframe))
        return None if series is None else series.last_open()

    def _visible(
        self, symbol: str, timeframe: Timeframe | str | None, pivots: bool = False
    ) -> tuple[_Market | None, FrameSeries | None, int]:
        market = self._market(symbol)
        if market is None:
            return None, None, 0
        if timeframe is None and pivots:
            tf = self._pivot_tf(tuple(market.series))
        else:
            tf = Timeframe.parse(timeframe)
        return market, *market.visible(tf)

    def candles(self, symbol: str, timeframe: Timeframe | str) -> Candles:
        """The candles closed by ``known_until`` (``open + tf.ms <= t``) that the window
        keeps (the newest ``capacity``), oldest first, as read-only views; empty before
        :meth:`advance` or for a timeframe the frame does not hold."""
        _, series, end = self._visible(symbol, timeframe)
        return _EMPTY if series is None or not end else series.rolling.candles(end)

    def candle_count(self, symbol: str, timeframe: Timeframe | str) -> int:
        """How many candles of ``timeframe`` have closed by ``known_until`` since the first
        one (not bounded by the capacity: it grows by one per closed candle)."""
        _, series, end = self._visible(symbol, timeframe)
        return 0 if series is None or not end else series.rolling.first_index + end

    def indicators(self, symbol: str, timeframe: Timeframe | str) -> Mapping[str, float]:
        """``{"<tf>/<name>": value}`` of the newest closed candle (NaN while an indicator
        warms up); empty when no candle has closed."""
        _, series, end = self._visible(symbol, timeframe)
        if series is None or not end:
            return MappingProxyType({})
        return MappingProxyType(series.indicator_row(end - 1))

    def pivot_count(self, symbol: str, timeframe: Timeframe | str | None = None) -> int:
        """How many Williams pivots of ``timeframe`` are confirmed by ``known_until``;
        ``timeframe`` None: the pivot timeframe (as set, else ``1m`` when held, else the
        finest held)."""
        market, series, end = self._visible(symbol, timeframe, pivots=True)
        if market is None or series is None or not end or market.known is None:
            return 0
        return series.pivot_count(market.known)

    def pivots(
        self, symbol: str, timeframe: Timeframe | str | None = None
    ) -> tuple[PivotPoint, ...]:
        """The newest ``max_pivots`` pivots of ``timeframe`` confirmed by ``known_until``,
        oldest first (``timeframe`` as in :meth:`pivot_count`); none from before a gap."""
        market, series, end = self._visible(symbol, timeframe, pivots=True)
        if market is None or series is None or not end or market.known is None:
            return ()
        count = series.pivot_count(market.known)
        keep = series.segment_pivots(count, end, market.known, self.max_pivots)
        return series.pivot_points(count, keep)

    def input(
        self,
        symbol: str,
        spec: InputSpec,
        *,
        last_predictions: Mapping[str, ModelOutput] | None = None,
    ) -> BaseDataInput:
        """The standardized input of ``symbol`` at ``known_until`` (not validated).

        Candle windows: the newest ``spec.frames`` closed candles per timeframe (views);
        the reference symbol's, when the spec names one the frame holds, closed by the same
        ``t`` (the cursor of the symbol decided on is the clock). ``technical_indicators``:
        ``{"<tf>/<name>": value}`` of each spec timeframe's newest closed candle.
        ``pivot_points``: the newest ``max_pivots`` pivots of the pivot timeframe confirmed
        by ``t``. ``cob_data``: the newest snapshot at or before ``t``.
        ``market_microstructure``: order-flow sums of the trades in
        ``[t - trade_window_ms, t)`` ({} without any). Raises ``ValueError`` before the
        symbol's first :meth:`advance` and for a spec reading more frames than ``capacity``.
        """
        if not isinstance(spec, InputSpec):
            raise TypeError(f"spec must be an InputSpec, got {type(spec).__name__}")
        market = self._market(symbol)
        t = None if market is None else market.known
        if market is None or t is None:
            raise ValueError(f"nothing of {symbol} is known yet: call advance() before input()")
        self._check_frames(spec)
        handed: dict[int, tuple[Candles, npt.NDArray[np.int64]]] = {}
        by_tf = market.series
        primary: dict[Timeframe, Candles] = {}
        indicators: dict[str, float] = {}
        for tf in spec.timeframes:
            series = by_tf.get(tf)
            # a stream whose newest closed candle lies before a gap reaching t: no window,
            # and no indicator values from before the gap
            if series is not None and (end := series.closed_end(t)) and not series.stale(end, t):
                primary[tf] = series.window(end, spec.frames, handed)
                indicators.update(series.indicator_row(end - 1))
        reference = None
        ref = None if spec.reference_symbol is None else self._markets.get(spec.reference_symbol)
        if ref is not None and ref.series:
            reference = {}
            for tf in spec.reference_timeframes:
                series = ref.series.get(tf)
                if series is None:
                    continue
                series.feed(t)  # a reference loaded ahead: its candles closed by t
                if (end := series.closed_end(t)) and not series.stale(end, t):
                    reference[tf] = series.window(end, spec.frames, handed)
        pivots: tuple[PivotPoint, ...] = ()
        pivot_tf = self.pivot_timeframe
        if pivot_tf is None:
            pivot_tf = Timeframe.M1 if Timeframe.M1 in spec.timeframes else spec.timeframes[0]
        series = by_tf.get(pivot_tf)
        if series is not None and self.max_pivots and (end := series.closed_end(t)):
            count = series.pivot_count(t)
            keep = series.segment_pivots(count, end, t, self.max_pivots)
            pivots = series.pivot_points(count, keep)
        log = market.trades
        micro = {} if log is None else log.microstructure(t - self.trade_window_ms, t, self.flow)
        inp = input_at(
            market.symbol,
            t,
            spec,
            primary,
            reference_windows=reference,
            cob_data=self._cob.latest(market.symbol, t),
            technical_indicators=indicators,
            pivot_points=pivots,
            last_predictions=last_predictions,
            market_microstructure=micro,
        )
        self._handed = handed
        return inp

    def check_input(self, inp: BaseDataInput, spec: InputSpec) -> InputReport:
        """:func:`~pivotal.features.inputs.check_input` of ``inp`` against ``spec``, the same
        report: the invalid candles of the windows the latest :meth:`input` handed out are
        read from the counts kept as each candle was folded in instead of being scanned;
        any other candles are scanned."""
        return check_input(inp, spec, invalid_rows=self._invalid_rows)

    def _invalid_rows(self, candles: Candles, start: int) -> int | None:
        """Invalid candles among ``candles[start:]`` when ``candles`` is a window the latest
        :meth:`input` handed out (this very object), else None."""
        kept = self._handed.get(id(candles))
        if kept is None or kept[0] is not candles:
            return None
        counts = kept[1]
        return int(counts[-1] - counts[start])

    def _check_frames(self, spec: InputSpec) -> None:
        if spec.frames > self.capacity:
            raise ValueError(
                f"the spec reads {spec.frames} frames but the frame keeps {self.capacity} "
                "candles per timeframe; raise the frame's capacity (frame_capacity in the "
                "orchestrator config) to at least the largest spec's frames"
            )

    def observe(
        self, symbol: str, builder: ObservationBuilder, t: int | None = None
    ) -> npt.NDArray[np.float32] | None:
        """``builder``'s encoded observation of ``symbol`` closing at ``t`` (default: the
        cursor), read from the rolling windows: equal to the bulk dataset's sample
        (:class:`~pivotal.features.inputs.observation.ObservationBuilder`), None where that
        sample is missing or invalid. ``t`` may not lie after the cursor (no look-ahead) nor
        before the oldest candle a window keeps. The builder's ``columns`` must be the
        frame's (without COB)."""
        market = self._market(symbol)
        known = None if market is None else market.known
        if market is None or known is None:
            raise ValueError(f"nothing of {symbol} is known yet: call advance() before observe()")
        t = known if t is None else _ms(t)
        if t > known:
            raise ValueError(
                f"observe({market.symbol}, t={t}) looks ahead: the frame is known until {known}"
            )
        self._check_frames(builder.spec)
        spec = builder.spec
        streams: dict[Timeframe, RollingCandles] = {}
        for tf in spec.timeframes:
            series = market.series.get(tf)
            if series is None:
                return None  # a stream the frame does not hold: no sample (as the dataset)
            window = series.window_for(builder.columns)
            if window is None:
                raise ValueError(_unkept(builder.columns))
            streams[tf] = window
        reference: dict[Timeframe, RollingCandles] | None = None
        if spec.reference_symbol is not None and spec.reference_timeframes:
            ref = self._markets.get(spec.reference_symbol)
            if ref is None:
                return None
            reference = {}
            for tf in spec.reference_timeframes:
                series = ref.series.get(tf)
                if series is None:
                    return None
                series.feed(t)
                window = series.window_for(builder.columns)
                if window is None:
                    raise ValueError(_unkept(builder.columns))
                reference[tf] = window
        return builder.observe(streams, t, reference)


def _unkept(columns: ColumnsConfig) -> str:
    return (
        "the frame does not compute these per-candle columns; call keep_columns(columns) "
        f"before candles arrive ({columns.model_dump(exclude_defaults=True) or 'defaults'})"
    )
