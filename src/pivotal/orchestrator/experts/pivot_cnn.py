"""A trained PivotCNN checkpoint (``pivotal train pivot_cnn``) as an orchestrator expert.

:class:`PivotCNNExpert` reads the checkpoint's model, training job and fitted scaling.
``prepare`` builds the symbol's causal bulk inputs exactly as the job (and
:func:`~pivotal.rl.cnn_features.cnn_features`) builds them: the job's timeframes, frames and
per-candle columns in an :class:`~pivotal.features.inputs.EncodedInputDataset`, one sample
per anchor-candle close. ``infer`` standardises the sample of the request's close time with
the checkpoint's scaling (never refitted) and runs the network once:

- ``output``: :func:`~pivotal.models.outputs.to_model_outputs`'s
  :class:`~pivotal.core.types.ModelOutput` (``action``, ``action_probabilities``, class
  predictions, ``hidden``/``conv_features``/``recurrent_state`` hidden states), plus
  ``hidden_states["features"]``: the float32 row that
  :func:`~pivotal.rl.cnn_features.cnn_features` gives for that close time (same
  :class:`~pivotal.rl.cnn_features.FeatureColumns`, with hidden columns), named by
  ``metadata["feature_names"]``. The DQN expert reads that row.
- **Real units.** ``predictions["regression"]`` is in the targets' own units (the
  checkpoint's target scaling inverted: ``pivot1_high_bars`` in bars of the anchor
  timeframe, ``pivot1_high_rel`` as ``log(pivot / close)``); the network's standardised row
  stays in ``hidden_states["regression_scaled"]``. ``predictions["pivot_points"]`` are those
  pivot targets as prices and bars (:func:`~pivotal.models.outputs.pivot_targets`: ``price =
  close × exp(rel)`` with the anchor candle's close at the sample time, in
  ``metadata["reference_close"]``). The network's ``pivot_price``/``pivot_time``/
  ``pivot_confidence`` heads are not trained by ``pivotal train`` and are not shown as
  predictions (they stay in the feature row the DQN was trained on).
- ``tensors``: ``{"x": float32 (1, streams, frames, channels)}``, the standardised input.

Online learning (seed 003 §4.6): :meth:`PivotCNNExpert.fit` trains **only the action head**
(``action_logits``, BUY/SELL/HOLD) on matured outcomes with cross-entropy and Adam, in eval
mode (no dropout; normalisation statistics untouched), the rest of the network frozen. So the
hidden states and pivot/regression outputs other experts read (the DQN was trained on them)
stay as they were; only the ``cnn_p_buy/sell/hold`` columns move. Stage 3's supervised job
leaves that head untrained, so this is where it learns.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from pivotal.core.candles import Candles
from pivotal.core.errors import ModelError
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, ModelOutput
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.inputs.validation import format_time
from pivotal.models.base import PivotalModel
from pivotal.models.networks.pivot_cnn import ACTIONS
from pivotal.models.outputs import pivot_targets, to_model_outputs
from pivotal.orchestrator.contracts import Inference, InferenceRequest, TrainingExample
from pivotal.orchestrator.experts.accelerator import BatchAccelerator, PreparedSamples
from pivotal.orchestrator.experts.action_head import (
    HeadInputs,
    fit_head,
    frozen_state_equal,
    head_layer,
    label_indices,
    optimizes,
    stored_window,
)
from pivotal.rl.cnn_features import (
    ACTION_HEAD,
    FeatureColumns,
    build_inputs,
    read_job_and_scaling,
)
from pivotal.training.checkpoints import (
    Checkpoint,
    layout_differences,
    layout_to_dict,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from pivotal.training.pipeline import Scaling, TrainJob

__all__ = ["PivotCNNExpert"]

logger = logging.getLogger(__name__)

_LABEL_INDEX = {Action(a): i for i, a in enumerate(ACTIONS)}
"""Outcome label → the action head's column (by name)."""

