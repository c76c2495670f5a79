"""A seeded synthetic book and trade flow consistent with stored candles.

Per candle ``[open, open + tf)`` with volume > 0, ``trades_per_candle`` trades (at least 4):

- prices: the first is the candle's open, the last its close, the high and the low each
  once at two random positions in between, the others on the tick grid within
  ``[low, high]``; so aggregating the trades over the candle gives exactly its OHLC;
- quantities: random positive shares of the volume (on the step grid when the volume allows
  it), the last one ``volume - sum(others)``, so the summed volume equals the candle's to
  float rounding;
- times: sorted random milliseconds in ``[open, open + tf)``; trade ids contiguous;
- ``buyer_maker``: True after a down-tick, False after an up-tick, seeded coin otherwise.

Zero-volume candles get no trades (their kline is then the previous close at zero volume,
as Binance publishes such intervals).

The book holds ``depth_levels`` levels per side on the tick grid, neighbours 1 to
``2 × level_spacing - 1`` ticks apart (seeded; ``level_spacing`` defaults to the median
candle range over ``depth_levels``, so a side spans about one candle's range; 1 gives a
contiguous ladder). Trades are grouped into ``diff_interval_ms`` windows of market time
(100 ms: Binance ``depth@100ms``). At the start of every window that holds trades one
:class:`DepthDiff` moves the book so that its best bid is the grid price just below the
window's lowest trade and its best ask the one just above its highest (so ``best bid <
trade price < best ask`` for every trade): levels the move crosses are removed, the gap it
opens is filled, the far end trimmed or extended back to ``depth_levels``; and ``churn``
random levels are re-sized. Each diff is followed by a :class:`BookTop`. Update ids are
contiguous: ``first_id`` is the previous ``last_id + 1`` and ``last_id - first_id + 1`` is
the number of level changes. Windows without trades change nothing and emit nothing. The
flow starts with a :class:`BookTop` of the snapshot at the first candle's open.

Deterministic: every candle draws from its own generator seeded by ``(seed, candle
index)``, and the events are generated candle by candle when iterated (a 30-day 1m flow is
never held in memory).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from itertools import pairwise
from types import MappingProxyType

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.errors import ConfigError, DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.flow import (
    KNOWN_FILTERS,
    BookSnapshot,
    BookTop,
    DepthDiff,
    FlowEvent,
    SymbolFlow,
    TradePrint,
)

__all__ = ["synthetic_flow"]

_CHUNK = 4096  # candles converted to Python lists at a time
_EPS = 1e-6  # tolerance, in ticks, when placing a price on the grid


def _decimals_of(step: float) -> int:
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def _per_unit(increment: float) -> int:
    """``1 / increment`` when that is a whole number (0.01 → 100), else 0."""
    inverse = round(1.0 / increment)
    return inverse if inverse >= 1 and abs(inverse * increment - 1.0) < 1e-12 else 0


def _infer_increment(values: np.ndarray) -> float:
    """The largest power of ten (down to 1e-8) of which every value is a whole multiple."""
    sample = values[:5000]
    sample = sample[np.isfinite(sample) & (sample != 0)]
    for d in range(0, 9):
        scaled = sample * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return round(10.0**-d, d)
    return 1e-8


def _check_candles(candles: Candles, timeframe: Timeframe) -> None:
    n = len(candles)
    if n == 0:
        raise DataError("synthetic_flow needs at least one candle")
    ts = candles.timestamp
    if n > 1 and np.any(np.diff(ts) <= 0):
        i = int(np.flatnonzero(np.diff(ts) <= 0)[0]) + 1
        raise DataError(f"candle {i} ({int(ts[i])}) is not after candle {i - 1}; sort them")
    off = np.flatnonzero(ts % timeframe.ms)
    if len(off):
        i = int(off[0])
        raise DataError(f"candle {i} ({int(ts[i])}) is not on the {timeframe} grid")
    cols = (candles.open, candles.high, candles.low, candles.close, candles.volume)
    bad = ~np.all([np.isfinite(c) for c in cols], axis=0)
    bad |= candles.low > np.minimum(candles.open, candles.close)
    bad |= candles.high < np.maximum(candles.open, candles.close)
    bad |= (candles.low <= 0) | (candles.volume < 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"candle {i} ({int(ts[i])}) is not a valid candle (NaN, low above open/close, "
            "high below them, non-positive price or negative volume)"
        )


class _Ladder:
    """One book side as depth coordinates: ``x = -tick index`` for bids, ``+tick index``
    for asks, so the best level has the smallest ``x`` on both sides."""

    __slots__ = ("coords", "qty", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.coords: list[int] = []  # ascending: best first
        self.qty: dict[int, float] = {}

    @property
    def top(self) -> int:
        """The best level's tick index."""
        return self.sign * self.coords[0]


