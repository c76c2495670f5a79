"""The run loop: a replay through TradingLoop (the runtime's feed-driven loop over the
replay feed) gives exactly the backtest engine's fills, trades, equity curve and events;
the loop reads only the clock, uses only the Broker protocol, keeps its own candles when
given none, and refuses a feed that breaks time. (Moved from tests/orchestrator with the
loop; the scripted feeds now deliver CandleClosed events and sources wake by time.)"""

from __future__ import annotations

import inspect
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.backtest.engine import run_backtest
from pivotal.backtest.replay import replay
from pivotal.backtest.result import BacktestResult
from pivotal.backtest.strategies import make_strategy
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.events import CandleClosed
from pivotal.core.orders import AccountSnapshot, Order, OrderRequest
from pivotal.core.ports import NEVER, BrokerEvent, DecisionContext, DecisionSource
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, TradingAction
from pivotal.runtime import kernel as kernel_module
from pivotal.runtime import loop as loop_module
from pivotal.runtime import replay_feed as feed_module
from pivotal.runtime.loop import LoopResult, TradingLoop
from pivotal.runtime.recorder import MemoryRecorder
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig, RiskManager
from pivotal.trading.settings import TradingSettings

MINUTE = 60_000
FEES = FeeSchedule(maker=0.0002, taker=0.001)


def _settings(
    *, allow_short: bool = False, fill: str = "next_open", **risk: Any
) -> TradingSettings:
    return TradingSettings(
        broker=SimulatedBrokerConfig(
            initial_cash=50_000.0, fees=FEES, fill_timing=fill, allow_short=allow_short
        ),
        risk=RiskConfig(allow_short=allow_short, **risk),
    )


def _assert_identical(loop: LoopResult, engine: BacktestResult, bar_ms: int) -> None:
    """Bit for bit: equity, times, fills, closed and open trades, events, decisions."""
    np.testing.assert_array_equal(loop.timestamps, engine.timestamps + bar_ms)
    assert np.array_equal(loop.equity, engine.equity)
    assert loop.trades is not None and loop.open_trades is not None and loop.fills is not None
    pd.testing.assert_frame_equal(loop.fills, engine.fills, check_exact=True)
    pd.testing.assert_frame_equal(loop.trades, engine.trades, check_exact=True)
    pd.testing.assert_frame_equal(loop.open_trades, engine.open_trades, check_exact=True)
    # A halt that trips in a span the engine skips is reported at the engine's next busy bar
    # and at its own bar by the loop: the alerts are the same, their place in the log is not.
    assert _split(loop.events) == _split(engine.events)
    assert loop.decisions == engine.settings["decisions"]


_OBSERVED = frozenset({"risk_circuit_breaker", "risk_daily_loss_limit", "risk_halt_reset"})


def _split(events: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Any]]:
    """(every other event in order, the alerts raised by observing the equity in order)."""
    return (
        [e for e in events if e["kind"] not in _OBSERVED],
        [e for e in events if e["kind"] in _OBSERVED],
    )


def _both(
    candles: Mapping[str, Candles],
    make: Any,
    settings: TradingSettings,
    timeframe: str = "1m",
    **kw: Any,
) -> tuple[LoopResult, BacktestResult]:
    engine = run_backtest(candles, make(), timeframe=timeframe, settings=settings, **kw)
    looped = replay(candles, make(), timeframe=timeframe, settings=settings, **kw)
    return looped, engine


