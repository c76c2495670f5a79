"""Trading environment speed: raw env steps per second, single env and vector env.

Run ``python benchmarks/bench_rl_env.py``. Data: the last ``N_BARS`` candles of the real
BTC/USDT 1m file of ``../shared/data`` (anchor 1m, one 5m stream), or a planted series of the
same length when it is absent (the title says which). Observations: 32 frames, the default
per-candle columns, the scaler fitted on the first half, **precomputed** for the whole range
(:meth:`MarketObservations.precompute`), so a step's window is one index operation; what is
timed is the simulator (broker, risk manager, reward) plus assembling the observations.

Settings: the defaults of :class:`~pivotal.trading.settings.TradingSettings` (100,000 USDT,
0.1 % taker fee, fixed-fraction all-in sizing, next-open fills, long only), episodes of
1,440 steps with random starts. Policies: ``random`` draws each action uniformly from the
four (a trade-dense worst case: about a third of the steps submit an order), ``hold`` never
trades (every step takes the fast path). Each row is the best of ``REPEATS`` timed runs of
``STEPS`` env steps (a vector env of N makes ``STEPS // N`` lockstep calls) after a warm-up.

Goal: >= 50,000 env steps/s with the vector env (met / NO per vector row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pivotal.core import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import resample
from pivotal.features.inputs.spec import InputSpec
from pivotal.rl.config import EnvConfig
from pivotal.rl.env import TradingEnv
from pivotal.rl.observations import MarketObservations
from pivotal.rl.vector import VectorTradingEnv
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of

N_BARS = 30_000
FRAMES = 32
STEPS = 32_768
REPEATS = 3
GOAL = 50_000.0
M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")


@dataclass(frozen=True)
class Row:
    case: str
    steps: int
    seconds: float
    vector: bool

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


def load_candles() -> tuple[Candles, str]:
    data = shared_data_dir()
    if data is None:
        return planted_candles(N_BARS, seed=0), "planted series (shared data not found)"
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet")
    tail = frame.tail(N_BARS).reset_index(drop=True)
    return Candles.from_frame(tail), f"real BTC/USDT 1m, last {N_BARS:,} bars"


def single_runner(env: TradingEnv, policy: str) -> object:
    def run() -> None:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, 4, STEPS) if policy == "random" else np.zeros(STEPS, int)
        env.reset(seed=0)
        for a in actions.tolist():
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    return run


def vector_runner(env: VectorTradingEnv, policy: str) -> object:
    n = env.num_envs
    calls = STEPS // n

    def run() -> None:
        rng = np.random.default_rng(0)
        if policy == "random":
            actions = rng.integers(0, 4, (calls, n))
        else:
            actions = np.zeros((calls, n), dtype=np.int64)
        env.reset(seed=0)
        for row in actions:
            env.step(row)

    return run


def main() -> None:
    m1, source = load_candles()
    candles = {M1: m1, M5: resample(m1, M1, M5)}
    spec = InputSpec.candles([M1, M5], frames=FRAMES, min_frames=FRAMES)
    obs = MarketObservations(candles, spec)
    obs.fit_scaler(int(obs.times[len(obs) // 2]))
    held = obs.precompute()
    config = EnvConfig(frames=FRAMES, streams=("5m",), episode_length=1440)
    rows: list[Row] = []
    for policy in ("random", "hold"):
        env = TradingEnv(obs, config)
        seconds = best_of(single_runner(env, policy), repeats=REPEATS)  # type: ignore[arg-type]
        rows.append(Row(f"single env, {policy}", STEPS, seconds, vector=False))
        for n in (16, 64):
            vec = VectorTradingEnv(obs, config, n)
            seconds = best_of(vector_runner(vec, policy), repeats=REPEATS)  # type: ignore[arg-type]
            rows.append(Row(f"vector env N={n}, {policy}", (STEPS // n) * n, seconds, vector=True))

    title = (
        f"trading env steps/s — {source}; observation {FRAMES} × {obs.width} float32, "
        f"{held / 1e6:.0f} MB precomputed"
    )
    header = ("case", "env steps", "seconds", "steps/s", f"goal >= {GOAL:,.0f} (vector)")
    lines = [
        (
            r.case,
            f"{r.steps:,}",
            f"{r.seconds:.3f}",
            f"{r.rate:,.0f}",
            ("met" if r.rate >= GOAL else "NO") if r.vector else "",
        )
        for r in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for line in (header, *lines):
            print("  ".join(f"{cell:>24}" for cell in line))
        return
    table = Table(title=title)
    for name in header:
        table.add_column(name, justify="left" if name == "case" else "right")
    for line in lines:
        table.add_row(*line)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