class _Generator:
    """Builds the events of one candle after another; holds the book between candles."""

    def __init__(
        self,
        seed: int,
        tf_ms: int,
        tick: float,
        step: float,
        levels: int,
        spacing: int,
        per_candle: int,
        interval_ms: int,
        churn: int,
    ) -> None:
        self.seed, self.tf_ms, self.tick, self.step = seed, tf_ms, tick, step
        self.levels, self.spacing, self.per_candle = levels, spacing, per_candle
        self.interval_ms, self.churn = interval_ms, churn
        self.price_dec = _decimals_of(tick)
        self.qty_dec = _decimals_of(step)
        self.per_tick = _per_unit(tick)
        self.per_step = _per_unit(step)
        self.bids, self.asks = _Ladder(-1), _Ladder(1)
        self.update_id = 0
        self.trade_id = 0
        self.last_price: float | None = None

    # ---------------------------------------------------------------- helpers
    def rng(self, i: int) -> random.Random:
        return random.Random(f"pivotal-synthetic:{self.seed}:{i}")

    def price(self, k: int) -> float:
        """The price of tick index ``k`` (the float nearest ``k × tick``)."""
        if self.per_tick:
            return k / self.per_tick  # exact quotient of integers, rounded once: fast
        return round(k * self.tick, self.price_dec)

    def level_qty(self, rng: random.Random) -> float:
        """A resting quantity of 1 to 200,000 steps."""
        n = 1 + int(rng.random() * 200_000)
        if self.per_step:
            return n / self.per_step
        return round(n * self.step, self.qty_dec)

    def tops_for(self, low: float, high: float) -> tuple[int, int]:
        """Grid indexes just below ``low`` and just above ``high``."""
        return math.ceil(low / self.tick - _EPS) - 1, math.floor(high / self.tick + _EPS) + 1

    def snapshot(self, first_open: float, first_update_id: int) -> BookSnapshot:
        rng = self.rng(-1)
        bid_top, ask_top = self.tops_for(first_open, first_open)
        for side, top in ((self.bids, bid_top), (self.asks, ask_top)):
            side.coords = self.ladder([], side.sign * top, rng)
            side.qty = {x: self.level_qty(rng) for x in side.coords}
        self.update_id = first_update_id
        return BookSnapshot(
            first_update_id,
            tuple((self.price(-x), self.bids.qty[x]) for x in self.bids.coords),
            tuple((self.price(x), self.asks.qty[x]) for x in self.asks.coords),
        )

    def top(self, time_ms: int) -> BookTop:
        bid, ask = self.bids.coords[0], self.asks.coords[0]
        return BookTop(
            time_ms,
            self.update_id,
            self.price(-bid),
            self.bids.qty[bid],
            self.price(ask),
            self.asks.qty[ask],
        )

    # ---------------------------------------------------------------- trades
    def trade_times(self, rng: random.Random, open_ms: int) -> list[int]:
        stop = open_ms + self.tf_ms
        return sorted([rng.randrange(open_ms, stop) for _ in range(self.per_candle)])

    def trades(
        self, i: int, open_ms: int, o: float, h: float, lo: float, c: float, v: float
    ) -> tuple[random.Random, list[int], list[float], list[float]]:
        """Times, prices and quantities of candle ``i``'s trades (times drawn first)."""
        rng = self.rng(i)
        times = self.trade_times(rng, open_ms)
        n = self.per_candle
        prices = self.path(rng, o, h, lo, c)
        weights = [0.1 + rng.random() for _ in range(n)]
        total = sum(weights)
        shares = [v * w / total for w in weights[:-1]]
        step, dec = self.step, self.qty_dec
        qtys = [max(step, round(round(q / step) * step, dec)) for q in shares]
        last = v - sum(qtys)
        if not last >= step:  # too little volume for the step grid: plain shares
            qtys = shares
            last = v - sum(qtys)
        qtys.append(last)
        return rng, times, prices, qtys

    def path(self, rng: random.Random, o: float, h: float, lo: float, c: float) -> list[float]:
        """``per_candle`` prices: open first, close last, high and low once each at two
        random positions in between; the others on the grid near the straight lines
        joining these anchors (noise of about one step's move), within ``[low, high]``."""
        n = self.per_candle
        hi_pos, lo_pos = rng.sample(range(1, n - 1), 2)
        anchors = sorted([(0, o), (hi_pos, h), (lo_pos, lo), (n - 1, c)])
        lo_k = math.ceil(lo / self.tick - _EPS)
        hi_k = math.floor(h / self.tick + _EPS)
        noise = (h - lo) / n
        prices = [o]
        for (a, pa), (b, pb) in pairwise(anchors):
            for k in range(a + 1, b):
                target = pa + (pb - pa) * (k - a) / (b - a) + noise * (rng.random() - 0.5)
                if lo_k <= hi_k:
                    idx = min(hi_k, max(lo_k, round(target / self.tick)))
                    prices.append(min(h, max(lo, self.price(idx))))
                else:  # the range is narrower than a tick (off-grid candle)
                    prices.append(lo)
            prices.append(pb)
        return prices

    # ---------------------------------------------------------------- book
    def gap(self, rng: random.Random) -> int:
        """Ticks between two neighbouring levels: 1 .. 2 × spacing - 1, mean ``spacing``."""
        return 1 + int(rng.random() * (2 * self.spacing - 1))

    def ladder(self, coords: list[int], top: int, rng: random.Random) -> list[int]:
        """The side's depth coordinates with the best level moved to ``top``: levels better
        than ``top`` go, the gap to the old best is filled, then ``levels`` are kept."""
        if not coords or top < coords[0]:
            fresh = [top]
            x = top + self.gap(rng)
            while coords and x < coords[0]:
                fresh.append(x)
                x += self.gap(rng)
            coords = fresh + coords
        elif top > coords[0]:
            coords = coords[bisect_left(coords, top) :]
            if not coords or coords[0] != top:
                coords.insert(0, top)
        del coords[self.levels :]
        while len(coords) < self.levels:
            coords.append(coords[-1] + self.gap(rng))
        return coords

    def side_changes(self, side: _Ladder, top: int, rng: random.Random) -> dict[int, float]:
        """Move ``side``'s best level to tick index ``top``; the changed levels (x → qty)."""
        changes: dict[int, float] = {}
        x_top = side.sign * top
        if side.coords[0] == x_top:
            return changes
        coords = self.ladder(list(side.coords), x_top, rng)
        old, qty = side.qty, {}
        for x in coords:
            q = old.get(x)
            if q is None:
                q = changes[x] = self.level_qty(rng)
            qty[x] = q
        for x in old:
            if x not in qty:
                changes[x] = 0.0
        side.coords, side.qty = coords, qty
        return changes

    def move(self, rng: random.Random, time_ms: int, bid_top: int, ask_top: int) -> DepthDiff:
        """One diff: the best levels moved to (bid_top, ask_top), ``churn`` levels re-sized."""
        bid_changes = self.side_changes(self.bids, bid_top, rng)
        ask_changes = self.side_changes(self.asks, ask_top, rng)
        for _ in range(self.churn):
            side, changes = (
                (self.bids, bid_changes) if rng.random() < 0.5 else (self.asks, ask_changes)
            )
            x = side.coords[int(rng.random() * len(side.coords))]
            if x not in changes:
                changes[x] = side.qty[x] = self.level_qty(rng)
        first = self.update_id + 1
        self.update_id += len(bid_changes) + len(ask_changes)
        price = self.price
        return DepthDiff(
            time_ms,
            first,
            self.update_id,
            tuple([(price(-x), bid_changes[x]) for x in sorted(bid_changes)]),
            tuple([(price(x), ask_changes[x]) for x in sorted(ask_changes)]),
        )

    def candle(
        self, i: int, open_ms: int, o: float, h: float, lo: float, c: float, v: float
    ) -> list[FlowEvent]:
        """All events of candle ``i`` in time order (none for a zero-volume candle)."""
        if not v > 0.0:
            return []
        rng, times, prices, qtys = self.trades(i, open_ms, o, h, lo, c, v)
        out: list[FlowEvent] = []
        interval = self.interval_ms
        n = len(times)
        j = 0
        last = self.last_price if self.last_price is not None else o
        while j < n:
            window = times[j] - times[j] % interval
            k = j
            while k < n and times[k] - times[k] % interval == window:
                k += 1
            bid_top, ask_top = self.tops_for(min(prices[j:k]), max(prices[j:k]))
            if self.churn or (bid_top, ask_top) != (self.bids.top, self.asks.top):
                diff = self.move(rng, window, bid_top, ask_top)
                if diff.last_id >= diff.first_id:  # else nothing changed: no event
                    out.append(diff)
                    out.append(self.top(window))
            for m in range(j, k):
                p = prices[m]
                maker = p < last if p != last else rng.random() < 0.5
                self.trade_id += 1
                out.append(TradePrint(times[m], self.trade_id, p, qtys[m], maker))
                last = p
            j = k
        self.last_price = last
        return out


