"""An in-process paper node on the local exchange, for the command and live-view tests.

:class:`VoteSource` decides through a real :class:`~pivotal.orchestrator.decisions.
DecisionMaker` on one fixed expert's vote (``p_buy = 0.6`` when flat, ``p_sell = 0.6`` when
holding), so a threshold above 0.6 turns its BUYs into HOLDs; it has the orchestrator's
``decision_maker``, ``log``, ``outputs``, ``order`` and switches, so the node's commands and
snapshot treat it as the orchestrator. :class:`InProcessNode` runs the real node builder's
session on a thread of the test process (a child process cannot be steered from the test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.node_kit import NodeHome

from pivotal.config import load_config
from pivotal.core.candles import Candles
from pivotal.core.events import MarketEvent
from pivotal.core.journal import JournalEntry
from pivotal.core.ports import DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import ModelOutput, TradingAction
from pivotal.data.duckdb_store import open_store
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.node.build import SessionOptions, build_node
from pivotal.node.commands import Command, CommandOutcome
from pivotal.node.trading_node import NodeReport, TradingNode
from pivotal.orchestrator.config import GateConfig
from pivotal.orchestrator.contracts import Decision
from pivotal.orchestrator.decision_log import DecisionLog
from pivotal.orchestrator.decisions import DecisionMaker
from pivotal.orchestrator.orchestrator import INFERENCE_OFF
from pivotal.orchestrator.output_store import ModelOutputStore
from pivotal.orchestrator.run_file import load_run_config

SPEED = 60.0  # the local exchange's pace: a 1m bar per second
EXPERT = "fixed"


class VoteSource:
    """A decision source with the orchestrator's parts (module docstring)."""

    name = "orchestrator"

    def __init__(self, base: Timeframe) -> None:
        self.base = base
        self.timeframes: tuple[Timeframe, ...] = (base,)
        self.order = (EXPERT,)
        self.decision_maker = DecisionMaker(GateConfig(), self.order)
        self.log = DecisionLog()
        self.outputs = ModelOutputStore(100)
        self.learning = None
        self.inference_enabled = True
        self.learning_enabled = True

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        return None

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def on_event(self, event: MarketEvent) -> None:
        return None

    def finish(self, now_ms: int | None = None) -> None:
        return None

    def versions(self) -> dict[str, int]:
        return {EXPERT: 0}

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        symbol, t = context.symbol, int(context.timestamp)
        if not self.inference_enabled:
            self.log.decision(self._hold(symbol, t))
            return ()
        flat = context.position <= 0
        buy, sell = (0.6, 0.1) if flat else (0.1, 0.6)
        probs = {"BUY": buy, "SELL": sell, "HOLD": 0.3}
        output = ModelOutput(
            model_type="fixed",
            model_name=EXPERT,
            symbol=Symbol.parse(symbol),
            timestamp=t,
            confidence=0.6,
            predictions={"action": "BUY" if flat else "SELL", "action_probabilities": probs},
        )
        self.outputs.record(output)
        decision = self.decision_maker.decide(symbol, t, {EXPERT: output})
        self.log.decision(decision)
        action = decision.trading_action(self.name)
        return () if action is None else (action,)

    def _hold(self, symbol: str, t: int) -> Decision:
        from pivotal.core.types import Action

        return Decision(symbol, t, Action.HOLD, 0.0, (0.0, 0.0, 0.0), "vote", (), INFERENCE_OFF)


class InProcessNode:
    """A paper session of ``home`` on a thread of this process (module docstring)."""

    def __init__(self, home: NodeHome, source: Callable[[Timeframe], Any] = VoteSource) -> None:
        root = home.root
        run = load_run_config(root / "run.yaml")
        config, _ = load_config(None, data_dir=root / "data", use_default_file=False)
        self.lines: list[str] = []
        self._store_cm = open_store(root / "data")
        self.store = self._store_cm.__enter__()
        self.node: TradingNode = build_node(
            run,
            SessionOptions(mode="paper", endpoint=home.url, duration_s=600),
            run_file=root / "run.yaml",
            store=self.store,
            config=config,
            data_dir=root / "data",
            say=self.lines.append,
            source=lambda t0: source(run.base),
        )
        self.report: NodeReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-node", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.report = self.node.run()
        except BaseException as exc:  # shown by wait()
            self.error = exc

    def wait(self, what: Callable[[], Any], timeout_s: float = 45.0, label: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = what()
            if value:
                return value
            if self.error is not None:
                raise AssertionError(f"the node failed: {self.error!r}\n" + "\n".join(self.lines))
            if not self.thread.is_alive():
                raise AssertionError("the node stopped:\n" + "\n".join(self.lines))
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not within {timeout_s} s: {label}\n" + "\n".join(self.lines[-30:])
                )
            time.sleep(0.05)

    def send(self, name: str, timeout_s: float = 20.0, **args: Any) -> CommandOutcome:
        return self.node.commands.submit(Command(name, args, source="test"), timeout_s)

    def entries(self, kinds: Sequence[str] | None = None, since_seq: int = 0) -> list[JournalEntry]:
        reader = SqliteOrderJournal.open_readonly(self.node.journal_path)
        try:
            return list(reader.entries(kinds=kinds, since_seq=since_seq))
        finally:
            reader.close()

    def decisions(self, since_seq: int = 0) -> list[JournalEntry]:
        return self.entries(["decision"], since_seq)

    def position(self) -> float:
        account = self.node.snapshot.account
        if account is None:
            return 0.0
        held = account.positions.get("BTC/USDT")
        return 0.0 if held is None else held.quantity

    def running(self, steps: int = 1) -> bool:
        snap = self.node.snapshot
        return snap.status == "running" and snap.steps >= steps

    def stop(self) -> None:
        self.node.request_stop("test over")
        self.thread.join(60)
        try:
            self.node.journal.close()
        finally:
            self._store_cm.__exit__(None, None, None)
        if self.error is not None:
            raise AssertionError(f"the node failed: {self.error!r}\n" + "\n".join(self.lines))


def last_seq(node: InProcessNode) -> int:
    entries = node.entries()
    return entries[-1].seq if entries else 0


def make_home(root: Path) -> NodeHome:
    return NodeHome(root, mode="paper", speed=SPEED)
