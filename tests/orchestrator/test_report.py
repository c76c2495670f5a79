"""The HTML report of an orchestrated backtest.

The results come from real (small) backtests of ``sma_cross`` on planted candles; the
decision frames, accuracy and events are synthetic and seeded. The checks read the figures
back out of the written page (the JSON passed to ``Plotly.newPlot``).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.api import backtest
from pivotal.backtest.metrics import METRIC_LABELS
from pivotal.backtest.result import BacktestResult
from pivotal.core.candles import Candles
from pivotal.orchestrator.report import (
    MAX_TABLE_ROWS,
    expert_names,
    thin_positions,
    write_orchestrator_report,
)
from pivotal.testing.planted import planted_candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

SYMBOLS = ("BTC/USDT", "ETH/USDT")
MODELS = ("pivot_cnn", "dqn")
MS_MIN = 60_000


# --- inputs ------------------------------------------------------------------------------


def make_candles(n: int) -> dict[str, Candles]:
    return {
        SYMBOLS[0]: planted_candles(n, seed=1),
        SYMBOLS[1]: planted_candles(n, seed=2, start_price=50.0),
    }


def run(candles: dict[str, Candles], strategy: str = "sma_cross") -> BacktestResult:
    params = {"fast": 5, "slow": 20} if strategy == "sma_cross" else None
    return backtest(candles, strategy, params, timeframe="1m")


def make_decisions(
    candles: dict[str, Candles], *, seed: int = 0, every: int = 1, trade_rate: float = 0.05
) -> pd.DataFrame:
    """One decision per ``every`` bars and symbol, at the bar's close; about ``trade_rate`` of
    them BUY or SELL, the rest HOLD; two experts with weights summing to 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for symbol, series in candles.items():
        for t in series.timestamp[20::every] + MS_MIN:
            w = float(rng.uniform(0.2, 0.8))
            votes = rng.dirichlet([1.0, 1.0, 3.0], size=2)
            p = w * votes[0] + (1 - w) * votes[1]
            draw = rng.uniform()
            action = "BUY" if draw < trade_rate / 2 else "SELL" if draw < trade_rate else "HOLD"
            k = ("BUY", "SELL", "HOLD").index(action)
            row = {
                "timestamp": int(t),
                "symbol": symbol,
                "action": action,
                "confidence": float(p[k]),
                "p_buy": float(p[0]),
                "p_sell": float(p[1]),
                "p_hold": float(p[2]),
                "gate": "vote",
                "reason": f"{action} <threshold> met" if action != "HOLD" else "below threshold",
            }
            for model, weight, vote in zip(MODELS, (w, 1 - w), votes, strict=True):
                row[f"w_{model}"] = weight
                row[f"share_{model}"] = weight * float(vote[k])
                row[f"vote_{model}"] = ("BUY", "SELL", "HOLD")[int(np.argmax(vote))]
            rows.append(row)
    return pd.DataFrame(rows)


def make_accuracy(candles: dict[str, Candles], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {
            "timestamp": int(t),
            "model": model,
            "symbol": symbol,
            "accuracy": float(rng.uniform(0.3, 0.7)),
            "n": 50,
        }
        for model in MODELS
        for symbol, series in candles.items()
        for t in series.timestamp[60::20]
    ]
    return pd.DataFrame(rows)


def make_events(start: int) -> list[dict[str, Any]]:
    kinds = ("promoted", "rolled_back", "skipped", "timeout", "isolated", "fallback")
    return [
        {
            "timestamp": start + MS_MIN * (100 + 37 * i),
            "kind": kind,
            "symbol": SYMBOLS[i % 2],
            "model": MODELS[i % 2],
            "message": f"{kind} number {i}",
        }
        for i, kind in enumerate(kinds)
    ]


@pytest.fixture(scope="module")
def market() -> dict[str, Candles]:
    return make_candles(600)


@pytest.fixture(scope="module")
def results(market: dict[str, Candles]) -> tuple[BacktestResult, BacktestResult]:
    return run(market), run(market, "buy_and_hold")


# --- reading the page back ---------------------------------------------------------------


def figures(path: Path) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """div id → (traces, layout) of every ``Plotly.newPlot`` call in the page."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    found = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', text):
        traces, end = decoder.raw_decode(text, match.end())
        layout, _ = decoder.raw_decode(text, re.compile(r",\s*").match(text, end).end())
        found[match.group(1)] = (traces, layout)
    return found


def values(data: Any) -> np.ndarray:
    """A trace array as numpy (Plotly writes numeric numpy arrays as base64 typed arrays)."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
    return np.asarray(data)


def trace(found: dict, name: str) -> dict[str, Any]:
    matches = [t for traces, _ in found.values() for t in traces if t.get("name") == name]
    assert len(matches) == 1, f"{len(matches)} traces named {name!r}"
    return matches[0]


