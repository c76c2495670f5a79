"""The kill switch end to end: ``pivotal kill`` (the real command) against sessions trading
on the local exchange over 127.0.0.1, and the drawdown breaker firing it from inside the node.

The sessions run in a child process (the real node builder, as ``tests/helpers/node_child.py``)
whose decision source is the kit's scripted schedule with two changes (:data:`CHILD_CODE`):
entries are **market** orders, so the protective stop of ``settings.risk.stop_loss_pct`` can
rest on the venue at once (a stop sent with a resting limit entry is refused by the exchange
broker: nothing is held yet to protect), and a base balance below the venue's lot (the
commission the venue takes in the base asset leaves such dust) counts as flat, so the
schedule keeps trying to buy after a kill.

What counts is the exchange's own record (``LocalExchangeThread.record``): after a kill no
order of ours is open there and the BTC balance is dust (below the venue's minimum lot).

Dust and new entries: the venue keeps a few satoshi after every round trip (its commission
on a buy is taken in BTC, the exit sells what the lot step allows). The account reports them
as a long position, so the risk manager answers any later BUY with "already long" and no
order, kill or no kill. The live test therefore checks that no BUY was sent or filled after
the kill; that the kill itself refuses entries (a ``kill switch: ...`` refusal per BUY) is
checked on paper, whose fees are in quote so a flattened position is exactly 0 (the slow
test of a waiting kill; ``tests/node/test_node_parts.py`` checks it without a session).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.node_kit import CHILD, LIVE_FROM, MINUTE, NodeHome

from pivotal.core.journal import NewEntry
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.testing.cli import run_cli

pytestmark = pytest.mark.network

#: The stated bound: `pivotal kill` returns and the venue is flat with nothing open within it.
KILL_BOUND_S = 15.0
#: The local exchange's pace: a 1m bar per second of wall time.
SPEED = 60.0

CHILD_CODE = """
import runpy, sys
import pivotal.testing.scripted_source as scripted
from pivotal.core.symbols import Symbol
from pivotal.core.types import TradingAction

DUST = float(sys.argv.pop())


class MarketEntries(scripted.ScriptedSource):
    def decide(self, context):
        n = context.timestamp // self.base.ms
        held = context.position >= DUST
        if not held and n % self.every == 0:
            action = "BUY"
        elif held and n % self.every == self.hold:
            action = "SELL"
        else:
            return []
        return [TradingAction(symbol=Symbol.parse(context.symbol), timestamp=context.timestamp,
                              action=action, confidence=1.0, source=self.name,
                              reason=f"schedule: bar {n}")]


scripted.ScriptedSource = MarketEntries
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

OPEN = ("NEW", "PARTIALLY_FILLED")


def _run_text(home: NodeHome, mode: str, risk: str) -> str:
    urls = home.exchange.exchange.urls()["binance"]
    return (
        f"mode: {mode}\n"
        "symbols: [BTC/USDT]\n"
        "timeframe: 1m\n"
        "warmup_bars: 30\n"
        "settings:\n"
        "  broker: {initial_cash: 100000, fees: {maker: 0.001, taker: 0.001}}\n"
        f"  risk: {{{risk}}}\n"
        "live:\n"
        f"  rest_url: {urls.rest}\n"  # `pivotal kill` without a node reaches the venue here
        f"  ws_url: {urls.ws}\n"
        "  reconcile_every_s: 2\n"
        "  paper: {latency_ms: 20}\n"
    )


def _home(root: Path, mode: str, risk: str) -> NodeHome:
    home = NodeHome(root, mode=mode, speed=SPEED)
    (root / "run.yaml").write_text(_run_text(home, mode, risk), encoding="utf-8")
    return home


def _min_lot(home: NodeHome) -> float:
    """The venue's minimum order quantity of BTC/USDT (LOT_SIZE / MARKET_LOT_SIZE minQty)."""
    with urllib.request.urlopen(f"{home.url}/api/v3/exchangeInfo?symbol=BTCUSDT") as reply:
        info = json.load(reply)
    filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
    lots = [float(filters[k]["minQty"]) for k in ("LOT_SIZE", "MARKET_LOT_SIZE") if k in filters]
    lot = max(lots)
    assert lot > 0, filters
    return lot


