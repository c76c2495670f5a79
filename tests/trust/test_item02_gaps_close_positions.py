"""Issue 13 item 2 (trading half): no position is carried through a gap in the data unless
the user asks (``gaps: hold``), and every result lists the gaps it met.

Synthetic candles with a planted hole, plus the real BTC 1m windows of ../shared/data
(2020-05..06 and 2021-11..12, 509 days apart: the hole a store built from them has).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from pivotal.backtest.api import backtest
from pivotal.backtest.engine import run_backtest
from pivotal.backtest.export import read_json, to_json_dict, write_json
from pivotal.backtest.replay import replay
from pivotal.backtest.report import build_figure, write_html
from pivotal.backtest.signals import Signals
from pivotal.backtest.strategies import SignalStrategy, make_strategy
from pivotal.backtest.vectorized import run_signals
from pivotal.core.candles import Candles
from pivotal.core.gaps import find_series_gaps
from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs.spec import InputSpec
from pivotal.rl.config import EnvConfig
from pivotal.rl.env import BUY, HOLD, TradingEnv
from pivotal.rl.observations import MarketObservations
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings

MS = 60_000
FEE = 0.001
SYMBOL = "BTC/USDT"


def _with_hole(n: int = 1_200, at: int = 600, missing: int = 500, seed: int = 1) -> Candles:
    """``n`` planted 1m candles with ``missing`` bars removed after bar ``at - 1``."""
    c = planted_candles(n, seed=seed)
    ts = c.timestamp.copy()
    ts[at:] += missing * MS
    return Candles(ts, c.open, c.high, c.low, c.close, c.volume)


def _contiguous(c: Candles) -> Candles:
    """The same bars relabelled one minute apart: what bridging a gap amounts to."""
    ts = c.timestamp[0] + MS * np.arange(len(c), dtype=np.int64)
    return Candles(ts, c.open, c.high, c.low, c.close, c.volume)


def _settings(fill: str = "next_open", gaps: str = "close", **risk: object) -> TradingSettings:
    return TradingSettings(
        broker=SimulatedBrokerConfig(
            initial_cash=100_000.0, fees=FeeSchedule(maker=FEE, taker=FEE), fill_timing=fill
        ),
        risk=RiskConfig(fraction=1.0 - 2.2e-16, **risk),
        gaps=gaps,
    )


def _random(n: int, seed: int, rate: float = 0.02) -> SignalStrategy:
    rng = np.random.default_rng(seed)
    entries, exits = rng.random(n) < rate, rng.random(n) < rate
    return SignalStrategy("random", lambda c: Signals(entries, exits, 0))


def _spans_a_gap(trades: pd.DataFrame, candles: Candles) -> list[int]:
    """Rows of ``trades`` whose holding period contains a gap of ``candles``."""
    gaps = find_series_gaps(candles.timestamp, MS)
    rows = []
    for i, (entry, exit_) in enumerate(zip(trades["entry_time"], trades["exit_time"], strict=True)):
        if any(entry <= g.last_before and exit_ > g.last_before + MS for g in gaps):
            rows.append(i)
    return rows


# -- the event engine -----------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["next_open", "current_close"])
def test_a_position_is_closed_at_the_last_bar_before_the_gap(fill: str) -> None:
    candles = _with_hole()
    g = 599  # last bar before the hole
    result = run_backtest(
        {SYMBOL: candles}, make_strategy("buy_and_hold"), timeframe="1m", settings=_settings(fill)
    )
    trades = result.trades
    assert len(trades) == 1 and trades["exit_reason"].tolist() == ["gap"]
    trade = trades.iloc[0]
    assert trade.exit_bar == g and trade.exit_price == candles.close[g]
    assert trade.exit_time == candles.timestamp[g] + MS  # at that bar's close
    assert _spans_a_gap(trades, candles) == []
    assert result.open_trades.empty  # buy-and-hold does not re-enter after the gap
    gap_fills = result.fills[result.fills["tag"] == "gap"]
    assert len(gap_fills) == 1 and gap_fills["fee"].iloc[0] > 0
    # flat from the gap's close on: equity stops moving with the price
    assert np.all(result.equity[g:] == result.equity[g])
    assert [(d["symbol"], d["timeframe"], d["missing_bars"]) for d in result.gaps] == [
        (SYMBOL, "1m", 500)
    ]


def test_hold_carries_the_position_exactly_as_if_the_bars_were_adjacent() -> None:
    candles = _with_hole()
    strategy = _random(len(candles), 4)
    held = run_backtest(
        {SYMBOL: candles}, strategy, timeframe="1m", settings=_settings(gaps="hold")
    )
    bridged = run_backtest(
        {SYMBOL: _contiguous(candles)}, _random(len(candles), 4), timeframe="1m",
        settings=_settings(gaps="close"),
    )  # fmt: skip
    assert _spans_a_gap(held.trades, candles), "the seed should hold a trade across the hole"
    cols = ["entry_bar", "exit_bar", "entry_price", "exit_price", "size", "pnl", "exit_reason"]
    pd.testing.assert_frame_equal(held.trades[cols], bridged.trades[cols])
    np.testing.assert_array_equal(held.equity, bridged.equity)
    assert "gap" not in set(held.trades["exit_reason"])
    assert len(held.gaps) == 1  # listed even when held


def test_close_differs_from_hold_only_by_the_gap_exit() -> None:
    candles = _with_hole()
    closed = run_backtest(
        {SYMBOL: candles}, _random(len(candles), 4), timeframe="1m", settings=_settings()
    )
    assert _spans_a_gap(closed.trades, candles) == []
    assert (closed.trades["exit_reason"] == "gap").sum() == 1
    held = run_backtest(
        {SYMBOL: candles}, _random(len(candles), 4), timeframe="1m", settings=_settings(gaps="hold")
    )
    before = held.trades[held.trades["exit_time"] <= candles.timestamp[599]]
    pd.testing.assert_frame_equal(
        closed.trades.iloc[: len(before)].reset_index(drop=True), before.reset_index(drop=True)
    )


def test_no_entry_on_the_last_bar_before_a_gap_and_resting_orders_are_cancelled() -> None:
    candles = _with_hole()
    n = len(candles)
    entries = np.zeros(n, dtype=bool)
    entries[[598, 599]] = True  # 598 fills at 599's open then closes; 599 would fill after
    strategy = SignalStrategy("edge", lambda c: Signals(entries, np.zeros(n, bool), 0))
    result = run_backtest(
        {SYMBOL: candles}, strategy, timeframe="1m", settings=_settings(stop_loss_pct=0.5)
    )
    assert result.trades["entry_bar"].tolist() == [599]
    assert result.trades["exit_reason"].tolist() == ["gap"] and result.open_trades.empty
    stops = [e for e in result.events if e["kind"] == "order" and e["status"] == "cancelled"]
    assert stops and all(e["timestamp"] == candles.timestamp[599] + MS for e in stops)


@pytest.mark.parametrize("fill", ["next_open", "current_close"])
@pytest.mark.parametrize("seed", [0, 1])
def test_event_engine_and_vectorized_path_agree_at_gaps(fill: str, seed: int) -> None:
    candles = _with_hole(3_000, at=1_000, missing=50, seed=seed)
    ts = candles.timestamp.copy()
    ts[2_000:] += 3 * 60 * MS  # a second hole
    candles = Candles(ts, candles.open, candles.high, candles.low, candles.close, candles.volume)
    strategy = _random(len(candles), seed + 10)
    event = run_backtest({SYMBOL: candles}, strategy, timeframe="1m", settings=_settings(fill))
    entries, exits = strategy.signals(SYMBOL)
    fast = run_signals(
        candles, (entries, exits), symbol=SYMBOL, fee=FEE, fraction=1.0 - 2.2e-16,
        fill_timing=fill, bar_ms=MS,
    )  # fmt: skip
    assert (event.trades["exit_reason"] == "gap").sum() >= 1
    for column in ("entry_bar", "exit_bar", "entry_time", "exit_time", "exit_reason"):
        assert event.trades[column].tolist() == fast.trades[column].tolist(), column
    np.testing.assert_allclose(event.trades["pnl"], fast.trades["pnl"], rtol=1e-9)
    np.testing.assert_allclose(event.equity, fast.equity, rtol=1e-9)
    assert [dict(g) for g in event.gaps] == [dict(g) for g in fast.gaps]
    assert _spans_a_gap(fast.trades, candles) == []


def test_a_signal_exit_filling_on_the_gap_bar_is_a_signal_exit_in_both_paths() -> None:
    """An exit signal on the bar before the last one fills at the last bar's open (next_open):
    that is the signal's exit, not a gap exit at the close."""
    candles = _with_hole(1_200, at=600, missing=500)
    entries, exits = np.zeros(len(candles), bool), np.zeros(len(candles), bool)
    entries[590], exits[598] = True, True
    strategy = SignalStrategy("fixed", lambda c: Signals(entries, exits, 0))
    event = run_backtest({SYMBOL: candles}, strategy, timeframe="1m", settings=_settings())
    fast = run_signals(
        candles, (entries, exits), symbol=SYMBOL, fee=FEE, fraction=1.0 - 2.2e-16, bar_ms=MS
    )
    for result in (event, fast):
        trade = result.trades.iloc[0]
        assert trade.exit_bar == 599 and trade.exit_reason != "gap"
        assert trade.exit_price == candles.open[599]
        assert trade.exit_time == candles.timestamp[599]  # at the bar's open
    assert event.trades["exit_reason"].tolist() == fast.trades["exit_reason"].tolist()


