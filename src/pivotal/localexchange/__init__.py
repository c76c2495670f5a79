"""The local exchange: a replayable market served over the venues' wire formats.

``flow`` holds the market's event types and :class:`~pivotal.localexchange.flow.SymbolFlow`
(one symbol's replayable market); ``recorded`` builds a flow from recorded Binance messages,
``synthetic`` a seeded one from stored candles; ``market`` keeps the exchange's view of one
symbol at the replay cursor (book, trades, klines). The server modules speak the venues'
REST and WebSocket formats on 127.0.0.1 over these.

Nothing is re-exported here on purpose: import from the submodules (this avoids import
cycles between the server modules and the flow modules).
"""
