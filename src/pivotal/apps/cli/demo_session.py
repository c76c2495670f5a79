"""The demo's trading session: the orchestrator against the local exchange, killed once.

After the orchestrated backtest, the demo

1. starts the local exchange in this process (``pivotal exchange serve``'s server on
   127.0.0.1) replaying the held-out span's stored base candles (the run's timeframe) as a
   seeded book and trade flow, ``speed`` times faster than real time;
2. runs the same orchestrator, risk manager and executor as the backtest in a session
   against it (``pivotal run RUN_FILE --mode live --endpoint ...`` in a child process: the
   exchange broker sends real signed orders over the Binance wire format; no real money, the
   venue is local), with its order journal in ``<data dir>/trading``;
3. SIGKILLs the session part-way and starts it again: it rebuilds from the journal,
   reconciles with the exchange (the venue wins) and trades on;
4. prints the journal's summary beside the exchange's own record (``/_pivotal/record``):
   orders, fills, fees and balances, and whether they agree.

The session's journal is the demo's own: a previous demo's is moved aside first (the local
exchange starts with a fresh account each time).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey

LOCAL_KEY, LOCAL_SECRET = "pivotal-local-key", "pivotal-local-secret"
STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
          "CANCELED": "cancelled", "EXPIRED": "expired"}  # fmt: skip


@dataclass(frozen=True)
class SessionPlan:
    """What the session replays and where it writes, read while the demo holds the store
    (the session's process opens the store itself, so the demo closes it first)."""

    flows: list[Any]
    symbols: list[str]
    session_file: Path
    journal: Path
    checkpoints: Path | None = None


def plan_session(
    store: DuckDBStore, run_file: Path, data_dir: Path, *, seconds: float, speed: float
) -> SessionPlan | str:
    """The flows of the held-out span and the session's run file; a reason when impossible."""
    from pivotal.localexchange.synthetic import synthetic_flow
    from pivotal.node.paths import journal_path
    from pivotal.orchestrator.run_file import load_run_config, write_run_file

    run = load_run_config(run_file)
    start = int(run.since or 0)
    # market time the session can cover: its seconds, the two start-ups, a margin; the flow
    # must outlast the session (after a replay's end a venue would publish empty bars)
    hours = int((seconds + 90) * speed / 3_600) + 2  # wall s x speed = market s
    flows = []
    for i, symbol in enumerate(run.symbols):
        candles = store.read_candles(
            SeriesKey(run.exchange, symbol, run.base), start, start + hours * 3_600_000
        )
        if len(candles) < 12:
            return f"the session needs {run.base} candles of {symbol} from the traded span"
        flows.append(synthetic_flow(candles, run.base, symbol, seed=i, trades_per_candle=24))
    session_file = run_file.with_name(run_file.stem.removesuffix(".run") + ".session.yaml")
    learning = run.orchestrator.learning
    folder = None
    if learning.checkpoint_dir is not None:  # its own: the backtest's rerun stays the same
        folder = Path(f"{learning.checkpoint_dir}-session")
        learning = learning.model_copy(update={"checkpoint_dir": folder})
    orchestrator = run.orchestrator.model_copy(update={"learning": learning})
    write_run_file(
        run.model_copy(update={"mode": "live", "orchestrator": orchestrator}),
        session_file,
        header="The demo's trading session (the demo passes --endpoint of its local exchange).",
    )
    journal = journal_path(None, session_file, "live", data_dir)
    return SessionPlan(flows, list(run.symbols), session_file, journal, folder)


def session_step(
    plan: SessionPlan,
    data_dir: Path,
    *,
    say: Callable[[str], None],
    seconds: float = 150.0,
    speed: float = 600.0,
) -> list[str]:
    """The session (module docstring), with the store closed; the summary lines."""
    from pivotal.data.order_journal import SqliteOrderJournal
    from pivotal.localexchange.config import ServeConfig
    from pivotal.localexchange.server import LocalExchangeThread
    from pivotal.trading.journal_state import JournalState

    journal = plan.journal
    _move_aside(*_journal_files(journal), plan.checkpoints)
    # the demo paces the replay itself, and holds it while a session gets its models ready
    # (the learning span): a real venue would not wait, but at 1,200x a minute of start-up
    # would skip 20 hours of market
    config = ServeConfig(mode="manual", check_timestamps=False)
    exchange = LocalExchangeThread(plan.flows, config).start()
    pacer = Pacer(exchange, speed)
    try:
        url = exchange.exchange.urls()["binance"].rest
        say(
            f"  local exchange on {url}: {', '.join(plan.symbols)} from the held-out span at "
            f"{speed:g}x; session journal {journal}"
        )
        pacer.start()
        first = 0.4 * seconds
        _session(plan.session_file, url, data_dir, seconds, say, pacer, kill_after=first)
        say(f"  killed the session (SIGKILL) after {first:.0f} s of trading; restarting it")
        code = _session(
            plan.session_file, url, data_dir, seconds - first, say, pacer, kill_after=None
        )
        if code != 0:
            return [f"the restarted session exited with {code}; see the lines above"]
        pacer.stop()
        record = exchange.record("binance")
    finally:
        pacer.stop()
        exchange.stop()
    reader = SqliteOrderJournal.open_readonly(journal)
    try:
        state = JournalState.rebuild(reader.entries())
    finally:
        reader.close()
    return compare_lines(state, record, journal, plan.session_file, data_dir)


def serve_session(
    plan: SessionPlan,
    data_dir: Path,
    *,
    say: Callable[[str], None],
    speed: float,
    port: int,
    token_file: Path | None = None,
) -> int:
    """``pivotal demo --serve``: a paper session of the same orchestrator against a fresh
    local exchange (``speed`` times real time) with the API and the dashboard served from the
    session's process, until Ctrl-C or SIGTERM. Returns the session's exit code."""
    from pivotal.localexchange.config import ServeConfig
    from pivotal.localexchange.server import LocalExchangeThread
    from pivotal.node.paths import journal_path

    journal = journal_path(None, plan.session_file, "paper", data_dir)
    _move_aside(*_journal_files(journal), journal.with_name(journal.name + ".market.duckdb"))
    exchange = LocalExchangeThread(plan.flows, ServeConfig(mode="manual", check_timestamps=False))
    exchange.start()
    pacer = Pacer(exchange, speed)
    extra = ["--serve", "--serve-port", str(port)]
    if token_file is not None:
        extra += ["--token-file", str(token_file)]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        url = exchange.exchange.urls()["binance"].rest
        say(
            f"  local exchange on {url} at {speed:g}x; a paper session with the dashboard "
            "(Ctrl-C stops both)"
        )
        pacer.start()
        return _session(
            plan.session_file, url, data_dir, None, say, pacer, kill_after=None, mode="paper",
            extra=tuple(extra),
        )  # fmt: skip
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        pacer.stop()
        exchange.stop()


def _journal_files(journal: Path) -> list[Path]:
    """A journal with its lock and SQLite's WAL files (a WAL left beside a new journal of the
    same name would be replayed into it)."""
    return [journal.with_name(journal.name + s) for s in ("", ".lock", "-wal", "-shm")]


def _move_aside(*paths: Path | None) -> None:
    """A previous demo's files become ``<name>.previous`` (the local exchange starts with a
    fresh account and market each time)."""
    for old in paths:
        if old is not None and old.exists():
            aside = old.with_name(old.name + ".previous")
            if aside.is_dir():
                shutil.rmtree(aside)
            old.replace(aside)


class Pacer(threading.Thread):
    """Moves the manual-mode local exchange's market ``speed`` times faster than wall time
    while ``moving`` is set (every 50 ms)."""

    def __init__(self, exchange: Any, speed: float) -> None:
        super().__init__(name="demo-pacer", daemon=True)
        self.exchange = exchange
        self.speed = speed
        self.moving = threading.Event()
        self.trading = threading.Event()  # set when a session's streams started
        self._halt = threading.Event()

    def run(self) -> None:
        market = float(self.exchange.exchange.now_ms())
        last = time.monotonic()
        while not self._halt.wait(0.05):
            now = time.monotonic()
            if self.moving.is_set():
                market += (now - last) * 1000.0 * self.speed
                self.exchange.call(self.exchange.exchange.advance_to(int(market)))
            last = now

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(10)


def _session(
    run_file: Path,
    url: str,
    data_dir: Path,
    seconds: float | None,
    say: Callable[[str], None],
    pacer: Pacer,
    *,
    kill_after: float | None,
    mode: str = "live",
    extra: tuple[str, ...] = (),
) -> int:
    env = dict(os.environ)
    env.update(
        {
            "PIVOTAL_EXCHANGES__BINANCE__API_KEY": LOCAL_KEY,
            "PIVOTAL_EXCHANGES__BINANCE__SECRET": LOCAL_SECRET,
        }
    )
    args = [sys.executable, "-m", "pivotal", "run", str(run_file), "--mode", mode,
            "--endpoint", url, "--data-dir", str(data_dir), *extra]  # fmt: skip
    if seconds is not None:
        args += ["--duration", f"{seconds:.0f}"]
    child = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pacer.trading.clear()

    def relay() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if "learning span from" in line:
                pacer.moving.clear()  # hold the market while the models learn
            elif "streams started" in line:
                pacer.moving.set()
                pacer.trading.set()
            say(f"    | {line.rstrip()}")

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    if kill_after is not None:
        while not pacer.trading.wait(0.5):
            if child.poll() is not None:
                break
        try:
            child.wait(kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            pacer.moving.set()  # the market goes on while the session is down
    try:
        code = child.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the child stops cleanly (journal, orders)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        code = child.wait()
    reader.join(5)
    return code


def compare_lines(
    state: Any, record: dict[str, Any], journal: Path, session_file: Path, data_dir: Path
) -> list[str]:
    """The journal's summary beside the exchange's record, with whether they agree."""
    ours = [o for o in record["orders"] if str(o.get("clientOrderId", "")).startswith("pv")]
    venue_status = Counter(STATUS.get(o["status"], o["status"]) for o in ours)
    local_orders = [o for o in state.orders() if o.venue_order_id is not None]
    local_status = Counter(o.status.value for o in local_orders)
    venue_fills = {str(f["id"]) for f in record["fills"]}
    local_fills = {str(f.venue_trade_id) for f in state.fills()}
    placed_twice = [c for c, n in Counter(o["clientOrderId"] for o in ours).items() if n > 1]
    rows = [("orders at the venue", _counts(local_status), _counts(venue_status),
             local_status == venue_status),
            ("fills", f"{len(local_fills):,}", f"{len(venue_fills):,}",
             local_fills == venue_fills)]  # fmt: skip
    for asset, balance in sorted(record["balances"].items()):
        venue = float(balance["free"]) + float(balance["locked"])
        local = state.balance(asset)
        rows.append((f"{asset} balance", f"{local:,.8f}", f"{venue:,.8f}",
                     abs(local - venue) <= 1e-6 * max(1.0, abs(venue))))  # fmt: skip
    agree = all(r[3] for r in rows) and not placed_twice
    width = max(len(r[0]) for r in rows)
    lines = [f"  {'':{width}}  {'journal':>26}  {'exchange record':>26}"]
    lines += [f"  {r[0]:{width}}  {r[1]:>26}  {r[2]:>26}  {'agree' if r[3] else 'DIFFER'}"
              for r in rows]  # fmt: skip
    summary = state.summary()
    lines.append(
        f"  journal: {summary.entries:,} entries, {summary.kinds.get('decision', 0):,} decisions, "
        f"fees {summary.fees:,.4f} USDT, {summary.reconcile_differences} reconciliation "
        f"difference(s) ({summary.unresolved} unresolved); no client id placed twice: "
        f"{'yes' if not placed_twice else 'NO: ' + ', '.join(placed_twice[:3])}"
    )
    lines.append(
        "  the journal and the exchange agree" if agree
        else "  THE JOURNAL AND THE EXCHANGE DIFFER (see the rows marked DIFFER)"
    )  # fmt: skip
    where = f"--data-dir {data_dir}"
    lines.append(f"  inspect it: pivotal orders {session_file} --mode live {where}")
    return lines


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"
