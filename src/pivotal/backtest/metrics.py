"""Backtest statistics, computed the way backtesting.py 0.6.6 computes them.

:func:`compute_metrics` turns an equity curve and a closed-trade table into a flat
``dict[str, float]``. Every figure that backtesting.py's ``compute_stats`` also reports is
computed with **its** formula (the same pandas/numpy expressions, so the results agree to
rounding), including where that formula is a convention rather than the only reasonable
choice; those places are marked *(bt.py convention)* below. The tests run backtesting.py
itself on real data and compare every shared figure.

Inputs and units
----------------
- ``timestamps``: bar **open** times, int64 UTC milliseconds, strictly increasing.
- ``equity``: account equity (quote currency) marked at each bar's close, finite.
- ``trades``: closed round trips with :data:`~pivotal.backtest.result.TRADE_COLUMNS`;
  ``return_pct`` is in percent (``pnl / (entry_price * size) * 100``), ``entry_bar`` and
  ``exit_bar`` index ``timestamps``. Positions still open at the end are *not* passed here
  (as in backtesting.py with ``finalize_trades=False``): they count in the equity figures
  but not in the trade figures nor in the exposure.
- ``closes``: the benchmark price on the same timeline (one symbol's close, or an
  equal-weight basket index); ``first_trading_bar`` is where buy-and-hold starts.

Definitions (``eq`` = equity, ``n`` = number of bars, ``ts`` = timestamps)
--------------------------------------------------------------------------
Time
  ``start``, ``end``: ``ts[0]`` and ``ts[-1]`` (UTC ms, bar open times).
  ``duration_days``: ``(end - start) / 86_400_000``.
  ``exposure_time_pct``: share of bars with at least one closed trade open, a trade
  covering bars ``entry_bar .. exit_bar`` inclusive, times 100 (in bars, not clock time).
Equity
  ``final_equity``: ``eq[-1]``. ``peak_equity``: ``max(eq)``.
  ``total_return_pct``: ``(eq[-1] - initial_cash) / initial_cash * 100``. backtesting.py
  divides by ``eq[0]``, which equals the initial cash there (its earliest fill is bar 1's
  open); here ``initial_cash`` is used so a fill at bar 0 still counts.
  ``buy_and_hold_return_pct``: ``(c[-1] - c[k]) / c[k] * 100`` with ``c = closes`` and
  ``k = first_trading_bar`` (backtesting.py uses the first bar where every indicator is
  defined); NaN when ``closes`` is None.
Annualised figures (*bt.py convention*)
  The equity is resampled to calendar periods with ``.last()`` (``D``; ``W`` for weekly,
  ``ME`` for monthly, ``YE`` for yearly bars, chosen from the median spacing of the last
  100 bars), empty periods dropped, then turned into simple returns ``r`` (the first
  period's return, from the initial cash to its close, is not counted).
  ``A`` (periods per year) is 52 / 12 / 1 for weekly / monthly / yearly bars, else 365 when
  more than 17.14 % (= 0.6 · 2/7) of the bars fall on a Saturday or Sunday (crypto), else
  252; ``periods_per_year`` overrides ``A`` (not the resampling).
  ``g`` = geometric mean of ``r``: ``exp(mean(log(1 + r))) - 1``, but 0 when any
  ``1 + r <= 0``, and NaN when there is no ``r`` (less than two calendar periods).
  ``return_ann_pct``: ``((1 + g)^A - 1) * 100``.
  ``volatility_ann_pct``: ``sqrt((var(r, ddof=1) + (1 + g)^2)^A - (1 + g)^(2A)) * 100``,
  the annualised standard deviation of compounded returns. It is a difference of two close
  numbers: when ``g`` is strongly negative both terms are tiny and the result is
  ill-conditioned (Sharpe of -7e8 has been seen on real ETH), so compare it, not Sharpe.
  ``cagr_pct``: ``((eq[-1] / initial_cash)^(1 / years) - 1) * 100`` with
  ``years = (whole days + whole seconds / 86400 of end - start) / 365.25``; NaN when the
  span is 0.
Risk-adjusted ratios (*bt.py convention*; ``rf`` = ``risk_free_rate``, annual fraction)
  ``sharpe``: ``(return_ann_pct - rf * 100) / volatility_ann_pct``; NaN (not inf) when the
  volatility is 0. Inherits the volatility's ill-conditioning described above.
  ``sortino``: ``((1 + g)^A - 1 - rf) / (sqrt(mean(min(r, 0)^2)) * sqrt(A))``, the downside
  deviation taken around 0 over all periods; +inf when no period lost and the return is
  positive, NaN when both are 0.
  ``calmar``: ``((1 + g)^A - 1) / |max drawdown|`` (fractions); NaN without a drawdown.
Drawdowns (per bar, ``dd = 1 - eq / cummax(eq)``, a fraction >= 0)
  ``max_drawdown_pct``: ``-max(dd) * 100``, zero or **negative** like backtesting.py.
  A drawdown *episode* runs from a bar with ``dd == 0`` to the next bar with ``dd == 0``,
  or to the last bar when it has not recovered; an episode needs at least one bar in
  drawdown between its ends, so a drawdown that starts on the very last bar is not one
  (*bt.py convention*). Its duration is the time between its two end bars, its depth the
  largest ``dd`` within it.
  ``avg_drawdown_pct``: ``-mean(depths) * 100``. Without episodes, ``-mean(dd[dd > 0])*100``
  (NaN when the equity never fell), which is what backtesting.py reports then.
  ``max_drawdown_duration_days``, ``avg_drawdown_duration_days``: max and mean episode
  duration in days; NaN without episodes (backtesting.py then prints a drawdown fraction
  in this field, a bug not copied). The mean is rounded **up** to the data's time
  resolution (the largest of day, hour, minute, second, millisecond dividing the bar
  spacing), as backtesting.py's ``_round_timedelta`` does.
Trades (closed round trips only; ``R = return_pct / 100``)
  ``n_trades``: their number. ``win_rate_pct``: share with ``pnl > 0`` times 100; NaN
  without trades.
  ``best_trade_pct`` / ``worst_trade_pct``: ``max(R) * 100`` / ``min(R) * 100``.
  ``avg_trade_pct``: geometric mean of ``R`` times 100 (0 when any ``R <= -1``, *bt.py
  convention*). ``expectancy_pct``: arithmetic mean of ``R`` times 100.
  ``max_trade_duration_days`` / ``avg_trade_duration_days``: max / mean of ``exit_time -
  entry_time`` in days, the mean rounded up to the data's resolution as above; NaN without
  trades.
  ``profit_factor``: ``sum(R[R > 0]) / |sum(R[R < 0])|``, a ratio of summed **returns**
  (not PnL, *bt.py convention*); 0 when every trade lost, NaN without trades **and** when
  no trade lost (backtesting.py's ``or np.nan``).
  ``sqn``: ``sqrt(n_trades) * mean(pnl) / std(pnl, ddof=1)``; NaN with fewer than two
  trades or a zero spread.
Costs
  ``fees_paid``: the ``fees_paid`` argument, echoed (quote currency).
  ``BacktestResult.fees_paid`` sums every fill, an open position's entry fee included;
  backtesting.py's "Commissions [$]" counts closed trades only.

All values are plain Python floats (``start``, ``end`` and ``n_trades`` are ints); NaN
marks a figure that is undefined for the input, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.backtest.result import BacktestResult

MS_PER_DAY = 86_400_000

METRIC_LABELS: dict[str, str] = {
    "start": "Start (UTC)",
    "end": "End (UTC)",
    "duration_days": "Duration",
    "exposure_time_pct": "Exposure time [%]",
    "final_equity": "Equity final [quote]",
    "peak_equity": "Equity peak [quote]",
    "total_return_pct": "Return [%]",
    "buy_and_hold_return_pct": "Buy & hold return [%]",
    "return_ann_pct": "Return (ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "volatility_ann_pct": "Volatility (ann.) [%]",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown_pct": "Max. drawdown [%]",
    "avg_drawdown_pct": "Avg. drawdown [%]",
    "max_drawdown_duration_days": "Max. drawdown duration",
    "avg_drawdown_duration_days": "Avg. drawdown duration",
    "n_trades": "# Trades (closed)",
    "win_rate_pct": "Win rate [%]",
    "best_trade_pct": "Best trade [%]",
    "worst_trade_pct": "Worst trade [%]",
    "avg_trade_pct": "Avg. trade (geometric) [%]",
    "max_trade_duration_days": "Max. trade duration",
    "avg_trade_duration_days": "Avg. trade duration",
    "profit_factor": "Profit factor",
    "expectancy_pct": "Expectancy [%]",
    "sqn": "SQN",
    "fees_paid": "Fees paid [quote]",
}

_TIME_KEYS = frozenset({"start", "end"})
_DURATION_KEYS = frozenset(
    {
        "duration_days",
        "max_drawdown_duration_days",
        "avg_drawdown_duration_days",
        "max_trade_duration_days",
        "avg_trade_duration_days",
    }
)
_RATIO_KEYS = frozenset({"sharpe", "sortino", "calmar", "profit_factor", "sqn"})
ILL_CONDITIONED_SHARPE = 1e3
"""A displayed Sharpe beyond this is the ill-conditioned volatility's artefact: shown as n/a
(the raw value stays in the metrics and the JSON, as backtesting.py computes it)."""
_MONEY_KEYS = frozenset({"final_equity", "peak_equity", "fees_paid"})
_TRADE_INPUT_COLUMNS = ("entry_bar", "exit_bar", "entry_time", "exit_time", "pnl", "return_pct")
# Resolutions backtesting.py's _round_timedelta may ceil to, coarsest first (ms).
_RESOLUTIONS_MS = (MS_PER_DAY, 3_600_000, 60_000, 1_000, 1)


def compute_metrics(
    timestamps: npt.ArrayLike,
    equity: npt.ArrayLike,
    trades: pd.DataFrame,
    *,
    initial_cash: float,
    fees_paid: float,
    closes: npt.ArrayLike | None = None,
    risk_free_rate: float = 0.0,
    periods_per_year: int | None = None,
    first_trading_bar: int = 0,
) -> dict[str, float]:
    """The statistics of one backtest; every definition is in the module docstring.

    ``timestamps`` (int64 UTC ms bar open times) and ``equity`` (quote currency, at each
    close) have one value per bar; ``trades`` holds the closed round trips.
    ``closes`` (same length, optional) is the buy-and-hold benchmark, started at bar
    ``first_trading_bar``. ``risk_free_rate`` is an annual fraction in (-1, 1);
    ``periods_per_year`` overrides the detected annualisation factor.
    """
    ts = _timestamps(timestamps)
    eq = _equity(equity, len(ts))
    cash = _positive_float(initial_cash, "initial_cash")
    fees = float(fees_paid)
    if not math.isfinite(fees) or fees < 0:
        raise ValueError(f"fees_paid must be a finite amount >= 0, got {fees_paid!r}")
    if not -1.0 < float(risk_free_rate) < 1.0:
        raise ValueError(f"risk_free_rate is an annual fraction in (-1, 1), got {risk_free_rate}")
    if periods_per_year is not None and (
        int(periods_per_year) != periods_per_year or periods_per_year <= 0
    ):
        raise ValueError(f"periods_per_year must be a positive integer, got {periods_per_year!r}")
    table = _trade_table(trades, len(ts))

    period_ms = float(np.median(np.diff(ts[-100:]))) if len(ts) > 1 else math.nan
    out: dict[str, float] = {}
    out.update(_time_figures(ts, table))
    out.update(_equity_figures(eq, cash, closes, first_trading_bar, len(ts)))
    annualised, annual_return = _annualised_figures(
        ts, eq, cash, period_ms, float(risk_free_rate), periods_per_year
    )
    out.update(annualised)
    out.update(_drawdown_figures(ts, eq, period_ms))
    depth = -out["max_drawdown_pct"] / 100
    out["calmar"] = float(annual_return / depth) if depth else math.nan
    out.update(_trade_figures(table, period_ms))
    out["fees_paid"] = fees
    return {key: out[key] for key in METRIC_LABELS}


def result_metrics(
    result: BacktestResult,
    *,
    closes: npt.ArrayLike | None = None,
    first_trading_bar: int = 0,
    risk_free_rate: float = 0.0,
    periods_per_year: int | None = None,
) -> dict[str, float]:
    """:func:`compute_metrics` of a :class:`BacktestResult` (its equity, trades and fees)."""
    return compute_metrics(
        result.timestamps,
        result.equity,
        result.trades,
        initial_cash=result.initial_cash,
        fees_paid=result.fees_paid,
        closes=closes,
        risk_free_rate=risk_free_rate,
        periods_per_year=periods_per_year,
        first_trading_bar=first_trading_bar,
    )


def format_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` rows for a console or HTML table, in :data:`METRIC_LABELS` order.

    Keys that are not in :data:`METRIC_LABELS` follow under their own name. Undefined
    values (NaN) read ``n/a``; durations read like ``2 d 04:30:00``.
    """
    keys = [k for k in METRIC_LABELS if k in metrics]
    keys += [k for k in metrics if k not in METRIC_LABELS]
    return [(METRIC_LABELS.get(k, k), _format_value(k, metrics[k])) for k in keys]


