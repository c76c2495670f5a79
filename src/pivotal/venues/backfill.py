"""REST back-fill: what a stream missed while it was down, or on an exchange it just joined.

Called after every reconnect (from the stream's own cursor) and on every exchange switch (from
the time of the newest row the stream had on any exchange). The rows go through the same
cursor as live rows, so nothing goes out twice, and out in time order before the live rows
that arrived meanwhile.

Trades:

- Binance, with the cursor's last trade id known and an API key set on the client: pages of
  ``historicalTrades`` from ``fromId = last id + 1`` until a short page (the stream has caught
  up). ccxt refuses ``historicalTrades`` without a key, so without one Binance falls back to
  the newest trades (``GET /api/v3/trades``, up to 1,000), which covers a short outage.
- Binance without an id to start from (a fresh exchange after a switch): the newest trades,
  then (with a key) older pages by ``fromId`` until ``since_ms`` is covered.
- Other exchanges: the newest trades (their public APIs do not page trades by id), keeping
  those at or after the cursor's time.
- When the answer cannot reach back far enough (a full page whose oldest row is still newer
  than the point to resume from, or the page budget ran out), the result says so
  (``shortfall``); the supervisor counts it and emits a ``backfill_shortfall`` status.

Candles: ``fetch_ohlcv`` since the open time of the newest candle seen (inclusive: it is
finalised by REST's values), paging forward until a short page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.venues.backoff import RequestGate
from pivotal.venues.convert import CandleCursor, Row, TradeCursor

__all__ = [
    "CANDLE_PAGE_LIMITS",
    "MAX_PAGES",
    "TRADE_PAGE_LIMITS",
    "CandleBackfill",
    "TradeBackfill",
    "backfill_candles",
    "backfill_trades",
]

TRADE_PAGE_LIMITS = {"binance": 1000, "bybit": 60, "mexc": 1000}
"""Largest trade page each exchange serves (Bybit spot: 60)."""

CANDLE_PAGE_LIMITS = {"binance": 1000, "bybit": 1000, "mexc": 500}
"""Largest candle page each exchange serves (MEXC documents 1,000 and serves 500)."""

MAX_PAGES = 100
"""Pages per back-fill at most; beyond this the rest is reported as a shortfall."""

_HISTORICAL = "publicGetHistoricalTrades"


@dataclass
class TradeBackfill:
    """Trades recovered (one batch per page, oldest first), their row count, and what could
    not be recovered (None when nothing is known to be missing)."""

    batches: list[Trades] = field(default_factory=list)
    rows: int = 0
    requests: int = 0
    shortfall: str | None = None


@dataclass
class CandleBackfill:
    """Candles recovered as (row, closed) pairs in order, and what could not be."""

    pairs: list[tuple[Row, bool]] = field(default_factory=list)
    requests: int = 0
    shortfall: str | None = None

    @property
    def rows(self) -> int:
        return len(self.pairs)


def _limit(table: dict[str, int], exchange: str, page_limit: int) -> int:
    return max(1, min(page_limit, table.get(exchange, page_limit)))


def _has_key(client: Any) -> bool:
    key = getattr(client, "apiKey", None)
    return bool(key)


async def _fetch_trades(
    client: Any, gate: RequestGate, symbol: Symbol, limit: int, params: dict[str, Any]
) -> list[dict[str, Any]]:
    await gate.wait()
    return list(await client.fetch_trades(str(symbol), None, limit, params))


async def backfill_trades(
    client: Any,
    exchange: str,
    symbol: Symbol,
    cursor: TradeCursor,
    *,
    since_ms: int | None,
    gate: RequestGate,
    page_limit: int = 1000,
    max_pages: int = MAX_PAGES,
) -> TradeBackfill:
    """Trades of ``symbol`` on ``exchange`` that ``cursor`` has not emitted, from the cursor's
    position or, for a cursor that has emitted nothing, from ``since_ms`` (UTC ms, inclusive;
    None: only the newest page). The cursor moves past them. REST errors propagate (ccxt's)."""
    out = TradeBackfill()
    limit = _limit(TRADE_PAGE_LIMITS, exchange, page_limit)
    binance = exchange == "binance"

    def keep(rows: list[dict[str, Any]], floor_ms: int | None) -> None:
        if floor_ms is not None:
            rows = [
                r for r in rows if r.get("timestamp") is not None and r["timestamp"] >= floor_ms
            ]
        batch = cursor.take(rows)
        if batch is not None:
            out.batches.append(batch)
            out.rows += len(batch)

    if binance and cursor.last_id is not None and _has_key(client):
        next_id = cursor.last_id + 1
        while True:
            if out.requests >= max_pages:
                out.shortfall = f"stopped after {max_pages} pages at trade id {next_id}"
                return out
            params = {"fetchTradesMethod": _HISTORICAL, "fromId": next_id}
            page = await _fetch_trades(client, gate, symbol, limit, params)
            out.requests += 1
            keep(page, None)
            ids = [int(t["id"]) for t in page if t.get("id") is not None]
            if len(page) < limit or not ids or max(ids) < next_id:
                return out
            next_id = max(ids) + 1

    resume_ms = cursor.last_ms if cursor.last_ms is not None else since_ms
    params = {"fetchTradesMethod": "publicGetTrades"} if binance else {}
    page = await _fetch_trades(client, gate, symbol, limit, params)
    out.requests += 1
    pages = [page]
    if binance and _has_key(client) and resume_ms is not None:
        # older pages by id until the resume point is covered
        while _uncovered(pages[0], limit, resume_ms) and out.requests < max_pages:
            first = min(int(t["id"]) for t in pages[0] if t.get("id") is not None)
            if first <= 0:
                break
            from_id = max(0, first - limit)
            params = {"fetchTradesMethod": _HISTORICAL, "fromId": from_id}
            older = await _fetch_trades(client, gate, symbol, limit, params)
            out.requests += 1
            older = [t for t in older if t.get("id") is not None and int(t["id"]) < first]
            if not older:
                break
            pages.insert(0, older)
    if resume_ms is not None and _uncovered(pages[0], limit, resume_ms):
        oldest = min(int(t["timestamp"]) for t in pages[0])
        out.shortfall = (
            f"trades between {resume_ms} and {oldest} (UTC ms) may be missing: "
            f"the exchange returned only its newest {limit}"
        )
    rows = [t for p in pages for t in p]
    keep(rows, since_ms if cursor.last_ms is None else None)
    return out


def _uncovered(page: list[dict[str, Any]], limit: int, resume_ms: int) -> bool:
    """A full page whose oldest trade is newer than ``resume_ms``: older trades may exist."""
    times = [int(t["timestamp"]) for t in page if t.get("timestamp") is not None]
    return len(page) >= limit and bool(times) and min(times) > resume_ms


async def backfill_candles(
    client: Any,
    exchange: str,
    symbol: Symbol,
    timeframe: Timeframe,
    cursor: CandleCursor,
    *,
    since_ms: int | None,
    gate: RequestGate,
    page_limit: int = 1000,
    max_pages: int = MAX_PAGES,
) -> CandleBackfill:
    """Candles of ``symbol`` ``timeframe`` on ``exchange`` from the newest one ``cursor`` has
    seen (inclusive), or from ``since_ms`` (UTC ms, an open time, inclusive) for a cursor that
    has seen none (None: the newest page only). Returns the (row, closed) pairs to emit; the
    cursor moves past them."""
    out = CandleBackfill()
    limit = _limit(CANDLE_PAGE_LIMITS, exchange, page_limit)
    start = cursor.newest_ms if cursor.newest_ms is not None else since_ms
    if start is not None:
        start = timeframe.floor(int(start))
    rows: list[list[Any]] = []
    while True:
        if out.requests >= max_pages:
            out.shortfall = f"stopped after {max_pages} pages at open time {start}"
            break
        await gate.wait()
        page = list(await client.fetch_ohlcv(str(symbol), timeframe.value, start, limit))
        out.requests += 1
        fresh = [r for r in page if start is None or int(r[0]) >= start]
        rows.extend(fresh)
        if start is None or len(page) < limit or not fresh:
            break
        start = max(int(r[0]) for r in fresh) + timeframe.ms
    out.pairs = cursor.take(rows, final_but_last=True)
    return out
