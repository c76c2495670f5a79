"""The trading environment: Gymnasium's contract over the real simulator (Qlib's simulator part).

:class:`TradingEnv` drives a :class:`~pivotal.trading.brokers.simulated.SimulatedBroker` and a
:class:`~pivotal.trading.risk.RiskManager` exactly as
:class:`~pivotal.backtest.engine.BacktestEngine` does, through the same
:class:`~pivotal.runtime.kernel.Kernel` pieces (venue step, decision through the executor,
gap close, event collection; the agent's action is the decision source's answer,
:mod:`pivotal.rl.agent_source`), one anchor candle per step:

- ``reset``: a fresh broker and risk manager (a :class:`~pivotal.core.clock.ReplayClock`);
  the clock moves to the episode's first bar's close and the broker processes that bar.
- ``step(action)`` at bar t's close: the action (0 HOLD, 1 BUY, 2 SELL, 3 CLOSE) becomes a
  :class:`~pivotal.core.types.TradingAction`, ``RiskManager.review`` turns it into orders
  (position-target semantics, sizing, caps, halts, protective stops) with the
  :class:`~pivotal.trading.risk.MarketState` the backtester builds (close, ATR of
  ``settings.atr_period``, taker fee, lot size), each order goes to ``broker.submit``; then
  the clock moves to bar t+1's close and ``broker.on_bar`` processes it (market orders fill
  at its open with the default ``next_open`` timing, stops trigger intrabar, the position is
  marked at its close). The reward (:mod:`pivotal.rl.rewards`) compares the equity at t+1's
  close with the equity at t's close. With a drawdown or daily-loss limit the risk manager
  observes each bar's equity before the decision, as in the backtester (without them what it
  observes cannot change a review, and it is not told).

**Fast path.** When the action cannot change the position under position-target semantics
(HOLD; BUY while long; SELL while short, or while flat with shorting off; CLOSE while flat),
``review`` returns no orders and has no side effect, so it is skipped and the broker only
advances. ``fast_path=False`` always reviews; a test shows both give identical episodes.

**Observation** ``(frames, features + 4 + k)`` float32: the standardized market window of
:class:`~pivotal.rl.observations.MarketObservations`, then the position state broadcast to
every frame (side -1/0/+1, ``|quantity| × close / equity``, unrealized PnL / equity, bars in
the trade / ``episode_length``; equity ≤ 0 is replaced by the initial cash in these
shares), then the ``k`` extra features. NaN anywhere raises ``DataError``.

**Episodes.** The env uses steps ``[start, stop)`` of the observations (e.g. the training
span); an episode needs ``episode_length + 1`` of them. ``terminated`` when equity ≤ 0,
``truncated`` after ``episode_length`` steps or at the range's last step. Starts are random
(the env's seeded ``np_random``) or sequential: each reset continues at the step where the
previous episode stopped, back to ``start`` when too few steps remain, and a reset with a
seed restarts at ``start``. ``options={"start": step}`` forces a start.

**Gaps** (:mod:`pivotal.core.gaps`). With ``settings.gaps = "close"`` (the default) no step
crosses a gap in the anchor candles: the step that reaches the last bar before a gap closes
the position there, through the broker like any exit (a reduce-only market order filled at
that bar's close, exit reason ``gap``; the reward counts its fee), and ends the episode
``truncated``. No episode starts on such a bar (a start there moves to the bar after the
gap). With ``"hold"`` the simulator steps across gaps as if the bars were adjacent.
"""

from __future__ import annotations

from typing import Any, TypedDict

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from pivotal.core.clock import ReplayClock
from pivotal.core.gaps import GapPolicy, gap_after
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action
from pivotal.rl.agent_source import AgentSource, StepFills
from pivotal.rl.config import EnvConfig
from pivotal.rl.observations import MarketObservations
from pivotal.rl.rewards import RewardTracker
from pivotal.runtime.kernel import ClosedBar, Kernel
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.risk import RiskManager

__all__ = ["ACTIONS", "StepInfo", "TradingEnv"]

#: Discrete action ``i`` means ``ACTIONS[i]`` (seed 000's four actions).
ACTIONS: tuple[Action, ...] = (Action.HOLD, Action.BUY, Action.SELL, Action.CLOSE)
HOLD, BUY, SELL, CLOSE = 0, 1, 2, 3
SOURCE = "rl"