def synthetic_flow(
    candles: Candles,
    timeframe: Timeframe | str,
    symbol: str | Symbol,
    *,
    seed: int,
    history: Mapping[Timeframe, Candles] | None = None,
    trades_per_candle: int = 12,
    depth_levels: int = 50,
    level_spacing: int | None = None,
    churn: int = 2,
    diff_interval_ms: int = 100,
    tick_size: float | None = None,
    step_size: float | None = None,
    first_trade_id: int = 1,
    first_update_id: int = 1_000_000,
) -> SymbolFlow:
    """A seeded book and trade flow consistent with ``candles`` (see the module docstring).

    ``candles`` of ``timeframe`` (1s, 1m, ...; sorted, on the grid, valid OHLC, else
    :class:`DataError`); ``history``: closed candles before the first one, served by
    ``/klines``. ``tick_size``/``step_size`` default to Binance's for BTC/USDT and ETH/USDT
    and to the decimals of the candles' prices and volumes otherwise. The same arguments
    give the same events on every :meth:`SymbolFlow.events` call.
    """
    tf = Timeframe.parse(timeframe)
    sym = Symbol.resolve(symbol) if isinstance(symbol, str) else symbol
    if trades_per_candle < 4:
        raise ConfigError(
            f"trades_per_candle must be at least 4 (open, high, low, close), got "
            f"{trades_per_candle}"
        )
    if depth_levels < 1 or churn < 0 or diff_interval_ms < 1:
        raise ConfigError(
            f"depth_levels >= 1, churn >= 0 and diff_interval_ms >= 1 are required, got "
            f"{depth_levels}, {churn}, {diff_interval_ms}"
        )
    _check_candles(candles, tf)
    known = KNOWN_FILTERS.get(str(sym))
    tick = tick_size if tick_size is not None else known[0] if known else None
    step = step_size if step_size is not None else known[1] if known else None
    if tick is None:
        prices = np.concatenate([candles.open[:2000], candles.high[:2000], candles.low[:2000]])
        tick = _infer_increment(prices)
    if step is None:
        step = _infer_increment(candles.volume)
    if not (tick > 0 and step > 0):
        raise ConfigError(f"tick_size and step_size must be positive, got {tick}, {step}")
    if level_spacing is None:
        ranges = (candles.high[:5000] - candles.low[:5000]) / tick
        level_spacing = max(1, round(float(np.median(ranges)) / depth_levels))
    if level_spacing < 1:
        raise ConfigError(f"level_spacing must be at least 1 tick, got {level_spacing}")
    spacing = int(level_spacing)

    def make() -> tuple[_Generator, BookSnapshot]:
        gen = _Generator(
            seed,
            tf.ms,
            tick,
            step,
            depth_levels,
            spacing,
            trades_per_candle,
            diff_interval_ms,
            churn,
        )
        gen.trade_id = first_trade_id - 1
        return gen, gen.snapshot(float(candles.open[0]), first_update_id)

    _, snapshot = make()
    start_ms = int(candles.timestamp[0])
    traded = np.flatnonzero(candles.volume > 0)
    end_ms = start_ms
    if len(traded):
        i = int(traded[-1])
        probe = make()[0]
        end_ms = probe.trade_times(probe.rng(i), int(candles.timestamp[i]))[-1]

    def events() -> Iterator[FlowEvent]:
        gen, _ = make()
        yield gen.top(start_ms)
        for lo in range(0, len(candles), _CHUNK):
            part = candles.rows(lo, lo + _CHUNK)
            rows = zip(
                part.timestamp.tolist(),
                part.open.tolist(),
                part.high.tolist(),
                part.low.tolist(),
                part.close.tolist(),
                part.volume.tolist(),
                strict=True,
            )
            for i, (t, o, h, low, c, v) in enumerate(rows, start=lo):
                yield from gen.candle(i, t, o, h, low, c, v)

    return SymbolFlow(
        symbol=sym,
        source=f"synthetic:seed={seed},tf={tf},candles={len(candles)}",
        start_ms=start_ms,
        end_ms=end_ms,
        snapshot=snapshot,
        tick_size=float(tick),
        step_size=float(step),
        factory=events,
        history=MappingProxyType(dict(history or {})),
    )
