"""Sessions against the local exchange over 127.0.0.1, for the Stage 10 node tests.

:class:`NodeHome` is a user's folder: a store with 1,200 planted BTC/USDT 1m candles, a run
file (``mode: paper``, 1m bars) and the local exchange (a :class:`LocalExchangeThread`, paced)
replaying the candles from bar 600 as a synthetic book and trade flow. :meth:`NodeHome.start`
runs a session in a child process (``tests/helpers/node_child.py``: the real node builder
with the run file's broker and a :class:`~pivotal.testing.scripted_source.ScriptedSource`, so
restarts decide what an uninterrupted session would), which a test may SIGKILL or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pivotal.core.candles import Candles
from pivotal.data.duckdb_store import STORE_FILE_NAME
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.testing.orchestrator import GRID_START
from pivotal.testing.planted import planted_candles
from pivotal.testing.training import store_candles

MINUTE = 60_000
LIVE_FROM = GRID_START + 600 * MINUTE
CHILD = Path(__file__).with_name("node_child.py")
KEY, SECRET = "pivotal-local-key", "pivotal-local-secret"


def run_text(mode: str, extra: str = "", on_stop: str = "keep") -> str:
    return (
        f"mode: {mode}\n"
        "symbols: [BTC/USDT]\n"
        "timeframe: 1m\n"
        "warmup_bars: 30\n"
        "settings:\n"
        "  broker: {initial_cash: 100000, fees: {maker: 0.001, taker: 0.001}}\n"
        "  risk: {sizing: fixed_fraction, fraction: 0.01}\n"
        "live:\n"
        "  reconcile_every_s: 2\n"
        f"  on_stop: {on_stop}\n"
        "  paper: {latency_ms: 20}\n"
        f"{extra}"
    )


class NodeHome:
    """A folder, a store, a run file and a paced local exchange (module docstring)."""

    def __init__(
        self, root: Path, *, mode: str = "paper", speed: float = 30.0, on_stop: str = "keep"
    ) -> None:
        self.root = root
        self.mode = mode
        self.candles: Candles = planted_candles(1_200, seed=2, start_time=GRID_START)
        (root / "data").mkdir(parents=True, exist_ok=True)
        store_candles(root / "data" / STORE_FILE_NAME, self.candles).close()
        (root / "run.yaml").write_text(run_text(mode, on_stop=on_stop), encoding="utf-8")
        flow = synthetic_flow(
            self.candles.between(LIVE_FROM, None), "1m", "BTC/USDT", seed=1, trades_per_candle=12
        )
        self.exchange = LocalExchangeThread([flow], ServeConfig(speed=speed)).start()
        self.url = self.exchange.exchange.urls()["binance"].rest
        self.children: list[subprocess.Popen[str]] = []

    @property
    def journal(self) -> Path:
        return self.root / "data" / "trading" / f"run.{self.mode}.journal"

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
        clean.update(
            {
                "HOME": str(self.root),
                "XDG_CONFIG_HOME": str(self.root / ".config"),
                "PIVOTAL_EXCHANGES__BINANCE__API_KEY": KEY,
                "PIVOTAL_EXCHANGES__BINANCE__SECRET": SECRET,
            }
        )
        return clean

    def start(self, duration_s: float = 120.0, **extra: Any) -> subprocess.Popen[str]:
        args = [sys.executable, str(CHILD), str(self.root), self.mode, self.url, str(duration_s)]
        args += [f"{k}={v}" for k, v in extra.items()]
        child = subprocess.Popen(
            args,
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.children.append(child)
        return child

    def wait_for_steps(
        self, child: subprocess.Popen[str], steps: int, timeout_s: float = 60
    ) -> None:
        """Until the journal holds ``steps`` more equity entries than now (the child steps)."""
        from pivotal.core.errors import DataError
        from pivotal.data.order_journal import SqliteOrderJournal

        def count() -> int:
            if not self.journal.exists():
                return 0
            try:
                reader = SqliteOrderJournal.open_readonly(self.journal)
            except DataError:  # the child is creating it: the file is there, its tables not yet
                return 0
            try:
                return sum(1 for _ in reader.entries(kinds=["equity"]))
            finally:
                reader.close()

        start = count()
        deadline = time.monotonic() + timeout_s
        while count() < start + steps:
            if child.poll() is not None:
                raise AssertionError(
                    f"the session exited early:\n{child.stdout.read() if child.stdout else ''}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {steps} steps within {timeout_s} s")
            time.sleep(0.1)

    def kill(self, child: subprocess.Popen[str], sig: int = signal.SIGKILL) -> str:
        child.send_signal(sig)
        out, _ = child.communicate(timeout=60)
        return out

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)
        self.exchange.stop()
