"""A seeded market simulator for offline tests and demos. Its output says it is simulated.

Model, per bar of ``config.timeframe``:

- **Regimes**: a Markov chain over ``config.regimes``; each regime lasts a geometric number of
  bars with mean ``mean_duration_hours`` and then switches to one of the others, uniformly.
- **Volatility clustering**: a unit-mean GARCH(1,1) multiplier
  ``g[t] = (1 - a - b) + (a * z[t-1]**2 + b) * g[t-1]`` scales the regime's variance, so the
  bar's log-return is ``r[t] = mu*dt - sigma[t]**2 / 2 + sigma[t] * z[t]`` with
  ``sigma[t] = vol * sqrt(dt * g[t])``, ``dt`` the bar length in years (365.25 days) and
  ``z`` standardized Student-t shocks (fat tails; clipped at 12 standard deviations).
- **Bars**: ``open`` is the previous close (24/7 market); ``high``/``low`` are the extremes of
  a Brownian bridge from open to close with the bar's variance; volume (base asset) grows
  with the volatility and the size of the move. Prices are rounded to ``price_decimals``.

Simulated trades (:func:`simulate_trades`) lie inside each bar, start at its open, end at its
close and touch its high and low, so aggregating them gives back the candles' OHLC exactly
(volume up to float rounding). Same seed, same output, on every machine with the same numpy;
``simulate_candles(m)`` is a prefix of ``simulate_candles(n)`` for ``m < n``.
Everything returned carries ``source = "simulator:seed=N"``; nothing simulated is bare
:class:`~pivotal.core.candles.Candles`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades

__all__ = [
    "DEFAULT_REGIMES",
    "SIMULATOR_SOURCE_PREFIX",
    "Regime",
    "SimulatedCandles",
    "SimulatedTrades",
    "SimulatorConfig",
    "simulate_candles",
    "simulate_trades",
]

SIMULATOR_SOURCE_PREFIX = "simulator"
_YEAR_MS = 365.25 * 86_400_000
_MAX_SHOCK = 12.0  # shocks are clipped at 12 standard deviations


@dataclass(frozen=True, slots=True)
class Regime:
    """A market state: annualized log drift and volatility, and how long it lasts."""

    name: str
    drift: float
    volatility: float
    mean_duration_hours: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.drift):
            raise ValueError(f"regime {self.name!r}: drift must be finite, got {self.drift}")
        if not (0 < self.volatility < math.inf):
            raise ValueError(
                f"regime {self.name!r}: volatility is annualized (0.5 = 50 %) and must be > 0, "
                f"got {self.volatility}"
            )
        if not (0 < self.mean_duration_hours < math.inf):
            raise ValueError(
                f"regime {self.name!r}: mean_duration_hours must be > 0, "
                f"got {self.mean_duration_hours}"
            )


DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("calm", drift=0.0, volatility=0.35, mean_duration_hours=72.0),
    Regime("bull", drift=1.5, volatility=0.55, mean_duration_hours=24.0),
    Regime("bear", drift=-2.0, volatility=0.85, mean_duration_hours=12.0),
)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Parameters of the simulated market; every field has a realistic BTC-like default.

    ``start_ms`` is the first bar's open time (UTC ms, on the ``timeframe`` grid);
    ``volume_per_hour`` the typical base-asset volume per hour (the realized mean is
    within about 20 % of it); ``tail_df`` the Student-t degrees
    of freedom of the shocks (``None``: Gaussian); ``price_decimals`` the price rounding
    (``None``: none). ``garch_alpha + garch_beta < 1`` keeps the variance stationary.
    """

    seed: int = 42
    start_ms: int = 1_704_067_200_000  # 2024-01-01 00:00 UTC
    start_price: float = 40_000.0
    timeframe: Timeframe = Timeframe.M1
    regimes: tuple[Regime, ...] = field(default=DEFAULT_REGIMES)
    garch_alpha: float = 0.08
    garch_beta: float = 0.90
    tail_df: float | None = 5.0
    volume_per_hour: float = 1_000.0
    price_decimals: int | None = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))
        object.__setattr__(self, "regimes", tuple(self.regimes))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.start_ms % self.timeframe.ms:
            raise ValueError(
                f"start_ms {self.start_ms} is not on the {self.timeframe} grid; use "
                f"{self.timeframe.floor(self.start_ms)}"
            )
        if not (0 < self.start_price < math.inf):
            raise ValueError(f"start_price must be finite and > 0, got {self.start_price}")
        if not self.regimes or not all(isinstance(r, Regime) for r in self.regimes):
            raise ValueError("regimes must be a non-empty tuple of Regime")
        a, b = self.garch_alpha, self.garch_beta
        if not (a >= 0 and b >= 0 and a + b < 1):
            raise ValueError(
                f"GARCH needs garch_alpha >= 0, garch_beta >= 0 and alpha + beta < 1 "
                f"(stationary variance), got alpha={a}, beta={b}"
            )
        if self.tail_df is not None and not self.tail_df > 2:
            raise ValueError(f"tail_df must be > 2 (finite variance) or None, got {self.tail_df}")
        if not (0 < self.volume_per_hour < math.inf):
            raise ValueError(f"volume_per_hour must be > 0, got {self.volume_per_hour}")

    @property
    def source(self) -> str:
        """Provenance label, e.g. ``"simulator:seed=42"``."""
        return f"{SIMULATOR_SOURCE_PREFIX}:seed={self.seed}"


