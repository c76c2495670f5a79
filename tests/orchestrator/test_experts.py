"""The checkpoint experts: a tiny PivotCNN and a tiny DQN (reading the CNN's features) trained
on planted candles, seen through the orchestrator's Expert contract.

PivotCNNExpert: per-step features equal cnn_features' rows, replay reproduces inference, no
look-ahead, the online learning loop's fit/score/snapshot/restore/save/load/fallback.
DQNExpert: the observation equals the one PolicySource builds (flat, long, short), the output
equals the agent's, and a CNN output of another step or none at all is refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from pivotal.core.candles import Candles
from pivotal.core.orders import AccountSnapshot, PositionSnapshot
from pivotal.core.ports import DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action, BaseDataInput, ModelOutput
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.resample import resample
from pivotal.orchestrator.config import ExpertConfig
from pivotal.orchestrator.contracts import (
    Expert,
    InferenceRequest,
    Outcome,
    TrainableExpert,
    TrainingExample,
    action_probabilities,
)
from pivotal.orchestrator.experts import DQNExpert, PivotCNNExpert, expert_from_config
from pivotal.rl.cnn_features import CNNFeatures, cnn_features
from pivotal.rl.dqn import DQNAgent
from pivotal.rl.run import (
    JOB_FILE,
    SCALER_FILE,
    DQNJob,
    build_observations,
    read_feature_names,
    read_scaler,
    refit_scaler,
    train_dqn_job,
)
from pivotal.rl.source import PolicySource
from pivotal.testing.planted import planted_candles
from pivotal.testing.threads import one_torch_thread
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.run import train_job

BARS = 1_200
GRID_START = 1_699_999_200_000  # on the 1m and 5m grids
M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")
SYMBOL = "BTC/USDT"
CNN = "pivot_cnn"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class Trained:
    cnn: Path
    dqn: Path
    job: DQNJob
    store: Path


@pytest.fixture(scope="module")
def candles() -> dict[Timeframe, Candles]:
    base = planted_candles(BARS, seed=2, start_time=GRID_START)
    return {M1: base, M5: resample(base, M1, M5)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, candles) -> Trained:
    root = tmp_path_factory.mktemp("experts")
    training = tiny_job("pivot_cnn").training.model_copy(update={"epochs": 2})
    cnn_job = tiny_job("pivot_cnn", frames=8, streams=("5m",), training=training)
    dqn_job = DQNJob.model_validate(
        {
            "envs": 2,
            "eval_every": 100,
            "env": {"frames": 8, "streams": ["5m"], "episode_length": 50},
            "dqn": {
                "total_steps": 200,
                "learning_starts": 100,
                "hidden": 16,
                "heads": 2,
                "batch_size": 16,
                "buffer_size": 1_000,
            },
        }
    )
    with store_candles(root / "store.duckdb", candles[M1], streams=("5m",)) as store:
        cnn = train_job(store, cnn_job, root / "cnn", keep=1).best_checkpoint
        job = dqn_job.model_copy(update={"cnn_checkpoint": str(cnn)})
        outcome = train_dqn_job(store, job, root / "dqn", keep=1)
    assert outcome.best_checkpoint is not None
    return Trained(cnn, outcome.best_checkpoint, job, root / "store.duckdb")


@pytest.fixture(scope="module")
def features(trained: Trained, candles) -> CNNFeatures:
    return cnn_features(trained.cnn, candles)


@pytest.fixture(scope="module")
def cnn_expert(trained: Trained, candles) -> PivotCNNExpert:
    expert = PivotCNNExpert(trained.cnn, name=CNN)
    expert.prepare(SYMBOL, candles)
    return expert


@pytest.fixture(scope="module")
def dqn_expert(trained: Trained, candles) -> DQNExpert:
    expert = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    expert.prepare(SYMBOL, candles)
    return expert


# -- helpers ---------------------------------------------------------------------------------
def flat_account(t: int, equity: float = 10_000.0) -> AccountSnapshot:
    return AccountSnapshot(t, "USDT", equity, equity, 0.0, equity, 1.0, 0.0, 0.0, 0.0, {})


def account_with(t: int, quantity: float, close: float, unrealized: float) -> AccountSnapshot:
    equity = 10_000.0 + unrealized
    position = PositionSnapshot(
        SYMBOL, quantity, close, close, 0.0, unrealized, 1.0, opened_ms=t - 60_000
    )
    return AccountSnapshot(
        t,
        "USDT",
        10_000.0,
        equity,
        abs(quantity) * close,
        equity,
        1.0,
        1.0,
        0.0,
        unrealized,
        {SYMBOL: position},
    )


def request(
    t: int,
    upstream: dict[str, ModelOutput] | None = None,
    account: AccountSnapshot | None = None,
) -> InferenceRequest:
    return InferenceRequest(
        symbol=SYMBOL,
        timestamp=t,
        input=BaseDataInput(symbol=Symbol.parse(SYMBOL), timestamp=t, ohlcv={}),
        upstream=upstream or {},
        account=account or flat_account(t),
    )


def feature_output(features: CNNFeatures, t: int) -> ModelOutput:
    """A CNN output carrying exactly cnn_features' row of close time ``t``."""
    row = int(np.searchsorted(features.times, t))
    assert features.times[row] == t
    return ModelOutput(
        model_type="cnn",
        model_name=CNN,
        symbol=Symbol.parse(SYMBOL),
        timestamp=t,
        confidence=0.5,
        predictions={},
        hidden_states={"features": features.values[row]},
        metadata={"feature_names": features.names},
    )


