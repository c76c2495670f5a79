"""Download candles over REST (ccxt) into the store, resuming, retrying and falling back.

Time semantics: ``since_ms`` and ``until_ms`` bound candle **open** times, UTC ms,
``since_ms <= open < until_ms`` (``since_ms`` is rounded up to the timeframe's grid;
``until_ms`` defaults to the clock's now). A candle is stored only once it has closed,
``open + timeframe <= now``: the still-open candle is never stored.

For each series (symbol × timeframe) the service:

1. resumes after the newest stored candle of that exchange's series when that is later
   than ``since_ms``;
2. pages forward with ``fetch_ohlcv(symbol, timeframe, since=cursor, limit=page,
   params={"until": end - 1})``: each page is the next ``page`` candles in
   ``[cursor, end)``, so outages and pre-listing spans cost no extra requests; an empty
   page ends the series, and so does a short one where the exchange is known to fill
   pages (``ExchangeCapabilities.full_pages``). Rows before the cursor (an overlap with
   the previous page) are dropped; a page of ``1s`` candles covers only 1000 seconds;
3. validates each page (:func:`~pivotal.data.validation.validate_candles`) and writes it in
   one store transaction, so an interruption loses nothing already written and a re-run
   resumes; a page that fails validation raises :class:`DataError` and is not written;
4. checks before its first request that the exchange's API host resolves and accepts a TCP
   connection (:data:`~pivotal.data.exchanges.PREFLIGHT_TIMEOUT_S` each), and again after a
   request that got no reply: a host that cannot be resolved or refuses the connection (no
   network) fails the exchange at once, without retries;
   retries rate limits (429, 418, honouring ``Retry-After``), 5xx, timeouts and dropped
   connections with exponential backoff (``download.backoff_initial_s`` doubling up to
   ``download.backoff_max_s``, at most ``download.max_retries`` times); other errors
   (unknown symbol, bad request, authentication) are not retried;
5. when an exchange fails for the series (retries exhausted, symbol not listed, timeframe
   not served), tries the next of ``download.fallback_exchanges`` and stores the candles
   under the exchange that served them; if every exchange fails, raises
   :class:`OperationalError` listing each failure.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pivotal.config.models import PivotalConfig
from pivotal.core.candles import Candles
from pivotal.core.clock import Clock, WallClock
from pivotal.core.errors import DataError, OperationalError, TransientError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.exchanges import (
    PREFLIGHT_TIMEOUT_S,
    ExchangeCapabilities,
    ExchangeUnreachable,
    ResponseTracker,
    capabilities,
    create_client,
    is_retryable,
    retry_after_s,
    short_message,
    to_operational_error,
    track_responses,
)
from pivotal.data.series import SeriesKey, WriteResult, normalize_exchange
from pivotal.data.store import MarketDataStore
from pivotal.data.validation import validate_candles

if TYPE_CHECKING:
    import ccxt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """``fetched`` of at most ``expected`` candles of ``key`` so far in this run.

    Reported once before the first request, after each stored page and, with ``done``,
    when the attempt ends (also when it fails and the next exchange takes over, under its
    own key; then ``failed`` is True and the attempt is not complete). ``expected`` counts
    the grid slots of the span still to fetch (outages make the real count lower); ``last``
    is the newest open time fetched so far.
    """

    key: SeriesKey
    fetched: int
    expected: int
    last: int | None
    done: bool = False
    failed: bool = False


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """One series: stored under ``key`` (the exchange that served it, ``used_exchange``).

    ``fetched`` counts closed candles received in ``[start, end)``; ``first``/``last`` are
    their open times; ``requests`` counts HTTP attempts (markets and candles), ``retries``
    the retried ones; ``fallbacks`` says why earlier exchanges of the chain were skipped.
    """

    key: SeriesKey
    requested_exchange: str
    used_exchange: str
    fetched: int
    written: WriteResult
    first: int | None
    last: int | None
    requests: int
    retries: int
    fallbacks: tuple[str, ...] = ()


def download_candles(
    store: MarketDataStore,
    config: PivotalConfig,
    *,
    exchange: str,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    since_ms: int,
    until_ms: int | None = None,
    clock: Clock | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DownloadResult]:
    """Download closed candles for every symbol × timeframe (see the module docstring).

    ``sleep`` waits between retries (seconds; tests pass a recorder). Raises ``ValueError``
    for bad arguments, :class:`DataError` for an invalid exchange reply and
    :class:`OperationalError` when no exchange could serve a series. Series finished before
    an error stay stored; a re-run resumes.
    """
    requested = normalize_exchange(exchange)
    parsed_symbols = [Symbol.parse(s) for s in symbols]
    parsed_timeframes = [Timeframe.parse(t) for t in timeframes]
    if since_ms < 0:
        raise ValueError(f"since_ms must be a UTC epoch time in ms >= 0, got {since_ms}")
    if until_ms is not None and until_ms <= since_ms:
        raise ValueError(f"until ({until_ms}) must be later than since ({since_ms})")
    chain = [requested] + [e for e in config.download.fallback_exchanges if e != requested]
    session = _Session(store, config, clock or WallClock(), progress, sleep)
    try:
        return [
            session.series(chain, symbol, timeframe, since_ms, until_ms)
            for symbol in parsed_symbols
            for timeframe in parsed_timeframes
        ]
    finally:
        session.close()


@dataclass
class _Counters:
    requests: int = 0
    retries: int = 0
    fetched: int = 0
    first: int | None = None
    last: int | None = None
    written: list[WriteResult] = field(default_factory=list)


class _Session:
    def __init__(
        self,
        store: MarketDataStore,
        config: PivotalConfig,
        clock: Clock,
        progress: Callable[[DownloadProgress], None] | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.store, self.config, self.clock = store, config, clock
        self.progress, self.sleep = progress, sleep
        self.clients: dict[str, tuple[ccxt.Exchange, ResponseTracker]] = {}
        self.unreachable: dict[str, ExchangeUnreachable] = {}

    def close(self) -> None:
        for client, _ in self.clients.values():
            client.close()

    # -- one series, along the fallback chain ----------------------------------------------
    def series(
        self, chain: list[str], symbol: Symbol, tf: Timeframe, since: int, until: int | None
    ) -> DownloadResult:
        failures: list[str] = []
        for exchange in chain:
            if exchange in self.unreachable:
                failures.append(str(self.unreachable[exchange]))
                continue
            try:
                result = self.download(exchange, symbol, tf, since, until)
            except ExchangeUnreachable as exc:
                self.unreachable[exchange] = exc  # no other series will reach it either
                failures.append(str(exc))
                log.info("%s", exc)
                continue
            except (TransientError, OperationalError) as exc:
                failures.append(str(exc))  # each message names the exchange
                log.warning("%s", exc)
                continue
            if exchange != chain[0]:
                log.warning(
                    "%s %s: %s failed, downloaded from %s instead; stored under %s",
                    symbol, tf, ", ".join(chain[: chain.index(exchange)]), exchange, exchange,
                )  # fmt: skip
            return replace(result, requested_exchange=chain[0], fallbacks=tuple(failures))
        lines = "\n".join(f"  - {f}" for f in failures)
        if all(e in self.unreachable for e in chain):
            raise OperationalError(
                f"could not reach any exchange for {symbol} {tf} ({', '.join(chain)}):\n"
                f"{lines}\nCheck the internet connection (this machine may be offline); "
                "candles already stored are kept and a re-run resumes."
            )
        raise OperationalError(
            f"could not download {symbol} {tf} from any exchange ({', '.join(chain)}):\n{lines}\n"
            "Check the symbol and the network, or add exchanges to download.fallback_exchanges;"
            " candles already stored are kept and a re-run resumes."
        )

    def download(
        self, exchange: str, symbol: Symbol, tf: Timeframe, since: int, until: int | None
    ) -> DownloadResult:
        caps = capabilities(exchange)
        if not caps.supports(tf):
            served = ", ".join(t.value for t in Timeframe if t in caps.timeframes)
            raise OperationalError(f"{exchange} does not serve {tf} candles (it serves {served})")
        key = SeriesKey(exchange, symbol, tf)
        now = self.clock.now_ms()
        end = tf.floor(now) if until is None else min(until, tf.floor(now))
        start = -(-since // tf.ms) * tf.ms
        stored = self.store.last_timestamp(key)
        if stored is not None and stored + tf.ms > start:
            start = stored + tf.ms
        counters = _Counters()
        expected = max(0, -(-(end - start) // tf.ms))
        self._report(key, counters, expected)
        try:
            if expected:
                self._fetch(exchange, caps, key, (start, end), expected, counters)
        except BaseException:
            self._report(key, counters, expected, done=True, failed=True)
            raise
        self._report(key, counters, expected, done=True)
        written = WriteResult(
            sum(w.inserted for w in counters.written),
            sum(w.updated for w in counters.written),
            sum(w.unchanged for w in counters.written),
        )
        return DownloadResult(
            key, exchange, exchange, counters.fetched, written, counters.first, counters.last,
            counters.requests, counters.retries,
        )  # fmt: skip

    def _fetch(
        self,
        exchange: str,
        caps: ExchangeCapabilities,
        key: SeriesKey,
        span: tuple[int, int],
        expected: int,
        counters: _Counters,
    ) -> None:
        client, tracker = self.client(exchange)
        self.call(client, tracker, key, counters, client.load_markets)
        if str(key.symbol) not in client.markets:
            raise OperationalError(
                f"{exchange} does not list {key.symbol} as a spot market; check the spelling "
                "(BASE/QUOTE, e.g. BTC/USDT) or download it from another exchange"
            )
        limit = min(self.config.download.page_limit, caps.max_candles_per_request)
        log.info(
            "%s: up to %d candles from %s, at least %d requests",
            key, expected, _iso(span[0]), math.ceil(expected / limit),
        )  # fmt: skip
        self._pages(client, tracker, caps, key, (*span, limit), expected, counters)

    def _report(
        self,
        key: SeriesKey,
        counters: _Counters,
        expected: int,
        done: bool = False,
        failed: bool = False,
    ) -> None:
        if self.progress is not None:
            self.progress(
                DownloadProgress(key, counters.fetched, expected, counters.last, done, failed)
            )

    def _pages(
        self,
        client: ccxt.Exchange,
        tracker: ResponseTracker,
        caps: ExchangeCapabilities,
        key: SeriesKey,
        span: tuple[int, int, int],
        expected: int,
        counters: _Counters,
    ) -> None:
        """Fetch ``[start, end)`` in pages of ``limit`` candles; ``span`` = (start, end, limit)."""
        tf, symbol = key.timeframe, str(key.symbol)
        cursor, end, limit = span
        while cursor < end:
            rows = self.call(
                client, tracker, key, counters,
                lambda c=cursor: client.fetch_ohlcv(symbol, tf.value, c, limit, {"until": end - 1}),
            )  # fmt: skip
            raw = _json(tracker.body) if caps.klines_are_lists else None
            candles = _to_candles(rows, raw, key, cursor)
            page = candles[(candles.timestamp >= cursor) & (candles.timestamp < end)]
            if not len(page):
                break
            report = validate_candles(page, tf)
            if not report.ok:
                raise DataError(
                    f"{key.exchange} sent invalid {symbol} {tf} candles in the page starting "
                    f"{_iso(cursor)}:\n{report.describe()}\nNothing from this page was stored "
                    "(earlier pages were). Re-run later to resume; if it persists, download "
                    "from another exchange (--exchange)."
                )
            counters.written.append(
                self.store.write_candles(key, page, source=f"download:{key.exchange}")
            )
            counters.fetched += len(page)
            counters.first = int(page.timestamp[0]) if counters.first is None else counters.first
            counters.last = int(page.timestamp[-1])
            cursor = counters.last + tf.ms
            self._report(key, counters, expected)
            if caps.full_pages and isinstance(raw, list) and len(raw) < limit:
                break  # ccxt drops overlapping rows, so count the rows as served

    # -- clients and retries ---------------------------------------------------------------
    def client(self, exchange: str) -> tuple[ccxt.Exchange, ResponseTracker]:
        if exchange not in self.clients:
            client = create_client(
                exchange, self.config.exchange(exchange), preflight_timeout_s=PREFLIGHT_TIMEOUT_S
            )
            self.clients[exchange] = (client, track_responses(client))
        return self.clients[exchange]

    def call(
        self,
        client: ccxt.Exchange,
        tracker: ResponseTracker,
        key: SeriesKey,
        counters: _Counters,
        fn: Callable[[], Any],
    ) -> Any:
        """``fn()`` with retries; ccxt errors are mapped to pivotal's here."""
        import ccxt

        cfg = self.config.download
        attempt = 0
        while True:
            counters.requests += 1
            tracker.clear()
            try:
                return fn()
            except ccxt.BaseError as exc:
                status = tracker.status
                if not is_retryable(exc, status):
                    raise to_operational_error(exc, str(key), key.exchange) from exc
                what = f"{type(exc).__name__}" + (f", HTTP {status}" if status else "")
                wait = None
                if status in (418, 429):
                    wait = retry_after_s(tracker.headers, self.clock.now_ms())
                if wait is not None and wait > cfg.backoff_max_s:
                    raise TransientError(
                        f"{key}: the exchange asks to wait {wait:.0f} s ({what}, Retry-After), "
                        f"longer than download.backoff_max_s={cfg.backoff_max_s:g}; re-run "
                        "after that time (the download resumes)",
                        retry_after_s=wait,
                    ) from exc
                if attempt >= cfg.max_retries:
                    if status in (418, 429):
                        why = "the exchange keeps limiting the request rate"
                    elif status is not None:
                        why = f"the exchange keeps answering HTTP {status}"
                    else:
                        why = "requests keep failing without a reply (timeouts or dropped "
                        why += "connections) although the host answers"
                    raise TransientError(
                        f"{key}: still failing after {cfg.max_retries} retries "
                        f"({what}: {short_message(exc)}); {why}. Re-run later (the download "
                        "resumes) or raise download.max_retries.",
                        retry_after_s=wait,
                    ) from exc
                delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2**attempt)
                delay = max(delay, wait or 0.0)
                log.warning("%s: %s; retry %d in %.2f s", key, what, attempt + 1, delay)
                self.sleep(delay)
                attempt += 1
                counters.retries += 1
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise DataError(
                    f"{key}: {key.exchange} sent a reply ccxt could not read ({exc!r}); nothing "
                    "from it was stored. Re-run later, or download from another exchange."
                ) from exc


