"""Recorded Binance spot messages (hftbacktest ``.gz`` files) as a :class:`SymbolFlow`.

File format (``messages/binance-spot/hftbacktest/*.gz``): gzip text, one message per line,
``<local receive timestamp> <JSON as received>``. The JSON is a combined-stream envelope
``{"stream": "btcusdt@depth@100ms" | "btcusdt@bookTicker" | "btcusdt@trade", "data": {...}}``
or, once per capture, the raw REST ``/api/v3/depth`` answer ``{"lastUpdateId": ...}``. The
local timestamp is in ns (µs in older files); the capturing clock is not Binance's.

What becomes of each message:

- ``depth@100ms`` → :class:`DepthDiff` at its event time ``E``. Diffs with
  ``u <= lastUpdateId`` of the snapshot are dropped (Binance's rule), wherever they sit in the
  file; the first kept one must straddle ``lastUpdateId + 1`` (``U <= L + 1 <= u``) and every
  later one must continue the sequence (``U == previous u + 1``), else :class:`DataError`.
- ``trade`` → :class:`TradePrint` at its trade time ``T`` (every trade is kept, also those
  received before the snapshot).
- ``bookTicker`` → :class:`BookTop`. Spot bookTicker messages carry no time, so the local
  receive time is mapped to exchange time with one offset per flow: the median of
  ``E - local`` over the depth and trade messages (the capturing clock ran ~1.27 s behind).
- the first REST snapshot → ``SymbolFlow.snapshot``; later snapshots are ignored.

Order: each stream is kept in file (wire) order and must be non-decreasing in its own time
(checked); the streams are merged by time, ties broken by file order. A trade is thus placed
at its trade time ``T`` before a depth diff whose ``E`` is later, even when the diff was
received first; no event time is altered.

Parsed events are kept as compact tuples; :meth:`SymbolFlow.events` builds the frozen event
objects on the fly.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import orjson

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.localexchange.flow import (
    KNOWN_FILTERS,
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    SymbolFlow,
    TradePrint,
)

__all__ = ["recorded_flow"]

_KIND_TRADE, _KIND_DEPTH, _KIND_TOP = 0, 1, 2

_Levels = tuple[tuple[float, float], ...]


def _levels(pairs: list[list[str]]) -> _Levels:
    return tuple([(float(p), float(q)) for p, q in pairs])


def _local_ms(raw: bytes) -> int:
    value = int(raw)
    # ns since the epoch has 19 digits today, µs 16: anything above 1e17 is ns.
    return value // 1_000_000 if value > 10**17 else value // 1_000


def _decimals(texts: list[str]) -> int:
    most = 0
    for text in texts:
        _, dot, tail = text.partition(".")
        if dot:
            most = max(most, len(tail.rstrip("0")))
    return most


class _Parsed:
    """The messages of all files, as per-kind tuple lists plus a wire index per event."""

    def __init__(self) -> None:
        self.trades: list[tuple[int, int, float, float, bool]] = []
        self.trade_wire: list[int] = []
        self.depth: list[tuple[int, int, int, _Levels, _Levels]] = []
        self.depth_wire: list[int] = []
        self.depth_where: list[str] = []
        self.tops: list[tuple[int, int, float, float, float, float]] = []  # local ms first
        self.top_wire: list[int] = []
        self.offsets: list[int] = []  # E - local ms of depth and trade messages
        self.snapshot: dict | None = None
        self.stream_symbol: str | None = None
        self.price_texts: list[str] = []
        self.qty_texts: list[str] = []
        self.wire = 0


def _parse_file(path: Path, want: str | None, out: _Parsed) -> None:
    try:
        blob = gzip.decompress(path.read_bytes())
    except OSError as exc:
        raise DataError(f"cannot read recorded messages {path}: {exc}") from None
    loads = orjson.loads
    trades, depth, tops, offsets = out.trades, out.depth, out.tops, out.offsets
    for lineno, line in enumerate(blob.splitlines(), start=1):
        if not line:
            continue
        raw_ts, _, body = line.partition(b" ")
        try:
            local = _local_ms(raw_ts)
            msg = loads(body)
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise DataError(
                f"{path}:{lineno}: not '<local timestamp> <json>' ({exc}); expected an "
                "hftbacktest recording of Binance spot messages"
            ) from None
        stream = msg.get("stream") if isinstance(msg, dict) else None
        if stream is None:
            if isinstance(msg, dict) and "lastUpdateId" in msg:
                if out.snapshot is None:
                    out.snapshot = msg
                    out.price_texts.extend(p for p, _ in msg["bids"][:50] + msg["asks"][:50])
                continue
            raise DataError(f"{path}:{lineno}: neither a stream envelope nor a depth snapshot")
        name, _, kind = stream.partition("@")
        if want is not None and name != want:
            continue
        if out.stream_symbol is None:
            out.stream_symbol = name
        elif name != out.stream_symbol:
            raise DataError(
                f"{path}:{lineno}: stream {stream!r} is for another symbol than "
                f"{out.stream_symbol!r}; pass symbol= to pick one"
            )
        data = msg["data"]
        wire = out.wire
        out.wire += 1
        if kind == "trade":
            trades.append((data["T"], data["t"], float(data["p"]), float(data["q"]), data["m"]))
            out.trade_wire.append(wire)
            offsets.append(data["E"] - local)
            if len(out.qty_texts) < 5000:
                out.price_texts.append(data["p"])
                out.qty_texts.append(data["q"])
        elif kind.startswith("depth"):
            if "pu" in data:
                raise DataError(
                    f"{path}:{lineno}: a USD-M depth message (it has 'pu'); recorded_flow reads "
                    "Binance spot recordings only"
                )
            depth.append((data["E"], data["U"], data["u"], _levels(data["b"]), _levels(data["a"])))
            out.depth_wire.append(wire)
            out.depth_where.append(f"{path.name}:{lineno}")
            offsets.append(data["E"] - local)
        elif kind == "bookTicker":
            tops.append(
                (
                    local,
                    data["u"],
                    float(data["b"]),
                    float(data["B"]),
                    float(data["a"]),
                    float(data["A"]),
                )
            )
            out.top_wire.append(wire)
        else:
            raise DataError(
                f"{path}:{lineno}: unsupported stream {stream!r}; recorded_flow reads depth, "
                "trade and bookTicker streams"
            )


def _check_sorted(times: list[int], what: str) -> None:
    if len(times) > 1:
        arr = np.asarray(times, dtype=np.int64)
        bad = np.flatnonzero(np.diff(arr) < 0)
        if len(bad):
            i = int(bad[0]) + 1
            raise DataError(
                f"{what} times go back in time at message {i} of that stream "
                f"({int(arr[i])} after {int(arr[i - 1])}); the recording is not in wire order"
            )


def _sequence(parsed: _Parsed, last_update_id: int) -> list[int]:
    """Indexes of the diffs to keep; raise DataError when the sequence is broken."""
    keep: list[int] = []
    prev = None
    for i, (_, first, last, _, _) in enumerate(parsed.depth):
        if prev is None:
            if last <= last_update_id:
                continue  # stale: already in the snapshot
            if not first <= last_update_id + 1 <= last:
                raise DataError(
                    f"{parsed.depth_where[i]}: the first depth diff after the snapshot "
                    f"(lastUpdateId {last_update_id}) has U={first}, u={last}; it must "
                    f"straddle {last_update_id + 1}: the snapshot was taken too late or "
                    "diffs are missing"
                )
        elif last <= prev:
            continue  # a duplicate or old redelivery: every level is absolute
        elif first != prev + 1:
            raise DataError(
                f"{parsed.depth_where[i]}: depth sequence gap: U={first} after u={prev} "
                f"(expected U={prev + 1}); the recording misses depth messages"
            )
        keep.append(i)
        prev = last
    return keep


def recorded_flow(
    paths: Sequence[Path | str],
    symbol: str | Symbol | None = None,
    *,
    tick_size: float | None = None,
    step_size: float | None = None,
) -> SymbolFlow:
    """Read hftbacktest recordings of one Binance spot symbol (files replayed in the order
    given) into a :class:`SymbolFlow`; see the module docstring for what each message becomes.

    ``symbol`` picks a symbol (ccxt ``BTC/USDT`` or Binance ``BTCUSDT``) when the files hold
    several; by default it is read from the stream names. ``tick_size``/``step_size`` default
    to Binance's for BTC/USDT and ETH/USDT and to the recorded prices' and quantities'
    decimals otherwise. Raises :class:`DataError` for unreadable files, no snapshot, a broken
    depth sequence or streams out of time order.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise DataError("recorded_flow needs at least one message file")
    for path in files:
        if not path.is_file():
            raise DataError(f"recorded message file {path} does not exist")
    want = None
    if symbol is not None:
        sym = Symbol.resolve(str(symbol)) if isinstance(symbol, str) else symbol
        want = sym.exchange_id.lower()
    parsed = _Parsed()
    for path in files:
        _parse_file(path, want, parsed)
    names = "+".join(p.name for p in files)
    if parsed.stream_symbol is None:
        raise DataError(f"no stream messages{f' for {want}' if want else ''} in {names}")
    if parsed.snapshot is None:
        raise DataError(
            f"no REST depth snapshot ({{'lastUpdateId': ...}}) in {names}; the book cannot be "
            "built without one (the *_20240808.gz file of a capture holds it: pass it first)"
        )
    resolved = Symbol.from_exchange_id(parsed.stream_symbol)
    snap = parsed.snapshot
    last_update_id = int(snap["lastUpdateId"])
    snapshot = BookSnapshot(last_update_id, _levels(snap["bids"]), _levels(snap["asks"]))

    _check_sorted([t[0] for t in parsed.trades], f"{names}: trade (T)")
    _check_sorted([d[0] for d in parsed.depth], f"{names}: depth (E)")
    _check_sorted([t[0] for t in parsed.tops], f"{names}: bookTicker (receive)")
    keep = _sequence(parsed, last_update_id)
    depth = [parsed.depth[i] for i in keep]
    depth_wire = [parsed.depth_wire[i] for i in keep]

    offset = int(np.median(parsed.offsets)) if parsed.offsets else 0
    tops = [(local + offset, *rest) for local, *rest in parsed.tops]

    times = np.concatenate(
        [
            np.fromiter((t[0] for t in parsed.trades), np.int64, len(parsed.trades)),
            np.fromiter((d[0] for d in depth), np.int64, len(depth)),
            np.fromiter((t[0] for t in tops), np.int64, len(tops)),
        ]
    )
    wire = np.concatenate(
        [
            np.asarray(parsed.trade_wire, np.int64),
            np.asarray(depth_wire, np.int64),
            np.asarray(parsed.top_wire, np.int64),
        ]
    )
    kinds = np.concatenate(
        [
            np.full(len(parsed.trades), _KIND_TRADE, np.int8),
            np.full(len(depth), _KIND_DEPTH, np.int8),
            np.full(len(tops), _KIND_TOP, np.int8),
        ]
    )
    index = np.concatenate(
        [
            np.arange(len(parsed.trades), dtype=np.int32),
            np.arange(len(depth), dtype=np.int32),
            np.arange(len(tops), dtype=np.int32),
        ]
    )
    if len(times) == 0:
        raise DataError(f"no depth, trade or bookTicker events for {resolved} in {names}")
    order = np.lexsort((wire, times))
    kinds, index = kinds[order], index[order]
    start_ms, end_ms = int(times[order[0]]), int(times[order[-1]])

    key = str(resolved)
    if tick_size is None:
        tick_size = KNOWN_FILTERS[key][0] if key in KNOWN_FILTERS else None
        if tick_size is None:
            d = _decimals(parsed.price_texts)
            tick_size = round(10.0**-d, d)
    if step_size is None:
        step_size = KNOWN_FILTERS[key][1] if key in KNOWN_FILTERS else None
        if step_size is None:
            d = _decimals(parsed.qty_texts)
            step_size = round(10.0**-d, d)

    trades = parsed.trades

    def events() -> Iterator[FlowEvent]:
        trade_cls, depth_cls, top_cls = TradePrint, DepthDiff, BookTop
        for kind, i in zip(kinds.tolist(), index.tolist(), strict=True):
            if kind == _KIND_TRADE:
                yield trade_cls(*trades[i])
            elif kind == _KIND_DEPTH:
                yield depth_cls(*depth[i])
            else:
                yield top_cls(*tops[i])

    return SymbolFlow(
        symbol=resolved,
        source=f"recorded:{names}",
        start_ms=start_ms,
        end_ms=end_ms,
        snapshot=snapshot,
        tick_size=float(tick_size),
        step_size=float(step_size),
        factory=events,
    )