def _same_values(a: object, b: object, where: str) -> None:
    """Equal structure and labels; numbers equal to float rounding (rtol 1e-5)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_values(x, y, f"{where}[{i}]")
    elif isinstance(a, float | np.floating):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), where
    else:
        assert a == b, where


def assert_same_output(a: ModelOutput, b: ModelOutput) -> None:
    """The same output up to float rounding: the replay accelerator runs the network on a
    batch of samples, whose arithmetic differs from one sample's in the last bits."""
    assert (a.model_name, a.model_type, a.symbol, a.timestamp) == (
        b.model_name,
        b.model_type,
        b.symbol,
        b.timestamp,
    )
    assert a.confidence == pytest.approx(b.confidence, rel=1e-5)
    _same_values(dict(a.predictions), dict(b.predictions), "predictions")
    assert dict(a.metadata).keys() == dict(b.metadata).keys()
    ha, hb = dict(a.hidden_states or {}), dict(b.hidden_states or {})
    assert ha.keys() == hb.keys()
    for key in ha:
        np.testing.assert_allclose(
            np.asarray(ha[key]), np.asarray(hb[key]), rtol=1e-5, atol=1e-6, err_msg=key
        )


def examples(
    expert: PivotCNNExpert, candles: dict[Timeframe, Candles], times: np.ndarray
) -> list[TrainingExample]:
    """Inferences at ``times`` labelled with the planted rule's outcome: BUY when the next
    bar rises, else SELL."""
    bars = candles[M1]
    out = []
    for t in times:
        t = int(t)
        inference = expert.infer(request(t))
        row = int(np.searchsorted(bars.timestamp, t - M1.ms))
        ret = float(bars.close[row + 1] / bars.close[row] - 1.0)
        label = Action.BUY if ret > 0 else Action.SELL
        outcome = Outcome(SYMBOL, t, t + M1.ms, 1, ret, label)
        output = inference.output
        out.append(
            TrainingExample(
                model=expert.name,
                symbol=SYMBOL,
                timestamp=t,
                tensors=inference.tensors,
                predicted=output.action or Action.HOLD,
                probabilities=action_probabilities(output),
                outcome=outcome,
            )
        )
    return out


# -- PivotCNNExpert ----------------------------------------------------------------------------
def test_cnn_expert_follows_the_contract(cnn_expert: PivotCNNExpert, trained: Trained) -> None:
    assert isinstance(cnn_expert, Expert) and isinstance(cnn_expert, TrainableExpert)
    assert cnn_expert.model_type == "cnn" and cnn_expert.depends_on == ()
    assert cnn_expert.timeframes == (M1, M5)
    assert cnn_expert.spec.timeframes == (M1, M5)
    assert cnn_expert.spec.frames == cnn_expert.spec.min_frames == 8
    assert cnn_expert.checkpoint == trained.cnn


