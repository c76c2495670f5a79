"""From stored candles to a trained, evaluated checkpoint: the path ``pivotal train`` takes.

A :class:`TrainJob` names the model, the market (exchange, symbol, anchor timeframe plus any
other timeframes as extra streams), the time range, the per-candle columns, the labels and
which of them the model learns, and the training settings. :func:`prepare` turns it into
data:

1. candles of every stream are read from the store, from ``warmup_bars`` before ``since``
   (so indicators and pivots are warm at the first sample) up to ``until``;
2. per-candle columns (:func:`~pivotal.features.inputs.candle_columns`) join the OHLCV
   channels; the bulk :class:`~pivotal.features.inputs.EncodedInputDataset` yields one
   sample per anchor close in ``[since, until)``;
3. labels (:class:`~pivotal.training.labels.LabelSet`) of the anchor candles are paired with
   the samples (:class:`~pivotal.training.data.SupervisedDataset`);
   Samples whose input window or label horizon crosses a gap (a missing run of more than
   ``max_missing_bars`` anchor bars, :mod:`pivotal.core.gaps`) are dropped; indicators,
   pivots and labels restart after every gap. :meth:`Prepared.sample_summary` says how many
   samples were dropped and why, and which gaps the range holds;
4. a chronological train / validation / test split with a purge gap of
   ``purge_for(label_horizon, frames)`` samples, so no input window or label window
   straddles two sets;
5. scaling fitted on the **training samples only**: a per-channel standardisation of ``x``
   (a :class:`~pivotal.features.scalers.StandardScaler` over the channels) and of each
   regression target (NaN-aware mean and standard deviation). Both travel in the checkpoint.

:func:`train_job` trains with the :class:`~pivotal.training.trainer.Trainer`, keeps the best
checkpoints with the :class:`~pivotal.training.checkpoint_manager.CheckpointManager`, and
:func:`evaluate_checkpoint` rebuilds the same data from a checkpoint alone and scores the
model on the test range beside the baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field, model_validator

from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.clock import utc_text
from pivotal.core.errors import DataError
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, SeriesGap, find_series_gaps
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.features.inputs import ColumnsConfig, EncodedInputDataset, InputSpec, candle_columns
from pivotal.features.scalers import FeatureLayout, StandardScaler, scaler_from_state
from pivotal.models.base import InputShape, PivotalModel, TargetSpec
from pivotal.training.config import TrainingConfig
from pivotal.training.data import Batch, BatchDataset, SupervisedDataset
from pivotal.training.labels import LabelConfig, LabelSet
from pivotal.training.splits import Split, chronological_split, purge_for

__all__ = [
    "Prepared",
    "Scaling",
    "ScaledSubset",
    "TrainJob",
    "default_targets",
    "prepare",
]

FloatArray = npt.NDArray[np.float64]


def default_targets(model: str, labels: LabelConfig) -> tuple[tuple[str, ...], str | None]:
    """``(regression columns, classification column)`` a model learns unless told otherwise.

    Volume models learn the future volume; the pivot CNN the next pivots of each level (and the
    short-horizon direction); every other model the future returns at each horizon and the
    direction at the first horizon.
    """
    direction = f"direction_{labels.horizons[0]}"
    if model == "volume_lstm":
        return (f"volume_{labels.volume_horizon}",), None
    if model == "pivot_cnn" and labels.pivot_levels:
        regression = tuple(
            f"pivot{level}_{kind}_{part}"
            for level in range(1, labels.pivot_levels + 1)
            for kind in ("high", "low")
            for part in ("rel", "bars")
        )
        return regression, direction
    return tuple(f"return_{h}" for h in labels.horizons), direction


class TrainJob(StrictModel):
    """Everything ``pivotal train`` needs; stored in the checkpoint to rebuild the data."""

    model: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    exchange: str = "binance"
    symbol: str
    timeframe: str = "1m"
    streams: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    frames: int = Field(default=64, ge=2)
    warmup_bars: int = Field(default=500, ge=0)
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    regression: tuple[str, ...] | None = None
    classification: str | None = "default"
    train_fraction: float = Field(default=0.7, gt=0, lt=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    test_fraction: float = Field(default=0.15, gt=0, lt=1)
    scale_sample: int = Field(default=2_000, ge=10)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    max_missing_bars: int = Field(
        default=DEFAULT_MAX_MISSING_BARS,
        ge=0,
        description="A missing run of more than this many bars is a gap (gaps.max_missing_bars)",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainJob:
        Symbol.parse(self.symbol)
        anchor = Timeframe.parse(self.timeframe)
        streams = [Timeframe.parse(s) for s in self.streams]
        if anchor in streams:
            raise ValueError(f"streams repeats the anchor timeframe {anchor}")
        total = self.train_fraction + self.validation_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train, validation and test fractions must sum to 1, got {total}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(
                f"since {utc_text(self.since)} must be before until {utc_text(self.until)}"
            )
        return self

    @property
    def anchor(self) -> Timeframe:
        return Timeframe.parse(self.timeframe)

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        return (self.anchor, *(Timeframe.parse(s) for s in self.streams))

    def targets(self) -> tuple[tuple[str, ...], str | None]:
        """The regression columns and the classification column this job trains on."""
        regression, classification = default_targets(self.model, self.labels)
        if self.regression is not None:
            regression = self.regression
        if self.classification != "default":
            classification = self.classification
        if not regression and classification is None:
            raise ValueError("the job trains on nothing: give regression targets or a class")
        return regression, classification

    def spec(self) -> InputSpec:
        return InputSpec.candles(self.timeframes, frames=self.frames, min_frames=self.frames)


@dataclass(frozen=True, slots=True)
class Scaling:
    """Input channel standardisation and regression-target standardisation (training fit)."""

    inputs: StandardScaler
    target_mean: FloatArray
    target_std: FloatArray

    def state(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs.state_dict(),
            "target_mean": self.target_mean.tolist(),
            "target_std": self.target_std.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Scaling:
        scaler = scaler_from_state(state["inputs"])
        if not isinstance(scaler, StandardScaler):
            raise ValueError("the checkpoint's input scaler is not a standard scaler")
        return cls(
            scaler,
            np.asarray(state["target_mean"], dtype=np.float64),
            np.asarray(state["target_std"], dtype=np.float64),
        )

    def scale_targets(self, values: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.target_mean, dtype=values.dtype)
        std = torch.as_tensor(self.target_std, dtype=values.dtype)
        return (values - mean) / std

    def unscale_targets(self, values: npt.ArrayLike) -> FloatArray:
        return np.asarray(values, dtype=np.float64) * self.target_std + self.target_mean


class ScaledSubset(BatchDataset):
    """Positions ``indices`` of ``base``, with ``x`` and regression targets scaled."""

    def __init__(
        self,
        base: SupervisedDataset,
        indices: npt.ArrayLike,
        scaling: Scaling,
        layout: FeatureLayout,
    ) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.scaling = scaling
        self.layout = layout
        self._mean = torch.as_tensor(scaling.inputs.mean, dtype=torch.float32)
        self._std = torch.as_tensor(scaling.inputs.std, dtype=torch.float32)
        self.excluded = 0

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def input_shape(self) -> InputShape:
        return self.base.input_shape

    @property
    def has_regression(self) -> bool:
        return self.base.has_regression

    @property
    def has_labels(self) -> bool:
        return self.base.has_labels

    def get_batch(self, indices: npt.ArrayLike) -> Batch:
        batch = self.base.get_batch(self.indices[np.asarray(indices, dtype=np.int64)])
        batch["x"] = (batch["x"] - self._mean) / self._std
        if "regression" in batch:
            batch["regression"] = self.scaling.scale_targets(batch["regression"])
        return batch

    def times(self) -> npt.NDArray[np.int64]:
        return self.base.times(self.indices)

    def rows(self) -> npt.NDArray[np.int64]:
        return self.base.rows(self.indices)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The data of a job: datasets per split, what they mean, and the scaling."""

    job: TrainJob
    candles: Mapping[Timeframe, Candles]
    labels: LabelSet
    dataset: SupervisedDataset
    split: Split
    scaling: Scaling
    targets: TargetSpec
    regression_columns: tuple[str, ...]
    classification_column: str | None
    train: ScaledSubset
    validation: ScaledSubset
    test: ScaledSubset
    gaps: tuple[SeriesGap, ...] = ()

    @property
    def dropped(self) -> dict[str, int]:
        """Samples dropped before the split, by reason (gaps, unknown targets)."""
        return dict(self.dataset.dropped)

    def sample_summary(self) -> str:
        """One line for the user: samples kept, dropped (and why) and the gaps met."""
        kept = len(self.dataset)
        why = [f"{n:,} ({reason})" for reason, n in self.dropped.items() if n]
        text = f"{kept:,} samples" + (f"; dropped {', '.join(why)}" if why else "")
        if self.gaps:
            shown = "; ".join(g.describe(self.job.timeframe) for g in self.gaps[:3])
            more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
            text += f"; {len(self.gaps)} gap(s) in the {self.job.timeframe} series: {shown}{more}"
        return text

    @property
    def shape(self) -> InputShape:
        return self.dataset.input_shape

    @property
    def layout(self) -> Any:
        return self.dataset.inputs.layout

    def data_span(self) -> dict[str, Any]:
        times = self.train.times()
        return {
            "symbol": self.job.symbol,
            "exchange": self.job.exchange,
            "timeframe": self.job.timeframe,
            "start": int(times[0]),
            "end": int(times[-1]),
        }


