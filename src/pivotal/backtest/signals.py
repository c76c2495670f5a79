"""Reference strategies as entry/exit signal arrays, for the vectorized fast path and the CLI.

Every function here is a pure, causal function of arrays: the signal at bar ``i`` uses bars
``<= i`` only, so appending future bars never changes a past signal. Outputs have the input's
length and are ``False`` during the warm-up. A signal at bar ``i`` is a decision taken at bar
``i``'s **close**; when it fills (next open or this close) is the backtester's business.

Indicators are TA-Lib's, computed on the **raw** close, and crosses are strict on both bars
exactly like ``backtesting.lib.crossover``: ``a`` crosses above ``b`` at bar ``i`` iff
``a[i-1] < b[i-1] and a[i] > b[i]``. An equality or a NaN on either bar never crosses. This
makes :func:`sma_cross` bit-identical to the SmaCross strategy that backtesting.py users write
(see ``shared/reference/conventions.md``, "Float ties decide some crosses").

:data:`STRATEGY_SIGNALS` maps a strategy name to its builder and its parameters (names,
types, defaults, descriptions); :func:`parse_params` turns ``--param k=v`` strings into checked
keyword arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import talib

from pivotal.core.candles import Candles
from pivotal.features.indicators.batch import check_series

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class Signals:
    """Entry and exit decisions per bar, taken at the bar's close.

    ``entries[i]``: open a long position at bar ``i`` if flat. ``exits[i]``: close the whole
    long position at bar ``i`` if long. ``warmup`` is the first bar at which a signal can
    occur (both arrays are ``False`` before it).
    """

    entries: BoolArray
    exits: BoolArray
    warmup: int

    def __post_init__(self) -> None:
        for name in ("entries", "exits"):
            array = getattr(self, name)
            if not isinstance(array, np.ndarray) or array.dtype != np.bool_ or array.ndim != 1:
                raise TypeError(
                    f"Signals.{name} must be a one-dimensional numpy bool array, got "
                    f"{type(array).__name__} {getattr(array, 'dtype', '')} "
                    f"{getattr(array, 'shape', '')}; convert it with np.asarray(x, dtype=bool)"
                )
        if len(self.entries) != len(self.exits):
            raise ValueError(
                f"Signals.entries has {len(self.entries)} bars but exits has {len(self.exits)}"
            )
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int | np.integer):
            raise TypeError(f"Signals.warmup must be an int, got {self.warmup!r}")
        if self.warmup < 0:
            raise ValueError(f"Signals.warmup must be >= 0, got {self.warmup}")

    def __len__(self) -> int:
        return len(self.entries)


# -- crossing helpers -----------------------------------------------------------------------------
def crossed_above(a: Any, b: Any) -> BoolArray:
    """``out[i] = a[i-1] < b[i-1] and a[i] > b[i]`` (``backtesting.lib.crossover``); ``out[0]``
    is False. NaN compares False, so a NaN on either bar never crosses; neither does equality.
    ``a`` and ``b`` are float arrays of one length; ``b`` may also be a scalar level."""
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.broadcast_to(np.asarray(b, dtype=np.float64), a_arr.shape)
    out = np.zeros(len(a_arr), dtype=np.bool_)
    if len(a_arr) > 1:
        np.logical_and(a_arr[:-1] < b_arr[:-1], a_arr[1:] > b_arr[1:], out=out[1:])
    return out


def _crossed(
    before: Callable[[Any, Any], Any], after: Callable[[Any, Any], Any], x: FloatArray, level: float
) -> BoolArray:
    out = np.zeros(len(x), dtype=np.bool_)
    if len(x) > 1:
        np.logical_and(before(x[:-1], level), after(x[1:], level), out=out[1:])
    return out


# -- parameter checks -----------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_sma_cross(fast: Any, slow: Any) -> tuple[int, int]:
    fast, slow = _check_int("fast", fast, 1), _check_int("slow", slow, 1)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
    return fast, slow


def _check_rsi_reversion(period: Any, lower: Any, upper: Any) -> tuple[int, float, float]:
    period = _check_int("period", period, 2)  # TA-Lib refuses an RSI period of 1
    levels = []
    for name, value in (("lower", lower), ("upper", upper)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{name} must be a number, got {value!r}")
        levels.append(float(value))
    lo, hi = levels
    if not 0.0 < lo < hi < 100.0:
        raise ValueError(f"RSI levels must satisfy 0 < lower < upper < 100, got {lo} and {hi}")
    return period, lo, hi


def _check_buy_and_hold(start: Any) -> int:
    return _check_int("start", start, 0)


# -- strategies -----------------------------------------------------------------------------------
def sma_cross(close: Any, fast: int = 10, slow: int = 30) -> Signals:
    """Enter when SMA(fast) crosses above SMA(slow), exit when it crosses below.

    SMAs are ``talib.SMA`` of the raw ``close`` (TA-Lib's running sum, bit-identical to what
    backtesting.py users pass in). Crosses are strict on both bars (see
    :func:`crossed_above`). The first possible signal is at bar ``slow``: SMA(slow) is valid
    from bar ``slow - 1`` and a cross needs the previous bar too.
    """
    fast, slow = _check_sma_cross(fast, slow)
    c = check_series(close, "close")
    f, s = talib.SMA(c, fast), talib.SMA(c, slow)
    return Signals(entries=crossed_above(f, s), exits=crossed_above(s, f), warmup=slow)


def rsi_reversion(close: Any, period: int = 14, lower: float = 30, upper: float = 70) -> Signals:
    """Enter when RSI leaves oversold, exit when it leaves overbought.

    RSI is ``talib.RSI(close, period)`` (Wilder; first value at bar ``period``). Entry at bar
    ``i`` iff ``rsi[i-1] < lower <= rsi[i]``; exit iff ``rsi[i-1] > upper >= rsi[i]``. NaN
    never crosses. The first possible signal is at bar ``period + 1``.
    """
    period, lo, hi = _check_rsi_reversion(period, lower, upper)
    c = check_series(close, "close")
    r = talib.RSI(c, period)
    return Signals(
        entries=_crossed(np.less, np.greater_equal, r, lo),
        exits=_crossed(np.greater, np.less_equal, r, hi),
        warmup=period + 1,
    )


def buy_and_hold(n: int, start: int = 0) -> Signals:
    """A single entry at bar ``start`` of ``n`` bars and no exit (held to the end)."""
    n = _check_int("n", n, 1)
    start = _check_buy_and_hold(start)
    if start >= n:
        raise ValueError(f"start ({start}) must be a bar of the data, i.e. < n ({n})")
    entries = np.zeros(n, dtype=np.bool_)
    entries[start] = True
    return Signals(entries=entries, exits=np.zeros(n, dtype=np.bool_), warmup=start)


# -- registry -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """One strategy parameter: its name, type (int or float), default and meaning."""

    name: str
    kind: type
    default: int | float
    description: str


@dataclass(frozen=True, slots=True)
class SignalStrategy:
    """A named signal builder. Call it as ``strategy(close, **params)`` (or
    ``strategy.signals(candles, **params)``) to get :class:`Signals`; missing parameters take
    their defaults, unknown ones are refused."""

    name: str
    description: str
    params: tuple[Param, ...]
    build: Callable[..., Signals]
    check: Callable[..., Any]

    @property
    def defaults(self) -> dict[str, int | float]:
        return {p.name: p.default for p in self.params}

    def __call__(self, close: Any, **params: Any) -> Signals:
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            raise ValueError(_unknown_message(self, unknown))
        return self.build(close, **{**self.defaults, **params})

    def signals(self, candles: Candles, **params: Any) -> Signals:
        """The signals of ``candles`` (its ``close``), as :meth:`__call__` gives them."""
        return self(candles.close, **params)


def _buy_and_hold_from_close(close: Any, start: int = 0) -> Signals:
    return buy_and_hold(len(check_series(close, "close")), start)


STRATEGY_SIGNALS: dict[str, SignalStrategy] = {
    "sma_cross": SignalStrategy(
        name="sma_cross",
        description="long when SMA(fast) crosses above SMA(slow); flat on the cross below",
        params=(
            Param("fast", int, 10, "fast SMA period in bars (>= 1, < slow)"),
            Param("slow", int, 30, "slow SMA period in bars"),
        ),
        build=sma_cross,
        check=_check_sma_cross,
    ),
    "rsi_reversion": SignalStrategy(
        name="rsi_reversion",
        description="long when RSI rises back through `lower`; flat when it falls through `upper`",
        params=(
            Param("period", int, 14, "RSI period in bars (>= 2)"),
            Param("lower", float, 30.0, "oversold level, 0 < lower < upper"),
            Param("upper", float, 70.0, "overbought level, lower < upper < 100"),
        ),
        build=rsi_reversion,
        check=_check_rsi_reversion,
    ),
    "buy_and_hold": SignalStrategy(
        name="buy_and_hold",
        description="buy once at bar `start` and hold to the end",
        params=(Param("start", int, 0, "bar index of the single entry (>= 0)"),),
        build=_buy_and_hold_from_close,
        check=_check_buy_and_hold,
    ),
}


def _unknown_message(strategy: SignalStrategy, unknown: list[str]) -> str:
    allowed = ", ".join(
        f"{p.name} ({p.kind.__name__}, default {p.default})" for p in strategy.params
    )
    return f"unknown parameter(s) {unknown} for strategy {strategy.name!r}; allowed: {allowed}"


def _convert(strategy: SignalStrategy, param: Param, value: Any) -> int | float:
    where = f"parameter {param.name!r} of strategy {strategy.name!r}"
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a {param.kind.__name__}, got {value!r}")
    if param.kind is int:
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if isinstance(value, int | float | np.number):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return number


def parse_params(strategy: str, raw: Mapping[str, Any]) -> dict[str, int | float]:
    """Checked keyword arguments for ``STRATEGY_SIGNALS[strategy]`` from ``raw`` values
    (strings from ``--param k=v`` or numbers), with defaults for the missing ones.

    Raises ``ValueError`` for an unknown strategy or parameter (listing the allowed ones), a
    value of the wrong type, or values the strategy refuses (e.g. ``fast >= slow``).
    """
    if strategy not in STRATEGY_SIGNALS:
        raise ValueError(
            f"unknown strategy {strategy!r}; available: {', '.join(sorted(STRATEGY_SIGNALS))}"
        )
    spec = STRATEGY_SIGNALS[strategy]
    unknown = sorted(set(raw) - {p.name for p in spec.params})
    if unknown:
        raise ValueError(_unknown_message(spec, unknown))
    params = {
        p.name: _convert(spec, p, raw[p.name]) if p.name in raw else p.default for p in spec.params
    }
    spec.check(**params)
    return params