def test_cnn_features_at_every_close_equal_cnn_features(
    cnn_expert: PivotCNNExpert, features: CNNFeatures
) -> None:
    assert cnn_expert.feature_names == features.names
    for row in range(len(features) - 150, len(features)):
        t = int(features.times[row])
        inference = cnn_expert.infer(request(t))
        output = inference.output
        assert output.model_name == CNN and output.timestamp == t
        assert output.action in (Action.BUY, Action.SELL, Action.HOLD)
        assert set(output.predictions["action_probabilities"]) == {"BUY", "SELL", "HOLD"}
        # the untrained pivot heads are no prediction; the regression is in real units
        assert "pivot_points" not in output.predictions
        raw = output.hidden_states["regression_scaled"]
        scaling = cnn_expert._scaling
        real = raw.astype(np.float64) * scaling.target_std + scaling.target_mean
        assert list(output.predictions["regression"].values()) == pytest.approx(real.tolist())
        assert output.metadata["feature_names"] == features.names
        row_values = output.hidden_states["features"]
        assert row_values.dtype == np.float32
        np.testing.assert_allclose(row_values, features.values[row], rtol=0, atol=1e-6)
        x = inference.tensors["x"]
        assert x.dtype == np.float32 and x.shape[:2] == (1, 2) and x.shape[2] == 8
        assert_same_output(cnn_expert.replay(SYMBOL, t, inference.tensors), output)


def test_cnn_expert_has_no_look_ahead(cnn_expert: PivotCNNExpert, trained: Trained, candles):
    row = 702  # inside a 5m bucket: that 5m candle is still open at t
    t = int(candles[M1].timestamp[row]) + M1.ms
    base = candles[M1][: row + 1]
    truncated = {M1: base, M5: resample(base, M1, M5)}
    past_only = PivotCNNExpert(trained.cnn, name=CNN)
    past_only.prepare(SYMBOL, truncated)
    full, cut = cnn_expert.infer(request(t)), past_only.infer(request(t))
    np.testing.assert_array_equal(full.tensors["x"], cut.tensors["x"])
    assert_same_output(full.output, cut.output)
    with pytest.raises(ValueError, match="no BTC/USDT sample closing at"):
        past_only.infer(request(t + M1.ms))


def test_cnn_expert_errors(trained: Trained, candles) -> None:
    expert = PivotCNNExpert(trained.cnn, name=CNN)
    t = int(candles[M1].timestamp[-1]) + M1.ms
    with pytest.raises(ValueError, match="no history was prepared"):
        expert.infer(request(t))
    with pytest.raises(ValueError, match="no 5m candles"):
        expert.prepare(SYMBOL, {M1: candles[M1]})
    with pytest.raises(ValueError, match="not 'x'"):
        expert.replay(SYMBOL, t, {"obs": np.zeros((1, 8, 3), dtype=np.float32)})
    with pytest.raises(ValueError, match="stored by another model"):
        expert.replay(SYMBOL, t, {"x": np.zeros((1, 2, 8, 3), dtype=np.float32)})


def test_fit_learns_only_the_action_head_and_raises_the_score(
    trained: Trained, candles, features: CNNFeatures
) -> None:
    expert = PivotCNNExpert(trained.cnn, name=CNN, learning_rate=0.02, batch_size=32)
    expert.prepare(SYMBOL, candles)
    times = features.times[:-1]  # the last close has no next bar
    train = examples(expert, candles, times[-500:-150])
    holdout = examples(expert, candles, times[-140:])
    before = expert.score(holdout)
    losses = [expert.fit(train, epochs=2) for _ in range(5)]
    after = expert.score(holdout)
    assert losses[-1] < losses[0]
    assert after > before + 0.2 and after >= 0.75, (before, after)
    # only the action head moved: every other feature column is unchanged
    t = int(holdout[0].timestamp)
    new = expert.replay(SYMBOL, t, holdout[0].tensors)
    old = holdout[0]
    action_cols = [features.names.index(f"cnn_p_{a}") for a in ("buy", "sell", "hold")]
    rest = np.setdiff1d(np.arange(len(features.names)), action_cols)
    old_row = features.values[int(np.searchsorted(features.times, t))]
    np.testing.assert_allclose(new.hidden_states["features"][rest], old_row[rest], atol=1e-6)
    assert not np.allclose(new.hidden_states["features"][action_cols], old_row[action_cols])
    assert action_probabilities(new).tolist() != old.probabilities.tolist()
    with pytest.raises(ValueError, match="no examples"):
        expert.fit([])
    with pytest.raises(ValueError, match="epochs"):
        expert.fit(train, epochs=0)
    closing = replace(train[0], outcome=replace(train[0].outcome, label=Action.CLOSE))
    with pytest.raises(ValueError, match="not one of the action head"):
        expert.fit([closing])


