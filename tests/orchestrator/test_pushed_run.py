"""The pushed run (every bar fed one at a time from the store through the market frame, as
paper and live trading run) gives the accelerated replay's decisions, fills and equity.

Real BTC/USDT and ETH/USDT 1m bars with the 5m and 1h streams, learning on (candidates
trained off the decision path, applied at deterministic steps), a gap cut into ETH's data
in the middle of the trading span (positions closed before it, indicators restarting after
it). Nothing is prepared over the whole range on the pushed side: the run reads the store
in chunks through the runtime's replay feed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pivotal.testing.golden import RealRun, golden_run
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.threads import one_torch_thread

SHAPE = RealRun(
    timeframe="1m",
    streams=("5m", "1h"),
    train_bars=2_400,
    learn_bars=300,
    trade_bars=600,
    warmup_bars=60,
    end_offset=3_000,
    hole=30,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("pushed")
    with one_torch_thread():
        accelerated = golden_run(root / "accelerated", data, shape=SHAPE)
        pushed = golden_run(root / "pushed", data, shape=SHAPE, accelerate=False)
    return accelerated, pushed


def test_the_run_met_the_gap_and_traded(runs: tuple[dict, dict]) -> None:
    accelerated, pushed = runs
    assert len(accelerated["gaps"]) == len(pushed["gaps"]) >= 1
    assert set(accelerated["gaps"]["symbol"]) == {"ETH/USDT"}
    assert len(accelerated["fills"]) > 2
    assert accelerated["decisions"]["action"].nunique() >= 2


def test_identical_decisions(runs: tuple[dict, dict]) -> None:
    a, b = (r["decisions"] for r in runs)
    assert len(a) == len(b) > 1_000
    for column in ("timestamp", "symbol", "action"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all(), column
    np.testing.assert_allclose(b["confidence"], a["confidence"], rtol=1e-5, atol=1e-6)


def test_identical_fills_and_equity(runs: tuple[dict, dict]) -> None:
    (a, b), (ea, eb) = ((r["fills"] for r in runs), (r["equity"] for r in runs))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert (ea["timestamp"].to_numpy() == eb["timestamp"].to_numpy()).all()
    assert (ea["equity"].to_numpy() == eb["equity"].to_numpy()).all()
