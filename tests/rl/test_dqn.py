"""The DQN: network shapes and dueling identity, targets, save/load, and that it learns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pivotal.core.types import Action
from pivotal.rl.dqn import (
    DQNAgent,
    DQNConfig,
    QNetwork,
    dqn_targets,
    linear_schedule,
    train_dqn,
)
from pivotal.testing.threads import one_torch_thread
from pivotal.training.checkpoint_manager import CheckpointManager


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


FRAMES, FEATURES, EPISODE = 4, 2, 10


class SignalEnv(gym.Env[np.ndarray, int]):
    """A contextual bandit in a (frames, features) window; episodes of EPISODE steps.

    One of two actions pays +1 and the other −1. The earlier frames are noise; with
    ``signal`` the last frame says which action pays (``[1, -1]`` → 0, ``[-1, 1]`` → 1),
    without it the paying action is drawn independently of the observation. Optimal return:
    EPISODE with the signal, 0 in expectation without it.
    """

    def __init__(self, signal: bool = True) -> None:
        self.signal = signal
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (FRAMES, FEATURES), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0
        self._paying = 0

    def _observe(self) -> np.ndarray:
        obs = self.np_random.uniform(-1, 1, (FRAMES, FEATURES)).astype(np.float32)
        self._paying = int(self.np_random.integers(2))
        if self.signal:
            obs[-1] = [1.0, -1.0] if self._paying == 0 else [-1.0, 1.0]
        return obs

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = 1.0 if int(action) == self._paying else -1.0
        self._t += 1
        return self._observe(), reward, False, self._t >= EPISODE, {}


def _envs(signal: bool = True, mode: AutoresetMode = AutoresetMode.NEXT_STEP) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: SignalEnv(signal) for _ in range(4)], autoreset_mode=mode)


def _evaluate(signal: bool, episodes: int = 30):
    def evaluate(agent: DQNAgent) -> float:
        env = SignalEnv(signal)
        total = 0.0
        for episode in range(episodes):
            obs, _ = env.reset(seed=10_000 + episode)
            done = False
            while not done:
                action = int(agent.act(obs[None])[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
        return total / episodes

    return evaluate


def _config(**overrides: Any) -> DQNConfig:
    base = dict(
        total_steps=3_000,
        learning_rate=1e-3,
        gamma=0.5,
        batch_size=32,
        buffer_size=5_000,
        learning_starts=200,
        train_frequency=4,
        target_update_interval=100,
        exploration_fraction=0.3,
        epsilon_end=0.02,
        hidden=32,
        seed=3,
        device="cpu",
    )
    return DQNConfig(**(base | overrides))


def _net(hidden: int = 32, n_actions: int = 4) -> QNetwork:
    torch.manual_seed(0)
    return QNetwork(FRAMES, FEATURES, n_actions, hidden=hidden)


def _agent(n_actions: int = 4) -> DQNAgent:
    return DQNAgent(_net(n_actions=n_actions), _config())


def test_q_network_shapes_and_dueling_identity() -> None:
    net = _net()
    obs = torch.randn(5, FRAMES, FEATURES)
    q, hidden = net.forward_with_hidden(obs)
    assert q.shape == (5, 4)
    assert hidden["value"].shape == (5,)
    assert hidden["advantages"].shape == (5, 4)
    assert hidden["features"].shape == (5, 32)
    centered = hidden["advantages"] - hidden["advantages"].mean(dim=1, keepdim=True)
    torch.testing.assert_close(q, hidden["value"][:, None] + centered)
    torch.testing.assert_close(q.mean(dim=1), hidden["value"])  # mean-centred advantages
    torch.testing.assert_close(net(obs), q)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(5, FRAMES + 1, FEATURES))
    with pytest.raises(ValueError, match="divisible"):
        QNetwork(FRAMES, FEATURES, 4, hidden=30, heads=4)


def test_act_refuses_nan_and_wrong_shapes() -> None:
    agent = _agent()
    obs = np.zeros((2, FRAMES, FEATURES), dtype=np.float32)
    obs[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        agent.act(obs)
    with pytest.raises(ValueError, match="observation shape"):
        agent.act(np.zeros((2, FRAMES, FEATURES + 1), dtype=np.float32))


def test_act_is_greedy_without_epsilon_and_random_with_it() -> None:
    agent = _agent()
    obs = np.random.default_rng(0).normal(size=(64, FRAMES, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), agent.q_values(obs).argmax(axis=1))
    explored = agent.act(obs, epsilon=1.0, rng=np.random.default_rng(1))
    assert set(explored.tolist()) == {0, 1, 2, 3}
    again = agent.act(obs, epsilon=1.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(explored, again)


def test_double_dqn_target_by_hand() -> None:
    rewards = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.0])  # the second transition terminated
    next_target = torch.tensor([[1.0, 5.0, 2.0], [3.0, 1.0, 7.0]])
    next_online = torch.tensor([[0.0, 0.1, 9.0], [2.0, 0.0, 1.0]])
    # double: the online net picks action 2 → target net values it at 2.0
    double = dqn_targets(rewards, discounts, next_target, next_online)
    torch.testing.assert_close(double, torch.tensor([1.0 + 0.9 * 2.0, 0.5]))
    # plain DQN: max of the target net (5.0)
    plain = dqn_targets(rewards, discounts, next_target)
    torch.testing.assert_close(plain, torch.tensor([1.0 + 0.9 * 5.0, 0.5]))


def test_linear_schedule() -> None:
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 500) == pytest.approx(0.1)


def test_model_output_fields() -> None:
    agent = _agent()
    obs = np.random.default_rng(0).normal(size=(FRAMES, FEATURES)).astype(np.float32)
    out = agent.output(obs, symbol="ETH/USDT", timestamp=1_700_000_000_000)
    q = agent.q_values(obs[None])[0]
    assert (out.model_type, out.model_name, str(out.symbol)) == ("rl", "dqn", "ETH/USDT")
    assert out.action == Action(("HOLD", "BUY", "SELL", "CLOSE")[int(q.argmax())])
    assert list(out.predictions["q_values"]) == ["HOLD", "BUY", "SELL", "CLOSE"]
    np.testing.assert_allclose(list(out.predictions["q_values"].values()), q, rtol=1e-5)
    assert out.predictions["expected_reward"] == pytest.approx(float(q.max()), rel=1e-5)
    softmax = np.exp(q - q.max()) / np.exp(q - q.max()).sum()
    assert out.confidence == pytest.approx(float(softmax.max()), rel=1e-5)
    assert len(out.hidden_states["advantages"]) == 4
    assert len(out.hidden_states["features"]) == 32
    assert isinstance(out.hidden_states["value"], float)


def test_save_load_round_trip(tmp_path: Path) -> None:
    agent = _agent()
    path = agent.save(tmp_path / "agent.pt")
    loaded = DQNAgent.load(path, observation_shape=(FRAMES, FEATURES))
    obs = np.random.default_rng(0).normal(size=(8, FRAMES, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(loaded.q_values(obs), agent.q_values(obs))
    assert loaded.action_names == agent.action_names
    assert loaded.config == agent.config
    with pytest.raises(ValueError, match=r"trained on observations of shape \(4, 2\)"):
        DQNAgent.load(path, observation_shape=(8, 2))


def test_learns_the_signal(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", "dqn", keep=2, metric="val_return", mode="max")
    result = train_dqn(
        _envs(),
        _config(),
        eval_fn=_evaluate(signal=True),
        eval_every=1_000,
        log_dir=tmp_path / "tb",
        checkpoints=manager,
    )
    assert result.steps == 3_000 and result.gradient_steps > 500
    assert len(result.history.eval_returns) == 3
    assert _evaluate(signal=True)(result.agent) >= 0.9 * EPISODE
    assert result.best_val_return == max(result.history.eval_returns)
    assert result.best_path is not None and len(manager.list()) == 2
    best = DQNAgent.load(result.best_path, observation_shape=(FRAMES, FEATURES))
    assert _evaluate(signal=True)(best) == pytest.approx(result.best_val_return)
    assert any((tmp_path / "tb").iterdir())
    assert len(result.history.episode_returns) >= 250
    assert result.history.losses and np.isfinite(result.history.losses).all()


def test_without_signal_it_stays_near_chance() -> None:
    result = train_dqn(_envs(signal=False, mode=AutoresetMode.SAME_STEP), _config())
    assert abs(_evaluate(signal=False, episodes=50)(result.agent)) <= 0.3 * EPISODE


def test_same_seed_same_agent() -> None:
    config = _config(total_steps=400, learning_starts=100)
    a = train_dqn(_envs(), config).agent
    b = train_dqn(_envs(), config).agent
    obs = np.random.default_rng(0).normal(size=(8, FRAMES, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(a.q_values(obs), b.q_values(obs))


def test_train_dqn_checks_its_inputs(tmp_path: Path) -> None:
    wrong = CheckpointManager(tmp_path, "dqn", metric="val_loss", mode="min")
    with pytest.raises(ValueError, match="val_return"):
        train_dqn(_envs(), _config(), checkpoints=wrong)
    with pytest.raises(ValueError, match="extra"):
        DQNConfig(total_steps=10, unknown_option=1)  # type: ignore[call-arg]


def test_learning_from_the_first_step_waits_for_a_full_batch() -> None:
    result = train_dqn(_envs(), _config(total_steps=80, learning_starts=0, batch_size=32))
    assert result.steps == 80
    assert 0 < result.gradient_steps < 80 // 4  # no update until 32 transitions are stored
