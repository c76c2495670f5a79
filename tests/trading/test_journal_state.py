"""The state rebuilt from an order journal: order lifecycle, fill dedupe, the spot accounting
rule, and streaming ``apply`` == batch ``rebuild`` (a property test, through SQLite too)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pivotal.core.errors import DataError
from pivotal.core.journal import (
    JournalEntry,
    NewEntry,
    fill_to_dict,
    order_to_dict,
    request_to_dict,
)
from pivotal.core.orders import (
    Fill,
    Liquidity,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
)
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.trading.journal_state import JournalState, fill_key, split_symbol

T0 = 1_700_000_000_000


def request(cid: str, side: str = "buy", qty: float = 1.0, **kw: Any) -> OrderRequest:
    symbol = kw.pop("symbol", "BTC/USDT")
    return OrderRequest(symbol, OrderSide(side), quantity=qty, client_order_id=cid, **kw)


def snapshot(req: OrderRequest, status: str, filled: float = 0.0, **kw: Any) -> Order:
    assert req.client_order_id is not None
    return Order(
        request=req, client_order_id=req.client_order_id, order_id=req.client_order_id,
        status=OrderStatus(status), created_ms=T0, updated_ms=kw.pop("ts", T0),
        quantity=req.quantity, filled_quantity=filled, **kw,
    )  # fmt: skip


def fill(cid: str, side: str, qty: float, price: float, fee: float = 0.0, **kw: Any) -> Fill:
    return Fill(
        order_id=cid, client_order_id=cid, symbol=kw.pop("symbol", "BTC/USDT"),
        side=OrderSide(side), quantity=qty, price=price, fee=fee, liquidity=Liquidity.TAKER,
        timestamp=kw.pop("timestamp", T0), **kw,
    )  # fmt: skip


def new_entries(
    *items: tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str | None],
) -> list[NewEntry]:
    out = []
    for i, item in enumerate(items):
        kind, data = item[0], item[1]
        cid = item[2] if len(item) > 2 else None  # type: ignore[misc]
        out.append(NewEntry(T0 + i, kind, data, cid, None))
    return out


def numbered(entries: Iterable[NewEntry], start: int = 1) -> list[JournalEntry]:
    return [
        JournalEntry(start + i, e.ts, e.kind, e.data, e.client_order_id, e.symbol)
        for i, e in enumerate(entries)
    ]


def intent(req: OrderRequest) -> tuple[str, dict[str, Any], str | None]:
    return ("intent", {"request": request_to_dict(req)}, req.client_order_id)


def order_e(order: Order) -> tuple[str, dict[str, Any], str]:
    return ("order", {"order": order_to_dict(order)}, order.client_order_id)


def fill_e(f: Fill) -> tuple[str, dict[str, Any], str]:
    return ("fill", {"fill": fill_to_dict(f)}, f.client_order_id)


def test_an_order_goes_from_intent_to_filled() -> None:
    req = request("pv1", qty=2.0, type=OrderType.LIMIT, limit_price=100.0)
    state = JournalState.rebuild(numbered(new_entries(intent(req))))
    (order,) = state.orders()
    assert (order.status, order.created_ms, order.quantity) == (OrderStatus.NEW, T0, 2.0)
    assert state.known("pv1") and not state.known("pv2")
    assert state.intents_without_ack() == [order] and state.open_orders() == [order]

    state.apply(JournalEntry(2, T0 + 5, "submitted", {"attempt": 1}, "pv1"))
    assert state.order("pv1").status is OrderStatus.SUBMITTED  # type: ignore[union-attr]
    state.apply(JournalEntry(3, T0 + 6, "unknown", {"error": "timeout"}, "pv1"))
    assert state.unknown_orders() == ["pv1"] and len(state.intents_without_ack()) == 1
    state.apply(JournalEntry(4, T0 + 7, "intent", {"request": request_to_dict(req)}, "pv1"))
    assert state.order("pv1").status is OrderStatus.SUBMITTED  # type: ignore[union-attr]
    opened = snapshot(req, "open", venue_order_id="77", ts=T0 + 8)
    state.apply(numbered(new_entries(order_e(opened)), 5)[0])
    assert state.unknown_orders() == [] and state.intents_without_ack() == []
    assert state.order_by_venue_id("77") == opened and state.open_orders() == [opened]
    assert state.locked_quote() == 200.0  # a resting buy limit: 2 × 100
    state.apply(JournalEntry(6, T0 + 9, "cancel_request", {}, "pv1"))
    assert state.cancel_requested() == ["pv1"]
    done = snapshot(req, "filled", 2.0, venue_order_id="77")
    state.apply(numbered(new_entries(order_e(done)), 7)[0])
    assert state.cancel_requested() == [] and state.open_orders() == []
    assert state.orders(open_only=False) == [done] and state.locked_quote() == 0.0
    assert state.summary().orders_by_status == {"filled": 1}


def test_fills_are_booked_once() -> None:
    a = fill("pv1", "buy", 1.0, 100.0, 0.1, venue_trade_id="5")
    same_trade_other_symbol = dataclasses.replace(a, symbol="ETH/USDT")
    local = fill("pv2", "buy", 1.0, 100.0, 0.1)
    items = [fill_e(a), fill_e(a), fill_e(same_trade_other_symbol), fill_e(local), fill_e(local)]
    state = JournalState.rebuild(numbered(new_entries(*items)))
    assert state.fills() == [a, same_trade_other_symbol, local]
    assert state.has_fill(dataclasses.replace(a, quantity=9.0))  # same venue trade id
    assert fill_key(local) == ("local", "pv2", T0, 1.0, 100.0)
    assert not state.has_fill(dataclasses.replace(local, timestamp=T0 + 1))
    assert state.balance("BTC") == 2.0 and state.balance("ETH") == 1.0
    assert state.balance("USDT") == pytest.approx(-300.3)
    assert state.summary().fees == pytest.approx(0.3)


def test_the_spot_accounting_rule() -> None:
    buy1 = fill("b1", "buy", 1.0, 100.0, 1.0, venue_trade_id="1", timestamp=T0 + 1)
    buy2 = fill("b2", "buy", 1.0, 200.0, 2.0, venue_trade_id="2", timestamp=T0 + 2)
    sell = fill("s1", "sell", 0.5, 300.0, 1.5, venue_trade_id="3", timestamp=T0 + 3)
    session = ("session", {"event": "start", "balances": {"USDT": 10_000.0}})
    state = JournalState.rebuild(
        numbered(new_entries(session, fill_e(buy1), fill_e(buy2), fill_e(sell)))
    )
    (pos,) = state.positions().values()
    assert (pos.symbol, pos.quantity, pos.average_entry_price) == ("BTC/USDT", 1.5, 150.0)
    assert pos.realized_pnl == 75.0 and pos.fees_paid == 4.5 and pos.opened_ms == T0 + 1
    assert state.balance("USDT") == 10_000.0 - 101.0 - 202.0 + 148.5
    account = state.account({"BTC/USDT": 400.0}, ts=T0 + 10)
    assert account.equity == pytest.approx(9_845.5 + 1.5 * 400.0)
    assert account.unrealized_pnl == pytest.approx(1.5 * (400.0 - 150.0))
    assert account.cash == pytest.approx(account.equity - account.unrealized_pnl)
    assert account.margin_used == 600.0 and account.available == 9_845.5
    assert (account.leverage, account.fees_paid, account.realized_pnl) == (1.0, 4.5, 75.0)
    assert state.account().positions["BTC/USDT"].mark_price == 300.0  # last price seen
    # selling out resets the average; the next buy starts a new one
    out = fill("s2", "sell", 1.5, 100.0, 0.0, venue_trade_id="4", timestamp=T0 + 4)
    state.apply(numbered(new_entries(fill_e(out)), 5)[0])
    assert state.positions() == {} and state.summary().realized_pnl == 75.0 - 75.0
    again = fill("b3", "buy", 1.0, 50.0, 0.0, venue_trade_id="5", timestamp=T0 + 5)
    state.apply(numbered(new_entries(fill_e(again)), 6)[0])
    assert state.positions()["BTC/USDT"].average_entry_price == 50.0
    assert state.positions()["BTC/USDT"].opened_ms == T0 + 5


def test_balances_come_from_the_first_session_or_a_reconcile_adoption() -> None:
    start = ("session", {"event": "start", "balances": {"USDT": [90.0, 10.0], "BTC": 0}})
    restart = ("session", {"event": "restart", "balances": {"USDT": 1.0}})
    adopt = (
        "reconcile",
        {"field": "balance", "asset": "BTC", "venue": {"free": 2.0, "locked": 0.5},
         "action": "adopted", "resolved": True},
    )  # fmt: skip
    report_only = ("reconcile", {"field": "foreign_order", "action": "reported", "resolved": False})
    state = JournalState.rebuild(numbered(new_entries(start, restart, adopt, report_only)))
    assert state.balances == {"USDT": 100.0, "BTC": 2.5} and state.balances_known
    assert (state.reconcile_differences, state.unresolved) == (2, 1)
    # holdings of unknown cost are valued at the mark (no average), or at 0 without one
    (pos,) = state.positions({"BTC/USDT": 20.0}).values()
    assert (pos.average_entry_price, pos.unrealized_pnl) == (20.0, 0.0)
    assert state.account().equity == 100.0
    assert state.account({"BTC/USDT": 20.0}).equity == 150.0
    # a buy on top of them takes its own price as the average
    state.apply(numbered(new_entries(fill_e(fill("b", "buy", 0.5, 30.0))), 5)[0])
    assert state.positions()["BTC/USDT"].average_entry_price == 30.0


def test_equity_curve_marks_summary_and_anomalies() -> None:
    items = [
        ("equity", {"equity": 100.0, "marks": {"BTC/USDT": 5.0}}),
        ("equity", {"equity": 101.5, "positions": {"ETH/USDT": {"mark_price": 7.0}}}),
        ("submitted", {"attempt": 1}, "ghost"),
        ("decision", {"x": 1}),
        ("alert", {"level": "error", "message": "m"}),
        ("kill", {"reason": "drawdown"}),
    ]
    state = JournalState.rebuild(numbered(new_entries(*items)))
    assert state.equity_curve == [(T0, 100.0), (T0 + 1, 101.5)]
    assert state.marks == {"BTC/USDT": 5.0, "ETH/USDT": 7.0}
    assert state.anomalies == [
        "seq 3: a submitted entry for order 'ghost', which the journal has no intent or snapshot of"
    ]
    summary = state.summary()
    assert summary.last_equity == (T0 + 1, 101.5) and summary.entries == 6
    assert summary.kinds == {"equity": 2, "submitted": 1, "decision": 1, "alert": 1, "kill": 1}
    assert (summary.last_seq, summary.last_ts, summary.anomalies) == (6, T0 + 5, 1)
    # an entry already applied (same or lower seq) is skipped
    state.apply(numbered(new_entries(("equity", {"equity": 1.0})), 6)[0])
    assert len(state.equity_curve) == 2 and state.summary().entries == 6


def test_unreadable_entries_name_their_seq() -> None:
    state = JournalState()
    with pytest.raises(DataError, match=r"journal entry 4 \(fill\) cannot be read"):
        state.apply(JournalEntry(4, T0, "fill", {"fill": {"symbol": "BTC/USDT"}}))
    with pytest.raises(DataError, match="not BASE/QUOTE"):
        state.apply(numbered(new_entries(fill_e(fill("a", "buy", 1, 1, symbol="BTCUSDT"))))[0])
    assert state.to_dict() == JournalState().to_dict()  # nothing half-applied
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")


# -- streaming == batch --------------------------------------------------------------------
CIDS = ("pv0", "pv1", "pv2", "pv3")
SYMBOLS = {"pv0": "BTC/USDT", "pv1": "BTC/USDT", "pv2": "ETH/USDT", "pv3": "ETH/USDT"}
STATUSES = [s.value for s in OrderStatus]

_cid = st.sampled_from(CIDS)
_qty = st.sampled_from([0.25, 0.5, 1.0, 1.5])
_price = st.sampled_from([90.0, 100.0, 110.5])
_op = st.one_of(
    st.tuples(st.just("session"), st.none() | st.fixed_dictionaries({"USDT": _price})),
    st.tuples(st.just("intent"), _cid, st.sampled_from(["buy", "sell"]), _qty),
    st.tuples(st.just("submitted"), _cid),
    st.tuples(st.just("unknown"), _cid),
    st.tuples(st.just("cancel_request"), _cid),
    st.tuples(st.just("order"), _cid, st.sampled_from(STATUSES), _qty),
    st.tuples(
        st.just("fill"),
        _cid,
        st.sampled_from(["buy", "sell"]),
        _qty,
        _price,
        st.sampled_from([0.0, 0.01]),
        st.none() | st.integers(0, 6),
        st.integers(0, 3),
    ),
    st.tuples(st.just("again"), st.integers(0, 50)),  # the same data journaled again
    st.tuples(st.just("adopt"), st.sampled_from(["USDT", "BTC", "ETH"]), _qty),
    st.tuples(st.just("equity"), _price),
)


def _to_entries(ops: list[tuple[Any, ...]]) -> list[NewEntry]:
    out: list[NewEntry] = []
    for ts, op in enumerate(ops):
        kind = op[0]
        if kind == "session":
            data: dict[str, Any] = {"event": "start"}
            if op[1] is not None:
                data["balances"] = op[1]
            out.append(NewEntry(ts, "session", data))
        elif kind == "intent":
            req = request(op[1], op[2], op[3], symbol=SYMBOLS[op[1]])
            out.append(NewEntry(ts, "intent", {"request": request_to_dict(req)}, op[1]))
        elif kind in ("submitted", "unknown", "cancel_request"):
            out.append(NewEntry(ts, kind, {}, op[1]))
        elif kind == "order":
            req = request(op[1], "buy", op[3], symbol=SYMBOLS[op[1]])
            order = snapshot(req, op[2], venue_order_id=op[1].upper())
            out.append(NewEntry(ts, "order", {"order": order_to_dict(order)}, op[1]))
        elif kind == "fill":
            _, cid, side, qty, price, fee, trade, t = op
            f = fill(
                cid, side, qty, price, fee, symbol=SYMBOLS[cid], timestamp=t,
                venue_trade_id=None if trade is None else str(trade),
            )  # fmt: skip
            out.append(NewEntry(ts, "fill", {"fill": fill_to_dict(f)}, cid))
        elif kind == "again" and out:
            out.append(dataclasses.replace(out[op[1] % len(out)], ts=ts))
        elif kind == "adopt":
            data = {"field": "balance", "asset": op[1], "action": "adopted", "resolved": True,
                    "venue": {"free": op[2], "locked": 0.0}}  # fmt: skip
            out.append(NewEntry(ts, "reconcile", data))
        elif kind == "equity":
            out.append(NewEntry(ts, "equity", {"equity": op[1], "marks": {"BTC/USDT": op[1]}}))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=60), cut=st.integers(0, 60), replay=st.integers(0, 60))
def test_streaming_apply_equals_batch_rebuild(
    ops: list[tuple[Any, ...]], cut: int, replay: int
) -> None:
    entries = numbered(_to_entries(ops))
    batch = JournalState.rebuild(entries)
    streamed = JournalState.rebuild(entries[:cut])  # a node that crashed after `cut` entries
    for i, e in enumerate(entries[cut:]):
        streamed.apply(e)
        if entries and i % 7 == 0:  # an entry seen again (re-read page) changes nothing
            streamed.apply(entries[replay % (cut + i + 1)])
    assert streamed.to_dict() == batch.to_dict()
    assert streamed.account() == batch.account()

    # an independent tally: unique fills, their fees, and every base balance since the last
    # time something set it (a session's balances while none were known, or an adoption)
    seen: set[tuple[Any, ...]] = set()
    fees = 0.0
    base: dict[str, float] = {}
    known = False
    for e in entries:
        if e.kind == "fill":
            f = e.data["fill"]
            key = (
                ("trade", f["symbol"], f["venue_trade_id"])
                if f["venue_trade_id"] is not None
                else ("local", f["client_order_id"], f["timestamp"], f["quantity"], f["price"])
            )
            if key not in seen:
                seen.add(key)
                fees += f["fee"]
                asset = f["symbol"].split("/")[0]
                sign = 1.0 if f["side"] == "buy" else -1.0
                base[asset] = base.get(asset, 0.0) + sign * f["quantity"]
        elif e.kind == "session" and "balances" in e.data and not known:
            known = True
        elif e.kind == "reconcile":
            known = True
            if e.data["asset"] != "USDT":
                base[e.data["asset"]] = e.data["venue"]["free"]
    assert len(batch.fills()) == len(seen)
    assert batch.summary().fees == pytest.approx(fees)
    for asset, qty in base.items():
        assert batch.balance(asset) == pytest.approx(qty)
    assert batch.balances_known is known


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=40))
def test_rebuilding_from_the_sqlite_journal_equals_applying_as_written(
    ops: list[tuple[Any, ...]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live = JournalState()
        with SqliteOrderJournal(Path(tmp) / "o.sqlite") as journal:
            for e in _to_entries(ops):  # the node: journal, then apply what was journaled
                (seq,) = journal.append([e])
                live.apply(JournalEntry(seq, e.ts, e.kind, e.data, e.client_order_id, e.symbol))
        with SqliteOrderJournal.open_readonly(Path(tmp) / "o.sqlite") as reader:
            rebuilt = JournalState.rebuild(reader.entries())
    assert rebuilt.to_dict() == live.to_dict()
