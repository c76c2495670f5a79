"""Backtest metrics: the same figures as backtesting.py 0.6.6, and the edge cases.

The reference is backtesting.py itself: once run end to end on real BTC/ETH data (its
``FractionalBacktest`` with an SMA(10)/SMA(30) cross, conventions.md), once through its
``compute_stats`` on seeded synthetic equity curves and trade tables. backtesting.py is a dev
dependency: without it those comparisons skip (:func:`_oracle`) and the edge cases still run.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.metrics import (
    METRIC_LABELS,
    compute_metrics,
    format_metrics,
    geometric_mean,
)
from pivotal.backtest.result import TRADE_COLUMNS
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

talib = pytest.importorskip("talib")

MS_MIN = 60_000
MS_HOUR = 3_600_000
MS_DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday

# Our key -> backtesting.py's label, compared to rel 1e-9.
SHARED = {
    "exposure_time_pct": "Exposure Time [%]",
    "final_equity": "Equity Final [$]",
    "peak_equity": "Equity Peak [$]",
    "total_return_pct": "Return [%]",
    "buy_and_hold_return_pct": "Buy & Hold Return [%]",
    "return_ann_pct": "Return (Ann.) [%]",
    "volatility_ann_pct": "Volatility (Ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "calmar": "Calmar Ratio",
    "max_drawdown_pct": "Max. Drawdown [%]",
    "avg_drawdown_pct": "Avg. Drawdown [%]",
    "win_rate_pct": "Win Rate [%]",
    "best_trade_pct": "Best Trade [%]",
    "worst_trade_pct": "Worst Trade [%]",
    "avg_trade_pct": "Avg. Trade [%]",
    "profit_factor": "Profit Factor",
    "expectancy_pct": "Expectancy [%]",
    "sqn": "SQN",
}
# Ill-conditioned when daily returns are strongly negative (conventions.md): rel 1e-6.
RATIOS = {"sharpe": "Sharpe Ratio", "sortino": "Sortino Ratio"}
# Compared exactly, in days.
DURATIONS = {
    "duration_days": "Duration",
    "max_drawdown_duration_days": "Max. Drawdown Duration",
    "avg_drawdown_duration_days": "Avg. Drawdown Duration",
    "max_trade_duration_days": "Max. Trade Duration",
    "avg_trade_duration_days": "Avg. Trade Duration",
}


# --- helpers -----------------------------------------------------------------------------


def _oracle(module: str = "backtesting") -> Any:
    """A module of backtesting.py (the oracle); the calling test skips when it is absent."""
    return pytest.importorskip(
        module, reason="backtesting.py (a dev dependency, the oracle) is not installed"
    )


def _as_float(value: object) -> float:
    if isinstance(value, pd.Timedelta):
        return value / pd.Timedelta(days=1)
    if value is pd.NaT:
        return math.nan
    return float(value)  # type: ignore[arg-type]


def _same(ours: float, theirs: float, rel: float) -> bool:
    if math.isnan(theirs) or math.isnan(ours):
        return math.isnan(theirs) and math.isnan(ours)
    if math.isinf(theirs) or math.isinf(ours):
        return ours == theirs
    return math.isclose(ours, theirs, rel_tol=rel, abs_tol=1e-12 if theirs == 0 else 0.0)


def _assert_matches(ours: dict[str, float], stats: pd.Series, *, ratio_rel: float) -> None:
    wrong = []
    for table, rel in ((SHARED, 1e-9), (RATIOS, ratio_rel), (DURATIONS, 0.0)):
        for key, label in table.items():
            theirs = _as_float(stats[label])
            ok = (
                _same(ours[key], theirs, rel)
                if rel
                else (ours[key] == theirs or (math.isnan(ours[key]) and math.isnan(theirs)))
            )
            if not ok:
                wrong.append(f"{key}: ours {ours[key]!r}, backtesting.py {theirs!r}")
    assert ours["n_trades"] == stats["# Trades"]
    assert ours["start"] == stats["Start"].value // 1_000_000
    assert ours["end"] == stats["End"].value // 1_000_000
    assert not wrong, "\n".join(wrong)


def _same_figures(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal keys and values, NaN equal to NaN."""
    return list(a) == list(b) and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


