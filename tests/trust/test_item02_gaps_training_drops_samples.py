"""Issue 13 item 2 (training half): training drops the samples whose input window or label
horizon crosses a gap, and says how many it dropped and why.

Planted candles with a hole cut into them (a store like the one built from ../shared/data,
whose 1m windows lie months apart), checked against a brute-force count of the windows and
label horizons that straddle the hole.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pivotal.apps.cli.main import app
from pivotal.apps.cli.train_cmd import build_job
from pivotal.config.models import PivotalConfig
from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_ids
from pivotal.testing.planted import planted_candles
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.data import (
    DROP_ALL_TARGETS_MISSING,
    DROP_LABEL_CROSSES_GAP,
    DROP_WARMUP_AFTER_GAP,
    DROP_WINDOW_CROSSES_GAP,
)
from pivotal.training.labels import LabelConfig, LabelSet
from pivotal.training.pipeline import prepare

MS = 60_000
HOLE_AT, HOLE = 2_000, 300  # bars 0..1999, then 300 missing, then the rest


def with_hole(n: int = 4_000, seed: int = 0) -> Candles:
    c = planted_candles(n, seed=seed)
    ts = c.timestamp.copy()
    ts[HOLE_AT:] += HOLE * MS
    return Candles(ts, c.open, c.high, c.low, c.close, c.volume)


def test_labels_never_read_across_a_gap() -> None:
    candles = with_hole()
    config = LabelConfig(horizons=(1, 5), pivot_levels=1, pivot_horizon=50)
    labels = LabelSet.build(candles, config, step_ms=MS).frame
    before = LabelSet.build(candles[:HOLE_AT], config).frame
    after = LabelSet.build(candles[HOLE_AT:], config).frame
    for column in labels.columns:
        np.testing.assert_array_equal(labels[column].to_numpy()[:HOLE_AT], before[column])
        np.testing.assert_array_equal(labels[column].to_numpy()[HOLE_AT:], after[column])
    # the last bars before the gap have unknown 5-bar returns, as at the end of the data
    assert np.isnan(labels["return_5"].to_numpy()[HOLE_AT - 5 : HOLE_AT]).all()
    assert np.isfinite(labels["return_5"].to_numpy()[HOLE_AT - 6])


@pytest.mark.parametrize("frames", [8, 32])
def test_training_drops_samples_across_the_gap_and_counts_them(tmp_path: Path, frames: int) -> None:
    candles = with_hole()
    job = tiny_job("cnn1d", frames=frames, warmup_bars=50)
    with store_candles(tmp_path / "gap.duckdb", candles) as store:
        prepared = prepare(store, job)
    data = prepared.dataset
    rows = data.rows()
    seg = segment_ids(candles.timestamp, MS)
    horizon = prepared.labels.horizon
    # no kept sample reads bars from both sides: window rows, label horizon and warm-up
    assert (seg[rows - frames + 1] == seg[rows]).all()
    assert (seg[np.minimum(rows + horizon, len(seg) - 1)] == seg[rows]).all()
    after_gap = rows[seg[rows] == 1]
    assert (after_gap - HOLE_AT >= job.warmup_bars).all()
    # the counts are exactly those of a brute-force pass over every anchor candle
    times = data.inputs.times(np.arange(len(data.inputs)))
    all_rows = np.searchsorted(candles.timestamp, times - MS)
    window = seg[np.maximum(all_rows - frames + 1, 0)] != seg[all_rows]
    warm = (seg[all_rows] == 1) & (all_rows - HOLE_AT < job.warmup_bars)
    label = seg[np.minimum(all_rows + horizon, len(seg) - 1)] != seg[all_rows]
    assert prepared.dropped[DROP_WINDOW_CROSSES_GAP] == window.sum() == frames - 1
    assert prepared.dropped[DROP_WARMUP_AFTER_GAP] == (~window & warm).sum() > 0
    assert prepared.dropped[DROP_LABEL_CROSSES_GAP] == (~window & ~warm & label).sum() == horizon
    kept = len(data) + sum(prepared.dropped.values())
    assert kept == len(data.inputs)
    # no train / validation / test sample crosses the gap either (they are subsets)
    for part in (prepared.train, prepared.validation, prepared.test):
        assert (seg[part.rows()] == seg[part.rows() - frames + 1]).all()
    # and the summary the CLI prints says it
    summary = prepared.sample_summary()
    assert f"{frames - 1} ({DROP_WINDOW_CROSSES_GAP})" in summary
    assert f"{horizon} ({DROP_LABEL_CROSSES_GAP})" in summary
    assert "1 gap(s)" in summary and "300 1m bars missing" in summary


def test_without_a_gap_nothing_is_dropped_for_gaps(tmp_path: Path) -> None:
    job = tiny_job("cnn1d", warmup_bars=50)
    with store_candles(tmp_path / "nogap.duckdb", planted_candles(3_000)) as store:
        prepared = prepare(store, job)
    assert prepared.dropped[DROP_WINDOW_CROSSES_GAP] == 0
    assert prepared.dropped[DROP_LABEL_CROSSES_GAP] == 0
    assert prepared.dropped[DROP_WARMUP_AFTER_GAP] == 0
    assert prepared.gaps == ()
    assert "gap" not in prepared.sample_summary()
    assert set(prepared.dropped) >= {DROP_ALL_TARGETS_MISSING}


def test_a_larger_gap_setting_bridges_the_hole(tmp_path: Path) -> None:
    job = tiny_job("cnn1d", warmup_bars=50, max_missing_bars=HOLE)
    with store_candles(tmp_path / "bridged.duckdb", with_hole()) as store:
        prepared = prepare(store, job)
    assert prepared.gaps == () and prepared.dropped[DROP_WINDOW_CROSSES_GAP] == 0


def test_the_gap_setting_comes_from_pivotal_config(tmp_path: Path) -> None:
    assert PivotalConfig().gaps.max_missing_bars == DEFAULT_MAX_MISSING_BARS
    cfg = PivotalConfig.model_validate({"gaps": {"max_missing_bars": 60}})
    job = build_job("cnn1d", None, symbol="BTC/USDT", config_max_missing_bars=60)
    assert job.max_missing_bars == cfg.gaps.max_missing_bars == 60
    # a job file's own setting wins over the config
    job_file = tmp_path / "job.yaml"
    job_file.write_text("symbol: BTC/USDT\nmax_missing_bars: 7\n")
    assert build_job("cnn1d", job_file, config_max_missing_bars=60).max_missing_bars == 7
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        PivotalConfig.model_validate({"gaps": {"max_missing_bars": -1}})


def test_pivotal_train_prints_the_dropped_samples(tmp_path: Path) -> None:
    with store_candles(tmp_path / "pivotal.duckdb", with_hole(3_000)):
        pass
    result = CliRunner().invoke(
        app,
        [
            "train", "cnn1d", "-s", "BTC/USDT", "--epochs", "1", "--frames", "8",
            "-p", "channels=8", "--data-dir", str(tmp_path),
            "--out", str(tmp_path / "models"), "--html", str(tmp_path / "r.html"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # the console may wrap a long line
    line = flat[flat.index("data:") :]
    assert re.search(r"dropped [\d,]+ \(input window crosses a gap\)", line), line
    assert "1 gap(s) in the 1m series" in line
