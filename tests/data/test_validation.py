"""Validation: each rule finds exactly the rows that break it and the report says why."""

from __future__ import annotations

import numpy as np

from pivotal.core import Candles, Timeframe
from pivotal.core.trades import Trades
from pivotal.data.validation import validate_candles, validate_trades


def base(n: int = 6) -> dict[str, np.ndarray]:
    ts = np.arange(n, dtype=np.int64) * 60_000
    close = 100.0 + np.arange(n)
    return {
        "timestamp": ts,
        "open": close - 0.5,
        "high": close + 1,
        "low": close - 1,
        "close": close,
        "volume": np.ones(n),
    }


def report_for(**changes: tuple[int, float]):  # type: ignore[no-untyped-def]
    cols = base()
    for name, (row, value) in changes.items():
        cols[name] = cols[name].astype(float if name != "timestamp" else np.int64)
        cols[name][row] = value
    return validate_candles(Candles(**cols), Timeframe.M1)


def test_clean_data_passes() -> None:
    assert validate_candles(Candles(**base()), Timeframe.M1).ok


def test_each_rule_names_its_rows() -> None:
    cases = {
        "NaN": dict(close=(2, np.nan)),
        "negative volume": dict(volume=(3, -1.0)),
        "zero or negative": dict(low=(1, -5.0)),
        "high below": dict(high=(4, 50.0)),
        "low above": dict(low=(4, 200.0)),
        "grid": dict(timestamp=(5, 5 * 60_000 + 30_000)),
        "duplicate": dict(timestamp=(2, 60_000)),
        "out of order": dict(timestamp=(2, 30_000)),
    }
    for needle, change in cases.items():
        report = report_for(**change)
        assert not report.ok, needle
        text = report.describe("f.csv", first_line=2)
        assert needle in text, (needle, text)
        row = next(iter(change.values()))[0]
        assert row in np.concatenate([p.rows for p in report.problems]), needle
        assert f"line {row + 2}" in text


def test_trades_rules() -> None:
    ok = Trades([1, 2, 2], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [True, False, True], [1, 2, 3])
    assert validate_trades(ok).ok
    bad = Trades([2, 1, 3], [1.0, -1.0, 1.0], [1.0, 1.0, 0.0], [True, False, True], [1, 1, 3])
    text = validate_trades(bad).describe()
    for needle in ("earlier", "duplicate trade id", "price", "quantity"):
        assert needle in text
