"""Recorded exchange traffic replayed through ccxt.pro's own message handlers, offline.

The recordings are cryptofeed's raw-data files (``shared/data/messages/cryptofeed``):

- ``<EXCHANGE>.ws.N.M``: the first line ``<ws url> <-> <connect time>``, then
  ``<url> <- <time>: <sent message>`` for each subscription and ``<time>: <frame>`` for each
  received frame (times are UNIX seconds with a fraction).
- ``<EXCHANGE>.0`` and ``<EXCHANGE>.http.N.M``: REST calls, ``<url> -> <time>: <body>`` a line.

Each received frame goes, parsed, into ``exchange.handle_message(client, message)`` of a
ccxt.pro client that never opens a socket: its markets come from the recorded REST answers and
its HTTP transport (``fetch``) answers from the recording too. Whenever ccxt resolves an order
book (``client.resolve(orderbook, hash)``), the book as ccxt holds it becomes a
:class:`~pivotal.venues.stream_events.BookItem`: the shape the live streams produce.

Time: the replay clock is the recording's receive time. A frame is handled at its receive
time; an order-book snapshot that ccxt asks for over REST is answered at the time it was
recorded, never earlier (ccxt keeps buffering deltas until then, as it would while a slow
REST call is in flight), so no state uses data from after its ``received_ms``. Market
metadata (``<EXCHANGE>.0``: the markets list) is served at once and as often as asked. Each
recorded book snapshot (``.http.`` files) is served once; asking again for the same book
finds nothing (``NetworkError``, counted in ``rest_missing``), as a recording holds no later
snapshot. One caveat of that timing: cryptofeed wrote some frames' receive times late
(Bitstamp's first deltas carry venue times up to 6 s before their receive times).

Venues (the ccxt class that parses each feed):

- ``coinbase``: ``ccxt.pro.coinbaseexchange`` (the old ``level2`` channel: ``snapshot`` and
  ``l2update`` frames; no update ids, the snapshot carries no time).
- ``kraken``: ``ccxt.pro.kraken``. The installed ccxt parses only Kraken's v2 book messages;
  the recording is v1 (``[channelID, {"as": .., "bs": ..}, "book-1000", "XBT/CHF"]`` and
  ``{"a": ..}``/``{"b": .., "c": checksum}`` updates). Each v1 book frame is rewritten field
  for field into the v2 shape (same price and quantity strings, the v1 pair name mapped to
  ccxt's symbol, the newest level time as the update time) and handed to ccxt's v2 handler;
  ccxt keeps the subscribed depth (1,000). Other v1 arrays (trades, tickers) are counted as
  ignored.
- ``bitstamp``: ``ccxt.pro.bitstamp`` (``diff_order_book``; ccxt caches deltas and asks for a
  REST snapshot after six of them). The recording has the old ``trading-pairs-info`` answer
  where ccxt now asks ``/markets/``: its rows are transcribed into the new fields.
- ``binance``: ``ccxt.pro.binance`` (``depth@100ms`` with the REST ``/depth`` snapshot).
  cryptofeed subscribed through the connect URL; the replay subscribes ccxt to the same depth
  streams at connect time (``handle_order_book_subscription``), which spawns ccxt's snapshot
  fetch.

Coinbase and Kraken REST recordings lack the currencies endpoints, so those clients run with
``has['fetchCurrencies'] = False``. Errors a handler raises are counted by type in
:class:`ReplayStats`, as are ccxt's rejections (a failed book sync), and the replay goes on.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import json
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import ccxt.pro as ccxtpro
import numpy as np
import numpy.typing as npt
from ccxt.async_support.base.ws.order_book import OrderBook as CcxtOrderBook
from ccxt.base.errors import NetworkError

from pivotal.core.errors import DataError, OperationalError
from pivotal.core.symbols import Symbol
from pivotal.venues.stream_events import BookItem

__all__ = [
    "CRYPTOFEED_VENUES",
    "RecordedVenue",
    "ReplayStats",
    "RestRecord",
    "WsRecording",
    "cryptofeed_venue",
    "read_rest_recording",
    "read_ws_recording",
    "replay_cryptofeed",
]

_T = TypeVar("_T")
_DRAIN_STEPS = 100_000  # loop turns a replay step may take before it is declared stuck


@dataclass(frozen=True, slots=True)
class RestRecord:
    """One recorded REST answer. ``repeatable``: served again when asked again (metadata)."""

    url: str
    received_ms: int
    body: str
    repeatable: bool


@dataclass(frozen=True, slots=True)
class WsRecording:
    """One recorded WebSocket connection: its URL, connect time, the messages sent on it."""

    path: Path
    url: str
    connected_ms: int
    sent: tuple[tuple[int, str], ...]


def _ms(seconds: str, path: Path, line_no: int) -> int:
    try:
        return round(float(seconds) * 1000.0)
    except ValueError:
        raise DataError(
            f"{path}:{line_no}: expected a UNIX time in seconds, got {seconds[:40]!r}; "
            "is this a cryptofeed raw-data recording?"
        ) from None


def read_rest_recording(path: Path | str, *, repeatable: bool | None = None) -> list[RestRecord]:
    """The REST answers of a cryptofeed recording (``<url> -> <time>: <body>`` lines; other
    lines, e.g. ``configuration: ...``, skipped). ``repeatable`` defaults to True for
    ``<EXCHANGE>.0`` files (metadata) and False for ``.http.`` files (book snapshots)."""
    path = Path(path)
    if repeatable is None:
        repeatable = ".http." not in path.name
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            url, sep, rest = line.partition(" -> ")
            if not sep:
                continue
            stamp, _, body = rest.partition(": ")
            out.append(RestRecord(url.strip(), _ms(stamp, path, line_no), body, repeatable))
    return out


def read_ws_recording(path: Path | str) -> tuple[WsRecording, list[tuple[int, str]]]:
    """The connection header and the received frames ``(received_ms, text)`` of a recording."""
    path = Path(path)
    frames: list[tuple[int, str]] = []
    sent: list[tuple[int, str]] = []
    url, connected_ms = "", 0
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if line_no == 1:
                url, sep, stamp = line.partition(" <-> ")
                if not sep:
                    raise DataError(
                        f"{path}:1: expected '<ws url> <-> <connect time>', got {line[:80]!r}"
                    )
                connected_ms = _ms(stamp, path, 1)
            elif " <- " in line.partition(": ")[0]:
                stamp, _, payload = line.partition(" <- ")[2].partition(": ")
                sent.append((_ms(stamp, path, line_no), payload))
            else:
                stamp, _, payload = line.partition(": ")
                frames.append((_ms(stamp, path, line_no), payload))
    return WsRecording(path, url, connected_ms, tuple(sent)), frames


@dataclass(slots=True)
class ReplayStats:
    """What one venue's replay did: frames handled, book states emitted, and what failed."""

    frames: int = 0
    translated: int = 0  # frames rewritten before ccxt saw them (Kraken v1 -> v2)
    ignored: int = 0  # frames no ccxt handler of this client parses (Kraken v1 trades, ...)
    states: int = 0
    rest_served: int = 0
    rest_missing: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # exception type -> count
    rejections: list[str] = field(default_factory=list)  # ccxt client.reject(...) messages