def read_streams(
    store: MarketDataStore,
    exchange: str,
    symbol: str | Symbol,
    timeframes: tuple[Timeframe, ...],
    since: int | None,
    until: int | None,
    warmup: int,
) -> dict[Timeframe, Candles]:
    """Each stream's candles from ``warmup`` bars before ``since`` to ``until``; a stream with
    no candles in the range raises ``DataError`` saying how to get them."""
    symbol = Symbol.parse(symbol)
    out = {}
    for tf in timeframes:
        start = None if since is None else since - warmup * tf.ms
        candles = store.read_candles(SeriesKey(exchange, symbol, tf), start, until)
        if not len(candles):
            raise DataError(
                f"no {exchange} {symbol} {tf} candles stored in the requested range; "
                f"import or download them first (pivotal data import / download)"
            )
        out[tf] = candles
    return out


def _read(store: MarketDataStore, job: TrainJob) -> dict[Timeframe, Candles]:
    return read_streams(
        store,
        job.exchange,
        job.symbol,
        job.timeframes,
        job.since,
        job.until,
        job.warmup_bars + job.frames,
    )


def _fit_scaling(
    data: SupervisedDataset, train: npt.NDArray[np.int64], layout: FeatureLayout, n: int
) -> Scaling:
    picks = train[np.linspace(0, len(train) - 1, min(n, len(train))).astype(np.int64)]
    batch = data.get_batch(picks)
    x = batch["x"].numpy().astype(np.float64).reshape(-1, len(layout))
    scaler = StandardScaler().fit(x, layout, train=slice(None))
    width = batch["regression"].shape[1] if "regression" in batch else 0
    mean, std = np.zeros(width), np.ones(width)
    if width:
        rows = data.rows(train)
        values = data.regression_at(rows).astype(np.float64)
        with np.errstate(invalid="ignore"):
            mean = np.nan_to_num(np.nanmean(values, axis=0), nan=0.0)
            std = np.nan_to_num(np.nanstd(values, axis=0), nan=1.0)
        std = np.where(std > 0, std, 1.0)
    return Scaling(scaler, mean, std)


