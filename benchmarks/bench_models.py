"""Model compute cost: training throughput, single-sample latency and batched inference.

Run ``python benchmarks/bench_models.py`` (``--models pivot_cnn,cnn1d`` to restrict,
``--quick`` for fewer iterations; the full run takes about 3 minutes on a 2-core CPU). Every
registered network is built with its default hyperparameters (``src/pivotal/models/networks``)
for the seed's default standardized input: 5 streams × 300 frames × 51 channels (7 OHLCV
channels + 44 per-candle indicator/pivot columns), a context vector of 12, regression targets
``return_1, return_5, return_15`` and classes ``down, flat, up``. Inputs and targets are seeded
random float32 tensors: this measures compute, not data. Rows, per model:

- ``train/s``: training samples per second, batch 64: Adam (lr 1e-3), forward,
  :class:`~pivotal.training.losses.TaskLoss`, backward and step; batch ÷ the median of 10
  single timed steps after 3 warm-up steps (fewer timed steps, at least 3, when the last
  warm-up step says 10 would take over 10 s; the ``steps`` column says how many);
- ``p50 ms`` / ``p99 ms``: single-sample latency, ``model.eval()`` under
  ``torch.inference_mode()``, percentiles of 300 single timed calls after 20 warm-up calls,
  with ``torch.set_num_threads(1)`` (on a 2-core host under load a second thread brings
  contention spikes); ``p99 dflt``: the same p99 at the default thread count (printed);
- ``infer/s``: batched inference samples per second at batch 256 (best of 3 after a warm-up);
- ``×peer``: the model's time per sample divided by the peer's on the same machine, so the
  figures compare across machines. The peer is a plain 2-layer ``torch.nn.LSTM`` of the zoo's
  default width (255 = streams × channels features per frame → 128 hidden) with one
  ``Linear`` on the newest step for the 3 regression outputs and 3 logits; it ignores the
  context. It is measured the same way and printed as the first row.

The first and last lines give the host's 1-minute load average: other processes on a small
host slow every figure (and a second torch thread then stalls), so compare runs at low load.

Target (printed, not a test): PivotCNN (``pivot_cnn``) single-sample p99 at one thread below
5 ms on a 2-core CPU, with PASS/FAIL. When CUDA is available a GPU section repeats training
(fp16 autocast with a gradient scaler, as the trainer's AMP does), single-sample latency
(fp32, ``torch.cuda.synchronize()`` after each call) and batched inference (fp32); otherwise
one line says that no CUDA device was found.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pivotal.models import InputShape, TargetSpec, available, create
from pivotal.testing.timing import best_of
from pivotal.training.losses import TaskLoss

SHAPE = InputShape(streams=5, frames=300, channels=51, context=12)
TARGETS = TargetSpec(
    regression=("return_1", "return_5", "return_15"), classes=("down", "flat", "up")
)
PEER = "peer"
PEER_LABEL = "peer: LSTM 2x128"
TARGET_MODEL = "pivot_cnn"
TARGET_P99_MS = 5.0
SEED = 0


@dataclass(frozen=True, slots=True)
class Settings:
    """Iteration counts and batch sizes of one benchmark run.

    Training times ``train_steps`` steps of ``train_batch`` samples after ``train_warmup``
    steps, unless the last warm-up step says they would take longer than ``train_budget_s``
    seconds: then as many as fit, but at least ``train_min_steps``. Latency takes
    ``latency_calls`` single timed calls after ``latency_warmup``; batched inference is the
    best of ``infer_repeats`` passes of ``infer_batch`` samples after one warm-up pass.
    """

    train_batch: int = 64
    train_warmup: int = 3
    train_steps: int = 10
    train_min_steps: int = 3
    train_budget_s: float = 10.0
    latency_warmup: int = 20
    latency_calls: int = 300
    infer_batch: int = 256
    infer_repeats: int = 3

    def __post_init__(self) -> None:
        for name in (
            "train_batch",
            "train_warmup",
            "train_steps",
            "train_min_steps",
            "latency_warmup",
            "latency_calls",
            "infer_batch",
            "infer_repeats",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Settings.{name} must be a positive int, got {value!r}")
        if self.train_min_steps > self.train_steps:
            raise ValueError(
                f"Settings.train_min_steps={self.train_min_steps} exceeds "
                f"train_steps={self.train_steps}; lower it or raise train_steps"
            )
        if not (math.isfinite(self.train_budget_s) and self.train_budget_s > 0):
            raise ValueError(
                f"Settings.train_budget_s must be a positive number of seconds, "
                f"got {self.train_budget_s!r}"
            )


FULL = Settings()
QUICK = Settings(
    train_warmup=1,
    train_steps=3,
    train_min_steps=1,
    train_budget_s=3.0,
    latency_warmup=5,
    latency_calls=50,
    infer_repeats=1,
)


@dataclass(frozen=True, slots=True)
class Latency:
    """Single-sample latency percentiles in milliseconds, and the torch threads used."""

    p50_ms: float
    p99_ms: float
    calls: int
    threads: int


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One model's figures on one device (``latency_default`` is None on CUDA)."""

    name: str
    device: str
    params: int
    train_samples_per_s: float
    train_steps: int
    latency: Latency
    latency_default: Latency | None
    infer_samples_per_s: float


