"""A live session's broker without its node: what ``pivotal kill`` uses when no node runs.

Stopping risk needs no market feed: :func:`session_broker_for` builds the session's exchange
broker against its journal (the same session id, so the same client ids), with the venue's
clock; the caller starts it (rebuild + reconcile) and fires the kill switch. No
``--i-understand-real-money`` is asked: cancelling and flattening only reduce exposure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pivotal.config import PivotalConfig
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.node.brokers import make_session_broker
from pivotal.node.build import SessionOptions, exchange_config, live_settings, venue_time
from pivotal.node.control import MarketClock
from pivotal.node.paths import session_id
from pivotal.node.session_broker import SessionBroker
from pivotal.orchestrator.run_file import RunConfig

__all__ = ["session_broker_for"]


@contextmanager
def session_broker_for(
    run: RunConfig, journal: Path, config: PivotalConfig
) -> Iterator[tuple[SessionBroker, SqliteOrderJournal, MarketClock]]:
    live = live_settings(run, SessionOptions(mode="live"))
    settings = exchange_config(config, live)
    clock = MarketClock(venue_time(live.venue, settings))
    store = SqliteOrderJournal(journal)
    try:
        broker = make_session_broker(
            "live",
            run=run,
            live=live,
            settings=settings,
            clock=clock,
            journal=store,
            session=session_id(journal),
        )
        try:
            yield broker, store, clock
        finally:
            broker.close()
    finally:
        store.close()