class RandomActions:
    """Seeded BUY/SELL/CLOSE (some with a limit price or a quantity, some two at once).

    ``every_bar`` wakes at each bar; otherwise at a random third of the bars, so the engine
    skips the quiet bars between. Draws depend on the symbol and the seed only.
    """

    name = "random_actions"

    def __init__(self, seed: int, *, every_bar: bool, rate: float = 0.08) -> None:
        self.seed = seed
        self.every_bar = every_bar
        self.rate = rate
        self._plan: dict[str, tuple[np.ndarray, ...]] = {}
        self._wakes: dict[str, np.ndarray] = {}  # close times (UTC ms) of the wake bars

    def warmup_bars(self) -> int:
        return 3

    def prepare(self, symbol: str, candles: Candles) -> None:
        rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode())])
        n = len(candles)
        act = np.where(rng.random(n) < self.rate, rng.integers(1, 4, n), 0)
        second = np.where(rng.random(n) < 0.2, rng.integers(1, 4, n), 0)
        limit = rng.random(n) < 0.25
        offset = rng.uniform(-0.004, 0.004, n)
        sized = rng.random(n) < 0.2
        self._plan[symbol] = (act, second, limit, offset, sized, np.asarray(candles.close))
        wake_bars = np.flatnonzero(rng.random(n) < 0.33)
        self._wakes[symbol] = candles.timestamp[wake_bars] + MINUTE  # 1m bars in these tests

    def next_wake(self, symbol: str, now_ms: int) -> int:
        if self.every_bar:
            return now_ms
        wakes = self._wakes[symbol]
        at = int(np.searchsorted(wakes, now_ms))
        return int(wakes[at]) if at < len(wakes) else NEVER

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        act, second, limit, offset, sized, close = self._plan[context.symbol]
        j = context.bar_index
        assert len(context.candles) == j + 1  # the source sees nothing after the bar
        out = []
        for code in (act[j], second[j]):
            if code == 0:
                continue
            price = float(close[j] * (1 + offset[j])) if limit[j] else None
            quantity = 50.0 if sized[j] else None  # far above the caps: resized
            out.append(
                TradingAction(
                    Symbol.parse(context.symbol),
                    context.timestamp,
                    (Action.BUY, Action.SELL, Action.CLOSE)[int(code) - 1],
                    1.0,
                    self.name,
                    price,
                    quantity,
                )
            )
        return out


def _real(name: str, timeframe: str) -> Candles:
    root = shared_data_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    path = Path(root) / "ohlcv" / "binance-spot" / timeframe / f"{name}_USDT-{timeframe}.parquet"
    return Candles.from_frame(pd.read_parquet(path).reset_index(drop=True))


# ------------------------------------------------------------------ replay == backtest engine
def test_sma_cross_on_real_btc_1h_is_the_backtest() -> None:
    candles = {"BTC/USDT": _real("BTC", "1h")}
    looped, engine = _both(
        candles,
        lambda: make_strategy("sma_cross", {"fast": 10, "slow": 30}),
        _settings(fraction=0.9),
        timeframe="1h",
    )
    assert len(engine.trades) > 1_000
    _assert_identical(looped, engine, 3_600_000)


@pytest.mark.parametrize("fill", ["next_open", "current_close"])
def test_sma_cross_on_planted_data_is_the_backtest(fill: str) -> None:
    candles = {"SYN/USDT": planted_candles(5_000, seed=11)}
    looped, engine = _both(
        candles,
        lambda: make_strategy("sma_cross", {"fast": 3, "slow": 9}),
        _settings(fill=fill, fraction=0.5, stop_loss_atr=1.5, max_drawdown=0.03),
    )
    assert len(engine.trades) >= 10
    assert engine.fills["tag"].str.endswith(":stop").any()
    assert any(e["kind"] == "risk_circuit_breaker" for e in engine.events)
    _assert_identical(looped, engine, MINUTE)


