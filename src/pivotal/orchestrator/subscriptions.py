"""Seed 003's DataSubscriptionManager: streams of market data into one :class:`MarketFrame`.

Producers (exchange websockets, a backtest's replay, REST back-fills) :meth:`publish`
:class:`StreamUpdate`\\ s from any thread; the thread that owns the frame :meth:`drain`\\ s
them, applying every buffered update in arrival order, and learns which streams changed.

- **Streams.** A :class:`StreamKey` is a kind, a symbol and, for candle-based kinds, a
  timeframe. ``CANDLES``, ``COB`` and ``TRADES`` carry data (``Candles``, ``COBData``,
  ``Trades``); ``INDICATORS`` and ``PIVOTS`` are *derived*: nobody publishes them, and
  :meth:`drain` reports them when candle updates move the newest closed candle of their
  ``(symbol, timeframe)`` (a new indicator row) or add confirmed pivots.
- **Back-pressure** per kind (:class:`~pivotal.orchestrator.config.StreamConfig`): each key
  buffers at most ``capacity`` updates. When full, ``coalesce`` merges the pending updates
  into the new one (only the newest is kept; right for 10 Hz COB snapshots, whose newest
  supersedes the rest) and ``drop_oldest`` drops the oldest pending one. Both are counted
  (:class:`StreamStats`), and ``received == applied + dropped + coalesced`` always holds
  once the buffers are drained.
- **Robust application.** A candle update is applied as "append the rows the frame lacks,
  then advance the symbol's cursor to the newest close": rows the frame holds are ignored,
  and rows older than the newest held one that the frame lacks (their own update was
  dropped) are skipped and counted (``skipped_rows``), so a later update carrying more rows
  still applies. An update the frame refuses (a COB snapshot older than the newest, trades
  out of order, a NaN candle) is counted as dropped and ``rejected`` with the reason, and
  logged; :meth:`drain` goes on with the rest and never raises for the data.
- **Threads.** One lock guards the buffers and counters; :meth:`publish` holds it for a few
  microseconds and never waits on the consumer. :meth:`drain` swaps the buffers under the
  lock and applies them outside it. The frame itself belongs to the draining thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.orchestrator.config import OrchestratorConfig, StreamConfig
from pivotal.orchestrator.frame import MarketFrame

__all__ = [
    "DataSubscriptionManager",
    "StreamKey",
    "StreamKind",
    "StreamStats",
    "StreamUpdate",
]

logger = logging.getLogger(__name__)


class StreamKind(StrEnum):
    """What a stream carries; the value is its key in ``OrchestratorConfig.streams``."""

    CANDLES = "candles"
    COB = "cob"
    TRADES = "trades"
    INDICATORS = "indicators"
    PIVOTS = "pivots"


_PAYLOAD: dict[StreamKind, type] = {
    StreamKind.CANDLES: Candles,
    StreamKind.COB: COBData,
    StreamKind.TRADES: Trades,
}
_DERIVED = frozenset({StreamKind.INDICATORS, StreamKind.PIVOTS})
_WITH_TIMEFRAME = frozenset({StreamKind.CANDLES, StreamKind.INDICATORS, StreamKind.PIVOTS})


@lru_cache(maxsize=1_024)
def _canonical(symbol: str) -> str:
    return str(Symbol.parse(symbol))


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One stream: ``kind``, ``symbol`` (ccxt form, normalized: ``"btc/usdt"`` becomes
    ``"BTC/USDT"``) and ``timeframe`` (required for candles, indicators and pivots; None for
    COB and trades)."""

    kind: StreamKind
    symbol: str
    timeframe: Timeframe | None = None

    def __post_init__(self) -> None:
        try:
            kind = StreamKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in StreamKind)
            raise ValueError(f"unknown stream kind {self.kind!r}; allowed: {allowed}") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "symbol", _canonical(str(self.symbol)))
        if kind in _WITH_TIMEFRAME:
            if self.timeframe is None:
                raise ValueError(
                    f"a {kind} stream needs a timeframe, e.g. StreamKey({kind!r}, "
                    f"{self.symbol!r}, '1m')"
                )
            object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))
        elif self.timeframe is not None:
            raise ValueError(f"a {kind} stream has no timeframe; got {self.timeframe!r}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.symbol}" + (f":{self.timeframe}" if self.timeframe else "")


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """New data of one stream. ``timestamp``: UTC ms of the event (a candle's close, a
    snapshot's time); freshness is measured from it. ``payload``: ``Candles`` (closed
    candles, oldest first) for ``CANDLES``, ``COBData`` for ``COB``, ``Trades`` for
    ``TRADES``; derived streams are not published."""

    key: StreamKey
    timestamp: int
    payload: Candles | COBData | Trades | None

    def __post_init__(self) -> None:
        if not isinstance(self.key, StreamKey):
            raise TypeError(f"StreamUpdate.key must be a StreamKey, got {self.key!r}")
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int | np.integer):
            raise TypeError(f"StreamUpdate.timestamp must be UTC ms as int, got {self.timestamp!r}")
        object.__setattr__(self, "timestamp", int(self.timestamp))


