"""Prioritized replay (sum tree, importance weights) and n-step returns, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pivotal.rl.replay import NStepAccumulator, PrioritizedReplayBuffer, Transition


def _obs(value: float, shape: tuple[int, int] = (2, 3)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def _filled(priorities: list[float], *, alpha: float = 1.0, **kwargs: object):
    buffer = PrioritizedReplayBuffer(len(priorities), (2, 3), alpha=alpha, seed=7, **kwargs)
    for i in range(len(priorities)):
        buffer.add(Transition(_obs(i), i % 2, float(i), _obs(i + 1), 0.9))
    buffer.update_priorities(np.arange(len(priorities)), np.array(priorities))
    return buffer


def test_sampling_frequencies_follow_priorities() -> None:
    priorities = [1.0, 2.0, 3.0, 4.0, 0.5]  # capacity 5: the tree pads to 8 leaves
    buffer = _filled(priorities, alpha=1.0)
    counts = np.zeros(5)
    for _ in range(400):
        batch = buffer.sample(50, beta=0.4)
        np.add.at(counts, batch.indices, 1)
    expected = np.array(priorities) / sum(priorities)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)
    # the stored content travels with its slot
    batch = buffer.sample(16)
    np.testing.assert_array_equal(batch.obs[:, 0, 0], batch.indices.astype(np.float32))
    np.testing.assert_array_equal(batch.next_obs[:, 0, 0], batch.indices + 1.0)
    np.testing.assert_array_equal(batch.rewards, batch.indices.astype(np.float32))


def test_alpha_flattens_priorities() -> None:
    buffer = _filled([1.0, 4.0], alpha=0.5)
    np.testing.assert_allclose(buffer.priorities(), [1.0, 2.0], rtol=1e-5)
    assert buffer.total_priority == pytest.approx(3.0, rel=1e-5)


def test_importance_weights() -> None:
    buffer = _filled([1.0, 2.0, 4.0], alpha=1.0)
    batch = buffer.sample(64, beta=1.0)
    p = np.array([1.0, 2.0, 4.0])
    # w = (N·P(i))^-β / max w; with β = 1 that is p_min / p_i
    np.testing.assert_allclose(batch.weights, p.min() / p[batch.indices], rtol=1e-4)
    batch = buffer.sample(64, beta=0.5)
    np.testing.assert_allclose(batch.weights, (p.min() / p[batch.indices]) ** 0.5, rtol=1e-4)
    assert np.all(buffer.sample(64, beta=0.0).weights == 1.0)


def test_new_transitions_get_the_largest_priority() -> None:
    buffer = PrioritizedReplayBuffer(4, (2, 3), alpha=1.0)
    buffer.add(Transition(_obs(0), 0, 0.0, _obs(1), 0.9))
    buffer.update_priorities([0], [5.0])
    buffer.add(Transition(_obs(1), 0, 0.0, _obs(2), 0.9))
    np.testing.assert_allclose(buffer.priorities(), [5.0, 5.0], rtol=1e-5)
    buffer.update_priorities([0, 0], [1.0, 3.0])  # a slot sampled twice keeps the last value
    np.testing.assert_allclose(buffer.priorities()[0], 3.0, rtol=1e-5)


def test_ring_buffer_overwrites_the_oldest() -> None:
    buffer = PrioritizedReplayBuffer(3, (2, 3), prioritized=False, seed=1)
    for i in range(5):
        buffer.add(Transition(_obs(i), 0, float(i), _obs(i), 1.0))
    assert len(buffer) == 3
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0]
    batch = buffer.sample(300)
    assert set(batch.indices.tolist()) == {0, 1, 2}
    assert np.all(batch.weights == 1.0)


def test_buffer_rejects_bad_input() -> None:
    buffer = PrioritizedReplayBuffer(3, (2, 3))
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    with pytest.raises(ValueError, match="shape"):
        buffer.add(Transition(_obs(0, (3, 3)), 0, 0.0, _obs(0, (3, 3)), 1.0))
    buffer.add(Transition(_obs(0), 0, 0.0, _obs(0), 1.0))
    with pytest.raises(ValueError, match="finite"):
        buffer.update_priorities([0], [np.nan])
    with pytest.raises(ValueError, match="indices"):
        buffer.update_priorities([2], [1.0])


def test_n_step_returns_continuing() -> None:
    acc = NStepAccumulator(3, gamma=0.5)
    assert acc.push(_obs(0), 0, 1.0, _obs(1), False, False) == []
    assert acc.push(_obs(1), 1, 2.0, _obs(2), False, False) == []
    (tr,) = acc.push(_obs(2), 0, 4.0, _obs(3), False, False)
    assert tr.reward == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 4.0)
    assert tr.discount == pytest.approx(0.125)
    assert tr.action == 0 and tr.obs[0, 0] == 0 and tr.next_obs[0, 0] == 3
    (tr,) = acc.push(_obs(3), 1, 8.0, _obs(4), False, False)
    assert tr.reward == pytest.approx(2.0 + 0.5 * 4.0 + 0.25 * 8.0)
    assert tr.obs[0, 0] == 1 and tr.next_obs[0, 0] == 4


def test_n_step_termination_does_not_bootstrap() -> None:
    acc = NStepAccumulator(3, gamma=0.5)
    acc.push(_obs(0), 0, 1.0, _obs(1), False, False)
    out = acc.push(_obs(1), 1, 2.0, _obs(2), True, False)
    assert [t.reward for t in out] == pytest.approx([1.0 + 0.5 * 2.0, 2.0])
    assert [t.discount for t in out] == [0.0, 0.0]
    assert len(acc) == 0


def test_n_step_truncation_bootstraps_from_the_last_observation() -> None:
    acc = NStepAccumulator(3, gamma=0.5)
    acc.push(_obs(0), 0, 1.0, _obs(1), False, False)
    acc.push(_obs(1), 0, 2.0, _obs(2), False, False)
    out = acc.push(_obs(2), 0, 4.0, _obs(3), False, True)
    assert [t.reward for t in out] == pytest.approx([3.0, 4.0, 4.0])
    assert [t.discount for t in out] == pytest.approx([0.125, 0.25, 0.5])
    assert all(t.next_obs[0, 0] == 3 for t in out)
    assert len(acc) == 0


def test_one_step_is_plain_td() -> None:
    acc = NStepAccumulator(1, gamma=0.9)
    (tr,) = acc.push(_obs(0), 2, 1.5, _obs(1), False, False)
    assert (tr.reward, tr.discount) == (1.5, pytest.approx(0.9))
    (tr,) = acc.push(_obs(1), 2, 1.0, _obs(2), True, False)
    assert tr.discount == 0.0
    with pytest.raises(ValueError, match="n must"):
        NStepAccumulator(0, 0.9)