def _from_bt_trades(trades: pd.DataFrame, symbol: str = "X/USDT") -> pd.DataFrame:
    """backtesting.py's ``_trades`` as our TRADE_COLUMNS (sizes unsigned, side from sign)."""
    size = trades["Size"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "side": np.where(size > 0, "long", "short"),
            "entry_time": trades["EntryTime"].to_numpy().astype("datetime64[ms]").astype(np.int64),
            "exit_time": trades["ExitTime"].to_numpy().astype("datetime64[ms]").astype(np.int64),
            "entry_bar": trades["EntryBar"].to_numpy(dtype=np.int64),
            "exit_bar": trades["ExitBar"].to_numpy(dtype=np.int64),
            "entry_price": trades["EntryPrice"].to_numpy(dtype=float),
            "exit_price": trades["ExitPrice"].to_numpy(dtype=float),
            "size": np.abs(size),
            "pnl": trades["PnL"].to_numpy(dtype=float),
            "fees": trades["Commission"].to_numpy(dtype=float),
            "return_pct": trades["ReturnPct"].to_numpy(dtype=float) * 100,
        },
        columns=list(TRADE_COLUMNS),
    )


def _to_bt_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Our trade table in the shape backtesting.py's ``compute_stats`` reads."""
    entry = pd.to_datetime(trades["entry_time"].to_numpy(), unit="ms")
    exit_ = pd.to_datetime(trades["exit_time"].to_numpy(), unit="ms")
    sign = np.where(trades["side"].to_numpy() == "long", 1.0, -1.0)
    return pd.DataFrame(
        {
            "Size": sign * trades["size"].to_numpy(dtype=float),
            "EntryBar": trades["entry_bar"].to_numpy(dtype=np.int64),
            "ExitBar": trades["exit_bar"].to_numpy(dtype=np.int64),
            "PnL": trades["pnl"].to_numpy(dtype=float),
            "ReturnPct": trades["return_pct"].to_numpy(dtype=float) / 100,
            "EntryTime": entry,
            "ExitTime": exit_,
            "Duration": exit_ - entry,
        }
    )


def make_trades(
    bars: list[tuple[int, int]],
    returns_pct: list[float],
    timestamps: np.ndarray,
    *,
    side: str | list[str] = "long",
    price: float = 100.0,
    size: float = 1.0,
    fee_rate: float = 0.001,
) -> pd.DataFrame:
    """Closed trades over ``(entry_bar, exit_bar)`` with the given net returns in percent."""
    n = len(bars)
    sides = [side] * n if isinstance(side, str) else list(side)
    entry_bar = np.array([b[0] for b in bars], dtype=np.int64)
    exit_bar = np.array([b[1] for b in bars], dtype=np.int64)
    ret = np.asarray(returns_pct, dtype=float)
    pnl = ret / 100 * price * size
    sign = np.where(np.array(sides) == "long", 1.0, -1.0)
    fees = np.full(n, 2 * price * size * fee_rate)
    exit_price = price + sign * (pnl + fees) / size
    return pd.DataFrame(
        {
            "symbol": "BTC/USDT",
            "side": sides,
            "entry_time": timestamps[entry_bar],
            "exit_time": timestamps[exit_bar],
            "entry_bar": entry_bar,
            "exit_bar": exit_bar,
            "entry_price": np.full(n, price),
            "exit_price": exit_price,
            "size": np.full(n, size),
            "pnl": pnl,
            "fees": fees,
            "return_pct": ret,
        },
        columns=list(TRADE_COLUMNS),
    )


def _grid(n: int, step_ms: int, start: int = T0) -> np.ndarray:
    return start + step_ms * np.arange(n, dtype=np.int64)


def _no_trades(timestamps: np.ndarray) -> pd.DataFrame:
    return make_trades([], [], timestamps)


# --- backtesting.py end to end on real data ----------------------------------------------


