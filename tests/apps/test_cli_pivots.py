"""`pivotal pivots show` writes a self-contained chart of a stored series' pivots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pivotal.core import Candles
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.features.pivots import williams_pivots
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_pivots_show_writes_an_offline_html_chart(tmp_path: Path) -> None:
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv" / "binance-spot" / "1h" / "ETH_USDT-1h.parquet")
    candles = Candles.from_frame(frame.tail(3000))
    key = SeriesKey("binance", "ETH/USDT", "1h")
    with open_store(tmp_path / "store") as store:
        store.write_candles(key, candles)
    out = tmp_path / "charts" / "eth.html"
    result = run_cli(
        [
            "pivots",
            "show",
            "-e",
            "binance",
            "-s",
            "ETH/USDT",
            "-t",
            "1h",
            "--bars",
            "800",
            "-o",
            str(out),
            "-d",
            str(tmp_path / "store"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "plotly" in html.lower()
    assert 'src="https://cdn.plot.ly' not in html  # library embedded: the chart opens offline
    last = candles[-800:]
    expected = williams_pivots(last.high, last.low, levels=5, strength=2)
    level1_highs = int(((expected["level"] == 1) & (expected["kind"] == "high")).sum())
    assert f"│     1 │ {level1_highs:>5} │" in result.stdout
    assert not list(out.parent.glob(".eth.html.*"))  # no temporary file left behind


def test_pivots_show_needs_enough_candles(tmp_path: Path) -> None:
    result = run_cli(
        [
            "pivots",
            "show",
            "-e",
            "binance",
            "-s",
            "ETH/USDT",
            "-t",
            "1h",
            "-o",
            "x.html",
            "-d",
            str(tmp_path / "none"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "pivotal data import" in result.stderr
