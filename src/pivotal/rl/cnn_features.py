"""A trained PivotCNN's outputs and hidden state as per-step features for the RL agent.

Seed 003's RL model reads the CNN's predictions and hidden layers. :func:`cnn_features` turns
a checkpoint written by ``pivotal train`` (model, job and fitted scaling) and a symbol's
candles into one float32 row per anchor-candle close, which the RL environment joins by exact
close time (``extra=(features.times, features.values)``).

The inputs are built exactly as the checkpoint's job builds them for training
(:func:`~pivotal.training.pipeline.prepare`): the job's timeframes (anchor first, then its
streams), frames and per-candle columns (:func:`~pivotal.features.inputs.candle_columns`),
the bulk :class:`~pivotal.features.inputs.EncodedInputDataset`, then the checkpoint's fitted
per-channel standardisation (never refitted). The checkpoint's stored feature layout is
checked against the inputs' layout (:func:`~pivotal.training.checkpoints.load_checkpoint`),
so a checkpoint trained on other channels is refused with the list of differences.
:func:`build_inputs` builds those inputs and :class:`FeatureColumns` maps a forward pass's
outputs to the columns below; the orchestrator's PivotCNN expert uses both, so its per-step
features are the rows computed here.

Columns of :attr:`CNNFeatures.values`, in this order (``k`` = 1..levels):

- ``cnn_p_buy``, ``cnn_p_sell``, ``cnn_p_hold``: softmax of the action head
  (``"action_logits"``, :data:`~pivotal.models.networks.pivot_cnn.ACTIONS` order);
- ``cnn_pivot_price_l{k}`` (next level-k pivot price relative to the newest close),
  ``cnn_pivot_time_l{k}`` (log bars until it), ``cnn_pivot_confidence_l{k}`` (0..1), for the
  pivot heads the model emits;
- ``cnn_reg_{target}``: each regression target the job trained, in the target's own units
  (the checkpoint's target scaling undone);
- ``cnn_p_{column}_{class}``: class probabilities of the job's trained classification target
  (softmax of ``"logits"``), e.g. ``cnn_p_direction_1_up``;
- with ``hidden=True``, ``cnn_conv_{i}``: the conv towers' time-averaged output
  (``"conv_features"``), or ``cnn_hidden_{i}`` (``"hidden"``) for a model without conv
  features.

Causality: the row at close time ``t`` reads only candles closed by ``t`` — the bulk dataset
keeps, per stream, the newest ``frames`` candles with ``open + timeframe <= t``, and every
per-candle column of a row is computed from that candle and earlier ones. Give candles from
well before ``since`` (the job's ``warmup_bars``) so indicators and pivots are warm, as in
training; with the same candles the rows equal the model's outputs on the training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from pivotal.core.candles import Candles
from pivotal.core.clock import utc_text
from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs import EncodedInputDataset, candle_columns
from pivotal.models.base import PivotalModel
from pivotal.models.networks.pivot_cnn import ACTIONS
from pivotal.training.checkpoints import load_checkpoint, read_checkpoint
from pivotal.training.pipeline import Scaling, TrainJob
from pivotal.training.run import foreign_checkpoint_message

__all__ = [
    "ACTION_HEAD",
    "CNNFeatures",
    "FeatureColumns",
    "build_inputs",
    "cnn_features",
    "read_job_and_scaling",
]

ACTION_HEAD = "action_logits"
"""The output a model needs for :func:`cnn_features`: BUY/SELL/HOLD logits (PivotCNN)."""

_PIVOT_HEADS = ("pivot_price", "pivot_time", "pivot_confidence")


@dataclass(frozen=True, slots=True)
class CNNFeatures:
    """Per-step CNN features: row ``i`` belongs to the anchor candle closing at ``times[i]``.

    ``times``: int64 ``(n,)`` close times (UTC ms), strictly increasing; ``values``: float32
    ``(n, len(names))``; ``names``: column names (module docstring); ``checkpoint``: the path
    of the checkpoint that produced them.
    """

    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    names: tuple[str, ...]
    checkpoint: str

    def __post_init__(self) -> None:
        if self.times.ndim != 1 or self.values.shape != (len(self.times), len(self.names)):
            raise ValueError(
                f"values must be (len(times), len(names)) = ({len(self.times)}, "
                f"{len(self.names)}), got {self.values.shape}"
            )

    def __len__(self) -> int:
        return len(self.times)

    def column(self, name: str) -> npt.NDArray[np.float32]:
        """The column ``name`` (a view); ``KeyError`` listing the names if there is none."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no column {name!r}; columns: {list(self.names)}") from None


