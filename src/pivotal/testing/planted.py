"""Markets with a planted, known signal: proof that a pipeline *can* learn.

:func:`planted_candles` draws a price path whose next one-bar log return is a known function
of the past: ``r[t+1] = -sign(r[t]) * rho * m[t+1] + noise[t+1]``, where the magnitudes ``m``
are redrawn every bar (log-normal around ``scale``) and ``|noise|`` is much smaller than
``rho * m`` when ``noise_scale`` is small. So the **direction** of the next move is (almost
always) the opposite of the last move's: a model that reads the last frame's ``log_return``
channel can reach close to 100 % direction accuracy, and the expected next return is
``-sign(r[t]) * rho * E[m]``. The sign rule is the only structure. Everything is seeded:
the same arguments give the same candles.
"""

from __future__ import annotations

import numpy as np

from pivotal.core.candles import Candles

__all__ = ["planted_candles"]


def planted_candles(
    n: int,
    *,
    seed: int = 0,
    rho: float = 0.8,
    scale: float = 0.002,
    noise_scale: float = 0.05,
    start_price: float = 100.0,
    start_time: int | None = None,
    bar_ms: int = 60_000,
) -> Candles:
    """``n`` candles with the planted rule (module docstring); ``noise_scale`` is the noise's
    standard deviation relative to ``scale``. ``start_time`` defaults to 2023-11-14 on the
    ``bar_ms`` grid, so the candles resample cleanly."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    rng = np.random.default_rng(seed)
    magnitude = scale * np.exp(rng.normal(0.0, 0.3, n))
    noise = rng.normal(0.0, noise_scale * scale, n)
    r = np.empty(n)
    r[0] = magnitude[0] * rng.choice([-1.0, 1.0])
    for t in range(1, n):  # sequential by definition: each return depends on the previous one
        r[t] = -np.sign(r[t - 1]) * rho * magnitude[t] + noise[t]
    close = start_price * np.exp(np.cumsum(r))
    open_ = np.r_[start_price, close[:-1]]
    wick = np.abs(rng.normal(0.0, 0.25 * scale, n))
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick)
    volume = rng.lognormal(2.0, 0.5, n)
    if start_time is None:
        start_time = (1_700_000_000_000 // bar_ms) * bar_ms
    timestamp = start_time + bar_ms * np.arange(n, dtype=np.int64)
    return Candles(timestamp, open_, high, low, close, volume)
