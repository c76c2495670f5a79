"""ccxt structures to stream items, and the cursors that emit every trade and candle once.

ccxt's ``watch_trades`` and ``watch_ohlcv`` answer with (a view of) a cache of recent rows; a
reconnect or a REST back-fill returns rows already seen. A cursor per (exchange, symbol,
channel) remembers what went out and lets only the new rows through, so live rows, back-filled
rows and repeated rows can be mixed freely.

Trade identity:

- An id that reads as an integer (Binance, Bybit spot) is the trade id; a trade is new when its
  id is above the newest id emitted.
- Exchanges that send no id (MEXC's public trade stream) get a synthetic id: a 63-bit hash of
  (time, price, quantity, side, occurrence), occurrence counting identical trades within one
  millisecond. A trade is new when it is newer than the newest time emitted, or at that time
  and not yet emitted (counted per fingerprint). The same trade seen live and over REST gets
  the same id, so stored rows stay idempotent.

Candles: the newest candle is "open" and goes out as an update (``closed=False``) each time it
changes; it goes out once more with ``closed=True`` when a newer candle appears. A REST page
marks every row but its newest as final.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.venues.stream_events import BookItem, CandleItem, TickerItem

__all__ = [
    "CandleCursor",
    "TradeCursor",
    "book_item",
    "ticker_item",
    "trade_id",
]

_MASK63 = (1 << 63) - 1


def _float(value: Any) -> float:
    """A ccxt number (float, str or None) as a float; None is NaN."""
    if value is None:
        return math.nan
    return float(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def int_id(value: Any) -> int | None:
    """The trade id as an int, or None when it is missing or not a decimal integer."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _fingerprint(trade: Mapping[str, Any]) -> tuple[int, float, float, str]:
    return (
        int(trade["timestamp"]),
        _float(trade.get("price")),
        _float(trade.get("amount")),
        str(trade.get("side") or ""),
    )


def trade_id(trade: Mapping[str, Any], occurrence: int = 0) -> int:
    """The trade's id as an int: its own when it is one, else a synthetic 63-bit hash of its
    fingerprint and ``occurrence`` (see the module docstring)."""
    own = int_id(trade.get("id"))
    if own is not None:
        return own
    ts, price, amount, side = _fingerprint(trade)
    text = f"{ts}|{price!r}|{amount!r}|{side}|{occurrence}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") & _MASK63


@dataclass
class TradeCursor:
    """What one exchange's trade stream of one symbol has emitted (see the module docstring).

    ``ids``: whether the exchange's trade ids are used (True), ignored in favour of
    synthetic ids (False: for exchanges whose stream and REST disagree on ids, e.g. MEXC), or
    decided by the first trade (None). ``last_id``: the newest integer id emitted;
    ``last_ms``: the newest trade time emitted.
    """

    ids: bool | None = None
    last_id: int | None = None
    last_ms: int | None = None
    _at_last_ms: Counter[tuple[int, float, float, str]] = field(default_factory=Counter)

    def take(self, trades: Iterable[Mapping[str, Any]]) -> Trades | None:
        """The trades not emitted yet, oldest first, as a :class:`Trades` (None if none); the
        cursor moves past them."""
        rows = [t for t in trades if t.get("timestamp") is not None]
        if not rows:
            return None
        if self.ids is None:
            self.ids = int_id(rows[0].get("id")) is not None
        rows.sort(key=lambda t: (int(t["timestamp"]), (self.ids and int_id(t.get("id"))) or 0))
        fresh: list[tuple[int, float, float, bool, int]] = []
        batch_seen: Counter[tuple[int, float, float, str]] = Counter()
        for trade in rows:
            own = int_id(trade.get("id")) if self.ids else None
            fp = _fingerprint(trade)
            ts = fp[0]
            if own is not None:
                if self.last_id is not None and own <= self.last_id:
                    continue
                self.last_id = own
                tid = own
            else:
                batch_seen[fp] += 1
                occurrence = batch_seen[fp] - 1
                if self.last_ms is not None and (
                    ts < self.last_ms or (ts == self.last_ms and occurrence < self._at_last_ms[fp])
                ):
                    continue
                tid = trade_id({**trade, "id": None}, occurrence)
            if self.last_ms is None or ts > self.last_ms:
                self.last_ms = ts
                self._at_last_ms.clear()
            if ts == self.last_ms and own is None:
                self._at_last_ms[fp] += 1
            fresh.append((ts, fp[1], fp[2], fp[3] == "sell", tid))
        if not fresh:
            return None
        ts_, price, qty, maker, ids = zip(*fresh, strict=True)
        return Trades(
            timestamp=np.array(ts_, dtype=np.int64),
            price=np.array(price, dtype=np.float64),
            quantity=np.array(qty, dtype=np.float64),
            is_buyer_maker=np.array(maker, dtype=np.bool_),
            trade_id=np.array(ids, dtype=np.int64),
        )


