"""The vectorized fast path: a long-only backtest of entry/exit signal arrays.

:func:`run_signals` simulates one long position at a time with backtesting.py's accounting,
and its floating-point arithmetic is done in the same order as backtesting.py's
``FractionalBacktest(fractional_unit=lot_size)``, so trades, sizes, PnL and the equity curve
are bit-identical to it (see ``shared/reference/conventions.md``). The event-driven engine
implements the same semantics; a test compares the two.

Semantics (prices and money in the quote asset, sizes in the base asset, times UTC ms):

- **Decisions** are taken at each bar's close: if flat and ``entries[i]``, buy; else if long
  and ``exits[i]``, sell the whole position. Only one position is open at a time; an entry
  signal while long and an exit signal while flat are ignored.
- **Fills**: with ``fill_timing="next_open"`` the order fills at ``open[i+1]`` (a decision on
  the last bar never fills); with ``"current_close"`` it fills at ``close[i]``. A fill's
  ``bar`` is the bar it fills in (``i+1`` or ``i``, as backtesting.py reports it) and its
  time is when it happens: ``timestamp[i+1]`` (that bar's open) or ``timestamp[i] + bar_ms``
  (bar i's close), as the event engine stamps them. All fills are market (taker) fills
  without spread or slippage.
- **Sizing**: the position is a whole number ``N`` of ``lot_size`` units,
  ``N = floor(fraction * cash / (lot_size * price * (1 + fee)))`` where ``cash`` is the equity
  while flat. Computed as backtesting.py does: with ``p = price * lot_size``,
  ``N = (fraction * cash) // (p + fraction * p * fee / fraction)``, and the order is refused
  when ``N * that > cash``. ``N = 0`` means no trade: the strategy stays flat and a later
  entry signal may try again.
- **Accounting** (``q = N * lot_size``, per lot ``e = entry * lot_size``, ``x = exit *
  lot_size``): at entry ``cash -= N*e*fee``; at exit ``cash += N*(x - e) - N*x*fee``; cash is
  never charged the notional, which is the same as a spot account holding ``q``. While open,
  ``equity[i] = cash + (N*(close[i]*lot_size) - N*e)`` (the exit fee is not deducted until
  paid); while flat, ``equity[i] = cash``.
  A trade's ``pnl = N*(x - e) - (N*x*fee + N*e*fee)`` and ``fees = N*x*fee + N*e*fee``, i.e.
  ``q*(exit - entry) - q*(entry + exit)*fee``. Reported prices are the raw market prices.
- **Gaps** (:mod:`pivotal.core.gaps`): with ``gaps="close"`` (the default), on the last bar
  ``g`` before a gap an entry signal is ignored and a position still open is sold at
  ``close[g]`` (fill bar ``g``, stamped at its close, tag and exit reason ``gap``) unless an
  exit decided before bar ``g`` closed it first; this is what the event engine does. With
  ``"hold"`` positions are carried through gaps (backtesting.py's behaviour).
- **End of data**: a position still open is listed in ``open_trades`` with no exit
  (``exit_bar`` and ``exit_time`` -1, ``exit_price`` NaN, as the event engine reports it);
  its ``pnl`` is the unrealized PnL at the last close minus the entry fee, its ``fees`` the
  entry fee; it is part of the final equity.

The implementation is columnar: numpy over the bars and a Python loop over the trades only.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.backtest.result import EXIT_REASON, FILL_COLUMNS, TRADE_COLUMNS, BacktestResult
from pivotal.backtest.signals import Signals
from pivotal.core import Candles
from pivotal.core.errors import DataError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, GapPolicy, find_series_gaps, gap_after
from pivotal.core.timeframes import Timeframe

FillTiming = Literal["next_open", "current_close"]
FILL_TIMINGS: tuple[str, ...] = ("next_open", "current_close")
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def _signal_arrays(signals: Any, n: int) -> tuple[BoolArray, BoolArray, int | None]:
    if isinstance(signals, Signals):
        entries, exits, warmup = signals.entries, signals.exits, signals.warmup
    elif isinstance(signals, tuple | list) and len(signals) == 2:
        entries, exits = signals
        warmup = None
    else:
        raise TypeError(
            "signals must be a Signals object or a pair (entries, exits) of bool arrays, got "
            f"{type(signals).__name__}"
        )
    for name, array in (("entries", entries), ("exits", exits)):
        if not isinstance(array, np.ndarray) or array.dtype != np.bool_ or array.ndim != 1:
            raise TypeError(
                f"{name} must be a one-dimensional numpy bool array, got "
                f"{type(array).__name__} {getattr(array, 'dtype', '')} "
                f"{getattr(array, 'shape', '')}; convert it with np.asarray(x, dtype=bool)"
            )
        if len(array) != n:
            raise ValueError(f"{name} has {len(array)} bars but the candles have {n}")
    return entries, exits, warmup


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _check_prices(name: str, prices: npt.NDArray[np.float64]) -> None:
    if len(prices) == 0:
        return
    low, high = prices.min(), prices.max()
    if low > 0 and high < math.inf:
        return
    bad = np.flatnonzero(~(np.isfinite(prices) & (prices > 0)))
    raise DataError(
        f"candle {name} prices must be finite and positive to trade on them; {len(bad)} are "
        f"not (first at bar {bad[0]}: {prices[bad[0]]!r}) — clean the data first"
    )


def _timeframe(bar_ms: int) -> str:
    """The timeframe name of a bar length (e.g. ``"1m"``), else ``"<ms>ms"``."""
    named = [tf for tf in Timeframe if tf.ms == bar_ms]
    return str(named[0]) if named else f"{bar_ms}ms"


def _close_offset(ts: npt.NDArray[np.int64], bar_ms: int | None, *, needed: bool) -> int:
    """How much later than its bar's open time a fill at the bar's close is stamped."""
    if bar_ms is not None:
        return bar_ms
    steps = np.diff(ts)
    steps = steps[steps > 0]
    if len(steps):
        return int(steps.min())
    if needed:
        raise ValueError(
            "cannot tell the bar duration from fewer than two distinct timestamps; pass "
            "bar_ms (e.g. 60_000 for 1m bars) to stamp fills at the close"
        )
    return 0


@dataclass(frozen=True, slots=True)
class _Trades:
    """The simulated round trips, in order; the last one may still be open."""

    entry_bars: list[int]  # bar of each entry fill
    exit_bars: list[int]  # bar of each exit fill (closed trades only)
    lots: list[float]  # whole number of lots per trade
    entry_prices: list[float]
    exit_prices: list[float]  # closed trades only
    entry_fees: list[float]
    exit_fees: list[float]  # closed trades only
    cash_open: list[float]  # cash while each trade is open (entry fee paid)
    cash_flat: list[float]  # cash after each exit (closed trades only)
    at_gap: list[bool]  # per closed trade: closed at the close of the last bar before a gap

    @property
    def is_open(self) -> bool:
        return len(self.entry_bars) > len(self.exit_bars)


def _simulate(
    entries: BoolArray,
    exits: BoolArray,
    fill_prices: FloatArray,
    shift: int,
    cash: float,
    fee: float,
    lot: float,
    fraction: float,
    closes: FloatArray,
    gap_bars: list[int],
) -> _Trades:
    """Walk the signals trade by trade (one Python iteration per trade, never per bar).

    ``gap_bars`` are the last bars before gaps where a position is closed at ``closes``."""
    out = _Trades([], [], [], [], [], [], [], [], [], [])
    ent = np.flatnonzero(entries).tolist()
    ext = np.flatnonzero(exits).tolist()
    last = len(entries) - shift  # decisions at bars >= last have no bar to fill in
    k_ent = k_ext = 0
    pos = 0  # first bar at which a flat strategy looks for an entry
    while True:
        k_ent = bisect_left(ent, pos, k_ent)
        if k_ent == len(ent) or ent[k_ent] >= last:
            return out
        i = ent[k_ent]
        k_gap = bisect_left(gap_bars, i)
        gap = gap_bars[k_gap] if k_gap < len(gap_bars) else None
        if gap == i:
            pos = i + 1  # no entry on the last bar before a gap
            continue
        price = float(fill_prices[i + shift])
        e = price * lot
        # backtesting.py: adjusted price + commission(size, price) / |size| with size = fraction
        denom = e + fraction * e * fee / fraction
        units = (cash * fraction) // denom
        if units < 1 or units * denom > cash:
            pos = i + 1  # cancelled: not even one lot is affordable; stay flat
            continue
        paid = units * e * fee
        cash -= paid
        out.entry_bars.append(i + shift)
        out.lots.append(units)
        out.entry_prices.append(price)
        out.entry_fees.append(paid)
        out.cash_open.append(cash)
        k_ext = bisect_left(ext, i + 1, k_ext)
        j = ext[k_ext] if k_ext < len(ext) and ext[k_ext] < last else None
        at_gap = gap is not None and (j is None or j >= gap)
        if at_gap:
            exit_bar, exit_price, pos = gap, float(closes[gap]), gap + 1
        elif j is None:
            return out  # still open at the end
        else:  # a signal exit (with next_open it may fill on the gap bar itself, at its open)
            exit_bar, exit_price, pos = j + shift, float(fill_prices[j + shift]), j + 1
        x = exit_price * lot
        charged = units * x * fee
        cash += units * (x - e) - charged
        out.exit_bars.append(exit_bar)
        out.exit_prices.append(exit_price)
        out.exit_fees.append(charged)
        out.cash_flat.append(cash)
        out.at_gap.append(at_gap)


def _equity(
    trades: _Trades, close: FloatArray, cash: float, lot: float, n: int
) -> npt.NDArray[np.float64]:
    """``cash + (lots*(close*lot) - lots*(entry*lot))`` per bar (backtesting.py's
    ``cash + (last_price*position_size - size*entry_price)``), built segment by segment.

    Segments alternate flat / open: ``[0, a1) [a1, b1) [b1, a2) ... [bm, n)`` where ``a`` are
    the entry-fill bars and ``b`` the exit-fill bars (``n`` for a trade still open). Flat bars
    get ``cash + (0 - 0)``, which is exactly ``cash``.
    """
    m = len(trades.entry_bars)
    bounds = np.empty(2 * m + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, n
    bounds[1:-1:2] = trades.entry_bars
    bounds[2:-1:2] = trades.exit_bars + ([n] if trades.is_open else [])
    seg_cash = np.empty(2 * m + 1)
    seg_cash[0] = cash
    seg_cash[1::2] = trades.cash_open
    # the flat segment after a trade still open is empty; its value is never used
    seg_cash[2::2] = trades.cash_flat + ([0.0] if trades.is_open else [])
    seg_lots = np.zeros(2 * m + 1)
    seg_lots[1::2] = trades.lots
    seg_entry = np.zeros(2 * m + 1)
    seg_entry[1::2] = np.asarray(trades.entry_prices, dtype=np.float64) * lot
    lengths = np.diff(bounds)
    lots = np.repeat(seg_lots, lengths)
    marked = lots * (close * lot)
    marked -= lots * np.repeat(seg_entry, lengths)
    marked += np.repeat(seg_cash, lengths)
    return marked


def _trade_frame(
    symbol: str,
    entry_bars: npt.NDArray[np.int64],
    exit_bars: npt.NDArray[np.int64],
    entry_times: npt.NDArray[np.int64],
    exit_times: npt.NDArray[np.int64],
    entry_prices: FloatArray,
    exit_prices: FloatArray,
    lots: FloatArray,
    gross: FloatArray,
    fees: FloatArray,
    lot: float,
    reasons: npt.NDArray[np.object_],
) -> pd.DataFrame:
    size = lots * lot
    pnl = gross - fees
    return pd.DataFrame(
        {
            "symbol": np.full(len(lots), symbol, dtype=object),
            "side": np.full(len(lots), "long", dtype=object),
            "entry_time": entry_times,
            "exit_time": exit_times,
            "entry_bar": entry_bars,
            "exit_bar": exit_bars,
            "entry_price": entry_prices,
            "exit_price": exit_prices,
            "size": size,
            "pnl": pnl,
            "fees": fees,
            "return_pct": pnl / (entry_prices * size) * 100.0,
            EXIT_REASON: reasons,
        },
        columns=[*TRADE_COLUMNS, EXIT_REASON],
    ).astype({EXIT_REASON: object})


def _tables(
    trades: _Trades,
    ts: npt.NDArray[np.int64],
    time_offset: int,
    close: FloatArray,
    symbol: str,
    lot: float,
    close_offset: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The closed-trade table, the open-trade table and the fill table.

    A fill in bar ``b`` is stamped ``ts[b] + time_offset``: 0 for fills at the open, the bar
    duration for fills at the close; a gap exit always at its bar's close (``close_offset``).
    """
    c = len(trades.exit_bars)
    entry_bars = np.asarray(trades.entry_bars, dtype=np.int64)
    exit_bars = np.asarray(trades.exit_bars, dtype=np.int64)
    entry_times = ts[entry_bars] + time_offset
    at_gap = np.asarray(trades.at_gap, dtype=bool)
    exit_times = ts[exit_bars] + np.where(at_gap, close_offset, time_offset)
    reasons = np.where(at_gap, "gap", "exit").astype(object)
    lots = np.asarray(trades.lots, dtype=np.float64)
    entry_prices = np.asarray(trades.entry_prices, dtype=np.float64)
    exit_prices = np.asarray(trades.exit_prices, dtype=np.float64)
    entry_fees = np.asarray(trades.entry_fees, dtype=np.float64)
    exit_fees = np.asarray(trades.exit_fees, dtype=np.float64)
    # same operations, in the same order, as backtesting.py's Trade.pl at the close
    fees = exit_fees + entry_fees[:c]
    gross = lots[:c] * (exit_prices * lot - entry_prices[:c] * lot)
    closed = _trade_frame(
        symbol, entry_bars[:c], exit_bars, entry_times[:c], exit_times,
        entry_prices[:c], exit_prices, lots[:c], gross, fees, lot, reasons,
    )  # fmt: skip
    # a trade still open: no exit yet (bar and time -1, price NaN, as the event engine has
    # it); pnl = unrealized at the last close minus the entry fee paid
    n_open = len(entry_bars) - c
    open_gross = lots[c:] * (close[-1:] * lot - entry_prices[c:] * lot) if n_open else lots[c:]
    no_exit = np.full(n_open, -1, dtype=np.int64)
    still_open = _trade_frame(
        symbol, entry_bars[c:], no_exit, entry_times[c:], no_exit, entry_prices[c:],
        np.full(n_open, np.nan), lots[c:], open_gross, entry_fees[c:], lot,
        np.full(n_open, "", dtype=object),
    )  # fmt: skip

    # fills in time order: entry, exit, entry, exit, ..., [entry of the open trade]
    k = len(entry_bars) + c
    bars = np.empty(k, dtype=np.int64)
    bars[0 : 2 * c : 2], bars[1 : 2 * c : 2] = entry_bars[:c], exit_bars
    times = np.empty(k, dtype=np.int64)
    times[0 : 2 * c : 2], times[1 : 2 * c : 2] = entry_times[:c], exit_times
    prices = np.empty(k)
    prices[0 : 2 * c : 2], prices[1 : 2 * c : 2] = entry_prices[:c], exit_prices
    paid = np.empty(k)
    paid[0 : 2 * c : 2], paid[1 : 2 * c : 2] = entry_fees[:c], exit_fees
    quantity = np.empty(k)
    quantity[0 : 2 * c : 2], quantity[1 : 2 * c : 2] = lots[:c] * lot, lots[:c] * lot
    side = np.empty(k, dtype=object)
    side[0::2], side[1::2] = "buy", "sell"
    tag = np.empty(k, dtype=object)
    tag[0::2], tag[1::2] = "entry", "exit"
    tag[1 : 2 * c : 2] = reasons
    if n_open:
        bars[-1], times[-1], prices[-1] = entry_bars[-1], entry_times[-1], entry_prices[-1]
        paid[-1], quantity[-1] = entry_fees[-1], lots[-1] * lot
    fills = pd.DataFrame(
        {
            "timestamp": times,
            "bar": bars,
            "symbol": np.full(k, symbol, dtype=object),
            "side": side,
            "quantity": quantity,
            "price": prices,
            "fee": paid,
            "liquidity": np.full(k, "taker", dtype=object),
            "client_order_id": np.array([f"vec-{i:08d}" for i in range(1, k + 1)], dtype=object),
            "tag": tag,
        },
        columns=list(FILL_COLUMNS),
    )
    return closed, still_open, fills


