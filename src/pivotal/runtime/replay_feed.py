"""Replay feeds: historical candles as :class:`~pivotal.core.events.CandleClosed` events.

:class:`ReplayFeed` merges candle streams (a symbol on a timeframe) by close time (the open
plus the timeframe's length). Each :meth:`ReplayFeed.next_events` moves the
:class:`~pivotal.core.clock.ReplayClock` to the next close time and returns the events of
every stream with a bar closing then, in the streams' order: the traded symbols' base
timeframe first (in the order given), then each symbol's higher timeframes. A close time
where only a higher timeframe closes is its own (decision-free) event time.

Two sources of bars, same events:

- :meth:`ReplayFeed.from_candles` over :class:`~pivotal.core.candles.Candles` in memory;
- :meth:`ReplayFeed.from_store` over a :class:`~pivotal.data.store.MarketDataStore`, read
  with ``read_candles`` in chunks of ``chunk_bars`` bars per stream (a time window of
  ``chunk_bars`` bar lengths), so memory depends on the chunk size and the number of
  streams, not on the span replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.events import CandleClosed
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore

__all__ = ["DEFAULT_CHUNK_BARS", "CandleStream", "ReplayFeed"]

#: Bars read from the store per stream and chunk.
DEFAULT_CHUNK_BARS = 10_000

#: Reads the candles of one stream with ``start <= open < end`` (UTC ms), sorted.
ChunkReader = Callable[[int, int], Candles]


class CandleStream:
    """One symbol's bars on one timeframe, read ``chunk_bars`` bar lengths at a time.

    ``read(start, end)`` returns the bars opened in ``[start, end)``; the stream covers
    ``[start, end)`` and holds one chunk at a time.
    """

    def __init__(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        read: ChunkReader,
        *,
        start: int,
        end: int,
        chunk_bars: int = DEFAULT_CHUNK_BARS,
    ) -> None:
        if isinstance(chunk_bars, bool) or not isinstance(chunk_bars, int) or chunk_bars < 1:
            raise ValueError(f"chunk_bars must be a whole number >= 1, got {chunk_bars!r}")
        if end <= start:
            raise ValueError(f"the span [{start}, {end}) of {symbol} is empty: end <= start")
        self.symbol = symbol
        self.timeframe = Timeframe.parse(timeframe)
        self.chunk_bars = chunk_bars
        self._read = read
        self._next_start = start
        self._end = end
        self._chunk = Candles.empty()
        self._row = 0
        self.largest_chunk = 0
        self._fill()

    @property
    def held(self) -> int:
        """Bars held in memory now (the current chunk; at most ``chunk_bars``)."""
        return len(self._chunk)

    @property
    def next_close(self) -> int | None:
        """Close time (UTC ms) of the stream's next bar; None when it has no more."""
        if self._row >= len(self._chunk):
            return None
        return int(self._chunk.timestamp[self._row]) + self.timeframe.ms

    def pop(self) -> CandleClosed:
        """The next bar as an event (call only while :attr:`next_close` is not None)."""
        row = self._row
        candle = self._chunk.rows(row, row + 1)
        self._row = row + 1
        if self._row >= len(self._chunk):
            self._fill()
        return CandleClosed(
            self.symbol,
            self.timeframe,
            candle,
            int(candle.timestamp[0]) + self.timeframe.ms,
        )

    def _fill(self) -> None:
        """Read chunks until one has bars or the span is exhausted."""
        width = self.chunk_bars * self.timeframe.ms
        while self._next_start < self._end:
            start = self._next_start
            stop = min(start + width, self._end)
            self._next_start = stop
            chunk = self._read(start, stop)
            if len(chunk):
                self.largest_chunk = max(self.largest_chunk, len(chunk))
                self._chunk = chunk
                self._row = 0
                return
        self._chunk = Candles.empty()
        self._row = 0


