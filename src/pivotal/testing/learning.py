"""A planted market and tiny trainable experts for tests of the learning loop.

:class:`PlantedMarket` draws, per base bar ``t``, a visible feature vector ``x[t]`` (standard
normal) and a price path whose move over the next ``horizon`` bars follows ``x[t, 0]``: each
bar's log return is ``scale/h * sum_{k=1..h} rule[t-k] * x[t-k, 0]`` plus Gaussian noise, so
the ``h``-bar return from ``t`` is ``scale * (rule[t] * x[t, 0] + rest)``. The rest (the
neighbouring features' shares and the noise) is Gaussian and independent of ``x[t]``, so no
predictor that reads ``x[t]`` alone can beat :meth:`PlantedMarket.accuracy_ceiling`
(``1/2 + arctan(1/s)/pi``, ``s`` the rest's standard deviation in units of ``scale``), and
one that ignores it scores 1/2 on the BUY/SELL labels. ``rule`` is +1, or -1 from ``flip_at``
on (a regime change: the same feature now foretells the opposite move).

:class:`LinearExpert` is a softmax regression over ``tensors["x"]`` (the feature vector of
the step) satisfying :class:`~pivotal.orchestrator.contracts.TrainableExpert`;
:class:`SabotagedExpert` trains on flipped labels with a huge learning rate (a candidate that
must be rolled back); :class:`FrozenExpert` exposes only the plain ``Expert`` side;
:class:`LinearGate` is a trainable gate over the experts' votes. :func:`feed` drives a
:class:`~pivotal.orchestrator.learning.LearningLoop` bar by bar.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pivotal.core.candles import Candles
from pivotal.core.errors import ModelError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, ModelOutput
from pivotal.features.inputs.spec import InputSpec
from pivotal.models.base import InputShape, PivotalModel, TargetSpec
from pivotal.orchestrator.contracts import (
    VOTE_ACTIONS,
    GateExample,
    Inference,
    InferenceRequest,
    TrainingExample,
)
from pivotal.orchestrator.learning import LearningEvent, LearningLoop
from pivotal.training.checkpoints import save_checkpoint

__all__ = [
    "FrozenExpert",
    "LinearExpert",
    "LinearGate",
    "LinearNet",
    "PlantedMarket",
    "SabotagedExpert",
    "feed",
]

FORMAT = "pivotal-checkpoint"


class PlantedMarket:
    """``n`` base bars with the planted rule (module docstring); everything seeded.

    Attributes: ``features`` ``(n, n_features)`` float32, ``close`` ``(n,)``, ``close_times``
    ``(n,)`` UTC ms (the step timestamps), ``candles`` (open times, ``bar_ms`` apart) and
    ``rule`` ``(n,)`` of ±1.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        n_features: int = 4,
        horizon: int = 1,
        noise: float = 0.5,
        scale: float = 0.002,
        flip_at: int | None = None,
        start_price: float = 100.0,
        bar_ms: int = 60_000,
    ) -> None:
        if n < horizon + 2:
            raise ValueError(f"n must be at least horizon + 2 = {horizon + 2}, got {n}")
        if n_features < 1 or horizon < 1:
            raise ValueError(f"n_features and horizon must be >= 1, got {n_features}, {horizon}")
        if not noise >= 0 or not scale > 0:
            raise ValueError(f"noise must be >= 0 and scale > 0, got {noise}, {scale}")
        rng = np.random.default_rng(seed)
        self.horizon = horizon
        self.noise = float(noise)
        self.features = rng.standard_normal((n, n_features)).astype(np.float32)
        self.rule = np.ones(n)
        if flip_at is not None:
            self.rule[flip_at:] = -1.0
        signal = self.rule * self.features[:, 0].astype(np.float64)
        returns = rng.normal(0.0, scale * noise / math.sqrt(horizon), n)
        returns[0] = 0.0
        for k in range(1, horizon + 1):
            returns[k:] += scale / horizon * signal[:-k]
        self.close = start_price * np.exp(np.cumsum(returns))
        start = (1_700_000_000_000 // bar_ms) * bar_ms
        opens = start + bar_ms * np.arange(n, dtype=np.int64)
        self.close_times = opens + bar_ms
        open_ = np.r_[start_price, self.close[:-1]]
        self.candles = Candles(
            opens,
            open_,
            np.maximum(open_, self.close) * (1 + scale / 10),
            np.minimum(open_, self.close) * (1 - scale / 10),
            self.close,
            np.ones(n),
        )

    def __len__(self) -> int:
        return len(self.close)

    def accuracy_ceiling(self) -> float:
        """The best direction accuracy of any predictor that reads ``x[t]`` only (within one
        regime): ``1/2 + arctan(1/s)/pi``, ``s`` the std of the unforeseeable rest."""
        h = self.horizon
        rest = self.noise**2 + 2 * sum(((h - i) / h) ** 2 for i in range(1, h))
        if rest == 0:
            return 1.0
        return 0.5 + math.atan(1.0 / math.sqrt(rest)) / math.pi


class LinearNet(PivotalModel):
    """Softmax regression: ``logits = W x + b`` over BUY/SELL/HOLD; ``x`` ``(batch, ...)``
    flattened to ``(batch, n_features)``."""

    model_type = "linear"

    def __init__(self, n_features: int) -> None:
        super().__init__(
            InputShape(1, 1, n_features), TargetSpec(classes=tuple(a.value for a in VOTE_ACTIONS))
        )
        self.n_features = n_features
        self.linear = nn.Linear(n_features, len(VOTE_ACTIONS))

    @property
    def hidden_size(self) -> int:
        return self.n_features

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        flat = x.reshape(x.shape[0], -1)
        return {"hidden": flat, "logits": self.linear(flat)}


def _labels(examples: Sequence[TrainingExample | GateExample]) -> torch.Tensor:
    return torch.tensor([VOTE_ACTIONS.index(e.outcome.label) for e in examples])


class _SoftmaxLearner:
    """Snapshot/restore/fit/score over a :class:`LinearNet` with Adam (shared by expert and
    gate)."""

    def __init__(self, n_features: int, seed: int, learning_rate: float, minibatch: int) -> None:
        if minibatch < 1:
            raise ValueError(f"minibatch must be >= 1, got {minibatch}")
        self.net = LinearNet(n_features)
        with torch.no_grad():  # zeros: equal probabilities, it knows nothing yet
            self.net.linear.weight.zero_()
            self.net.linear.bias.zero_()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate)
        self.minibatch = minibatch
        self._shuffle = torch.Generator().manual_seed(seed + 1)
        self.fits = 0

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"learning_rate must be > 0, got {value}")
        for group in self.optimizer.param_groups:
            group["lr"] = float(value)

    def snapshot(self) -> dict[str, Any]:
        return {
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "fits": self.fits,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.net.load_state_dict(snapshot["net"])
        self.optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        self.fits = int(snapshot["fits"])

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.net(x)["logits"], dim=1)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
        if len(y) == 0:
            raise ValueError("fit needs at least one example")
        losses = []
        self.net.train()
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=self._shuffle)
            for start in range(0, len(y), self.minibatch):
                idx = order[start : start + self.minibatch]
                loss = nn.functional.cross_entropy(self.net(x[idx])["logits"], y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()))
        self.net.eval()
        self.fits += 1
        return float(np.mean(losses))

    def _score(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if len(y) == 0:
            raise ValueError("score needs at least one example")
        predicted = self.probabilities(x).argmax(dim=1)
        return float((predicted == y).double().mean())


class LinearExpert(_SoftmaxLearner):
    """A trainable expert: softmax regression over the step's feature vector.

    Features come from :meth:`attach` (close time → vector); the inference stores them as
    ``tensors["x"]`` ``(1, n_features)`` float32. Weights start at zero (equal probabilities,
    argmax BUY): it knows nothing. Training: Adam at ``learning_rate``, minibatches shuffled
    by a generator seeded with ``seed``.
    """

    model_type = "linear"

    def __init__(
        self,
        name: str,
        n_features: int,
        seed: int = 0,
        *,
        learning_rate: float = 0.05,
        minibatch: int = 8,
    ) -> None:
        super().__init__(n_features, seed, learning_rate, minibatch)
        self.name = name
        self.depends_on: tuple[str, ...] = ()
        self.spec = InputSpec.candles([Timeframe.M1], frames=1, min_frames=1)
        self._features: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return self.spec.timeframes

    def attach(
        self, symbol: str, close_times: npt.ArrayLike, features: npt.ArrayLike
    ) -> LinearExpert:
        """Use ``features[i]`` at step ``close_times[i]`` (UTC ms, increasing) of ``symbol``."""
        times = np.asarray(close_times, dtype=np.int64)
        values = np.asarray(features, dtype=np.float32)
        if values.shape != (len(times), self.net.n_features):
            raise ValueError(
                f"features must have shape ({len(times)}, {self.net.n_features}), "
                f"got {values.shape}"
            )
        self._features[symbol] = (times, values)
        return self

    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        if symbol not in self._features:
            raise ValueError(f"{self.name}: no features for {symbol!r}; call attach() first")

    def features_at(self, symbol: str, timestamp: int) -> npt.NDArray[np.float32]:
        times, values = self._features.get(symbol, (np.empty(0, np.int64), None))
        i = int(np.searchsorted(times, timestamp))
        if values is None or i >= len(times) or times[i] != timestamp:
            raise ValueError(f"{self.name}: no feature vector for {symbol!r} at {timestamp}")
        return values[i]

    def predict(self, symbol: str, timestamp: int) -> Inference:
        """The inference at step ``timestamp`` (what :meth:`infer` answers)."""
        tensors = {"x": self.features_at(symbol, timestamp)[None, :].copy()}
        return Inference(self.replay(symbol, timestamp, tensors), tensors)

    def infer(self, request: InferenceRequest) -> Inference:
        return self.predict(request.symbol, request.timestamp)

    def replay(
        self, symbol: str, timestamp: int, tensors: Mapping[str, npt.NDArray[Any]]
    ) -> ModelOutput:
        probs = self.probabilities(torch.as_tensor(np.asarray(tensors["x"], np.float32)))[0]
        best = int(probs.argmax())
        return ModelOutput(
            model_type=self.model_type,
            model_name=self.name,
            symbol=Symbol.parse(symbol),
            timestamp=int(timestamp),
            confidence=float(probs[best]),
            predictions={
                "action": VOTE_ACTIONS[best].value,
                "action_probabilities": {
                    a.value: float(p) for a, p in zip(VOTE_ACTIONS, probs, strict=True)
                },
            },
        )

    def fallback(self) -> None:
        return None

    @staticmethod
    def _x(examples: Sequence[TrainingExample]) -> torch.Tensor:
        return torch.as_tensor(
            np.concatenate([np.asarray(e.tensors["x"], np.float32) for e in examples])
        )

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        return self._fit(self._x(examples), _labels(examples), epochs)

    def score(self, examples: Sequence[TrainingExample]) -> float:
        return self._score(self._x(examples), _labels(examples))

    def save(self, path: Path, *, metrics: Mapping[str, float]) -> Path:
        """An atomic pivotal checkpoint (weights, optimizer, metrics)."""
        ckpt = save_checkpoint(
            path,
            model=self.net,
            model_name="linear_expert",
            training_config={"lr": self.learning_rate, "batch_size": self.minibatch},
            optimizer=self.optimizer,
            metrics=dict(metrics),
        )
        return ckpt.path

    def load(self, path: Path) -> None:
        try:
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # a truncated or foreign file
            raise ModelError(f"{path} is not a readable checkpoint: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelError(f"{path} is not a pivotal checkpoint")
        self.net.load_state_dict(payload["model_state"])
        if payload.get("optimizer_state") is not None:
            self.optimizer.load_state_dict(payload["optimizer_state"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights (copies), for comparisons."""
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}


class SabotagedExpert(LinearExpert):
    """A :class:`LinearExpert` whose training makes it worse: BUY and SELL labels swapped and
    a learning rate of ``sabotage_lr``."""

    def __init__(self, *args: Any, sabotage_lr: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sabotage_lr = sabotage_lr

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        swap = torch.tensor([1, 0, 2])
        lr = self.learning_rate
        self.learning_rate = self.sabotage_lr
        try:
            return self._fit(self._x(examples), swap[_labels(examples)], epochs)
        finally:
            self.learning_rate = lr


class FrozenExpert:
    """Only the plain ``Expert`` side of a :class:`LinearExpert` (evaluated, never trained)."""

    def __init__(self, inner: LinearExpert) -> None:
        self._inner = inner
        self.name = inner.name
        self.model_type = inner.model_type
        self.depends_on = inner.depends_on
        self.spec = inner.spec

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return self._inner.timeframes

    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        self._inner.prepare(symbol, candles)

    def predict(self, symbol: str, timestamp: int) -> Inference:
        return self._inner.predict(symbol, timestamp)

    def infer(self, request: InferenceRequest) -> Inference:
        return self._inner.infer(request)

    def replay(
        self, symbol: str, timestamp: int, tensors: Mapping[str, npt.NDArray[Any]]
    ) -> ModelOutput:
        return self._inner.replay(symbol, timestamp, tensors)

    def fallback(self) -> None:
        return None


class LinearGate(_SoftmaxLearner):
    """A trainable gate: softmax regression over the experts' BUY/SELL/HOLD votes (in the
    order of ``experts``; an absent vote reads as zeros). ``ready`` once trained."""

    def __init__(
        self,
        experts: Sequence[str],
        seed: int = 0,
        *,
        learning_rate: float = 0.05,
        minibatch: int = 8,
    ) -> None:
        if not experts:
            raise ValueError("LinearGate needs at least one expert name")
        super().__init__(3 * len(experts), seed, learning_rate, minibatch)
        self.experts = tuple(experts)

    @property
    def ready(self) -> bool:
        return self.fits > 0

    def _x(self, probabilities: Sequence[Mapping[str, Sequence[float]]]) -> torch.Tensor:
        rows = [
            [p for name in self.experts for p in votes.get(name, (0.0, 0.0, 0.0))]
            for votes in probabilities
        ]
        return torch.tensor(rows, dtype=torch.float32)

    def combine(self, probabilities: Mapping[str, Sequence[float]]) -> Action:
        """The gate's action for one step's votes."""
        return VOTE_ACTIONS[int(self.probabilities(self._x([probabilities]))[0].argmax())]

    def fit(self, examples: Sequence[GateExample], *, epochs: int = 1) -> float:
        return self._fit(self._x([e.probabilities for e in examples]), _labels(examples), epochs)

    def score(self, examples: Sequence[GateExample]) -> float:
        return self._score(self._x([e.probabilities for e in examples]), _labels(examples))


def feed(
    loop: LearningLoop,
    experts: Sequence[LinearExpert | FrozenExpert],
    market: PlantedMarket,
    symbol: str,
    start: int = 0,
    stop: int | None = None,
) -> list[LearningEvent]:
    """Drive ``loop`` over bars ``start:stop`` of ``market``: at each bar every expert
    predicts, then :meth:`LearningLoop.on_step` runs. Returns the events."""
    events: list[LearningEvent] = []
    for i in range(start, len(market) if stop is None else stop):
        ts = int(market.close_times[i])
        inferences = {e.name: e.predict(symbol, ts) for e in experts}
        events += loop.on_step(symbol, ts, i, float(market.close[i]), inferences)
    return events
