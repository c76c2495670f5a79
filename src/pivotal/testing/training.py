"""Small, fast training jobs for tests: candles in a fresh store, and a tiny job per model.

:func:`store_candles` writes candles to a new :class:`~pivotal.data.duckdb_store.DuckDBStore`
(one series; the caller owns and closes the store). :func:`tiny_job` builds a
:class:`~pivotal.training.pipeline.TrainJob` for any registered network with hyperparameters
small enough to train in about a second per epoch budget on a 2-core CPU, learning the
one-bar targets ``return_1`` (regression) and ``direction_1`` (up/down, no dead band) of
:data:`PLANTED_LABELS`. Those are the targets a :func:`~pivotal.testing.planted.
planted_candles` market makes learnable: the next bar's direction is the opposite of the
last bar's, readable from the newest frame's ``log_return`` channel.

The recipes in :data:`TINY_RECIPES` (hyperparameters, learning rate, epochs) are tuned so
every model reaches >= 90 % test direction accuracy on planted candles for several data
seeds; ``tests/training/test_learning.py`` checks that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pivotal.core.candles import Candles
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.features.inputs import ColumnsConfig
from pivotal.training.config import TrainingConfig
from pivotal.training.labels import LabelConfig
from pivotal.training.pipeline import TrainJob

__all__ = [
    "PLANTED_LABELS",
    "TINY_RECIPES",
    "TinyRecipe",
    "store_candles",
    "tiny_job",
]

PLANTED_LABELS = LabelConfig(
    horizons=(1,), dead_band=0.0, pivot_levels=0, extrema_window=3, volume_horizon=1
)
"""One-bar labels only (``return_1``, ``direction_1`` with no flat class in practice), no
pivot labels, and the shortest extrema and volume windows: a label horizon of 3 bars, so the
purge gaps between the splits stay small."""


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
    job: Mapping[str, Any] = field(default_factory=dict)
    """Further :class:`TrainJob` fields this model needs (e.g. explicit targets)."""


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
) -> DuckDBStore:
    """A new DuckDB store at ``path`` holding ``candles`` as one series; close it when done.

    Raises ``ValueError`` when ``path`` already exists (a test wants a fresh store).
    """
    target = Path(path)
    if target.exists():
        raise ValueError(f"{target} already exists; give a fresh path (e.g. under tmp_path)")
    store = DuckDBStore(target)
    store.write_candles(SeriesKey(exchange, symbol, timeframe), candles, source="test")
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
        "hyperparameters": dict(recipe.hyperparameters),
        "labels": PLANTED_LABELS,
        "regression": ("return_1",),
        "classification": "direction_1",
        "columns": columns if columns is not None else ColumnsConfig(),
        "training": TrainingConfig(
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=seed,
            device="cpu",
            progress=False,
        ),
        **recipe.job,
        **overrides,
    }
    return TrainJob(**fields)
