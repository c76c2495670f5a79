"""Portfolio accounting: hand-computed round trips, flips, margin and backtesting.py's formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.result import TRADE_COLUMNS as RESULT_TRADE_COLUMNS
from pivotal.backtest.result import empty_trades
from pivotal.core.orders import Fill, Liquidity, OrderSide
from pivotal.trading.portfolio import TRADE_COLUMNS, Portfolio, empty_trade_frame

BTC = "BTC/USDT"
ETH = "ETH/USDT"


def fill(
    side: str, quantity: float, price: float, fee: float = 0.0, *, symbol: str = BTC, ts: int = 0
) -> Fill:
    return Fill(
        order_id="o",
        client_order_id="c",
        symbol=symbol,
        side=OrderSide(side),
        quantity=quantity,
        price=price,
        fee=fee,
        liquidity=Liquidity.TAKER,
        timestamp=ts,
    )


def test_trade_columns_match_the_backtest_result_contract() -> None:
    assert TRADE_COLUMNS == RESULT_TRADE_COLUMNS
    ours, theirs = empty_trade_frame(), empty_trades()
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.equals(theirs.dtypes)
    assert Portfolio(1000.0).closed_trades().dtypes.equals(theirs.dtypes)
    assert Portfolio(1000.0).open_trades().empty


def test_long_round_trip_by_hand() -> None:
    p = Portfolio(10_000.0)
    p.apply_fill(fill("buy", 2.0, 100.0, fee=0.2, ts=1_000), bar=3)
    assert p.cash == pytest.approx(10_000.0 - 0.2)
    assert p.quantity(BTC) == 2.0 and p.average_entry_price(BTC) == 100.0
    p.mark(BTC, 110.0)
    assert p.unrealized_pnl == pytest.approx(20.0)
    assert p.equity == pytest.approx(10_000.0 - 0.2 + 20.0)
    assert p.margin_used == pytest.approx(220.0)
    assert p.available == pytest.approx(p.equity - 220.0)
    open_ = p.open_trades()
    assert len(open_) == 1 and open_["exit_bar"].iloc[0] == -1
    assert math.isnan(open_["exit_price"].iloc[0])
    assert open_["pnl"].iloc[0] == pytest.approx(20.0 - 0.2)

    realized = p.apply_fill(fill("sell", 2.0, 120.0, fee=0.24, ts=5_000), bar=7)
    assert realized == pytest.approx(40.0)
    assert p.quantity(BTC) == 0.0 and p.unrealized_pnl == 0.0
    assert p.cash == pytest.approx(10_000.0 + 40.0 - 0.44)
    assert p.equity == p.cash
    assert p.realized_pnl == pytest.approx(40.0) and p.fees_paid == pytest.approx(0.44)
    trades = p.closed_trades()
    assert list(trades.columns) == [*TRADE_COLUMNS, "exit_reason"]
    row = trades.iloc[0]
    assert (row.symbol, row.side, row.entry_time, row.exit_time) == (BTC, "long", 1_000, 5_000)
    assert (row.entry_bar, row.exit_bar) == (3, 7)
    assert (row.entry_price, row.exit_price, row["size"]) == (100.0, 120.0, 2.0)
    assert row.pnl == pytest.approx(39.56)
    assert row.fees == pytest.approx(0.44)
    assert row.return_pct == pytest.approx(39.56 / 200.0 * 100.0)
    assert p.open_trades().empty


def test_short_round_trip_by_hand() -> None:
    p = Portfolio(1_000.0)
    p.apply_fill(fill("sell", 1.5, 100.0, fee=0.15), bar=0)
    assert p.quantity(BTC) == -1.5
    p.mark(BTC, 104.0)
    assert p.unrealized_pnl == pytest.approx(-6.0)
    assert p.equity == pytest.approx(1_000.0 - 0.15 - 6.0)
    p.apply_fill(fill("buy", 1.5, 90.0, fee=0.135), bar=4)
    row = p.closed_trades().iloc[0]
    assert row.side == "short"
    assert row.pnl == pytest.approx(15.0 - 0.285)
    assert p.cash == pytest.approx(1_000.0 + 15.0 - 0.285)
    assert row.return_pct == pytest.approx((15.0 - 0.285) / 150.0 * 100.0)


def test_average_entry_weighted_on_increase_and_kept_on_reduction() -> None:
    p = Portfolio(100_000.0)
    p.apply_fill(fill("buy", 1.0, 100.0), bar=0)
    p.apply_fill(fill("buy", 3.0, 120.0), bar=1)
    assert p.average_entry_price(BTC) == pytest.approx((100.0 + 360.0) / 4.0)
    realized = p.apply_fill(fill("sell", 1.0, 130.0), bar=2)
    assert realized == pytest.approx(130.0 - 115.0)
    assert p.average_entry_price(BTC) == pytest.approx(115.0)
    assert p.quantity(BTC) == 3.0
    p.apply_fill(fill("sell", 3.0, 110.0), bar=3)
    row = p.closed_trades().iloc[0]
    assert row["size"] == 4.0  # the largest absolute position of the trade
    assert row.entry_price == pytest.approx(115.0)
    assert row.exit_price == pytest.approx((130.0 + 330.0) / 4.0)
    assert row.pnl == pytest.approx(15.0 - 15.0)


def test_flip_closes_the_old_side_and_opens_the_rest_at_the_fill_price() -> None:
    p = Portfolio(10_000.0)
    p.apply_fill(fill("buy", 1.0, 100.0, fee=0.1, ts=10), bar=0)
    realized = p.apply_fill(fill("sell", 3.0, 110.0, fee=0.33, ts=20), bar=1)
    assert realized == pytest.approx(10.0)
    assert p.quantity(BTC) == -2.0 and p.average_entry_price(BTC) == 110.0
    closed = p.closed_trades()
    assert len(closed) == 1
    first = closed.iloc[0]
    assert first.side == "long" and first.fees == pytest.approx(0.1 + 0.11)  # 1/3 of the fee
    assert first.pnl == pytest.approx(10.0 - 0.21)
    opened = p.open_trades().iloc[0]
    assert opened.side == "short" and opened.entry_time == 20 and opened.entry_bar == 1
    assert opened.fees == pytest.approx(0.22)
    assert p.position(BTC).opened_ms == 20
    p.apply_fill(fill("buy", 2.0, 100.0, fee=0.2, ts=30), bar=2)
    second = p.closed_trades().iloc[1]
    assert second.side == "short" and second.pnl == pytest.approx(20.0 - 0.42)
    assert p.cash == pytest.approx(10_000.0 + 30.0 - 0.63)
    assert p.fees_paid == pytest.approx(0.63)


def test_float_dust_closes_a_position() -> None:
    p = Portfolio(1_000.0)
    p.apply_fill(fill("buy", 0.1, 100.0), bar=0)
    p.apply_fill(fill("buy", 0.2, 100.0), bar=1)
    assert p.quantity(BTC) != 0.3  # 0.30000000000000004
    p.apply_fill(fill("sell", 0.3, 100.0), bar=2)
    assert p.quantity(BTC) == 0.0
    assert len(p.closed_trades()) == 1 and p.open_trades().empty


def test_backtesting_py_commission_formulas_on_two_trades() -> None:
    """Entry: cash -= q·p·c. Exit: cash += q·(exit-entry) - q·exit·c. Equity = cash +
    q·(close-entry). pnl = q·(exit-entry) - q·(entry+exit)·c."""
    c = 0.002
    cash = 10_000.0
    p = Portfolio(cash)
    trades = [(37.0, 101.25, 108.5, 107.75), (41.0, 104.5, 99.125, 102.0)]  # q, entry, exit, close
    for n, (q, entry, exit_, close) in enumerate(trades):
        p.apply_fill(fill("buy", q, entry, fee=q * entry * c), bar=2 * n)
        cash -= q * entry * c
        assert p.cash == cash  # the same arithmetic, bit for bit
        p.mark(BTC, close)
        assert p.equity == cash + q * (close - entry)
        p.apply_fill(fill("sell", q, exit_, fee=q * exit_ * c), bar=2 * n + 1)
        cash += q * (exit_ - entry) - q * exit_ * c
        assert p.cash == cash
        assert p.equity == cash
        row = p.closed_trades().iloc[n]
        assert row.pnl == pytest.approx(q * (exit_ - entry) - q * (entry + exit_) * c, rel=1e-12)
    assert p.closed_trades()["pnl"].sum() == pytest.approx(cash - 10_000.0, rel=1e-12)


def test_margin_and_available_with_leverage() -> None:
    p = Portfolio(1_000.0, leverage=4.0)
    p.apply_fill(fill("buy", 20.0, 100.0), bar=0)
    assert p.margin_used == pytest.approx(20.0 * 100.0 / 4.0)
    assert p.available == pytest.approx(500.0)
    p.mark(BTC, 80.0)
    assert p.equity == pytest.approx(600.0)
    assert p.margin_used == pytest.approx(400.0)
    assert p.available == pytest.approx(200.0)
    p.mark(BTC, 50.0)
    assert p.available == 0.0  # never negative


def test_fees_and_realized_per_symbol_in_the_snapshot() -> None:
    p = Portfolio(10_000.0, currency="USDC")
    p.apply_fill(fill("buy", 1.0, 100.0, fee=1.0), bar=0)
    p.apply_fill(fill("sell", 1.0, 110.0, fee=1.1), bar=1)
    p.apply_fill(fill("buy", 2.0, 50.0, fee=0.5, symbol=ETH, ts=9), bar=1)
    p.mark(ETH, 55.0)
    snap = p.snapshot(123)
    assert snap.timestamp == 123 and snap.currency == "USDC"
    assert set(snap.positions) == {BTC, ETH}
    assert snap.positions[BTC].is_flat and snap.positions[BTC].realized_pnl == pytest.approx(10.0)
    assert snap.positions[ETH].unrealized_pnl == pytest.approx(10.0)
    assert snap.positions[ETH].opened_ms == 9
    assert p.fees_by_symbol() == pytest.approx({BTC: 2.1, ETH: 0.5})
    assert snap.fees_paid == pytest.approx(2.6)
    assert snap.equity == pytest.approx(snap.cash + snap.unrealized_pnl)
    assert snap.cash == pytest.approx(10_000.0 + 10.0 - 2.6)
    assert snap.gross_exposure == pytest.approx(110.0)
    assert p.position("XRP/USDT").is_flat


def test_bad_inputs_raise_with_a_reason() -> None:
    with pytest.raises(ValueError, match="above 0"):
        Portfolio(0.0)
    with pytest.raises(ValueError, match="leverage"):
        Portfolio(100.0, leverage=0.5)
    p = Portfolio(100.0)
    with pytest.raises(TypeError, match="Fill"):
        p.apply_fill("buy 1", bar=0)  # type: ignore[arg-type]
    for price in (math.nan, 0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="mark price"):
            p.mark(BTC, price)


def test_trade_frame_is_built_from_rows_with_exact_dtypes() -> None:
    p = Portfolio(1e6)
    for k in range(5):
        p.apply_fill(fill("buy", 1.0, 100.0 + k, ts=k), bar=2 * k)
        p.apply_fill(fill("sell", 1.0, 101.0 + k, ts=k + 1), bar=2 * k + 1)
    frame = p.closed_trades()
    assert len(frame) == 5
    assert frame.dtypes.equals(empty_trades().dtypes)
    assert np.array_equal(frame["exit_bar"].to_numpy(), np.arange(1, 10, 2))
    assert isinstance(frame, pd.DataFrame)