@dataclass
class StreamStats:
    """Counters of one stream. ``received``: updates published; ``applied``: applied to the
    frame (for a derived stream: times reported changed); ``dropped``: displaced by
    ``drop_oldest`` or refused by the frame (``rejected`` of them, the last reason in
    ``last_error``); ``coalesced``: merged into a newer update; ``skipped_rows``: candle rows
    left out because a newer row was already held; ``last_timestamp``: the newest applied
    update's timestamp (UTC ms)."""

    received: int = 0
    applied: int = 0
    dropped: int = 0
    coalesced: int = 0
    last_timestamp: int | None = None
    rejected: int = 0
    skipped_rows: int = 0
    last_error: str | None = None


def _stream_configs(streams: Mapping[str, StreamConfig] | None) -> dict[StreamKind, StreamConfig]:
    configs = {StreamKind(k): v for k, v in OrchestratorConfig().streams.items()}
    for name, config in (streams or {}).items():
        try:
            kind = StreamKind(name)
        except ValueError:
            allowed = ", ".join(k.value for k in StreamKind)
            raise ValueError(f"streams names unknown kind {name!r}; allowed: {allowed}") from None
        if not isinstance(config, StreamConfig):
            raise TypeError(f"streams[{name!r}] must be a StreamConfig, got {config!r}")
        configs[kind] = config
    return configs