def test_vectorized_hold_is_the_old_behaviour() -> None:
    candles = _with_hole()
    entries = np.zeros(len(candles), bool)
    entries[10] = True
    held = run_signals(candles, (entries, np.zeros(len(candles), bool)), gaps="hold", bar_ms=MS)
    bridged = run_signals(_contiguous(candles), (entries, np.zeros(len(candles), bool)), bar_ms=MS)
    assert held.trades.empty and len(held.open_trades) == 1
    np.testing.assert_array_equal(held.equity, bridged.equity)


def test_only_the_symbol_with_the_gap_is_closed() -> None:
    btc = _with_hole(1_000, at=500, missing=40)
    eth = planted_candles(1_040, seed=9)  # contiguous over the same span
    result = run_backtest(
        {SYMBOL: btc, "ETH/USDT": eth},
        make_strategy("buy_and_hold"),
        timeframe="1m",
        settings=TradingSettings(risk=RiskConfig(fraction=0.4)),
    )
    closed = result.trades
    assert closed["symbol"].tolist() == [SYMBOL] and closed["exit_reason"].tolist() == ["gap"]
    assert closed["exit_time"].iloc[0] == btc.timestamp[499] + MS
    assert result.open_trades["symbol"].tolist() == ["ETH/USDT"]
    assert [g["symbol"] for g in result.gaps] == [SYMBOL]