def test_snapshot_restore_and_deterministic_fit(trained: Trained, candles, features) -> None:
    expert = PivotCNNExpert(trained.cnn, name=CNN)
    expert.prepare(SYMBOL, candles)
    batch = examples(expert, candles, features.times[-200:-1])
    probe = batch[-1]
    start = expert.replay(SYMBOL, probe.timestamp, probe.tensors)
    first = expert.snapshot()
    loss_a = expert.fit(batch)
    moved = expert.replay(SYMBOL, probe.timestamp, probe.tensors)
    assert moved.predictions["action_probabilities"] != start.predictions["action_probabilities"]
    second = expert.snapshot()  # with the optimizer's moments
    loss_b = expert.fit(batch)
    after_b = expert.replay(SYMBOL, probe.timestamp, probe.tensors)
    expert.restore(first)
    assert_same_output(expert.replay(SYMBOL, probe.timestamp, probe.tensors), start)
    assert expert.fit(batch) == loss_a  # same start, same examples: same steps
    expert.restore(second)
    assert_same_output(expert.replay(SYMBOL, probe.timestamp, probe.tensors), moved)
    assert expert.fit(batch) == loss_b
    assert_same_output(expert.replay(SYMBOL, probe.timestamp, probe.tensors), after_b)
    with pytest.raises(TypeError, match="snapshot"):
        expert.restore("weights")


def test_save_load_and_fallback(trained: Trained, candles, features, tmp_path: Path) -> None:
    expert = PivotCNNExpert(trained.cnn, name=CNN)
    expert.prepare(SYMBOL, candles)
    batch = examples(expert, candles, features.times[-120:-1])
    original = [expert.replay(SYMBOL, e.timestamp, e.tensors) for e in batch[-3:]]
    expert.fit(batch, epochs=3)
    fitted = [expert.replay(SYMBOL, e.timestamp, e.tensors) for e in batch[-3:]]
    saved = expert.save(tmp_path / "online.pt", metrics={"accuracy": 0.75})
    assert saved == tmp_path / "online.pt" and saved.is_file()

    # a new expert from the saved file: a valid checkpoint with the fitted weights
    again = PivotCNNExpert(saved, name=CNN)
    again.prepare(SYMBOL, candles)
    for e, out in zip(batch[-3:], fitted, strict=True):
        assert_same_output(again.infer(request(e.timestamp)).output, out)
    assert cnn_features(saved, candles).names == features.names

    # the fallback of a fitted (unsaved) expert is the checkpoint's weights, ready to infer
    fallback = expert.fallback()
    assert fallback is not None and fallback is not expert
    for e, out in zip(batch[-3:], original, strict=True):
        assert_same_output(fallback.infer(request(e.timestamp)).output, out)

    # load() swaps the weights in place; the fallback then comes from the loaded file
    fresh = PivotCNNExpert(trained.cnn, name=CNN)
    fresh.prepare(SYMBOL, candles)
    fresh.load(saved)
    assert fresh.checkpoint == saved
    for e, out in zip(batch[-3:], fitted, strict=True):
        assert_same_output(fresh.replay(SYMBOL, e.timestamp, e.tensors), out)
        assert_same_output(fresh.fallback().replay(SYMBOL, e.timestamp, e.tensors), out)
    # the saved optimizer state comes back: both continue identically
    assert fresh.fit(batch) == expert.fit(batch)

    # a fallback from a checkpoint that is gone gives no expert
    gone = tmp_path / "gone.pt"
    shutil.copy(saved, gone)
    doomed = PivotCNNExpert(gone, name=CNN)
    gone.unlink()
    assert doomed.fallback() is None


# -- DQNExpert ---------------------------------------------------------------------------------
def test_dqn_expert_follows_the_contract(dqn_expert: DQNExpert, trained: Trained) -> None:
    assert isinstance(dqn_expert, Expert) and not isinstance(dqn_expert, TrainableExpert)
    assert dqn_expert.model_type == "rl" and dqn_expert.depends_on == (CNN,)
    assert dqn_expert.timeframes == (M1, M5)
    assert dqn_expert.spec.frames == dqn_expert.spec.min_frames == trained.job.env.frames
    names = read_feature_names(trained.dqn)
    assert dqn_expert.cnn_feature_names == names[len(names) - len(dqn_expert.cnn_feature_names) :]
    assert len(dqn_expert.cnn_feature_names) > 0


