"""The full base frame that stays current: what the orchestrator knows about the market.

A :class:`MarketFrame` holds, per symbol, candle histories of any number of timeframes, COB
snapshots and trades, and a cursor ``known_until`` (UTC ms) per symbol. Only what the cursor
has reached is visible: a candle of timeframe ``tf`` once it has *closed*
(``open + tf.ms <= known_until``), a pivot once *confirmed* (its confirm bar closed), the
newest COB snapshot taken at or before the cursor, the trades of the window just before it.

**One code path for backtest and live.** A backtest :meth:`~MarketFrame.load`\\ s whole
histories up front (nothing visible yet) and moves the cursor bar by bar with
:meth:`~MarketFrame.advance`; live code :meth:`~MarketFrame.append_candles` as candles close
and advances the cursor to their close. Re-appending a bar the frame already holds is a no-op,
so a backtest may publish its preloaded bars through the same subscription path as live.

**Derived data, causal and exact.** Per timeframe the raw indicator feature set
(:func:`~pivotal.features.indicators.compute_indicator_features`) and, for the pivot
timeframe, the Williams pivots (:func:`~pivotal.features.pivots.williams.williams_pivots`,
levels and strength from :class:`~pivotal.features.inputs.ColumnsConfig`) are computed in bulk
over the whole history. Both are prefix-stable (row ``i`` depends on candles ``0..i`` only;
the pivots of a prefix are the full run's pivots confirmed within it), so what the frame shows
at ``t`` equals what a frame loaded with the history truncated at ``t`` shows, and growing a
history bar by bar gives exactly what loading it at once gives. After an append the derived
data is recomputed over the whole history on its next read (a burst of appends costs one
recomputation).

**Gaps** (:mod:`pivotal.core.gaps`): indicators and pivots restart after every gap of more
than ``max_missing_bars`` bars (computed per segment, as if each were a separate series);
an input's candle windows never hold bars from both sides of a gap (they start after it, and
a stream whose newest closed candle lies before a gap reaching the cursor has no window), and
it carries neither the indicators of such a stale stream nor pivots from before the gap. An
expert whose spec then lacks frames is skipped by the coordinator's input validation.

**Cost per step.** Candle histories live in column arrays (grown by doubling when appended),
windows are views, and the per-step parts are cached: the indicator dict of a timeframe's
newest closed row, the pivot tuple of a confirmed count, the order-flow sums of a trade
window. :meth:`~MarketFrame.advance` plus :meth:`~MarketFrame.input` cost a few tens of
microseconds for three 300-frame timeframes, most of it in
:func:`~pivotal.features.inputs.build_input`.

The frame is owned by one thread (the orchestrator's); other threads hand it data through
the :class:`~pivotal.orchestrator.subscriptions.DataSubscriptionManager`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, is_gap, segment_starts
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import BaseDataInput, COBData, ModelOutput, PivotKind, PivotPoint
from pivotal.features.indicators.feature_set import IndicatorConfig, compute_indicator_features
from pivotal.features.inputs.builder import build_input
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.history import COBHistory
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.orderbook.order_flow import OrderFlowConfig
from pivotal.features.pivots.williams import williams_pivots
from pivotal.orchestrator.trade_log import TradeLog

__all__ = ["MarketFrame", "RowSplit"]

_EMPTY = Candles.empty()
_KINDS = (PivotKind.HIGH, PivotKind.LOW)  # williams_pivots' category codes 0, 1
_MIN_CAPACITY = 256  # rows allocated at least when a history starts growing


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


def _check_order(candles: Any, where: str) -> Candles:
    if not isinstance(candles, Candles):
        raise TypeError(f"{where}: expected Candles, got {type(candles).__name__}")
    ts = candles.timestamp
    if len(ts) > 1 and np.any(ts[1:] <= ts[:-1]):
        i = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(
            f"{where}: open times must strictly increase, but row {i} opens at {ts[i]} after "
            f"{ts[i - 1]}; sort and de-duplicate the candles first"
        )
    return candles


def _check_candles(candles: Any, where: str) -> Candles:
    """Refuses what would break the derived data later: unsorted or repeated open times,
    NaN or infinite values, ``close <= 0``, negative volume, ``high < low``."""
    ts = _check_order(candles, where).timestamp
    problems = (
        ("is NaN or infinite", lambda c: ~np.isfinite(c.open + c.high + c.low + c.close)),
        (
            "has a NaN, infinite or negative volume",
            lambda c: ~(np.isfinite(c.volume) & (c.volume >= 0)),
        ),
        ("has close <= 0", lambda c: c.close <= 0),
        ("has high < low", lambda c: c.high < c.low),
    )
    for what, test in problems:
        bad = test(candles)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: the candle opening at {ts[i]} {what} ({int(bad.sum())} such row(s)); "
                "fix or drop those candles first"
            )
    return candles


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class _Series:
    """One (symbol, timeframe) candle history plus its derived data, computed lazily."""

    __slots__ = (
        "_base",
        "_buffers",
        "_capacity",
        "_closed",
        "_ind",
        "_ind_keys",
        "_ind_n",
        "_ind_row",
        "_piv",
        "_piv_cache",
        "_piv_n",
        "_piv_t",
        "_seg",
        "_seg_n",
        "all",
        "gap_bars",
        "n",
        "tf",
        "tf_ms",
    )

    def __init__(
        self, tf: Timeframe, candles: Candles, gap_bars: int = DEFAULT_MAX_MISSING_BARS
    ) -> None:
        self.tf = tf
        self.tf_ms = tf.ms
        self.gap_bars = gap_bars
        self._seg_n = -1
        self._seg = np.empty(0, np.int64)  # row of the first bar of every segment
        self.all = candles  # every known row, visible or not
        self.n = len(candles)
        self._base = candles
        self._buffers: dict[str, np.ndarray] | None = None  # writable once the series grows
        self._capacity = len(candles)
        self._closed = (-1, -1, 0)  # (t, rows, closed rows) of the last closed_end call
        self._ind_n = -1
        self._ind_keys: tuple[str, ...] = ()
        self._ind = np.empty((0, 0))  # (rows, features): one row's values in one read
        self._ind_row: tuple[int, dict[str, float]] = (-1, {})
        self._piv_n = -1
        self._piv_t = (-1, -1, 0)  # (t, rows, confirmed pivots) of the last pivot_count call
        self._piv: tuple[np.ndarray, ...] = ()
        self._piv_cache: tuple[int, int, tuple[PivotPoint, ...]] = (0, 0, ())

    def extend(self, rows: Candles) -> None:
        n, k = self.n, len(rows)
        need = n + k
        if self._buffers is None or need > self._capacity:
            capacity = max(need, 2 * self._capacity, _MIN_CAPACITY)
            buffers = {}
            for name in CANDLE_COLUMNS:
                old = getattr(self.all, name)
                buffers[name] = np.zeros(capacity, dtype=old.dtype)
                buffers[name][:n] = old
            self._buffers, self._capacity = buffers, capacity
            # read-only views: Candles keeps them without copying, and rows below n are never
            # written again, so views handed out earlier stay valid
            self._base = Candles(*(_read_only(buffers[c]) for c in CANDLE_COLUMNS))
        for name in CANDLE_COLUMNS:
            self._buffers[name][n:need] = getattr(rows, name)
        self.all = self._base.head(need)
        self.n = need

    def closed_end(self, t: int) -> int:
        """Rows closed at ``t``: ``open + tf.ms <= t``."""
        last_t, last_n, end = self._closed
        n = self.n
        if t != last_t or n != last_n:
            end = int(self.all.timestamp.searchsorted(t - self.tf_ms, side="right"))
            self._closed = (t, n, end)
        return end

    # -- gaps ---------------------------------------------------------------------------
    def stale(self, end: int, t: int) -> bool:
        """Whether a gap separates the newest of the first ``end`` rows from ``t``."""
        return end > 0 and is_gap(int(self.all.timestamp[end - 1]), t, self.tf_ms, self.gap_bars)

    def segment_start(self, row: int) -> int:
        """Open time of the first bar of ``row``'s segment."""
        if self._seg_n != self.n:
            starts = segment_starts(self.all.timestamp, self.tf_ms, self.gap_bars)
            self._seg = np.flatnonzero(starts)
            self._seg_n = self.n
        first = self._seg[int(self._seg.searchsorted(row, side="right")) - 1]
        return int(self.all.timestamp[first])

    # -- indicators ---------------------------------------------------------------------
    def ensure_indicators(self, config: IndicatorConfig) -> None:
        if self._ind_n != self.n:
            features = compute_indicator_features(
                self.all,
                config,
                allow_short=True,
                step_ms=self.tf_ms,
                max_missing_bars=self.gap_bars,
            )
            self._ind_keys = tuple(f"{self.tf}/{name}" for name in features)
            self._ind = np.column_stack(tuple(features.values()))
            self._ind_n = self.n
            self._ind_row = (-1, {})

    def indicator_row(self, row: int, config: IndicatorConfig) -> dict[str, float]:
        """``{"<tf>/<name>": value}`` of row ``row`` (cached: the same dict for the same row)."""
        self.ensure_indicators(config)
        cached_row, values = self._ind_row
        if cached_row != row:
            values = dict(zip(self._ind_keys, self._ind[row].tolist(), strict=True))
            self._ind_row = (row, values)
        return values

    # -- pivots -------------------------------------------------------------------------
    def ensure_pivots(self, columns: ColumnsConfig) -> None:
        if self._piv_n == self.n:
            return
        c = self.all
        if self.n:
            frame = williams_pivots(
                c.high,
                c.low,
                levels=columns.pivot_levels,
                strength=columns.pivot_strength,
                timestamps=c.timestamp,
                step_ms=self.tf_ms,
                max_missing_bars=self.gap_bars,
            )
            confirm = frame["confirm_index"].to_numpy()
            self._piv = (
                c.timestamp[confirm] + self.tf_ms,  # confirmed_at: the confirm bar's close
                c.timestamp[frame["index"].to_numpy()],
                frame["price"].to_numpy(),
                frame["kind"].cat.codes.to_numpy(),
                frame["level"].to_numpy(),
            )
        else:
            self._piv = (np.empty(0, np.int64),) * 2 + (np.empty(0),) + (np.empty(0, np.int8),) * 2
        self._piv_n = self.n
        self._piv_cache = (0, 0, ())

    def pivot_count(self, t: int, columns: ColumnsConfig) -> int:
        """Pivots confirmed at ``t`` (rows are sorted by confirmation)."""
        last_t, last_n, count = self._piv_t
        n = self.n
        if t != last_t or n != last_n:
            self.ensure_pivots(columns)
            count = int(self._piv[0].searchsorted(t, side="right"))
            self._piv_t = (t, n, count)
        return count

    def segment_pivots(self, count: int, end: int, t: int) -> int:
        """How many of the first ``count`` pivots belong to the segment of row ``end - 1``
        (0 when a gap separates that row from ``t``)."""
        if not end or self.stale(end, t):
            return 0
        first = int(self._piv[0].searchsorted(self.segment_start(end - 1), side="right"))
        return max(0, count - first)

    def pivot_points(self, symbol: Symbol, count: int, keep: int) -> tuple[PivotPoint, ...]:
        """The newest ``keep`` of the first ``count`` pivots (oldest first); builds only the
        pivots that the cached tuple lacks."""
        start = max(0, count - keep)
        c_start, c_count, cached = self._piv_cache
        if (c_start, c_count) == (start, count):
            return cached
        if c_start <= start <= c_count <= count and cached:
            points = cached[start - c_start :] + self._build_points(symbol, c_count, count)
        else:
            points = self._build_points(symbol, start, count)
        self._piv_cache = (start, count, points)
        return points

    def _build_points(self, symbol: Symbol, lo: int, hi: int) -> tuple[PivotPoint, ...]:
        confirmed, extreme, price, kind, level = (a[lo:hi].tolist() for a in self._piv)
        return tuple(
            PivotPoint(symbol, ts, conf, p, _KINDS[k], lv)
            for conf, ts, p, k, lv in zip(confirmed, extreme, price, kind, level, strict=True)
        )