class LSTMPeer(nn.Module):
    """The reference network: ``nn.LSTM(streams × channels → 128, 2 layers)`` + ``Linear``.

    Reads every frame (``streams × channels`` features per step, stream-major like the zoo's
    ``frames_as_features``); the newest step's output maps to ``"regression"`` and
    ``"logits"`` in the targets' order. The context is accepted and ignored.
    """

    def __init__(self, shape: InputShape, targets: TargetSpec, hidden: int = 128) -> None:
        super().__init__()
        self.n_regression = len(targets.regression)
        self.n_classes = len(targets.classes)
        self.lstm = nn.LSTM(shape.streams * shape.channels, hidden, 2, batch_first=True)
        self.out = nn.Linear(hidden, self.n_regression + self.n_classes)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        batch, streams, frames, channels = x.shape
        steps = x.permute(0, 2, 1, 3).reshape(batch, frames, streams * channels)
        sequence, _ = self.lstm(steps)
        hidden = sequence[:, -1]
        out = self.out(hidden)
        result = {"hidden": hidden}
        if self.n_regression:
            result["regression"] = out[:, : self.n_regression]
        if self.n_classes:
            result["logits"] = out[:, self.n_regression :]
        return result


def build(name: str, shape: InputShape = SHAPE, targets: TargetSpec = TARGETS) -> nn.Module:
    """Registered model ``name`` (or the peer, ``"peer"``) with default hyperparameters, seeded."""
    torch.manual_seed(SEED)
    if name == PEER:
        return LSTMPeer(shape, targets)
    return create(name, shape, targets)


