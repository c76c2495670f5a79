"""CNN features for the RL agent: a tiny pivot_cnn trained on planted candles, its per-step
outputs (names, shapes, probabilities), equality with the training pipeline's outputs,
causality, batch independence, and the errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError, ModelError
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import resample
from pivotal.rl.cnn_features import CNNFeatures, cnn_features
from pivotal.testing.planted import planted_candles
from pivotal.testing.threads import one_torch_thread
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.run import TrainOutcome, train_job

BARS = 1_200
GRID_START = 1_699_999_200_000  # 2023-11-14 22:00 UTC: on the 1m and 5m grids
M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def candles() -> dict[Timeframe, Candles]:
    base = planted_candles(BARS, seed=2, start_time=GRID_START)
    return {M1: base, M5: resample(base, M1, M5)}


def _train(directory: Path, model: str, bars: Candles, **overrides: object) -> TrainOutcome:
    training = tiny_job(model).training.model_copy(update={"epochs": 2})
    job = tiny_job(model, frames=8, streams=("5m",), training=training, **overrides)
    with store_candles(directory / "store.duckdb", bars, streams=("5m",)) as store:
        return train_job(store, job, directory / "checkpoints", keep=1)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, candles: dict[Timeframe, Candles]
) -> TrainOutcome:
    return _train(tmp_path_factory.mktemp("pivot_cnn"), "pivot_cnn", candles[M1])


@pytest.fixture(scope="module")
def features(trained: TrainOutcome, candles: dict[Timeframe, Candles]) -> CNNFeatures:
    return cnn_features(trained.best_checkpoint, candles)


def altered_after(bars: Candles, row: int, seed: int) -> Candles:
    """``bars`` with every bar after ``row`` moved (prices by a random walk, volumes random)."""
    rng = np.random.default_rng(seed)
    n = len(bars) - row - 1
    factor = np.ones(len(bars))
    factor[row + 1 :] = np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    volume = bars.volume.copy()
    volume[row + 1 :] *= rng.lognormal(0.0, 1.0, n)
    return Candles(
        bars.timestamp,
        bars.open * factor,
        bars.high * factor,
        bars.low * factor,
        bars.close * factor,
        volume,
    )


# -- what comes out ----------------------------------------------------------------------------
def test_shapes_names_and_times(features: CNNFeatures, trained: TrainOutcome) -> None:
    prepared = trained.prepared
    hp = prepared.job.hyperparameters
    levels, conv = hp["levels"], hp["conv_channels"][-1]
    expected = (
        ["cnn_p_buy", "cnn_p_sell", "cnn_p_hold"]
        + [
            f"cnn_{h}_l{k}"
            for h in ("pivot_price", "pivot_time", "pivot_confidence")
            for k in range(1, levels + 1)
        ]
        + ["cnn_reg_return_1"]
        + [f"cnn_p_direction_1_{c}" for c in prepared.targets.classes]
        + [f"cnn_conv_{i}" for i in range(2 * conv)]  # two streams share a 16-wide tower
    )
    assert list(features.names) == expected
    assert features.values.dtype == np.float32 and features.times.dtype == np.int64
    assert features.values.shape == (len(features.times), len(expected))
    assert np.all(np.diff(features.times) == M1.ms)
    assert np.isfinite(features.values).all()
    assert features.checkpoint == str(trained.best_checkpoint)
    # every close from the first with 8 closed 5m candles to the last candle's close
    assert features.times[-1] == trained.prepared.candles[M1].timestamp[-1] + M1.ms
    assert features.times[0] == trained.prepared.dataset.inputs.first_time
    p = features.values[:, :3].astype(np.float64)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (p > 0).all() and (p < 1).all()
    conf = features.values[:, [features.names.index("cnn_pivot_confidence_l1")]]
    assert ((conf > 0) & (conf < 1)).all()
    assert (features.column("cnn_pivot_time_l1") >= 0).all()
    with pytest.raises(KeyError, match="cnn_p_buy"):
        features.column("nope")


def test_without_hidden_drops_only_the_hidden_columns(
    features: CNNFeatures, trained: TrainOutcome, candles: dict[Timeframe, Candles]
) -> None:
    bare = cnn_features(trained.best_checkpoint, candles, hidden=False)
    assert not any(n.startswith("cnn_conv_") for n in bare.names)
    width = len(bare.names)
    assert features.names[:width] == bare.names
    np.testing.assert_array_equal(bare.times, features.times)
    np.testing.assert_allclose(bare.values, features.values[:, :width], rtol=1e-6, atol=1e-7)


def test_rows_equal_the_training_pipelines_test_predictions(
    features: CNNFeatures, trained: TrainOutcome
) -> None:
    """Same candles as training → the evaluation's test-range class probabilities."""
    evaluation = trained.evaluation
    test_times = trained.prepared.test.times()
    rows = np.searchsorted(features.times, test_times)
    np.testing.assert_array_equal(features.times[rows], test_times)
    classes = [f"cnn_p_direction_1_{c}" for c in trained.prepared.targets.classes]
    probs = features.values[rows][:, [features.names.index(c) for c in classes]]
    np.testing.assert_allclose(probs, evaluation.probabilities, rtol=1e-5, atol=1e-6)
    reg = features.column("cnn_reg_return_1")[rows]
    np.testing.assert_allclose(reg, evaluation.predictions[:, 0], rtol=1e-4, atol=1e-8)