class _Market:
    """Everything the frame holds of one symbol."""

    __slots__ = ("known", "series", "symbol", "trades")

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.series: dict[Timeframe, _Series] = {}
        self.known: int | None = None
        self.trades: TradeLog | None = None

    def visible(self, tf: Timeframe | None) -> tuple[_Series | None, int]:
        """The series of ``tf`` and its rows closed at the cursor (0 when none)."""
        series = None if tf is None else self.series.get(tf)
        if series is None or self.known is None:
            return None, 0
        return series, series.closed_end(self.known)


class MarketFrame:
    """Candles, derived indicators and pivots, COB snapshots and trades per symbol, visible up
    to each symbol's cursor (module docstring).

    ``columns``: indicator periods (``columns.indicator``) and pivot ``pivot_levels`` /
    ``pivot_strength``. ``pivot_timeframe``: whose pivots :meth:`input` reports; None: ``1m``
    when the spec reads it, else the spec's first timeframe (as the
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
        columns: ColumnsConfig | None = None,
        pivot_timeframe: Timeframe | str | None = None,
        max_pivots: int = 20,
        cob_capacity: int = 86_400,
        trade_window_ms: int = 60_000,
        flow: OrderFlowConfig | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        for name, value, least in (
            ("max_pivots", max_pivots, 0),
            ("cob_capacity", cob_capacity, 1),
            ("trade_window_ms", trade_window_ms, 1),
            ("max_missing_bars", max_missing_bars, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        self.columns = columns or ColumnsConfig()
        self.pivot_timeframe = None if pivot_timeframe is None else Timeframe.parse(pivot_timeframe)
        self.max_pivots = max_pivots
        self.max_missing_bars = max_missing_bars
        self.trade_window_ms = trade_window_ms
        self.flow = flow or OrderFlowConfig()
        self._cob = COBHistory(cob_capacity)
        self._markets: dict[Symbol, _Market] = {}
        self._lookup: dict[str | Symbol, _Market] = {}  # any spelling -> its market

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

    def _pivot_tf(self, timeframes: Sequence[Timeframe]) -> Timeframe | None:
        """The configured pivot timeframe, else ``1m`` when held, else the finest."""
        if self.pivot_timeframe is not None:
            return self.pivot_timeframe
        if not timeframes:
            return None
        return Timeframe.M1 if Timeframe.M1 in timeframes else min(timeframes, key=lambda t: t.ms)

    # -- data in ------------------------------------------------------------------------
    def load(self, symbol: str, candles: Mapping[Timeframe | str, Candles]) -> None:
        """Whole candle histories of ``symbol`` known in advance (a backtest). Nothing of
        them is visible until :meth:`advance`. The indicators of every timeframe and the
        pivots of the pivot timeframe are computed now. Refuses a timeframe that already
        holds candles (grow it with :meth:`append_candles`); on any error nothing is loaded."""
        sym = Symbol.parse(symbol)
        market = self._markets.get(sym)
        existing = {} if market is None else market.series
        loaded: dict[Timeframe, _Series] = {}
        for key, history in candles.items():
            tf = Timeframe.parse(key)
            if tf in loaded:
                raise ValueError(f"load({sym}) names timeframe {tf} twice")
            if tf in existing and existing[tf].n:
                raise ValueError(
                    f"{sym} {tf} already holds {existing[tf].n} candles; grow it with "
                    "append_candles instead of loading it again"
                )
            checked = _check_candles(history, f"load({sym}, {tf})")
            loaded[tf] = _Series(tf, checked, self.max_missing_bars)
        for series in loaded.values():
            if series.n:
                series.ensure_indicators(self.columns.indicator)
        pivot_tf = self._pivot_tf(tuple(existing) + tuple(loaded))
        if pivot_tf in loaded:
            loaded[pivot_tf].ensure_pivots(self.columns)
        self._ensure(sym).series.update(loaded)

    def split_rows(self, symbol: str, timeframe: Timeframe | str, candles: Candles) -> RowSplit:
        """Which of ``candles`` (sorted by open time) extend ``symbol``'s ``timeframe``
        history and which it lacks but cannot take (:class:`RowSplit`)."""
        market = self._market(symbol)
        series = None if market is None else market.series.get(Timeframe.parse(timeframe))
        nothing = np.empty(0, np.int64)
        if series is None or not series.n or not len(candles):
            return RowSplit(candles, nothing)
        held = series.all.timestamp
        k = int(candles.timestamp.searchsorted(held[-1], side="right"))
        if not k:
            return RowSplit(candles, nothing)
        older = candles.timestamp[:k]
        found = held[np.minimum(held.searchsorted(older), len(held) - 1)] == older
        new = _EMPTY if k == len(candles) else candles[k:]
        return RowSplit(new, older[~found])

    def append_candles(self, symbol: str, timeframe: Timeframe | str, candles: Candles) -> int:
        """Grow ``symbol``'s ``timeframe`` history (live) by closed candles; returns rows added.

        Rows opening at a time the frame already holds are ignored (the first version
        stays), so re-publishing a loaded bar is a no-op. New rows must open after the
        newest known row: a row the frame lacks that opens earlier raises ``ValueError``
        naming its open time. The derived data is recomputed on its next read and equals
        what :meth:`load` of the whole history gives. Append only closed candles: a row,
        once held, is never revised."""
        tf = Timeframe.parse(timeframe)
        where = f"append_candles({symbol}, {tf})"
        _check_order(candles, where)  # split_rows relies on it; values are checked below
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
        _check_candles(split.new, where)
        market = self._ensure(symbol)
        series = market.series.get(tf)
        if series is None:
            market.series[tf] = _Series(tf, split.new, self.max_missing_bars)
        else:
            series.extend(split.new)
        return len(split.new)

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
        return None if series is None or not series.n else int(series.all.timestamp[-1])

    def _visible(
        self, symbol: str, timeframe: Timeframe | str | None, pivots: bool = False
    ) -> tuple[_Market | None, _Series | None, int]:
        market = self._market(symbol)
        if market is None:
            return None, None, 0
        if timeframe is None and pivots:
            tf = self._pivot_tf(tuple(market.series))
        else:
            tf = Timeframe.parse(timeframe)
        return market, *market.visible(tf)

    def candles(self, symbol: str, timeframe: Timeframe | str) -> Candles:
        """The candles closed by ``known_until`` (``open + tf.ms <= t``), oldest first, as a
        view; empty before :meth:`advance` or for a timeframe the frame does not hold."""
        _, series, end = self._visible(symbol, timeframe)
        return _EMPTY if series is None or not end else series.all.head(end)

    def indicators(self, symbol: str, timeframe: Timeframe | str) -> Mapping[str, float]:
        """``{"<tf>/<name>": value}`` of the newest closed candle (NaN while an indicator
        warms up); empty when no candle has closed."""
        _, series, end = self._visible(symbol, timeframe)
        if series is None or not end:
            return MappingProxyType({})
        return MappingProxyType(series.indicator_row(end - 1, self.columns.indicator))

    def pivot_count(self, symbol: str, timeframe: Timeframe | str | None = None) -> int:
        """How many Williams pivots of ``timeframe`` are confirmed by ``known_until``;
        ``timeframe`` None: the pivot timeframe (as set, else ``1m`` when held, else the
        finest held)."""
        market, series, end = self._visible(symbol, timeframe, pivots=True)
        if market is None or series is None or not end or market.known is None:
            return 0
        return series.pivot_count(market.known, self.columns)

    def pivots(
        self, symbol: str, timeframe: Timeframe | str | None = None
    ) -> tuple[PivotPoint, ...]:
        """The newest ``max_pivots`` pivots of ``timeframe`` confirmed by ``known_until``,
        oldest first (``timeframe`` as in :meth:`pivot_count`); none from before a gap."""
        market, series, end = self._visible(symbol, timeframe, pivots=True)
        if market is None or series is None or not end or market.known is None:
            return ()
        count = series.pivot_count(market.known, self.columns)
        keep = min(self.max_pivots, series.segment_pivots(count, end, market.known))
        return series.pivot_points(market.symbol, count, keep)

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
        symbol's first :meth:`advance`.
        """
        if not isinstance(spec, InputSpec):
            raise TypeError(f"spec must be an InputSpec, got {type(spec).__name__}")
        market = self._market(symbol)
        t = None if market is None else market.known
        if market is None or t is None:
            raise ValueError(f"nothing of {symbol} is known yet: call advance() before input()")
        by_tf = market.series
        indicator_config = self.columns.indicator
        primary: dict[Timeframe, Candles] = {}
        indicators: dict[str, float] = {}
        for tf in spec.timeframes:
            series = by_tf.get(tf)
            if series is not None and (end := series.closed_end(t)):
                primary[tf] = series.all.head(end)
                if not series.stale(end, t):  # no values from before a gap reaching t
                    indicators.update(series.indicator_row(end - 1, indicator_config))
        reference = None
        ref = None if spec.reference_symbol is None else self._markets.get(spec.reference_symbol)
        if ref is not None and ref.series:
            reference = {}
            for tf in spec.reference_timeframes:
                series = ref.series.get(tf)
                if series is not None and (end := series.closed_end(t)):
                    reference[tf] = series.all.head(end)
        pivots: tuple[PivotPoint, ...] = ()
        pivot_tf = self.pivot_timeframe
        if pivot_tf is None:
            pivot_tf = Timeframe.M1 if Timeframe.M1 in spec.timeframes else spec.timeframes[0]
        series = by_tf.get(pivot_tf)
        if series is not None and self.max_pivots and (end := series.closed_end(t)):
            count = series.pivot_count(t, self.columns)
            keep = min(self.max_pivots, series.segment_pivots(count, end, t))
            pivots = series.pivot_points(market.symbol, count, keep)
        log = market.trades
        micro = {} if log is None else log.microstructure(t - self.trade_window_ms, t, self.flow)
        return build_input(
            primary,
            market.symbol,
            t,
            spec,
            reference=reference,
            cob_data=self._cob.latest(market.symbol, t),
            technical_indicators=indicators,
            pivot_points=pivots,
            last_predictions=last_predictions,
            market_microstructure=micro,
            max_missing_bars=self.max_missing_bars,
        )