def make_batch(
    shape: InputShape,
    targets: TargetSpec,
    size: int,
    *,
    seed: int = SEED,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Seeded random inputs and targets: ``x`` ``(size, S, F, C)`` N(0, 1) float32,
    ``context`` ``(size, K)`` (absent when K = 0), ``regression`` ``(size, R)`` N(0, 0.01²),
    ``label`` ``(size,)`` uniform over the classes (each present only when targeted)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch size must be a positive int, got {size!r}")
    gen = torch.Generator().manual_seed(seed)
    batch = {"x": torch.randn(size, shape.streams, shape.frames, shape.channels, generator=gen)}
    if shape.context:
        batch["context"] = torch.randn(size, shape.context, generator=gen)
    if targets.regression:
        batch["regression"] = 0.01 * torch.randn(size, len(targets.regression), generator=gen)
    if targets.classes:
        batch["label"] = torch.randint(0, len(targets.classes), (size,), generator=gen)
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(
    model: nn.Module,
    targets: TargetSpec,
    batch: dict[str, torch.Tensor],
    settings: Settings = FULL,
    *,
    amp: bool = False,
) -> tuple[float, int]:
    """Training samples per second (batch size ÷ the median timed step, robust to a busy
    host's stalls) and the number of timed steps (see :class:`Settings`).

    One step: ``zero_grad``, forward (fp16 autocast when ``amp``, CUDA only), ``TaskLoss``,
    backward through a gradient scaler (a no-op without ``amp``), Adam step. The model and
    ``batch`` must be on the same device; the model is left in train mode, its weights
    changed. ``ValueError`` when the loss is not finite after the timed steps.
    """
    device = batch["x"].device
    if amp and device.type != "cuda":
        raise ValueError("amp=True needs the model and batch on a CUDA device; use amp=False")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = TaskLoss(targets)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    context = batch.get("context")
    last: list[torch.Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast: AbstractContextManager[Any] = (
            torch.autocast(device_type="cuda", dtype=torch.float16) if amp else nullcontext()
        )
        with autocast:
            outputs = model(batch["x"], context)
        loss = loss_fn(outputs, batch).total
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        last[:] = [loss.detach()]

    step_s = 0.0
    for _ in range(settings.train_warmup):
        start = time.perf_counter()
        step()
        _sync(device)
        step_s = time.perf_counter() - start
    fit = int(settings.train_budget_s / step_s) if step_s > 0 else settings.train_steps
    steps = max(settings.train_min_steps, min(settings.train_steps, fit))
    times = np.empty(steps, dtype=np.float64)
    for i in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times[i] = time.perf_counter() - start
    final = float(last[0])
    if not math.isfinite(final):
        raise ValueError(
            f"training loss became {final} during the benchmark; the model diverged on random "
            "inputs, so its timing is not representative (check its initialisation)"
        )
    return len(batch["x"]) / float(np.median(times)), steps


def latency(
    model: nn.Module,
    x: torch.Tensor,
    context: torch.Tensor | None,
    *,
    calls: int = 300,
    warmup: int = 20,
    threads: int | None = None,
) -> Latency:
    """Percentiles of ``calls`` single timed forward calls of ``model`` on ``x``/``context``.

    Runs in ``eval()`` mode under ``torch.inference_mode()``, after ``warmup`` untimed calls.
    With ``threads``, ``torch.set_num_threads(threads)`` holds during the measurement and the
    previous setting is restored afterwards. On CUDA each call is followed by
    ``torch.cuda.synchronize()`` inside the timed span.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls must be a positive int, got {calls!r}")
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    device = x.device
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        model.eval()
        clock = time.perf_counter_ns
        times = np.empty(calls, dtype=np.float64)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x, context)
            _sync(device)
            for i in range(calls):
                start = clock()
                model(x, context)
                _sync(device)
                times[i] = clock() - start
    finally:
        torch.set_num_threads(before)
    p50, p99 = np.percentile(times, [50, 99]) / 1e6
    return Latency(float(p50), float(p99), calls, used)


def batched_throughput(
    model: nn.Module, x: torch.Tensor, context: torch.Tensor | None, repeats: int = 3
) -> float:
    """Inference samples per second on the batch ``x``: best of ``repeats`` after a warm-up."""
    device = x.device
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x, context)
        _sync(device)

    return len(x) / best_of(run, repeats)


def measure(
    name: str,
    model: nn.Module,
    shape: InputShape = SHAPE,
    targets: TargetSpec = TARGETS,
    settings: Settings = FULL,
    device: torch.device | str = "cpu",
) -> ModelResult:
    """All figures of one model on ``device``: training (AMP on CUDA), latency, batched.

    The model is moved to ``device`` and trained for the warm-up and timed steps first, so
    the inference figures are for trained weights. On CPU the latency is taken at one thread
    and again at the thread count in force when called (``latency_default``).
    """
    device = torch.device(device)
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    cuda = device.type == "cuda"
    train = make_batch(shape, targets, settings.train_batch, seed=SEED, device=device)
    rate, steps = train_throughput(model, targets, train, settings, amp=cuda)
    sample = make_batch(shape, targets, 1, seed=SEED + 1, device=device)
    x1, c1 = sample["x"], sample.get("context")
    calls, warm = settings.latency_calls, settings.latency_warmup
    single = latency(model, x1, c1, calls=calls, warmup=warm, threads=None if cuda else 1)
    default = None if cuda else latency(model, x1, c1, calls=calls, warmup=warm)
    infer = make_batch(shape, targets, settings.infer_batch, seed=SEED + 2, device=device)
    batched = batched_throughput(model, infer["x"], infer.get("context"), settings.infer_repeats)
    return ModelResult(name, str(device), params, rate, steps, single, default, batched)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--models a,b`` (registered names; default all) and ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", default="", help="comma-separated registered model names")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in available()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered models: {', '.join(available())}")
    args.models = names or list(available())
    return args


def _table(
    results: Sequence[ModelResult], peer: ModelResult, default_threads: int | None
) -> list[str]:
    head = (
        f"{'model':18s} {'params':>9s} {'train/s':>8s} {'steps':>5s} {'×peer':>6s} "
        f"{'p50 ms':>7s} {'×peer':>6s} {'p99 ms':>7s}"
    )
    head += f" {'p99 dflt':>8s}" if default_threads is not None else ""
    head += f" {'infer/s':>8s} {'×peer':>6s}"
    lines = [head]
    for r in [peer, *results]:
        name = PEER_LABEL if r is peer else r.name
        line = (
            f"{name:18s} {r.params:9,d} {r.train_samples_per_s:8.1f} {r.train_steps:5d} "
            f"{peer.train_samples_per_s / r.train_samples_per_s:6.2f} "
            f"{r.latency.p50_ms:7.2f} {r.latency.p50_ms / peer.latency.p50_ms:6.2f} "
            f"{r.latency.p99_ms:7.2f}"
        )
        if r.latency_default is not None:
            line += f" {r.latency_default.p99_ms:8.2f}"
        line += (
            f" {r.infer_samples_per_s:8.0f} {peer.infer_samples_per_s / r.infer_samples_per_s:6.2f}"
        )
        if r.name == TARGET_MODEL and r.latency_default is not None:
            line += "  " + ("PASS" if r.latency.p99_ms < TARGET_P99_MS else "FAIL")
        lines.append(line)
    return lines


def _load() -> str:
    """The 1-minute load average (runnable processes), or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def progress(name: str) -> None:
    print(f"  measuring {name} ...", flush=True)


def run_device(
    names: Sequence[str], settings: Settings, device: torch.device | str
) -> tuple[ModelResult, list[ModelResult]]:
    """The peer's and every named model's results on ``device``, printing progress."""
    progress(PEER_LABEL)
    peer = measure(PEER, build(PEER), settings=settings, device=device)
    results = []
    for name in names:
        progress(name)
        results.append(measure(name, build(name), settings=settings, device=device))
    return peer, results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    default_threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch default threads {default_threads}, load average {_load()}"
    )
    print(
        f"input: x {SHAPE.streams}×{SHAPE.frames}×{SHAPE.channels} + context {SHAPE.context} "
        f"(seeded random float32); targets {list(TARGETS.regression)} + {list(TARGETS.classes)}"
    )
    print(
        f"train: batch {settings.train_batch}, Adam, {settings.train_warmup} warm-up + up to "
        f"{settings.train_steps} timed steps; latency: {settings.latency_calls} calls, "
        f"p50/p99 at torch.set_num_threads(1), 'p99 dflt' at {default_threads} threads; "
        f"infer: batch {settings.infer_batch}, best of {settings.infer_repeats}"
    )
    print("×peer: time per sample ÷ the peer's (2-layer nn.LSTM 255→128 + Linear)")
    print(f"CPU{' (quick)' if args.quick else ''}:", flush=True)
    peer, results = run_device(args.models, settings, "cpu")
    print("\n".join(_table(results, peer, default_threads)))
    target = next((r for r in results if r.name == TARGET_MODEL), None)
    if target is None:
        print(f"target: {TARGET_MODEL} not selected, p99 < {TARGET_P99_MS:g} ms not checked")
    else:
        verdict = "PASS" if target.latency.p99_ms < TARGET_P99_MS else "FAIL"
        print(
            f"target: {TARGET_MODEL} single-sample p99 < {TARGET_P99_MS:g} ms on a 2-core CPU "
            f"(1 thread): {target.latency.p99_ms:.2f} ms on this host ({os.cpu_count()} "
            f"logical CPUs) {verdict}"
        )
    print(f"load average at the end of the CPU rows: {_load()} (other processes slow the figures)")
    if not torch.cuda.is_available():
        print("GPU: no CUDA device found (torch.cuda.is_available() is False); GPU rows skipped")
        return
    print(
        f"GPU ({torch.cuda.get_device_name(0)}; training with fp16 autocast, inference fp32, "
        "latency with torch.cuda.synchronize()):",
        flush=True,
    )
    gpu_peer, gpu_results = run_device(args.models, settings, "cuda")
    print("\n".join(_table(gpu_results, gpu_peer, None)))


if __name__ == "__main__":
    main()