def prepare(store: MarketDataStore, job: TrainJob, *, scaling: Scaling | None = None) -> Prepared:
    """The job's datasets (module docstring); ``scaling`` reuses a fitted one (evaluation)."""
    candles = _read(store, job)
    gap_bars = job.max_missing_bars
    extra = {
        tf: candle_columns(c, tf, job.columns, max_missing_bars=gap_bars)
        for tf, c in candles.items()
    }
    anchor = candles[job.anchor]
    since = int(anchor.timestamp[0]) if job.since is None else job.since
    until = int(anchor.timestamp[-1]) + job.anchor.ms if job.until is None else job.until
    inputs = EncodedInputDataset(
        job.spec(),
        candles,
        since,
        until,
        anchor=job.anchor,
        extra=extra,
        max_missing_bars=gap_bars,
    )
    labels = LabelSet.build(anchor, job.labels, step_ms=job.anchor.ms, max_missing_bars=gap_bars)
    regression, classification = job.targets()
    unknown = [c for c in (*regression, classification) if c and c not in labels.frame.columns]
    if unknown:
        raise ValueError(f"unknown label column(s) {unknown}; labels: {list(labels.frame.columns)}")
    classes: tuple[str, ...] = ()
    label_values = None
    if classification is not None:
        if classification not in labels.class_columns:
            raise ValueError(f"{classification!r} is not a class column; use one of "
                             f"{list(labels.class_columns)}")  # fmt: skip
        classes = labels.class_columns[classification]
        label_values = labels.frame[classification].to_numpy()
    reg_values = labels.frame[list(regression)].to_numpy(np.float32) if regression else None
    data = SupervisedDataset(
        inputs,
        anchor.timestamp,
        regression=reg_values,
        labels=label_values,
        label_horizon=labels.horizon,
        max_missing_bars=gap_bars,
        warmup_bars=job.warmup_bars,
    )
    purge = purge_for(labels.horizon, job.frames)
    split = chronological_split(
        data.times(),
        job.train_fraction,
        job.validation_fraction,
        job.test_fraction,
        purge=purge,
    )
    for part in ("train", "validation", "test"):
        if not len(split.part(part)):
            raise DataError(
                f"the {part} set is empty: {len(data)} samples are too few for a purge gap of "
                f"{purge}; widen the range (--since/--until) or shorten the label horizon"
            )
    layout = inputs.layout.channels
    if scaling is None:
        scaling = _fit_scaling(data, split.part("train"), layout, job.scale_sample)
    return Prepared(
        job=job,
        candles=candles,
        labels=labels,
        dataset=data,
        split=split,
        scaling=scaling,
        targets=TargetSpec(regression, classes),
        regression_columns=tuple(regression),
        classification_column=classification,
        train=ScaledSubset(data, split.part("train"), scaling, layout),
        validation=ScaledSubset(data, split.part("validation"), scaling, layout),
        test=ScaledSubset(data, split.part("test"), scaling, layout),
        gaps=tuple(find_series_gaps(anchor.timestamp, job.anchor.ms, gap_bars)),
    )


def build_model(prepared: Prepared) -> PivotalModel:
    """The job's model for the prepared data's shape and targets."""
    from pivotal.models import create

    return create(
        prepared.job.model, prepared.shape, prepared.targets, **prepared.job.hyperparameters
    )
