"""Today's runtime against the orchestrated run recorded before issue 14 changed it.

The recording (``orchestrated_5m.json.gz``, made by ``python -m pivotal.testing.golden``
at commit c47f08c, before the runtime moved to pushed bars) holds the decisions, fills and
equity of a learning-on run over real BTC/USDT and ETH/USDT 5m bars. The same run now must
give the same actions at the same times, the same fills and the same equity curve
(confidences to float noise: the accelerator evaluates the PivotCNN in batches). The
learning loop's results are applied one step after they were asked for
(``apply_after_steps: 1``), which is what the old runtime did inline; the default now
applies them 16 steps later, off the decision thread, which changes later decisions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.testing.golden import golden_run, read_golden
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.threads import one_torch_thread

RECORDING = Path(__file__).with_name("orchestrated_5m.json.gz")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    with one_torch_thread():
        now = golden_run(tmp_path_factory.mktemp("golden"), data, learning={"apply_after_steps": 1})
    return read_golden(RECORDING), now


def test_the_same_actions_at_the_same_times(runs: tuple[dict, dict]) -> None:
    then, now = runs
    a, b = then["decisions"], now["decisions"]
    assert len(a) == len(b) > 1_000
    assert (a["timestamp"].to_numpy() == b["timestamp"].to_numpy()).all()
    assert (a["symbol"].to_numpy() == b["symbol"].to_numpy()).all()
    differ = np.flatnonzero(a["action"].to_numpy() != b["action"].to_numpy())
    assert not len(differ), f"{len(differ)} decisions differ, first at row {differ[:5]}"
    np.testing.assert_allclose(b["confidence"], a["confidence"], rtol=1e-5, atol=1e-6)


def test_the_same_fills_and_equity(runs: tuple[dict, dict]) -> None:
    then, now = runs
    a, b = then["fills"], now["fills"]
    assert len(a) == len(b) > 0
    for column in ("timestamp", "symbol", "side"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all(), column
    for column in ("quantity", "price", "fee"):
        np.testing.assert_allclose(b[column].astype(float), a[column].astype(float), rtol=1e-9)
    ea, eb = then["equity"], now["equity"]
    assert (ea["timestamp"].to_numpy() == eb["timestamp"].to_numpy()).all()
    np.testing.assert_allclose(eb["equity"], ea["equity"], rtol=1e-9)
    assert isinstance(eb, pd.DataFrame)
