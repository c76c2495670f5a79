"""Supervised datasets: inputs paired with the targets of their anchor candle."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch

from pivotal.core import Timeframe
from pivotal.core.candles import Candles
from pivotal.features.inputs import EncodedInputDataset, InputSpec
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.training.data import SupervisedDataset, TensorSupervisedDataset

M1, H1 = Timeframe.M1, Timeframe.H1
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
DAY = 86_400_000


@cache
def btc(tf: str, days: int, first: int | None = None) -> Candles:
    """``days`` of BTC candles from ``first`` (default: the file's first candle)."""
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    path = data / "ohlcv" / "binance-spot" / tf / f"BTC_USDT-{tf}.parquet"
    if first is None:
        first = int(pd.read_parquet(path, columns=["timestamp"]).timestamp.iloc[0])
    span = [("timestamp", ">=", first), ("timestamp", "<", first + days * DAY)]
    frame = pd.read_parquet(path, columns=COLUMNS, filters=span)
    return Candles.from_frame(frame.reset_index(drop=True))


def log_return(close: np.ndarray, h: int) -> np.ndarray:
    out = np.full(len(close), np.nan)
    out[:-h] = np.log(close[h:] / close[:-h])
    return out


def real_dataset() -> tuple[SupervisedDataset, Candles, np.ndarray, np.ndarray, np.ndarray]:
    # the 1h context covers the same days as the 1m series (a 1h window years older than the
    # sample would lie across a gap: such samples are dropped)
    m1 = btc("1m", 6)
    h1 = btc("1h", 40, int(m1.timestamp[0]) - 30 * DAY)
    spec = InputSpec.candles([M1, H1], frames=20, min_frames=20)
    start = int(m1.timestamp[0]) + DAY  # the 1h stream has 20 closed candles by then
    inputs = EncodedInputDataset(spec, {M1: m1, H1: h1}, start, start + 3 * DAY, anchor=M1)
    n = len(m1)
    regression = np.stack([log_return(m1.close, 1), log_return(m1.close, 5)], axis=1)
    labels = np.where(np.isnan(regression[:, 1]), -1, regression[:, 1] > 0).astype(np.int64)
    # a block of rows inside the range without any target: those samples are dropped
    row0 = int(np.searchsorted(m1.timestamp, start)) + 500
    regression[row0 : row0 + 40] = np.nan
    labels[row0 : row0 + 40] = -1
    # only the 5-bar targets missing: the sample stays (the 1-bar target is known)
    regression[row0 + 100 : row0 + 110, 1] = np.nan
    labels[row0 + 100 : row0 + 110] = -1
    context = np.stack([np.arange(n) / n, np.log1p(m1.volume)], axis=1)
    ds = SupervisedDataset(
        inputs, m1.timestamp, regression=regression, labels=labels, context=context
    )
    return ds, m1, regression, labels, context


def test_batches_on_real_btc_have_the_documented_shapes() -> None:
    ds, *_ = real_dataset()
    assert ds.input_shape.to_dict() == {"streams": 2, "frames": 20, "channels": 7, "context": 2}
    batch = next(ds.batches(batch_size=32))
    assert set(batch) == {"x", "context", "regression", "label"}
    assert batch["x"].shape == (32, 2, 20, 7) and batch["x"].dtype == torch.float32
    assert batch["context"].shape == (32, 2) and batch["context"].dtype == torch.float32
    assert batch["regression"].shape == (32, 2) and batch["regression"].dtype == torch.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == torch.int64
    sizes = [len(b["x"]) for b in ds.batches(batch_size=1000)]
    assert sum(sizes) == len(ds) and sizes[:-1] == [1000] * (len(sizes) - 1)


def test_targets_come_from_the_anchor_candle_on_real_btc() -> None:
    ds, m1, _, labels, _ = real_dataset()
    positions = np.random.default_rng(0).choice(len(ds), size=12, replace=False)
    batch = ds.get_batch(positions)
    times = ds.times(positions)
    for k, (pos, t) in enumerate(zip(positions, times, strict=True)):
        row = int(np.searchsorted(m1.timestamp, t - M1.ms))
        assert m1.timestamp[row] + M1.ms == t  # the anchor candle closes at the sample time
        assert ds.rows([pos])[0] == row
        # the input's newest 1m frame is that candle: its open relative to its own close
        np.testing.assert_allclose(
            batch["x"][k, 0, -1, 0].item(), m1.open[row] / m1.close[row] - 1, rtol=1e-5
        )
        assert batch["x"][k, 0, -1, 3].item() == 0.0
        # the targets, recomputed from the candles: what happens after that close
        for col, h in enumerate((1, 5)):
            expected = np.log(m1.close[row + h] / m1.close[row])
            got = batch["regression"][k, col].item()
            if not np.isnan(got):
                assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)
        if labels[row] >= 0:
            assert batch["label"][k].item() == int(m1.close[row + 5] > m1.close[row])
        assert batch["context"][k, 0].item() == pytest.approx(row / len(m1), rel=1e-6)