def read_job_and_scaling(path: str | Path) -> tuple[str, TrainJob, Scaling]:
    """``(registry name, job, fitted scaling)`` a ``pivotal train`` checkpoint stores.

    ``FileNotFoundError`` / ``ModelError`` for a missing / corrupt file; ``ValueError`` for a
    checkpoint that stores no job and scaling (its inputs cannot be rebuilt).
    """
    path = Path(path)
    meta = read_checkpoint(path)  # FileNotFoundError / ModelError for missing / corrupt files
    pipeline = meta.pipeline or {}
    if "job" not in pipeline or "scaling" not in pipeline:
        raise ValueError(
            foreign_checkpoint_message(
                path,
                pipeline,
                "in a run file, give it as an expert of `kind: dqn` (with depends_on: naming "
                "the PivotCNN expert it reads, if it reads one)",
            )
        )
    return (
        meta.model_name,
        TrainJob.model_validate(pipeline["job"]),
        Scaling.from_state(pipeline["scaling"]),
    )


def _candles_for(
    candles: Mapping[Timeframe, Candles], job: TrainJob, source: str
) -> dict[Timeframe, Candles]:
    given = {Timeframe.parse(tf): c for tf, c in candles.items()}
    missing = [str(tf) for tf in job.timeframes if tf not in given]
    if missing:
        raise ValueError(
            f"{source} reads {job.symbol} {', '.join(map(str, job.timeframes))} "
            f"candles, but no {', '.join(missing)} candles were given; pass every timeframe "
            "of the job (resample the base candles with pivotal.data.resample)"
        )
    return {tf: given[tf] for tf in job.timeframes}


def build_inputs(
    job: TrainJob,
    candles: Mapping[Timeframe, Candles],
    *,
    since: int | None = None,
    until: int | None = None,
    source: str = "the checkpoint",
) -> EncodedInputDataset:
    """The bulk, unscaled inputs of ``job`` over ``candles`` (module docstring), exactly as
    training builds them: one sample per anchor close in ``[since, until)`` (UTC ms; default:
    every close of the given anchor candles, the last one included).

    ``ValueError`` for a missing timeframe (named, ``source`` says whose job it is), no
    anchor candles or an empty range; ``DataError`` when no sample is complete in the range.
    Indicators and pivots restart after gaps (``job.max_missing_bars``); samples whose window
    crosses one are marked in the dataset's ``valid``.
    """
    streams = _candles_for(candles, job, source)
    gap_bars = job.max_missing_bars
    extra = {
        tf: candle_columns(c, tf, job.columns, max_missing_bars=gap_bars)
        for tf, c in streams.items()
    }
    anchor = streams[job.anchor]
    if not len(anchor):
        raise ValueError(f"no {job.anchor} candles were given; pass the anchor's history")
    start = int(anchor.timestamp[0]) if since is None else int(since)
    # default: up to and including the last given candle's close (the range is half-open)
    end = int(anchor.timestamp[-1]) + job.anchor.ms + 1 if until is None else int(until)
    if start >= end:
        raise ValueError(f"since {utc_text(start)} must be before until {utc_text(end)}")
    return EncodedInputDataset(
        job.spec(), streams, start, end, anchor=job.anchor, extra=extra, max_missing_bars=gap_bars
    )


def _check_model(model: PivotalModel, name: str, outputs: Mapping[str, torch.Tensor]) -> None:
    if ACTION_HEAD not in outputs:
        raise ValueError(
            f"the checkpoint holds a {name!r} model ({type(model).__name__}, outputs "
            f"{sorted(outputs)}), which has no {ACTION_HEAD!r} head; CNN features need a "
            "pivot_cnn checkpoint (pivotal train pivot_cnn)"
        )
    if model.shape.context:
        raise ValueError(
            f"the {name!r} model expects a context vector of {model.shape.context} values, "
            "which a training job's candle inputs do not provide"
        )