class ReplayFeed:
    """Merges :class:`CandleStream` s by close time (module docstring).

    ``clock`` defaults to a :class:`ReplayClock` at the earliest bar's open; the feed moves
    it to each close time it reports.
    """

    def __init__(self, streams: Sequence[CandleStream], *, clock: ReplayClock | None = None):
        self.streams = tuple(streams)
        if not self.streams:
            raise ValueError("a replay feed needs at least one candle stream")
        firsts = [s.next_close - s.timeframe.ms for s in self.streams if s.next_close is not None]
        if not firsts:
            raise ValueError(
                "none of the feed's streams has a candle in its span: load data for the "
                "requested range (pivotal data list shows what is stored)"
            )
        self.clock = clock if clock is not None else ReplayClock(min(firsts))

    @classmethod
    def from_candles(
        cls,
        candles: Mapping[str, Candles],
        *,
        timeframe: Timeframe | str,
        higher: Mapping[str, Mapping[Timeframe, Candles]] | None = None,
        clock: ReplayClock | None = None,
    ) -> ReplayFeed:
        """A feed over candles in memory: ``candles`` per traded symbol on ``timeframe``,
        ``higher`` per symbol and timeframe (their bars' events follow the base bars')."""
        base = Timeframe.parse(timeframe)
        streams = [_memory_stream(s, base, bars) for s, bars in candles.items()]
        for symbol, frames in (higher or {}).items():
            streams.extend(
                _memory_stream(symbol, Timeframe.parse(tf), b) for tf, b in frames.items()
            )
        return cls([s for s in streams if s is not None], clock=clock)

    @classmethod
    def from_store(
        cls,
        store: MarketDataStore,
        *,
        exchange: str,
        symbols: Iterable[str],
        timeframe: Timeframe | str,
        start: int,
        end: int,
        higher: Iterable[Timeframe | str] = (),
        chunk_bars: int = DEFAULT_CHUNK_BARS,
        clock: ReplayClock | None = None,
    ) -> ReplayFeed:
        """A feed reading ``store`` in chunks: each of ``symbols`` on ``timeframe`` and on
        every ``higher`` timeframe, bars opened in ``[start, end)`` (UTC ms)."""
        names = list(symbols)
        frames = [Timeframe.parse(timeframe), *(Timeframe.parse(tf) for tf in higher)]
        streams = []
        for tf in frames:
            for symbol in names:
                key = SeriesKey(exchange, Symbol.parse(symbol), tf)
                streams.append(
                    CandleStream(
                        symbol,
                        tf,
                        _store_reader(store, key),
                        start=start,
                        end=end,
                        chunk_bars=chunk_bars,
                    )
                )
        # base timeframe first in symbol order, then each symbol's higher timeframes
        ordered = streams[: len(names)] + sorted(
            streams[len(names) :], key=lambda s: names.index(s.symbol)
        )
        return cls(ordered, clock=clock)

    def next_events(self) -> list[CandleClosed] | None:
        """The next close time's events (the clock moved there); None when every stream
        has finished."""
        closes = [s.next_close for s in self.streams]
        pending = [c for c in closes if c is not None]
        if not pending:
            return None
        t = min(pending)
        self.clock.advance_to(t)
        return [s.pop() for s, c in zip(self.streams, closes, strict=True) if c == t]


def _memory_stream(symbol: str, timeframe: Timeframe, bars: Candles) -> CandleStream | None:
    if len(bars) == 0:
        return None
    start = int(bars.timestamp[0])
    end = int(bars.timestamp[-1]) + 1

    def read(lo: int, hi: int) -> Candles:
        return bars.between(lo, hi)

    return CandleStream(symbol, timeframe, read, start=start, end=end, chunk_bars=len(bars))


def _store_reader(store: MarketDataStore, key: SeriesKey) -> ChunkReader:
    def read(lo: int, hi: int) -> Candles:
        return store.read_candles(key, lo, hi)

    return read
