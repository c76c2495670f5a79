"""Small, fast training jobs for tests: candles in a fresh store, and a tiny job per model.

:func:`store_candles` writes candles to a new :class:`~pivotal.data.duckdb_store.DuckDBStore`
(one series; the caller owns and closes the store). :func:`tiny_job` builds a
:class:`~pivotal.training.pipeline.TrainJob` for any registered network with hyperparameters
small enough that a whole run takes about a second on one CPU thread, learning the
one-bar targets ``return_1`` (regression) and ``direction_1`` (up/down, no dead band) of
:data:`PLANTED_LABELS`. Those are the targets a :func:`~pivotal.testing.planted.
planted_candles` market makes learnable: the next bar's direction is the opposite of the
last bar's, readable from the newest frame's ``log_return`` channel.

The recipes in :data:`TINY_RECIPES` (hyperparameters, learning rate, epochs) are tuned so
every model reaches >= 90 % test direction accuracy on planted candles for several data
seeds; ``tests/training/test_learning.py`` checks that.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.resample import resample
from pivotal.data.series import SeriesKey
from pivotal.features.inputs import ColumnsConfig
from pivotal.training.config import TrainingConfig
from pivotal.training.data import SupervisedDataset
from pivotal.training.labels import LabelConfig
from pivotal.training.pipeline import Prepared, ScaledSubset, TrainJob

__all__ = [
    "PLANTED_LABELS",
    "TINY_COLUMNS",
    "TINY_RECIPES",
    "TinyRecipe",
    "permute_labels",
    "store_candles",
    "tiny_job",
]

PLANTED_LABELS = LabelConfig(
    horizons=(1,), dead_band=0.0, pivot_levels=0, extrema_window=3, volume_horizon=1
)
"""One-bar labels only (``return_1``, ``direction_1`` with no flat class in practice), no
pivot labels, and the shortest extrema and volume windows: a label horizon of 3 bars, so the
purge gaps between the splits stay small."""


TINY_COLUMNS = ColumnsConfig(indicators=False, pivots=True, pivot_levels=1)
"""Per-candle columns of tiny jobs: the level-1 pivot columns only (11 channels in all with the
OHLCV ones). The default columns add calendar channels (hour, weekday, month) and the ages of
long-lived pivots; over a few thousand one-minute bars those take values in the test span
never seen in training, so a model that leans on them fails to generalize for reasons that
have nothing to do with the planted signal."""


@dataclass(frozen=True, slots=True)
class TinyRecipe:
    """A model's tiny hyperparameters and the optimizer settings that make it learn fast.

    ``lr`` is the AdamW learning rate per step; ``epochs`` the most passes over the training
    samples (early stopping on the validation loss may end sooner).
    """

    hyperparameters: Mapping[str, Any]
    lr: float = 5e-3
    epochs: int = 8
    batch_size: int = 64


_TINY_TRANSFORMER = {
    "d_model": 16,
    "nhead": 2,
    "num_layers": 1,
    "ff_multiplier": 2,
    "head_size": 16,
    "dropout": 0.0,
}
_TINY_LSTM_ATTENTION = {
    "lstm_size": 16,
    "num_layers": 1,
    "num_heads": 2,
    "head_size": 16,
    "dropout": 0.0,
}
_TINY_CNN1D = {"channels": 16, "kernel_sizes": (3,), "head_size": 16, "dropout": 0.0}

TINY_RECIPES: Mapping[str, TinyRecipe] = MappingProxyType(
    {
        "cnn1d": TinyRecipe(_TINY_CNN1D),
        "transformer": TinyRecipe(_TINY_TRANSFORMER),
        "lstm_attention": TinyRecipe(_TINY_LSTM_ATTENTION),
        "ensemble": TinyRecipe(
            {
                "transformer": _TINY_TRANSFORMER,
                "lstm_attention": _TINY_LSTM_ATTENTION,
                "cnn1d": _TINY_CNN1D,
            }
        ),
        "hybrid": TinyRecipe(
            {
                "conv_channels": 16,
                "kernel_size": 3,
                "lstm_size": 16,
                "num_layers": 1,
                "num_heads": 2,
                "technical_size": 16,
                "predictor_size": 16,
                "dropout": 0.0,
            }
        ),
        "pivot_cnn": TinyRecipe(
            {
                "levels": 1,
                "conv_channels": (16,),
                "kernel_size": 3,
                "stride": 1,
                "recurrent_size": 16,
                "context_size": 8,
                "fusion_size": 16,
                "dropout": 0.0,
            }
        ),
        "price_prediction": TinyRecipe(
            {"lstm_size": 16, "num_layers": 1, "horizon": 1, "dropout": 0.0}
        ),
        "volume_lstm": TinyRecipe(
            {"lstm_size": 16, "num_layers": 1, "volume_only": False, "head_size": 16}
        ),
    }
)
"""Model name → its tiny recipe (:class:`TinyRecipe`)."""


def store_candles(
    path: str | Path,
    candles: Candles,
    *,
    exchange: str = "binance",
    symbol: str = "BTC/USDT",
    timeframe: str = "1m",
    streams: Sequence[str] = (),
) -> DuckDBStore:
    """A new DuckDB store at ``path`` holding ``candles`` of ``timeframe``; close it when done.

    Each of ``streams`` (longer timeframes, whole multiples of ``timeframe``) is stored too,
    resampled from ``candles`` (:func:`~pivotal.data.resample.resample`, complete buckets
    only), for jobs with extra streams. Raises ``ValueError`` when ``path`` already exists
    (a test wants a fresh store).
    """
    target = Path(path)
    if target.exists():
        raise ValueError(f"{target} already exists; give a fresh path (e.g. under tmp_path)")
    base = Timeframe.parse(timeframe)
    store = DuckDBStore(target)
    try:
        store.write_candles(SeriesKey(exchange, symbol, base), candles, source="test")
        for stream in streams:
            tf = Timeframe.parse(stream)
            resampled = resample(candles, base, tf)
            store.write_candles(SeriesKey(exchange, symbol, tf), resampled, source="test")
    except BaseException:
        store.close()
        raise
    return store


def tiny_job(
    model: str,
    *,
    seed: int = 0,
    frames: int = 8,
    symbol: str = "BTC/USDT",
    columns: ColumnsConfig | None = None,
    **overrides: Any,
) -> TrainJob:
    """A :class:`TrainJob` of ``model`` with its :data:`TINY_RECIPES` recipe.

    The job learns ``return_1`` and ``direction_1`` of :data:`PLANTED_LABELS` from ``frames``
    one-minute frames, trains on the CPU without progress bars, seeded with ``seed``. Any
    other :class:`TrainJob` field can be given in ``overrides`` (``training`` replaces the
    whole training config). Raises ``ValueError`` for a model without a recipe.
    """
    recipe = TINY_RECIPES.get(model)
    if recipe is None:
        raise ValueError(
            f"no tiny recipe for model {model!r}; recipes exist for {sorted(TINY_RECIPES)}: "
            "add one to pivotal.testing.training.TINY_RECIPES"
        )
    fields: dict[str, Any] = {
        "model": model,
        "symbol": symbol,
        "frames": frames,
        "hyperparameters": copy.deepcopy(dict(recipe.hyperparameters)),
        "labels": PLANTED_LABELS,
        "regression": ("return_1",),
        "classification": "direction_1",
        "columns": columns if columns is not None else TINY_COLUMNS,
        "training": TrainingConfig(
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=seed,
            device="cpu",
            progress=False,
        ),
        **overrides,
    }
    return TrainJob(**fields)


def permute_labels(prepared: Prepared, seed: int) -> Prepared:
    """``prepared`` with its class labels permuted among its samples (seeded).

    Only labels of samples are moved, and only among samples whose label is known, so the
    class counts, the samples, the split, the inputs, the regression targets and the scaling
    are unchanged; every sample's label is now unrelated to its inputs. A model trained on
    the result can only reach chance-level test accuracy, unless the pipeline leaks the
    labels into the inputs (or the model memorises samples shared by the training and the
    test set).
    Raises ``ValueError`` when the job has no classification target.
    """
    data = prepared.dataset
    if data._labels is None:
        raise ValueError("the prepared job has no class labels to permute; give it a class")
    labels = data._labels.copy()
    rows = data.rows()
    known = rows[labels[rows] >= 0]
    labels[known] = np.random.default_rng(seed).permutation(labels[known])
    shuffled = SupervisedDataset(
        data.inputs,
        prepared.candles[prepared.job.anchor].timestamp,
        regression=data._regression,
        labels=labels,
        context=data._context,
    )
    if not np.array_equal(shuffled.rows(), rows):
        raise RuntimeError(
            "permuting the labels changed which samples are kept; only known labels should move"
        )
    layout = data.inputs.layout.channels

    def subset(part: str) -> ScaledSubset:
        return ScaledSubset(shuffled, prepared.split.part(part), prepared.scaling, layout)

    return replace(
        prepared,
        dataset=shuffled,
        train=subset("train"),
        validation=subset("validation"),
        test=subset("test"),
    )