def _names(
    outputs: Mapping[str, torch.Tensor],
    job: TrainJob,
    model: PivotalModel,
    hidden_key: str | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(output keys in column order, column names)``."""
    keys: list[str] = [ACTION_HEAD]
    names = [f"cnn_p_{a.lower()}" for a in ACTIONS]
    for head in _PIVOT_HEADS:
        if head in outputs:
            keys.append(head)
            names += [f"cnn_{head}_l{k + 1}" for k in range(outputs[head].shape[1])]
    classification = job.targets()[1]
    if model.targets.regression:
        keys.append("regression")
        names += [f"cnn_reg_{c}" for c in model.targets.regression]
    if model.targets.classes:
        keys.append("logits")
        column = classification or "class"
        names += [f"cnn_p_{column}_{c}" for c in model.targets.classes]
    if hidden_key is not None:
        keys.append(hidden_key)
        prefix = "cnn_conv" if hidden_key == "conv_features" else "cnn_hidden"
        names += [f"{prefix}_{i}" for i in range(outputs[hidden_key].shape[1])]
    return tuple(keys), tuple(names)


@dataclass(frozen=True, slots=True)
class FeatureColumns:
    """How one PivotCNN's output tensors become the feature columns (module docstring).

    ``keys``: the output tensors read, in column order; ``names``: the column names;
    ``scaling``: the checkpoint's scaling (regression targets are unscaled with it).
    Build it with :meth:`of` from one forward pass's outputs; :meth:`rows` then maps the
    outputs of any batch to its rows. :func:`cnn_features` and the orchestrator's PivotCNN
    expert share it, so a row is the same whichever computed it.
    """

    keys: tuple[str, ...]
    names: tuple[str, ...]
    scaling: Scaling

    @classmethod
    def of(
        cls,
        model: PivotalModel,
        outputs: Mapping[str, torch.Tensor],
        job: TrainJob,
        scaling: Scaling,
        *,
        model_name: str,
        hidden: bool = True,
    ) -> FeatureColumns:
        """The columns of ``model`` (outputs ``outputs`` of any batch). ``hidden``: add the
        conv features (``"conv_features"``, else ``"hidden"``). ``ValueError`` for a model
        without an action head or one that needs a context vector."""
        _check_model(model, model_name, outputs)
        hidden_key = None
        if hidden:
            hidden_key = "conv_features" if "conv_features" in outputs else "hidden"
        keys, names = _names(outputs, job, model, hidden_key)
        return cls(keys, names, scaling)

    def rows(self, outputs: Mapping[str, torch.Tensor]) -> npt.NDArray[np.float32]:
        """float32 ``(batch, len(names))``: softmax of the action and class logits, the
        pivot heads as they are, regression targets in their own units, hidden as it is."""
        parts = []
        for key in self.keys:
            value = outputs[key].detach().float().cpu()
            if key in (ACTION_HEAD, "logits"):
                value = torch.softmax(value, dim=1)
            array = value.numpy()
            if key == "regression":
                array = self.scaling.unscale_targets(array)
            parts.append(array.astype(np.float32, copy=False))
        return np.concatenate(parts, axis=1)


def cnn_features(
    checkpoint_path: str | Path,
    candles: Mapping[Timeframe, Candles],
    *,
    since: int | None = None,
    until: int | None = None,
    batch_size: int = 512,
    hidden: bool = True,
    device: str = "cpu",
) -> CNNFeatures:
    """Per-step features (module docstring) of a pivot_cnn checkpoint on ``candles``.

    ``candles`` maps timeframes to one symbol's sorted candle history; it must hold every
    timeframe of the checkpoint's job (others are ignored). Rows are the anchor candles'
    closes in ``[since, until)`` (UTC ms; default: every close of the given anchor candles)
    from the first close at which every stream has ``frames`` closed candles. The model runs
    in batches of ``batch_size`` on ``device`` under ``torch.inference_mode()``.

    Raises ``FileNotFoundError`` for a missing file; ``ModelError`` for a corrupt one;
    ``ValueError`` for a checkpoint without a job, a model without an action head (it says
    which model it is), candles missing a timeframe (named), or a checkpoint whose feature
    layout differs from these inputs' (the differences listed); ``DataError`` when the
    candles give no complete sample in the range or hold invalid values.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    path = Path(checkpoint_path)
    name, job, scaling = read_job_and_scaling(path)
    inputs = build_inputs(job, candles, since=since, until=until, source=f"checkpoint {path}")
    model, _ = load_checkpoint(path, expected_layout=inputs.layout, map_location=device)
    mean = torch.as_tensor(scaling.inputs.mean, dtype=torch.float32)
    std = torch.as_tensor(scaling.inputs.std, dtype=torch.float32)

    n = len(inputs)
    if n == 0:  # the dataset refuses an empty range, so this is a broken invariant
        raise RuntimeError("the input dataset produced no samples")
    model.eval()
    with torch.inference_mode():
        first = min(batch_size, n)
        x = (inputs.get_batch(np.arange(first)) - mean) / std
        outputs = model(x.to(device), None)
        columns = FeatureColumns.of(model, outputs, job, scaling, model_name=name, hidden=hidden)
        values = np.empty((n, len(columns.names)), dtype=np.float32)
        values[:first] = columns.rows(outputs)
        for lo in range(first, n, batch_size):
            x = (inputs.get_batch(np.arange(lo, min(lo + batch_size, n))) - mean) / std
            values[lo : lo + len(x)] = columns.rows(model(x.to(device), None))
    times = inputs.times(np.arange(n)).astype(np.int64, copy=False)
    return CNNFeatures(times, values, columns.names, str(path))