class _ReplayClient:
    """Stands in for ccxt's ws ``Client``: the futures/resolve API its handlers use, no socket.
    Resolved order books are remembered until the replay collects them."""

    def __init__(self, url: str, stats: ReplayStats) -> None:
        self.url = url
        self.futures: dict[str, Any] = {}
        self.subscriptions: dict[str, Any] = {}
        self.rejections: dict[str, Any] = {}
        self.error: Exception | None = None
        self.verbose = False
        self.lastPong: int | None = None  # ccxt's attribute name
        self.touched: dict[str, CcxtOrderBook] = {}
        self.stats = stats

    def future(self, message_hash: str) -> asyncio.Future[Any]:
        if message_hash not in self.futures:
            self.futures[message_hash] = asyncio.get_running_loop().create_future()
        return self.futures[message_hash]

    def reusableFuture(self, message_hash: str) -> asyncio.Future[Any]:  # noqa: N802 - ccxt
        return self.future(message_hash)

    def resolve(self, result: Any, message_hash: str | None = None) -> Any:
        if isinstance(result, CcxtOrderBook) and result.get("symbol"):
            self.touched[str(result["symbol"])] = result
        future = self.futures.pop(message_hash, None) if message_hash is not None else None
        if future is not None and not future.done():
            future.set_result(result)
        return result

    def reject(self, result: Any, message_hash: str | None = None) -> Any:
        self.stats.rejections.append(f"{message_hash}: {result}")
        return result

    async def close(self, code: int = 1000) -> None:
        return None

    def log(self, *args: Any) -> None:
        return None