def _strategy(name: str) -> type:
    """backtesting.py strategies: ``"cross"`` is long when SMA10 crosses above SMA30 and flat
    when it crosses below (conventions.md); ``"reversal"`` is always in the market after the
    first cross: long above, short below (exclusive orders)."""
    crossover = _oracle("backtesting.lib").crossover

    class SmaCross(_oracle().Strategy):  # type: ignore[misc]
        def init(self) -> None:
            # SMAs of the RAW close, passed in as data columns FractionalBacktest does not scale.
            self.fast = self.I(lambda: self.data.Fast, name="fast")
            self.slow = self.I(lambda: self.data.Slow, name="slow")

        def next(self) -> None:
            if not self.position and crossover(self.fast, self.slow):
                self.buy()
            elif self.position and crossover(self.slow, self.fast):
                self.position.close()

    class SmaReversal(SmaCross):
        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    return {"cross": SmaCross, "reversal": SmaReversal}[name]


def _real_frame(timeframe: str, symbol: str, bars: int) -> pd.DataFrame:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    import pyarrow.parquet as pq

    path = Path(data) / "ohlcv" / "binance-spot" / timeframe / f"{symbol}_USDT-{timeframe}.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared data")
    file = pq.ParquetFile(path)
    groups, rows = [], 0
    for group in range(file.num_row_groups - 1, -1, -1):  # read only the tail's row groups
        groups.insert(0, group)
        rows += file.metadata.row_group(group).num_rows
        if rows >= bars:
            break
    frame = file.read_row_groups(groups).to_pandas()
    return frame.tail(bars).reset_index(drop=True)