def _policy_source(trained: Trained, candles) -> tuple[PolicySource, list[np.ndarray]]:
    """PolicySource over the job's observations (precomputed CNN features as the extra) with
    the saved scaler, recording every observation it acts on."""
    observations = build_observations(candles, trained.job)
    observations.use_scaler(read_scaler(trained.dqn))
    seen: list[np.ndarray] = []

    def record(obs: np.ndarray) -> int:
        seen.append(obs.copy())
        return 0

    source = PolicySource(
        record,
        observations,
        symbol=SYMBOL,
        episode_length=trained.job.env.episode_length,
        initial_cash=trained.job.env.settings.broker.initial_cash,
    )
    source.prepare(SYMBOL, candles[M1])
    return source, seen


def test_dqn_observation_equals_the_policy_sources(
    trained: Trained, candles, features: CNNFeatures, cnn_expert: PivotCNNExpert
) -> None:
    expert = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    expert.prepare(SYMBOL, candles)
    with_live = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    with_live.prepare(SYMBOL, candles)
    agent = DQNAgent.load(trained.dqn)
    source, seen = _policy_source(trained, candles)
    bars = candles[M1]
    quantities = [0.0, 0.0, 0.5, 0.5, 0.5, -0.3, -0.3, 0.0, 0.2]
    start = len(bars) - 40
    for k, q in enumerate(quantities):
        bar = start + k
        t = int(bars.timestamp[bar]) + M1.ms
        close = float(bars.close[bar])
        account = flat_account(t) if q == 0.0 else account_with(t, q, close, 3.0 * k - 5.0)
        context = DecisionContext(t, SYMBOL, bar, bars[: bar + 1], account)
        source.decide(context)
        inference = expert.infer(request(t, {CNN: feature_output(features, t)}, account))
        obs = inference.tensors["obs"]
        np.testing.assert_array_equal(obs, seen[-1])
        output = inference.output
        assert output.model_name == "agent" and output.timestamp == t
        best = int(agent.act(obs)[0])
        assert output.predictions["action"] == agent.action_names[best]
        q_values = agent.q_values(obs)[0]
        assert list(output.predictions["q_values"].values()) == q_values.astype(float).tolist()
        assert_same_output(expert.replay(SYMBOL, t, inference.tensors), output)
        # with the live CNN expert's output of the same step: the same obs up to float noise
        live = cnn_expert.infer(request(t)).output
        got = with_live.infer(request(t, {CNN: live}, account)).tensors["obs"]
        np.testing.assert_allclose(got, obs, rtol=0, atol=1e-6)
    names = read_feature_names(trained.dqn)
    side, in_trade = names.index("side"), names.index("time_in_trade")
    assert [float(o[0, -1, side]) for o in seen] == [0, 0, 1, 1, 1, -1, -1, 0, 1]
    length = trained.job.env.episode_length
    held = [float(o[0, -1, in_trade]) * length for o in seen]
    np.testing.assert_allclose(held, [0, 0, 1, 2, 3, 1, 2, 0, 1], atol=1e-4)


def test_dqn_decides_at_the_newest_close_without_look_ahead(
    trained: Trained, candles, cnn_expert: PivotCNNExpert, dqn_expert: DQNExpert
) -> None:
    """Live, the step is the close of the bar that just closed: the newest candle given.
    Prepared on candles that end there, the agent sees what it sees with the full history."""
    row = 702
    t = int(candles[M1].timestamp[row]) + M1.ms
    base = candles[M1][: row + 1]
    truncated = {M1: base, M5: resample(base, M1, M5)}
    cnn = PivotCNNExpert(trained.cnn, name=CNN)
    cnn.prepare(SYMBOL, truncated)
    live = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    live.prepare(SYMBOL, truncated)
    now = live.infer(request(t, {CNN: cnn.infer(request(t)).output}))
    full = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    full.prepare(SYMBOL, candles)
    later = full.infer(request(t, {CNN: cnn_expert.infer(request(t)).output}))
    np.testing.assert_allclose(now.tensors["obs"], later.tensors["obs"], rtol=1e-5, atol=1e-6)
    assert_same_output(now.output, later.output)
    last = int(candles[M1].timestamp[-1]) + M1.ms  # the full history's newest close
    assert full.infer(request(last, {CNN: cnn_expert.infer(request(last)).output})).output