class _RecordedRest:
    """ccxt's ``fetch`` answered from a recording, matched by URL path (trailing ``/`` ignored,
    host ignored: recorded hosts are older) and the query parameters both URLs carry.

    A book snapshot is not available before its recorded time: the awaiting ccxt task parks
    until the replay clock reaches it (:meth:`release`)."""

    def __init__(self, records: Iterable[RestRecord], stats: ReplayStats) -> None:
        self._by_path: dict[str, deque[RestRecord]] = {}
        for record in sorted(records, key=lambda r: r.received_ms):
            path = urlsplit(record.url).path.rstrip("/")
            self._by_path.setdefault(path, deque()).append(record)
        self.transforms: dict[str, tuple[str, Callable[[Any], Any]]] = {}
        self.stats = stats
        self.now_ms = -(2**62)
        self._parked: list[tuple[int, int, asyncio.Future[None]]] = []
        self._parked_tasks: dict[asyncio.Future[None], asyncio.Task[Any] | None] = {}
        self._seq = 0

    def _take(self, url: str) -> tuple[RestRecord, Callable[[Any], Any] | None] | None:
        split = urlsplit(url)
        path = split.path.rstrip("/")
        transform = None
        if path not in self._by_path and path in self.transforms:
            path, transform = self.transforms[path]
        queue = self._by_path.get(path)
        if not queue:
            return None
        wanted = dict(parse_qsl(split.query))
        for i, record in enumerate(queue):
            have = dict(parse_qsl(urlsplit(record.url).query))
            if all(wanted[k] == v for k, v in have.items() if k in wanted):
                if not record.repeatable:
                    del queue[i]
                return record, transform
        return None

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        found = self._take(url)
        if found is None:
            self.stats.rest_missing.append(url)
            raise NetworkError(f"{url} is not in the recording")
        record, transform = found
        if not record.repeatable and record.received_ms > self.now_ms:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._seq += 1
            heapq.heappush(self._parked, (record.received_ms, self._seq, waiter))
            self._parked_tasks[waiter] = asyncio.current_task()
            await waiter
        self.stats.rest_served += 1
        data = json.loads(record.body)
        return transform(data) if transform is not None else data

    def next_release(self) -> int | None:
        return self._parked[0][0] if self._parked else None

    def release(self, until_ms: int) -> None:
        """Wake the parked fetches recorded at or before ``until_ms``."""
        while self._parked and self._parked[0][0] <= until_ms:
            _, _, waiter = heapq.heappop(self._parked)
            self._parked_tasks.pop(waiter, None)
            if not waiter.done():
                waiter.set_result(None)

    def parked_tasks(self) -> set[asyncio.Task[Any] | None]:
        return set(self._parked_tasks.values())


