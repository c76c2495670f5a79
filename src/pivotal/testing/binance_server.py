"""A local HTTP server that speaks Binance's spot REST API (or MEXC's), with fault injection.

Offline downloads, tests and demos point ``exchanges.<id>.rest_url`` at it. It binds
127.0.0.1 on an ephemeral port, runs in a background thread and serves, from candles
you give it (``{(symbol, timeframe): Candles}``):

- ``GET /api/v3/ping`` → ``{}``; ``/api/v3/time`` → ``{"serverTime": ms}``;
- ``/api/v3/exchangeInfo`` in Binance's format, one entry per symbol built from a real
  Binance entry (``BINANCE_SYMBOL_TEMPLATE``, BTCUSDT of Oct 2021, kept in
  :mod:`pivotal.localexchange.exchange_info` and re-exported here) or MEXC's;
- ``/api/v3/klines?symbol=&interval=&startTime=&endTime=&limit=`` with Binance's semantics:
  rows sorted by open time, ``startTime`` and ``endTime`` inclusive on the open time
  (MEXC: ``endTime`` exclusive), ``limit`` default 500, larger values clamped to
  ``max_limit`` (1000; MEXC 500). Rows are Binance's 12 fields (MEXC: 8) with prices and
  volumes as strings; the fields candles do not carry (quote volume, trade count, taker
  volumes) are zero.

Errors use the exchange's body format, e.g. HTTP 400 ``{"code":-1121,"msg":"Invalid
symbol."}``. :meth:`BinanceServer.inject` queues :class:`Fault` s for upcoming requests
(429 with ``Retry-After``, 418, 5xx, a dropped connection, a slow reply, any raw reply).
Every request is recorded in :attr:`BinanceServer.requests`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.clock import Clock, WallClock
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.exchanges import CAPABILITIES
from pivotal.localexchange.exchange_info import (
    BINANCE_RATE_LIMITS,
    BINANCE_SYMBOL_TEMPLATE,
    MEXC_SYMBOL_TEMPLATE,
)

KLINES_PATH = "/api/v3/klines"
Flavor = Literal["binance", "mexc"]

_RATE_LIMITS = BINANCE_RATE_LIMITS
_MEXC_INTERVALS = {"1h": "60m", "1w": "1W"}
_TOO_MANY = (
    "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
_ERROR_BODIES: dict[int, dict[str, Any]] = {
    429: {"code": -1003, "msg": _TOO_MANY},
    418: {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned. " + _TOO_MANY},
    503: {
        "code": -1008,
        "msg": "Server is currently overloaded with other requests. Please try again in a "
        "few minutes.",
    },
}


@dataclass(frozen=True, slots=True)
class Fault:
    """What the server does instead of answering normally, for matching requests.

    ``path`` limits the fault to one endpoint (``None``: any); ``after`` lets that many
    matching requests through first; ``times`` is how many matching requests it then affects
    (``None``: all, for ever). Build with the class methods, e.g.
    ``Fault.http_error(429, retry_after_s=2, after=1)`` fails the second klines request.
    """

    kind: Literal["status", "drop", "slow", "reply"]
    status: int = 200
    retry_after_s: int | None = None
    delay_s: float = 0.0
    body: str | None = None
    path: str | None = KLINES_PATH
    times: int | None = 1
    after: int = 0

    @classmethod
    def http_error(cls, status: int, *, retry_after_s: int | None = None, **match: Any) -> Fault:
        """HTTP ``status`` (429, 418, 500, 503, ...) with the exchange's error body.

        ``match``: ``path``, ``times``, ``after`` as described on the class.
        """
        return cls("status", status=status, retry_after_s=retry_after_s, **match)

    @classmethod
    def drop(cls, **match: Any) -> Fault:
        """Close the connection without sending a response."""
        return cls("drop", **match)

    @classmethod
    def slow(cls, delay_s: float, **match: Any) -> Fault:
        """Wait ``delay_s`` seconds, then answer normally (makes clients time out)."""
        return cls("slow", delay_s=delay_s, **match)

    @classmethod
    def reply(cls, body: Any, *, status: int = 200, **match: Any) -> Fault:
        """Answer with ``body`` (JSON-encoded unless a str) and ``status``."""
        text = body if isinstance(body, str) else json.dumps(body)
        return cls("reply", status=status, body=text, **match)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as received; ``outcome`` is the status sent, or ``"dropped"``."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    outcome: str = ""

    def int_param(self, name: str) -> int | None:
        value = self.params.get(name)
        return None if value is None else int(value)


class _ApiError(Exception):
    """An error reply in the exchange's format: HTTP ``status``, ``{"code", "msg"}`` body."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.body = {"code": code, "msg": msg}
        self.status = status


