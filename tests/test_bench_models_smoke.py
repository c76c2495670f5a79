"""Smoke test of benchmarks/bench_models.py: its measuring functions run and report sane numbers.

Tiny model, tiny input and a handful of iterations; no wall-clock thresholds.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from pivotal.models import InputShape, TargetSpec, create

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"
SHAPE = InputShape(streams=2, frames=16, channels=9, context=3)
TARGETS = TargetSpec(regression=("return_1", "return_5"), classes=("down", "flat", "up"))
TINY_PIVOT_CNN = {"conv_channels": [4, 4], "recurrent_size": 4, "context_size": 4, "fusion_size": 8}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_models"] = module  # dataclasses look their module up while building
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("bench_models", None)
    return module


def tiny_settings(bench: ModuleType) -> object:
    return bench.Settings(
        train_batch=4,
        train_warmup=1,
        train_steps=2,
        train_min_steps=1,
        train_budget_s=60.0,
        latency_warmup=2,
        latency_calls=5,
        infer_batch=8,
        infer_repeats=1,
    )


def positive_finite(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_measure_returns_finite_positive_figures_and_restores_threads(bench: ModuleType) -> None:
    torch.manual_seed(0)
    model = create("pivot_cnn", SHAPE, TARGETS, **TINY_PIVOT_CNN)
    threads = torch.get_num_threads()
    result = bench.measure("pivot_cnn", model, SHAPE, TARGETS, tiny_settings(bench), "cpu")
    assert torch.get_num_threads() == threads
    assert result.name == "pivot_cnn"
    assert result.device == "cpu"
    assert result.params == sum(p.numel() for p in model.parameters())
    assert 1 <= result.train_steps <= 2
    assert positive_finite(result.train_samples_per_s)
    assert positive_finite(result.infer_samples_per_s)
    assert result.latency.threads == 1
    assert result.latency.calls == 5
    assert result.latency_default is not None
    assert result.latency_default.threads == threads
    for lat in (result.latency, result.latency_default):
        assert positive_finite(lat.p50_ms)
        assert positive_finite(lat.p99_ms)
        assert lat.p50_ms <= lat.p99_ms


def test_peer_measures_on_the_same_inputs(bench: ModuleType) -> None:
    peer = bench.build(bench.PEER, SHAPE, TARGETS)
    batch = bench.make_batch(SHAPE, TARGETS, 3)
    out = peer(batch["x"], batch["context"])
    assert out["regression"].shape == (3, 2)
    assert out["logits"].shape == (3, 3)
    result = bench.measure(bench.PEER, peer, SHAPE, TARGETS, tiny_settings(bench), "cpu")
    assert positive_finite(result.train_samples_per_s)
    assert positive_finite(result.latency.p99_ms)


def test_make_batch_is_seeded_and_shaped(bench: ModuleType) -> None:
    a = bench.make_batch(SHAPE, TARGETS, 3, seed=5)
    b = bench.make_batch(SHAPE, TARGETS, 3, seed=5)
    assert a["x"].shape == (3, 2, 16, 9)
    assert a["context"].shape == (3, 3)
    assert a["regression"].shape == (3, 2)
    assert a["label"].dtype == torch.int64
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x"], bench.make_batch(SHAPE, TARGETS, 3, seed=6)["x"])


def test_bad_settings_and_unknown_models_are_refused(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="train_steps"):
        bench.Settings(train_steps=0)
    with pytest.raises(ValueError, match="train_min_steps"):
        bench.Settings(train_steps=2, train_min_steps=3)
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "pivot_cnn,no_such_model"])
    assert bench.parse_args(["--models", "pivot_cnn, cnn1d", "--quick"]).models == [
        "pivot_cnn",
        "cnn1d",
    ]
    model = bench.build(bench.PEER, SHAPE, TARGETS)
    batch = bench.make_batch(SHAPE, TARGETS, 2)
    with pytest.raises(ValueError, match="CUDA"):
        bench.train_throughput(model, TARGETS, batch, amp=True)
