"""Fake experts for tests of the orchestrator: each implements the
:class:`~pivotal.orchestrator.contracts.Expert` protocol with one behaviour.

- :class:`ConstantExpert`: always the same vote.
- :class:`RaisingExpert`: raises on every call.
- :class:`HangingExpert`: blocks until its ``release`` event is set (or ``block_s`` passes).
- :class:`NaNExpert`: answers with a NaN in its predictions or hidden states.
- :class:`RecordingExpert`: records the upstream outputs and last predictions it was given.
- :class:`FlakyExpert`: raises at the step timestamps in ``fail_at``, votes otherwise.
- :class:`SlowExpert`: sleeps ``delay_s`` before voting.
- :class:`BarrierExpert`: waits on a shared barrier; proves that calls overlap in time.

Every fake takes ``name``, ``depends_on``, ``spec`` (default: 1m candles, one frame),
``timeframes`` (default: the spec's), ``fallback`` (the expert :meth:`~FakeExpert.fallback`
returns; ``fallback_error=True`` makes it raise instead) and ``fail_prepare`` (prepare
raises). Each records ``calls`` (step timestamps), ``threads`` (the thread of each call)
and ``prepared`` (symbols prepared, in order). Helpers :func:`fake_input` and
:func:`fake_account` build a valid step input and a flat account.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, BaseDataInput, ModelOutput
from pivotal.features.inputs.spec import InputSpec
from pivotal.orchestrator.contracts import Expert, Inference, InferenceRequest, Tensors

__all__ = [
    "DEFAULT_SPEC",
    "BarrierExpert",
    "ConstantExpert",
    "FakeExpert",
    "FlakyExpert",
    "HangingExpert",
    "NaNExpert",
    "RaisingExpert",
    "RecordingExpert",
    "SlowExpert",
    "fake_account",
    "fake_candles",
    "fake_input",
    "vote",
]

DEFAULT_SPEC = InputSpec.candles((Timeframe.M1,), frames=1, min_frames=1)
"""The fakes' default input: one closed 1m candle."""


def fake_candles(timeframe: Timeframe, frames: int, end: int, price: float = 100.0) -> Candles:
    """``frames`` flat candles of ``timeframe`` whose last one closes at ``end`` (UTC ms)."""
    step = Timeframe.parse(timeframe).ms
    opens = end - step * np.arange(frames, 0, -1, dtype=np.int64)
    flat = np.full(frames, price)
    return Candles(opens, flat, flat + 1.0, flat - 1.0, flat, np.ones(frames))


def fake_input(
    symbol: str,
    timestamp: int,
    frames: Mapping[Timeframe, int] | None = None,
    *,
    last_predictions: Mapping[str, ModelOutput] | None = None,
) -> BaseDataInput:
    """A valid input at ``timestamp`` (UTC ms) with ``frames[tf]`` closed candles per timeframe
    (default: 10 one-minute candles) and no reference market."""
    counts = {Timeframe.M1: 10} if frames is None else frames
    ohlcv = {tf: fake_candles(tf, n, timestamp - timestamp % tf.ms) for tf, n in counts.items()}
    return BaseDataInput(
        symbol=Symbol.parse(symbol),
        timestamp=timestamp,
        ohlcv=ohlcv,
        last_predictions=dict(last_predictions or {}),
    )


def fake_account(timestamp: int = 0, equity: float = 10_000.0) -> AccountSnapshot:
    """A flat account holding ``equity`` USDT, no position."""
    return AccountSnapshot(timestamp, "USDT", equity, equity, 0.0, equity, 1.0, 0.0, 0.0, 0.0, {})


class FakeExpert(ABC):
    """Base of the fakes: protocol attributes, call records, fallback and prepare switches.
    Subclasses implement :meth:`answer`."""

    model_type = "fake"

    def __init__(
        self,
        name: str,
        *,
        depends_on: tuple[str, ...] = (),
        spec: InputSpec = DEFAULT_SPEC,
        timeframes: tuple[Timeframe, ...] | None = None,
        fallback: Expert | None = None,
        fallback_error: bool = False,
        fail_prepare: bool = False,
    ) -> None:
        self.name = name
        self.depends_on = tuple(depends_on)
        self.spec = spec
        self._timeframes = tuple(spec.timeframes if timeframes is None else timeframes)
        self._fallback = fallback
        self._fallback_error = fallback_error
        self._fail_prepare = fail_prepare
        self.calls: list[int] = []
        self.threads: list[threading.Thread] = []
        self.prepared: list[str] = []

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return self._timeframes

    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        if self._fail_prepare:
            raise RuntimeError(f"{self.name}: prepare failed on purpose")
        self.prepared.append(symbol)

    def infer(self, request: InferenceRequest) -> Inference:
        self.calls.append(request.timestamp)
        self.threads.append(threading.current_thread())
        return self.answer(request)

    @abstractmethod
    def answer(self, request: InferenceRequest) -> Inference:
        """The inference this fake gives for ``request``."""

    def replay(self, symbol: str, timestamp: int, tensors: Tensors) -> ModelOutput:
        return self.output(symbol, timestamp)

    def output(self, symbol: str, timestamp: int) -> ModelOutput:
        """A HOLD vote at full confidence (subclasses vote otherwise)."""
        return vote(self.name, symbol, timestamp, Action.HOLD, 1.0)

    def fallback(self) -> Expert | None:
        if self._fallback_error:
            raise RuntimeError(f"{self.name}: no checkpoint to fall back to")
        return self._fallback


