"""The vectorized fast path against backtesting.py (the oracle), a per-bar reference loop and
hand-worked examples."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.backtest.result import FILL_COLUMNS, TRADE_COLUMNS, BacktestResult
from pivotal.backtest.signals import Signals, buy_and_hold, sma_cross
from pivotal.backtest.vectorized import run_signals
from pivotal.core import Candles
from pivotal.core.errors import DataError
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
#: backtesting.py's ``buy()`` spends ``1 - 2.2e-16`` of equity (its ``_FULL_EQUITY`` is
#: ``1 - sys.float_info.epsilon``; the literal 1 - 2.2e-16 rounds to the same float). Passing
#: the same fraction keeps the lot count ``floor(...)`` identical at every entry.
ALL_IN = 1 - sys.float_info.epsilon
BTC_BARS = 150_000


def make_candles(open_: list[float] | np.ndarray, close: list[float] | np.ndarray) -> Candles:
    o, c = np.asarray(open_, dtype=float), np.asarray(close, dtype=float)
    ts = 1_700_000_000_000 + 60_000 * np.arange(len(o), dtype=np.int64)
    return Candles(ts, o, np.maximum(o, c), np.minimum(o, c), c, np.ones(len(o)))


def flags(n: int, *bars: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(bars)] = True
    return out


def walk(n: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    open_ = np.round(np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.002, n)), 2)
    return make_candles(open_, close)


# -- an independent per-bar reference of the documented semantics ----------------------------
def reference(
    candles: Candles,
    entries: np.ndarray,
    exits: np.ndarray,
    *,
    cash: float,
    fee: float,
    lot: float,
    fraction: float,
    fill_timing: str,
) -> tuple[np.ndarray, list[tuple[int, int | None, float, float, float | None, float]]]:
    """Equity per bar and (entry_bar, exit_bar, size, entry, exit, pnl) per trade, one bar at
    a time, with the arithmetic the module docstring documents (backtesting.py's: whole lots,
    prices per lot, the same operation order), so results must agree to the last bit."""
    n = len(candles)
    equity = np.empty(n)
    trades: list[tuple[int, int | None, float, float, float | None, float]] = []
    lots, e, entry, entry_bar, paid, pending = 0.0, 0.0, 0.0, -1, 0.0, None

    def fill(action: str, price: float, bar: int) -> None:
        nonlocal cash, lots, e, entry, entry_bar, paid
        if action == "buy":
            per_lot = price * lot
            denom = per_lot + fraction * per_lot * fee / fraction
            units = (fraction * cash) // denom
            if units >= 1 and not units * denom > cash:
                lots, e, entry, entry_bar = units, per_lot, price, bar
                paid = lots * e * fee
                cash -= paid
        else:
            x = price * lot
            charged = lots * x * fee
            cash += lots * (x - e) - charged
            pnl = lots * (x - e) - (charged + paid)
            trades.append((entry_bar, bar, lots * lot, entry, price, pnl))
            lots = 0.0

    for i in range(n):
        if pending is not None:
            fill(pending, candles.open[i], i)
            pending = None
        action = "buy" if lots == 0 and entries[i] else "sell" if lots > 0 and exits[i] else None
        if action is not None:
            if fill_timing == "current_close":
                fill(action, candles.close[i], i)
            else:
                pending = action
        equity[i] = cash + (lots * (candles.close[i] * lot) - lots * e)
    if lots > 0:
        pnl = lots * (candles.close[-1] * lot - e) - paid
        trades.append((entry_bar, None, lots * lot, entry, None, pnl))
    return equity, trades


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    density=st.floats(0.02, 0.5),
    fee=st.sampled_from([0.0, 0.001, 0.0075]),
    lot=st.sampled_from([1e-8, 1e-3, 1.0]),
    fraction=st.sampled_from([1.0, ALL_IN, 0.5, 0.013]),
    cash=st.sampled_from([10_000.0, 150.0, 60.0]),
    fill_timing=st.sampled_from(["next_open", "current_close"]),
)
def test_matches_a_per_bar_reference_loop(
    seed: int,
    n: int,
    density: float,
    fee: float,
    lot: float,
    fraction: float,
    cash: float,
    fill_timing: str,
) -> None:
    rng = np.random.default_rng(seed)
    candles = walk(n, seed)
    entries, exits = rng.random(n) < density, rng.random(n) < density
    kwargs = {"cash": cash, "fee": fee, "lot": lot, "fraction": fraction}
    want_equity, want = reference(candles, entries, exits, fill_timing=fill_timing, **kwargs)
    result = run_signals(
        candles,
        (entries, exits),
        cash=cash,
        fee=fee,
        lot_size=lot,
        fraction=fraction,
        fill_timing=fill_timing,  # type: ignore[arg-type]
        bar_ms=60_000,
    )
    np.testing.assert_array_equal(result.equity, want_equity)
    closed = [t for t in want if t[1] is not None]
    still_open = [t for t in want if t[1] is None]
    got = result.trades
    assert got["entry_bar"].tolist() == [t[0] for t in closed]
    assert got["exit_bar"].tolist() == [t[1] for t in closed]
    np.testing.assert_array_equal(got["size"], [t[2] for t in closed])
    np.testing.assert_array_equal(got["entry_price"], [t[3] for t in closed])
    np.testing.assert_array_equal(got["exit_price"], [t[4] for t in closed])
    np.testing.assert_array_equal(got["pnl"], [t[5] for t in closed])
    assert result.open_trades["entry_bar"].tolist() == [t[0] for t in still_open]
    np.testing.assert_array_equal(result.open_trades["pnl"], [t[5] for t in still_open])
    # accounting identities: every dollar is a closed pnl, an open pnl or the initial cash
    total = cash + got["pnl"].sum() + result.open_trades["pnl"].sum()
    assert result.final_equity == pytest.approx(total, rel=1e-9, abs=1e-9)
    assert result.fees_paid == pytest.approx(
        got["fees"].sum() + result.open_trades["fees"].sum(), rel=1e-12, abs=1e-12
    )
    assert len(result.fills) == 2 * len(got) + len(result.open_trades)


# -- hand-worked examples ---------------------------------------------------------------------
def test_next_open_fills_by_hand() -> None:
    candles = make_candles([10, 11, 12, 13, 14, 15], [10.5, 11.5, 12.5, 13.5, 14.5, 15.5])
    result = run_signals(candles, (flags(6, 1), flags(6, 3)), cash=1000.0, fee=0.01, lot_size=1.0)
    assert isinstance(result, BacktestResult) and result.engine == "vectorized"
    # decided at bar 1's close, filled at open[2] = 12: floor(1000 / (12 * 1.01)) = 82 units
    (trade,) = result.trades.itertuples()
    assert (trade.entry_bar, trade.exit_bar, trade.size) == (2, 4, 82.0)
    assert (trade.entry_price, trade.exit_price) == (12.0, 14.0)
    assert trade.entry_time == candles.timestamp[2] and trade.exit_time == candles.timestamp[4]
    assert trade.fees == pytest.approx(82 * (12 + 14) * 0.01)
    assert trade.pnl == pytest.approx(82 * 2 - 82 * 26 * 0.01)
    assert trade.return_pct == pytest.approx(trade.pnl / (12 * 82) * 100)
    cash_open = 1000 - 82 * 12 * 0.01
    cash_end = cash_open + 82 * 2 - 82 * 14 * 0.01
    expected = [1000, 1000, cash_open + 82 * 0.5, cash_open + 82 * 1.5, cash_end, cash_end]
    np.testing.assert_allclose(result.equity, expected, rtol=1e-14)
    assert result.open_trades.empty
    assert result.trades.columns.tolist() == [*TRADE_COLUMNS, "exit_reason"]


def test_current_close_fills_by_hand() -> None:
    candles = make_candles([10, 11, 12, 13, 14, 15], [10.5, 11.5, 12.5, 13.5, 14.5, 15.5])
    result = run_signals(
        candles,
        (flags(6, 1), flags(6, 3)),
        cash=1000.0,
        fee=0.01,
        lot_size=1.0,
        fill_timing="current_close",
    )
    (trade,) = result.trades.itertuples()
    units = np.floor(1000 / (11.5 * 1.01))
    assert (trade.entry_bar, trade.exit_bar, trade.size) == (1, 3, units)
    assert (trade.entry_price, trade.exit_price) == (11.5, 13.5)
    # stamped at the close of the bar: its open time plus the bar duration (inferred: 1m)
    assert trade.entry_time == candles.timestamp[1] + 60_000
    assert trade.exit_time == candles.timestamp[3] + 60_000
    assert result.fills["timestamp"].tolist() == [trade.entry_time, trade.exit_time]
    cash_open = 1000 - units * 11.5 * 0.01
    cash_end = cash_open + units * 2 - units * 13.5 * 0.01
    expected = [1000, cash_open, cash_open + units, cash_end, cash_end, cash_end]
    np.testing.assert_allclose(result.equity, expected, rtol=1e-14)


def test_current_close_equals_next_open_when_each_open_is_the_previous_close() -> None:
    base = walk(2_000, seed=7)
    sig = sma_cross(base.close, 5, 20)
    shifted = make_candles(np.r_[base.close[0], base.close[:-1]], base.close)
    at_close = run_signals(base, sig, fill_timing="current_close")
    at_open = run_signals(shifted, sig, fill_timing="next_open")
    a, b = at_close.trades, at_open.trades
    assert len(a) > 10
    n_cmp = min(len(a), len(b))
    assert (a["entry_bar"].to_numpy()[:n_cmp] + 1 == b["entry_bar"].to_numpy()[:n_cmp]).all()
    for column in ("entry_price", "exit_price", "size", "pnl", "fees"):
        np.testing.assert_array_equal(a[column].to_numpy()[:n_cmp], b[column].to_numpy()[:n_cmp])


def test_a_decision_on_the_last_bar() -> None:
    candles = make_candles([10, 11, 12], [10.5, 11.5, 12.5])
    never = run_signals(candles, (flags(3, 2), flags(3)), cash=100.0, fee=0.0, lot_size=1.0)
    assert never.trades.empty and never.open_trades.empty and never.fills.empty
    np.testing.assert_array_equal(never.equity, [100.0, 100.0, 100.0])
    now = run_signals(
        candles,
        (flags(3, 2), flags(3)),
        cash=100.0,
        fee=0.001,
        lot_size=1.0,
        fill_timing="current_close",
    )
    (row,) = now.open_trades.itertuples()
    assert (row.entry_bar, row.size, row.entry_price) == (2, 7.0, 12.5)
    assert (row.exit_bar, row.exit_time) == (-1, -1) and np.isnan(row.exit_price)
    assert now.final_equity == pytest.approx(100 - 7 * 12.5 * 0.001)
    assert row.pnl == pytest.approx(-7 * 12.5 * 0.001) and row.fees == row.pnl * -1
    # an exit decided on the last bar never fills either: the trade stays open
    held = run_signals(candles, (flags(3, 0), flags(3, 2)), cash=100.0, fee=0.0, lot_size=1.0)
    assert held.trades.empty and held.open_trades["entry_bar"].tolist() == [1]
    (mark,) = held.open_trades.itertuples()
    assert mark.pnl == pytest.approx(9 * (12.5 - 11)) and mark.fees == 0.0
    assert held.final_equity == pytest.approx(100 + 9 * (12.5 - 11))


def test_zero_lots_cancels_the_entry_and_a_later_signal_retries() -> None:
    candles = make_candles([200, 200, 200, 100, 100, 100], [200, 200, 200, 100, 100, 100])
    entries = flags(6, 0, 3)
    result = run_signals(candles, (entries, flags(6)), cash=150.0, fee=0.0, lot_size=1.0)
    # 150 cash cannot buy one unit at 200 (bar 1); at 100 (bar 4) it buys one
    assert result.trades.empty
    assert result.open_trades["entry_bar"].tolist() == [4]
    assert result.open_trades["size"].tolist() == [1.0]
    assert result.fills["bar"].tolist() == [4]
    tiny = run_signals(walk(500, 1), buy_and_hold(500, 3), cash=1e-9)
    assert tiny.trades.empty and tiny.open_trades.empty
    assert (tiny.equity == 1e-9).all()


def test_signals_while_long_or_flat_are_ignored() -> None:
    candles = make_candles(np.arange(10, 20.0), np.arange(10, 20.0) + 0.5)
    # bar 0: flat, entry and exit together -> the entry wins (fills at bar 1); bars 1, 2: entries
    # while long are ignored; bar 4: exit (fills at 5); bar 5: flat again, entry (fills at 6);
    # bar 6: long, the entry is ignored and the exit taken (fills at 7); bar 8: exit while flat
    entries = flags(10, 0, 1, 2, 5, 6)
    exits = flags(10, 0, 4, 6, 8)
    result = run_signals(candles, (entries, exits), cash=1000.0, fee=0.0, lot_size=1.0)
    assert result.trades["entry_bar"].tolist() == [1, 6]
    assert result.trades["exit_bar"].tolist() == [5, 7]
    assert result.open_trades.empty
    assert result.fills["side"].tolist() == ["buy", "sell", "buy", "sell"]
    assert result.fills["tag"].tolist() == ["entry", "exit", "entry", "exit"]


def test_result_tables_and_settings() -> None:
    candles = walk(3_000, seed=2)
    sig = sma_cross(candles.close, 5, 20)
    result = run_signals(candles, sig, symbol="ETH/USDT", cash=5_000.0, fee=0.002)
    fills, trades = result.fills, result.trades
    assert fills.columns.tolist() == list(FILL_COLUMNS)
    assert fills["client_order_id"].tolist()[:2] == ["vec-00000001", "vec-00000002"]
    assert fills["client_order_id"].is_unique
    assert (fills["liquidity"] == "taker").all() and (fills["symbol"] == "ETH/USDT").all()
    assert (fills["bar"].diff().dropna() > 0).all()
    assert (fills["timestamp"].to_numpy() == candles.timestamp[fills["bar"].to_numpy()]).all()
    buys = fills[fills["side"] == "buy"]
    assert buys["bar"].tolist()[: len(trades)] == trades["entry_bar"].tolist()
    np.testing.assert_array_equal(buys["quantity"].to_numpy()[: len(trades)], trades["size"])
    assert (trades["side"] == "long").all() and (trades["symbol"] == "ETH/USDT").all()
    assert trades["entry_time"].dtype == np.int64 and trades["size"].dtype == np.float64
    assert result.metrics == {} and result.events == ()
    assert result.settings == {
        "symbol": "ETH/USDT",
        "cash": 5_000.0,
        "fee": 0.002,
        "lot_size": 1e-8,
        "fraction": 1.0,
        "fill_timing": "next_open",
        "bar_ms": None,
        "bars": 3_000,
        "signal_warmup": 20,
        "gaps": "close",
        "max_missing_bars": 5,
    }
    np.testing.assert_array_equal(result.timestamps, candles.timestamp)


def test_close_fills_are_stamped_with_the_bar_duration() -> None:
    candles = make_candles([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])
    signals = (flags(4, 1), flags(4, 2))
    ts = candles.timestamp
    gaps = ts[0] + np.array([0, 60_000, 360_000, 540_000])  # steps of 1, 5 and 3 minutes
    gappy = Candles(gaps, candles.open, candles.high, candles.low, candles.close, candles.volume)
    for bars, bar_ms, step in ((candles, None, 60_000), (candles, 300_000, 300_000)):
        result = run_signals(bars, signals, fill_timing="current_close", bar_ms=bar_ms)
        (trade,) = result.trades.itertuples()
        assert (trade.entry_time, trade.exit_time) == (ts[1] + step, ts[2] + step)
    # a gap in the data does not fool the inference: the smallest step is the bar
    result = run_signals(gappy, signals, fill_timing="current_close")
    assert result.trades["entry_time"].tolist() == [gappy.timestamp[1] + 60_000]
    one = make_candles([10], [10.5])
    with pytest.raises(ValueError, match="pass bar_ms"):
        run_signals(one, (flags(1, 0), flags(1)), fill_timing="current_close")
    fine = run_signals(one, (flags(1, 0), flags(1)), fill_timing="current_close", bar_ms=60_000)
    assert fine.open_trades["entry_time"].tolist() == [one.timestamp[0] + 60_000]
    run_signals(one, (flags(1), flags(1)), fill_timing="current_close")  # nothing to stamp
    with pytest.raises(ValueError, match="bar_ms must be a positive integer"):
        run_signals(candles, signals, bar_ms=0)


def test_empty_candles() -> None:
    empty = make_candles([], [])
    result = run_signals(empty, (np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)))
    assert len(result.equity) == 0 and result.final_equity == 100_000.0
    assert result.trades.empty and result.open_trades.empty and result.fills.empty


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fee": 0.1}, ValueError, r"fee is a rate per side and must be in \[0, 0.1\)"),
        ({"fee": -0.001}, ValueError, "fee is a rate"),
        ({"fee": float("nan")}, ValueError, "fee must be finite"),
        ({"cash": 0.0}, ValueError, "cash must be > 0"),
        ({"cash": "1000"}, TypeError, "cash must be a number"),
        ({"lot_size": 0.0}, ValueError, "lot_size must be > 0"),
        ({"fraction": 0.0}, ValueError, r"fraction of equity per entry must be in \(0, 1\]"),
        ({"fraction": 1.5}, ValueError, "fraction of equity"),
        ({"fill_timing": "next_close"}, ValueError, "fill_timing must be one of"),
        ({"symbol": ""}, ValueError, "symbol must be a non-empty string"),
    ],
)
def test_refuses_bad_settings(kwargs: dict[str, object], error: type, match: str) -> None:
    candles = walk(10, 0)
    with pytest.raises(error, match=match):
        run_signals(candles, buy_and_hold(10), **kwargs)  # type: ignore[arg-type]


def test_refuses_bad_signals_and_prices() -> None:
    candles = walk(10, 0)
    ok = np.zeros(10, dtype=bool)
    with pytest.raises(ValueError, match="entries has 9 bars but the candles have 10"):
        run_signals(candles, (ok[:9], ok))
    with pytest.raises(TypeError, match="exits must be a one-dimensional numpy bool array"):
        run_signals(candles, (ok, np.zeros(10, dtype=np.int64)))
    with pytest.raises(TypeError, match="Signals object or a pair"):
        run_signals(candles, ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Signals.entries has 10 bars but exits has 9"):
        run_signals(candles, Signals(ok, ok[:9], 0))
    with pytest.raises(TypeError, match=r"candles must be a pivotal.core.Candles"):
        run_signals(pd.DataFrame(), (ok, ok))  # type: ignore[arg-type]
    bad = make_candles(np.r_[candles.open[:5], np.nan, candles.open[6:]], candles.close)
    with pytest.raises(DataError, match=r"open prices must be finite and positive.*bar 5"):
        run_signals(bad, (ok, ok))
    run_signals(bad, (ok, ok), fill_timing="current_close")  # the open is not used then
    bad_close = make_candles(candles.open, np.r_[candles.close[:-1], 0.0])
    with pytest.raises(DataError, match=r"close prices .* bar 9"):
        run_signals(bad_close, (ok, ok), fill_timing="current_close")


# -- against backtesting.py on real data ------------------------------------------------------
def load(symbol: str) -> Candles:
    if DATA is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(DATA / f"ohlcv/binance-spot/1m/{symbol}_USDT-1m.parquet")
    return Candles.from_frame(frame.reset_index(drop=True))


def btc_slice_ending_in_a_position(btc: Candles) -> Candles:
    """About the first 150,000 BTC bars, cut so that a position is open at the end.

    The cut is the exit-fill bar ``L`` of the first trade entered after bar 150,000, so the
    exit is decided on the slice's last bar and never fills: backtesting.py and ours must
    both leave it open. Signals are causal, so the cut changes no earlier trade.
    """
    head = btc[: BTC_BARS + 50_000]
    trades = run_signals(head, sma_cross(head.close), fraction=ALL_IN).trades
    later = trades[trades["entry_bar"] >= BTC_BARS]
    end = int(later["exit_bar"].iloc[0]) if len(later) else BTC_BARS
    return btc[:end]


def assert_same_as_backtesting(candles: Candles, *, expect_open: bool | None = None) -> None:
    from oracles.backtesting_oracle import run_sma_cross

    ours = run_signals(candles, sma_cross(candles.close), fraction=ALL_IN)
    oracle = run_sma_cross(candles, fast=10, slow=30, cash=100_000.0, commission=0.001)
    a, b = ours.trades, oracle.trades
    assert len(a) == len(b) > 100
    for column in ("entry_bar", "exit_bar", "entry_time", "exit_time"):
        np.testing.assert_array_equal(a[column], b[column], err_msg=column)
    # ours reports the raw market prices; FractionalBacktest scales prices by 1e-8 and back,
    # which can move them by one ulp
    np.testing.assert_array_equal(a["entry_price"], candles.open[a["entry_bar"].to_numpy()])
    np.testing.assert_array_equal(a["exit_price"], candles.open[a["exit_bar"].to_numpy()])
    np.testing.assert_allclose(a["entry_price"], b["entry_price"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(a["exit_price"], b["exit_price"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(a["size"], b["size"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(a["pnl"], b["pnl"], rtol=1e-9, atol=0)
    assert ours.final_equity == pytest.approx(oracle.stats["Equity Final [$]"], rel=1e-9)
    # same float operations in the same order: bit-identical, bar by bar
    np.testing.assert_array_equal(a["size"], b["size"])
    np.testing.assert_array_equal(a["pnl"], b["pnl"])
    np.testing.assert_array_equal(ours.equity, oracle.equity)
    # the trade still open at the end
    mine, theirs = ours.open_trades, oracle.open_trade
    assert len(mine) == len(theirs)
    if expect_open is not None:
        assert (len(mine) == 1) is expect_open
    theirs_bar = theirs["entry_bar"].to_numpy(dtype=np.int64)
    np.testing.assert_array_equal(mine["entry_bar"], theirs_bar)
    np.testing.assert_array_equal(mine["size"], theirs["size"].to_numpy(dtype=float))
    np.testing.assert_allclose(
        mine["entry_price"], theirs["entry_price"].to_numpy(dtype=float), rtol=1e-15, atol=0
    )


def test_same_trades_and_equity_as_backtesting_on_real_eth() -> None:
    assert_same_as_backtesting(load("ETH"))


def test_same_trades_and_equity_as_backtesting_on_real_btc_with_a_trade_left_open() -> None:
    candles = btc_slice_ending_in_a_position(load("BTC"))
    assert abs(len(candles) - BTC_BARS) < 50_000
    assert_same_as_backtesting(candles, expect_open=True)
