"""N trading environments stepping in lockstep, with one batched observation read per step.

:class:`VectorTradingEnv` is a :class:`gymnasium.vector.VectorEnv` over ``n`` independent
:class:`~pivotal.rl.env.TradingEnv` simulators on the same observations. Each step runs the
``n`` simulators (broker and risk manager, with the fast path for actions that change
nothing) and then reads all ``n`` market windows with **one**
:meth:`~pivotal.rl.observations.MarketObservations.observe` call. It drives each env through
its public lockstep methods (``reset_simulation``, ``advance``, ``position_state``,
``step_info``: ``reset``/``step`` in parts). Arrays in, arrays out:

- ``reset(seed=s)`` → ``obs (n, frames, F)``, ``infos``; an int seed gives env ``i`` the seed
  ``s + i`` (Gymnasium's ``SyncVectorEnv`` rule), a list gives one per env;
- ``step(actions (n,))`` → ``obs, rewards (n,) float64, terminated (n,) bool, truncated (n,)
  bool, infos``.

**Autoreset: Gymnasium 1.x's default ``AutoresetMode.NEXT_STEP``** (in ``metadata``). The
step that ends an episode returns that episode's last observation with ``terminated`` or
``truncated`` set; the *next* ``step`` resets that env (its action is ignored) and returns
the first observation of the new episode with reward 0 and both flags False. A learner
must not store the transition of that reset step.

``infos`` holds one array per :class:`~pivotal.rl.env.StepInfo` key (length ``n``) and,
per Gymnasium's vector convention, ``"_key"`` boolean masks (all True: every env reports
every key). With the same seeds and actions, env ``i`` gives exactly what a single
``TradingEnv`` reset with seed ``s + i`` gives (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode, VectorEnv

from pivotal.rl.config import EnvConfig
from pivotal.rl.env import ACTIONS, StepInfo, TradingEnv
from pivotal.rl.observations import STATE_FEATURES, MarketObservations

__all__ = ["VectorTradingEnv"]

_INFO_KEYS: tuple[str, ...] = tuple(StepInfo.__annotations__)
_INFO_DTYPES: dict[str, type] = {
    "time": np.int64,
    "step": np.int64,
    "bar": np.int64,
    "fills": np.int64,
}


class VectorTradingEnv(VectorEnv[npt.NDArray[np.float32], npt.NDArray[np.int64], np.ndarray]):
    """``num_envs`` trading environments in lockstep (module docstring)."""

    metadata: dict[str, Any] = {  # noqa: RUF012 (gymnasium's attribute)
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        observations: MarketObservations,
        config: EnvConfig,
        num_envs: int,
        *,
        start: int | None = None,
        stop: int | None = None,
        fast_path: bool = True,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.envs = [
            TradingEnv(observations, config, start=start, stop=stop, fast_path=fast_path)
            for _ in range(num_envs)
        ]
        self.observations = observations
        self.num_envs = num_envs
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.spaces.MultiDiscrete(np.full(num_envs, len(ACTIONS)))
        self.render_mode = None
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._started = False
        self._mask = np.ones(num_envs, dtype=bool)
        self._steps = np.empty(num_envs, dtype=np.int64)
        self._states = np.empty((num_envs, len(STATE_FEATURES)), dtype=np.float64)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Reset every env; ``seed`` int → ``seed + i``, a list → one per env."""
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"got {len(seeds)} seeds for {n} environments")
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seeds[0])
        for env, s in zip(self.envs, seeds, strict=True):
            env.reset_simulation(s, options)
        self._needs_reset[:] = False
        self._started = True
        zeros = np.zeros(n)
        return self._observe(), self._infos(np.zeros(n, dtype=np.int64), zeros)

    def step(
        self, actions: npt.ArrayLike
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float64],
        npt.NDArray[np.bool_],
        npt.NDArray[np.bool_],
        dict[str, Any],
    ]:
        """Advance every env by one bar; envs that ended last step are reset instead."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        acts = np.asarray(actions)
        n = self.num_envs
        if acts.shape != (n,) or not np.issubdtype(acts.dtype, np.integer):
            raise ValueError(f"actions must be an int array of shape ({n},), got {acts.shape}")
        if acts.size and (acts.min() < 0 or acts.max() >= len(ACTIONS)):
            raise ValueError(f"actions must be 0..{len(ACTIONS) - 1} (HOLD, BUY, SELL, CLOSE)")
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        fills = np.zeros(n, dtype=np.int64)
        notional = np.zeros(n, dtype=np.float64)
        needs = self._needs_reset
        for i, env in enumerate(self.envs):
            if needs[i]:
                env.reset_simulation()
                needs[i] = False
                continue
            r, te, tr, f, v = env.advance(int(acts[i]))
            rewards[i] = r
            terminated[i] = te
            truncated[i] = tr
            fills[i] = f
            notional[i] = v
            if te or tr:
                needs[i] = True
        return self._observe(), rewards, terminated, truncated, self._infos(fills, notional)

    def _observe(self) -> npt.NDArray[np.float32]:
        steps = self._steps
        states = self._states
        for i, env in enumerate(self.envs):
            steps[i] = env.current_step
            states[i] = env.position_state()
        return self.observations.observe(steps, states)

    def _infos(
        self, fills: npt.NDArray[np.int64], notional: npt.NDArray[np.float64]
    ) -> dict[str, Any]:
        rows = [env.step_info() for env in self.envs]
        infos: dict[str, Any] = {}
        for key in _INFO_KEYS:
            if key == "fills":
                values: np.ndarray = fills.copy()
            elif key == "traded_notional":
                values = notional.copy()
            else:
                values = np.array(
                    [row[key] for row in rows], dtype=_INFO_DTYPES.get(key, np.float64)
                )  # type: ignore[literal-required]
            infos[key] = values
            infos[f"_{key}"] = self._mask.copy()
        return infos

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