def test_dqn_time_in_trade_survives_a_new_prepare(trained: Trained, candles, features) -> None:
    """The live loop calls prepare() again as history grows (and old bars are dropped): a
    position held across it keeps counting its bars."""
    expert = DQNExpert(trained.dqn, name="agent", cnn=CNN)
    bars = candles[M1]
    row = 900
    expert.prepare(SYMBOL, {M1: bars[: row + 1], M5: resample(bars[: row + 1], M1, M5)})
    in_trade = read_feature_names(trained.dqn).index("time_in_trade")
    held = []
    for k in range(4):
        if k == 2:
            recent = bars[100:]  # the oldest 100 bars dropped: step indices shift
            expert.prepare(SYMBOL, {M1: recent, M5: resample(recent, M1, M5)})
        t = int(bars.timestamp[row - 1 + k]) + M1.ms
        account = account_with(t, 0.5, float(bars.close[row - 1 + k]), 1.0)
        obs = expert.infer(request(t, {CNN: feature_output(features, t)}, account))
        held.append(float(obs.tensors["obs"][0, -1, in_trade]))
    length = trained.job.env.episode_length
    np.testing.assert_allclose(np.array(held) * length, [1, 2, 3, 4], atol=1e-4)


def test_dqn_refuses_a_cnn_output_of_another_step_or_none(
    dqn_expert: DQNExpert, features: CNNFeatures
) -> None:
    t = int(features.times[-5])
    with pytest.raises(ValueError, match="DQN would read a CNN output of another step"):
        dqn_expert.infer(request(t, {CNN: feature_output(features, t - M1.ms)}))
    with pytest.raises(ValueError, match="holds none"):
        dqn_expert.infer(request(t))
    renamed = replace(
        feature_output(features, t), metadata={"feature_names": ("a", *features.names[1:])}
    )
    with pytest.raises(ValueError, match=r"not the ones the DQN was trained on.*cnn_p_buy"):
        dqn_expert.infer(request(t, {CNN: renamed}))
    with pytest.raises(ValueError, match="no BTC/USDT step closing at"):
        dqn_expert.infer(request(t + 100 * M1.ms, {CNN: feature_output(features, t)}))


def test_dqn_construction_errors(trained: Trained, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give cnn="):
        DQNExpert(trained.dqn)
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(trained.dqn, folder / trained.dqn.name)
    shutil.copy(trained.dqn.parent / JOB_FILE, folder / JOB_FILE)
    with pytest.raises(ValueError, match="retrain it with this version"):
        DQNExpert(folder / trained.dqn.name, cnn=CNN)
    # the way out for such a folder: refit the scaler from the job's data, as training did
    with DuckDBStore(trained.store, read_only=True) as store:
        written = refit_scaler(store, folder / trained.dqn.name)
    assert written == folder / SCALER_FILE
    assert written.read_text() == (trained.dqn.parent / SCALER_FILE).read_text()
    assert DQNExpert(folder / trained.dqn.name, cnn=CNN).cnn_feature_names


def test_dqn_fallback_and_config(trained: Trained, dqn_expert: DQNExpert, features) -> None:
    t = int(features.times[-3])
    upstream = {CNN: feature_output(features, t)}
    fallback = dqn_expert.fallback()
    assert isinstance(fallback, DQNExpert) and fallback is not dqn_expert
    assert_same_output(
        fallback.infer(request(t, upstream)).output, dqn_expert.infer(request(t, upstream)).output
    )
    built = expert_from_config(
        ExpertConfig(name="agent", kind="dqn", checkpoint=trained.dqn, depends_on=[CNN])
    )
    assert isinstance(built, DQNExpert) and built.depends_on == (CNN,)
    cnn = expert_from_config(ExpertConfig(name="c", kind="pivot_cnn", checkpoint=trained.cnn))
    assert isinstance(cnn, PivotCNNExpert) and cnn.name == "c"
    with pytest.raises(ValueError, match="reads no other expert"):
        expert_from_config(
            ExpertConfig(name="c", kind="pivot_cnn", checkpoint=trained.cnn, depends_on=["x"])
        )