@dataclass(frozen=True, slots=True, eq=False)
class SimulatedCandles:
    """Simulated candles with their provenance and the hidden state that made them.

    ``regime[i]`` is the index into ``config.regimes`` of bar ``i``; ``volatility[i]`` the
    standard deviation of its log-return (the planted truth for volatility models).
    """

    candles: Candles
    source: str
    config: SimulatorConfig
    regime: npt.NDArray[np.int8]
    volatility: npt.NDArray[np.float64]

    @property
    def timeframe(self) -> Timeframe:
        return self.config.timeframe

    def __len__(self) -> int:
        return len(self.candles)


@dataclass(frozen=True, slots=True, eq=False)
class SimulatedTrades:
    """Simulated trades with their provenance (``source``) and the config that made them."""

    trades: Trades
    source: str
    config: SimulatorConfig

    def __len__(self) -> int:
        return len(self.trades)


def _regime_path(rng: np.random.Generator, n: int, config: SimulatorConfig) -> npt.NDArray[np.int8]:
    """Regime index per bar: geometric durations, then a uniform switch to another regime."""
    k = len(config.regimes)
    bars_per_hour = 3_600_000 / config.timeframe.ms
    p_leave = [1.0 / max(1.0, r.mean_duration_hours * bars_per_hour) for r in config.regimes]
    states: list[int] = []
    lengths: list[int] = []
    state, total = int(rng.integers(k)), 0
    while total < n:  # one iteration per regime spell, not per bar
        length = int(rng.geometric(p_leave[state])) if k > 1 else n
        states.append(state)
        lengths.append(length)
        total += length
        if k > 1:
            state = (state + 1 + int(rng.integers(k - 1))) % k
    return np.repeat(np.asarray(states, np.int8), lengths)[:n]


def _streams(seed: int, count: int, first: int = 0) -> list[np.random.Generator]:
    """Independent generators ``[seed, first]``, ``[seed, first + 1]``, ..."""
    return [np.random.default_rng([seed, first + i]) for i in range(count)]


def _garch_multiplier(z: npt.NDArray[np.float64], alpha: float, beta: float) -> np.ndarray:
    """Unit-mean GARCH(1,1) variance multiplier; a scalar loop over Python floats (~50 ns/bar)."""
    coef = (alpha * z * z + beta).tolist()
    omega = 1.0 - alpha - beta
    out = [1.0] * len(z)
    level = 1.0
    for i in range(1, len(z)):
        level = omega + coef[i - 1] * level
        out[i] = level
    return np.asarray(out, dtype=np.float64)


