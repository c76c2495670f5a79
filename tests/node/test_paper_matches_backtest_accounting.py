"""A paper session's equity is the backtest's accounting of the same fills.

After a paper session on the local exchange (127.0.0.1), the journal's fills are booked, in
journal order, into the backtest's :class:`~pivotal.trading.portfolio.Portfolio` (leverage 1)
and at every journaled ``equity`` entry the portfolio's equity must equal the journaled one
to 1e-6 relative. The paper broker keeps a spot account (``equity = quote + Σ qty × mark``),
the portfolio a margin account (``equity = cash + Σ qty × (mark - average)``); with the same
fills they agree because ``qty × average`` is the cost basis still held.

The marks: the journal holds fills, not prices. The paper broker marks a position with the
last price it saw: a fill's price, a trade print, a bar's close. The node's feed delivers the
bar that closes at ``T`` before anything stamped ``T`` or later, and the kernel journals the
equity of step ``T`` right after that bar, so the mark at an equity entry is the close of the
bar closing at ``T``, unless a fill stamped ``T`` or later came in that same step (then the
fill's price, as :meth:`Portfolio.apply_fill` sets it). The local exchange replays the
store's planted candles, so that close is read from the candles the home planted: an
independent source, not the equity being checked.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tests.helpers.node_kit import MINUTE, NodeHome

from pivotal.core.journal import fill_from_dict
from pivotal.core.orders import Fill
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.trading.portfolio import Portfolio

pytestmark = pytest.mark.network


def test_paper_equity_equals_the_backtest_portfolio_of_the_journaled_fills(
    tmp_path: Path,
) -> None:
    home = NodeHome(tmp_path, mode="paper", speed=60)
    try:
        child = home.start(7, every=2, hold=1)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
        closes = dict(
            zip(home.candles.timestamp.tolist(), home.candles.close.tolist(), strict=True)
        )
        reader = SqliteOrderJournal.open_readonly(home.journal)
        try:
            entries = list(reader.entries())
        finally:
            reader.close()
    finally:
        home.close()

    deposits = [e for e in entries if e.kind == "session" and "balances" in e.data]
    portfolio = Portfolio(float(deposits[0].data["balances"]["USDT"]), "USDT", leverage=1.0)
    pending: list[Fill] = []
    compared: list[tuple[int, float, float, float]] = []  # ts, qty held, journal, portfolio
    bar = 0
    for entry in entries:
        if entry.kind == "fill":
            pending.append(fill_from_dict(entry.data["fill"]))
        elif entry.kind == "equity":
            t = entry.ts
            for fill in [f for f in pending if f.timestamp < t]:
                portfolio.apply_fill(fill, bar)
            if portfolio.quantity("BTC/USDT") != 0.0:
                portfolio.mark("BTC/USDT", closes[t - MINUTE])  # the bar closing at t
            for fill in [f for f in pending if f.timestamp >= t]:
                portfolio.apply_fill(fill, bar)  # came after that bar in the same step
            pending = []
            bar += 1
            journaled = float(entry.data["equity"])
            compared.append((t, portfolio.quantity("BTC/USDT"), journaled, portfolio.equity))

    for fill in pending:  # filled after the last step, before the session stopped
        portfolio.apply_fill(fill, bar)
    fills = [e for e in entries if e.kind == "fill"]
    assert len(fills) >= 2, "the session filled too little to compare"
    held = [c for c in compared if c[1] != 0.0]
    assert held, "no equity entry while a position was held: nothing marked was compared"
    for t, qty, journaled, booked in compared:
        assert math.isclose(booked, journaled, rel_tol=1e-6), (t, qty, journaled, booked)
    # every journaled fill was booked, fees as journaled
    assert math.isclose(
        portfolio.fees_paid, sum(float(e.data["fill"]["fee"]) for e in fills), rel_tol=1e-12
    )
    print(
        f"{len(compared)} equity entries compared ({len(held)} while holding), "
        f"{len(fills)} fills; largest relative difference "
        f"{max(abs(b - j) / j for _, _, j, b in compared):.2e}"
    )
