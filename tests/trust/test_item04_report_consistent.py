"""Item 4: the orchestrator's report, summary and JSON tell one story.

One buy-and-hold definition (the equal-weight basket, fully invested at the first bar's
close, no fees) gives the same figure in the headline, the metrics table, the equity curve,
the console summary and ``pivotal run --json``; the benchmark's exposure is about 100 % and
its Sharpe is the daily-return one; the fills are shown by default and the thousands of
repeated decisions are not; every closed trade says why it closed; a result that comes from
staying out of a falling market is called that."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.result import empty_fills, empty_trades
from pivotal.core.candles import Candles
from pivotal.data.duckdb_store import STORE_FILE_NAME
from pivotal.orchestrator.benchmark import buy_and_hold, daily_risk, edge_note
from pivotal.orchestrator.report import exit_reasons, write_orchestrator_report
from pivotal.orchestrator.run_file import RunConfig, write_run_file
from pivotal.testing.cli import run_cli
from pivotal.testing.orchestrator import GRID_START, train_tiny_experts
from pivotal.testing.threads import one_torch_thread

MINUTE = 60_000
DAY = 86_400_000


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`pivotal run RUN_FILE --report --json` once over the tiny experts' store."""
    root = tmp_path_factory.mktemp("item04")
    tiny = train_tiny_experts(root / "models")
    (root / "data").mkdir()
    shutil.copyfile(tiny.store, root / "data" / STORE_FILE_NAME)
    config = RunConfig.model_validate(
        {
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "since": GRID_START + 700 * MINUTE,
            "until": GRID_START + 1_000 * MINUTE,
            "warmup_bars": 50,
            "settings": {"risk": {"stop_loss_pct": 0.002}},
            "orchestrator": {
                "experts": tiny.experts(),
                "gate": {"buy_threshold": 0.0, "sell_threshold": 0.0},
                "learning": {"enabled": False},
            },
        }
    )
    write_run_file(config, root / "run.yaml")
    done = run_cli(
        ["run", "run.yaml", "-d", "data", "--no-history", "--report", "r.html", "--json", "r.json"],
        cwd=root,
    )
    return root, done


def _document(root: Path) -> dict[str, Any]:
    return json.loads((root / "r.json").read_text(encoding="utf-8"))