# -- what the user reads --------------------------------------------------------------------------
def test_the_gaps_are_in_the_json_and_the_report(tmp_path: Path) -> None:
    candles = _with_hole()
    result = backtest({SYMBOL: candles}, "buy_and_hold", timeframe="1m", settings=_settings())
    document = read_json(write_json(result, tmp_path / "r.json"))
    assert document == to_json_dict(result)
    (gap,) = document["gaps"]
    assert (gap["symbol"], gap["missing_bars"]) == (SYMBOL, 500)
    assert gap["last_before_ms"] == int(candles.timestamp[599])
    assert document["trades"][0]["exit_reason"] == "gap"
    json.dumps(document, allow_nan=False)
    figure = build_figure(result, {SYMBOL: candles})
    assert any(s.type == "rect" for s in figure.layout.shapes)
    page = write_html(result, {SYMBOL: candles}, tmp_path / "r.html", title="t").read_text()
    assert "Gaps in the data" in page and "500 1m bars missing" in page
    assert '<td class="text">gap</td>' in page or ">gap<" in page


def test_contiguous_data_reports_no_gaps_and_nothing_changes() -> None:
    candles = planted_candles(800, seed=2)
    a = run_backtest({SYMBOL: candles}, _random(800, 1), timeframe="1m", settings=_settings())
    b = run_backtest(
        {SYMBOL: candles}, _random(800, 1), timeframe="1m", settings=_settings(gaps="hold")
    )
    assert a.gaps == () and b.gaps == ()
    pd.testing.assert_frame_equal(a.trades, b.trades)