def test_range_selects_rows(features: CNNFeatures, trained: TrainOutcome, candles) -> None:
    since, until = int(features.times[100]), int(features.times[300])
    part = cnn_features(trained.best_checkpoint, candles, since=since, until=until)
    np.testing.assert_array_equal(part.times, features.times[100:300])
    np.testing.assert_allclose(part.values, features.values[100:300], rtol=1e-6, atol=1e-7)


def test_batch_size_does_not_change_rows(
    features: CNNFeatures, trained: TrainOutcome, candles: dict[Timeframe, Candles]
) -> None:
    small = cnn_features(trained.best_checkpoint, candles, batch_size=7)
    np.testing.assert_array_equal(small.times, features.times)
    assert small.names == features.names
    np.testing.assert_allclose(small.values, features.values, rtol=1e-6, atol=1e-7)


def test_rows_at_or_before_t_ignore_later_candles(
    features: CNNFeatures, trained: TrainOutcome, candles: dict[Timeframe, Candles]
) -> None:
    row = 702  # inside a 5m bucket (bars 700..704): that 5m candle is still open at t
    t = int(candles[M1].timestamp[row]) + M1.ms
    moved = altered_after(candles[M1], row, seed=1)
    altered = {M1: moved, M5: resample(moved, M1, M5)}
    other = cnn_features(trained.best_checkpoint, altered)
    np.testing.assert_array_equal(other.times, features.times)
    past = features.times <= t
    assert past.sum() > 100 and (~past).sum() > 100
    np.testing.assert_array_equal(other.values[past], features.values[past])
    changed = (other.values[~past] != features.values[~past]).any(axis=1)
    assert changed.all(), "altering later candles left some later row unchanged"


# -- errors ------------------------------------------------------------------------------------
def test_missing_and_corrupt_files(tmp_path: Path, candles) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        cnn_features(tmp_path / "absent.pt", candles)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="corrupt"):
        cnn_features(bad, candles)


def test_missing_timeframe_is_named(trained: TrainOutcome, candles) -> None:
    with pytest.raises(ValueError, match="no 5m candles"):
        cnn_features(trained.best_checkpoint, {M1: candles[M1]})


def test_layout_mismatch_lists_the_differences(trained: TrainOutcome, candles, tmp_path) -> None:
    """A checkpoint whose stored layout lacks the channels its job's columns now produce."""
    payload = torch.load(trained.best_checkpoint, weights_only=True)
    columns = payload["metadata"]["pipeline"]["job"]["columns"]
    columns["pivot_levels"] = 2  # the inputs gain level-2 pivot channels
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(ValueError, match=r"another feature layout.*channels expected but not"):
        cnn_features(edited, candles)


def test_other_models_are_refused_by_name(tmp_path: Path, candles) -> None:
    outcome = _train(tmp_path, "cnn1d", candles[M1])
    with pytest.raises(ValueError, match=r"'cnn1d' model .*no 'action_logits' head"):
        cnn_features(outcome.best_checkpoint, candles)


def test_checkpoint_without_a_job_and_bad_arguments(
    trained: TrainOutcome, candles, tmp_path: Path
) -> None:
    payload = torch.load(trained.best_checkpoint, weights_only=True)
    payload["metadata"]["pipeline"] = None
    bare = tmp_path / "bare.pt"
    torch.save(payload, bare)
    with pytest.raises(ValueError, match="stores no job"):
        cnn_features(bare, candles)
    with pytest.raises(ValueError, match="batch_size"):
        cnn_features(trained.best_checkpoint, candles, batch_size=0)
    last = int(candles[M1].timestamp[-1])
    with pytest.raises(ValueError, match="must be before"):
        cnn_features(trained.best_checkpoint, candles, since=last, until=last)
    first = int(candles[M1].timestamp[0])
    with pytest.raises(DataError):  # a range before any complete sample
        cnn_features(trained.best_checkpoint, candles, since=first, until=first + 3 * M1.ms)


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value")
def test_the_agent_observes_the_cnn_outputs_of_the_same_step(
    trained: TrainOutcome, candles: dict[Timeframe, Candles], features: CNNFeatures
) -> None:
    """Seed 003's cross-feeding for the RL model: a DQN job naming the checkpoint gets the
    CNN's outputs and hidden state of each step, joined by close time, in its observation."""
    from gymnasium.utils.env_checker import check_env

    from pivotal.rl.env import TradingEnv
    from pivotal.rl.run import DQNJob, build_observations

    job = DQNJob.model_validate(
        {
            "cnn_checkpoint": str(trained.best_checkpoint),
            "env": {"frames": 8, "streams": ["5m"], "episode_length": 50},
            "dqn": {"total_steps": 10, "learning_starts": 0},
        }
    )
    plain = build_observations(candles, job.model_copy(update={"cnn_checkpoint": None}))
    with_cnn = build_observations(candles, job)
    assert with_cnn.width == plain.width + len(features.names)
    with_cnn.fit_scaler(int(with_cnn.times[len(with_cnn) // 2]))
    step = len(with_cnn) - 10
    row = int(np.searchsorted(features.times, with_cnn.times[step]))
    observed = with_cnn.observe([step], [(0.0, 0.0, 0.0, 0.0)])[0]
    np.testing.assert_array_equal(observed[-1, -len(features.names) :], features.values[row])
    env = TradingEnv(with_cnn, job.env, start=len(with_cnn) // 2)
    check_env(env, skip_render_check=True)