def test_samples_without_any_target_are_excluded_on_real_btc() -> None:
    ds, _, regression, labels, _ = real_dataset()
    rows = ds.rows()
    all_missing = np.isnan(regression).all(axis=1) & (labels < 0)
    assert ds.excluded == 40
    assert not all_missing[rows].any()
    assert len(ds) == len(ds.inputs) - 40
    assert (np.diff(ds.times()) > 0).all()
    partly = ~np.isnan(regression[rows, 0]) & np.isnan(regression[rows, 1])
    assert partly.sum() >= 10  # rows with some targets missing stay, NaN where missing
    batch = ds.get_batch(np.flatnonzero(partly))
    assert torch.isnan(batch["regression"][:, 1]).all() and (batch["label"] == -1).all()


def test_misaligned_timestamps_are_refused_on_real_btc() -> None:
    ds, m1, regression, *_ = real_dataset()
    with pytest.raises(ValueError, match="no anchor candle"):
        SupervisedDataset(ds.inputs, m1.timestamp[::2], regression=regression[::2])
    with pytest.raises(ValueError, match="one row per anchor candle"):
        SupervisedDataset(ds.inputs, m1.timestamp, regression=regression[:-1])
    context = np.zeros((len(m1), 1))
    context[ds.rows([5])[0]] = np.nan
    with pytest.raises(ValueError, match="context has NaN"):
        SupervisedDataset(ds.inputs, m1.timestamp, regression=regression, context=context)


def test_shuffled_batches_are_seeded_and_cover_every_sample_once() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 1, 4, 2)).astype(np.float32)
    ds = TensorSupervisedDataset(x, labels=np.arange(100) % 3)
    order = [b["label"] for b in ds.batches(batch_size=16, shuffle=True, seed=3)]
    again = [b["label"] for b in ds.batches(batch_size=16, shuffle=True, seed=3)]
    other = torch.cat([b["label"] for b in ds.batches(batch_size=16, shuffle=True, seed=4)])
    assert all(torch.equal(a, b) for a, b in zip(order, again, strict=True))
    assert not torch.equal(torch.cat(order), other)
    xs = torch.cat([b["x"] for b in ds.batches(batch_size=16, shuffle=True, seed=3)])
    assert sorted(map(tuple, xs.flatten(1).tolist())) == sorted(
        map(tuple, torch.from_numpy(x).flatten(1).tolist())
    )


def test_worker_processes_give_the_same_batches() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 1, 4, 2)).astype(np.float32)
    ds = TensorSupervisedDataset(x, regression=rng.standard_normal((50, 2)))
    local = list(ds.batches(batch_size=8, shuffle=True, seed=1))
    workers = list(ds.batches(batch_size=8, shuffle=True, seed=1, num_workers=2))
    assert len(local) == len(workers) == 7
    for a, b in zip(local, workers, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_tensor_dataset_excludes_missing_and_checks_inputs() -> None:
    x = np.zeros((6, 1, 2, 2), dtype=np.float32)
    reg = np.array([[1.0], [np.nan], [np.nan], [2.0], [np.nan], [3.0]])
    lab = np.array([-1, 1, -1, -1, -1, 0])
    ds = TensorSupervisedDataset(x, regression=reg, labels=lab)
    assert len(ds) == 4 and ds.excluded == 2  # rows 2 and 4 have neither target
    assert ds[0]["regression"].shape == (1,) and ds[0]["label"].item() == -1
    assert ds[[1, 3]]["label"].tolist() == [1, 0]
    with pytest.raises(TypeError, match="integers"):
        TensorSupervisedDataset(x, labels=lab.astype(float))
    with pytest.raises(ValueError, match=">= -1"):
        TensorSupervisedDataset(x, labels=lab - 2)
    with pytest.raises(ValueError, match="infinity"):
        TensorSupervisedDataset(x, regression=np.full((6, 1), np.inf))
    with pytest.raises(ValueError, match="all targets missing"):
        TensorSupervisedDataset(x, labels=np.full(6, -1))
    with pytest.raises(ValueError, match=r"\(N, streams, frames, channels\)"):
        TensorSupervisedDataset(np.zeros((6, 4)), labels=lab)
    with pytest.raises(IndexError, match="positions"):
        ds.get_batch([4])
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(batch_size=0))
