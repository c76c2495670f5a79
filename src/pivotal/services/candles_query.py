"""Candles with their 5 Williams pivot levels, read from a market-data store.

Shared by the finished-run views (:mod:`pivotal.services.run_view`) and the live view
(:mod:`pivotal.services.live_view`): :func:`candles_payload` reads only the newest ``limit``
bars of a series (plus :data:`PIVOT_WARMUP_BARS` bars before them, so pivots near the left
edge exist as they do on the full series), computes the pivots with the batch
:func:`~pivotal.features.pivots.williams_pivots` over what it read, and keeps the pivots whose
confirming bar is among the returned bars: a pivot is never shown before the bar that confirms
it closed (no look-ahead), and successive incremental answers (``since_ms``) join up.

Symbols are accepted as ``BTC/USDT``, ``BTC-USDT``, ``BTCUSDT`` (resolved against the store's
symbols, :meth:`pivotal.core.symbols.Symbol.resolve`); an unknown symbol or timeframe raises
:class:`~pivotal.services.view.NotFound` listing the known ones, a ``limit`` outside
``1..MAX_BARS`` :class:`~pivotal.services.view.QueryError`.

:class:`SeriesCatalog` is what the store holds (exchange → symbol → timeframe → span), read
once with :meth:`~pivotal.data.duckdb_store.DuckDBStore.series` (a scan of every candle:
tenths of a second on a large store), so a query itself reads only its window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.features.pivots import williams_pivots
from pivotal.services.schemas import (
    Bars,
    CandlesPayload,
    MarkerRow,
    PivotMark,
    PivotPrediction,
)
from pivotal.services.view import MAX_BARS, NotFound, QueryError

__all__ = [
    "PIVOT_LEVELS",
    "PIVOT_STRENGTH",
    "PIVOT_WARMUP_BARS",
    "PivotCache",
    "SeriesCatalog",
    "SeriesSpan",
    "candles_payload",
    "pivot_marks",
    "read_newest",
    "resolve_symbol",
    "resolve_timeframe",
    "timeframes_of",
]

PIVOT_LEVELS = 5
PIVOT_STRENGTH = 2
"""Bars (level 1) or pivots (higher levels) on each side of a pivot: the project's default."""
PIVOT_WARMUP_BARS = 2_000
"""Bars read before the returned window when the pivots are computed over a window (no
:class:`PivotCache`): levels 1-4 then equal the full series' on market data; a level-5 pivot
can rest on swings further back than any fixed margin (measured on the demo's BTC/USDT: a
few level-5 pivots in 1 of 4 windows differ with 2,000 to 8,000 bars), which is why finished
runs use the cache."""
FULL_SERIES_MAX_BARS = 2_500_000
"""A :class:`PivotCache` computes a series' pivots over the whole stored series up to this
many bars (about 1 s and 40 MB for the largest); a longer series falls back to the window."""
_WIDEN_TRIES = 4  # range reads widened (x4 each) over gaps before reading from the start


@dataclass(frozen=True, slots=True)
class SeriesSpan:
    """One stored candle series: ``first``/``last`` open times (UTC ms) and its row count."""

    exchange: str
    symbol: str
    timeframe: str
    first: int
    last: int
    rows: int