def _traces(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    out = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', text):
        traces, _ = decoder.raw_decode(text, match.end())
        out += traces
    return out


def _cells(text: str, label: str) -> list[str]:
    """The cells of the metrics table row labelled ``label``."""
    row = re.search(rf"<td class=\"text\">{re.escape(label)}</td>(.*?)</tr>", text)
    assert row is not None, label
    return re.findall(r"<td>([^<]*)</td>", row.group(1))


def test_one_buy_and_hold_figure_in_headline_table_curve_summary_and_json(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, done = ran
    assert done.returncode == 0, done.stderr
    document = _document(root)
    hold = document["benchmark"]["buy and hold"]
    figure = hold["metrics"]["total_return_pct"]
    assert document["result"]["metrics"]["buy_and_hold_return_pct"] == pytest.approx(figure)
    assert f"vs buy-and-hold {figure:+.2f} %" in done.stdout
    text = (root / "r.html").read_text(encoding="utf-8")
    assert f"against buy-and-hold {figure:+.2f} %" in text  # the headline
    assert _cells(text, "Buy &amp; hold return [%]")[0] == f"{figure:,.2f}"  # strategy column
    assert _cells(text, "Return [%]")[1] == f"{figure:,.2f}"  # the benchmark's own return
    curve = next(t for t in _traces(root / "r.html") if t.get("name") == "buy and hold")
    last = curve["y"][-1] if isinstance(curve["y"], list) else None
    if last is None:  # numpy arrays are written as base64 typed arrays
        import base64

        raw = base64.b64decode(curve["y"]["bdata"])
        last = float(np.frombuffer(raw, dtype=np.dtype(curve["y"]["dtype"]))[-1])
    initial = document["result"]["initial_cash"]
    assert last == pytest.approx(initial * (1 + figure / 100))
    assert "each bought at the close of its first bar" in text
    assert "each bought at the close of its first bar" in done.stdout


def test_the_benchmark_is_fully_invested_with_a_daily_sharpe(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, done = ran
    assert done.returncode == 0, done.stderr
    metrics = _document(root)["benchmark"]["buy and hold"]["metrics"]
    assert metrics["exposure_time_pct"] >= 99.0
    assert metrics["n_trades"] == 1  # one holding per symbol, ended by the end of data


def test_fills_are_shown_and_repeated_decisions_hidden(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, done = ran
    assert done.returncode == 0, done.stderr
    traces = {t.get("name"): t for t in _traces(root / "r.html")}
    fills = [t for n, t in traces.items() if str(n).endswith(("entries", "exits"))]
    assert fills and all(t.get("visible", True) is True for t in fills)
    decisions = _document(root)["decisions"]
    sells = sum(d["action"] == "SELL" for d in decisions)
    every = traces.get("BTC/USDT every SELL")
    if sells:
        assert every is not None and every["visible"] == "legendonly"
        assert len(every["x"]) == sells
        shown = traces["BTC/USDT SELL"]
        assert shown.get("visible", True) is True and len(shown["x"]) <= len(every["x"])
    text = (root / "r.html").read_text(encoding="utf-8")
    assert "<details><summary>" in text  # the event list is folded


def test_every_closed_trade_has_an_exit_reason(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, done = ran
    assert done.returncode == 0, done.stderr
    trades = _document(root)["result"]["trades"]
    assert trades, "the run with thresholds 0 trades"
    allowed = {"signal", "signal (reversal)", "stop-loss", "take-profit", "gap"}
    assert {t["exit_reason"] for t in trades} <= allowed
    assert "<th>Exit reason</th>" in (root / "r.html").read_text(encoding="utf-8")
    bench = _document(root)["benchmark"]["buy and hold"]["trades"]
    assert {t["exit_reason"] for t in bench} == {"end of data"}


def test_json_holds_decisions_trades_metrics_events_gaps_and_checkpoints(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, done = ran
    assert done.returncode == 0, done.stderr
    document = _document(root)
    assert document["format"] == "pivotal-run"
    assert len(document["decisions"]) == 300  # one per 1m bar of the traded span
    assert {"time", "timestamp", "symbol", "action"} <= set(document["decisions"][0])
    for key in ("events", "gaps", "checkpoints", "decisions"):
        assert isinstance(document[key], list)
    assert "sharpe_daily" in document["result"]["metrics"]
    assert document["run"]["symbols"] == ["BTC/USDT"]
    assert 0 <= document["in_market_pct"] <= 100


def _falling(n_days: int, drop: float, seed: int) -> Candles:
    """5m candles that fall by ``drop`` over ``n_days`` with 2 % daily noise."""
    rng = np.random.default_rng(seed)
    n = n_days * 288
    steps = np.log(1 - drop) / n + rng.normal(0, 0.02 / np.sqrt(288), n)
    close = 100 * np.exp(np.cumsum(steps))
    open_ = np.r_[100.0, close[:-1]]
    frame = pd.DataFrame(
        {
            "timestamp": GRID_START + np.arange(n, dtype=np.int64) * 300_000,
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.ones(n),
        }
    )
    return Candles.from_frame(frame)


def test_buy_and_hold_metrics_are_sane_in_a_falling_market() -> None:
    candles = {"A/USDT": _falling(30, 0.3, 1), "B/USDT": _falling(30, 0.4, 2)}
    ts = candles["A/USDT"].timestamp
    hold = buy_and_hold(ts, candles, 10_000.0)
    m = hold.metrics
    expected = np.mean([c.close[-1] / c.close[0] - 1 for c in candles.values()]) * 100
    assert m["total_return_pct"] == pytest.approx(expected)
    assert m["buy_and_hold_return_pct"] == pytest.approx(expected)
    assert m["exposure_time_pct"] == pytest.approx(100.0)
    # the daily-return Sharpe, recomputed by hand from the daily closes
    daily = hold.equity_series().resample("D").last().to_numpy()
    closes = np.r_[10_000.0, daily]
    r = np.diff(closes) / closes[:-1]
    by_hand = r.mean() / r.std(ddof=1) * math.sqrt(365)
    assert m["sharpe_daily"] == pytest.approx(by_hand)
    assert -20 < m["sharpe_daily"] < 0  # a bad month, not -70


def test_the_falling_market_sentence() -> None:
    note = edge_note(-5.0, -33.6, 12.3)
    assert note is not None
    assert "in the market 12.3 %" in note and "staying out" in note and "33.60 %" in note
    assert edge_note(40.0, -10.0, 80.0) is None  # it made more than staying out would
    assert edge_note(5.0, 10.0, 50.0) is None  # the market rose
    assert edge_note(-40.0, -30.0, 90.0) is None  # it did worse than holding
    assert edge_note(-2.3, -2.8, 99.8) is None  # in the market throughout: not from staying out


def test_exit_reasons_from_the_trade_column_or_the_closing_fills() -> None:
    trades = empty_trades().reindex(range(3))
    trades["symbol"] = ["X/USDT"] * 3
    trades["side"] = ["long", "long", "short"]
    trades["exit_time"] = [100, 200, 300]
    fills = empty_fills().reindex(range(3))
    fills["symbol"] = ["X/USDT"] * 3
    fills["timestamp"] = [100, 200, 300]
    fills["side"] = ["sell", "sell", "buy"]
    fills["tag"] = ["gate:stop", "gate:take_profit", "gate:exit"]
    plain = trades.drop(columns=[c for c in ("exit_reason",) if c in trades.columns])
    assert exit_reasons(plain, fills) == ["stop-loss", "take-profit", "signal"]
    tagged = plain.assign(exit_reason=["gap", "stop", "exit"])
    assert exit_reasons(tagged, None) == ["gap", "stop-loss", "signal"]
    one_day = daily_risk(np.array([0], dtype=np.int64), np.array([1.0]), 1.0)
    assert math.isnan(one_day["sharpe_daily"])  # undefined with a single daily return


def test_gaps_and_checkpoints_are_listed_in_the_report(tmp_path: Path) -> None:
    candles = {"A/USDT": _falling(2, 0.1, 3)}
    ts = candles["A/USDT"].timestamp
    hold = buy_and_hold(ts, candles, 1_000.0)
    gap = {
        "symbol": "A/USDT",
        "timeframe": "5m",
        "last_before": "2024-01-01 10:00",
        "first_after": "2024-01-02 10:00",
        "last_before_ms": int(ts[10]),
        "first_after_ms": int(ts[20]),
        "missing_bars": 287,
    }
    checkpoint = {
        "path": "online/cnn.pt",
        "model": "pivot_cnn",
        "learned_until": "2024-02-01T00:00:00Z",
        "status": "skipped",
        "reason": "learned after the run's first bar",
    }
    path = write_orchestrator_report(
        tmp_path / "r.html", hold, candles, pd.DataFrame(), gaps=[gap], checkpoints=[checkpoint]
    )
    text = path.read_text(encoding="utf-8")
    assert "1 gap(s) in the candles" in text and ">missing bars</th>" in text
    assert ">287</td>" in text and "last before ms" not in text
    assert "learned after the run&#x27;s first bar" in text and ">skipped</td>" in text
