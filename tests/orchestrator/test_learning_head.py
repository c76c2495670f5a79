"""Head-only online training of the PivotCNN expert: the frozen network runs once per example,
and the results equal training through the whole network (the way it was done before) up to
float rounding; the training copy trains without touching the live expert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from pivotal.core.timeframes import Timeframe
from pivotal.core.types import Action
from pivotal.data.resample import resample
from pivotal.models.networks.pivot_cnn import ACTIONS
from pivotal.orchestrator.contracts import Outcome, TrainingExample
from pivotal.orchestrator.experts import PivotCNNExpert
from pivotal.rl.cnn_features import ACTION_HEAD
from pivotal.testing.planted import planted_candles
from pivotal.testing.threads import one_torch_thread
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.run import train_job

M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")
SYMBOL = "BTC/USDT"
T0 = 1_699_999_200_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cnn")
    base = planted_candles(800, seed=2, start_time=T0)
    job = tiny_job("pivot_cnn", frames=8, streams=("5m",))
    assert resample(base, M1, M5) is not None
    with store_candles(root / "store.duckdb", base, streams=("5m",)) as store:
        return train_job(store, job, root / "out", keep=1).best_checkpoint


def _examples(expert: PivotCNNExpert, n: int, seed: int) -> list[TrainingExample]:
    """``n`` examples with random standardised inputs of the model's shape and labels."""
    shape = expert.model.shape
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = T0 + (seed * 10_000 + i) * M1.ms
        label = (Action.BUY, Action.SELL, Action.HOLD)[int(rng.integers(3))]
        x = rng.standard_normal((1, shape.streams, shape.frames, shape.channels))
        out.append(
            TrainingExample(
                model=expert.name,
                symbol=SYMBOL,
                timestamp=t,
                tensors={"x": x.astype(np.float32)},
                predicted=Action.HOLD,
                probabilities=np.full(3, 1 / 3),
                outcome=Outcome(SYMBOL, t, t + M1.ms, 1, 0.001, label),
            )
        )
    return out


def _labels(examples: list[TrainingExample]) -> torch.Tensor:
    return torch.tensor([ACTIONS.index(e.outcome.label.value) for e in examples])


def _whole_network_fit(
    expert: PivotCNNExpert, examples: list[TrainingExample], optimizer: torch.optim.Optimizer
) -> float:
    """The training before head-input caching: every step runs the whole (frozen) network."""
    model = expert.model
    head = [p for n, p in model.named_parameters() if ACTION_HEAD in n.split(".")[:-1]]
    frozen = [p for p in model.parameters() if all(p is not h for h in head)]
    for p in frozen:
        p.requires_grad_(False)
    x = torch.cat([torch.from_numpy(e.tensors["x"]) for e in examples])
    y = _labels(examples)
    rng = np.random.default_rng(expert.seed)
    total, count = 0.0, 0
    model.eval()
    order = torch.from_numpy(rng.permutation(len(y)))
    for lo in range(0, len(y), expert.batch_size):
        idx = order[lo : lo + expert.batch_size]
        loss = F.cross_entropy(model(x[idx], None)[ACTION_HEAD], y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    for p in frozen:
        p.requires_grad_(True)
    return total / count


def _whole_network_scores(
    expert: PivotCNNExpert, examples: list[TrainingExample]
) -> tuple[float, float]:
    x = torch.cat([torch.from_numpy(e.tensors["x"]) for e in examples])
    with torch.inference_mode():
        logits = expert.model(x, None)[ACTION_HEAD]
    y = _labels(examples)
    accuracy = int((logits.argmax(dim=1) == y).sum()) / len(y)
    return accuracy, float(F.cross_entropy(logits.double(), y))


def _forward_rows(expert: PivotCNNExpert) -> list[int]:
    """Rows each later forward pass of the expert's network runs (a list that grows)."""
    rows: list[int] = []
    expert.model.register_forward_hook(lambda _m, args, _out: rows.append(len(args[0])))
    return rows


def _head_state(expert: PivotCNNExpert) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in expert.model.named_parameters()
        if ACTION_HEAD in n.split(".")[:-1]
    }