class StepInfo(TypedDict):
    """The ``info`` of ``reset``/``step``. Money in the quote currency, times in UTC ms.

    ``time``: close of the current bar; ``step``: index into the observations; ``bar``:
    index of the anchor candle; ``position``: signed base units; ``fees``: paid so far this
    episode; ``fills`` / ``traded_notional``: this step's fills and their notional.
    """

    time: int
    step: int
    bar: int
    equity: float
    cash: float
    position: float
    fees: float
    fills: int
    traded_notional: float


class TradingEnv(gym.Env[npt.NDArray[np.float32], np.int64]):
    """One symbol's trading episodes over ``observations`` (module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(
        self,
        observations: MarketObservations,
        config: EnvConfig,
        *,
        start: int | None = None,
        stop: int | None = None,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(observations, MarketObservations):
            raise TypeError(
                f"observations must be MarketObservations, got {type(observations).__name__}"
            )
        if str(observations.anchor) != config.timeframe:
            raise ValueError(
                f"config.timeframe is {config.timeframe} but the observations step on "
                f"{observations.anchor} candles; build them with the same anchor"
            )
        if observations.frames != config.frames:
            raise ValueError(
                f"config.frames is {config.frames} but the observations have "
                f"{observations.frames} frames; build them with the same frames"
            )
        streams = tuple(str(s) for s in observations.streams)
        wanted = tuple(str(t) for t in config.timeframes)
        if streams != wanted:
            raise ValueError(
                f"the observations encode streams {list(streams)} but the config names "
                f"{list(wanted)} (timeframe, then streams)"
            )
        n = len(observations)
        self.start = 0 if start is None else int(start)
        self.stop = n if stop is None else int(stop)
        if not 0 <= self.start < self.stop <= n:
            raise ValueError(
                f"step range [{self.start}, {self.stop}) is outside the observations' "
                f"[0, {n}); pass 0 <= start < stop <= {n}"
            )
        length = config.episode_length
        if self.stop - self.start < length + 1:
            raise ValueError(
                f"an episode of {length} steps needs {length + 1} steps of data, but the range "
                f"[{self.start}, {self.stop}) has {self.stop - self.start}; shorten "
                "episode_length or widen the range"
            )
        observations.check_extra_covers(self.start, self.stop)
        self.observations = observations
        self.config = config
        self.fast_path = bool(fast_path)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(observations.frames, observations.width), dtype=np.float32
        )
        self.render_mode = None

        settings = config.settings
        candles = observations.candles
        self._symbol = config.symbol
        self._trading_symbol = Symbol.parse(config.symbol)
        self._candles = {config.symbol: candles}
        self._bar_ms = observations.anchor.ms
        self._open_ms = candles.timestamp
        self._close = candles.close
        self._agent = AgentSource(self._trading_symbol, SOURCE)
        self._fills = StepFills()
        self._initial = float(settings.broker.initial_cash)
        self._allow_short = settings.risk.allow_short
        self._halts = settings.risk.max_drawdown is not None or (
            settings.risk.daily_loss_limit is not None
        )
        self._bar0 = int(observations.bars[0])
        before_gap = gap_after(candles.timestamp, self._bar_ms, settings.max_missing_bars)
        if GapPolicy.parse(settings.gaps) is not GapPolicy.CLOSE:
            before_gap[:] = False
        self._before_gap = before_gap
        self._valid = np.asarray(observations.valid)
        self._reward = RewardTracker(config)
        self._cursor = self.start
        self._t = -1  # current step; -1 before the first reset
        self._done = True

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], StepInfo]:
        self._reset_state(seed, options)
        return self._observe(), self._info(0, 0.0)

    def step(
        self, action: int | np.integer[Any]
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, StepInfo]:
        if self._done:
            raise RuntimeError("the episode has ended (or never started): call reset() first")
        a = int(action)
        if not 0 <= a < len(ACTIONS):
            raise ValueError(
                f"action must be 0..{len(ACTIONS) - 1} (HOLD, BUY, SELL, CLOSE), got {a}"
            )
        reward, terminated, truncated, fills, notional = self._advance(a)
        return self._observe(), reward, terminated, truncated, self._info(fills, notional)

    # -- simulation (shared with the vector env) ----------------------------------------------
    def _reset_state(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """Everything ``reset`` does but the observation."""
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = self.start
        self._begin(self._choose_start(options))

    def _choose_start(self, options: dict[str, Any] | None) -> int:
        last = self.stop - 1 - self.config.episode_length  # latest start that fits
        if options and options.get("start") is not None:
            first = int(options["start"])
            if not self.start <= first <= last:
                raise ValueError(
                    f"options['start'] = {first} leaves no room for {self.config.episode_length} "
                    f"steps in [{self.start}, {self.stop}); use {self.start}..{last}"
                )
            return self._off_gap(first, last)
        if self.config.random_start:
            return self._off_gap(int(self.np_random.integers(self.start, last + 1)), last)
        return self._off_gap(self._cursor if self._cursor <= last else self.start, last)

    def _off_gap(self, first: int, last: int) -> int:
        """``first``, or the nearest later (else earlier) step an episode may start on: not the
        last bar before a gap (the episode would have to step across it) and not a step whose
        observation window crosses a gap (``observations.valid``)."""
        if self._can_start(first):
            return first
        for step in (*range(first + 1, last + 1), *range(first - 1, self.start - 1, -1)):
            if self._can_start(step):
                return step
        raise ValueError(
            f"no step in [{self.start}, {last}] can start an episode: every observation window "
            "there crosses a gap in the data; choose a span with contiguous candles "
            "(pivotal data gaps lists them)"
        )

    def _can_start(self, step: int) -> bool:
        return bool(self._valid[step]) and not self._before_gap[self._bar0 + step]

    def _begin(self, first: int) -> None:
        """A fresh broker and risk manager; process the episode's first bar."""
        bar = self._bar0 + first
        settings = self.config.settings
        self._clock = ReplayClock(int(self._open_ms[bar]))
        self._broker = SimulatedBroker(
            self._clock, settings.broker, bar_ms=self._bar_ms, symbols=[self._symbol]
        )
        self._portfolio = self._broker.portfolio
        self._risk = RiskManager(settings.risk)
        series = self._candles[self._symbol]
        self._kernel = Kernel(
            clock=self._clock,
            broker=self._broker,
            risk=self._risk,
            source=self._agent,
            executor=ActionExecutor(
                self._broker,
                self._risk,
                fees=settings.broker.fees,
                lot_size=settings.broker.lot_size,
            ),
            timeframe=self.observations.anchor,
            recorder=self._fills,
            venue=self._broker,
            candles_view=lambda symbol: series,
            atr_period=settings.atr_period,
        )
        close_ms = int(self._open_ms[bar]) + self._bar_ms
        self._clock.advance_to(close_ms)
        if bar:  # the bars before the episode: numbering and recent closes as in a backtest
            self._broker.mark(self._symbol, series.rows(0, bar))
        self._kernel.apply_bar(self._symbol, series.rows(bar, bar + 1))
        self._equity = self._portfolio.equity
        if self._halts:
            self._risk.observe(close_ms, self._equity)
        self._reward.reset(self._equity)
        self._t0 = first
        self._t = first
        self._cursor = first
        self._entry = -1
        self._done = False

    def _advance(self, a: int) -> tuple[float, bool, bool, int, float]:
        """Decide at the current bar's close, process the next bar; ``(reward, terminated,
        truncated, fills, traded notional)``."""
        t = self._t
        bar = self._bar0 + t
        kernel = self._kernel
        portfolio = self._portfolio
        symbol = self._symbol
        series = self._candles[symbol]
        q0 = portfolio.quantity(symbol)
        if not (self.fast_path and self._no_change(a, q0)):
            close_ms = int(self._open_ms[bar]) + self._bar_ms
            self._agent.action = ACTIONS[a]
            kernel.decide((ClosedBar(symbol, bar, close_ms, series.rows(bar, bar + 1)),), close_ms)
        nxt = bar + 1
        next_close = int(self._open_ms[nxt]) + self._bar_ms
        self._clock.advance_to(next_close)
        kernel.apply_bar(symbol, series.rows(nxt, nxt + 1))
        at_gap = bool(self._before_gap[nxt])
        if at_gap:
            kernel.close_before_gap((symbol,))
        counted = self._fills
        counted.reset()
        kernel.collect()
        fills = counted.fills
        notional = counted.notional
        e0 = self._equity
        e1 = portfolio.equity
        self._equity = e1
        if self._halts:
            self._risk.observe(next_close, e1)
        q1 = portfolio.quantity(symbol)
        if q1 == 0.0:
            self._entry = -1
        elif q0 == 0.0 or (q0 > 0.0) != (q1 > 0.0):
            self._entry = t + 1
        self._t = t + 1
        self._cursor = t + 1
        reward = self._reward(e0, e1, notional)
        terminated = e1 <= 0.0
        truncated = not terminated and (
            at_gap or self._t - self._t0 >= self.config.episode_length or self._t >= self.stop - 1
        )
        self._done = terminated or truncated
        return reward, terminated, truncated, fills, notional

    def _no_change(self, a: int, q: float) -> bool:
        """True when ``review`` would return no orders (position-target semantics)."""
        if a == HOLD:
            return True
        if a == BUY:
            return q > 0.0
        if a == SELL:
            return q < 0.0 or (q == 0.0 and not self._allow_short)
        return q == 0.0

    def _state(self) -> tuple[float, float, float, float]:
        """The position state of :data:`~pivotal.rl.observations.STATE_FEATURES` now."""
        q = self._portfolio.quantity(self._symbol)
        if q == 0.0:
            return (0.0, 0.0, 0.0, 0.0)
        equity = self._equity if self._equity > 0.0 else self._initial
        close = float(self._close[self._bar0 + self._t])
        held = (self._t - self._entry + 1) if self._entry >= 0 else 0
        return (
            1.0 if q > 0.0 else -1.0,
            abs(q) * close / equity,
            self._portfolio.unrealized_pnl / equity,
            held / self.config.episode_length,
        )

    def _observe(self) -> npt.NDArray[np.float32]:
        step = np.array([self._t], dtype=np.int64)
        return self.observations.observe(step, [self._state()])[0]

    def _info(self, fills: int, notional: float) -> StepInfo:
        portfolio = self._portfolio
        bar = self._bar0 + self._t
        return StepInfo(
            time=int(self._open_ms[bar]) + self._bar_ms,
            step=self._t,
            bar=bar,
            equity=self._equity,
            cash=portfolio.cash,
            position=portfolio.quantity(self._symbol),
            fees=portfolio.fees_paid,
            fills=fills,
            traded_notional=notional,
        )

    # -- read-only views ----------------------------------------------------------------------
    @property
    def broker(self) -> SimulatedBroker:
        """The current episode's broker (fills, trades); ``RuntimeError`` before a reset."""
        if self._t < 0:
            raise RuntimeError("no episode yet: call reset() first")
        return self._broker

    @property
    def current_step(self) -> int:
        """The current step (index into the observations); -1 before the first reset."""
        return self._t

    @property
    def episode_start(self) -> int:
        return self._t0

    # -- lockstep driving: VectorTradingEnv steps n envs, then reads n observations at once ---
    def reset_simulation(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> None:
        """Everything :meth:`reset` does but building the observation and the info."""
        self._reset_state(seed, options)

    def advance(self, action: int) -> tuple[float, bool, bool, int, float]:
        """:meth:`step` without the observation and the info: ``action`` (0..3, not checked)
        at the current bar's close, then the next bar; returns ``(reward, terminated,
        truncated, fills, traded notional)``. ``RuntimeError`` once the episode has ended."""
        if self._done:
            raise RuntimeError("the episode has ended (or never started): reset it first")
        return self._advance(action)

    def position_state(self) -> tuple[float, float, float, float]:
        """The position state of :data:`~pivotal.rl.observations.STATE_FEATURES` now (what
        the observation broadcasts to every frame)."""
        return self._state()

    def step_info(self, fills: int = 0, traded_notional: float = 0.0) -> StepInfo:
        """The :class:`StepInfo` of the current step, with this step's ``fills`` and
        ``traded_notional`` as given."""
        return self._info(fills, traded_notional)
