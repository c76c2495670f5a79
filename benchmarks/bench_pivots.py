"""Williams pivot speed: 5 levels on 2,592,000 bars (30 days of 1s bars), beside pandas.

Run ``python benchmarks/bench_pivots.py``. Each figure is the best of 5 timed runs after one
warm-up run. Bars are the real Binance BTC/USDT 1m highs and lows of ``../shared/data`` tiled
to 2,592,000 rows (the second copy rescaled to continue from the first one's last price, with
1e-5 relative noise so no bar repeats), or seeded simulated 1s candles when that data is absent.
The peer is level 1 alone done with pandas centred rolling windows (the usual recipe); the
streaming detector is timed on the first 200,000 bars.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pivotal.core import Timeframe
from pivotal.data.simulator import SimulatorConfig, simulate_candles
from pivotal.features.pivots import StreamingWilliamsPivots, williams_pivots
from pivotal.testing.shared_data import shared_data_dir
from pivotal.testing.timing import best_of

N_BARS = 30 * 86_400  # 2,592,000
STRENGTH = 2
N_STREAM = 200_000


def bars(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` highs and lows: real BTC 1m bars tiled and perturbed, or simulated 1s bars."""
    data = shared_data_dir()
    if data is None:
        sim = simulate_candles(n, SimulatorConfig(seed=1, timeframe=Timeframe.S1))
        return sim.candles.high, sim.candles.low, "simulated 1s candles"
    df = pd.read_parquet(
        data / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet", columns=["high", "low"]
    )
    high, low = df.high.to_numpy(), df.low.to_numpy()
    copies = math.ceil(n / len(high))
    rng = np.random.default_rng(0)
    scale = np.repeat((low[-1] / low[0]) ** np.arange(copies), len(high))
    noise = np.exp(rng.normal(0, 1e-5, copies * len(high)))
    tiled_low = (np.tile(low, copies) * scale * noise)[:n]
    spread = (np.tile(high - low, copies) * scale)[:n]
    return tiled_low + spread, tiled_low, f"real BTC/USDT 1m bars tiled x{copies}"


def pandas_level1(high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Level-1 swing highs/lows with pandas rolling windows (same tie rule as ours)."""
    h, lo = pd.Series(high), pd.Series(low)
    left_max = h.shift(1).rolling(n).max()
    right_max = h[::-1].shift(1).rolling(n).max()[::-1]
    left_min = lo.shift(1).rolling(n).min()
    right_min = lo[::-1].shift(1).rolling(n).min()[::-1]
    highs = np.flatnonzero(((h > left_max) & (h >= right_max)).to_numpy())
    lows = np.flatnonzero(((lo < left_min) & (lo <= right_min)).to_numpy())
    return highs, lows


def main() -> None:
    high, low, source = bars(N_BARS)
    print(f"{len(high):,} bars ({source}), 5 levels, strength {STRENGTH}")
    pivots = williams_pivots(high, low, levels=5, strength=STRENGTH)
    counts = pivots.groupby("level").size().to_dict()
    print(f"pivots per level: {counts}")

    ours = best_of(lambda: williams_pivots(high, low, levels=5, strength=STRENGTH))
    ts = np.arange(len(high), dtype=np.int64) * 1_000
    ours_ts = best_of(
        lambda: williams_pivots(high, low, levels=5, strength=STRENGTH, timestamps=ts)
    )
    ours_l1 = best_of(lambda: williams_pivots(high, low, levels=1, strength=STRENGTH))
    peer = best_of(lambda: pandas_level1(high, low, STRENGTH))
    peer_highs, peer_lows = pandas_level1(high, low, STRENGTH)
    level1 = pivots[pivots.level == 1]
    assert np.array_equal(peer_highs, np.sort(level1["index"][level1.kind == "high"].to_numpy()))
    assert np.array_equal(peer_lows, np.sort(level1["index"][level1.kind == "low"].to_numpy()))

    def stream() -> None:
        detector = StreamingWilliamsPivots(5, STRENGTH)
        for h, lo in zip(high[:N_STREAM].tolist(), low[:N_STREAM].tolist(), strict=True):
            detector.update(h, lo)

    streaming = best_of(stream, repeats=3)
    print(f"williams_pivots, 5 levels          {ours:8.3f} s   (target < 1 s)")
    print(f"  ... with timestamp columns       {ours_ts:8.3f} s")
    print(f"williams_pivots, level 1 only      {ours_l1:8.3f} s")
    print(
        f"pandas rolling, level 1 only       {peer:8.3f} s   (ours, 5 levels: {peer / ours:.1f}x)"
    )
    per_bar = streaming / N_STREAM * 1e6
    print(f"streaming, {N_STREAM:,} bars            {streaming:8.3f} s   ({per_bar:.2f} µs/bar)")


if __name__ == "__main__":
    main()
