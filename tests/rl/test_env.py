"""The trading environment: Gymnasium's checker, equality with the backtester, no look-ahead,
bad input, the fast path, the vector env and determinism."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from pivotal.backtest.engine import run_backtest
from pivotal.core import Candles
from pivotal.core.errors import DataError
from pivotal.core.ports import DecisionContext
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import TradingAction
from pivotal.data.resample import resample
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.scalers import StandardScaler
from pivotal.rl.config import EnvConfig
from pivotal.rl.env import ACTIONS, TradingEnv
from pivotal.rl.observations import STATE_FEATURES, MarketObservations
from pivotal.rl.vector import VectorTradingEnv
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings

FRAMES = 16
M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")


def _candles(n: int = 2400, seed: int = 3) -> dict[Timeframe, Candles]:
    m1 = planted_candles(n, seed=seed)
    return {M1: m1, M5: resample(m1, M1, M5)}


def _observations(
    candles: dict[Timeframe, Candles],
    *,
    scaler: StandardScaler | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> MarketObservations:
    spec = InputSpec.candles(list(candles), frames=FRAMES, min_frames=FRAMES)
    obs = MarketObservations(candles, spec, scaler=scaler, extra=extra)
    if scaler is None:
        obs.fit_scaler(int(obs.times[len(obs) // 2]))
    return obs


def _config(**changes: object) -> EnvConfig:
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(slippage="fixed", slippage_bps=2.0, allow_short=True),
        risk=RiskConfig(fraction=0.5, allow_short=True, stop_loss_pct=0.004, max_drawdown=0.5),
    )
    values: dict[str, object] = {
        "frames": FRAMES,
        "streams": ("5m",),
        "episode_length": 120,
        "settings": settings,
    }
    values.update(changes)
    return EnvConfig.model_validate(values)


@pytest.fixture(scope="module")
def market() -> MarketObservations:
    return _observations(_candles())


def _check(env: TradingEnv) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box, no registered spec: warnings only
        check_env(env, skip_render_check=True)


def _rollout(
    env: TradingEnv, actions: Sequence[int], seed: int
) -> tuple[list[np.ndarray], list[float], list[dict[str, object]]]:
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [dict(info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        infos.append(dict(info))
        if terminated or truncated:
            break
    return observations, rewards, infos


# -- Gymnasium's checker -------------------------------------------------------------------------
def test_check_env_planted(market: MarketObservations) -> None:
    env = TradingEnv(market, _config())
    _check(env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (FRAMES, market.width) == env.observation_space.shape
    assert market.feature_names[market.market_features :][:4] == list(STATE_FEATURES)
    assert env.action_space.n == len(ACTIONS) == 4


def test_check_env_real_data() -> None:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet")
    m1 = Candles.from_frame(frame.tail(3000).reset_index(drop=True))
    candles = {M1: m1, M5: resample(m1, M1, M5)}
    obs = _observations(candles)
    env = TradingEnv(obs, _config(random_start=False), start=len(obs) // 2)
    _check(env)
    _, rewards, infos = _rollout(env, [1] * 60 + [3] * 10, seed=1)
    assert all(np.isfinite(rewards)) and infos[-1]["fills"] >= 0


# -- the backtester's accounting -----------------------------------------------------------------
class _Replay:
    """A decision source that returns recorded actions at their bars (HOLD elsewhere)."""

    name = "replay"

    def __init__(self, actions: dict[int, TradingAction]) -> None:
        self.actions = actions

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        pass

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        action = self.actions.get(context.bar_index)
        return () if action is None else (action,)


@pytest.mark.parametrize("fast_path", [True, False])
def test_equity_and_fills_equal_the_backtester(market: MarketObservations, fast_path: bool) -> None:
    config = _config(episode_length=400)
    env = TradingEnv(market, config, fast_path=fast_path)
    rng = np.random.default_rng(7)
    actions = rng.choice(4, size=400, p=[0.55, 0.2, 0.15, 0.1]).tolist()
    _, _, infos = _rollout(env, actions, seed=11)
    recorded = {
        int(info["bar"]): TradingAction(
            env._trading_symbol, int(info["time"]), ACTIONS[a], 1.0, "rl"
        )
        for info, a in zip(infos[:-1], actions, strict=False)
    }
    last_bar = int(infos[-1]["bar"])
    candles = market.candles.head(last_bar + 1)
    result = run_backtest(
        {config.symbol: candles}, _Replay(recorded), timeframe="1m", settings=config.settings
    )
    ours = env.broker.fills_frame()
    theirs = result.fills
    assert len(ours) >= 10, "the episode should trade"
    assert len(ours) == len(theirs)
    for column in ("bar", "timestamp", "side", "tag"):
        assert ours[column].tolist() == theirs[column].tolist()
    for column in ("price", "quantity", "fee"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-12, atol=0)
    bars = np.array([int(i["bar"]) for i in infos])
    equity = np.array([float(i["equity"]) for i in infos])
    np.testing.assert_allclose(equity, result.equity[bars], rtol=1e-12, atol=0)


def test_fast_path_equals_slow_path(market: MarketObservations) -> None:
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 4, size=200).tolist()
    fast = _rollout(TradingEnv(market, _config(), fast_path=True), actions, seed=5)
    slow = _rollout(TradingEnv(market, _config(), fast_path=False), actions, seed=5)
    assert fast[1] == slow[1] and fast[2] == slow[2]
    for a, b in zip(fast[0], slow[0], strict=True):
        np.testing.assert_array_equal(a, b)


# -- no look-ahead -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_observation_ignores_the_future() -> None:
    base = planted_candles(2400, seed=4)
    original = _observations({M1: base, M5: resample(base, M1, M5)})
    t = 1500  # the step compared
    cut = int(original.bars[t]) + 1  # candles from here close after step t
    scale = np.ones(len(base))
    scale[cut:] = 3.0
    altered_m1 = Candles(
        base.timestamp,
        base.open * scale,
        base.high * scale,
        base.low * scale,
        base.close * scale,
        base.volume * scale,
    )
    altered = _observations(
        {M1: altered_m1, M5: resample(altered_m1, M1, M5)}, scaler=original.scaler
    )
    assert altered.times[t] == original.times[t]
    np.testing.assert_array_equal(original.market([t]), altered.market([t]))
    assert not np.array_equal(original.market([t + 10]), altered.market([t + 10]))
    # the whole env observation, position state included, after the same actions
    actions = [1] * 30 + [0] * 20 + [2] * 10 + [1] * 40
    start = t - len(actions)
    for obs_a, obs_b in zip(
        _run_from(original, start, actions), _run_from(altered, start, actions), strict=True
    ):
        np.testing.assert_array_equal(obs_a, obs_b)


def _run_from(market: MarketObservations, start: int, actions: list[int]) -> list[np.ndarray]:
    env = TradingEnv(market, _config(episode_length=len(actions)))
    obs, _ = env.reset(options={"start": start})
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    return out


# -- bad input -----------------------------------------------------------------------------------
def test_episode_longer_than_the_data(market: MarketObservations) -> None:
    with pytest.raises(ValueError, match=r"episode of 500 steps needs 501 steps.*has 300"):
        TradingEnv(market, _config(episode_length=500), start=100, stop=400)


def test_nan_in_a_candle_is_refused() -> None:
    candles = _candles()
    m1 = candles[M1]
    close = m1.close.copy()
    close[1800] = np.nan
    bad = Candles(m1.timestamp, m1.open, m1.high, m1.low, close, m1.volume)
    with pytest.raises(DataError, match=r"1m candle opening at .* \(row 1800\) has a NaN"):
        _observations({M1: bad, M5: candles[M5]})


def test_nan_reaching_an_observation_names_time_and_feature(market: MarketObservations) -> None:
    scaler = StandardScaler()
    scaler.layout = market.channels
    scaler.mean = np.zeros(len(market.channels))
    std = np.ones(len(market.channels))
    std[3] = np.nan  # a broken scaler turns the close channel into NaN
    scaler.std = std
    broken = _observations(_candles(), scaler=scaler)
    env = TradingEnv(broken, _config())
    channel = market.channels.names[3]
    with pytest.raises(DataError, match=rf"observation at .* has NaN .*'1m:{channel}'"):
        env.reset(seed=0)


def test_extra_features_joined_and_checked() -> None:
    candles = _candles()
    plain = _observations(candles)
    times = plain.times.copy()
    values = np.stack([np.arange(len(times)), -np.arange(len(times))], 1).astype(np.float32)
    obs = _observations(candles, scaler=plain.scaler, extra=(times, values))
    assert obs.width == plain.width + 2
    env = TradingEnv(obs, _config(random_start=False), start=200)
    first, info = env.reset(seed=0)
    step = int(info["step"])
    np.testing.assert_array_equal(first[:, -2:], np.tile(values[step], (FRAMES, 1)))
    np.testing.assert_array_equal(first[:, :-2], plain.observe([step], [[0, 0, 0, 0]])[0])
    # a step time without an extra row: refused when the env is built over it
    holey = _observations(candles, scaler=plain.scaler, extra=(np.delete(times, 300), values[1:]))
    with pytest.raises(DataError, match=r"no row for the step closing at .* \(step 300\)"):
        TradingEnv(holey, _config(), start=250)
    TradingEnv(holey, _config(), start=301)  # a range that does not need it is fine
    # NaN in the extra features at a step reached by an observation
    nan_values = values.copy()
    nan_values[step, 1] = np.nan
    nan_obs = _observations(candles, scaler=plain.scaler, extra=(times, nan_values, ("a", "b")))
    env = TradingEnv(nan_obs, _config(random_start=False), start=200)
    with pytest.raises(DataError, match="feature 'b'"):
        env.reset(seed=0)


def test_bad_actions_and_order(market: MarketObservations) -> None:
    env = TradingEnv(market, _config())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be 0\.\.3"):
        env.step(4)
    with pytest.raises(ValueError, match="frames"):
        TradingEnv(market, _config(frames=8))


# -- episodes, determinism, vector env -----------------------------------------------------------
def test_sequential_starts_continue_and_wrap(market: MarketObservations) -> None:
    env = TradingEnv(market, _config(random_start=False, episode_length=100), start=1000, stop=1250)
    starts = []
    for k in range(4):
        _, info = env.reset(seed=0) if k == 0 else env.reset()
        starts.append(int(info["step"]))
        for _ in range(100):
            *_, terminated, truncated, _ = env.step(0)
            if terminated or truncated:
                break
    assert starts == [1000, 1100, 1000, 1100]  # 1200 + 100 > 1249: wraps to the start


def test_deterministic_given_the_seed(market: MarketObservations) -> None:
    actions = np.random.default_rng(1).integers(0, 4, size=150).tolist()
    a = _rollout(TradingEnv(market, _config()), actions, seed=42)
    b = _rollout(TradingEnv(market, _config()), actions, seed=42)
    c = _rollout(TradingEnv(market, _config()), actions, seed=43)
    assert a[1] == b[1] and a[2] == b[2]
    assert a[2][0]["step"] != c[2][0]["step"]


def test_vector_env_equals_single_envs(market: MarketObservations) -> None:
    n, length, seed = 3, 25, 9
    config = _config(episode_length=length)
    vec = VectorTradingEnv(market, config, n)
    singles = [TradingEnv(market, config) for _ in range(n)]
    obs, infos = vec.reset(seed=seed)
    expected = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack([o for o, _ in expected]))
    np.testing.assert_array_equal(infos["step"], [i["step"] for _, i in expected])
    rng = np.random.default_rng(0)
    done = [False] * n
    resets = 0
    for _ in range(2 * length + 5):
        actions = rng.integers(0, 4, size=n)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        for i, env in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step resets, the action is ignored
                o, info = env.reset()
                r, te, tr = 0.0, False, False
                resets += 1
            else:
                o, r, te, tr, info = env.step(actions[i])
            done[i] = te or tr
            np.testing.assert_array_equal(obs[i], o)
            assert (rewards[i], terminated[i], truncated[i]) == (r, te, tr)
            for key, value in info.items():
                assert infos[key][i] == value, key
    assert resets >= n


def test_vector_env_checks_actions(market: MarketObservations) -> None:
    vec = VectorTradingEnv(market, _config(), 2)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros(2, dtype=np.int64))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros(3, dtype=np.int64))
    assert vec.metadata["autoreset_mode"].name == "NEXT_STEP"


def test_lockstep_methods_are_step_in_parts(market: MarketObservations) -> None:
    """What the vector env drives (reset_simulation, advance, position_state, step_info) gives
    what reset/step give, and refuses to advance an ended episode."""
    config = _config(episode_length=5)
    whole, parts = TradingEnv(market, config), TradingEnv(market, config)
    _, info = whole.reset(seed=3)
    parts.reset_simulation(3)
    assert parts.step_info() == info
    for action in (1, 0, 2, 3, 1):
        obs, reward, terminated, truncated, info = whole.step(action)
        r, te, tr, fills, notional = parts.advance(action)
        assert (r, te, tr) == (reward, terminated, truncated)
        assert parts.step_info(fills, notional) == info
        step = np.array([parts.current_step], dtype=np.int64)
        np.testing.assert_array_equal(market.observe(step, [parts.position_state()])[0], obs)
    assert truncated
    with pytest.raises(RuntimeError, match="ended"):
        parts.advance(0)