def _two_symbols() -> dict[str, Candles]:
    """Two markets on one grid; the second starts later and misses some bars."""
    first = planted_candles(3_000, seed=1)
    second = planted_candles(2_600, seed=2, start_price=30.0, start_time=int(first.timestamp[300]))
    keep = np.ones(len(second), dtype=bool)
    keep[[10, 11, 12, 500, 1_700]] = False
    return {"AAA/USDT": first, "BBB/USDT": second[keep]}


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_strategy("sma_cross", {"fast": 4, "slow": 12}),
        lambda: RandomActions(5, every_bar=False),
        lambda: RandomActions(6, every_bar=True),
    ],
    ids=["sma_cross", "random_sparse", "random_every_bar"],
)
def test_two_symbols_in_one_account_are_the_backtest(make: Any) -> None:
    candles = _two_symbols()
    looped, engine = _both(
        candles, make, _settings(allow_short=True, fraction=0.4, stop_loss_pct=0.004)
    )
    assert set(engine.trades["symbol"]) == set(candles)
    _assert_identical(looped, engine, MINUTE)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    every_bar=st.booleans(),
    allow_short=st.booleans(),
    fill=st.sampled_from(["next_open", "current_close"]),
)
def test_random_actions_with_stops_and_a_breaker_are_the_backtest(
    seed: int, every_bar: bool, allow_short: bool, fill: str
) -> None:
    candles = {"SYN/USDT": planted_candles(1_500, seed=seed % 1000)}
    looped, engine = _both(
        candles,
        lambda: RandomActions(seed, every_bar=every_bar),
        _settings(
            allow_short=allow_short,
            fill=fill,
            fraction=0.6,
            stop_loss_pct=0.003,
            take_profit_pct=0.005,
            max_drawdown=0.02,
        ),
    )
    assert engine.settings["decisions"] > 0
    _assert_identical(looped, engine, MINUTE)