def simulate_candles(n_bars: int, config: SimulatorConfig | None = None) -> SimulatedCandles:
    """``n_bars`` simulated candles (see the module docstring); deterministic in ``config``."""
    config = SimulatorConfig() if config is None else config
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars < 0:
        raise ValueError(f"n_bars must be a non-negative int, got {n_bars!r}")
    # One generator per ingredient, each drawing bar by bar: a shorter run is a prefix.
    regime_rng, shock_rng, up_rng, down_rng, volume_rng = _streams(config.seed, 5)
    n, tf_ms = n_bars, config.timeframe.ms
    regime = _regime_path(regime_rng, n, config)
    if config.tail_df is None:
        z = shock_rng.standard_normal(n)
    else:
        df = config.tail_df
        z = shock_rng.standard_t(df, n) * math.sqrt((df - 2) / df)
    np.clip(z, -_MAX_SHOCK, _MAX_SHOCK, out=z)  # heavy tails, but no overflow from one draw
    g = _garch_multiplier(z, config.garch_alpha, config.garch_beta)
    dt = tf_ms / _YEAR_MS
    vols = np.array([r.volatility for r in config.regimes])
    drifts = np.array([r.drift for r in config.regimes])
    sigma = vols[regime] * np.sqrt(dt * g)
    r = drifts[regime] * dt - 0.5 * sigma**2 + sigma * z
    close = config.start_price * np.exp(np.cumsum(r))
    open_ = np.concatenate(([config.start_price], close[:-1]))[:n]
    # Extremes of a Brownian bridge from 0 to r with variance sigma**2 (exact marginals).
    spread_up = np.sqrt(r**2 - 2 * sigma**2 * np.log(1.0 - up_rng.random(n)))
    spread_dn = np.sqrt(r**2 - 2 * sigma**2 * np.log(1.0 - down_rng.random(n)))
    high = np.maximum(np.maximum(open_, close), open_ * np.exp((r + spread_up) / 2))
    low = np.minimum(np.minimum(open_, close), open_ * np.exp((r - spread_dn) / 2))
    if config.price_decimals is not None:  # rounding is monotone: the OHLC order survives
        tick = 10.0**-config.price_decimals
        open_, high, low, close = (
            np.maximum(np.round(x, config.price_decimals), tick) for x in (open_, high, low, close)
        )
    base = config.volume_per_hour * tf_ms / 3_600_000
    # Long-run share of each regime is proportional to its mean duration (uniform switching).
    share = np.array([r.mean_duration_hours for r in config.regimes])
    typical_vol = float(np.dot(share / share.sum(), vols))
    activity = np.sqrt(g) * vols[regime] / typical_vol * (0.3 + np.abs(z))
    volume = base * activity * volume_rng.lognormal(-0.045, 0.3, n)
    candles = Candles(
        config.start_ms + np.arange(n, dtype=np.int64) * tf_ms, open_, high, low, close, volume
    )
    return SimulatedCandles(candles, config.source, config, regime, sigma)


def simulate_trades(
    simulated: SimulatedCandles, *, mean_trades_per_bar: float = 20.0
) -> SimulatedTrades:
    """Trades whose aggregation to ``simulated.timeframe`` gives back the candles' OHLC.

    Each bar gets ``4 + Poisson`` trades (mean ``mean_trades_per_bar``, more in busy bars) at
    sorted random times inside the bar: the first at the open price, the last at the close,
    one at the high and one at the low, the rest uniform in between. Quantities split the
    bar's volume; buys are a little likelier in rising bars. Deterministic in the config.
    """
    if not (4 <= mean_trades_per_bar < math.inf):
        raise ValueError(f"mean_trades_per_bar must be >= 4, got {mean_trades_per_bar}")
    config, c = simulated.config, simulated.candles
    (rng,) = _streams(config.seed, 1, first=100)
    n, tf_ms = len(c), config.timeframe.ms
    if n == 0:
        empty = Trades(*(np.empty(0, d) for d in (np.int64, float, float, bool, np.int64)))
        return SimulatedTrades(empty, simulated.source, config)
    busy = c.volume / c.volume.mean()
    k = 4 + rng.poisson((mean_trades_per_bar - 4) * busy)
    total = int(k.sum())
    bar = np.repeat(np.arange(n), k)
    starts = np.cumsum(k) - k
    # Sorting bar * T + offset sorts the offsets within each bar and keeps the bars in order.
    first = bar * tf_ms
    ts = c.timestamp[bar] + (np.sort(first + rng.integers(0, tf_ms, total)) - first)
    low, high = c.low[bar], c.high[bar]
    price = low + rng.random(total) * (high - low)
    if config.price_decimals is not None:
        price = np.clip(np.round(price, config.price_decimals), low, high)
    high_at = 1 + (rng.random(n) * (k - 2)).astype(np.int64)
    low_at = 1 + (high_at + (rng.random(n) * (k - 3)).astype(np.int64)) % (k - 2)  # != high_at
    for at, values in ((high_at, c.high), (low_at, c.low)):
        price[starts + at] = values
    price[starts] = c.open
    price[starts + k - 1] = c.close
    weight = rng.exponential(1.0, total) + 1e-9
    quantity = weight / np.add.reduceat(weight, starts)[bar] * c.volume[bar]
    p_buy = 0.5 + 0.1 * np.sign(c.close - c.open)[bar]
    is_buyer_maker = rng.random(total) >= p_buy
    trades = Trades(ts, price, quantity, is_buyer_maker, np.arange(1, total + 1, dtype=np.int64))
    return SimulatedTrades(trades, simulated.source, config)