# -- the run loop (orchestrator) ------------------------------------------------------------------
def test_trading_loop_closes_at_the_gap_like_the_engine() -> None:
    candles = _with_hole(900, at=400, missing=30)
    entries, exits = np.zeros(900, bool), np.zeros(900, bool)
    entries[[10, 300, 500]], exits[[100, 700]] = True, True

    def strategy() -> SignalStrategy:
        return SignalStrategy("fixed", lambda c: Signals(entries, exits, 0))

    for gaps in ("close", "hold"):
        settings = _settings(gaps=gaps)
        loop = replay({SYMBOL: candles}, strategy(), timeframe="1m", settings=settings)
        engine = run_backtest({SYMBOL: candles}, strategy(), timeframe="1m", settings=settings)
        assert loop.trades is not None
        pd.testing.assert_frame_equal(loop.trades, engine.trades)
        np.testing.assert_allclose(loop.equity, engine.equity, rtol=1e-12)
        assert [dict(g) for g in loop.gaps] == [dict(g) for g in engine.gaps]
        reasons = set(loop.trades["exit_reason"])
        assert ("gap" in reasons) == (gaps == "close")
        if gaps == "close":
            assert loop.trades["exit_bar"].tolist() == [101, 399, 701]
            assert _spans_a_gap(loop.trades, candles) == []
        else:
            assert loop.trades["exit_bar"].tolist() == [101, 701]


