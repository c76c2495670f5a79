"""The training pipeline can learn and does not leak: stored candles → ``prepare`` →
``train_job`` → evaluation, end to end.

- every registered model learns the planted rule of :func:`~pivotal.testing.planted.
  planted_candles` (the next bar moves against the last one) to >= 90 % test direction
  accuracy, beating the majority baseline, for two data seeds;
- with the class labels permuted among the samples (real BTC candles, and planted ones as a
  control where the true labels are learnable) test accuracy stays at chance: no label
  reaches the inputs, and the evaluation scores the test samples against their own labels;
- the encoded inputs are point-in-time: altering the candles after ``t`` changes no input of
  a sample at or before ``t`` (indicator and pivot columns, and a 5m stream, included);
- a checkpoint evaluates to the same report from the store alone, and is refused when the
  data would have another feature layout;
- ``train_job`` depends on ``TrainingConfig.seed`` alone, not on the global RNG state.

Torch runs on one thread here: on a loaded 2-core machine the tiny networks train several
times faster than with two threads fighting over the cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pivotal.core.candles import Candles
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.features.inputs import ColumnsConfig
from pivotal.models import available
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.threads import one_torch_thread
from pivotal.testing.training import (
    PLANTED_LABELS,
    TINY_COLUMNS,
    permute_labels,
    store_candles,
    tiny_job,
)
from pivotal.training.checkpoints import load_checkpoint
from pivotal.training.pipeline import Prepared, prepare
from pivotal.training.run import TrainOutcome, evaluate_checkpoint, train_job

DATA_SEEDS = (0, 1)
PLANTED_BARS = 3_000
CHANCE_TOLERANCE = 0.05
"""How far outside the band of information-free predictors a model on permuted labels may
score: about three standard deviations of an accuracy over the ~900 test samples used."""
MINUTE_GRID_START = 1_699_999_200_000  # 2023-11-14 22:00 UTC: on the 1m, 5m and 1h grids
MODELS = tuple(name for name in available() if not name.startswith("test_"))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def planted_store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with store_candles(tmp_path / "planted.duckdb", planted_candles(PLANTED_BARS)) as store:
        yield store


def direction_scores(outcome: TrainOutcome) -> tuple[float, float]:
    """(model, majority baseline) test accuracy on ``direction_1``."""
    target = outcome.evaluation.report.target("direction_1")
    return target.model["accuracy"], target.baselines["majority"]["accuracy"]


# -- can learn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", DATA_SEEDS, ids=lambda s: f"data{s}")
@pytest.mark.parametrize("model", MODELS)
def test_every_model_learns_the_planted_direction(model: str, seed: int, tmp_path: Path) -> None:
    candles = planted_candles(PLANTED_BARS, seed=seed)
    with store_candles(tmp_path / "planted.duckdb", candles) as store:
        outcome = train_job(store, tiny_job(model, seed=seed), tmp_path / "checkpoints")
    accuracy, majority = direction_scores(outcome)
    assert accuracy >= 0.9, f"{model}: test direction accuracy {accuracy:.3f} < 0.9"
    assert accuracy > majority, f"{model}: {accuracy:.3f} does not beat majority {majority:.3f}"


def test_every_model_has_a_tiny_recipe() -> None:
    for model in MODELS:
        assert tiny_job(model).targets() == (("return_1",), "direction_1")
    with pytest.raises(ValueError, match="no tiny recipe"):
        tiny_job("no_such_model")


# -- does not leak: permuted labels ------------------------------------------------------------
def real_btc_candles(bars: int, start_row: int) -> Candles:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    path = data / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet"
    frame = pd.read_parquet(path, columns=["timestamp", "open", "high", "low", "close", "volume"])
    return Candles.from_frame(frame.iloc[start_row : start_row + bars].reset_index(drop=True))


def balanced_dead_band(candles: Candles) -> float:
    """The one-bar |log return| below which a third of the bars fall: ~equal down/flat/up."""
    return float(np.quantile(np.abs(np.diff(np.log(candles.close))), 1 / 3))


@pytest.mark.parametrize(
    ("source", "seed"), [("real", 0), ("real", 1), ("planted", 0), ("planted", 1)]
)
def test_permuted_labels_give_chance_accuracy(source: str, seed: int, tmp_path: Path) -> None:
    """Labels permuted among the samples carry no information about the inputs, so the test
    accuracy must stay in the band of information-free predictors: between the rarest and
    the most frequent test class's share (± tolerance). A label leaking into the inputs
    would lift it far above (an input channel carrying the label gives 100 %). On planted
    candles the true labels are learnable (the test above), so there the permutation must
    remove the signal: this shows the permutation reaches the training."""
    if source == "real":
        candles = real_btc_candles(6_000, start_row=300_000 + 400_000 * seed)
        labels = PLANTED_LABELS.model_copy(update={"dead_band": balanced_dead_band(candles)})
        columns = ColumnsConfig()  # the pipeline's default columns: indicators and pivots
    else:
        candles = planted_candles(6_000, seed=seed)
        labels, columns = PLANTED_LABELS, TINY_COLUMNS
    job = tiny_job("cnn1d", seed=seed, regression=(), labels=labels, columns=columns)
    with store_candles(tmp_path / "store.duckdb", candles) as store:
        prepared = prepare(store, job)
        permuted = permute_labels(prepared, seed=seed)
        outcome = train_job(store, job, tmp_path / "checkpoints", prepared=permuted)

    everything = np.arange(len(prepared.dataset))
    before, after = prepared.dataset.get_batch(everything), permuted.dataset.get_batch(everything)
    assert torch.equal(before["x"], after["x"])
    assert torch.equal(before["label"].bincount(), after["label"].bincount())
    assert (before["label"] != after["label"]).float().mean() > 0.3

    accuracy, _ = direction_scores(outcome)
    test_labels = outcome.evaluation.labels
    assert test_labels is not None
    shares = np.bincount(test_labels[test_labels >= 0], minlength=3) / (test_labels >= 0).sum()
    present = shares[shares > 0]
    low, high = present.min() - CHANCE_TOLERANCE, present.max() + CHANCE_TOLERANCE
    assert low <= accuracy <= high, (
        f"{source}: accuracy {accuracy:.3f} on permuted labels is outside the chance band "
        f"[{low:.3f}, {high:.3f}] (test class shares {np.round(shares, 3).tolist()})"
    )


def test_permute_labels_needs_class_labels(planted_store: DuckDBStore) -> None:
    prepared = prepare(planted_store, tiny_job("cnn1d", classification=None))
    with pytest.raises(ValueError, match="no class labels"):
        permute_labels(prepared, seed=0)


# -- does not leak: point-in-time inputs -------------------------------------------------------
def altered_after(candles: Candles, row: int, seed: int) -> Candles:
    """``candles`` with every bar after ``row`` moved: prices scaled by a random walk (each
    bar's OHLC by one factor, so bars stay valid) and volumes by random factors."""
    rng = np.random.default_rng(seed)
    n = len(candles) - row - 1
    factor = np.ones(len(candles))
    factor[row + 1 :] = np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    volume = candles.volume.copy()
    volume[row + 1 :] *= rng.lognormal(0.0, 1.0, n)
    return Candles(
        candles.timestamp,
        candles.open * factor,
        candles.high * factor,
        candles.low * factor,
        candles.close * factor,
        volume,
    )


def raw_inputs(prepared: Prepared) -> tuple[np.ndarray, torch.Tensor]:
    """Sample times and unscaled encoded inputs of every sample of ``prepared``."""
    inputs = prepared.dataset.inputs
    every = np.arange(len(inputs))
    return inputs.times(every), inputs.get_batch(every)


def test_inputs_at_or_before_t_ignore_later_candles(tmp_path: Path) -> None:
    candles = planted_candles(1_500, seed=3, start_time=MINUTE_GRID_START)
    row = 1_002  # inside a 5m bucket (bars 1000..1004): that 5m candle is still open at t
    t = int(candles.timestamp[row]) + 60_000  # the close of bar `row`
    job = tiny_job("cnn1d", frames=16, streams=("5m",), columns=ColumnsConfig())
    prepared = {}
    for name, bars in (("true", candles), ("altered", altered_after(candles, row, seed=1))):
        with store_candles(tmp_path / f"{name}.duckdb", bars, streams=("5m",)) as store:
            prepared[name] = prepare(store, job)
    times, x = raw_inputs(prepared["true"])
    other_times, other_x = raw_inputs(prepared["altered"])
    np.testing.assert_array_equal(times, other_times)
    past = times <= t
    assert past.sum() > 100 and (~past).sum() > 100
    assert torch.equal(x[past], other_x[past]), "an input at or before t reads later candles"
    changed = (x[~past] != other_x[~past]).flatten(1).any(dim=1)
    assert bool(changed.all()), "altering the later candles left some later input unchanged"


# -- checkpoints -------------------------------------------------------------------------------
@pytest.fixture
def trained(planted_store: DuckDBStore, tmp_path: Path) -> TrainOutcome:
    return train_job(planted_store, tiny_job("cnn1d", seed=0), tmp_path / "checkpoints")


def test_checkpoint_evaluates_to_the_same_report(
    trained: TrainOutcome, planted_store: DuckDBStore
) -> None:
    again = evaluate_checkpoint(planted_store, trained.best_checkpoint)
    first = trained.evaluation
    assert again.report.model_name == first.report.model_name == "cnn1d"
    assert again.report.test_span == first.report.test_span
    assert [t.target for t in again.report.targets] == ["return_1", "direction_1"]
    for mine, theirs in zip(again.report.targets, first.report.targets, strict=True):
        assert mine.target == theirs.target
        assert dict(mine.model) == pytest.approx(dict(theirs.model), rel=1e-9, abs=1e-12)
        assert mine.baselines.keys() == theirs.baselines.keys()
        for name, values in mine.baselines.items():
            assert dict(values) == pytest.approx(dict(theirs.baselines[name]), rel=1e-9)
    for name in ("predictions", "truth", "probabilities", "labels"):
        np.testing.assert_allclose(getattr(again, name), getattr(first, name), rtol=1e-6)


def test_checkpoint_refuses_inputs_of_another_layout(
    trained: TrainOutcome, planted_store: DuckDBStore
) -> None:
    other = trained.prepared.job.model_copy(update={"columns": ColumnsConfig(pivot_levels=1)})
    layout = prepare(planted_store, other).layout
    with pytest.raises(ValueError, match="another feature layout"):
        load_checkpoint(trained.best_checkpoint, expected_layout=layout)


def test_evaluate_checkpoint_refuses_a_job_whose_data_has_another_layout(
    trained: TrainOutcome, planted_store: DuckDBStore, tmp_path: Path
) -> None:
    """A checkpoint whose stored job now builds other inputs than its network was trained on
    (the job edited, or the column code changed since) is refused, not silently evaluated."""
    payload = torch.load(trained.best_checkpoint, weights_only=True)
    job = payload["metadata"]["pipeline"]["job"]
    job["columns"] = ColumnsConfig(indicators=True, pivots=False).model_dump(mode="json")
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(ValueError, match="another feature layout"):
        evaluate_checkpoint(planted_store, edited)


# -- determinism -------------------------------------------------------------------------------
def test_train_job_depends_on_the_job_seed_alone(
    planted_store: DuckDBStore, tmp_path: Path
) -> None:
    job = tiny_job("cnn1d", seed=0)
    job = job.model_copy(update={"training": job.training.model_copy(update={"epochs": 1})})
    torch.manual_seed(1)  # whatever ran before must not matter
    first = train_job(planted_store, job, tmp_path / "first")
    torch.manual_seed(2)
    second = train_job(planted_store, job, tmp_path / "second")
    assert first.result.history[0].train_loss == second.result.history[0].train_loss
    np.testing.assert_array_equal(first.evaluation.probabilities, second.evaluation.probabilities)