# --- validation --------------------------------------------------------------------------


def _timestamps(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    ts = np.asarray(values)
    if ts.ndim != 1 or len(ts) == 0:
        raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {ts.shape}")
    if ts.dtype.kind not in "iu":
        raise TypeError(f"timestamps must be int64 UTC milliseconds, got dtype {ts.dtype}")
    ts = ts.astype(np.int64, copy=False)
    if len(ts) > 1 and not np.all(np.diff(ts) > 0):
        raise ValueError("timestamps must be strictly increasing (one entry per bar)")
    return ts


def _equity(values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    eq = np.asarray(values, dtype=np.float64)
    if eq.shape != (n,):
        raise ValueError(f"equity must have one value per bar ({n}), got shape {eq.shape}")
    if not np.all(np.isfinite(eq)):
        raise ValueError("equity contains NaN or infinity; mark every bar to a finite value")
    return eq


def _positive_float(value: float, name: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite amount > 0, got {value!r}")
    return number


def _trade_table(trades: pd.DataFrame, n: int) -> pd.DataFrame:
    if not isinstance(trades, pd.DataFrame):
        raise TypeError(f"trades must be a pandas DataFrame, got {type(trades).__name__}")
    missing = [c for c in _TRADE_INPUT_COLUMNS if c not in trades.columns]
    if missing:
        raise ValueError(f"trade table lacks columns {missing}; see result.TRADE_COLUMNS")
    table = pd.DataFrame(
        {
            "entry_bar": trades["entry_bar"].to_numpy(dtype=np.int64),
            "exit_bar": trades["exit_bar"].to_numpy(dtype=np.int64),
            "entry_time": trades["entry_time"].to_numpy(dtype=np.int64),
            "exit_time": trades["exit_time"].to_numpy(dtype=np.int64),
            "pnl": trades["pnl"].to_numpy(dtype=np.float64),
            "return_pct": trades["return_pct"].to_numpy(dtype=np.float64),
        }
    )
    entry, exit_ = table["entry_bar"].to_numpy(), table["exit_bar"].to_numpy()
    bad = (entry < 0) | (exit_ >= n) | (exit_ < entry)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"trade {row} has entry_bar={entry[row]}, exit_bar={exit_[row]}; bars must satisfy "
            f"0 <= entry_bar <= exit_bar < {n} (the number of bars)"
        )
    if (table["exit_time"] < table["entry_time"]).any():
        raise ValueError("a trade exits before it enters (exit_time < entry_time)")
    if not np.all(np.isfinite(table[["pnl", "return_pct"]].to_numpy())):
        raise ValueError("trade pnl and return_pct must be finite")
    return table


# --- figures -----------------------------------------------------------------------------


def _time_figures(ts: npt.NDArray[np.int64], table: pd.DataFrame) -> dict[str, float]:
    n = len(ts)
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, table["entry_bar"].to_numpy(), 1)
    np.add.at(delta, table["exit_bar"].to_numpy() + 1, -1)
    have_position = np.cumsum(delta[:n]) > 0
    return {
        "start": int(ts[0]),
        "end": int(ts[-1]),
        "duration_days": float((ts[-1] - ts[0]) / MS_PER_DAY),
        "exposure_time_pct": float(have_position.mean() * 100),
    }


def _equity_figures(
    eq: npt.NDArray[np.float64],
    cash: float,
    closes: npt.ArrayLike | None,
    first_trading_bar: int,
    n: int,
) -> dict[str, float]:
    if int(first_trading_bar) != first_trading_bar or not 0 <= first_trading_bar < n:
        raise ValueError(
            f"first_trading_bar must be a bar index in [0, {n}), got {first_trading_bar}"
        )
    buy_and_hold = math.nan
    if closes is not None:
        c = np.asarray(closes, dtype=np.float64)
        if c.shape != (n,):
            raise ValueError(f"closes must have one value per bar ({n}), got shape {c.shape}")
        first, last = c[int(first_trading_bar)], c[-1]
        if not (math.isfinite(first) and first > 0 and math.isfinite(last)):
            raise ValueError(
                f"closes must be finite and > 0 at first_trading_bar ({first}) and at the last "
                f"bar ({last}); start buy-and-hold at the first bar with a price"
            )
        buy_and_hold = float((last - first) / first * 100)
    return {
        "final_equity": float(eq[-1]),
        "peak_equity": float(eq.max()),
        "total_return_pct": float((eq[-1] - cash) / cash * 100),
        "buy_and_hold_return_pct": buy_and_hold,
    }


def geometric_mean(returns: pd.Series) -> float:
    """``exp(mean(log(1 + r))) - 1``; 0 if any ``1 + r <= 0``, NaN when empty (bt.py's)."""
    growth = returns.fillna(0) + 1
    if np.any(growth <= 0):
        return 0.0
    return float(np.exp(np.log(growth).sum() / (len(growth) or np.nan)) - 1)


def _annualisation(ts: npt.NDArray[np.int64], period_ms: float) -> tuple[str, int]:
    """backtesting.py's resampling rule and periods per year for bars spaced ``period_ms``."""
    freq_days = int(period_ms // MS_PER_DAY) if math.isfinite(period_ms) else 0
    day_of_week = (ts // MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    have_weekends = float(np.mean(day_of_week >= 5)) > 2 / 7 * 0.6
    periods = {7: 52, 31: 12, 365: 1}.get(freq_days, 365 if have_weekends else 252)
    return {7: "W", 31: "ME", 365: "YE"}.get(freq_days, "D"), periods


def _annualised_figures(
    ts: npt.NDArray[np.int64],
    eq: npt.NDArray[np.float64],
    cash: float,
    period_ms: float,
    risk_free_rate: float,
    periods_per_year: int | None,
) -> tuple[dict[str, float], float]:
    """The annualised figures and the annual return as a fraction (for Calmar)."""
    freq, detected = _annualisation(ts, period_ms)
    a = int(periods_per_year) if periods_per_year is not None else detected
    index = pd.to_datetime(ts, unit="ms")
    series = pd.Series(eq, index=index)
    returns = series.resample(freq).last().dropna().pct_change().dropna()
    g = np.float64(geometric_mean(returns))  # numpy power: inf on overflow, not an exception
    with np.errstate(all="ignore"):
        annual = (1 + g) ** a - 1
        volatility = float(
            np.sqrt((returns.var(ddof=1) + (1 + g) ** 2) ** a - (1 + g) ** (2 * a)) * 100
        )
        return_ann_pct = float(annual * 100)
        sharpe = (
            (return_ann_pct - risk_free_rate * 100) / volatility if volatility != 0 else math.nan
        )
        downside = np.sqrt(np.mean(returns.clip(-np.inf, 0) ** 2)) * np.sqrt(a)
        sortino = float(np.float64(annual - risk_free_rate) / np.float64(downside))
        span_ms = int(ts[-1] - ts[0])
        years = (span_ms // MS_PER_DAY + (span_ms % MS_PER_DAY) // 1000 / 86400) / 365.25
        cagr = ((eq[-1] / cash) ** (1 / years) - 1) * 100 if years else math.nan
    figures = {
        "return_ann_pct": return_ann_pct,
        "cagr_pct": float(cagr),
        "volatility_ann_pct": volatility,
        "sharpe": float(sharpe),
        "sortino": sortino,
    }
    return figures, float(annual)


def _drawdown_figures(
    ts: npt.NDArray[np.int64], eq: npt.NDArray[np.float64], period_ms: float
) -> dict[str, float]:
    n = len(ts)
    dd = 1 - eq / np.maximum.accumulate(eq)
    # Episode ends: every bar at a peak, plus the last bar (backtesting.py's rule).
    ends = np.unique(np.r_[np.flatnonzero(dd == 0), n - 1])
    prev, cur = ends[:-1], ends[1:]
    keep = cur > prev + 1
    prev, cur = prev[keep], cur[keep]
    max_dd = -float(np.nan_to_num(dd.max()))
    if len(cur) == 0:
        in_dd = dd[dd != 0]
        return {
            "max_drawdown_pct": max_dd * 100,
            "avg_drawdown_pct": float(-in_dd.mean() * 100) if len(in_dd) else math.nan,
            "max_drawdown_duration_days": math.nan,
            "avg_drawdown_duration_days": math.nan,
        }
    mark = np.zeros(n + 1, dtype=np.int64)
    mark[prev] += 1
    mark[cur + 1] -= 1
    in_episode = np.cumsum(mark[:n]) > 0
    depths = np.maximum.reduceat(np.where(in_episode, dd, 0.0), prev)
    durations = ts[cur] - ts[prev]
    unit = _resolution_ms(period_ms)
    return {
        "max_drawdown_pct": max_dd * 100,
        "avg_drawdown_pct": float(-depths.mean() * 100),
        "max_drawdown_duration_days": _ceil_days(int(durations.max()), 1, unit),
        "avg_drawdown_duration_days": _ceil_days(int(durations.sum()), len(durations), unit),
    }


def _trade_figures(table: pd.DataFrame, period_ms: float) -> dict[str, float]:
    n = len(table)
    pnl = table["pnl"]
    returns = table["return_pct"] / 100
    durations = (table["exit_time"] - table["entry_time"]).to_numpy()
    unit = _resolution_ms(period_ms)
    losses = abs(returns[returns < 0].sum())
    spread = pnl.std()
    longest = _ceil_days(int(durations.max()), 1, unit) if n else math.nan
    mean_duration = _ceil_days(int(durations.sum()), n, unit) if n else math.nan
    return {
        "n_trades": n,
        "win_rate_pct": float((pnl > 0).mean() * 100) if n else math.nan,
        "best_trade_pct": float(returns.max() * 100),
        "worst_trade_pct": float(returns.min() * 100),
        "avg_trade_pct": geometric_mean(returns) * 100,
        "max_trade_duration_days": longest,
        "avg_trade_duration_days": mean_duration,
        "profit_factor": float(returns[returns > 0].sum() / losses) if losses else math.nan,
        "expectancy_pct": float(returns.mean() * 100),
        "sqn": float(np.sqrt(n) * pnl.mean() / spread) if spread else math.nan,
    }


def _resolution_ms(period_ms: float) -> int | None:
    """The unit backtesting.py rounds durations up to: the coarsest dividing the bar spacing."""
    if not math.isfinite(period_ms) or period_ms <= 0 or period_ms != int(period_ms):
        return None
    return next(unit for unit in _RESOLUTIONS_MS if int(period_ms) % unit == 0)


def _ceil_days(total_ms: int, count: int, unit_ms: int | None) -> float:
    """``total_ms / count`` rounded up to ``unit_ms`` (exact integer arithmetic), in days."""
    if unit_ms is None:
        return total_ms / count / MS_PER_DAY
    return float(-(-total_ms // (count * unit_ms)) * unit_ms / MS_PER_DAY)


# --- formatting --------------------------------------------------------------------------


def _format_value(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    number = float(value)
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if key in _TIME_KEYS:
        stamp = np.datetime64(int(number), "ms").astype("datetime64[s]")
        return f"{str(stamp).replace('T', ' ')} UTC"
    if key in _DURATION_KEYS:
        return _format_days(number)
    if key == "n_trades":
        return f"{int(number):,}"
    if key in _MONEY_KEYS:
        return f"{number:,.2f}"
    if key == "sharpe" and abs(number) > ILL_CONDITIONED_SHARPE:
        # the geometric volatility collapsed to ~0 (module docstring): not a real Sharpe
        return "n/a (volatility ≈ 0)"
    if key in _RATIO_KEYS:
        return f"{number:.3f}"
    return f"{number:,.2f}"


def _format_days(days: float) -> str:
    """``2 d 04:30:00`` (seconds rounded; sub-second durations read ``0 d 00:00:00.250``)."""
    total_ms = round(days * MS_PER_DAY)
    whole_days, rest = divmod(total_ms, MS_PER_DAY)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{whole_days:,} d {hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{millis:03d}" if millis else text
