"""The session node's parts one by one, with no network: the market clock, the controlled
feed, the warm-up, the builder's safety rule and overrides, the journal recorder and the
kill switch (over a fake session broker)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.config.live import LiveSettings
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import ConfigError
from pivotal.core.events import CandleClosed
from pivotal.core.orders import (
    AccountSnapshot,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSnapshot,
)
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import TradingAction
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.data.series import SeriesKey
from pivotal.node.build import SessionOptions, check_real_money, is_local, live_settings
from pivotal.node.control import ControlledFeed, MarketClock
from pivotal.node.journal_recorder import JournalRecorder
from pivotal.node.kill_switch import KillSwitch, read_kill_request, request_kill
from pivotal.node.warmup import warm_up
from pivotal.orchestrator.run_file import load_run_config
from pivotal.testing.orchestrator import GRID_START
from pivotal.testing.planted import planted_candles
from pivotal.testing.training import store_candles
from pivotal.trading.risk import MarketState, RiskConfig, RiskManager

MINUTE = 60_000
M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")
N_CANDLES = 400


# -- MarketClock --------------------------------------------------------------------------------
@given(start=st.integers(0, 10**12), times=st.lists(st.integers(0, 2 * 10**12), max_size=40))
def test_the_market_clock_never_goes_back(start: int, times: list[int]) -> None:
    clock = MarketClock(start)
    high = start
    for t in times:
        clock.advance_to(t)  # a late event is no error: the clock stays where it is
        high = max(high, t)
        assert clock.now_ms() == high


# -- ControlledFeed -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Ev:
    """A stand-in market event: the feed only passes events through."""

    event_time: int
    n: int


class MovingFeed:
    """Returns ``batches`` in turn and moves the clock to each batch's newest time, as
    :class:`~pivotal.runtime.pushed_feed.PushedFeed` does with ``moves=``."""

    def __init__(self, batches: Sequence[Sequence[Ev]], clock: MarketClock) -> None:
        self.batches = list(batches)
        self.clock = clock

    def next_events(self) -> Sequence[Ev] | None:
        if not self.batches:
            return None
        batch = self.batches.pop(0)
        if batch:
            self.clock.advance_to(max(e.event_time for e in batch))
        return batch


def _drain(feed: ControlledFeed) -> Iterator[Sequence[Any]]:
    while (events := feed.next_events()) is not None:
        yield events


def test_the_controlled_feed_holds_a_step_at_a_stepped_time_and_delivers_it_next() -> None:
    clock = MarketClock(0)
    a, late, same, b = Ev(1_000, 0), Ev(900, 1), Ev(1_000, 2), Ev(2_000, 3)
    feed = ControlledFeed(MovingFeed([[a], [late], [same], [], [b]], clock), clock, lambda: True)
    steps = list(_drain(feed))
    assert steps == [[a], [], [], [], [late, same, b]]
    assert feed.held == 2


def test_the_controlled_feed_ends_when_tick_says_stop_without_reading_the_feed() -> None:
    clock = MarketClock(0)
    inner = MovingFeed([[Ev(1_000, 0)], [Ev(2_000, 1)]], clock)
    calls = []

    def tick() -> bool:
        calls.append(clock.now_ms())
        return len(calls) < 2

    feed = ControlledFeed(inner, clock, tick)
    assert list(_drain(feed)) == [[Ev(1_000, 0)]]
    assert len(inner.batches) == 1, "the feed was read after tick said stop"


@given(
    batches=st.lists(st.lists(st.integers(0, 50), max_size=4).map(sorted), min_size=1, max_size=30)
)
def test_the_controlled_feed_loses_nothing_and_steps_forward(batches: list[list[int]]) -> None:
    clock = MarketClock(0)
    numbered, n = [], 0
    for times in batches:
        numbered.append([Ev(t * 1_000, n + i) for i, t in enumerate(times)])
        n += len(times)
    feed = ControlledFeed(MovingFeed(numbered, clock), clock, lambda: True)
    delivered: list[Ev] = []
    stepped: list[int] = []
    for events in _drain(feed):
        if events:
            stepped.append(clock.now_ms())
            delivered.extend(events)
    assert stepped == sorted(set(stepped)), "a step at a time already stepped"
    sent = [e for batch in numbered for e in batch]
    # everything is delivered once, in order, except what was held after the last step
    # (the feed ended: no next step to deliver it with)
    assert delivered == sent[: len(delivered)]
    assert feed.held >= len(sent) - len(delivered)


# -- warm_up ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def warm_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    candles = planted_candles(N_CANDLES, seed=3, start_time=GRID_START)
    path = tmp_path_factory.mktemp("warm") / "pivotal.duckdb"
    store = store_candles(path, candles, streams=("5m",))
    yield store
    store.close()


class Listener:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


def _bar_event(store: DuckDBStore, tf: Timeframe, opened: int) -> CandleClosed | None:
    rows = store.read_candles(
        SeriesKey("binance", Symbol.parse("BTC/USDT"), tf), opened, opened + 1
    )
    if len(rows) == 0:
        return None
    return CandleClosed("BTC/USDT", tf, rows, opened + tf.ms)


@settings(max_examples=60, deadline=None)
@given(
    t0=st.integers(GRID_START - 10 * MINUTE, GRID_START + (N_CANDLES + 10) * MINUTE),
    bars=st.integers(1, 60),
    first_step_has_bars=st.booleans(),
)
def test_warm_up_pushes_only_bars_closed_by_t0_and_never_the_first_steps_twice(
    warm_store: DuckDBStore, t0: int, bars: int, first_step_has_bars: bool
) -> None:
    skip: list[CandleClosed] = []
    if first_step_has_bars:  # the first live step carries the bars that closed at t0
        for tf in (M1, M5):
            if t0 % tf.ms == 0 and (event := _bar_event(warm_store, tf, t0 - tf.ms)) is not None:
                skip.append(event)
    listener = Listener()
    pushed = warm_up(
        listener, warm_store, "binance", ["BTC/USDT"], [M5, M1], t0=t0, bars=bars, skip=skip
    )
    events = listener.events
    assert pushed == {"BTC/USDT": len(events)}
    skipped = {(e.timeframe, e.open_time) for e in skip}
    for tf in (M1, M5):
        mine = [e for e in events if isinstance(e, CandleClosed) and e.timeframe == tf]
        opens = [e.open_time for e in mine]
        assert all(o + tf.ms <= t0 for o in opens), "a bar not closed by t0 was pushed"
        assert all(e.event_time == e.open_time + tf.ms for e in mine)
        assert opens == sorted(set(opens)), "bars out of order or twice"
        assert not skipped & {(tf, o) for o in opens}, "a bar of the first step pushed twice"
        # the newest ``bars`` grid bars closed by t0
        newest = (t0 - tf.ms) // tf.ms * tf.ms
        window = warm_store.read_candles(
            SeriesKey("binance", Symbol.parse("BTC/USDT"), tf),
            newest - (bars - 1) * tf.ms,
            t0 - tf.ms + 1,
        )
        expected = [int(t) for t in window.timestamp if (tf, int(t)) not in skipped]
        assert opens == expected
        assert len(opens) <= bars
    times = [e.event_time for e in events]
    assert times == sorted(times), "not pushed in close-time order"


# -- the builder's safety rule and overrides ----------------------------------------------------
def test_live_on_a_real_venue_needs_the_real_money_flag() -> None:
    real = LiveSettings(venue="binance")
    with pytest.raises(ConfigError, match="--i-understand-real-money"):
        check_real_money("live", real, real_money=False)
    assert "real money" in check_real_money("live", real, real_money=True)
    assert "paper trading" in check_real_money("paper", real, real_money=False)
    assert "testnet" in check_real_money("live", LiveSettings(testnet=True), real_money=False)


@pytest.mark.parametrize(
    "rest",
    ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"],
)
def test_loopback_endpoints_are_a_local_exchange(rest: str) -> None:
    live = LiveSettings(rest_url=rest, ws_url="ws" + rest[4:])
    assert is_local(live)
    assert "local exchange" in check_real_money("live", live, real_money=False)


def test_one_remote_endpoint_is_not_local() -> None:
    mixed = LiveSettings(rest_url="http://127.0.0.1:9000", ws_url="wss://stream.binance.com")
    assert not is_local(mixed)
    with pytest.raises(ConfigError, match="--i-understand-real-money"):
        check_real_money("live", mixed, real_money=False)
    assert not is_local(LiveSettings())


def _run_file(tmp_path: Path) -> Any:
    path = tmp_path / "run.yaml"
    path.write_text(
        "mode: live\nsymbols: [BTC/USDT]\ntimeframe: 1m\n"
        "live: {rest_url: 'https://api.example.com', duration_s: 60}\n",
        encoding="utf-8",
    )
    return load_run_config(path)


def test_live_settings_apply_the_command_lines_overrides(tmp_path: Path) -> None:
    run = _run_file(tmp_path)
    same = live_settings(run, SessionOptions(mode="live"))
    assert (same.rest_url, same.duration_s, same.testnet) == ("https://api.example.com", 60, False)
    local = live_settings(
        run,
        SessionOptions(
            mode="live",
            endpoint="http://127.0.0.1:8123/",
            duration_s=5.5,
            testnet=True,
            keys=tmp_path / "keys.yaml",
        ),
    )
    assert local.rest_url == "http://127.0.0.1:8123"
    assert local.ws_url == "ws://127.0.0.1:8123"
    assert local.duration_s == 5.5 and local.testnet
    assert local.keys_file == tmp_path / "keys.yaml"
    secure = live_settings(run, SessionOptions(mode="live", endpoint="https://proxy.local:443"))
    assert secure.ws_url == "wss://proxy.local:443"
    assert run.live.rest_url == "https://api.example.com", "the run file's settings changed"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SessionOptions(mode="live", endpoint="127.0.0.1:8123"), "is not a URL"),
        (SessionOptions(mode="live", duration_s=0), "--duration must be above 0"),
        (SessionOptions(mode="live", duration_s=-3), "--duration must be above 0"),
    ],
)
def test_live_settings_refuse_bad_overrides(
    tmp_path: Path, options: SessionOptions, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        live_settings(_run_file(tmp_path), options)


# -- JournalRecorder ----------------------------------------------------------------------------
def test_the_recorder_skips_broker_records_and_journals_alerts(tmp_path: Path) -> None:
    journal = SqliteOrderJournal(tmp_path / "s.journal")
    seen: list[Any] = []
    recorder = JournalRecorder(journal, ReplayClock(5_000), on_alert=seen.append)
    try:
        recorder.decision(
            {"timestamp": 1_000, "kind": "decision", "symbol": "BTC/USDT", "bar_index": np.int64(7)}
        )
        recorder.event({"timestamp": 1_000, "kind": "fill", "symbol": "BTC/USDT"})
        recorder.fill({"timestamp": 1_000, "kind": "fill", "symbol": "BTC/USDT"})
        recorder.event({"timestamp": 1_000, "kind": "order", "symbol": "BTC/USDT"})
        breaker = {
            "timestamp": 2_000,
            "kind": "risk_circuit_breaker",
            "symbol": None,
            "message": "drawdown 21% reached max_drawdown 20%",
        }
        recorder.event(breaker)
        refused = {"kind": "risk_refused", "symbol": "BTC/USDT", "message": "kill switch: x"}
        recorder.event(refused)
        recorder.equity(2_000, np.float64(99_000.5))
        entries = list(journal.entries())
    finally:
        journal.close()
    assert [e.kind for e in entries] == ["decision", "alert", "alert", "equity"]
    decision, alert, second, equity = entries
    assert decision.ts == 1_000 and decision.symbol == "BTC/USDT"
    assert decision.data["bar_index"] == 7 and type(decision.data["bar_index"]) is int
    assert alert.ts == 2_000 and alert.symbol is None
    assert alert.data["message"] == breaker["message"]
    assert alert.data["record"] == breaker
    assert second.ts == 5_000, "a record without a time takes the clock's"
    assert second.data["message"] == "kill switch: x" and second.symbol == "BTC/USDT"
    assert equity.ts == 2_000 and equity.data == {"equity": 99_000.5}
    assert seen == [breaker, refused], "on_alert sees every risk record, nothing else"
    assert (recorder.decisions, recorder.alerts) == (1, 2)


# -- KillSwitch over a fake session broker ------------------------------------------------------
def _order(cid: str, symbol: str, side: OrderSide, qty: float, status: OrderStatus) -> Order:
    request = OrderRequest(symbol, side, OrderType.MARKET, quantity=qty, client_order_id=cid)
    return Order(request, cid, cid, status, 0, 0, qty)


def _position(symbol: str, qty: float) -> PositionSnapshot:
    return PositionSnapshot(symbol, qty, 100.0, 100.0, 0.0, 0.0, 0.0, 0)


class FakeBroker:
    """Open orders and holdings; ``flatten`` answers per symbol from ``flatten_result``."""

    def __init__(self, held: dict[str, float], flatten_result: dict[str, Any]) -> None:
        self.held = dict(held)
        self.flatten_result = flatten_result
        self.open = [
            _order("o1", "BTC/USDT", OrderSide.SELL, 1.0, OrderStatus.OPEN),
            _order("o2", "ETH/USDT", OrderSide.BUY, 2.0, OrderStatus.OPEN),
        ]
        self.calls: list[tuple[str, Any]] = []

    def cancel_all(self, symbol: str | None = None) -> list[Order]:
        self.calls.append(("cancel_all", symbol))
        done = [dataclasses.replace(o, status=OrderStatus.CANCELLED) for o in self.open]
        self.open = []
        return done

    def account(self) -> AccountSnapshot:
        self.calls.append(("account", None))
        positions = {s: _position(s, q) for s, q in self.held.items()}
        return AccountSnapshot(0, "USDT", 1e5, 1e5, 0.0, 1e5, 1.0, 0.0, 0.0, 0.0, positions)

    def flatten(self, symbol: str) -> Order | None:
        assert not self.open, "flatten before every order was cancelled"
        self.calls.append(("flatten", symbol))
        result = self.flatten_result[symbol]
        if isinstance(result, Exception):
            raise result
        return result


def _buy(risk: RiskManager) -> Any:
    action = TradingAction(
        symbol=Symbol.parse("BTC/USDT"), timestamp=0, action="BUY", confidence=1.0, source="t"
    )
    account = AccountSnapshot(0, "USDT", 1e5, 1e5, 0.0, 1e5, 1.0, 0.0, 0.0, 0.0, {})
    return risk.review(action, account, MarketState("BTC/USDT", 0, 100.0, lot_size=1e-5))


def test_the_kill_switch_cancels_flattens_reports_dust_and_stops_entries(
    tmp_path: Path,
) -> None:
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT"]
    sell = dataclasses.replace(
        _order("k1", "BTC/USDT", OrderSide.SELL, 0.5, OrderStatus.FILLED), filled_quantity=0.5
    )
    rejected = dataclasses.replace(
        _order("k2", "XRP/USDT", OrderSide.SELL, 3.0, OrderStatus.REJECTED),
        reason="filter min_notional: 3 XRP is below 5 USDT",
    )
    broker = FakeBroker(
        {"BTC/USDT": 0.5, "ETH/USDT": 0.000001, "SOL/USDT": 4.0, "XRP/USDT": 3.0},
        {
            "BTC/USDT": sell,
            "ETH/USDT": None,  # dust: below the venue's minimum
            "SOL/USDT": ConnectionError("venue down"),
            "XRP/USDT": rejected,
        },
    )
    risk = RiskManager(RiskConfig(fraction=0.1))
    assert _buy(risk).approved, "the risk manager refused before the kill"
    journal = SqliteOrderJournal(tmp_path / "k.journal")
    try:
        switch = KillSwitch(broker, risk, journal, ReplayClock(7_000), symbols)  # type: ignore[arg-type]
        report = switch.fire("test kill")
        entries = list(journal.entries())
    finally:
        journal.close()
    assert broker.calls[0] == ("cancel_all", None)
    assert [c for c in broker.calls if c[0] == "flatten"] == [
        ("flatten", s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
    ], "ADA (nothing held) is not flattened; a failure does not stop the others"
    assert report.cancelled == ["o1", "o2"]
    assert report.flattened == {"BTC/USDT": 0.5}
    problems = " | ".join(report.problems)
    assert "ETH/USDT: 1e-06 left (below the minimum)" in problems
    assert "SOL/USDT: flatten failed: venue down" in problems
    assert "XRP/USDT: filter min_notional" in problems
    assert switch.fired is report
    [kill] = entries
    assert kill.kind == "kill" and kill.ts == 7_000
    assert kill.data["reason"] == "test kill"
    assert kill.data["cancelled"] == ["o1", "o2"]
    assert kill.data["flattened"] == {"BTC/USDT": 0.5}
    assert kill.data["problems"] == report.problems
    refused = _buy(risk)
    assert not refused.approved and refused.orders == ()
    assert refused.reason == "kill switch: test kill"
    assert any("kill switch: test kill" in line for line in report.lines())


def test_a_kill_request_is_read_once_and_a_garbled_one_still_counts(tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    assert read_kill_request(journal) is None
    path = request_kill(journal, "from the dashboard")
    assert path.name == "s.journal.kill"
    body = read_kill_request(journal)
    assert body is not None and body["reason"] == "from the dashboard"
    assert read_kill_request(journal) is None, "a request fired twice"
    path.write_text("{not json", encoding="utf-8")
    garbled = read_kill_request(journal)
    assert garbled is not None and "unreadable" in garbled["reason"]


def test_a_flatten_the_book_could_not_fill_is_reported_not_called_flattened(
    tmp_path: Path,
) -> None:
    # a market sell larger than the bids expires part filled (seen on the local exchange:
    # 44.2 of 50.8 BTC sold, the rest left): the report must say what is left
    expired = dataclasses.replace(
        _order("k1", "BTC/USDT", OrderSide.SELL, 50.8, OrderStatus.EXPIRED),
        filled_quantity=44.2,
        reason="accepted by the venue",
    )
    working = _order("k2", "ETH/USDT", OrderSide.SELL, 2.0, OrderStatus.OPEN)  # fills later
    filled = dataclasses.replace(
        _order("k3", "SOL/USDT", OrderSide.SELL, 4.0, OrderStatus.FILLED), filled_quantity=4.0
    )
    broker = FakeBroker(
        {"BTC/USDT": 50.8, "ETH/USDT": 2.0, "SOL/USDT": 4.0},
        {"BTC/USDT": expired, "ETH/USDT": working, "SOL/USDT": filled},
    )
    journal = SqliteOrderJournal(tmp_path / "k.journal")
    try:
        switch = KillSwitch(
            broker,  # type: ignore[arg-type]
            RiskManager(),
            journal,
            ReplayClock(0),
            ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
        )
        report = switch.fire("thin book")
    finally:
        journal.close()
    assert report.flattened == {"BTC/USDT": 44.2, "ETH/USDT": 2.0, "SOL/USDT": 4.0}
    [problem] = report.problems
    assert problem.startswith("BTC/USDT: 6.6 left"), problem
    assert "expired" in problem