def _bitstamp_markets(rows: Any) -> list[dict[str, Any]]:
    """Bitstamp's old ``trading-pairs-info`` rows in the fields of its ``/markets/`` answer."""
    out = []
    for row in rows:
        base, _, quote = str(row.get("name", "")).partition("/")
        minimum = str(row.get("minimum_order", "")).split(" ")[0] or None
        out.append(
            {
                "name": row.get("name"),
                "market_symbol": row.get("url_symbol"),
                "base_currency": base,
                "base_decimals": row.get("base_decimals"),
                "counter_currency": quote,
                "counter_decimals": row.get("counter_decimals"),
                "minimum_order_value": minimum,
                "trading": row.get("trading"),
                "instant_and_market_orders": row.get("instant_and_market_orders"),
                "description": row.get("description"),
                "market_type": "SPOT",
            }
        )
    return out


def _kraken_level(level: Sequence[Any]) -> dict[str, Any]:
    return {"price": level[0], "qty": level[1]}


def _kraken_v1_book(exchange: Any, message: list[Any]) -> dict[str, Any] | None:
    """A Kraken v1 book frame in ccxt's v2 message shape (None when it is no book frame)."""
    if len(message) < 4 or not str(message[-2]).startswith("book"):
        return None
    market = exchange.safe_dict(exchange.options.get("marketsByWsName", {}), message[-1])
    if market is None:
        return None
    parts = [p for p in message[1:-2] if isinstance(p, dict)]
    snapshot = any("as" in p or "bs" in p for p in parts)
    bids: list[Any] = []
    asks: list[Any] = []
    checksum = None
    for part in parts:
        asks += part.get("as", part.get("a", []))
        bids += part.get("bs", part.get("b", []))
        checksum = part.get("c", checksum)
    data: dict[str, Any] = {
        "symbol": market["symbol"],
        "bids": [_kraken_level(level) for level in bids],
        "asks": [_kraken_level(level) for level in asks],
    }
    if checksum is not None:
        data["checksum"] = int(checksum)
    if not snapshot:
        newest = max(float(level[2]) for level in bids + asks)
        data["timestamp"] = exchange.iso8601(round(newest * 1000.0))
    return {"channel": "book", "type": "snapshot" if snapshot else "update", "data": [data]}


@dataclass(frozen=True, slots=True)
class _VenueSpec:
    ccxt_class: str
    config: Mapping[str, Any]
    prefix: str  # cryptofeed file prefix


