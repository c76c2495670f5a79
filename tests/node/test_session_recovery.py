"""Crash recovery of paper and live sessions against the local exchange over 127.0.0.1.

A session runs in a child process (the real node builder; a scripted source that trades on a
fixed schedule of bar closes) and is SIGKILLed at random moments, then restarted; the last run
stops by itself. Afterwards:

- **live**: the journal's orders, fills and balances equal the exchange's own record
  (``/_pivotal/record``): every order the exchange holds was journaled, no client id was
  placed twice, every exchange fill is in the journal exactly once (also those that happened
  while the session was down), the balances agree;
- **paper**: the journal is whole: every fill is booked once, each order's filled quantity is
  the sum of its fills, no order is left working, the balances equal the deposit plus the
  fills;
- both: the equity curve continues (its times increase across the restarts).

The default run kills 3 times per mode; ``-m slow`` kills 20 times (the issue's figure).
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.node_kit import NodeHome

from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.trading.journal_state import JournalState

BINANCE_STATUS = {
    "NEW": "open",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "EXPIRED": "expired",
}


@pytest.fixture
def live_home(tmp_path: Path) -> Iterator[NodeHome]:
    # the last run cancels its orders at its stop: the venue's record is then final (an
    # order kept working would go on filling after the comparison started)
    home = NodeHome(tmp_path, mode="live", on_stop="cancel")
    yield home
    home.close()


@pytest.fixture
def paper_home(tmp_path: Path) -> Iterator[NodeHome]:
    home = NodeHome(tmp_path, mode="paper")
    yield home
    home.close()


def _crash_and_recover(home: NodeHome, kills: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    outputs = []
    for _ in range(kills):
        child = home.start(300)
        home.wait_for_steps(child, rng.randint(1, 3))
        time.sleep(rng.uniform(0.0, 1.5))  # anywhere in a step: mid-order, mid-fill, idle
        outputs.append(home.kill(child, signal.SIGKILL))
    child = home.start(6)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0, out
    outputs.append(out)
    return outputs


def _journal(home: NodeHome) -> tuple[list, JournalState]:
    reader = SqliteOrderJournal.open_readonly(home.journal)
    try:
        entries = list(reader.entries())
    finally:
        reader.close()
    return entries, JournalState.rebuild(entries)


def _equity_continues(entries: list) -> None:
    times = [e.ts for e in entries if e.kind == "equity"]
    assert len(times) >= 5
    assert all(b > a for a, b in itertools.pairwise(times)), "equity time went back"
    restarts = [e for e in entries if e.kind == "session" and e.data.get("event") == "restart"]
    assert restarts, "the session never restarted"


def _check_live(home: NodeHome, kills: int, seed: int) -> None:
    _crash_and_recover(home, kills, seed)
    entries, state = _journal(home)
    record = home.exchange.record("binance")
    ours = [o for o in record["orders"] if str(o["clientOrderId"]).startswith("pv")]
    assert ours, "the session placed no order"
    placed = Counter(o["clientOrderId"] for o in ours)
    assert max(placed.values()) == 1, f"client ids placed twice: {placed.most_common(3)}"
    for o in ours:
        local = state.order(o["clientOrderId"])
        assert local is not None, f"order {o['clientOrderId']} at the exchange is not journaled"
        assert local.status.value == BINANCE_STATUS[o["status"]], (local, o)
        assert local.filled_quantity == pytest.approx(float(o["executedQty"]), abs=1e-9)
    venue_fills = {str(f["id"]) for f in record["fills"]}
    journal_fills = [str(f.venue_trade_id) for f in state.fills()]
    assert Counter(journal_fills) == Counter(venue_fills), "fills differ from the exchange's"
    raw_fill_ids = Counter(
        str(e.data["fill"]["venue_trade_id"]) for e in entries if e.kind == "fill"
    )
    assert set(raw_fill_ids) == venue_fills
    for asset, balance in record["balances"].items():
        total = float(balance["free"]) + float(balance["locked"])
        assert state.balance(asset) == pytest.approx(total, abs=1e-6), asset
    _equity_continues(entries)


def _check_paper(home: NodeHome, kills: int, seed: int) -> None:
    _crash_and_recover(home, kills, seed)
    entries, state = _journal(home)
    fill_ids = [e.data["fill"]["venue_trade_id"] for e in entries if e.kind == "fill"]
    assert fill_ids, "the session filled nothing"
    assert len(fill_ids) == len(set(fill_ids)), "a paper fill was journaled twice"
    intents = Counter(e.client_order_id for e in entries if e.kind == "intent")
    assert max(intents.values()) == 1, "an order was placed twice"
    filled: dict[str, float] = defaultdict(float)
    for f in state.fills():
        filled[f.client_order_id] += f.quantity
    last_start = max(
        e.seq for e in entries if e.kind == "session" and e.data.get("event") == "restart"
    )
    placed_at = {e.client_order_id: e.seq for e in entries if e.kind == "intent"}
    for order in state.orders():
        cid = order.client_order_id
        assert order.filled_quantity == pytest.approx(filled[cid], abs=1e-9)
        if placed_at[cid] < last_start:  # working at a kill: cancelled by the restart
            assert order.status.is_terminal, f"{cid} still {order.status} after a restart"
    quote = 100_000.0
    base = 0.0
    for f in state.fills():
        sign = 1.0 if f.side.value == "buy" else -1.0
        quote -= sign * f.quantity * f.price + f.fee
        base += sign * f.quantity
    assert state.balance("USDT") == pytest.approx(quote, abs=1e-6)
    assert state.balance("BTC") == pytest.approx(base, abs=1e-9)
    _equity_continues(entries)


def test_a_live_session_killed_three_times_agrees_with_the_exchange(live_home: NodeHome) -> None:
    _check_live(live_home, kills=3, seed=1)


def test_a_paper_session_killed_three_times_keeps_a_whole_journal(paper_home: NodeHome) -> None:
    _check_paper(paper_home, kills=3, seed=2)


@pytest.mark.slow
def test_a_live_session_survives_twenty_sigkills(live_home: NodeHome) -> None:
    _check_live(live_home, kills=20, seed=11)


@pytest.mark.slow
def test_a_paper_session_survives_twenty_sigkills(paper_home: NodeHome) -> None:
    _check_paper(paper_home, kills=20, seed=12)
