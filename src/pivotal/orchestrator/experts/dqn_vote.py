"""The DQN expert's vote: a softmax of the agent's Q-values standardized by their spread.

The spread is ``np.std`` of the Q-values, taken by numpy's own steps (:func:`population_std`):
the same bits, without the generic dispatch that costs several times the arithmetic on four
values at every step.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["population_std", "vote_probabilities"]

_sum = np.add.reduce


def population_std(values: npt.NDArray[np.float64]) -> float:
    """``float(np.std(values))``, by numpy's own steps for a 1-D float64 array (its ``_var``:
    the mean as a kept-dims sum divided in place by the count, the squared deviations, their
    sum divided by the count, the square root) without the generic dispatch that costs
    several times the arithmetic on four values; any other array goes to ``np.std``."""
    if type(values) is not np.ndarray or values.dtype != np.float64 or values.ndim != 1:
        return float(np.std(values))
    n = len(values)
    if not n:
        return float(np.std(values))
    mean = _sum(values, axis=None, keepdims=True)
    np.true_divide(mean, n, out=mean, casting="unsafe")
    deviations = np.subtract(values, mean)
    np.square(deviations, out=deviations)
    return float(np.sqrt(_sum(deviations, axis=None) / n))


def vote_probabilities(q_values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The DQN's vote: a softmax of its Q-values standardized by their spread.

    Q-values are discounted returns in reward units, often a few 1e-4 apart, so their plain
    softmax is uniform whatever the agent prefers and the DQN would never count in the
    orchestrator's vote. Dividing by their standard deviation (floored at 1e-12) keeps the
    order and makes the greedy action's share depend only on how clearly it leads: with
    four actions, ``≈ 0.6`` for a clear leader, ``0.25`` when all are equal.
    """
    spread = max(population_std(q_values), 1e-12)
    z = (q_values - q_values.max()) / spread
    e = np.exp(z)
    return e / e.sum()