class SeriesCatalog:
    """Every candle series of a store, read once (:meth:`refresh` reads it again: a live
    store gains bars, but its series' first open times and the set of series rarely change).
    Thread-safe."""

    def __init__(self, store: MarketDataStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._spans: list[SeriesSpan] | None = None

    def refresh(self) -> list[SeriesSpan]:
        spans = [
            SeriesSpan(
                info.key.exchange,
                str(info.key.symbol),
                info.key.timeframe.value,
                int(info.first if info.first is not None else 0),
                int(info.last if info.last is not None else 0),
                int(info.rows),
            )
            for info in self.store.series()
            if info.rows
        ]
        with self._lock:
            self._spans = spans
        return spans

    def spans(self, exchange: str | None = None) -> list[SeriesSpan]:
        with self._lock:
            spans = self._spans
        if spans is None:
            spans = self.refresh()
        return [s for s in spans if exchange is None or s.exchange == exchange]

    def exchanges(self) -> list[str]:
        return sorted({s.exchange for s in self.spans()})

    def symbols(self, exchange: str) -> list[str]:
        return sorted({s.symbol for s in self.spans(exchange)})

    def span(self, exchange: str, symbol: str, timeframe: str) -> SeriesSpan | None:
        for s in self.spans(exchange):
            if s.symbol == symbol and s.timeframe == timeframe:
                return s
        return None


@dataclass(frozen=True, slots=True)
class _SeriesPivots:
    last: int  # newest bar open time covered (UTC ms)
    level: np.ndarray
    kind: np.ndarray  # object array of "high"/"low"
    t: np.ndarray
    price: np.ndarray
    confirm_open: np.ndarray  # confirming bar's open time, ascending


class PivotCache:
    """The Williams pivots of whole stored series, computed once per series (the exact pivots
    of the full series, which no fixed warm-up margin guarantees at level 5) and sliced by
    confirming bar per query. A series that gained bars since is computed again when a query
    reaches past what is cached (a finished run's store never changes); a series longer than
    ``max_bars`` is not cached (:meth:`marks` answers None and the caller computes over a
    window). Thread-safe."""

    def __init__(self, store: MarketDataStore, *, max_bars: int = FULL_SERIES_MAX_BARS) -> None:
        self.store = store
        self.max_bars = max_bars
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, _SeriesPivots | None] = {}

    def marks(self, key: SeriesKey, start_ms: int, end_ms: int) -> list[PivotMark] | None:
        """Pivots whose confirming bar opens in ``[start_ms, end_ms]``; None when the series
        is longer than ``max_bars``."""
        with self._lock:
            cached = self._series.get(key, _MISSING)
            if cached is _MISSING or (cached is not None and cached.last < end_ms):
                cached = self._series[key] = self._compute(key)
        if cached is None:
            return None
        lo = int(np.searchsorted(cached.confirm_open, start_ms, side="left"))
        hi = int(np.searchsorted(cached.confirm_open, end_ms, side="right"))
        step = key.timeframe.ms
        return _marks(
            cached.level[lo:hi].tolist(),
            cached.kind[lo:hi].tolist(),
            cached.t[lo:hi].tolist(),
            cached.price[lo:hi].tolist(),
            (cached.confirm_open[lo:hi] + step).tolist(),
        )

    def _compute(self, key: SeriesKey) -> _SeriesPivots | None:
        bars = self.store.read_candles(key)
        if len(bars) > self.max_bars or not len(bars):
            return None
        frame = williams_pivots(
            bars.high,
            bars.low,
            levels=PIVOT_LEVELS,
            strength=PIVOT_STRENGTH,
            timestamps=bars.timestamp,
            step_ms=key.timeframe.ms,
        )
        return _SeriesPivots(
            last=int(bars.timestamp[-1]),
            level=frame["level"].to_numpy(),
            kind=np.asarray(frame["kind"], dtype=object),
            t=frame["timestamp"].to_numpy(),
            price=frame["price"].to_numpy(),
            confirm_open=frame["confirm_timestamp"].to_numpy(),
        )


_MISSING = object()


def _marks(
    level: list[int], kind: list[str], t: list[int], price: list[float], confirmed: list[int]
) -> list[PivotMark]:
    return [
        PivotMark.model_construct(level=lv, kind=k, t=ti, price=p, confirmed_t=c)
        for lv, k, ti, p, c in zip(level, kind, t, price, confirmed, strict=True)
    ]


def resolve_symbol(text: str, known: Iterable[str]) -> str:
    """``text`` (``BTC/USDT``, ``BTC-USDT``, ``BTCUSDT``, any case) as one of ``known``
    (ccxt form); :class:`NotFound` listing them when it is none of them, :class:`QueryError`
    when it is not a symbol at all."""
    names = sorted(set(known))
    listed = ", ".join(names) or "none"
    try:
        symbol = str(Symbol.resolve(str(text), [Symbol.parse(n) for n in names]))
    except ValueError as exc:
        raise QueryError(f"{exc} (symbols here: {listed})") from None
    if symbol not in names:
        raise NotFound(f"no symbol {text!r} here; the symbols are: {listed}")
    return symbol


def resolve_timeframe(text: str, known: Iterable[str], symbol: str = "") -> str:
    """``text`` as one of ``known`` timeframes (``1s``, ``1m``, ``1h`` ...); :class:`NotFound`
    listing them otherwise."""
    names = _sorted_timeframes(known)
    listed = ", ".join(names) or "none"
    try:
        value = Timeframe.parse(str(text).strip()).value
    except ValueError:
        value = None
    if value is None or value not in names:
        whose = f" for {symbol}" if symbol else ""
        raise NotFound(f"no {text!r} candles{whose}; the timeframes are: {listed}")
    return value


