"""The feed-driven loop over the store-backed replay feed (bounded chunks, the kernel keeping
the bars it is given) gives exactly the backtest engine's fills, trades and equity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pivotal.backtest.engine import run_backtest
from pivotal.backtest.gaps import GapPlan
from pivotal.backtest.strategies import make_strategy
from pivotal.backtest.timeline import Timeline, to_timeline_steps
from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.runtime.loop import TradingLoop
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.testing.planted import planted_candles
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig, RiskManager
from pivotal.trading.settings import TradingSettings

M1 = Timeframe.M1


def _market() -> dict[str, Candles]:
    first = planted_candles(4_000, seed=21)
    second = planted_candles(3_500, seed=22, start_price=20.0, start_time=int(first.timestamp[200]))
    keep = np.ones(len(second), dtype=bool)
    keep[[5, 6, 1_000, 1_001, 1_002, 1_003, 1_004, 1_005, 1_006, 2_500]] = False  # one gap
    return {"AAA/USDT": first, "BBB/USDT": second[keep]}


def test_the_loop_over_the_store_feed_is_the_backtest(tmp_path: Path) -> None:
    candles = _market()
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(
            initial_cash=10_000.0, fees=FeeSchedule(maker=0.0002, taker=0.001), allow_short=True
        ),
        risk=RiskConfig(allow_short=True, fraction=0.4, stop_loss_pct=0.004),
    )

    def strategy() -> Any:
        return make_strategy("sma_cross", {"fast": 4, "slow": 12})

    engine = run_backtest(candles, strategy(), timeframe=M1, settings=settings)

    with DuckDBStore(tmp_path / "market.duckdb") as store:
        for symbol, bars in candles.items():
            store.write_candles(SeriesKey("binance", symbol, M1), bars, source="test")
        start = min(int(c.timestamp[0]) for c in candles.values())
        end = max(int(c.timestamp[-1]) for c in candles.values()) + M1.ms
        feed = ReplayFeed.from_store(
            store,
            exchange="binance",
            symbols=list(candles),
            timeframe=M1,
            start=start,
            end=end,
            chunk_bars=700,
        )
        broker = SimulatedBroker(feed.clock, settings.broker, bar_ms=M1.ms)
        risk = RiskManager(settings.risk)
        executor = ActionExecutor(
            broker, risk, fees=settings.broker.fees, lot_size=settings.broker.lot_size
        )
        source = strategy()
        for symbol, bars in candles.items():  # the strategy's signals, computed up front
            source.prepare(symbol, bars)
        loop = TradingLoop(
            clock=feed.clock,
            broker=broker,
            risk=risk,
            source=source,
            executor=executor,
            timeframe=M1,
            venue=broker,  # no candles_view: the kernel keeps the bars the feed delivers
            atr_period=settings.atr_period,
            gap_plan=GapPlan.build(candles, M1, settings.gaps, settings.max_missing_bars),
        )
        result = loop.run(feed)
        assert all(s.largest_chunk <= 700 for s in feed.streams)

    timeline = Timeline.build(candles, M1.ms)
    np.testing.assert_array_equal(result.timestamps, engine.timestamps + M1.ms)
    assert np.array_equal(result.equity, engine.equity)
    assert result.decisions == engine.settings["decisions"]
    fills = to_timeline_steps(broker.fills_frame(), timeline, ("bar",))
    trades = to_timeline_steps(broker.closed_trades(), timeline, ("entry_bar", "exit_bar"))
    assert len(engine.trades) > 20
    pd.testing.assert_frame_equal(fills, engine.fills, check_exact=True)
    pd.testing.assert_frame_equal(trades, engine.trades, check_exact=True)
    assert [e for e in result.events] == list(engine.events)
    assert any(g["symbol"] == "BBB/USDT" for g in engine.gaps)