@pytest.mark.parametrize(
    ("timeframe", "symbol", "bars", "strategy"),
    [
        ("1m", "ETH", 20_000, "cross"),
        ("1m", "BTC", 20_000, "reversal"),
        ("1h", "BTC", 8_000, "cross"),
        ("1d", "ETH", 1_500, "reversal"),
    ],
)
def test_matches_backtesting_py_on_real_data(
    timeframe: str, symbol: str, bars: int, strategy: str
) -> None:
    backtest = _oracle("backtesting.lib").FractionalBacktest
    frame = _real_frame(timeframe, symbol, bars)
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    close = frame["close"].to_numpy(dtype=float)
    data = pd.DataFrame(
        {
            "Open": frame["open"].to_numpy(dtype=float),
            "High": frame["high"].to_numpy(dtype=float),
            "Low": frame["low"].to_numpy(dtype=float),
            "Close": close,
            "Volume": frame["volume"].to_numpy(dtype=float),
            "Fast": talib.SMA(close, 10),
            "Slow": talib.SMA(close, 30),
        },
        index=pd.to_datetime(ts, unit="ms"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "trades remain open", progress bars
        stats = backtest(
            data,
            _strategy(strategy),
            cash=100_000,
            commission=0.001,
            exclusive_orders=strategy == "reversal",
            finalize_trades=False,
        ).run()
    bt_trades = stats["_trades"]
    trades = _from_bt_trades(bt_trades)
    assert len(trades) >= 10, "the reference run should trade; pick a longer slice"
    if strategy == "reversal":
        assert (trades["side"] == "short").any()
    warmup = int(np.isnan(data["Slow"].to_numpy()).argmin())  # backtesting.py's warm-up bars
    ours = compute_metrics(
        ts,
        stats["_equity_curve"]["Equity"].to_numpy(),
        trades,
        initial_cash=100_000,
        fees_paid=float(bt_trades["Commission"].sum()),
        closes=close,
        first_trading_bar=warmup,
    )
    _assert_matches(ours, stats, ratio_rel=1e-6)
    assert math.isclose(ours["fees_paid"], stats["Commissions [$]"], rel_tol=1e-12)


# --- backtesting.py's compute_stats on synthetic inputs -----------------------------------


def _random_case(
    seed: int, n: int, step_ms: int, n_trades: int, *, start: int = T0, weekdays_only: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = _grid(n, step_ms, start)
    if weekdays_only:
        ts = ts[((ts // MS_DAY + 3) % 7) < 5][:n]
    n = len(ts)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0.0002, 0.004, n)))
    equity[0] = 10_000.0
    cuts = np.sort(rng.choice(np.arange(1, n - 1), size=2 * n_trades, replace=False))
    bars = [(int(cuts[2 * i]), int(cuts[2 * i + 1])) for i in range(n_trades)]
    sides = list(rng.choice(["long", "short"], size=n_trades))
    returns = list(rng.normal(0.1, 2.0, n_trades))
    return ts, equity, closes, make_trades(bars, returns, ts, side=sides)


@pytest.mark.parametrize(
    ("seed", "n", "step_ms", "n_trades", "weekdays_only"),
    [
        (1, 5_000, MS_MIN, 40, False),  # minutes: daily resample, 365
        (2, 3_000, MS_HOUR, 25, False),  # hours, with shorts
        (3, 800, MS_DAY, 30, False),  # daily bars
        (4, 2_000, MS_HOUR, 12, True),  # no weekend bars: 252 periods a year
        (5, 300, 7 * MS_DAY, 20, False),  # weekly bars: W resample, 52
        (6, 1_500, 90_000, 8, False),  # 90 s bars: durations rounded up to seconds
        (7, 400, MS_HOUR, 0, False),  # no trades
    ],
)
def test_matches_backtesting_py_compute_stats(
    seed: int, n: int, step_ms: int, n_trades: int, weekdays_only: bool
) -> None:
    ts, equity, closes, trades = _random_case(
        seed, n, step_ms, n_trades, weekdays_only=weekdays_only
    )
    compute_stats = _oracle("backtesting._stats").compute_stats
    ohlc = pd.DataFrame({"Close": closes}, index=pd.to_datetime(ts, unit="ms"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = compute_stats(_to_bt_trades(trades), equity, ohlc, None)
    ours = compute_metrics(ts, equity, trades, initial_cash=10_000, fees_paid=1.0, closes=closes)
    _assert_matches(ours, stats, ratio_rel=1e-9)


def test_risk_free_rate_enters_sharpe_and_sortino_like_backtesting_py() -> None:
    compute_stats = _oracle("backtesting._stats").compute_stats
    ts, equity, closes, trades = _random_case(11, 2_000, MS_HOUR, 10)
    ohlc = pd.DataFrame({"Close": closes}, index=pd.to_datetime(ts, unit="ms"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = compute_stats(_to_bt_trades(trades), equity, ohlc, None, risk_free_rate=0.04)
    ours = compute_metrics(
        ts, equity, trades, initial_cash=10_000, fees_paid=0.0, closes=closes, risk_free_rate=0.04
    )
    assert math.isclose(ours["sharpe"], stats["Sharpe Ratio"], rel_tol=1e-9)
    assert math.isclose(ours["sortino"], stats["Sortino Ratio"], rel_tol=1e-9)
    plain = compute_metrics(ts, equity, trades, initial_cash=10_000, fees_paid=0.0)
    assert ours["sharpe"] < plain["sharpe"]


# --- edge cases --------------------------------------------------------------------------


def test_no_trades() -> None:
    ts = _grid(3 * 1440, MS_MIN)
    equity = np.linspace(1_000, 1_100, len(ts))
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=1_000, fees_paid=0.0)
    assert m["n_trades"] == 0
    assert m["exposure_time_pct"] == 0.0
    for key in (
        "win_rate_pct",
        "profit_factor",
        "best_trade_pct",
        "worst_trade_pct",
        "avg_trade_pct",
        "expectancy_pct",
        "sqn",
        "max_trade_duration_days",
        "avg_trade_duration_days",
        "buy_and_hold_return_pct",
    ):
        assert math.isnan(m[key]), key
    assert math.isclose(m["total_return_pct"], 10.0)


def test_flat_equity_has_zero_volatility_and_no_ratios() -> None:
    ts = _grid(10 * 24, MS_HOUR)
    equity = np.full(len(ts), 5_000.0)
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=5_000, fees_paid=0.0)
    assert m["volatility_ann_pct"] == 0.0
    assert m["return_ann_pct"] == 0.0
    for key in ("sharpe", "sortino", "calmar"):
        assert math.isnan(m[key]), key  # NaN, never ±inf
    assert m["max_drawdown_pct"] == 0.0
    assert math.isnan(m["avg_drawdown_pct"])
    assert math.isnan(m["max_drawdown_duration_days"])
    assert m["total_return_pct"] == 0.0
    assert m["cagr_pct"] == 0.0


def test_one_day_of_data_has_no_annualised_figures() -> None:
    ts = _grid(1440, MS_MIN)  # one calendar day: no daily return
    equity = 1_000 + np.sin(np.arange(len(ts)) / 50.0)
    trades = make_trades([(10, 100), (200, 300)], [1.0, -0.5], ts)
    m = compute_metrics(ts, equity, trades, initial_cash=1_000, fees_paid=0.4)
    for key in ("return_ann_pct", "volatility_ann_pct", "sharpe", "sortino", "calmar"):
        assert math.isnan(m[key]), key
    assert math.isfinite(m["cagr_pct"])  # CAGR uses clock time, not daily returns
    assert m["duration_days"] == (1440 - 1) / 1440
    assert m["n_trades"] == 2
    assert m["win_rate_pct"] == 50.0


def test_single_bar() -> None:
    ts = np.array([T0], dtype=np.int64)
    m = compute_metrics(
        ts, np.array([100.0]), _no_trades(ts), initial_cash=100, fees_paid=0.0, closes=[5.0]
    )
    assert m["duration_days"] == 0.0
    assert math.isnan(m["cagr_pct"])
    assert m["buy_and_hold_return_pct"] == 0.0
    assert m["max_drawdown_pct"] == 0.0


def test_all_losing_trades_have_profit_factor_zero() -> None:
    ts = _grid(500, MS_HOUR)
    equity = np.linspace(1_000, 900, len(ts))
    trades = make_trades([(1, 5), (10, 20), (30, 31)], [-1.0, -2.0, -0.5], ts)
    m = compute_metrics(ts, equity, trades, initial_cash=1_000, fees_paid=0.6)
    assert m["profit_factor"] == 0.0
    assert m["win_rate_pct"] == 0.0
    assert m["best_trade_pct"] == -0.5
    assert m["worst_trade_pct"] == -2.0
    assert math.isclose(m["expectancy_pct"], -3.5 / 3)
    expected_avg = ((0.99 * 0.98 * 0.995) ** (1 / 3) - 1) * 100
    assert math.isclose(m["avg_trade_pct"], expected_avg, rel_tol=1e-12)


def test_all_winning_trades_have_no_profit_factor_like_backtesting_py() -> None:
    ts = _grid(100, MS_HOUR)
    trades = make_trades([(1, 5), (10, 20)], [1.0, 3.0], ts)
    m = compute_metrics(ts, np.full(100, 1_000.0), trades, initial_cash=1_000, fees_paid=0.0)
    assert math.isnan(m["profit_factor"])  # backtesting.py divides by `losses or nan`


def test_profit_factor_and_sqn_by_hand() -> None:
    ts = _grid(100, MS_HOUR)
    trades = make_trades([(1, 5), (10, 20), (30, 40)], [4.0, -1.0, -1.0], ts)
    m = compute_metrics(ts, np.full(100, 1_000.0), trades, initial_cash=1_000, fees_paid=0.0)
    assert math.isclose(m["profit_factor"], 2.0)
    pnl = np.array([4.0, -1.0, -1.0])  # price 100, size 1
    assert math.isclose(m["sqn"], math.sqrt(3) * pnl.mean() / pnl.std(ddof=1))


def test_short_trades_count_like_long_ones() -> None:
    ts = _grid(200, MS_HOUR)
    equity = np.full(200, 1_000.0)
    long_ = make_trades([(1, 10), (20, 30)], [2.0, -1.0], ts, side="long")
    short = make_trades([(1, 10), (20, 30)], [2.0, -1.0], ts, side="short")
    assert not np.allclose(long_["exit_price"], short["exit_price"])
    m_long = compute_metrics(ts, equity, long_, initial_cash=1_000, fees_paid=0.0)
    m_short = compute_metrics(ts, equity, short, initial_cash=1_000, fees_paid=0.0)
    assert _same_figures(m_short, m_long)
    assert m_short["win_rate_pct"] == 50.0
    assert math.isclose(m_short["profit_factor"], 2.0)


def test_drawdown_episodes_by_hand() -> None:
    ts = _grid(6, MS_HOUR)
    equity = np.array([100.0, 110.0, 99.0, 105.0, 121.0, 110.0])
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=100, fees_paid=0.0)
    assert math.isclose(m["max_drawdown_pct"], -10.0)
    # One episode, bars 1..4 (3 hours, 10 % deep); the dip on the last bar alone is none.
    assert math.isclose(m["avg_drawdown_pct"], -10.0)
    assert m["max_drawdown_duration_days"] == 3 / 24
    assert m["avg_drawdown_duration_days"] == 3 / 24
    assert math.isclose(m["peak_equity"], 121.0)


def test_unrecovered_drawdown_runs_to_the_last_bar() -> None:
    ts = _grid(5, MS_HOUR)
    equity = np.array([100.0, 120.0, 90.0, 100.0, 60.0])
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=100, fees_paid=0.0)
    assert math.isclose(m["max_drawdown_pct"], -50.0)
    assert math.isclose(m["avg_drawdown_pct"], -50.0)
    assert m["max_drawdown_duration_days"] == 3 / 24


def test_drawdown_on_the_last_bar_only_has_no_duration() -> None:
    ts = _grid(4, MS_HOUR)
    equity = np.array([100.0, 101.0, 102.0, 96.9])
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=100, fees_paid=0.0)
    assert math.isclose(m["max_drawdown_pct"], -5.0)
    assert math.isclose(m["avg_drawdown_pct"], -5.0)  # what backtesting.py reports too
    assert math.isnan(m["max_drawdown_duration_days"])  # backtesting.py prints 0.05 here


def test_average_durations_round_up_to_the_bar_resolution() -> None:
    ts = _grid(100, MS_MIN)
    trades = make_trades([(0, 1), (2, 4)], [1.0, 1.0], ts)  # 1 and 2 minutes: mean 1.5
    m = compute_metrics(ts, np.full(100, 1.0), trades, initial_cash=1, fees_paid=0.0)
    assert m["avg_trade_duration_days"] == 2 / 1440
    assert m["max_trade_duration_days"] == 2 / 1440


def test_exposure_counts_bars_with_any_open_trade_once() -> None:
    ts = _grid(100, MS_HOUR)
    trades = make_trades([(10, 19), (15, 24), (50, 50)], [1.0, 1.0, 1.0], ts)
    m = compute_metrics(ts, np.full(100, 1.0), trades, initial_cash=1, fees_paid=0.0)
    assert m["exposure_time_pct"] == 16.0  # bars 10..24 and bar 50


def test_total_return_is_measured_from_the_initial_cash() -> None:
    ts = _grid(48, MS_HOUR)
    equity = np.full(48, 1_050.0)  # a fill before bar 0's close already moved the equity
    m = compute_metrics(ts, equity, _no_trades(ts), initial_cash=1_000, fees_paid=0.0)
    assert math.isclose(m["total_return_pct"], 5.0)


def test_buy_and_hold_starts_at_first_trading_bar() -> None:
    ts = _grid(5, MS_HOUR)
    closes = np.array([50.0, 80.0, 100.0, 90.0, 110.0])
    kwargs = {"initial_cash": 1.0, "fees_paid": 0.0, "closes": closes}
    m0 = compute_metrics(ts, np.ones(5), _no_trades(ts), **kwargs)
    m2 = compute_metrics(ts, np.ones(5), _no_trades(ts), first_trading_bar=2, **kwargs)
    assert math.isclose(m0["buy_and_hold_return_pct"], 120.0)
    assert math.isclose(m2["buy_and_hold_return_pct"], 10.0)


def test_periods_per_year_overrides_the_annualisation() -> None:
    ts, equity, _, trades = _random_case(21, 24 * 60, MS_HOUR, 5)
    detected = compute_metrics(ts, equity, trades, initial_cash=10_000, fees_paid=0.0)
    forced = compute_metrics(
        ts, equity, trades, initial_cash=10_000, fees_paid=0.0, periods_per_year=365
    )
    stock = compute_metrics(
        ts, equity, trades, initial_cash=10_000, fees_paid=0.0, periods_per_year=252
    )
    assert _same_figures(forced, detected)  # 24/7 data is detected as crypto: 365
    assert stock["return_ann_pct"] != detected["return_ann_pct"]
    assert stock["cagr_pct"] == detected["cagr_pct"]  # clock time, not periods


def test_geometric_mean_matches_backtesting_py() -> None:
    reference = _oracle("backtesting._stats").geometric_mean

    rng = np.random.default_rng(3)
    for values in (rng.normal(0, 0.02, 50), np.array([0.1, -1.0, 0.2]), np.array([])):
        series = pd.Series(values)
        ours, theirs = geometric_mean(series), reference(series)
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == theirs


def test_keys_and_types() -> None:
    ts, equity, closes, trades = _random_case(5, 500, MS_HOUR, 6)
    m = compute_metrics(ts, equity, trades, initial_cash=10_000, fees_paid=3.0, closes=closes)
    assert list(m) == list(METRIC_LABELS)
    assert all(type(v) in (int, float) for v in m.values())
    assert type(m["n_trades"]) is int and type(m["start"]) is int
    assert m["fees_paid"] == 3.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"equity": np.ones(3)}, "one value per bar"),
        ({"timestamps": np.array([3, 2, 1, 4, 5], dtype=np.int64)}, "strictly increasing"),
        ({"timestamps": np.arange(5, dtype=float)}, "int64"),
        ({"equity": np.array([1.0, np.nan, 1, 1, 1])}, "NaN"),
        ({"initial_cash": 0.0}, "initial_cash"),
        ({"fees_paid": -1.0}, "fees_paid"),
        ({"risk_free_rate": 1.5}, "risk_free_rate"),
        ({"periods_per_year": 0}, "periods_per_year"),
        ({"closes": np.ones(4)}, "closes"),
        ({"closes": np.array([0.0, 1, 1, 1, 1])}, "closes"),
        ({"first_trading_bar": 5}, "first_trading_bar"),
        ({"trades_bars": (3, 9)}, "exit_bar"),
        ({"trades_bars": (3, 2)}, "exit_bar"),
        ({"drop": "pnl"}, "lacks columns"),
    ],
)
def test_rejects_bad_input_with_a_message(change: dict, message: str) -> None:
    ts = _grid(5, MS_HOUR)
    args = {"timestamps": ts, "equity": np.ones(5)}
    kwargs: dict = {"initial_cash": 1.0, "fees_paid": 0.0}
    trades = make_trades([(1, 2)], [1.0], ts)
    for key, value in change.items():
        if key in args:
            args[key] = value
        elif key == "trades_bars":
            trades = trades.assign(entry_bar=value[0], exit_bar=value[1])
        elif key == "drop":
            trades = trades.drop(columns=[value])
        else:
            kwargs[key] = value
    with pytest.raises((ValueError, TypeError), match=message):
        compute_metrics(args["timestamps"], args["equity"], trades, **kwargs)


def test_format_metrics_rows() -> None:
    ts, equity, closes, trades = _random_case(8, 3_000, MS_MIN, 4)
    m = compute_metrics(ts, equity, trades, initial_cash=10_000, fees_paid=12.5, closes=closes)
    m["profit_factor"] = math.nan
    m["sortino"] = math.inf
    rows = dict(format_metrics({**m, "custom": 1.5}))
    assert rows["Start (UTC)"] == "2024-01-01 00:00:00 UTC"
    assert rows["Duration"] == "2 d 01:59:00"
    assert rows["Profit factor"] == "n/a"
    assert rows["Sortino ratio"] == "∞"
    assert rows["Fees paid [quote]"] == "12.50"
    assert rows["# Trades (closed)"] == "4"
    assert rows["custom"] == "1.50"
    assert list(rows)[: len(METRIC_LABELS)] == list(METRIC_LABELS.values())