def iso(ms: np.ndarray) -> list[str]:
    return list(np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), "m"))


# --- the page ----------------------------------------------------------------------------


def test_report_shows_symbols_metrics_benchmark_models_and_decisions(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, held = results
    decisions = make_decisions(market)
    path = write_orchestrator_report(
        tmp_path / "report.html",
        result,
        market,
        decisions,
        accuracy=make_accuracy(market),
        events=make_events(int(market[SYMBOLS[0]].timestamp[0])),
        benchmark={"buy and hold": held},
        data_note="planted candles, seeds 1 and 2",
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script src" not in text and "Plotly.newPlot" in text  # offline: js embedded
    assert "planted candles, seeds 1 and 2" in text
    for symbol in SYMBOLS:
        assert f"<h2>{symbol}</h2>" in text
    # backtesting.py's geometric volatility and Sharpe are replaced by the daily-return ones
    replaced = {METRIC_LABELS["volatility_ann_pct"], METRIC_LABELS["sharpe"]}
    for label in set(METRIC_LABELS.values()) - replaced:
        assert html.escape(label) in text
    assert "Sharpe ratio (daily returns)" in text
    assert "<th>buy and hold</th>" in text and "<th>strategy</th>" in text
    found = figures(path)
    for i, symbol in enumerate(SYMBOLS):
        traces, _ = found[f"pivotal-orchestrator-symbol-{i}"]
        shares = {t["name"]: values(t["y"]) for t in traces if t.get("stackgroup") == "shares"}
        assert list(shares) == list(MODELS)
        rows = decisions[decisions.symbol == symbol]
        np.testing.assert_allclose(sum(shares.values()), rows.confidence)  # stacked = confidence
    for symbol in SYMBOLS:
        for action, shape in (("BUY", "triangle-up"), ("SELL", "triangle-down")):
            expected = decisions[(decisions.symbol == symbol) & (decisions.action == action)]
            assert len(expected) > 0
            markers = trace(found, f"{symbol} every {action}")  # every decision, hidden
            assert markers["marker"]["symbol"] == f"{shape}-open"
            assert markers["visible"] == "legendonly"
            assert list(markers["x"]) == iso(expected["timestamp"].to_numpy())
            changes = trace(found, f"{symbol} {action}")  # the changes of action, shown
            assert changes.get("visible", True) is True
            assert set(changes["x"]) <= set(markers["x"]) and len(changes["x"]) >= 1
            # drawn at the last close known at the decision time (the bar that just closed)
            series = market[symbol]
            at = np.searchsorted(series.timestamp, expected["timestamp"].to_numpy()) - 1
            np.testing.assert_allclose(values(markers["y"]), series.close[at])
            first = markers["text"][0]
            assert "confidence" in first and "&lt;threshold&gt;" in first  # reason, escaped
            for model in MODELS:
                assert f"{model}: " in first and "weight" in first
    equity = trace(found, "buy and hold")
    np.testing.assert_allclose(values(equity["y"]), held.equity)
    assert trace(found, "pivot_cnn · BTC/USDT")  # accuracy line per model and symbol
    assert trace(found, "promoted")["marker"]["symbol"] == "star"
    assert trace(found, "timeout")["marker"]["symbol"] == "x"
    assert f"{len(result.trades):,} closed trades" in text


def test_same_inputs_give_the_same_bytes(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    decisions = make_decisions(market, every=5)
    a = write_orchestrator_report(tmp_path / "a.html", result, market, decisions)
    b = write_orchestrator_report(tmp_path / "b.html", result, market, decisions)
    assert a.read_bytes() == b.read_bytes()


def test_downsampling_keeps_every_buy_and_sell(tmp_path: Path) -> None:
    market = make_candles(3_000)
    result = run(market)
    decisions = make_decisions(market, trade_rate=0.02, seed=3)
    max_points = 300
    path = write_orchestrator_report(
        tmp_path / "r.html", result, market, decisions, max_points=max_points
    )
    found = figures(path)
    for symbol in SYMBOLS:
        rows = decisions[decisions.symbol == symbol]
        acted = rows[rows.action != "HOLD"]
        for action in ("BUY", "SELL"):
            part = rows[rows.action == action]
            every = trace(found, f"{symbol} every {action}")["x"]
            assert list(every) == iso(part.timestamp.to_numpy())
        candles = next(
            t for traces, _ in found.values() for t in traces if t["type"] == "candlestick"
        )
        assert len(candles["x"]) <= max_points
        lines = [t for traces, _ in found.values() for t in traces if t.get("name") == "p_buy"]
        line = lines[SYMBOLS.index(symbol)]
        assert len(line["x"]) < len(rows)  # thinned
        assert len(line["x"]) <= max_points + len(acted) + 1
        assert set(iso(acted.timestamp.to_numpy())) <= set(line["x"])  # every BUY/SELL kept
    equity = trace(found, "strategy")
    assert len(equity["x"]) <= max_points
    assert "resampled to" in path.read_text(encoding="utf-8")


def test_thin_positions() -> None:
    ts = np.arange(1_000, dtype=np.int64) * MS_MIN
    keep = np.zeros(1_000, dtype=bool)
    keep[[3, 4, 5, 777]] = True
    np.testing.assert_array_equal(thin_positions(ts[:50], keep[:50], 100), np.arange(50))
    at = thin_positions(ts, keep, 100)
    assert len(at) <= 100 + 4
    assert {3, 4, 5, 777} <= set(at.tolist())
    assert at[-1] == 999 and np.all(np.diff(at) > 0)  # the last point, in order
    with pytest.raises(ValueError, match="one per row"):
        thin_positions(ts, keep[:10], 100)
    with pytest.raises(ValueError, match="sorted"):
        thin_positions(ts[::-1], keep, 100)


def test_renders_with_only_holds_and_no_accuracy_nor_events(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    decisions = make_decisions(market, trade_rate=0.0)
    path = write_orchestrator_report(tmp_path / "r.html", result, market, decisions)
    text = path.read_text(encoding="utf-8")
    assert text.count("No BUY or SELL decision for this symbol") == len(SYMBOLS)
    assert "No accuracy was recorded" in text
    assert "No fault or learning event was recorded" in text
    assert "buy and hold" in text  # the basket of the symbols when no benchmark is given
    names = [t.get("name") for traces, _ in figures(path).values() for t in traces]
    assert not any(str(n).endswith((" BUY", " SELL")) for n in names)


def test_renders_with_no_decisions_at_all(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    path = write_orchestrator_report(tmp_path / "r.html", result, market, pd.DataFrame())
    text = path.read_text(encoding="utf-8")
    assert "0 decisions by 0 model(s)" in text
    assert "No BUY or SELL decision" in text


def test_missing_parent_folders_are_created(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    target = tmp_path / "a" / "b" / "report.html"
    path = write_orchestrator_report(target, result, market, make_decisions(market, every=10))
    assert path == target and target.stat().st_size > 1_000_000  # plotly.js embedded


def test_thresholds_are_drawn_from_the_argument_or_the_settings(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    decisions = make_decisions(market, every=10)

    def lines(path: Path) -> list[float]:
        _, layout = figures(path)["pivotal-orchestrator-symbol-0"]
        return sorted(s["y0"] for s in layout.get("shapes", []))

    given = write_orchestrator_report(
        tmp_path / "a.html", result, market, decisions, thresholds=(0.6, 0.55)
    )
    assert lines(given) == [0.55, 0.6]
    settings = {**result.settings, "gate": {"buy_threshold": 0.7, "sell_threshold": 0.65}}
    configured = BacktestResult(
        initial_cash=result.initial_cash,
        timestamps=result.timestamps,
        equity=result.equity,
        trades=result.trades,
        open_trades=result.open_trades,
        fills=result.fills,
        metrics=result.metrics,
        settings=settings,
    )
    assert lines(write_orchestrator_report(tmp_path / "b.html", configured, market, decisions)) == [
        0.65,
        0.7,
    ]
    assert lines(write_orchestrator_report(tmp_path / "c.html", result, market, decisions)) == []


def test_events_are_counted_by_kind_and_listed_up_to_the_limit(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    start = int(market[SYMBOLS[0]].timestamp[0])
    events = [
        {"timestamp": start + i * MS_MIN, "kind": "skipped", "model": "dqn", "message": f"m{i}"}
        for i in range(MAX_TABLE_ROWS + 50)
    ]
    events.append({"kind": "promoted", "model": "pivot_cnn", "message": "no time"})
    path = write_orchestrator_report(
        tmp_path / "r.html", result, market, make_decisions(market, every=10), events=events
    )
    text = path.read_text(encoding="utf-8")
    assert f"<td>{MAX_TABLE_ROWS + 50:,}</td>" in text  # the count of 'skipped'
    assert f"{len(events):,} events; the first {MAX_TABLE_ROWS} in time order" in text
    assert f"m{MAX_TABLE_ROWS - 1}<" in text and f"m{MAX_TABLE_ROWS}<" not in text


def test_expert_names_in_order_of_appearance() -> None:
    frame = pd.DataFrame(columns=["timestamp", "w_b", "share_b", "vote_a", "w_", "reason"])
    assert expert_names(frame) == ["b", "a"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.drop(columns="action"), "lacks columns"),
        (lambda d: d.assign(action="CLOSE"), "BUY, SELL or HOLD"),
        (lambda d: d.assign(timestamp=np.nan), "missing timestamps"),
    ],
)
def test_bad_decisions_are_refused_and_an_existing_report_is_kept(
    tmp_path: Path,
    market: dict[str, Candles],
    results: tuple[BacktestResult, BacktestResult],
    edit,
    message: str,
) -> None:
    result, _ = results
    target = tmp_path / "r.html"
    target.write_text("previous report")
    decisions = edit(make_decisions(market, every=50))
    with pytest.raises(ValueError, match=message):
        write_orchestrator_report(target, result, market, decisions)
    assert target.read_text() == "previous report"


def test_bad_accuracy_events_and_benchmarks_are_refused(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    result, _ = results
    decisions = make_decisions(market, every=50)
    percent = make_accuracy(market).assign(accuracy=55.0)
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        write_orchestrator_report(tmp_path / "r.html", result, market, decisions, percent)
    with pytest.raises(ValueError, match="lacks columns"):
        write_orchestrator_report(
            tmp_path / "r.html", result, market, decisions, pd.DataFrame({"timestamp": [1]})
        )
    with pytest.raises(ValueError, match="no 'kind'"):
        write_orchestrator_report(
            tmp_path / "r.html", result, market, decisions, events=[{"message": "?"}]
        )
    with pytest.raises(TypeError, match="must be a BacktestResult"):
        write_orchestrator_report(
            tmp_path / "r.html", result, market, decisions, benchmark={"x": 1.0}
        )
    with pytest.raises(ValueError, match="max_points"):
        write_orchestrator_report(tmp_path / "r.html", result, market, decisions, max_points=1)
    assert not (tmp_path / "r.html").exists()


def test_real_data_report(tmp_path: Path) -> None:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    market = {}
    for base in ("BTC", "ETH"):
        frame = pd.read_parquet(data / "ohlcv" / "binance-spot" / "1h" / f"{base}_USDT-1h.parquet")
        market[f"{base}/USDT"] = Candles.from_frame(frame.tail(800).reset_index(drop=True))
    result = backtest(market, "sma_cross", {"fast": 10, "slow": 30}, timeframe="1h")
    held = backtest(market, "buy_and_hold", timeframe="1h")
    decisions = make_decisions(market, every=1, seed=5)
    decisions["timestamp"] += 59 * MS_MIN  # 1h bars: the decision is at the bar's close
    path = write_orchestrator_report(
        tmp_path / "r.html",
        result,
        market,
        decisions,
        accuracy=make_accuracy(market),
        benchmark={"buy and hold": held},
        data_note="binance-spot 1h, last 800 bars",
    )
    found = figures(path)
    for symbol in market:
        part = decisions[(decisions.symbol == symbol) & (decisions.action == "BUY")]
        markers = trace(found, f"{symbol} every BUY")
        assert len(markers["x"]) == len(part)
        assert np.all(np.isfinite(values(markers["y"])))


def test_trade_rows_have_one_cell_per_header_and_the_exit_reason_in_words(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    """Regression: each trade row had one cell more than the header (the raw exit_reason and
    its words), so the words sat in an unlabelled column."""
    result, _ = results
    assert len(result.trades) > 0
    page = write_orchestrator_report(
        tmp_path / "r.html", result, market, make_decisions(market)
    ).read_text()
    trades = page.split("<h2>Trades</h2>", 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", trades)
    rows = re.findall(r"<tr>(.*?)</tr>", trades.split("<tbody>", 1)[1])
    assert headers[0] == "#" and headers[-1] == "Exit reason"
    assert len(rows) == min(len(result.trades), MAX_TABLE_ROWS)
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert len(cells) == len(headers)
        assert cells[-1] in {"signal", "signal (reversal)", "stop-loss", "end of data", "gap"}


@pytest.mark.slow
def test_headless_browser_draws_the_page(
    tmp_path: Path, market: dict[str, Candles], results: tuple[BacktestResult, BacktestResult]
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if browser is None:
        pytest.skip("chromium is not installed")
    result, held = results
    path = write_orchestrator_report(
        tmp_path / "r.html",
        result,
        market,
        make_decisions(market),
        accuracy=make_accuracy(market),
        events=make_events(int(market[SYMBOLS[0]].timestamp[0])),
        benchmark={"buy and hold": held},
    )
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1400,2400",
            "--virtual-time-budget=15000",
            path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image_module = pytest.importorskip("PIL.Image")
    image = np.asarray(image_module.open(shot).convert("RGB"), dtype=np.int16)
    assert image.shape[:2] == (2400, 1400)
    # drawn charts: many distinct colours, and both the BUY green and the SELL red appear
    colours = np.unique(image.reshape(-1, 3) // 8, axis=0)
    assert len(colours) > 200
    near = lambda rgb: np.any(np.all(np.abs(image - np.array(rgb)) < 40, axis=-1))  # noqa: E731
    assert near((0x2C, 0xA0, 0x2C)) and near((0xD6, 0x27, 0x28))