Row = tuple[int, float, float, float, float, float]


def _row(candle: Sequence[Any]) -> Row:
    return (
        int(candle[0]),
        _float(candle[1]),
        _float(candle[2]),
        _float(candle[3]),
        _float(candle[4]),
        _float(candle[5]) if len(candle) > 5 else math.nan,
    )


def _candles(row: Row) -> Candles:
    return Candles(*(np.array([v]) for v in row))


@dataclass
class CandleCursor:
    """What one exchange's candle stream of one symbol and timeframe has emitted.

    ``open_ms``: open time of the forming candle (its latest values in ``open_row``);
    ``closed_ms``: open time of the newest candle emitted as closed. ``late``: rows ignored
    because their candle had already gone out closed.
    """

    open_ms: int | None = None
    open_row: Row | None = None
    closed_ms: int | None = None
    late: int = 0

    @property
    def newest_ms(self) -> int | None:
        """Open time of the newest candle seen (forming or closed)."""
        values = [v for v in (self.open_ms, self.closed_ms) if v is not None]
        return max(values) if values else None

    def take(
        self, candles: Sequence[Sequence[Any]], *, final_but_last: bool
    ) -> list[tuple[Row, bool]]:
        """(row, closed) pairs to emit for ``candles`` (ccxt OHLCV rows), oldest first.

        ``final_but_last``: the rows come from a REST page, where every row but the newest is
        final. An update of a forming candle that another update in the same call supersedes is
        left out (the newest state is what matters).
        """
        rows = sorted((_row(c) for c in candles), key=lambda r: r[0])
        out: list[tuple[Row, bool]] = []

        def close(row: Row) -> None:
            if self.closed_ms is None or row[0] > self.closed_ms:
                out.append((row, True))
                self.closed_ms = row[0]

        for i, row in enumerate(rows):
            ts = row[0]
            if self.closed_ms is not None and ts <= self.closed_ms:
                self.late += 1
                continue
            if final_but_last and i < len(rows) - 1:
                if self.open_row is not None and self.open_ms is not None and self.open_ms < ts:
                    close(self.open_row)  # REST skipped it (an empty interval): keep what we saw
                close(row)
                if self.open_ms is not None and self.open_ms <= ts:
                    self.open_ms = self.open_row = None
                continue
            if self.open_ms is None or ts == self.open_ms:
                if row != self.open_row:  # an unchanged candle is not news
                    self.open_ms, self.open_row = ts, row
                    out.append((row, False))
            elif ts > self.open_ms:
                assert self.open_row is not None
                close(self.open_row)
                self.open_ms, self.open_row = ts, row
                out.append((row, False))
            else:
                self.late += 1  # older than the forming candle: its turn has passed
        keep: list[tuple[Row, bool]] = []
        for j, (row, closed) in enumerate(out):
            superseded = any(later[0] == row[0] for later, _ in out[j + 1 :])
            if closed or not superseded:
                keep.append((row, closed))
        return keep

    def items(
        self,
        pairs: Sequence[tuple[Row, bool]],
        *,
        exchange: str,
        symbol: Symbol,
        timeframe: Timeframe,
        received_ms: int,
        backfilled: bool,
    ) -> list[CandleItem]:
        return [
            CandleItem(exchange, symbol, received_ms, timeframe, _candles(row), closed, backfilled)
            for row, closed in pairs
        ]


def _levels(side: Any, depth: int) -> np.ndarray:
    rows = [(float(level[0]), float(level[1])) for level in list(side or [])[:depth]]
    if not rows:
        return np.empty((0, 2), dtype=np.float64)
    return np.array(rows, dtype=np.float64)


def book_item(
    book: Mapping[str, Any], *, exchange: str, symbol: Symbol, received_ms: int, depth: int
) -> BookItem:
    """The top ``depth`` levels per side of a ccxt order book."""
    return BookItem(
        exchange=exchange,
        symbol=symbol,
        received_ms=received_ms,
        time_ms=_opt_int(book.get("timestamp")),
        nonce=_opt_int(book.get("nonce")),
        bids=_levels(book.get("bids"), depth),
        asks=_levels(book.get("asks"), depth),
    )


def ticker_item(
    ticker: Mapping[str, Any], *, exchange: str, symbol: Symbol, received_ms: int
) -> TickerItem:
    """A ccxt ticker as a :class:`TickerItem`."""
    return TickerItem(
        exchange=exchange,
        symbol=symbol,
        received_ms=received_ms,
        time_ms=_opt_int(ticker.get("timestamp")),
        bid=_opt_float(ticker.get("bid")),
        ask=_opt_float(ticker.get("ask")),
        last=_opt_float(ticker.get("last")),
        bid_qty=_opt_float(ticker.get("bidVolume")),
        ask_qty=_opt_float(ticker.get("askVolume")),
        base_volume=_opt_float(ticker.get("baseVolume")),
        quote_volume=_opt_float(ticker.get("quoteVolume")),
    )
