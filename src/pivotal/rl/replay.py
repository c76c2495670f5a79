"""Experience replay for the DQN: a prioritized (or uniform) buffer and n-step returns.

:class:`PrioritizedReplayBuffer` stores transitions ``(obs, action, reward, next_obs,
discount)`` in preallocated float32 arrays. ``reward`` is the discounted n-step return
``r_t + γ r_{t+1} + … + γ^{k-1} r_{t+k-1}`` and ``discount`` is what multiplies the bootstrap
value of ``next_obs``: ``γ^k`` when the episode goes on (or was truncated), ``0`` when it
terminated inside the window. The DQN target is therefore ``reward + discount · Q(next_obs)``
whatever ``n`` was.

Prioritized sampling is proportional (Schaul et al. 2016): ``P(i) = p_i^α / Σ_k p_k^α``, with
a sum tree over the ``p_i^α`` so sampling and updates cost ``O(log capacity)``. Importance
weights ``w_i = (N · P(i))^{-β}`` are divided by the largest possible weight (that of the
smallest stored priority), so they lie in ``(0, 1]``. New transitions get the largest
priority seen so far, so each is replayed at least once soon. With ``prioritized=False``
sampling is uniform and every weight is 1.

:class:`NStepAccumulator` turns one environment's 1-step transitions into n-step ones; use
one per environment of a vector env.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["NStepAccumulator", "PrioritizedReplayBuffer", "ReplayBatch", "Transition"]

FloatArray = npt.NDArray[np.float32]


class Transition(NamedTuple):
    """One (n-step) transition: target = ``reward + discount · max_a Q(next_obs, a)``."""

    obs: FloatArray
    action: int
    reward: float
    next_obs: FloatArray
    discount: float


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    """A sampled batch (numpy). ``weights`` are importance weights; ``indices`` buffer slots."""

    obs: FloatArray
    actions: npt.NDArray[np.int64]
    rewards: FloatArray
    next_obs: FloatArray
    discounts: FloatArray
    weights: FloatArray
    indices: npt.NDArray[np.int64]


class NStepAccumulator:
    """Builds n-step transitions for one environment from its 1-step transitions.

    :meth:`push` returns the transitions that became complete: the oldest queued one once
    ``n`` rewards are known, and, when the episode ends, every queued one. After
    ``terminated`` their ``discount`` is 0 (no bootstrapping past a terminal state); after
    ``truncated`` (time limit) they bootstrap from the last observation with ``γ^k``,
    ``k`` the number of rewards summed.
    """

    def __init__(self, n: int, gamma: float) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.n = n
        self.gamma = float(gamma)
        self._queue: deque[tuple[FloatArray, int, float]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        """Forget the queued steps (e.g. when the environment was reset from outside)."""
        self._queue.clear()

    def _emit(self, next_obs: FloatArray, terminated: bool) -> Transition:
        ret = 0.0
        for k, (_, _, r) in enumerate(self._queue):
            ret += self.gamma**k * r
        obs, action, _ = self._queue.popleft()
        discount = 0.0 if terminated else self.gamma ** (len(self._queue) + 1)
        return Transition(obs, action, ret, next_obs, discount)

    def push(
        self,
        obs: FloatArray,
        action: int,
        reward: float,
        next_obs: FloatArray,
        terminated: bool,
        truncated: bool,
    ) -> list[Transition]:
        """Add the step ``obs --action--> (reward, next_obs)``; return completed transitions.

        ``next_obs`` must be the real next observation, also at the end of an episode (not
        the first observation of the next one).
        """
        self._queue.append((obs, int(action), float(reward)))
        out: list[Transition] = []
        if len(self._queue) == self.n:
            out.append(self._emit(next_obs, terminated))
        if terminated or truncated:
            while self._queue:
                out.append(self._emit(next_obs, terminated))
        return out


class PrioritizedReplayBuffer:
    """A ring buffer of transitions with proportional prioritized (or uniform) sampling.

    Memory: ``2 · capacity · prod(obs_shape) · 4`` bytes for the observations (``obs`` and
    ``next_obs``), e.g. 820 MB for 50,000 observations of 32×64.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        *,
        prioritized: bool = True,
        alpha: float = 0.6,
        epsilon: float = 1e-6,
        seed: int = 0,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (0: uniform), got {alpha!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0 so every priority stays positive, got {epsilon}")
        self.capacity = capacity
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.prioritized = prioritized
        self.alpha = float(alpha)
        self.epsilon = float(epsilon)
        self._rng = np.random.default_rng(seed)
        self.obs = np.zeros((capacity, *self.obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *self.obs_shape), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self._pos = 0
        self._size = 0
        # Sum tree, 1-based heap: node i has children 2i and 2i+1; leaves at [leaves, 2·leaves).
        self._leaves = 1 << max(0, (capacity - 1).bit_length())
        self._tree = np.zeros(2 * self._leaves, dtype=np.float64)
        self._max_priority = 1.0

    def __len__(self) -> int:
        return self._size

    @property
    def total_priority(self) -> float:
        """Σ p_i^α over the stored transitions."""
        return float(self._tree[1])

    def priorities(self) -> npt.NDArray[np.float64]:
        """The stored ``p_i^α`` (sampling weights), in slot order."""
        return self._tree[self._leaves : self._leaves + self._size].copy()

    def add(self, transition: Transition) -> None:
        """Store one transition with the largest priority seen so far."""
        obs = np.asarray(transition.obs, dtype=np.float32)
        if obs.shape != self.obs_shape:
            raise ValueError(
                f"observation shape {obs.shape} does not match the buffer's {self.obs_shape}"
            )
        i = self._pos
        self.obs[i] = obs
        self.next_obs[i] = transition.next_obs
        self.actions[i] = transition.action
        self.rewards[i] = transition.reward
        self.discounts[i] = transition.discount
        self._set(np.array([i]), np.array([self._max_priority**self.alpha]))
        self._pos = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def _set(self, slots: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        nodes = slots + self._leaves
        self._tree[nodes] = values
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def _find(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Slots whose cumulative-priority interval holds each value (vectorized descent)."""
        nodes = np.ones(len(values), dtype=np.int64)
        values = values.copy()
        while nodes[0] < self._leaves:
            left = 2 * nodes
            go_right = values >= self._tree[left]
            values = np.where(go_right, values - self._tree[left], values)
            nodes = np.where(go_right, left + 1, left)
        return np.minimum(nodes - self._leaves, self._size - 1)

    def sample(self, batch_size: int, beta: float = 0.4) -> ReplayBatch:
        """Sample ``batch_size`` transitions (with replacement) and their importance weights.

        Prioritized: one value drawn uniformly in each of ``batch_size`` equal slices of the
        total priority (stratified). ``beta`` in [0, 1]: 0 no correction, 1 full correction.
        """
        if self._size == 0:
            raise ValueError("the replay buffer is empty; add transitions before sampling")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        if not self.prioritized:
            idx = self._rng.integers(0, self._size, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            total = self._tree[1]
            bounds = np.arange(batch_size + 1, dtype=np.float64) * (total / batch_size)
            values = self._rng.uniform(bounds[:-1], bounds[1:])
            idx = self._find(np.minimum(values, np.nextafter(total, 0.0)))
            leaves = self._tree[self._leaves : self._leaves + self._size]
            probs = self._tree[idx + self._leaves] / total
            min_prob = leaves.min() / total
            weights = ((probs / min_prob) ** -beta).astype(np.float32)
        return ReplayBatch(
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_obs[idx],
            discounts=self.discounts[idx],
            weights=weights,
            indices=idx.astype(np.int64),
        )

    def update_priorities(self, indices: npt.ArrayLike, priorities: npt.ArrayLike) -> None:
        """Set the priorities (e.g. ``|TD error|``) of sampled slots; ε is added to each.

        A slot sampled twice in a batch keeps the last value. No-op when uniform.
        """
        if not self.prioritized:
            return
        idx = np.asarray(indices, dtype=np.int64)
        p = np.abs(np.asarray(priorities, dtype=np.float64)) + self.epsilon
        if idx.shape != p.shape:
            raise ValueError(f"indices {idx.shape} and priorities {p.shape} must match")
        if not np.all(np.isfinite(p)):
            raise ValueError("priorities must be finite; the TD errors contain NaN or inf")
        if np.any((idx < 0) | (idx >= self._size)):
            raise ValueError(f"indices must be in [0, {self._size}), got {idx}")
        self._max_priority = max(self._max_priority, float(p.max()))
        # np.unique keeps the first occurrence; reverse so the last value wins.
        slots, first = np.unique(idx[::-1], return_index=True)
        self._set(slots, p[::-1][first] ** self.alpha)
