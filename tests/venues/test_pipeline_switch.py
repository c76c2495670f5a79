"""Two fixes in :class:`SymbolPipeline` found by the failover integration test
(``test_collect_failover.py``), pinned down here without sockets:

- MEXC trades carry synthetic ids (hashes, in no order): a trade is a repeat when it is older
  than the venue's newest trade, or at that time with an id already seen there, not when
  its id is smaller (that rule dropped about half of MEXC's trades);
- after a switch of venue the quiet seconds between the last 1s bar and the new venue's first
  trade become flat bars at the last close, as the aggregator fills quiet seconds (the
  fresh aggregator of the new venue used to leave them out: a hole in the 1s series).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.events import CandleClosed, MarketEvent
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.series import SeriesKey
from pivotal.venues.symbol_pipeline import SymbolPipeline

T0 = 1_751_328_000_000


class Sink:
    def __init__(self) -> None:
        self.candles: list[tuple[SeriesKey, Candles, str]] = []
        self.trades: list[tuple[str, Trades, str]] = []

    def add_candles(self, key: SeriesKey, candles: Candles, source: str) -> None:
        self.candles.append((key, candles, source))

    def add_trades(self, exchange: str, symbol: Symbol, trades: Trades, source: str) -> None:
        self.trades.append((exchange, trades, source))

    def add_cob(
        self, exchange: str, symbol: Symbol, snapshots: Sequence[COBData], source: str
    ) -> None:
        pass


def _trades(times: list[int], ids: list[int], price: float = 100.0) -> Trades:
    n = len(times)
    return Trades(
        np.array(times, dtype=np.int64),
        np.full(n, price),
        np.full(n, 0.5),
        np.zeros(n, dtype=bool),
        np.array(ids, dtype=np.int64),
    )


def test_trades_with_unordered_synthetic_ids_are_kept_and_repeats_skipped() -> None:
    sink = Sink()
    pipeline = SymbolPipeline("BTC/USDT", "binance", sink)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 2**62, size=40).tolist()  # hashes: no order
    times = [T0 + 100 * (i // 2) for i in range(40)]  # two trades per ms
    pipeline.on_trades("mexc", _trades(times[:25], ids[:25]), "mexc:ws")
    # a back-fill that repeats the last 10 (the last two share a ms) and brings 15 new
    pipeline.on_trades("mexc", _trades(times[15:], ids[15:]), "mexc:rest")
    # a repeat of one trade at the newest time only
    pipeline.on_trades("mexc", _trades(times[-1:], ids[-1:]), "mexc:ws")
    stored = np.concatenate([t.trade_id for _, t, _ in sink.trades])
    assert stored.tolist() == ids
    assert pipeline.counts.trades == 40
    assert pipeline.counts.duplicate_trades == 11


def test_quiet_seconds_at_a_venue_switch_become_flat_bars() -> None:
    sink = Sink()
    events: list[MarketEvent] = []
    pipeline = SymbolPipeline("BTC/USDT", "binance", sink, publish=events.extend, close_lag_ms=None)
    pipeline.on_trades("binance", _trades([T0 + 200, T0 + 1_300], [1, 2], 100.0), "binance:ws")
    # binance goes away after its trade in second 1; mexc's first trade is in second 4
    pipeline.on_trades("mexc", _trades([T0 + 4_500, T0 + 5_100], [7, 3], 101.0), "mexc:ws")
    bars = [(key.timeframe.value, c, src) for key, c, src in sink.candles]
    opens = [int(t) for _, c, _ in bars for t in c.timestamp]
    assert opens == [T0, T0 + 1_000, T0 + 2_000, T0 + 3_000, T0 + 4_000]
    flat = [(c, src) for _, c, src in bars if int(c.timestamp[0]) == T0 + 2_000]
    ((candles, source),) = flat
    assert source == "mexc:trades"
    np.testing.assert_array_equal(candles.close, [100.0, 100.0])
    np.testing.assert_array_equal(candles.volume, [0.0, 0.0])
    closes = [e.event_time for e in events if isinstance(e, CandleClosed)]
    assert closes == [T0 + 1_000 * k for k in range(1, 6)]
