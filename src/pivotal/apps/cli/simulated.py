"""Storing simulator output, always under the exchange ``simulator`` and labelled as such."""

from __future__ import annotations

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey, WriteResult
from pivotal.data.simulator import SimulatorConfig, simulate_candles
from pivotal.data.store import MarketDataStore

SIMULATED_EXCHANGE = "simulator"


def store_simulated(
    store: MarketDataStore,
    symbol: str,
    timeframe: str,
    bars: int,
    seed: int,
    start_ms: int = 1_704_067_200_000,
) -> tuple[SeriesKey, str, WriteResult]:
    """Simulate ``bars`` candles and store them; returns the key, the source label, the write."""
    tf = Timeframe.parse(timeframe)
    config = SimulatorConfig(seed=seed, start_ms=tf.floor(start_ms), timeframe=tf)
    simulated = simulate_candles(bars, config)
    key = SeriesKey(SIMULATED_EXCHANGE, Symbol.parse(symbol), tf)
    written = store.write_candles(key, simulated.candles, source=simulated.source)
    return key, simulated.source, written