# -- the RL environment ---------------------------------------------------------------------------
def _env(gaps: str, **config: object) -> tuple[TradingEnv, Candles]:
    candles = _with_hole(900, at=400, missing=30, seed=5)
    tf = Timeframe.parse("1m")
    spec = InputSpec.candles([tf], frames=8, min_frames=8)
    obs = MarketObservations({tf: candles}, spec)
    obs.fit_scaler(int(obs.times[len(obs) // 2]))
    values = {
        "frames": 8, "episode_length": 200, "random_start": False,
        "settings": _settings(gaps=gaps), **config,
    }  # fmt: skip
    return TradingEnv(obs, EnvConfig.model_validate(values)), candles


def test_rl_episode_is_truncated_at_a_gap_with_the_position_closed() -> None:
    env, candles = _env("close")
    gap_bar = 399
    first = gap_bar - 20 - int(env.observations.bars[0])
    env.reset(seed=0, options={"start": first})
    info: dict[str, object] = {}
    for k in range(40):
        _, _, terminated, truncated, info = env.step(BUY if k == 0 else HOLD)
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert info["bar"] == gap_bar and info["position"] == 0.0
    trades = env.broker.closed_trades()
    assert trades["exit_reason"].tolist() == ["gap"]
    assert trades["exit_time"].iloc[0] == candles.timestamp[gap_bar] + MS
    # the next sequential episode starts after the hole, never on its last bar
    env.reset()
    assert env.observations.bars[0] + env.current_step > gap_bar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


def test_rl_vector_env_truncates_at_the_gap_too() -> None:
    from pivotal.rl.vector import VectorTradingEnv

    env, _ = _env("close")
    first = 399 - 3 - int(env.observations.bars[0])
    vec = VectorTradingEnv(env.observations, env.config, 2)
    vec.reset(seed=0, options={"start": first})
    truncated = np.zeros(2, bool)
    for _ in range(3):
        _, _, terminated, truncated, infos = vec.step(np.array([BUY, HOLD]))
        assert not terminated.any()
    assert truncated.all() and (infos["bar"] == 399).all() and (infos["position"] == 0.0).all()


def test_rl_hold_steps_across_the_gap() -> None:
    env, _ = _env("hold")
    gap_bar = 399
    first = gap_bar - 5 - int(env.observations.bars[0])
    env.reset(seed=0, options={"start": first})
    for k in range(10):
        _, _, terminated, truncated, info = env.step(BUY if k == 0 else HOLD)
        assert not (terminated or truncated)
    assert info["bar"] > gap_bar and info["position"] > 0.0


# -- real data: the 2020 → 2021 hole of the BTC 1m windows ----------------------------------------
def _real_windows() -> Candles:
    root = shared_data_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    folder = Path(root) / "ohlcv" / "binance-spot" / "1m" / "windows"
    parts: Sequence[Path] = sorted(folder.glob("BTC_USDT-1m_202*.parquet"))[:2]
    if len(parts) < 2:
        pytest.skip(f"{folder} lacks the 2020 and 2021 BTC windows")
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return Candles.from_frame(frame[["timestamp", "open", "high", "low", "close", "volume"]])


def test_real_btc_sma_cross_holds_no_trade_across_the_hole() -> None:
    candles = _real_windows()
    gaps = find_series_gaps(candles.timestamp, MS)
    longest = max(g.first_after - g.last_before for g in gaps)
    assert longest > 300 * 86_400_000  # the hole is there
    closed = backtest({SYMBOL: candles}, "sma_cross", timeframe="1m", settings=_settings())
    held = backtest({SYMBOL: candles}, "sma_cross", timeframe="1m", settings=_settings(gaps="hold"))
    for result in (closed, held):
        assert {(g["first_after_ms"], g["missing_bars"]) for g in result.gaps} == {
            (g.first_after, g.missing) for g in gaps
        }
    assert _spans_a_gap(closed.trades, candles) == []
    durations = closed.trades["exit_time"] - closed.trades["entry_time"]
    assert durations.max() < longest
    assert (closed.trades["exit_reason"] == "gap").sum() >= 1 or not _spans_a_gap(
        held.trades, candles
    )
    vec = backtest(
        {SYMBOL: candles}, "sma_cross", timeframe="1m", settings=_settings(), engine="vectorized"
    )
    assert vec.trades["exit_time"].tolist() == closed.trades["exit_time"].tolist()


# -- the command line -----------------------------------------------------------------------------
def test_cli_warns_lists_the_gaps_and_takes_gaps_hold(tmp_path: Path) -> None:
    from pivotal.testing.cli import run_cli

    candles = _with_hole(1_200, at=600, missing=5_000)  # mostly gaps: 5,000 of 6,200 bars
    path = tmp_path / "btc.parquet"
    candles.to_frame().to_parquet(path)
    args = ["backtest", "--data", str(path), "-s", SYMBOL, "--strategy", "buy_and_hold"]
    done = run_cli(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mostly gaps" in out and out.index("mostly gaps") < out.index("Return")
    assert "gaps met: 1 (trades closed at a gap: 1)" in out and "5,000 1m bars missing" in out
    held = run_cli([*args, "--gaps", "hold"], cwd=tmp_path)
    assert held.returncode == 0, held.stderr
    assert "gaps met: 1 (trades closed at a gap: 0)" in held.stdout
    bad = run_cli([*args, "--gaps", "bridge"], cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "close or hold" in bad.stderr


# -- the orchestrated run (tiny trained experts) --------------------------------------------------
@pytest.mark.slow  # trains two tiny experts (about a minute on two busy cores)
def test_orchestrated_run_closes_at_the_gap_and_lists_it(tmp_path: Path) -> None:
    from pivotal.data.duckdb_store import DuckDBStore
    from pivotal.orchestrator.run import run_backtest_mode
    from pivotal.orchestrator.run_file import RunConfig
    from pivotal.testing.orchestrator import GRID_START, train_tiny_experts

    c = planted_candles(1_400, seed=2, start_time=GRID_START)
    ts = c.timestamp.copy()
    ts[900:] += 4_000 * MS  # a hole the run crosses (most of the span: mostly gaps)
    candles = Candles(ts, c.open, c.high, c.low, c.close, c.volume)
    tiny = train_tiny_experts(tmp_path / "experts", candles)
    experts = [
        {"name": "pivot_cnn", "kind": "pivot_cnn", "checkpoint": str(tiny.cnn)},
        {"name": "dqn", "kind": "dqn", "checkpoint": str(tiny.dqn), "depends_on": ["pivot_cnn"]},
    ]
    runs = {}
    for gaps in ("close", "hold"):
        config = RunConfig.model_validate(
            {
                "timeframe": "1m",
                "since": int(ts[700]),
                "until": int(ts[1_100]),
                "warmup_bars": 50,
                "settings": {"gaps": gaps},
                "orchestrator": {
                    "experts": experts,
                    "gate": {"buy_threshold": 0.0, "sell_threshold": 0.0},
                    "history": {"enabled": False},
                },
            }
        )
        warned: list[str] = []
        with DuckDBStore(tiny.store, read_only=True) as store:
            runs[gaps] = run_backtest_mode(store, config, history=False, warn=warned.append)
        assert warned and "mostly gaps" in warned[0]
    closed, held = runs["close"], runs["hold"]
    for run in (closed, held):
        assert [(g["symbol"], g["timeframe"], g["missing_bars"]) for g in run.gaps] == [
            (SYMBOL, "1m", 4_000)
        ]
    assert _spans_a_gap(closed.result.trades, candles) == []
    reasons = closed.result.trades["exit_reason"].tolist()
    assert reasons.count("gap") == 1 or not _spans_a_gap(held.result.trades, candles)
