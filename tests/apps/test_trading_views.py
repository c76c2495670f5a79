"""`pivotal orders | positions | fills` as a user runs them, after a short paper session on
the local exchange (127.0.0.1): the JSON equals the journal's rebuilt state
(:meth:`JournalState.rebuild`, what a restarting node rebuilds), the tables print, and the
mistakes a user makes get a message that says what to give instead, never a traceback."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from tests.helpers.node_kit import NodeHome

from pivotal.core.journal import fill_to_dict, order_to_dict
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.testing.cli import run_cli
from pivotal.trading.journal_state import JournalState


def _rebuild(home: NodeHome) -> JournalState:
    reader = SqliteOrderJournal.open_readonly(home.journal)
    try:
        return JournalState.rebuild(reader.entries())
    finally:
        reader.close()


def _holding(home: NodeHome) -> bool:
    """The session holds BTC with fills behind it and no sell working that could undo it."""
    if not home.journal.exists():
        return False
    state = _rebuild(home)
    sells = [o for o in state.open_orders() if o.side.value == "sell"]
    return bool(state.positions()) and len(state.fills()) >= 2 and not sells


pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeHome, JournalState]]:
    """A paper session stopped (SIGTERM) while it holds a position, and its rebuilt journal."""
    home = NodeHome(tmp_path_factory.mktemp("views"), mode="paper", speed=60)
    try:
        child = home.start(60, every=2, hold=1)
        deadline = time.monotonic() + 60
        while not _holding(home):
            assert child.poll() is None, child.communicate()[0]
            assert time.monotonic() < deadline, "the session never held a position"
            time.sleep(0.2)
        out = home.kill(child, signal.SIGTERM)
        assert child.returncode == 0, out
        state = _rebuild(home)
        assert state.orders() and state.fills() and state.positions(), out
        yield home, state
    finally:
        home.close()


def _cli(home: NodeHome, *args: str) -> Any:
    return run_cli([*args, "-d", "data"], cwd=home.root, env=home.env(), timeout=120)


def _json(home: NodeHome, view: str) -> Any:
    result = _cli(home, view, "run.yaml", "--mode", "paper", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _plain(value: Any) -> Any:
    """``value`` as the JSON the command prints reads back (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def test_orders_json_is_the_rebuilt_journal(session: tuple[NodeHome, JournalState]) -> None:
    home, state = session
    shown = _json(home, "orders")
    assert shown == _plain([order_to_dict(o) for o in state.orders()])
    assert {o["client_order_id"] for o in shown} == {o.client_order_id for o in state.orders()}


def test_fills_json_is_the_rebuilt_journal(session: tuple[NodeHome, JournalState]) -> None:
    home, state = session
    shown = _json(home, "fills")
    assert shown == _plain([fill_to_dict(f) for f in state.fills()])
    assert len({f["venue_trade_id"] for f in shown}) == len(shown), "a fill shown twice"


def test_positions_json_is_the_rebuilt_journal(session: tuple[NodeHome, JournalState]) -> None:
    home, state = session
    shown = _json(home, "positions")
    held = state.positions()
    assert set(shown["positions"]) == set(held)
    for symbol, p in held.items():
        assert shown["positions"][symbol] == _plain(
            {
                "quantity": p.quantity,
                "average_entry_price": p.average_entry_price,
                "mark_price": p.mark_price,
                "unrealized_pnl": p.unrealized_pnl,
                "realized_pnl": p.realized_pnl,
                "fees_paid": p.fees_paid,
            }
        )
    assert shown["summary"] == _plain(asdict(state.summary()))
    assert shown["summary"]["fills"] == len(state.fills())


def test_the_tables_print(session: tuple[NodeHome, JournalState]) -> None:
    home, state = session
    orders = _cli(home, "orders", "run.yaml", "--mode", "paper")
    assert orders.returncode == 0, orders.stderr
    assert f"orders ({len(state.orders())})" in orders.stdout
    for order in state.orders():
        assert order.client_order_id in orders.stdout
    fills = _cli(home, "fills", "run.yaml", "--mode", "paper", "--limit", "2")
    assert fills.returncode == 0, fills.stderr
    assert f"fills ({len(state.fills())}, newest {min(2, len(state.fills()))})" in fills.stdout
    positions = _cli(home, "positions", "run.yaml", "--mode", "paper")
    assert positions.returncode == 0, positions.stderr
    assert "positions" in positions.stdout and "equity" in positions.stdout
    assert f"fills {len(state.fills())}" in positions.stdout
    by_path = _cli(home, "orders", "--journal", str(home.journal), "--open", "--json")
    assert by_path.returncode == 0, by_path.stderr
    assert json.loads(by_path.stdout) == _plain([order_to_dict(o) for o in state.open_orders()])


def _refused(result: Any, code: int, *needles: str) -> str:
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout + result.stderr).split())
    assert result.returncode == code, text
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in text and "internal error" not in text, text
    return text


def test_no_session_named_asks_for_the_run_file_or_the_journal(
    session: tuple[NodeHome, JournalState],
) -> None:
    home, _ = session
    for view in ("orders", "positions", "fills", "kill"):
        _refused(_cli(home, view), 2, "RUN_FILE", "--journal")


def test_a_backtest_run_file_needs_the_mode(session: tuple[NodeHome, JournalState]) -> None:
    home, _ = session
    backtest = home.root / "backtest.yaml"
    backtest.write_text("mode: backtest\nsymbols: [BTC/USDT]\ntimeframe: 1m\n", encoding="utf-8")
    _refused(_cli(home, "orders", "backtest.yaml"), 2, "--mode", "backtest")
    _refused(_cli(home, "fills", "backtest.yaml", "--mode", "replay"), 2, "--mode paper")


def test_a_session_never_started_says_how_to_start_it(
    session: tuple[NodeHome, JournalState],
) -> None:
    home, _ = session
    _refused(
        _cli(home, "positions", "run.yaml", "--mode", "live"),
        2,
        "no live session journal",
        "pivotal run run.yaml --mode live",
    )
    _refused(_cli(home, "orders", "--journal", "nowhere.journal"), 2, "does not exist")
    _refused(_cli(home, "orders", "missing.yaml"), 2, "missing.yaml is not a file")


def test_a_file_that_is_not_a_journal_is_a_clear_data_error(
    session: tuple[NodeHome, JournalState],
) -> None:
    home, _ = session
    text_file = home.root / "notes.journal"
    text_file.write_text("these are my notes, not a journal\n" * 40, encoding="utf-8")
    _refused(
        _cli(home, "fills", "--journal", str(text_file)),
        1,
        "error:",
        "is not a pivotal order journal",
    )
    other = home.root / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE prices (t INTEGER, p REAL)")
    con.commit()
    con.close()
    _refused(
        _cli(home, "orders", "--journal", str(other)),
        1,
        "is not a pivotal order journal",
        "prices",
    )
