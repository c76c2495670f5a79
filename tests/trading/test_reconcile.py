"""Reconciliation: the venue wins, every case once, and a second pass finds nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pivotal.core.journal import (
    JournalEntry,
    NewEntry,
    fill_to_dict,
    order_to_dict,
    request_to_dict,
)
from pivotal.core.orders import Fill, Liquidity, Order, OrderRequest, OrderSide, OrderStatus
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.trading.journal_state import JournalState
from pivotal.trading.reconcile import (
    LOST_REASON,
    Difference,
    ReconcileReport,
    VenueState,
    reconcile,
)

T0 = 1_700_000_000_000
START = {"USDT": 1_000.0}


def req(cid: str, side: str = "buy", qty: float = 0.5) -> OrderRequest:
    return OrderRequest("BTC/USDT", OrderSide(side), quantity=qty, client_order_id=cid)


def order(cid: str, status: str, filled: float = 0.0, vid: str | None = None, **kw: Any) -> Order:
    request = kw.pop("request", None) or req(cid)
    return Order(
        request=request, client_order_id=cid, order_id=cid, status=OrderStatus(status),
        created_ms=T0, updated_ms=kw.pop("ts", T0), quantity=request.quantity,
        filled_quantity=filled, venue_order_id=vid, **kw,
    )  # fmt: skip


def fill(cid: str, qty: float, price: float, trade: str, **kw: Any) -> Fill:
    return Fill(
        order_id=cid, client_order_id=cid, symbol="BTC/USDT",
        side=OrderSide(kw.pop("side", "buy")), quantity=qty, price=price,
        fee=kw.pop("fee", 0.05), liquidity=Liquidity.TAKER, timestamp=T0 + 100,
        venue_trade_id=trade, **kw,
    )  # fmt: skip


class Node:
    """A journal state fed the way a node feeds it: entries numbered in append order."""

    def __init__(self, balances: dict[str, float] | None = START) -> None:
        self.state = JournalState()
        self.log: list[JournalEntry] = []
        data: dict[str, Any] = {"event": "start"}
        if balances is not None:
            data["balances"] = balances
        self.add([NewEntry(T0, "session", data)])

    def add(self, entries: list[NewEntry]) -> None:
        for e in entries:
            je = JournalEntry(len(self.log) + 1, e.ts, e.kind, e.data, e.client_order_id, e.symbol)
            self.log.append(je)
            self.state.apply(je)

    def sent(self, cid: str, *, unknown: bool = False) -> None:
        self.add([NewEntry(T0, "intent", {"request": request_to_dict(req(cid))}, cid)])
        self.add([NewEntry(T0 + 1, "submitted", {"attempt": 1}, cid)])
        if unknown:
            self.add([NewEntry(T0 + 2, "unknown", {"error": "-1007"}, cid)])

    def snap(self, o: Order) -> None:
        self.add([NewEntry(T0 + 3, "order", {"order": order_to_dict(o)}, o.client_order_id)])

    def filled(self, f: Fill) -> None:
        self.add([NewEntry(T0 + 4, "fill", {"fill": fill_to_dict(f)}, f.client_order_id)])

    def settle(self, report: ReconcileReport) -> None:
        self.add(report.to_entries(T0 + 1_000))


def venue(
    *,
    open_orders: list[Order] = (),  # type: ignore[assignment]
    looked_up: list[Order] = (),  # type: ignore[assignment]
    fills: list[Fill] = (),  # type: ignore[assignment]
    balances: dict[str, tuple[float, float]] | None = None,
) -> VenueState:
    return VenueState(
        ts=T0 + 500,
        open_orders=list(open_orders),
        balances={"USDT": (1_000.0, 0.0)} if balances is None else balances,
        fills=list(fills),
        orders_by_client_id={o.client_order_id: o for o in looked_up},
    )


def fields(report: ReconcileReport) -> list[tuple[str, str, str]]:
    return [(d.field, d.subject, d.action) for d in report.differences]


def after_buy(*fills: Fill) -> dict[str, tuple[float, float]]:
    usdt, btc = 1_000.0, 0.0
    for f in fills:
        usdt -= f.quantity * f.price + f.fee
        btc += f.quantity
    return {"USDT": (usdt, 0.0), "BTC": (btc, 0.0)}


def test_an_open_order_filled_at_the_venue_is_adopted_and_its_fills_booked_once() -> None:
    node = Node()
    node.sent("pv1")
    node.snap(order("pv1", "open", vid="11"))
    f1, f2 = fill("pv1", 0.2, 100.0, "t1"), fill("pv1", 0.3, 101.0, "t2")
    node.filled(f1)  # the first fill arrived before the stream died; the second did not
    at_venue = order("pv1", "filled", 0.5, vid="11", average_fill_price=100.6)
    state = venue(looked_up=[at_venue], fills=[f1, f2, f2], balances=after_buy(f1, f2))
    before = node.state.to_dict()
    report = reconcile(node.state, state)
    assert node.state.to_dict() == before  # pure: the caller journals, then applies
    assert fields(report) == [
        ("order_status", "pv1", "adopted"),
        ("missing_fill", "pv1", "booked"),
    ]  # and no balance difference: the booked fill explains the venue's balances
    assert report.ok and report.book_fills == [f2] and report.adopt == report.cancel == []
    (update,) = report.order_updates
    assert (update.status, update.filled_quantity, update.average_fill_price) == (
        OrderStatus.FILLED, 0.5, 100.6,
    )  # fmt: skip
    assert update.request == node.state.order("pv1").request  # type: ignore[union-attr]
    kinds = [e.kind for e in report.to_entries(T0)]
    assert kinds == ["order", "fill", "reconcile", "reconcile"]
    node.settle(report)
    assert node.state.order("pv1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert node.state.fills() == [f1, f2] and node.state.balance("BTC") == pytest.approx(0.5)
    again = reconcile(node.state, state)
    assert again.differences == [] and again.ok and again.to_entries(T0) == []
    assert again.lines() == ["reconciliation: the journal agrees with the venue"]


def test_an_order_cancelled_at_the_venue_is_adopted() -> None:
    node = Node()
    node.sent("pv1")
    node.snap(order("pv1", "open", vid="11"))
    cancelled = order("pv1", "cancelled", vid="11", reason="canceled by user")
    report = reconcile(node.state, venue(looked_up=[cancelled]))
    assert fields(report) == [("order_status", "pv1", "adopted")] and report.ok
    assert "journal open filled 0.0, venue cancelled" in report.lines()[1]
    node.settle(report)
    assert node.state.open_orders() == []
    assert reconcile(node.state, venue(looked_up=[cancelled])).differences == []


def test_an_order_the_venue_never_saw_is_rejected_as_lost() -> None:
    node = Node()
    node.sent("pv1", unknown=True)  # the reply was lost: maybe sent
    node.add([NewEntry(T0, "intent", {"request": request_to_dict(req("pv2"))}, "pv2")])
    assert {o.client_order_id for o in node.state.intents_without_ack()} == {"pv1", "pv2"}
    report = reconcile(node.state, venue())
    assert fields(report) == [
        ("order_lost", "pv1", "rejected"),
        ("order_lost", "pv2", "rejected"),
    ]
    assert report.ok
    assert [(o.status, o.reason) for o in report.order_updates] == [
        (OrderStatus.REJECTED, LOST_REASON)
    ] * 2
    node.settle(report)
    assert node.state.intents_without_ack() == [] and node.state.open_orders() == []
    assert reconcile(node.state, venue()).differences == []


def test_an_unknown_order_the_venue_has_is_adopted_and_no_longer_unknown() -> None:
    node = Node()
    node.sent("pv1", unknown=True)
    acked = order("pv1", "open", vid="12")
    report = reconcile(node.state, venue(looked_up=[acked], open_orders=[acked]))
    assert fields(report) == [("order_status", "pv1", "adopted")]
    assert report.differences[0].local == {"status": "unknown", "filled_quantity": 0.0}
    node.settle(report)
    assert node.state.unknown_orders() == [] and node.state.intents_without_ack() == []
    assert node.state.open_orders()[0].venue_order_id == "12"


def test_a_lost_cancel_reply_is_settled_by_the_venues_snapshot_even_when_unchanged() -> None:
    node = Node()
    node.sent("pv1")
    working = order("pv1", "open", vid="12")
    node.snap(working)
    node.add([NewEntry(T0 + 5, "cancel_request", {}, "pv1")])
    node.add([NewEntry(T0 + 6, "unknown", {"error": "timeout"}, "pv1")])  # cancel reply lost
    assert node.state.unknown_orders() == ["pv1"]
    report = reconcile(node.state, venue(looked_up=[working], open_orders=[working]))
    assert fields(report) == [("order_status", "pv1", "adopted")]  # the cancel never landed
    node.settle(report)
    assert node.state.unknown_orders() == [] and node.state.cancel_requested() == ["pv1"]
    assert reconcile(node.state, venue(open_orders=[working])).differences == []


def test_an_acknowledged_order_the_venue_lost_is_unresolved() -> None:
    node = Node()
    node.sent("pv1")
    node.snap(order("pv1", "partially_filled", 0.1, vid="13"))
    report = reconcile(node.state, venue())
    assert fields(report) == [("order_missing", "pv1", "cancelled locally")]
    assert not report.ok and report.unresolved == report.differences
    assert report.lines()[0].endswith("1 unresolved (needs a person)")
    assert report.lines()[1].startswith("  UNRESOLVED order pv1")
    assert report.order_updates[0].status is OrderStatus.CANCELLED
    node.settle(report)
    assert node.state.open_orders() == [] and node.state.unresolved == 1


def test_foreign_orders_follow_the_policy() -> None:
    node = Node()
    foreign = order("web_abc", "open", vid="99", request=req("web_abc", "sell", 0.1))
    done_foreign = order("old", "filled", 0.5, vid="98")  # not open: none of our business
    their_fill = fill("web_abc", 0.05, 100.0, "t9", side="sell", venue_order_id="99")
    their_fill = dataclasses.replace(their_fill, client_order_id="", order_id="99")
    state = venue(open_orders=[foreign], looked_up=[done_foreign], fills=[their_fill])

    reported = reconcile(node.state, state)
    assert fields(reported) == [("foreign_order", "web_abc", "reported")]
    assert not reported.ok and reported.book_fills == [] and reported.adopt == []
    assert "unknown='adopt' or 'cancel'" in reported.lines()[1]

    cancel = reconcile(node.state, state, unknown="cancel")
    assert cancel.ok and cancel.cancel == ["web_abc"] and cancel.book_fills == []

    adopted = reconcile(node.state, state, unknown="adopt")
    assert adopted.ok and adopted.adopt == [foreign]
    (booked,) = adopted.book_fills  # its fill, found by the venue's order id, is ours now
    assert (booked.client_order_id, booked.venue_trade_id) == ("web_abc", "t9")
    node.settle(adopted)
    assert node.state.known("web_abc") and node.state.open_orders() == [foreign]
    assert reconcile(node.state, state, unknown="adopt").differences == []
    with pytest.raises(ValueError, match="report, adopt, cancel"):
        reconcile(node.state, state, unknown="ignore")  # type: ignore[arg-type]


def test_balance_and_position_differences_adopt_the_venue() -> None:
    node = Node()
    node.sent("pv1")
    f = fill("pv1", 0.5, 100.0, "t1")
    node.filled(f)
    balances = {"USDT": (940.0, 9.0), "BTC": (0.25, 0.0), "BNB": (0.0, 0.0)}
    report = reconcile(
        node.state, venue(balances=balances, looked_up=[order("pv1", "filled", 0.5)])
    )
    assert fields(report) == [
        ("order_status", "pv1", "adopted"),
        ("balance", "BTC", "adopted"),
        ("position", "BTC/USDT", "adopted"),
        ("balance", "USDT", "adopted"),
    ]
    btc = report.differences[1]
    assert (btc.local, btc.venue) == (0.5, {"free": 0.25, "locked": 0.0})
    assert report.differences[2].to_data()["symbol"] == "BTC/USDT"
    entries = report.to_entries(T0)
    assert [e.kind for e in entries][-2:] == ["reconcile", "reconcile"]
    assert [e.data["field"] for e in entries[-2:]] == ["balance", "balance"]  # adoption last
    node.settle(report)
    assert node.state.balances == {"USDT": 949.0, "BTC": 0.25}
    assert node.state.positions()["BTC/USDT"].quantity == 0.25
    second = reconcile(
        node.state, venue(balances=balances, looked_up=[order("pv1", "filled", 0.5)])
    )
    assert second.differences == []
    within = {"USDT": (949.0 + 1e-7, 0.0), "BTC": (0.25 + 1e-13, 0.0)}  # float dust
    assert reconcile(node.state, venue(balances=within)).differences == []


def test_a_fresh_journal_adopts_the_venue_balances() -> None:
    node = Node(balances=None)
    assert not node.state.balances_known
    balances = {"USDT": (500.0, 0.0), "ETH": (2.0, 0.0), "XRP": (0.0, 0.0)}
    report = reconcile(node.state, venue(balances=balances))
    assert fields(report) == [
        ("balance", "ETH", "adopted"),
        ("position", "ETH/USDT", "adopted"),
        ("balance", "USDT", "adopted"),
    ]
    assert report.differences[0].message.startswith("balance ETH: journal none, venue 2")
    node.settle(report)
    assert node.state.balances_known and node.state.balances == {"USDT": 500.0, "ETH": 2.0}
    assert node.state.account({"ETH/USDT": 10.0}).equity == 520.0


def test_a_fill_while_down_is_booked_once_even_without_our_client_id() -> None:
    node = Node()
    node.sent("pv1")
    node.snap(order("pv1", "filled", 0.5, vid="21"))  # the order said filled; the fill was lost
    down = dataclasses.replace(fill("pv1", 0.5, 100.0, "t7"), client_order_id="x", order_id="21")
    down = dataclasses.replace(down, venue_order_id="21")
    state = venue(fills=[down, down], balances=after_buy(down), looked_up=[])
    # pv1 is terminal and the venue's history no longer lists it: no order difference
    report = reconcile(node.state, state)
    assert fields(report) == [("missing_fill", "pv1", "booked")] and report.ok
    (booked,) = report.book_fills
    assert (booked.client_order_id, booked.order_id) == ("pv1", "pv1")
    node.settle(report)
    assert len(node.state.fills()) == 1
    assert reconcile(node.state, state).differences == []  # idempotent


def test_a_terminal_order_the_venue_saw_differently_takes_the_venues_word() -> None:
    node = Node()
    node.sent("pv1")
    node.snap(order("pv1", "cancelled", vid="31"))
    late = order("pv1", "filled", 0.5, vid="31")  # the cancel lost the race
    f = fill("pv1", 0.5, 100.0, "t31")
    report = reconcile(node.state, venue(looked_up=[late], fills=[f], balances=after_buy(f)))
    assert fields(report) == [
        ("order_status", "pv1", "adopted"),
        ("missing_fill", "pv1", "booked"),
    ]


def test_the_entries_rebuild_the_same_state_from_the_file(tmp_path: Path) -> None:
    with SqliteOrderJournal(tmp_path / "o.sqlite") as journal:
        journal.open_session("s", {"balances": START}, ts=T0)
        node_state = JournalState.rebuild(journal.entries())
        intent = NewEntry(T0, "intent", {"request": request_to_dict(req("pv1"))}, "pv1")
        journal.append([intent, NewEntry(T0, "submitted", {}, "pv1")])
        node_state = JournalState.rebuild(journal.entries())
        f = fill("pv1", 0.5, 100.0, "t1")
        balances = {**after_buy(f), "USDT": (949.0, 0.0)}
        report = reconcile(
            node_state, venue(looked_up=[order("pv1", "filled", 0.5)], fills=[f], balances=balances)
        )
        journal.append(report.to_entries(T0 + 2_000))  # one append
        rebuilt = JournalState.rebuild(journal.entries())
        assert rebuilt.balances == {"USDT": 949.0, "BTC": 0.5} and len(rebuilt.fills()) == 1
        assert [e.data["field"] for e in journal.entries(kinds=["reconcile"])] == [
            "order_status", "missing_fill", "balance",
        ]  # fmt: skip
        assert reconcile(rebuilt, venue(looked_up=[order("pv1", "filled", 0.5)], fills=[f],
                                        balances=balances)).differences == []  # fmt: skip


def test_difference_data_round_trips_through_json() -> None:
    d = Difference("order_lost", "pv1", "submitted", None, "rejected", True, "m")
    assert d.to_data() == {
        "field": "order_lost", "client_order_id": "pv1", "local": "submitted", "venue": None,
        "action": "rejected", "resolved": True, "message": "m",
    }  # fmt: skip
    with pytest.raises(ValueError, match="tolerance"):
        reconcile(JournalState(), venue(), tolerance=2.0)