def timeframes_of(
    store_or_catalog: MarketDataStore | SeriesCatalog, exchange: str, symbol: str
) -> list[str]:
    """The timeframes with stored candles of ``symbol`` on ``exchange``, shortest first
    (``symbol`` in any accepted spelling; :class:`NotFound` when unknown)."""
    catalog = _catalog(store_or_catalog)
    name = resolve_symbol(symbol, catalog.symbols(exchange))
    return _sorted_timeframes(s.timeframe for s in catalog.spans(exchange) if s.symbol == name)


def read_newest(
    store: MarketDataStore,
    key: SeriesKey,
    count: int,
    *,
    first_ms: int | None = None,
    last_ms: int | None = None,
) -> Candles:
    """The newest ``count`` stored candles of ``key`` (fewer when the series is shorter), read
    by time range: ``[last - (count-1) x step, last]`` first, widened over gaps, so a query never
    reads the whole series. ``first_ms``/``last_ms``: the series' first and last open times
    when known (else ``last`` is asked from the store)."""
    last = last_ms if last_ms is not None else store.last_timestamp(key)
    if last is None or count <= 0:
        return Candles.empty()
    step = key.timeframe.ms
    span = count * step
    for _ in range(_WIDEN_TRIES):
        start = last - span + step
        bars = store.read_candles(key, start, last + 1)
        if len(bars) >= count or (first_ms is not None and start <= first_ms):
            return bars[len(bars) - count :] if len(bars) > count else bars
        span *= 4
    bars = store.read_candles(key, first_ms, last + 1)
    return bars[len(bars) - count :] if len(bars) > count else bars


def pivot_marks(bars: Candles, step_ms: int, first_shown: int) -> list[PivotMark]:
    """The Williams pivots (5 levels) of ``bars`` whose confirming bar is at index
    ``first_shown`` or later (every bar up to the last is closed), as :class:`PivotMark`
    (``confirmed_t``: the confirming bar's close, its open time + ``step_ms``)."""
    if len(bars) <= first_shown:
        return []
    frame = williams_pivots(
        bars.high,
        bars.low,
        levels=PIVOT_LEVELS,
        strength=PIVOT_STRENGTH,
        timestamps=bars.timestamp,
        step_ms=step_ms,
    )
    keep = frame["confirm_index"].to_numpy() >= first_shown
    return _marks(
        frame["level"].to_numpy()[keep].tolist(),
        np.asarray(frame["kind"])[keep].tolist(),
        frame["timestamp"].to_numpy()[keep].tolist(),
        frame["price"].to_numpy()[keep].tolist(),
        (frame["confirm_timestamp"].to_numpy()[keep] + step_ms).tolist(),
    )