CRYPTOFEED_VENUES: dict[str, _VenueSpec] = {
    "coinbase": _VenueSpec("coinbaseexchange", {"has": {"fetchCurrencies": False}}, "COINBASE"),
    "kraken": _VenueSpec("kraken", {"has": {"fetchCurrencies": False}}, "KRAKEN"),
    "bitstamp": _VenueSpec("bitstamp", {}, "BITSTAMP"),
    "binance": _VenueSpec(
        "binance",
        {"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}},
        "BINANCE",
    ),
}


def _tagged(index: int, items: Iterable[_T]) -> Iterator[tuple[int, _T]]:
    """``(index, item)`` for each item: which source an item of a merge came from."""
    for item in items:
        yield index, item


def _levels(side: Sequence[Sequence[float]], depth: int) -> npt.NDArray[np.float64]:
    rows = [(float(p), float(q)) for p, q, *_ in side[:depth]]
    if not rows:
        return np.empty((0, 2), dtype=np.float64)
    return np.array(rows, dtype=np.float64)


class RecordedVenue:
    """One venue's recorded traffic fed through its ccxt.pro client; iterate for the order
    book states (:class:`BookItem`, ``received_ms`` non-decreasing, ``depth`` levels a side).

    ``venue`` is a key of :data:`CRYPTOFEED_VENUES`; ``ws_paths`` are its ``.ws.`` files (one
    connection each, frames merged by receive time); ``rest_paths`` its REST files. Iterate
    with :meth:`states` (sync; runs a private event loop, so not from inside a running loop)
    or ``async for`` over :meth:`astates`. After the replay ``stats`` tells what happened and
    ``exchange`` is the ccxt client (its ``orderbooks`` hold the final books).
    """

    def __init__(
        self,
        venue: str,
        ws_paths: Sequence[Path | str],
        rest_paths: Sequence[Path | str] = (),
        *,
        depth: int = 100,
    ) -> None:
        if venue not in CRYPTOFEED_VENUES:
            raise DataError(
                f"no recorded-traffic support for venue {venue!r}; "
                f"use one of {sorted(CRYPTOFEED_VENUES)}"
            )
        if depth < 1:
            raise DataError(f"depth must be at least 1 level, got {depth}")
        if not ws_paths:
            raise DataError(f"{venue}: give at least one .ws. recording")
        self.venue = venue
        self.spec = CRYPTOFEED_VENUES[venue]
        self.ws_paths = [Path(p) for p in ws_paths]
        self.rest_paths = [Path(p) for p in rest_paths]
        self.depth = depth
        self.stats = ReplayStats()
        self.exchange: Any = None

    def states(self) -> Iterator[BookItem]:
        """The book states, synchronously (a private event loop drives ccxt's tasks)."""
        loop = asyncio.new_event_loop()
        agen = self.astates()
        try:
            while True:
                try:
                    yield loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(agen.aclose())
            loop.close()

    async def astates(self) -> AsyncIterator[BookItem]:
        """The book states, inside the caller's event loop."""
        records = [r for p in self.rest_paths for r in read_rest_recording(p)]
        rest = _RecordedRest(records, self.stats)
        rest.transforms["/api/v2/markets"] = ("/api/v2/trading-pairs-info", _bitstamp_markets)
        exchange_class = getattr(ccxtpro, self.spec.ccxt_class)
        config = {"enableRateLimit": False, "asyncio_loop": asyncio.get_running_loop()}
        exchange = exchange_class({**config, **self.spec.config})
        exchange.fetch = rest.fetch
        self.exchange = exchange
        await exchange.load_markets()

        connections = []
        for path in self.ws_paths:
            header, frames = read_ws_recording(path)
            connections.append((header, frames, _ReplayClient(header.url, self.stats)))
        start = min(header.connected_ms for header, _, _ in connections)
        rest.now_ms = start
        for header, _, client in connections:
            self._subscribe(exchange, header, client)
        for item in await self._settle(rest, connections, start):
            yield item

        merged = heapq.merge(
            *(_tagged(i, frames) for i, (_, frames, _) in enumerate(connections)),
            key=lambda frame: (frame[1][0], frame[0]),
        )
        for index, (received_ms, text) in merged:
            for item in await self._release_until(rest, connections, received_ms):
                yield item
            rest.now_ms = max(rest.now_ms, received_ms)
            self._handle(exchange, connections[index][2], text)
            for item in await self._settle(rest, connections, received_ms):
                yield item
        for item in await self._release_until(rest, connections, None):
            yield item

    # -- steps

    def _subscribe(self, exchange: Any, header: WsRecording, client: _ReplayClient) -> None:
        """What ccxt's ``watch_order_book`` would have set up for this connection."""
        if self.venue != "binance":
            return
        query = dict(parse_qsl(urlsplit(header.url).query))
        for stream in query.get("streams", "").split("/"):
            market_id, _, channel = stream.partition("@")
            if not channel.startswith("depth"):
                continue
            symbol = exchange.safe_market(market_id.upper(), None, None, "spot")["symbol"]
            subscription = {
                "symbol": symbol,
                "symbols": [symbol],
                "limit": 1000,
                "type": "spot",
                "params": {},
            }
            client.subscriptions["orderbook::" + symbol] = subscription
            exchange.handle_order_book_subscription(client, None, subscription)

    def _handle(self, exchange: Any, client: _ReplayClient, text: str) -> None:
        self.stats.frames += 1
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            self.stats.errors["JSONDecodeError"] += 1
            return
        if self.venue == "kraken":
            if isinstance(message, list):
                message = _kraken_v1_book(exchange, message)
                if message is None:
                    self.stats.ignored += 1
                    return
                self.stats.translated += 1
            elif message.get("event") == "subscriptionStatus" and message.get("pair"):
                market = exchange.options.get("marketsByWsName", {}).get(message["pair"])
                depth = (message.get("subscription") or {}).get("depth")
                if market is not None and depth:
                    client.subscriptions["orderbook@" + market["symbol"]] = {"limit": int(depth)}
        try:
            exchange.handle_message(client, message)
        except Exception as error:  # a handler failing on one frame must not end the replay
            self.stats.errors[type(error).__name__] += 1

    async def _release_until(
        self, rest: _RecordedRest, connections: list[Any], until_ms: int | None
    ) -> list[BookItem]:
        """Answer the parked REST calls recorded before ``until_ms`` (all when None)."""
        out: list[BookItem] = []
        while (at := rest.next_release()) is not None and (until_ms is None or at <= until_ms):
            rest.now_ms = max(rest.now_ms, at)
            rest.release(at)
            out += await self._settle(rest, connections, at)
        return out

    async def _settle(
        self, rest: _RecordedRest, connections: list[Any], now_ms: int
    ) -> list[BookItem]:
        """Let ccxt's spawned tasks run until each is done or parked on the recording, then
        collect the books resolved since the last step."""
        me = asyncio.current_task()
        for _ in range(_DRAIN_STEPS):
            parked = rest.parked_tasks()
            busy = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if all(t in parked for t in busy):
                break
            await asyncio.sleep(0)
        else:
            raise OperationalError(
                f"{self.venue} replay: ccxt tasks still running after {_DRAIN_STEPS} loop "
                "turns; something awaits a real network call"
            )
        out = []
        for _, _, client in connections:
            for symbol, book in client.touched.items():
                try:
                    parsed = Symbol.parse(symbol)
                except ValueError:
                    self.stats.errors["UnsupportedSymbol"] += 1
                    continue
                out.append(
                    BookItem(
                        exchange=self.venue,
                        symbol=parsed,
                        received_ms=now_ms,
                        time_ms=None if book.get("timestamp") is None else int(book["timestamp"]),
                        nonce=None if book.get("nonce") is None else int(book["nonce"]),
                        bids=_levels(book["bids"], self.depth),
                        asks=_levels(book["asks"], self.depth),
                    )
                )
            client.touched.clear()
        self.stats.states += len(out)
        return out


def cryptofeed_venue(data_dir: Path | str, venue: str, *, depth: int = 100) -> RecordedVenue:
    """The replay of ``venue``'s files in ``<data_dir>/messages/cryptofeed`` (every ``.ws.``
    connection and every REST file of that exchange)."""
    if venue not in CRYPTOFEED_VENUES:
        raise DataError(
            f"no recorded-traffic support for venue {venue!r}; "
            f"use one of {sorted(CRYPTOFEED_VENUES)}"
        )
    folder = Path(data_dir) / "messages" / "cryptofeed"
    prefix = CRYPTOFEED_VENUES[venue].prefix
    ws = sorted(folder.glob(f"{prefix}.ws.*.gz"))
    rest = sorted(folder.glob(f"{prefix}.0.gz")) + sorted(folder.glob(f"{prefix}.http.*.gz"))
    if not ws:
        raise DataError(f"no {prefix}.ws.*.gz recording in {folder}; is the data directory right?")
    return RecordedVenue(venue, ws, rest, depth=depth)


def replay_cryptofeed(
    data_dir: Path | str,
    venues: Sequence[str] = ("coinbase", "kraken", "bitstamp", "binance"),
    *,
    depth: int = 100,
) -> Iterator[BookItem]:
    """Every venue's book states merged into one stream ordered by ``received_ms`` (ties:
    the order of ``venues``). The recordings are from different days, so the venues do not
    overlap in time: shift times before consolidating them (see the consolidated-book tests)."""
    replays = [cryptofeed_venue(data_dir, venue, depth=depth) for venue in venues]
    merged = heapq.merge(
        *(_tagged(i, r.states()) for i, r in enumerate(replays)),
        key=lambda entry: (entry[1].received_ms, entry[0]),
    )
    for _, item in merged:
        yield item
