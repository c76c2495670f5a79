"""Item 8 (data commands): ``pivotal data gaps`` of a series that is not stored says so and
fails; ``--since`` after ``--until`` is named as such; ``--max-missing`` shows which missing
runs are gaps under the definition the rest of pivotal uses (:mod:`pivotal.core.gaps`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, find_series_gaps
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
H1 = SeriesKey("binance", "BTC/USDT", "1h")
GAP_ROW = re.compile(r"│\s*gap\s*│")
BRIDGED_ROW = re.compile(r"│\s*bridged\s*│")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance's real BTC/USDT 1h candles (exchange outages included)."""
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet")
    path = tmp_path_factory.mktemp("gaps") / "store"
    with open_store(path) as s:
        columns = ["timestamp", "open", "high", "low", "close", "volume"]
        s.write_candles(H1, Candles.from_frame(frame[columns]), source="import:test")
    return path


def gaps_cli(store: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(["data", "gaps", *args, "-d", str(store)], cwd=store.parent)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, " ".join(result.stderr.split())


def test_a_series_that_is_not_stored_is_an_error(store: Path) -> None:
    code, out, err = gaps_cli(store, "-s", "DOGE/USDT", "-t", "1h")
    assert code != 0 and "no gaps" not in out
    assert "DOGE/USDT is not in the store" in err and "BTC/USDT" in err
    code, out, err = gaps_cli(store, "-s", "BTC/USDT", "-t", "4h")
    assert code != 0 and "no gaps" not in out
    assert "no 4h candles for BTC/USDT" in err and "1h" in err


def test_since_after_until_says_exactly_that(store: Path) -> None:
    args = ("-s", "BTC/USDT", "-t", "1h", "--since", "2024-03-01", "--until", "2024-01-01")
    code, _, err = gaps_cli(store, *args)
    assert code == 2
    assert "--since 2024-03-01 is after --until 2024-01-01" in err
    assert "symbol" not in err.lower() and not re.search(r"\d{13}", err)
    download = ["data", "download", "--since", "2024-03-01", "--until", "2024-01-01"]
    result = run_cli([*download, "-d", str(store)], cwd=store.parent)
    assert result.returncode == 2
    assert "--since 2024-03-01 is after --until 2024-01-01" in " ".join(result.stderr.split())


def test_max_missing_marks_the_gaps_of_the_core_definition(store: Path) -> None:
    with open_store(store, read_only=True) as s:
        ts = s.read_candles(H1).timestamp
    runs = find_series_gaps(ts, H1.timeframe.ms, max_missing_bars=0)
    missing = np.array([r.missing for r in runs])
    assert len(runs) > 1 and missing.min() <= DEFAULT_MAX_MISSING_BARS < missing.max()
    for limit in (DEFAULT_MAX_MISSING_BARS, 1):
        args = ["-s", "BTC/USDT", "-t", "1h"]
        if limit != DEFAULT_MAX_MISSING_BARS:  # the default applies without the option
            args += ["--max-missing", str(limit)]
        code, out, _ = gaps_cli(store, *args)
        assert code == 0
        expected = len(find_series_gaps(ts, H1.timeframe.ms, max_missing_bars=limit))
        assert len(GAP_ROW.findall(out)) == expected == int((missing > limit).sum())
        assert len(BRIDGED_ROW.findall(out)) == len(runs) - expected
        assert f"{expected:,} of them gaps (more than {limit} missing bars" in " ".join(out.split())