def _to_candles(rows: Any, raw: Any, key: SeriesKey, cursor: int) -> Candles:
    """ccxt's OHLCV rows → Candles; unreadable numbers become NaN for validation to refuse.

    ``raw`` is the decoded reply where the exchange answers with a JSON list of rows
    (Binance's format), else None: ccxt silently drops rows it cannot read, so the raw rows
    are checked too.
    """
    problem = ""
    if raw is not None and not _is_row_list(raw):
        problem = "expected a JSON list of rows [open time (ms), open, high, low, close, volume]"
    elif not _is_row_list(rows):
        problem = "ccxt returned rows without an integer open time"
    elif not rows:
        return Candles.empty()
    else:
        try:
            values = np.array(
                [[np.nan if v is None else v for v in r[1:6]] for r in rows], dtype=np.float64
            )
            return Candles(np.array([r[0] for r in rows], dtype=np.int64), *values.T)
        except (TypeError, ValueError) as exc:
            problem = f"unreadable prices or volumes: {exc}"
    raise DataError(
        f"{key}: {key.exchange} sent malformed klines for the page starting {_iso(cursor)} "
        f"({problem}). Nothing from this page was stored. Re-run later to resume, or download "
        "from another exchange (--exchange)."
    )


def _is_row_list(rows: Any) -> bool:
    return isinstance(rows, list) and all(
        isinstance(r, list | tuple) and len(r) >= 6 and type(r[0]) is int for r in rows
    )


def _json(text: str | None) -> Any:
    """Decoded JSON; ``False`` (never a valid reply) for a missing or undecodable body."""
    try:
        return json.loads(text or "")
    except ValueError:
        return False


def _iso(ms: int) -> str:
    return f"{np.datetime64(int(ms), 'ms').astype('datetime64[s]')}Z"