def run_signals(
    candles: Candles,
    signals: Signals | tuple[BoolArray, BoolArray],
    *,
    symbol: str = "BTC/USDT",
    cash: float = 100_000.0,
    fee: float = 0.001,
    lot_size: float = 1e-8,
    fraction: float = 1.0,
    fill_timing: FillTiming = "next_open",
    bar_ms: int | None = None,
    gaps: GapPolicy | str = GapPolicy.CLOSE,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> BacktestResult:
    """Backtest long-only ``signals`` on ``candles``; see the module docstring for semantics.

    Args:
        candles: the bars; fills use ``open`` (next-open) or ``close``, equity uses ``close``.
        signals: :class:`Signals` or ``(entries, exits)``, bool arrays of ``len(candles)``.
        symbol: the instrument named in the trade and fill tables.
        cash: initial cash in the quote asset (> 0).
        fee: taker fee rate charged on each side's notional, in ``[0, 0.1)``.
        lot_size: the smallest tradable quantity in the base asset (1e-8 = one satoshi).
        fraction: the share of equity each entry may spend, in ``(0, 1]``; backtesting.py's
            ``buy()`` uses ``1 - 2.2e-16``.
        fill_timing: ``"next_open"`` (backtesting.py's default) or ``"current_close"``.
        bar_ms: the bar duration in ms, used to stamp fills at a close (``timestamp +
            bar_ms``) and to find gaps; None infers it as the smallest step between timestamps.
        gaps: ``"close"`` (default) closes a position at the last bar before each gap and
            takes no entry there; ``"hold"`` carries positions through gaps.
        max_missing_bars: a missing run of more than this many bars is a gap.

    Returns:
        A :class:`BacktestResult` with ``engine="vectorized"``, the equity curve, trades,
        open trades and fills; ``metrics`` is left empty and ``settings`` records the
        arguments.
    """
    if not isinstance(candles, Candles):
        raise TypeError(f"candles must be a pivotal.core.Candles, got {type(candles).__name__}")
    n = len(candles)
    entries, exits, warmup = _signal_arrays(signals, n)
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    cash = _number("cash", cash)
    fee = _number("fee", fee)
    lot = _number("lot_size", lot_size)
    fraction = _number("fraction", fraction)
    if cash <= 0:
        raise ValueError(f"cash must be > 0, got {cash}")
    if not 0.0 <= fee < 0.1:
        raise ValueError(f"fee is a rate per side and must be in [0, 0.1), got {fee}")
    if lot <= 0:
        raise ValueError(f"lot_size must be > 0 (1e-8 for satoshi lots), got {lot}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction of equity per entry must be in (0, 1], got {fraction}")
    if fill_timing not in FILL_TIMINGS:
        raise ValueError(f"fill_timing must be one of {FILL_TIMINGS}, got {fill_timing!r}")
    if bar_ms is not None and (
        isinstance(bar_ms, bool) or not isinstance(bar_ms, int | np.integer) or bar_ms <= 0
    ):
        raise ValueError(f"bar_ms must be a positive integer of milliseconds, got {bar_ms!r}")
    bar_ms = None if bar_ms is None else int(bar_ms)
    shift = 1 if fill_timing == "next_open" else 0
    fill_prices = candles.open if shift else candles.close
    _check_prices("close", candles.close)
    if shift:
        _check_prices("open", candles.open)

    policy = GapPolicy.parse(gaps)
    ts = candles.timestamp
    step = _close_offset(ts, bar_ms, needed=False)
    found = find_series_gaps(ts, step, max_missing_bars) if step else []
    gap_bars: list[int] = []
    if policy is GapPolicy.CLOSE and found:
        gap_bars = np.flatnonzero(gap_after(ts, step, max_missing_bars)).tolist()
    trades = _simulate(
        entries, exits, fill_prices, shift, cash, fee, lot, fraction, candles.close, gap_bars
    )
    equity = _equity(trades, candles.close, cash, lot, n)
    offset = 0 if shift else _close_offset(ts, bar_ms, needed=bool(trades.entry_bars))
    trade_table, open_table, fills = _tables(trades, ts, offset, candles.close, symbol, lot, step)
    settings = {
        "symbol": symbol,
        "cash": cash,
        "fee": fee,
        "lot_size": lot,
        "fraction": fraction,
        "fill_timing": fill_timing,
        "bar_ms": bar_ms,
        "bars": n,
        "signal_warmup": warmup,
        "gaps": str(policy),
        "max_missing_bars": max_missing_bars,
    }
    return BacktestResult(
        initial_cash=cash,
        timestamps=ts,
        equity=equity,
        trades=trade_table,
        open_trades=open_table,
        fills=fills,
        metrics={},
        events=(),
        settings=settings,
        engine="vectorized",
        gaps=tuple({"symbol": symbol, "timeframe": _timeframe(step), **g.as_dict()} for g in found),
    )
