"""Encoded model inputs for 30 days of 1m timestamps: bulk dataset vs one-at-a-time vs pandas.

Run ``python benchmarks/bench_inputs.py``. Data: real Binance ETH/USDT 1m/1h/1d candles with
BTC/USDT 1m as the reference stream (``../shared/data``; no real 1s candles exist), 300 frames
per stream, samples at every 1m close of 2025-06-01 .. 2025-07-01 (43,200 samples, tensors of
shape (4, 300, 7)). Rows:

- bulk: ``EncodedInputDataset.get_batch`` over all samples in batches of 256, in order and
  shuffled (best of 3 passes, after a warm-up);
- one at a time: ``InputEncoder.encode(build_input(...))`` per sample (2,000 samples);
- naive pandas: per sample and stream ``frame.loc[:t - tf].tail(300)`` and the features in
  pandas (500 samples), checked against the bulk tensors.

Memory: tracemalloc peak (numpy buffers are traced; output tensors are numpy-backed) while
building the dataset and during one full pass, beside the bytes of the source candle arrays.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from pivotal.core import Timeframe
from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.features.inputs import (
    EncodedInputDataset,
    InputEncoder,
    InputSpec,
    build_input,
    candle_columns,
)
from pivotal.testing import timing
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

M1, H1, D1 = Timeframe.M1, Timeframe.H1, Timeframe.D1
START = 1_748_736_000_000  # 2025-06-01 00:00 UTC
DAYS = 30
BATCH = 256
SPEC = InputSpec.candles([M1, H1, D1], reference_symbol="BTC/USDT", reference_timeframes=[M1])


def load(symbol: str, tf: Timeframe) -> Candles:
    data = shared_data_dir()
    if data is None:
        raise SystemExit(SKIP_REASON)
    path = data / "ohlcv" / "binance-spot" / tf.value / f"{symbol}_USDT-{tf.value}.parquet"
    return Candles.from_frame(pd.read_parquet(path, columns=list(CANDLE_COLUMNS)))


def best_of(fn: Callable[[], Any]) -> float:
    return timing.best_of(fn, repeats=3)


def traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def naive_sample(frames: dict[tuple[bool, Timeframe], pd.DataFrame], t: int) -> torch.Tensor:
    """The same encoding with pandas slicing and pandas arithmetic, for one sample."""
    streams = []
    for is_ref, tf in SPEC.streams:
        w = frames[(is_ref, tf)].loc[: t - tf.ms].tail(SPEC.frames)
        last = w["close"].iloc[-1]
        feats = pd.DataFrame(
            {
                "open_rel": w["open"] / last - 1,
                "high_rel": w["high"] / last - 1,
                "low_rel": w["low"] / last - 1,
                "close_rel": w["close"] / last - 1,
                "log_volume": np.log1p(w["volume"]),
                "log_return": np.log(w["close"] / w["close"].shift(1)).fillna(0.0),
                "present": 1.0,
            }
        )
        pad = np.zeros((SPEC.frames - len(feats), feats.shape[1]))
        streams.append(np.vstack([pad, feats.to_numpy()]))
    return torch.from_numpy(np.stack(streams).astype(np.float32))


def main() -> None:
    eth = {tf: load("ETH", tf) for tf in (M1, H1, D1)}
    btc = {M1: load("BTC", M1)}
    source_bytes = sum(
        getattr(c, col).nbytes for c in (*eth.values(), *btc.values()) for col in CANDLE_COLUMNS
    )
    end = START + DAYS * 86_400_000

    def build() -> EncodedInputDataset:
        return EncodedInputDataset(SPEC, eth, START, end, anchor=M1, reference=btc)

    ds, build_peak = traced_peak(build)
    build_s = best_of(build)
    n = len(ds)
    order = np.arange(n)
    shuffled = np.random.default_rng(0).permutation(n)

    def one_pass(indices: np.ndarray) -> None:
        for i in range(0, n, BATCH):
            ds.get_batch(indices[i : i + BATCH])

    in_order = best_of(lambda: one_pass(order))
    random_order = best_of(lambda: one_pass(shuffled))
    _, pass_peak = traced_peak(lambda: one_pass(shuffled))

    encoder = InputEncoder(SPEC)
    times = ds.times(np.arange(0, n, n // 2_000))[:2_000]
    started = time.perf_counter()
    for t in times:
        encoder.encode(build_input(eth, "ETH/USDT", int(t), SPEC, reference=btc))
    single_rate = len(times) / (time.perf_counter() - started)

    frames = {}
    for is_ref, tf in SPEC.streams:
        frame = (btc if is_ref else eth)[tf].to_frame().set_index("timestamp")
        frames[(is_ref, tf)] = frame
    idx = np.arange(0, n, n // 500)[:500]
    started = time.perf_counter()
    naive = torch.stack([naive_sample(frames, int(t)) for t in ds.times(idx)])
    naive_rate = len(idx) / (time.perf_counter() - started)
    max_diff = float((naive - ds.get_batch(idx)).abs().max())

    # the same with the per-candle indicator and pivot columns (7 + 44 channels)
    columns_s = best_of(lambda: {tf: candle_columns(c, tf) for tf, c in eth.items()})
    extra = {tf: candle_columns(c, tf) for tf, c in eth.items()}
    wide = EncodedInputDataset(SPEC, eth, START, end, anchor=M1, reference=btc, extra=extra)

    def wide_pass() -> None:
        for i in range(0, n, BATCH):
            wide.get_batch(shuffled[i : i + BATCH])

    wide_rate = n / best_of(wide_pass)

    sample_bytes = int(np.prod(ds.layout.shape)) * 4
    print(f"samples: {n:,} ({DAYS} days of 1m closes), tensor {ds.layout.shape} float32")
    print(f"  streams {ds.layout.streams}, channels {ds.layout.channels.names}")
    print(f"source candle arrays (all loaded rows): {source_bytes / 1e6:8.1f} MB")
    print(f"dataset tables held:                    {ds.source_bytes / 1e6:8.1f} MB")
    print(f"build: {build_s * 1e3:.0f} ms, tracemalloc peak {build_peak / 1e6:.1f} MB")
    print(
        f"one pass (batch {BATCH}): tracemalloc peak {pass_peak / 1e6:.1f} MB "
        f"(one batch is {BATCH * sample_bytes / 1e6:.1f} MB; all samples would be "
        f"{n * sample_bytes / 1e9:.2f} GB)"
    )
    rows = [
        ("bulk get_batch, in order", n / in_order),
        ("bulk get_batch, shuffled", n / random_order),
        (f"bulk + indicator/pivot columns {wide.layout.shape}", wide_rate),
        ("one at a time (build_input + encode)", single_rate),
        ("naive pandas slicing, per sample", naive_rate),
    ]
    for name, rate in rows:
        print(f"{name:40s} {rate:12,.0f} samples/s")
    rows_all = sum(len(c) for c in eth.values())
    print(f"candle_columns for all {rows_all:,} ETH candles: {columns_s * 1e3:.0f} ms")
    print(f"bulk (shuffled) / naive pandas: {n / random_order / naive_rate:,.0f}x")
    print(f"bulk (shuffled) / one at a time: {n / random_order / single_rate:,.0f}x")
    print(f"naive vs bulk max |difference|: {max_diff:.2e}")


if __name__ == "__main__":
    main()