def vote(
    name: str,
    symbol: str | Symbol,
    timestamp: int,
    action: Action,
    confidence: float,
    probabilities: Mapping[Action, float] | None = None,
    hidden: Mapping[str, Any] | None = None,
) -> ModelOutput:
    """A ModelOutput voting ``action``; ``probabilities`` go to
    ``predictions["action_probabilities"]`` when given."""
    predictions: dict[str, Any] = {"action": Action.parse(action).value}
    if probabilities is not None:
        predictions["action_probabilities"] = {a.value: p for a, p in probabilities.items()}
    return ModelOutput(
        model_type="fake",
        model_name=name,
        symbol=Symbol.parse(symbol),
        timestamp=timestamp,
        confidence=confidence,
        predictions=predictions,
        hidden_states=hidden,
    )


class ConstantExpert(FakeExpert):
    """Always votes ``action`` with ``confidence`` (and ``probabilities`` when given)."""

    def __init__(
        self,
        name: str,
        action: Action = Action.HOLD,
        confidence: float = 1.0,
        probabilities: Mapping[Action, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.action = Action.parse(action)
        self.confidence = confidence
        self.probabilities = None if probabilities is None else dict(probabilities)

    def output(self, symbol: str, timestamp: int) -> ModelOutput:
        return vote(self.name, symbol, timestamp, self.action, self.confidence, self.probabilities)

    def answer(self, request: InferenceRequest) -> Inference:
        tensors = {"x": np.array([[self.confidence]], dtype=np.float32)}
        return Inference(self.output(request.symbol, request.timestamp), tensors)


class RaisingExpert(FakeExpert):
    """Raises ``RuntimeError(message)`` on every call."""

    def __init__(self, name: str, message: str = "boom", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.message = message

    def answer(self, request: InferenceRequest) -> Inference:
        raise RuntimeError(self.message)


class HangingExpert(FakeExpert):
    """Blocks on ``release`` (a ``threading.Event``) for up to ``block_s`` seconds, then votes
    HOLD; set ``release`` in the test's teardown so no thread outlives it. ``finished``
    counts the calls that came back."""

    def __init__(self, name: str, block_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.block_s = block_s
        self.release = threading.Event()
        self.finished = 0

    def answer(self, request: InferenceRequest) -> Inference:
        self.release.wait(self.block_s)
        self.finished += 1
        return Inference(self.output(request.symbol, request.timestamp))


class NaNExpert(FakeExpert):
    """Answers with a NaN ``where``: ``"predictions"`` (a nested list value),
    ``"hidden_states"`` (an array) or ``"probabilities"`` (the BUY probability)."""

    def __init__(self, name: str, where: str = "predictions", **kwargs: Any) -> None:
        if where not in ("predictions", "hidden_states", "probabilities"):
            raise ValueError(
                f"NaNExpert where must be predictions, hidden_states or probabilities, "
                f"got {where!r}"
            )
        super().__init__(name, **kwargs)
        self.where = where

    def answer(self, request: InferenceRequest) -> Inference:
        predictions: dict[str, Any] = {"action": Action.BUY.value}
        hidden = None
        if self.where == "predictions":
            predictions["levels"] = {"highs": [1.0, [2.0, math.nan]]}
        elif self.where == "hidden_states":
            hidden = {"features": np.array([0.5, np.nan, 0.1])}
        else:
            predictions["action_probabilities"] = {"BUY": math.nan, "SELL": 0.2, "HOLD": 0.8}
        output = ModelOutput(
            model_type="fake",
            model_name=self.name,
            symbol=Symbol.parse(request.symbol),
            timestamp=request.timestamp,
            confidence=0.5,
            predictions=predictions,
            hidden_states=hidden,
        )
        return Inference(output)


class RecordingExpert(ConstantExpert):
    """Votes like :class:`ConstantExpert` and records what it was given: ``upstream`` (per
    call, the same-step outputs by name) and ``last_predictions`` (per call, the input's
    earlier outputs by name)."""

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        self.upstream: list[dict[str, ModelOutput]] = []
        self.last_predictions: list[dict[str, ModelOutput]] = []

    def answer(self, request: InferenceRequest) -> Inference:
        self.upstream.append(dict(request.upstream))
        self.last_predictions.append(dict(request.input.last_predictions))
        return super().answer(request)


class FlakyExpert(ConstantExpert):
    """Raises at the step timestamps in ``fail_at``; votes like :class:`ConstantExpert` at
    every other step."""

    def __init__(self, name: str, fail_at: Collection[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        self.fail_at = frozenset(fail_at)

    def answer(self, request: InferenceRequest) -> Inference:
        if request.timestamp in self.fail_at:
            raise RuntimeError(f"{self.name} fails at {request.timestamp} on purpose")
        return super().answer(request)


class SlowExpert(ConstantExpert):
    """Sleeps ``delay_s`` seconds, then votes like :class:`ConstantExpert`."""

    def __init__(self, name: str, delay_s: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        self.delay_s = delay_s

    def answer(self, request: InferenceRequest) -> Inference:
        time.sleep(self.delay_s)
        return super().answer(request)


class BarrierExpert(ConstantExpert):
    """Waits on ``barrier`` (shared by the experts that should overlap) for up to
    ``timeout_s``; ``overlapped`` records per call whether every party arrived, which can
    only happen when the calls ran at the same time."""

    def __init__(
        self, name: str, barrier: threading.Barrier, timeout_s: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self.barrier = barrier
        self.timeout_s = timeout_s
        self.overlapped: list[bool] = []

    def answer(self, request: InferenceRequest) -> Inference:
        try:
            self.barrier.wait(self.timeout_s)
            self.overlapped.append(True)
        except threading.BrokenBarrierError:
            self.overlapped.append(False)
        return super().answer(request)
