"""Exchange clients over ccxt.pro: live market data streams with reconnects, back-fill,
health and failover.

- :mod:`~pivotal.venues.clients`: ``create_stream_client`` (a ccxt.pro client, spot only, its
  REST and WebSocket hosts replaceable, e.g. by the local exchange's).
- :mod:`~pivotal.venues.stream_events`: the venue-neutral items a stream produces (trades,
  book, candle, ticker, status), each naming the exchange that produced it.
- :mod:`~pivotal.venues.convert`: ccxt structures to items, with the per-stream cursors that
  emit every trade and candle once.
- :mod:`~pivotal.venues.backoff`: reconnect waits with seeded jitter, the per-exchange
  subscription pacer and the Retry-After gate.
- :mod:`~pivotal.venues.backfill`: REST back-fill of trades and candles after a reconnect or an
  exchange switch.
- :mod:`~pivotal.venues.health`: per-stream counters and rates (``HealthBook.snapshot()``).
- :mod:`~pivotal.venues.failover`: the ordered exchanges per symbol, switching and probing.
- :mod:`~pivotal.venues.streams`: ``StreamSupervisor``, one task per (exchange, symbol,
  channel), items onto one bounded queue.

ccxt does not resubscribe in the background: when a socket closes, every pending ``watch_*``
raises and the next call redials. Reconnecting, pacing, back-filling and failing over are
therefore done here.
"""