def test_higher_timeframes_show_the_same_closed_bars() -> None:
    candles = planted_candles(600, seed=3)
    frame = candles.to_frame()
    frame["group"] = frame["timestamp"] // 900_000
    agg = frame.groupby("group").agg(
        timestamp=("timestamp", "first"),
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    m15 = Candles.from_frame(agg.reset_index(drop=True))
    seen: dict[str, list[tuple[int, int]]] = {}

    class Probe(RandomActions):
        def __init__(self, tag: str) -> None:
            super().__init__(0, every_bar=True)
            self.tag = tag

        def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
            shown = context.higher[Timeframe.M15]
            seen.setdefault(self.tag, []).append((context.timestamp, len(shown)))
            return super().decide(context)

    higher = {"SYN/USDT": {Timeframe.M15: m15}}
    engine = run_backtest(
        {"SYN/USDT": candles}, Probe("engine"), timeframe="1m", settings=_settings(), higher=higher
    )
    looped = replay(
        {"SYN/USDT": candles}, Probe("loop"), timeframe="1m", settings=_settings(), higher=higher
    )
    assert seen["engine"] == seen["loop"]
    assert any(n > 0 for _, n in seen["loop"])
    closes = m15.timestamp + 900_000
    assert all(n == np.count_nonzero(closes <= t) for t, n in seen["loop"])  # closed bars only
    _assert_identical(looped, engine, MINUTE)


# ------------------------------------------------------------------ the loop's own contracts
def test_talib_atr_at_a_bar_depends_only_on_the_bars_before() -> None:
    """What lets the loop compute the ATR over the candles known so far."""
    candles = planted_candles(400, seed=8)
    bulk = talib.ATR(candles.high, candles.low, candles.close, timeperiod=14)
    for j in (0, 13, 14, 15, 50, 399):
        part = talib.ATR(
            candles.high[: j + 1], candles.low[: j + 1], candles.close[: j + 1], timeperiod=14
        )
        assert np.array_equal(part, bulk[: j + 1], equal_nan=True)


class ProtocolBroker:
    """Only the Broker protocol of a SimulatedBroker: the loop must need nothing else."""

    def __init__(self, inner: SimulatedBroker) -> None:
        self._inner = inner

    def submit(self, request: OrderRequest) -> Order:
        return self._inner.submit(request)

    def cancel(self, client_order_id: str) -> Order:
        return self._inner.cancel(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._inner.open_orders(symbol)

    def order(self, client_order_id: str) -> Order:
        return self._inner.order(client_order_id)

    def account(self) -> AccountSnapshot:
        return self._inner.account()

    def drain_events(self) -> list[BrokerEvent]:
        return self._inner.drain_events()


def _live_like_loop(
    candles: Mapping[str, Candles], source: DecisionSource, config: TradingSettings
) -> tuple[TradingLoop, ReplayFeed, SimulatedBroker]:
    """A loop as paper trading builds it: a protocol-only broker, no candle view (the loop
    keeps the bars the feed delivers), the simulated broker as the venue that matches."""
    feed = ReplayFeed.from_candles(candles, timeframe="1m")
    venue = SimulatedBroker(feed.clock, config.broker, bar_ms=MINUTE, symbols=list(candles))
    broker = ProtocolBroker(venue)
    risk = RiskManager(config.risk)
    executor = ActionExecutor(
        broker, risk, fees=config.broker.fees, lot_size=config.broker.lot_size
    )
    for symbol, bars in candles.items():
        source.prepare(symbol, bars)
    loop = TradingLoop(
        clock=feed.clock,
        broker=broker,
        risk=risk,
        source=source,
        executor=executor,
        timeframe="1m",
        venue=venue,
        atr_period=config.atr_period,
    )
    return loop, feed, venue


def test_a_protocol_only_broker_and_the_loops_own_candles_give_the_same_run() -> None:
    candles = _two_symbols()
    config = _settings(allow_short=True, fraction=0.4, stop_loss_atr=2.0, max_drawdown=0.05)
    reference = replay(candles, RandomActions(9, every_bar=True), timeframe="1m", settings=config)
    loop, feed, venue = _live_like_loop(candles, RandomActions(9, every_bar=True), config)
    result = loop.run(feed)
    assert result.trades is None  # a plain loop knows no trade table, only events
    assert np.array_equal(result.equity, reference.equity)
    np.testing.assert_array_equal(result.timestamps, reference.timestamps)
    assert result.events == reference.events
    assert result.decisions == reference.decisions
    assert reference.fills is not None
    assert len(venue.fills_frame()) == len(reference.fills) > 20
    assert sum(e["kind"] == "fill" for e in result.events) == len(reference.fills)


def test_the_loop_never_reads_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (loop_module, kernel_module, feed_module):
        source_text = inspect.getsource(module)
        for forbidden in ("import time", "datetime", "WallClock", "perf_counter"):
            assert forbidden not in source_text
    candles = {"SYN/USDT": planted_candles(800, seed=5)}
    config = _settings(fraction=0.5, stop_loss_pct=0.003, max_drawdown=0.02)
    loop, feed, _ = _live_like_loop(candles, RandomActions(2, every_bar=True), config)

    def wall_clock(*_: object) -> float:
        raise AssertionError("the run loop read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, wall_clock)
    result = loop.run(feed)
    monkeypatch.undo()
    assert result.decisions == 800 - 3
    np.testing.assert_array_equal(result.timestamps, candles["SYN/USDT"].timestamp + MINUTE)


class _Script:
    """A feed that replays a fixed script of (clock time, 1m bars)."""

    def __init__(self, clock: ReplayClock, script: list[tuple[int, list[tuple[str, Candles]]]]):
        self.clock = clock
        self.script = list(script)

    def next_events(self) -> list[CandleClosed] | None:
        if not self.script:
            return None
        now, bars = self.script.pop(0)
        self.clock.advance_to(now)
        return [CandleClosed(s, Timeframe.M1, c, int(c.timestamp[0]) + MINUTE) for s, c in bars]


def _bare_loop(candles: Candles, clock: Any, **kw: Any) -> TradingLoop:
    broker = SimulatedBroker(clock, bar_ms=MINUTE, symbols=["SYN/USDT"])
    risk = RiskManager()
    source = RandomActions(0, every_bar=True)
    source.prepare("SYN/USDT", candles)
    executor = ActionExecutor(broker, risk, fees=FeeSchedule(), lot_size=1e-8)
    return TradingLoop(
        clock=clock,
        broker=broker,
        risk=risk,
        source=source,
        executor=executor,
        timeframe="1m",
        venue=broker,
        **kw,
    )


def test_a_feed_that_breaks_time_is_refused() -> None:
    candles = planted_candles(10, seed=1)
    ts = candles.timestamp

    def row(j: int) -> Candles:
        return candles[j : j + 1]

    clock = ReplayClock(int(ts[0]))
    early = _Script(clock, [(int(ts[0]), [("SYN/USDT", row(0))])])
    with pytest.raises(ValueError, match="only once it has closed"):
        _bare_loop(candles, clock).run(early)

    clock = ReplayClock(int(ts[0]))
    stuck = _Script(
        clock,
        [(int(ts[1]), [("SYN/USDT", row(0))]), (int(ts[1]), [("SYN/USDT", row(1))])],
    )
    with pytest.raises(ValueError, match="move the clock forward"):
        _bare_loop(candles, clock).run(stuck)

    clock = ReplayClock(int(ts[0]))
    backwards = _Script(
        clock,
        [(int(ts[3]), [("SYN/USDT", row(2))]), (int(ts[4]), [("SYN/USDT", row(1))])],
    )
    with pytest.raises(ValueError, match="oldest first"):
        _bare_loop(candles, clock).run(backwards)


def test_bad_wiring_is_refused_with_a_reason() -> None:
    candles = planted_candles(10, seed=1)
    clock = ReplayClock(int(candles.timestamp[0]))
    loop = _bare_loop(candles, clock)
    other = RiskManager()
    with pytest.raises(ValueError, match="same objects"):
        TradingLoop(
            clock=clock,
            broker=loop.kernel.broker,
            risk=other,
            source=loop.source,
            executor=loop.kernel.executor,
            timeframe="1m",
        )
    with pytest.raises(TypeError, match="Clock"):
        _bare_loop(candles, object())
    with pytest.raises(ValueError, match="atr_period"):
        _bare_loop(candles, clock, atr_period=0)
    with pytest.raises(TypeError, match="MarketFeed"):
        loop.run(object())  # type: ignore[arg-type]

    class Backwards(RandomActions):
        def next_wake(self, symbol: str, now_ms: int) -> int:
            return now_ms - 1

    with pytest.raises(ValueError, match="earlier time"):
        replay({"SYN/USDT": candles}, Backwards(0, every_bar=True), timeframe="1m")
    with pytest.raises(ValueError, match="not traded"):
        replay(
            {"SYN/USDT": candles},
            RandomActions(0, every_bar=True),
            timeframe="1m",
            higher={"ETH/USDT": {Timeframe.M15: candles}},
        )


def test_a_recorder_given_to_the_replay_receives_the_whole_run() -> None:
    candles = _two_symbols()
    config = _settings(allow_short=True, fraction=0.4, stop_loss_pct=0.004)
    recorder = MemoryRecorder()
    result = replay(
        candles,
        RandomActions(4, every_bar=False),
        timeframe="1m",
        settings=config,
        recorder=recorder,
    )
    times, equity = recorder.equity_curve()
    np.testing.assert_array_equal(times, result.timestamps)
    assert np.array_equal(equity, result.equity)
    assert tuple(recorder.events) == result.events
    assert len(recorder.decisions) == result.decisions > 0
    assert {d["kind"] for d in recorder.decisions} == {"decision"}
    assert result.fills is not None and len(recorder.fills) == len(result.fills) > 0


def test_a_progress_bar_changes_nothing_in_the_engine_or_the_loop() -> None:
    candles = {"SYN/USDT": planted_candles(1_200, seed=4)}
    for make_run in (run_backtest, replay):
        runs = [
            make_run(
                candles,
                make_strategy("sma_cross", {"fast": 4, "slow": 12}),
                timeframe="1m",
                progress=shown,
            )
            for shown in (False, True)
        ]
        quiet, shown = runs
        np.testing.assert_array_equal(quiet.equity, shown.equity)
        assert len(quiet.trades) == len(shown.trades) > 0