def test_head_training_equals_whole_network_training(checkpoint: Path) -> None:
    ours = PivotCNNExpert(checkpoint, learning_rate=0.01, batch_size=16)
    theirs = PivotCNNExpert(checkpoint, learning_rate=0.01, batch_size=16)
    train, held = _examples(ours, 64, seed=1), _examples(ours, 32, seed=2)
    np.testing.assert_allclose(ours.scores(held), _whole_network_scores(theirs, held), rtol=1e-6)
    head = [p for n, p in theirs.model.named_parameters() if ACTION_HEAD in n.split(".")[:-1]]
    optimizer = torch.optim.Adam(head, lr=theirs.learning_rate)
    for _ in range(3):  # consecutive updates keep the optimizer's moments
        expected = _whole_network_fit(theirs, train, optimizer)
        assert ours.fit(train) == pytest.approx(expected, rel=1e-5)
    a, b = _head_state(ours), _head_state(theirs)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.scores(held), _whole_network_scores(theirs, held), rtol=1e-5)
    assert ours.score(held) == _whole_network_scores(theirs, held)[0]
    # the frozen part did not move
    frozen = {n: p for n, p in ours.model.named_parameters() if n not in a}
    other = dict(theirs.model.named_parameters())
    assert all(torch.equal(p, other[n]) for n, p in frozen.items())


def test_the_frozen_network_runs_once_per_example(checkpoint: Path) -> None:
    expert = PivotCNNExpert(checkpoint, batch_size=16)
    train, held = _examples(expert, 48, seed=3), _examples(expert, 24, seed=4)
    rows = _forward_rows(expert)
    snapshot = expert.snapshot()
    expert.scores(held)
    expert.fit(train, epochs=3)
    expert.scores(held)
    expert.restore(snapshot)  # a rollback: the frozen part is the same, the inputs stay
    expert.fit(train + held[:8], epochs=2)
    expert.scores(held)
    assert sum(rows) == len(train) + len(held)


def test_a_loaded_checkpoint_computes_the_inputs_again(checkpoint: Path, tmp_path: Path) -> None:
    expert = PivotCNNExpert(checkpoint, batch_size=16)
    train = _examples(expert, 32, seed=5)
    expert.fit(train)
    saved = expert.save(tmp_path / "online.pt", metrics={"holdout_accuracy": 0.5})
    expert.load(saved)  # a new network object
    rows = _forward_rows(expert)
    expert.fit(train)
    assert sum(rows) == len(train)


def test_the_training_copy_trains_while_the_live_expert_stays(checkpoint: Path) -> None:
    live = PivotCNNExpert(checkpoint, batch_size=16)
    train, held = _examples(live, 48, seed=6), _examples(live, 24, seed=7)
    live.fit(train)  # with an optimizer state to copy
    before = {n: p.detach().clone() for n, p in live.model.state_dict().items()}
    trainer = live.training_copy()
    assert trainer.model is not live.model
    trainer.fit(train, epochs=2)
    assert all(torch.equal(before[n], p) for n, p in live.model.state_dict().items())
    assert trainer.scores(held) != live.scores(held)
    live.restore(trainer.snapshot())  # a promotion applied to the live expert
    assert live.scores(held) == trainer.scores(held)
    # both go on identically (the optimizer's moments came along)
    assert live.fit(train) == trainer.fit(train)


def test_a_rollback_goes_on_exactly_like_the_snapshot_it_restored(checkpoint: Path) -> None:
    expert = PivotCNNExpert(checkpoint, batch_size=16)
    train, other = _examples(expert, 48, seed=8), _examples(expert, 48, seed=9)
    expert.fit(train)  # an optimizer state to keep
    optimizer = expert._optimizer
    snapshot = expert.snapshot()
    twin = expert.training_copy()
    twin.restore(snapshot)
    expert.fit(other, epochs=3)  # a candidate, rolled back
    expert.restore(snapshot)
    assert expert._optimizer is optimizer  # the same Adam, its state put back
    assert expert.fit(train) == twin.fit(train)
    mine, twins = _head_state(expert), _head_state(twin)
    assert mine.keys() == twins.keys()
    assert all(torch.equal(mine[n], twins[n]) for n in mine)
    saved, theirs = expert.snapshot()["optimizer"], twin.snapshot()["optimizer"]
    for key, state in saved["state"].items():
        assert all(torch.equal(v, theirs["state"][key][n]) for n, v in state.items())