def candles_payload(
    store: MarketDataStore,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    limit: int,
    since_ms: int | None,
    node_id: str,
    predictions: Sequence[PivotPrediction] = (),
    markers: Sequence[MarkerRow] = (),
    catalog: SeriesCatalog | None = None,
    pivots: PivotCache | None = None,
    until_ms: int | None = None,
    history: tuple[MarketDataStore, SeriesCatalog] | None = None,
    memo: dict[tuple[Any, ...], CandlesPayload] | None = None,
) -> CandlesPayload:
    """The newest ``limit`` candles (or, with ``since_ms``, those with open time >= it, the
    newest ``limit`` of them) of ``symbol`` in ``timeframe`` on ``exchange``, with the pivots
    confirmed within them (module docstring). ``predictions`` and ``markers`` are passed
    through, markers kept only inside the returned span. ``catalog``: the store's series
    (built here when None; pass one to keep queries to their window). ``pivots``: a
    :class:`PivotCache` giving the full series' exact pivots (finished runs); without one
    (or for a series too long for it) they are computed over the window and
    :data:`PIVOT_WARMUP_BARS` bars before it. ``until_ms``: only candles closed by then (a
    running node's time: a store may hold bars its market has not reached, as a local
    replay's does). ``history``: a second store (and its catalog) whose older candles, up to
    the first of ``store``'s, fill the window when ``store`` holds fewer (a session's
    collected bars after the data dir's stored ones). ``memo``: answers kept by what decides
    them (series, window, last bar, markers), so a poll that finds nothing new costs one
    query (a running node's view; at most :data:`MEMO_SIZE` kept)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BARS:
        raise QueryError(f"limit must be an integer from 1 to {MAX_BARS}, got {limit!r}")
    if since_ms is not None and (isinstance(since_ms, bool) or not isinstance(since_ms, int)):
        raise QueryError(f"since_ms must be an integer of UTC milliseconds, got {since_ms!r}")
    catalog = catalog if catalog is not None else SeriesCatalog(store)
    name = resolve_symbol(symbol, catalog.symbols(exchange))
    tf = resolve_timeframe(
        timeframe,
        (s.timeframe for s in catalog.spans(exchange) if s.symbol == name),
        name,
    )
    span = catalog.span(exchange, name, tf)
    key = SeriesKey(exchange, Symbol.parse(name), Timeframe(tf))
    step = key.timeframe.ms
    last = store.last_timestamp(key)
    if until_ms is not None and last is not None:
        last = min(last, until_ms - step)  # closed by the node's time
    first = span.first if span is not None else None
    if last is not None and first is not None and last < first:
        last = None  # nothing closed yet
    warmup = 0 if pivots is not None else PIVOT_WARMUP_BARS
    seen = None
    if memo is not None:
        last_marker = max((m.t for m in markers), default=None)
        older = None if history is None else id(history[0])
        seen = (id(store), key, limit, since_ms, last, older, len(markers), last_marker)
        cached = memo.get(seen)
        if cached is not None:
            return cached.model_copy(update={"predictions": list(predictions)})
    if last is None:
        bars, shown = Candles.empty(), 0
    elif since_ms is None:
        bars = read_newest(store, key, limit + warmup, first_ms=first, last_ms=last)
        bars = _older_first(bars, history, key, limit + warmup, until_ms, first)
        shown = max(len(bars) - limit, 0)
    else:
        tail = store.read_candles(key, since_ms, last + 1)
        if len(tail) > limit:
            tail = tail[len(tail) - limit :]
        head_end = int(tail.timestamp[0]) - 1 if len(tail) else since_ms - 1
        head = read_newest(store, key, warmup, first_ms=first, last_ms=head_end)
        head = _older_first(head, history, key, warmup, until_ms, first)
        bars = Candles.concat([head, tail]) if len(head) else tail
        shown = len(head)
    view = bars[shown:]
    t = view.timestamp.tolist()
    marks = None
    if pivots is not None and t:
        marks = pivots.marks(key, t[0], t[-1])
        if marks is None:  # too long to cache: the window with its warm-up
            return candles_payload(
                store,
                exchange,
                name,
                tf,
                limit=limit,
                since_ms=since_ms,
                node_id=node_id,
                predictions=predictions,
                markers=markers,
                catalog=catalog,
            )
    if marks is None:
        marks = pivot_marks(bars, step, shown)
    if t and markers:
        lo, hi = t[0], t[-1] + step
        markers = [m for m in markers if lo <= m.t < hi]
    payload = CandlesPayload.model_construct(
        node=node_id,
        symbol=name,
        timeframe=tf,
        bars=Bars.model_construct(
            t=t,
            open=view.open.tolist(),
            high=view.high.tolist(),
            low=view.low.tolist(),
            close=view.close.tolist(),
            volume=view.volume.tolist(),
        ),
        pivots=marks,
        predictions=list(predictions),
        markers=list(markers) if t else [],
    )
    if memo is not None and seen is not None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[seen] = payload
    return payload


MEMO_SIZE = 256
"""The most answers a ``memo`` keeps (it is emptied when full)."""


def _older_first(
    bars: Candles,
    history: tuple[MarketDataStore, SeriesCatalog] | None,
    key: SeriesKey,
    count: int,
    until_ms: int | None,
    first_ms: int | None,
) -> Candles:
    """``bars`` preceded by ``history``'s newest candles before them (up to ``count`` in
    all), none of them after ``until_ms`` or the primary series' first bar."""
    if history is None or len(bars) >= count:
        return bars
    store, catalog = history
    span = catalog.span(key.exchange, str(key.symbol), key.timeframe.value)
    if span is None:
        return bars
    end = int(bars.timestamp[0]) - 1 if len(bars) else (first_ms - 1 if first_ms else None)
    cap = None if until_ms is None else until_ms - key.timeframe.ms
    last = min(v for v in (end, cap, span.last) if v is not None)
    if last < span.first:
        return bars
    older = read_newest(store, key, count - len(bars), first_ms=span.first, last_ms=last)
    if not len(older):
        return bars
    return Candles.concat([older, bars]) if len(bars) else older


def _catalog(value: MarketDataStore | SeriesCatalog) -> SeriesCatalog:
    return value if isinstance(value, SeriesCatalog) else SeriesCatalog(value)


def _sorted_timeframes(values: Iterable[str]) -> list[str]:
    def ms(tf: str) -> int:
        try:
            return Timeframe.parse(tf).ms
        except ValueError:
            return 0

    return sorted(set(values), key=ms)