class DataSubscriptionManager:
    """Buffers published updates per stream and applies them to ``frame`` (module docstring).

    ``streams``: back-pressure per kind (``OrchestratorConfig.streams``); kinds left out get
    the defaults of :class:`~pivotal.orchestrator.config.OrchestratorConfig`.
    """

    def __init__(
        self, frame: MarketFrame, streams: Mapping[str, StreamConfig] | None = None
    ) -> None:
        if not isinstance(frame, MarketFrame):
            raise TypeError(f"frame must be a MarketFrame, got {type(frame).__name__}")
        self.frame = frame
        self._configs = _stream_configs(streams)
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._subscribed: dict[StreamKey, None] = {}  # insertion-ordered set
        self._derived: dict[str, tuple[StreamKey, ...]] = {}  # symbol -> its derived keys
        self._pending: dict[StreamKey, deque[tuple[int, StreamUpdate]]] = {}
        self._stats: dict[StreamKey, StreamStats] = {}

    def subscribe(self, key: StreamKey) -> None:
        """Accept updates of ``key`` (derived keys: report them from :meth:`drain`).
        Subscribing twice is harmless."""
        if not isinstance(key, StreamKey):
            raise TypeError(f"subscribe takes a StreamKey, got {type(key).__name__}")
        with self._lock:
            if key in self._subscribed:
                return
            self._subscribed[key] = None
            self._stats[key] = StreamStats()
            if key.kind in _DERIVED:  # copy on write: drain reads it without the lock
                self._derived[key.symbol] = (*self._derived.get(key.symbol, ()), key)

    def subscriptions(self) -> tuple[StreamKey, ...]:
        """Subscribed keys in subscription order."""
        with self._lock:
            return tuple(self._subscribed)

    def publish(self, update: StreamUpdate) -> bool:
        """Buffer ``update`` for the next :meth:`drain`; safe from any thread, never waits on
        the consumer. Returns False when the key's buffer was full and back-pressure acted
        (an older pending update dropped, or the pending ones coalesced into this one).
        Raises ``ValueError`` for an unsubscribed key, a derived key, or a payload that does
        not match the key's kind or symbol."""
        if not isinstance(update, StreamUpdate):
            raise TypeError(f"publish takes a StreamUpdate, got {type(update).__name__}")
        key = update.key
        self._check_payload(update)
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                raise ValueError(
                    f"stream {key} is not subscribed; call subscribe(StreamKey({key.kind!r}, "
                    f"{key.symbol!r}{', ' + repr(str(key.timeframe)) if key.timeframe else ''}))"
                    " first"
                )
            stats.received += 1
            config = self._configs[key.kind]
            buffer = self._pending.get(key)
            if buffer is None:
                buffer = self._pending[key] = deque()
            entry = (next(self._sequence), update)
            if len(buffer) < config.capacity:
                buffer.append(entry)
                return True
            if config.overflow == "coalesce":
                stats.coalesced += len(buffer)
                buffer.clear()
            else:
                buffer.popleft()
                stats.dropped += 1
            buffer.append(entry)
            return False

    @staticmethod
    def _check_payload(update: StreamUpdate) -> None:
        key = update.key
        if key.kind in _DERIVED:
            raise ValueError(
                f"{key} is a derived stream: drain() reports it when candle updates change it; "
                "publish the candles instead"
            )
        expected = _PAYLOAD[key.kind]
        if not isinstance(update.payload, expected):
            raise ValueError(
                f"update of {key} carries {type(update.payload).__name__}; a {key.kind} stream "
                f"carries {expected.__name__}"
            )
        if isinstance(update.payload, COBData) and str(update.payload.symbol) != key.symbol:
            raise ValueError(
                f"update of {key} carries a COB snapshot of {update.payload.symbol}; publish it "
                f"under StreamKey('cob', {str(update.payload.symbol)!r})"
            )

    async def pump(self, updates: AsyncIterator[StreamUpdate]) -> int:
        """Publish every update of an async source (an exchange websocket); returns how
        many. Errors of :meth:`publish` propagate and stop the pump."""
        count = 0
        async for update in updates:
            self.publish(update)
            count += 1
        return count

    # -- the consumer's side --------------------------------------------------------------
    def drain(self) -> list[StreamKey]:
        """Apply every buffered update to the frame in arrival order (call from the thread
        that owns the frame). ``CANDLES``: append the rows the frame lacks, advance the
        symbol to the newest close; ``COB``: record the snapshot; ``TRADES``: record the
        trades. Returns the keys updated, each once, in the order of their first update;
        a changed derived key follows the candle key of its ``(symbol, timeframe)`` (or
        comes last when that stream had no update)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return []
        entries = [entry for buffer in pending.values() for entry in buffer]
        entries.sort(key=lambda entry: entry[0])
        frame = self.frame
        before: dict[StreamKey, int] = {}
        applied: dict[StreamKey, list] = {}  # key -> [applied, newest timestamp, skipped rows]
        failed: dict[StreamKey, list] = {}  # key -> [rejected, last reason]
        for _, update in entries:
            key = update.key
            try:
                if key.kind is StreamKind.CANDLES:
                    if key.symbol in self._derived:
                        self._remember(key.symbol, before)
                    skipped = self._apply_candles(key, update.payload)
                elif key.kind is StreamKind.COB:
                    frame.add_cob(update.payload)
                    skipped = 0
                else:
                    frame.add_trades(key.symbol, update.payload)
                    skipped = 0
            except (ValueError, TypeError) as exc:
                logger.warning("stream %s: update at %s refused: %s", key, update.timestamp, exc)
                record = failed.setdefault(key, [0, None])
                record[0] += 1
                record[1] = str(exc)
                continue
            record = applied.setdefault(key, [0, update.timestamp, 0])
            record[0] += 1
            record[1] = max(record[1], update.timestamp)
            record[2] += skipped
        derived = self._changed(before, applied) if before else {}
        self._count(applied, failed, derived)
        return self._order(list(applied), derived) if derived else list(applied)

    def _apply_candles(self, key: StreamKey, candles: Candles) -> int:
        """Append what extends the series, advance to the newest close; rows skipped."""
        if not len(candles):
            return 0
        frame = self.frame
        split = frame.take_candles(key.symbol, key.timeframe, candles)
        close = int(candles.timestamp[-1]) + key.timeframe.ms
        known = frame.known_until(key.symbol)
        frame.advance(key.symbol, close if known is None else max(known, close))
        return len(split.stale)

    def _state(self, key: StreamKey) -> int:
        if key.kind is StreamKind.INDICATORS:
            return self.frame.candle_count(key.symbol, key.timeframe)  # unbounded, unlike candles
        return self.frame.pivot_count(key.symbol, key.timeframe)

    def _remember(self, symbol: str, before: dict[StreamKey, int]) -> None:
        for key in self._derived[symbol]:
            if key not in before:
                before[key] = self._state(key)

    def _changed(self, before: dict[StreamKey, int], applied: dict[StreamKey, list]) -> dict:
        """Derived keys whose state moved, with the newest candle timestamp of their symbol."""
        newest: dict[str, int] = {}
        for key, (_, timestamp, _) in applied.items():
            if key.kind is StreamKind.CANDLES:
                newest[key.symbol] = max(newest.get(key.symbol, timestamp), timestamp)
        return {
            key: newest[key.symbol]
            for key, state in before.items()
            if key.symbol in newest and self._state(key) != state
        }

    def _count(self, applied: dict, failed: dict, derived: dict) -> None:
        with self._lock:
            for key, (count, timestamp, skipped) in applied.items():
                stats = self._stats[key]
                stats.applied += count
                stats.skipped_rows += skipped
                if stats.last_timestamp is None or timestamp > stats.last_timestamp:
                    stats.last_timestamp = timestamp
            for key, (count, reason) in failed.items():
                stats = self._stats[key]
                stats.dropped += count
                stats.rejected += count
                stats.last_error = reason
            for key, timestamp in derived.items():
                stats = self._stats[key]
                stats.received += 1
                stats.applied += 1
                if stats.last_timestamp is None or timestamp > stats.last_timestamp:
                    stats.last_timestamp = timestamp

    @staticmethod
    def _order(updated: list[StreamKey], derived: dict[StreamKey, int]) -> list[StreamKey]:
        out: list[StreamKey] = []
        placed: set[StreamKey] = set()
        for key in updated:
            out.append(key)
            if key.kind is StreamKind.CANDLES:
                for kind in (StreamKind.INDICATORS, StreamKind.PIVOTS):
                    follower = StreamKey(kind, key.symbol, key.timeframe)
                    if follower in derived:
                        out.append(follower)
                        placed.add(follower)
        out.extend(key for key in derived if key not in placed)
        return out

    # -- monitoring -----------------------------------------------------------------------
    def stats(self) -> dict[StreamKey, StreamStats]:
        """A copy of every subscribed stream's counters."""
        with self._lock:
            return {key: replace(stats) for key, stats in self._stats.items()}

    def freshness(self, now_ms: int) -> dict[StreamKey, int | None]:
        """Milliseconds from each stream's newest applied update to ``now_ms`` (None: none
        applied yet). Compare with the kind's ``refresh_ms`` to find a stalled feed."""
        with self._lock:
            return {
                key: None if stats.last_timestamp is None else int(now_ms) - stats.last_timestamp
                for key, stats in self._stats.items()
            }

    def refresh_ms(self, kind: StreamKind | str) -> int:
        """The expected update period of ``kind`` (from its ``StreamConfig``)."""
        return self._configs[StreamKind(kind)].refresh_ms