def _start(
    home: NodeHome, dust: float, duration_s: float = 300, every: int = 3, hold: int = 2
) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", CHILD_CODE, str(CHILD), str(home.root), home.mode, home.url]
    args += [str(duration_s), f"every={every}", f"hold={hold}", str(dust)]
    child = subprocess.Popen(
        args,
        cwd=home.root,
        env=home.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    home.children.append(child)
    return child


def _ours(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in record["orders"] if str(o["clientOrderId"]).startswith("pv")]


def _open(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in _ours(record) if o["status"] in OPEN]


def _btc(record: dict[str, Any]) -> float:
    balance = record["balances"].get("BTC", {"free": 0, "locked": 0})
    return float(balance["free"]) + float(balance["locked"])


def _buy_fills(record: dict[str, Any]) -> set[str]:
    return {str(f["id"]) for f in record["fills"] if f["isBuyer"]}


def _wait_holding(
    home: NodeHome, child: subprocess.Popen[str], lot: float, timeout_s: float = 90
) -> dict[str, Any]:
    """Until the venue holds BTC for us and an order of ours (the protective stop) is open."""
    deadline = time.monotonic() + timeout_s
    while True:
        record = home.exchange.record("binance")
        if _btc(record) >= lot and _open(record):
            return record
        if child.poll() is not None:
            raise AssertionError(f"the session exited early:\n{child.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no position with an open order within {timeout_s} s: {record}")
        time.sleep(0.1)


def _wait_flat(home: NodeHome, lot: float, started: float, timeout_s: float = 60) -> float:
    """Seconds from ``started`` until the venue shows nothing open of ours and only dust."""
    while True:
        record = home.exchange.record("binance")
        if not _open(record) and _btc(record) < lot:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not flat {timeout_s} s after the kill: {record}")
        time.sleep(0.05)


def _entries(home: NodeHome) -> list[Any]:
    reader = SqliteOrderJournal.open_readonly(home.journal)
    try:
        return list(reader.entries())
    finally:
        reader.close()


def _wait_for_kill_entry(
    home: NodeHome, child: subprocess.Popen[str], timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    while not (home.journal.exists() and [e for e in _entries(home) if e.kind == "kill"]):
        if child.poll() is not None:
            raise AssertionError(f"the session exited early:\n{child.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no kill entry within {timeout_s} s")
        time.sleep(0.2)


def _kill(home: NodeHome, mode: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        ["kill", "run.yaml", "--mode", mode, "-d", "data"],
        cwd=home.root,
        env=home.env(),
        timeout=120,
    )


@pytest.fixture
def live_home(tmp_path: Path) -> Iterator[NodeHome]:
    home = _home(tmp_path, "live", "sizing: fixed_fraction, fraction: 0.01, stop_loss_pct: 0.05")
    yield home
    home.close()


def test_pivotal_kill_flattens_a_running_live_session_on_the_venue(live_home: NodeHome) -> None:
    home = live_home
    lot = _min_lot(home)
    child = _start(home, lot)
    before = _wait_holding(home, child, lot)
    stops = [o for o in _open(before) if o["type"] == "STOP_LOSS" and o["side"] == "SELL"]
    assert stops, f"the protective stop is not on the venue: {_open(before)}"

    started = time.monotonic()
    result = _kill(home, "live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "asked node pid" in result.stdout and "done:" in result.stdout, result.stdout
    took = _wait_flat(home, lot, started)
    print(f"pivotal kill → venue flat with nothing open: {took:.2f} s (bound {KILL_BOUND_S} s)")
    assert took < KILL_BOUND_S

    after = home.exchange.record("binance")
    entries = _entries(home)
    kills = [e for e in entries if e.kind == "kill"]
    assert len(kills) == 1, kills
    kill = kills[0]
    assert kill.data["reason"] == "pivotal kill"
    assert {o["clientOrderId"] for o in stops} <= set(kill.data["cancelled"])
    assert "BTC/USDT" in kill.data["flattened"] and kill.data["problems"] == [], kill.data

    # the node goes on deciding, and buys nothing. (That the kill's stop on entries is what
    # refuses them is shown on paper below: here the dust the venue leaves already makes the
    # risk manager answer a BUY with "already long", see the module docstring.)
    home.wait_for_steps(child, 4)  # 4 bars of a 3-bar schedule: at least one BUY moment
    later = home.exchange.record("binance")
    assert _buy_fills(later) == _buy_fills(after), "a BUY filled after the kill"
    assert not _open(later) and _btc(later) < lot
    after_kill = [e for e in _entries(home) if e.seq > kill.seq]
    buy_moments = [
        e
        for e in after_kill
        if e.kind == "decision" and (e.ts // MINUTE) % 3 == 0 and e.data["actions"] == 1
    ]
    assert buy_moments, "no BUY decision came after the kill"
    assert not [
        e for e in after_kill if e.kind == "intent" and e.data["request"]["side"] == "buy"
    ], "an entry was sent after the kill"
    out = home.kill(child, signal.SIGTERM)
    assert child.returncode == 0, out


def test_pivotal_kill_without_a_node_builds_the_broker_and_flattens(live_home: NodeHome) -> None:
    home = live_home
    lot = _min_lot(home)
    child = _start(home, lot)
    _wait_holding(home, child, lot)
    out = home.kill(child, signal.SIGTERM)  # on_stop: keep: the stop stays on the venue
    assert child.returncode == 0, out
    before = home.exchange.record("binance")
    assert _open(before) and _btc(before) >= lot, "the stopped session left nothing to kill"

    started = time.monotonic()
    result = _kill(home, "live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kill switch: pivotal kill" in result.stdout, result.stdout
    took = _wait_flat(home, lot, started)
    print(f"pivotal kill (no node) → venue flat with nothing open: {took:.2f} s")
    assert took < KILL_BOUND_S
    kills = [e for e in _entries(home) if e.kind == "kill"]
    assert len(kills) == 1 and "BTC/USDT" in kills[0].data["flattened"], kills
    assert kills[0].data["problems"] == [], kills[0].data
    assert {o["clientOrderId"] for o in _open(before)} <= set(kills[0].data["cancelled"])
    assert not (home.journal.parent / (home.journal.name + ".kill")).exists()


@pytest.fixture
def stopped_paper(tmp_path: Path) -> Iterator[NodeHome]:
    """A paper home whose session ran and stopped (its journal exists, no node holds it)."""
    home = NodeHome(tmp_path, mode="paper", speed=SPEED)  # the kit's run file: paper
    home.journal.parent.mkdir(parents=True)
    journal = SqliteOrderJournal(home.journal)
    journal.append([NewEntry(LIVE_FROM, "session", {"event": "start", "mode": "paper"})])
    journal.close()
    yield home
    home.close()


def _kill_waits(home: NodeHome) -> None:
    result = _kill(home, "paper")
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "no node is running this session" in text, text
    assert "waits at run.paper.journal.kill" in text and "starts again" in text, text
    assert "Traceback" not in result.stdout + result.stderr
    assert not [e for e in _entries(home) if e.kind == "kill"]
    assert (home.journal.parent / (home.journal.name + ".kill")).is_file()


def test_pivotal_kill_of_a_stopped_paper_session_says_the_request_waits(
    stopped_paper: NodeHome,
) -> None:
    _kill_waits(stopped_paper)


@pytest.mark.slow
def test_a_waiting_kill_fires_at_the_next_paper_start_and_refuses_entries(
    stopped_paper: NodeHome,
) -> None:
    home = stopped_paper
    _kill_waits(home)
    child = home.start(5, every=2, hold=1)  # the next start picks the request up
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0, out
    entries = _entries(home)
    kills = [e for e in entries if e.kind == "kill"]
    assert [k.data["reason"] for k in kills] == ["pivotal kill"], kills
    after_kill = [e for e in entries if e.seq > kills[0].seq]
    refused = [
        e
        for e in after_kill
        if e.kind == "alert" and e.data["message"] == "kill switch: pivotal kill"
    ]
    assert refused, "\n".join(f"{e.seq} {e.kind} {e.data}" for e in after_kill)
    assert not [e for e in after_kill if e.kind == "intent" and e.data["request"]["side"] == "buy"]


def test_the_drawdown_breaker_fires_the_kill_switch_itself(tmp_path: Path) -> None:
    # a 1 % entry pays 0.001 % in fees plus the spread: the drawdown passes 0.001 % at once
    home = _home(tmp_path, "live", "sizing: fixed_fraction, fraction: 0.01, max_drawdown: 0.00001")
    try:
        lot = _min_lot(home)
        child = _start(home, lot)
        _wait_for_kill_entry(home, child)
        home.wait_for_steps(child, 1)
        out = home.kill(child, signal.SIGTERM)
        assert child.returncode == 0, out
        entries = _entries(home)
        kills = [e for e in entries if e.kind == "kill"]
        assert len(kills) == 1, kills
        reason = kills[0].data["reason"]
        assert reason.startswith("risk breaker:") and "drawdown" in reason, reason
        breaker = [
            e
            for e in entries
            if e.kind == "alert"
            and (e.data.get("record") or {}).get("kind") == "risk_circuit_breaker"
        ]
        assert breaker and breaker[0].seq < kills[0].seq
        assert "BTC/USDT" in kills[0].data["flattened"], kills[0].data
        assert kills[0].data["problems"] == [], kills[0].data
        record = home.exchange.record("binance")
        assert not _open(record) and _btc(record) < lot, record
        assert not [
            e
            for e in entries
            if e.seq > kills[0].seq and e.kind == "intent" and e.data["request"]["side"] == "buy"
        ]
    finally:
        home.close()
