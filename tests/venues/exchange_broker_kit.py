"""Shared set-up for the ExchangeBroker tests: a broker over a fake or a real ccxt client, a
SQLite journal, fast settings, and a wait-until helper."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pivotal.core.clock import WallClock
from pivotal.core.journal import JournalEntry
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.venues.exchange_broker import ExchangeBroker
from pivotal.venues.exchange_broker_config import ExchangeBrokerConfig

FAST = ExchangeBrokerConfig(
    poll_interval_s=0.05,
    audit_interval_s=0.5,
    reconnect_initial_s=0.05,
    reconnect_max_s=0.2,
    recv_window_ms=300,
    lookup_attempts=2,
    lookup_initial_s=0.01,
    lookup_max_s=0.02,
    retry_initial_s=0.01,
    retry_max_s=0.02,
    call_timeout_s=10,
    transient_retries=2,
)


def make_broker(
    client_factory: Callable[[], Any],
    journal_path: Path,
    *,
    venue: str = "binance",
    symbols: tuple[str, ...] = ("BTC/USDT",),
    config: ExchangeBrokerConfig = FAST,
    session_id: str = "sess-1",
    sleep: Callable[[float], None] | None = None,
) -> tuple[ExchangeBroker, SqliteOrderJournal, list[float]]:
    """A broker (not started), its journal and the list of the waits it asked for."""
    journal = SqliteOrderJournal(journal_path)
    waits: list[float] = []

    def record(seconds: float) -> None:
        waits.append(seconds)
        if sleep is not None:
            sleep(seconds)

    broker = ExchangeBroker(
        client_factory,
        venue=venue,
        symbols=symbols,
        clock=WallClock(),
        journal=journal,
        config=config,
        session_id=session_id,
        sleep=record,
    )
    return broker, journal, waits


def entries(journal: SqliteOrderJournal, kind: str) -> list[JournalEntry]:
    return list(journal.entries(kinds=[kind]))


def wait_for(check: Callable[[], bool], *, limit_s: float = 5.0, step_s: float = 0.02) -> None:
    """Poll ``check`` until true; AssertionError after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit_s} s")
        time.sleep(step_s)
