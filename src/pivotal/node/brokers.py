"""The session's broker: the one choice the node builder makes by mode.

- ``paper`` → :class:`~pivotal.node.paper_session.PaperSession` over a
  :class:`~pivotal.trading.brokers.paper.PaperBroker` (fills against the live book; no keys);
- ``live`` → :class:`~pivotal.venues.exchange_broker.ExchangeBroker` over a signed ccxt.pro
  client (keys from ``live.keys_file`` or pivotal's config, see :func:`api_keys`; testnet
  URLs with ``live.testnet``; a local exchange's with ``live.rest_url``).

Both get the run's trading settings (fees, quote currency, lot size), the session's clock and
journal, and the session id that prefixes their client order ids.
"""

from __future__ import annotations

from typing import Any

from pivotal.config.live import LiveSettings
from pivotal.config.models import ExchangeConfig
from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError
from pivotal.core.journal import OrderJournal
from pivotal.node.session_broker import SessionBroker
from pivotal.orchestrator.run_file import RunConfig

__all__ = ["make_session_broker"]


def make_session_broker(
    mode: str,
    *,
    run: RunConfig,
    live: LiveSettings,
    settings: ExchangeConfig,
    clock: Clock,
    journal: OrderJournal,
    session: str,
) -> SessionBroker:
    if mode == "paper":
        return _paper(run, live, clock, journal, session)
    if mode == "live":
        return _live(run, live, settings, clock, journal, session)
    raise ConfigError(f"no session broker for mode {mode!r}; use paper or live")


def _paper(
    run: RunConfig, live: LiveSettings, clock: Clock, journal: OrderJournal, session: str
) -> SessionBroker:
    from pivotal.node.paper_session import PaperSession
    from pivotal.trading.brokers.paper import PaperBroker
    from pivotal.trading.brokers.paper_config import PaperBrokerConfig

    broker_settings = run.settings.broker
    config = PaperBrokerConfig(
        initial_cash=live.paper.quote_balance or float(broker_settings.initial_cash),
        currency=broker_settings.currency,
        fees=broker_settings.fees,
        latency_ms=live.paper.latency_ms,
        book_stale_ms=live.paper.book_stale_ms,
        lot_size=broker_settings.lot_size,
        id_prefix=f"pp{session}",
    )
    broker = PaperBroker(clock, config, symbols=run.symbols, journal=journal)
    return PaperSession(broker, journal, clock)


def api_keys(live: LiveSettings, settings: ExchangeConfig) -> Any:
    """The venue's keys (never shown: their ``repr`` hides the secret): ``live.keys_file``
    (``--keys``), else pivotal's config ``exchanges.<venue>.api_key``/``secret``, which the
    environment sets as ``PIVOTAL_EXCHANGES__<VENUE>__API_KEY``/``__SECRET``."""
    from pivotal.venues.trading_client import ApiKeys

    if live.keys_file is not None:
        return ApiKeys.from_file(live.keys_file)
    if settings.api_key is not None and settings.secret is not None:
        return ApiKeys(
            settings.api_key.get_secret_value(),
            settings.secret.get_secret_value(),
            source=f"pivotal config exchanges.{live.venue} (or its PIVOTAL_EXCHANGES__ variables)",
        )
    venue = live.venue.upper()
    raise ConfigError(
        f"live trading on {live.venue} needs API keys: --keys FILE (a {{api_key, api_secret}} "
        f"file outside the repository, chmod 600), or PIVOTAL_EXCHANGES__{venue}__API_KEY and "
        f"PIVOTAL_EXCHANGES__{venue}__SECRET in the environment"
    )


def _live(
    run: RunConfig,
    live: LiveSettings,
    settings: ExchangeConfig,
    clock: Clock,
    journal: OrderJournal,
    session: str,
) -> SessionBroker:
    from pivotal.venues.exchange_broker import ExchangeBroker
    from pivotal.venues.exchange_broker_config import ExchangeBrokerConfig
    from pivotal.venues.trading_client import create_trading_client

    keys = api_keys(live, settings)
    config = ExchangeBrokerConfig(
        quote=run.settings.broker.currency,
        recv_window_ms=live.recv_window_ms,
        call_timeout_s=max(live.request_timeout_s * 3, 10.0),
        lookup_attempts=live.lookup_attempts,
        unknown_orders=live.unknown_orders,
        seed=run.seed,
    )

    def client() -> Any:
        return create_trading_client(live.venue, settings, keys, testnet=live.testnet)

    broker: Any = ExchangeBroker(
        client,
        venue=live.venue,
        symbols=run.symbols,
        clock=clock,
        journal=journal,
        config=config,
        session_id=session,
    )
    return broker