ONLINE_OPTIMIZER = "adam:action_logits"
"""``pipeline["online_optimizer"]`` of checkpoints this expert saves: their optimizer state is
its online Adam over the action head (a ``pivotal train`` checkpoint's is the trainer's)."""


def _anchor_close(request: InferenceRequest, anchor: Timeframe) -> float | None:
    """The close of the newest ``anchor`` candle closed at the request's time."""
    candles = request.input.ohlcv.get(anchor)
    return None if candles is None or not len(candles) else float(candles.close[-1])


class PivotCNNExpert:
    """A PivotCNN checkpoint behind the orchestrator (module docstring).

    ``checkpoint``: a ``pivotal train pivot_cnn`` checkpoint (or one this expert saved);
    ``name``: the expert's unique name (``ModelOutput.model_name``); ``device``: where the
    network runs. ``learning_rate`` (Adam, per step), ``batch_size`` (examples per gradient
    step) and ``seed`` (example order) drive :meth:`fit`; they are plain attributes the
    learning loop may set.
    """

    model_type = "cnn"
    depends_on: tuple[str, ...] = ()

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        name: str = "pivot_cnn",
        device: str = "cpu",
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if not name:
            raise ValueError("an expert needs a non-empty name")
        self.name = name
        self.device = device
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._data: dict[str, PreparedSamples] = {}
        self._accelerator = BatchAccelerator()
        self._observation: ObservationBuilder | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._load(Path(checkpoint))

    # -- loading -----------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        registry_name, job, scaling = read_job_and_scaling(path)
        model, ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.feature_layout is None:
            raise ValueError(
                f"checkpoint {path} stores no feature layout, so its inputs cannot be checked; "
                "train the model with `pivotal train`"
            )
        model.eval()
        probe = torch.zeros((1, model.shape.streams, model.shape.frames, model.shape.channels))
        with torch.inference_mode():
            outputs = model(probe.to(self.device), None)
        columns = FeatureColumns.of(model, outputs, job, scaling, model_name=registry_name)
        self._path = path
        self._job: TrainJob = job
        self._scaling: Scaling = scaling
        self._model: PivotalModel = model
        self._checkpoint: Checkpoint = ckpt
        self._columns = columns
        self._mean = torch.as_tensor(scaling.inputs.mean, dtype=torch.float32)
        self._std = torch.as_tensor(scaling.inputs.std, dtype=torch.float32)
        self._optimizer = None
        self._observation = None  # rebuilt from the new job when first read
        self._accelerator.clear()
        self.spec: InputSpec = job.spec()

    @property
    def checkpoint(self) -> Path:
        """The checkpoint the weights were last loaded from."""
        return self._path

    @property
    def job(self) -> TrainJob:
        return self._job

    @property
    def trained_until_ms(self) -> int | None:
        """The newest time whose data may be in the loaded weights
        (:attr:`~pivotal.training.checkpoints.Checkpoint.trained_until_ms`)."""
        return self._checkpoint.trained_until_ms

    @property
    def model(self) -> PivotalModel:
        return self._model

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        """The job's timeframes: anchor first, then its streams."""
        return self._job.timeframes

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of ``hidden_states["features"]`` (cnn_features' columns, hidden included)."""
        return self._columns.names

    # -- inference ---------------------------------------------------------------------------
    def prepare(self, symbol: str, candles: Mapping[Timeframe, Candles]) -> None:
        """Build ``symbol``'s bulk inputs from its candle history (every job timeframe)."""
        inputs = build_inputs(self._job, candles, source=f"expert {self.name!r}")
        diffs = layout_differences(
            self._checkpoint.feature_layout or {}, layout_to_dict(inputs.layout)
        )
        if diffs:
            raise ValueError(
                f"expert {self.name!r}: checkpoint {self._path} was trained on another feature "
                f"layout than its job builds now: {'; '.join(diffs)}; retrain the model"
            )
        times = inputs.times(np.arange(len(inputs))).astype(np.int64, copy=False)
        anchor = candles[self._job.anchor]
        close_times = np.asarray(anchor.timestamp, dtype=np.int64) + self._job.anchor.ms
        closes = np.asarray(anchor.close, dtype=np.float64)
        self._data[symbol] = PreparedSamples(inputs, times, close_times, closes)

    def infer(self, request: InferenceRequest) -> Inference:
        """The output at ``request.timestamp``: from the accelerated batch when ``prepare``
        gave this symbol's history (replay), else from the market frame through
        ``request.observe`` (the pushed path)."""
        t = int(request.timestamp)
        bulk = self._data.get(request.symbol)
        if bulk is not None:
            x, base, row = self._accelerated(bulk, request.symbol, t)
            close = bulk.close_at(t)
        else:
            observed = self._observed(request)
            with torch.inference_mode():
                outputs = self._model(observed.to(self.device), None)
                bases, rows = self._convert(outputs, request.symbol, np.array([t]))
            x, base, row = observed.numpy(), bases[0], rows[0]
            close = _anchor_close(request, self._job.anchor)
        output = self._finish(base, row, t, close)
        return Inference(output, {"x": x})

    @property
    def observation(self) -> ObservationBuilder:
        """How this expert's input is read from the market frame (the job's streams, frames
        and per-candle columns, anchored on the job's timeframe)."""
        if self._observation is None:
            self._observation = ObservationBuilder(
                self._job.spec(),
                anchor=self._job.anchor,
                columns=self._job.columns,
                max_missing_bars=self._job.max_missing_bars,
            )
        return self._observation

    def _observed(self, request: InferenceRequest) -> torch.Tensor:
        if request.observe is None:
            raise ValueError(
                f"expert {self.name!r} has no input for {request.symbol} at "
                f"{format_time(int(request.timestamp))}: the request reads no market frame and "
                f"no history was prepared for the symbol (prepared: {sorted(self._data)})"
            )
        raw = request.observe(self.observation)
        if raw is None:
            raise ValueError(
                f"expert {self.name!r}: the market frame holds no complete {request.symbol} "
                f"window at {format_time(int(request.timestamp))} (too few bars since the "
                "start or the last gap)"
            )
        return (torch.from_numpy(np.asarray(raw, dtype=np.float32))[None] - self._mean) / self._std

    def _accelerated(
        self, bulk: PreparedSamples, symbol: str, t: int
    ) -> tuple[npt.NDArray[np.float32], Any, Any]:
        """The standardised input, converted output and feature row at ``t`` from a batch
        evaluated ahead of the clock (:mod:`~pivotal.orchestrator.experts.accelerator`)."""
        i = int(bulk.times.searchsorted(t))
        if i >= len(bulk.times) or int(bulk.times[i]) != t:
            raise ValueError(
                f"expert {self.name!r} has no {symbol} sample closing at "
                f"{format_time(t)}: its prepared samples close from "
                f"{format_time(int(bulk.times[0]))} to {format_time(int(bulk.times[-1]))} every "
                f"{self._job.anchor}; call prepare() with candles up to that time"
            )
        return self._accelerator.at(
            symbol,
            i,
            count=len(bulk.times),
            model=self._model,
            inputs=lambda rows: ((bulk.inputs.get_batch(rows) - self._mean) / self._std).to(
                self.device
            ),
            times=bulk.times,
            convert=lambda outputs, times: self._convert(outputs, symbol, times),
        )

    def features_ahead(
        self, symbol: str, t: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """The ``hidden_states["features"]`` rows of the samples closing at ``t`` and after
        that the accelerated batch already holds with the current weights, with their close
        times (what :meth:`infer` will answer at those steps unless the weights change);
        None when nothing is accelerated there."""
        bulk = self._data.get(symbol)
        if bulk is None:
            return None
        i = int(np.searchsorted(bulk.times, t))
        if i >= len(bulk.times) or int(bulk.times[i]) != t:
            return None
        found = self._accelerator.ahead(symbol, i, self._model)
        if found is None:
            return None
        _, rows = found
        return bulk.times[i : i + len(rows)], rows

    def replay(self, symbol: str, timestamp: int, tensors: Mapping[str, Any]) -> ModelOutput:
        """The output of the current weights on a stored ``tensors["x"]``."""
        return self._run(symbol, int(timestamp), self._stored_x(tensors, "replay"))

    def _run(self, symbol: str, timestamp: int, x: torch.Tensor) -> ModelOutput:
        with torch.inference_mode():
            outputs = self._model(x.to(self.device), None)
            bases, rows = self._convert(outputs, symbol, np.array([timestamp]))
        bulk = self._data.get(symbol)
        close = None if bulk is None else bulk.close_at(timestamp)
        return self._finish(bases[0], rows[0], timestamp, close)

    def _convert(
        self, outputs: Mapping[str, torch.Tensor], symbol: str, times: npt.NDArray[np.int64]
    ) -> tuple[list[ModelOutput], npt.NDArray[np.float32]]:
        """A batch of network outputs as ``ModelOutput`` s and their feature rows."""
        bases = to_model_outputs(
            self._model,
            dict(outputs),
            model_name=self.name,
            symbols=symbol,
            timestamps=times,
            target_scaling=self._target_scaling(),
        )
        return bases, self._columns.rows(dict(outputs))

    def _finish(
        self, base: ModelOutput, row: npt.NDArray[np.float32], timestamp: int, close: float | None
    ) -> ModelOutput:
        """One sample's output with its feature row and pivot prices (module docstring)."""
        hidden = dict(base.hidden_states or {})
        hidden["features"] = row
        metadata = {**base.metadata, "feature_names": self._columns.names}
        predictions = dict(base.predictions)
        predictions.pop("pivot_points", None)  # untrained heads: not a prediction
        pivots = pivot_targets(
            predictions.get("regression", {}),
            close=close,
            timestamp=timestamp,
            bar_ms=self._job.anchor.ms,
        )
        if pivots:
            predictions["pivot_points"] = pivots
            metadata["reference_close"] = close
        return ModelOutput(  # dataclasses.replace(base, ...) without its per-field walk
            *(base.model_type, base.model_name, base.symbol, base.timestamp, base.confidence),
            predictions,
            hidden,
            metadata,
        )

    def _target_scaling(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """The regression targets' training scaling, None when the model has none."""
        width = len(self._model.targets.regression)
        mean, std = self._scaling.target_mean, self._scaling.target_std
        if not width or len(mean) != width or len(std) != width:
            return None
        return mean, std

    def _bulk(self, symbol: str) -> PreparedSamples:
        bulk = self._data.get(symbol)
        if bulk is None:
            raise ValueError(
                f"expert {self.name!r} has no inputs for {symbol}: call prepare({symbol!r}, "
                f"candles) first (prepared: {sorted(self._data)})"
            )
        return bulk

    def _stored_x(self, tensors: Mapping[str, Any], where: str) -> torch.Tensor:
        shape = self._model.shape
        want = (shape.streams, shape.frames, shape.channels)
        return stored_window(tensors, "x", want, f"expert {self.name!r} {where}")

    def fallback(self) -> PivotCNNExpert | None:
        """A fresh expert from the checkpoint last loaded (the weights before any online
        update), sharing this one's prepared inputs when the job's inputs are the same; None
        when that checkpoint cannot be loaded any more (logged)."""
        try:
            fresh = PivotCNNExpert(
                self._path,
                name=self.name,
                device=self.device,
                learning_rate=self.learning_rate,
                batch_size=self.batch_size,
                seed=self.seed,
            )
        except (OSError, ModelError, ValueError) as exc:
            logger.warning("expert %r: no fallback from %s: %s", self.name, self._path, exc)
            return None
        if self._same_inputs(fresh._job, fresh._checkpoint):
            fresh._data = dict(self._data)
        return fresh

    def _same_inputs(self, job: TrainJob, ckpt: Checkpoint) -> bool:
        return (
            job.spec() == self._job.spec()
            and job.columns == self._job.columns
            and ckpt.feature_layout == self._checkpoint.feature_layout
        )

    # -- learning (TrainableExpert) ----------------------------------------------------------
    def _head(self) -> list[torch.nn.Parameter]:
        params = [
            p
            for n, p in self._model.named_parameters()
            if ACTION_HEAD in n.split(".")[:-1]  # e.g. head.outputs.action_logits.weight
        ]
        if not params:
            raise ValueError(
                f"expert {self.name!r}: the model has no {ACTION_HEAD!r} layer to train"
            )
        return params

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._head(), lr=self.learning_rate)

    def training_copy(self) -> PivotCNNExpert:
        """An independent copy to train off the decision thread (the learning worker): its
        own network, online optimizer state and head-input cache; the job, scaling,
        checkpoint and prepared inputs are shared read-only (the copy never prepares or
        infers)."""
        clone = copy.copy(self)
        clone._model = copy.deepcopy(self._model)
        clone._model.eval()
        clone._optimizer = None
        if self._optimizer is not None:
            clone._optimizer = clone._new_optimizer()
            clone._optimizer.load_state_dict(copy.deepcopy(self._optimizer.state_dict()))
        clone._head_cache = HeadInputs()
        return clone

    def snapshot(self) -> dict[str, Any]:
        """Deep copies of the weights and the online optimizer's state."""
        return {
            "model": {k: v.detach().clone() for k, v in self._model.state_dict().items()},
            "optimizer": None
            if self._optimizer is None
            else copy.deepcopy(self._optimizer.state_dict()),
        }

    def restore(self, snapshot: Any) -> None:
        """Put back the weights and optimizer state of :meth:`snapshot` (bit for bit). The
        cached head inputs stay when the frozen part of the snapshot equals the network's."""
        if not isinstance(snapshot, Mapping) or "model" not in snapshot:
            raise TypeError(
                f"expert {self.name!r}: restore takes what snapshot() returned, got "
                f"{type(snapshot).__name__}"
            )
        state = snapshot["model"]
        layer = head_layer(self._model, ACTION_HEAD)
        cache = self._head_inputs(layer)
        same = frozen_state_equal(self._model, layer, state)
        self._model.load_state_dict(state)
        self._model.eval()
        self._head_cache = cache.restamped(self._model, layer) if same else HeadInputs()
        optimizer = snapshot.get("optimizer")
        if optimizer is None:
            self._optimizer = None
            return
        kept = self._optimizer
        if kept is None or not optimizes(kept, list(layer.parameters())):
            kept = self._new_optimizer()  # (an Adam's construction costs ~0.3 ms)
        kept.load_state_dict(copy.deepcopy(optimizer))
        self._optimizer = kept

    def _head_inputs(self, layer: torch.nn.Module) -> HeadInputs:
        """The head-input cache of the current network (a new one after a checkpoint was
        loaded or the frozen weights changed)."""
        cache: HeadInputs | None = getattr(self, "_head_cache", None)
        cache = (cache if cache is not None else HeadInputs()).for_model(self._model, layer)
        self._head_cache = cache
        return cache

    def _examples(
        self, examples: Sequence[TrainingExample], where: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The action head's inputs ``(n, fusion)`` of ``examples`` (computed once per
        example from its stored ``x`` with the frozen network, then cached) and their labels
        as action-head indices."""
        if not examples:
            raise ValueError(f"expert {self.name!r} {where}: no examples given")
        labels = label_indices(
            examples,
            _LABEL_INDEX,  # mapped by name, not by position
            lambda e: f"expert {self.name!r} {where}: {e.symbol} at {format_time(e.timestamp)}",
        )
        layer = head_layer(self._model, ACTION_HEAD)
        self._model.eval()
        inputs = self._head_inputs(layer).rows(
            layer,
            [(e.symbol, int(e.timestamp)) for e in examples],
            lambda i: self._stored_x(examples[i].tensors, where),
            self.device,
        )
        return inputs, labels

    def fit(self, examples: Sequence[TrainingExample], *, epochs: int = 1) -> float:
        """Train the action head on ``examples`` (their stored ``x`` and outcome labels) for
        ``epochs`` passes in shuffled mini-batches of ``batch_size`` (order seeded by
        ``seed``); returns the mean cross-entropy over all steps (per example). The frozen
        network runs once per example (:mod:`~pivotal.orchestrator.experts.action_head`)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        if self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(
                f"batch_size must be >= 1 and learning_rate > 0, got {self.batch_size} and "
                f"{self.learning_rate}"
            )
        inputs, y = self._examples(examples, "fit")
        if self._optimizer is None:
            self._optimizer = self._new_optimizer()
        for group in self._optimizer.param_groups:
            group["lr"] = self.learning_rate
        layer = head_layer(self._model, ACTION_HEAD)
        loss = fit_head(
            layer,
            self._optimizer,
            inputs,
            y,
            epochs=epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device,
        )
        return loss

    def score(self, examples: Sequence[TrainingExample]) -> float:
        """Accuracy in [0, 1] of the current action head on ``examples`` (argmax == label)."""
        logits, y = self._logits(examples, "score")
        return int((logits.argmax(dim=1) == y).sum()) / len(y)

    def log_loss(self, examples: Sequence[TrainingExample]) -> float:
        """Mean cross-entropy (natural log) of the current action head on ``examples``."""
        logits, y = self._logits(examples, "log_loss")
        return float(F.cross_entropy(logits.double(), y))

    def scores(self, examples: Sequence[TrainingExample]) -> tuple[float, float]:
        """``(score, log_loss)`` of ``examples`` from one forward pass (the learning loop
        judges every candidate, and the current model, on both)."""
        logits, y = self._logits(examples, "scores")
        accuracy = int((logits.argmax(dim=1) == y).sum()) / len(y)
        return accuracy, float(F.cross_entropy(logits.double(), y))

    def _logits(
        self, examples: Sequence[TrainingExample], where: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, y = self._examples(examples, where)
        layer = head_layer(self._model, ACTION_HEAD)
        with torch.inference_mode():
            logits = layer(inputs.to(self.device))
        return logits.cpu(), y

    def save(self, path: Path, *, metrics: Mapping[str, float]) -> Path:
        """Atomically write the current weights as a checkpoint that is again a valid
        ``PivotCNNExpert`` (and :func:`~pivotal.rl.cnn_features.cnn_features`) checkpoint:
        the job, scaling, layout and spec of the loaded one, these ``metrics``, and the online
        optimizer's state."""
        ckpt = self._checkpoint
        pipeline = dict(ckpt.pipeline or {})
        pipeline["online_optimizer"] = ONLINE_OPTIMIZER if self._optimizer is not None else None
        saved = save_checkpoint(
            path,
            model=self._model,
            training_config=ckpt.training_config,
            optimizer=self._optimizer,
            scaler_state=ckpt.scaler_state,
            feature_layout=ckpt.feature_layout,
            input_spec=ckpt.input_spec,
            metrics=dict(metrics),
            data_span=ckpt.data_span,
            model_name=ckpt.model_name,
            epoch=ckpt.epoch,
            pipeline=pipeline,
        )
        return saved.path

    def load(self, path: Path) -> None:
        """Load the weights (and online optimizer state, if it saved one) of a checkpoint;
        from now on :meth:`fallback` reloads from ``path``. The checkpoint's job must build
        the same inputs as the current one, else ``ValueError`` (build a new expert)."""
        path = Path(path)
        job = read_job_and_scaling(path)[1]
        if not self._same_inputs(job, read_checkpoint(path)):
            raise ValueError(
                f"expert {self.name!r}: checkpoint {path} builds other inputs (timeframes, "
                "frames, columns or layout) than the loaded one; make a new expert for it"
            )
        self._load(path)  # keeps the prepared inputs: they are the same
        pipeline = self._checkpoint.pipeline or {}
        state = self._checkpoint.optimizer_state
        if pipeline.get("online_optimizer") == ONLINE_OPTIMIZER and state is not None:
            self._optimizer = self._new_optimizer()
            self._optimizer.load_state_dict(state)