class BinanceServer:
    """Binance (or, with ``flavor="mexc"``, MEXC) spot REST on 127.0.0.1; a context manager.

    ``candles`` maps ``(symbol, timeframe)`` to candles, the symbol as ``"BTCUSDT"`` or
    ``"BTC/USDT"``. ``clock`` gives ``/api/v3/time``. Thread-safe: tests may change candles
    and faults while a client is downloading.
    """

    def __init__(
        self,
        candles: Mapping[tuple[str | Symbol, str | Timeframe], Candles] | None = None,
        *,
        flavor: Flavor = "binance",
        max_limit: int | None = None,
        symbol_template: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if flavor not in ("binance", "mexc"):
            raise ValueError(f"flavor must be 'binance' or 'mexc', got {flavor!r}")
        self.flavor: Flavor = flavor
        self.max_limit = max_limit or (1000 if flavor == "binance" else 500)
        default = BINANCE_SYMBOL_TEMPLATE if flavor == "binance" else MEXC_SYMBOL_TEMPLATE
        self._template = copy.deepcopy(dict(symbol_template or default))
        self._clock = clock or WallClock()
        self._lock = threading.Lock()
        self._candles: dict[tuple[Symbol, Timeframe], Candles] = {}
        self._faults: list[list[Any]] = []  # [fault, remaining or None, still to skip]
        self._requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for (symbol, timeframe), data in (candles or {}).items():
            self.set_candles(symbol, timeframe, data)

    # -- data and faults ------------------------------------------------------------------
    def set_candles(self, symbol: str | Symbol, timeframe: str | Timeframe, data: Candles) -> None:
        """Serve ``data`` (sorted by open time) for ``symbol`` and ``timeframe``."""
        key = (_symbol(symbol), Timeframe.parse(timeframe))
        with self._lock:
            self._candles[key] = data

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each request takes the first queued fault whose path matches."""
        with self._lock:
            self._faults.extend([fault, fault.times, fault.after] for fault in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def klines_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == KLINES_PATH]

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; the server must be started."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> BinanceServer:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.flavor}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> BinanceServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling (called from server threads) ------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining, skip = entry
                if fault.path is not None and fault.path != path:
                    continue
                if skip > 0:
                    entry[2] = skip - 1
                    return None
                if remaining is not None:
                    entry[1] = remaining - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                return fault
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _answer(self, path: str, params: dict[str, str]) -> Any:
        if path == "/api/v3/ping":
            return {}
        if path == "/api/v3/time":
            return {"serverTime": self._clock.now_ms()}
        if path == "/api/v3/exchangeInfo":
            return self._exchange_info(params.get("symbol"))
        if path == KLINES_PATH:
            return self.klines(params)
        raise _ApiError(-1000, f"Unknown path {path}.", status=404)

    def _exchange_info(self, only: str | None) -> dict[str, Any]:
        with self._lock:
            symbols = sorted({symbol for symbol, _ in self._candles})
        if only is not None:
            symbols = [s for s in symbols if s.exchange_id == only.upper()]
            if not symbols:
                raise _ApiError(-1121, "Invalid symbol.")
        entries = []
        for symbol in symbols:
            entry = copy.deepcopy(self._template)
            entry.update(symbol=symbol.exchange_id, baseAsset=symbol.base, quoteAsset=symbol.quote)
            entries.append(entry)
        zone = "UTC" if self.flavor == "binance" else "CST"
        limits = _RATE_LIMITS if self.flavor == "binance" else []
        return {
            "timezone": zone,
            "serverTime": self._clock.now_ms(),
            "rateLimits": limits,
            "exchangeFilters": [],
            "symbols": entries,
        }

    def _interval(self, text: str) -> Timeframe:
        for timeframe in Timeframe:
            if self._interval_name(timeframe) == text:
                if self.flavor == "mexc" and not CAPABILITIES["mexc"].supports(timeframe):
                    break
                return timeframe
        raise _ApiError(-1120, "Invalid interval.")

    def _interval_name(self, timeframe: Timeframe) -> str:
        if self.flavor == "mexc":
            return _MEXC_INTERVALS.get(timeframe.value, timeframe.value)
        return timeframe.value

    def klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        """The ``/api/v3/klines`` rows for query ``params`` (to build replies for faults).

        Raises the exchange's error (``code``/``msg`` in ``.body``) for an invalid query.
        """
        for name in ("symbol", "interval"):
            if not params.get(name):
                raise _ApiError(
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        timeframe = self._interval(params["interval"])
        with self._lock:
            known = {s.exchange_id: s for s, _ in self._candles}
            symbol = known.get(params["symbol"].upper())
            data = None if symbol is None else self._candles.get((symbol, timeframe))
        if symbol is None:
            raise _ApiError(-1121, "Invalid symbol.")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        limit = _int_param(params, "limit")
        limit = 500 if limit is None else limit
        if limit < 1:
            raise _ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        if start is not None and end is not None and start > end:
            raise _ApiError(-1023, "Start time is greater than end time.")
        if data is None:
            return []
        limit = min(limit, self.max_limit)
        ts = data.timestamp
        side = "right" if self.flavor == "binance" else "left"  # endTime inclusive on Binance
        hi = len(ts) if end is None else int(np.searchsorted(ts, end, side))
        if start is not None:
            lo = int(np.searchsorted(ts, start, "left"))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - limit)
        return self._rows(data[lo:hi], timeframe)

    def _rows(self, data: Candles, timeframe: Timeframe) -> list[list[Any]]:
        rows = []
        for t, o, h, low, c, v in zip(
            data.timestamp.tolist(),
            data.open.tolist(),
            data.high.tolist(),
            data.low.tolist(),
            data.close.tolist(),
            data.volume.tolist(),
            strict=True,
        ):
            row: list[Any] = [t, _num(o), _num(h), _num(low), _num(c), _num(v)]
            row += [t + timeframe.ms - 1, "0.00000000"]
            if self.flavor == "binance":
                row += [0, "0.00000000", "0.00000000", "0"]
            rows.append(row)
        return rows


class _Handler(BaseHTTPRequestHandler):
    app: BinanceServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        fault = self.app._take_fault(parts.path)
        if fault is not None and fault.kind == "drop":
            self.app._record(RecordedRequest("GET", parts.path, params, "dropped"))
            self.close_connection = True
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
        headers: dict[str, str] = {}
        if fault is not None and fault.kind == "status":
            status = fault.status
            body = json.dumps(self._error_body(status))
            if fault.retry_after_s is not None:
                headers["Retry-After"] = str(fault.retry_after_s)
        elif fault is not None and fault.kind == "reply":
            status, body = fault.status, fault.body or ""
        else:
            try:
                status, body = 200, json.dumps(self.app._answer(parts.path, params))
            except _ApiError as exc:
                status, body = exc.status, json.dumps(exc.body)
        self.app._record(RecordedRequest("GET", parts.path, params, str(status)))
        self._send(status, body, headers)

    def _error_body(self, status: int) -> dict[str, Any]:
        if self.app.flavor == "mexc":
            return {"code": status, "msg": self.responses.get(status, ("error",))[0]}
        return _ERROR_BODIES.get(
            status, {"code": -1000, "msg": "An unknown error occurred while processing."}
        )

    def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
        payload = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines; :attr:`BinanceServer.requests` has them."""


def _symbol(value: str | Symbol) -> Symbol:
    if isinstance(value, Symbol):
        return value
    return Symbol.parse(value) if "/" in value else Symbol.from_exchange_id(value)


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 20:
        raise _ApiError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


def _num(value: float) -> str:
    """Binance's 8-decimal string, or the shortest exact form when 8 decimals would round."""
    text = f"{value:.8f}"
    return text if float(text) == value else repr(value)
