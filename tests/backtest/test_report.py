"""The HTML report and the JSON export of a backtest result.

The results are built here from arrays (seeded), independent of any engine.
"""

from __future__ import annotations

import json
import math
import os
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io
import pytest

from pivotal.backtest import export, report
from pivotal.backtest.export import TRADE_KEYS, read_json, to_json_dict, write_json
from pivotal.backtest.metrics import METRIC_LABELS, compute_metrics
from pivotal.backtest.report import build_figure, display_bucket_ms, verdict, write_html
from pivotal.backtest.result import FILL_COLUMNS, TRADE_COLUMNS, BacktestResult
from pivotal.core.candles import Candles

MS_MIN = 60_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC


# --- a result from arrays ----------------------------------------------------------------


def make_candles(n: int, seed: int, *, start: int = T0, step: int = MS_MIN, price: float = 100.0):
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[price, close[:-1]]
    wick = np.abs(rng.normal(0, 0.0005, n))
    return Candles(
        timestamp=start + step * np.arange(n, dtype=np.int64),
        open=open_,
        high=np.maximum(open_, close) * (1 + wick),
        low=np.minimum(open_, close) * (1 - wick),
        close=close,
        volume=rng.uniform(1, 10, n),
    )


def make_trades(candles: Candles, n_trades: int, seed: int, symbol: str) -> pd.DataFrame:
    """Non-overlapping round trips of one unit, alternating long and short, fee 0.1 %."""
    rng = np.random.default_rng(seed)
    n = len(candles)
    cuts = np.sort(rng.choice(np.arange(1, n - 1), size=2 * n_trades, replace=False))
    entry_bar, exit_bar = cuts[0::2], cuts[1::2]
    side = np.where(np.arange(n_trades) % 2 == 0, "long", "short")
    sign = np.where(side == "long", 1.0, -1.0)
    entry_price = candles.open[entry_bar]
    exit_price = candles.open[exit_bar]
    size = np.full(n_trades, 2.5)
    fees = size * (entry_price + exit_price) * 0.001
    pnl = sign * size * (exit_price - entry_price) - fees
    return pd.DataFrame(
        {
            "symbol": symbol,
            "side": side,
            "entry_time": candles.timestamp[entry_bar],
            "exit_time": candles.timestamp[exit_bar],
            "entry_bar": entry_bar.astype(np.int64),
            "exit_bar": exit_bar.astype(np.int64),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "size": size,
            "pnl": pnl,
            "fees": fees,
            "return_pct": pnl / (entry_price * size) * 100,
        },
        columns=list(TRADE_COLUMNS),
    )


def make_result(
    *,
    n: int = 3_000,
    n_trades: int = 12,
    symbols: tuple[str, ...] = ("BTC/USDT",),
    seed: int = 0,
    with_open: bool = True,
    metrics: dict | None = None,
    settings: dict | None = None,
) -> tuple[BacktestResult, dict[str, Candles]]:
    candles = {s: make_candles(n, seed + i, price=100.0 * (i + 1)) for i, s in enumerate(symbols)}
    trades = pd.concat(
        [make_trades(candles[s], n_trades, seed + 10 + i, s) for i, s in enumerate(symbols)],
        ignore_index=True,
    ).sort_values("exit_bar", kind="stable", ignore_index=True)
    cash = 10_000.0
    realized = np.zeros(n)
    np.add.at(realized, trades["exit_bar"].to_numpy(), trades["pnl"].to_numpy())
    equity = cash + np.cumsum(realized)
    open_trades = trades.iloc[:0].copy()
    if with_open:
        first = candles[symbols[0]]
        open_trades = pd.DataFrame(
            {
                "symbol": symbols[0],
                "side": ["long"],
                "entry_time": [int(first.timestamp[n - 5])],
                "exit_time": [int(first.timestamp[n - 1])],
                "entry_bar": [n - 5],
                "exit_bar": [n - 1],
                "entry_price": [float(first.open[n - 5])],
                "exit_price": [float(first.close[n - 1])],
                "size": [1.0],
                "pnl": [float(first.close[n - 1] - first.open[n - 5])],
                "fees": [0.1],
                "return_pct": [np.nan],
            },
            columns=list(TRADE_COLUMNS),
        )
        equity[n - 5 :] += first.close[n - 5 :] - first.open[n - 5] - 0.1
    fills = pd.DataFrame(
        {
            "timestamp": np.r_[trades["entry_time"], trades["exit_time"]],
            "bar": np.r_[trades["entry_bar"], trades["exit_bar"]],
            "symbol": np.r_[trades["symbol"], trades["symbol"]],
            "side": "buy",
            "quantity": np.r_[trades["size"], trades["size"]],
            "price": np.r_[trades["entry_price"], trades["exit_price"]],
            "fee": np.r_[trades["fees"] / 2, trades["fees"] / 2],
            "liquidity": "taker",
            "client_order_id": "x",
            "tag": "",
        },
        columns=list(FILL_COLUMNS),
    )
    ts = candles[symbols[0]].timestamp
    result = BacktestResult(
        initial_cash=cash,
        timestamps=ts,
        equity=equity,
        trades=trades,
        open_trades=open_trades,
        fills=fills,
        metrics=metrics or {},
        settings=settings or {"fast": 10, "slow": 30, "commission": 0.001},
        engine="vectorized",
    )
    return result, candles


class _HtmlChecker(HTMLParser):
    """Tags must nest and close properly (void elements excepted)."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check_html(text: str) -> _HtmlChecker:
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>")
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"unclosed tags {checker.stack}"
    assert {"html", "head", "body", "script", "table"} <= checker.tags
    return checker


def _ms(x) -> np.ndarray:
    """Plotly x strings (naive UTC ISO) back to int ms."""
    return np.asarray(x, dtype="datetime64[ms]").astype(np.int64)


def _entry_traces(figure) -> list:
    return [t for t in figure.data if t.name and "entries" in t.name]


# --- HTML --------------------------------------------------------------------------------


def test_html_report_is_valid_and_complete(tmp_path: Path) -> None:
    result, candles = make_result()
    path = write_html(result, candles, tmp_path / "out" / "report.html", title="SMA <cross> test")
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    _check_html(text)
    assert 'class="plotly-graph-div"' in text
    assert "Plotly.newPlot" in text
    assert "plotly.js v" in text.lower() or "plotly.js" in text  # the library is inlined
    assert "SMA &lt;cross&gt; test" in text  # the title is escaped
    assert f"{len(result.trades)} closed trades, 1 still open." in text
    assert "Return " in text and "buy-and-hold" in text and "Worst drawdown" in text
    for label in ("Sharpe ratio", "Max. drawdown [%]", "Win rate [%]"):
        assert label in text
    assert "USDT long entries" in text and "USDT exits" in text  # plotly writes / as \\u002f
    assert "&quot;fast&quot;: 10" in text  # settings block
    assert (path.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_one_marker_per_trade_entry_and_exit() -> None:
    result, candles = make_result(symbols=("BTC/USDT", "ETH/USDT"), n_trades=7)
    figure = build_figure(result, candles)
    for symbol in ("BTC/USDT", "ETH/USDT"):
        mine = result.trades[result.trades["symbol"] == symbol]
        opened = result.open_trades[result.open_trades["symbol"] == symbol]
        entries = [t for t in _entry_traces(figure) if t.name.startswith(symbol)]
        xs = np.sort(np.concatenate([_ms(t.x) for t in entries]))
        expected = np.sort(np.r_[mine["entry_time"], opened["entry_time"]])
        np.testing.assert_array_equal(xs, expected)
        exits = [t for t in figure.data if t.name == f"{symbol} exits"]
        assert len(exits) == 1
        np.testing.assert_array_equal(np.sort(_ms(exits[0].x)), np.sort(mine["exit_time"]))
        np.testing.assert_array_equal(np.sort(exits[0].y), np.sort(mine["exit_price"].to_numpy()))
        longs = [t for t in entries if "long" in t.name]
        assert all(
            t.marker.symbol == "triangle-up" and t.marker.color == report.LONG_COLOR for t in longs
        )
        shorts = [t for t in entries if "short" in t.name]
        assert all(t.marker.symbol == "triangle-down" for t in shorts) and shorts
    assert sum(t.type == "candlestick" for t in figure.data) == 2
    assert {t.name for t in figure.data} >= {"equity", "buy & hold", "drawdown [%]"}


def test_markers_hover_shows_price_size_and_pnl() -> None:
    result, candles = make_result(n_trades=3, with_open=False)
    figure = build_figure(result, candles)
    trace = next(t for t in figure.data if t.name == "BTC/USDT exits")
    assert "price %{y" in trace.hovertemplate and "size %{customdata[0]" in trace.hovertemplate
    assert "pnl %{customdata[1]" in trace.hovertemplate
    order = np.argsort(result.trades["exit_time"].to_numpy())
    np.testing.assert_array_equal(
        np.asarray(trace.customdata)[:, 1], result.trades["pnl"].to_numpy()[order]
    )


def test_failed_serialization_leaves_the_previous_report(tmp_path: Path, monkeypatch) -> None:
    result, candles = make_result()
    path = write_html(result, candles, tmp_path / "report.html", title="first")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("serialization failed")

    monkeypatch.setattr(plotly.io, "to_html", broken)
    with pytest.raises(RuntimeError, match="serialization failed"):
        write_html(result, candles, path, title="second")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_failed_rename_leaves_the_previous_report_and_no_temp_file(
    tmp_path: Path, monkeypatch
) -> None:
    result, candles = make_result()
    path = write_html(result, candles, tmp_path / "report.html", title="first")
    before = path.read_bytes()

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_html(result, candles, path, title="second")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_large_run_is_resampled_for_display_and_stays_small(tmp_path: Path) -> None:
    n = 200_000
    result, candles = make_result(n=n, n_trades=300, seed=3)
    path = write_html(result, candles, tmp_path / "big.html", title="200k bars")
    size = path.stat().st_size
    assert size < 10 * 1024 * 1024, f"report is {size / 1e6:.1f} MB"
    text = path.read_text(encoding="utf-8")
    assert "resampled to 15m for display" in text
    figure = build_figure(result, candles)
    candle = next(t for t in figure.data if t.type == "candlestick")
    assert len(candle.x) <= report.MAX_DISPLAY_BARS
    equity = next(t for t in figure.data if t.name == "equity")
    assert len(equity.x) == len(candle.x)
    # Fill markers keep their exact times and prices.
    entries = _entry_traces(figure)
    xs = np.sort(np.concatenate([_ms(t.x) for t in entries]))
    expected = np.sort(np.r_[result.trades["entry_time"], result.open_trades["entry_time"]])
    np.testing.assert_array_equal(xs, expected)
    # The deepest drawdown survives the display resampling.
    drawdown = next(t for t in figure.data if t.name == "drawdown [%]")
    eq = result.equity
    assert math.isclose(np.min(drawdown.y), -np.max(1 - eq / np.maximum.accumulate(eq)) * 100)


def test_display_resampling_matches_pandas_ohlc() -> None:
    n = 30_000  # above the limit: 3-minute buckets
    result, candles = make_result(n=n, n_trades=5)
    figure = build_figure(result, candles)
    candle = next(t for t in figure.data if t.type == "candlestick")
    frame = candles["BTC/USDT"].to_frame(datetime_index=True)
    expected = frame.resample("3min").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last"}
    )
    np.testing.assert_array_equal(_ms(candle.x), expected.index.as_unit("ms").asi8)
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(np.asarray(getattr(candle, name)), expected[name].to_numpy())
    equity = next(t for t in figure.data if t.name == "equity")
    last = pd.Series(result.equity, index=frame.index).resample("3min").last()
    np.testing.assert_array_equal(np.asarray(equity.y), last.to_numpy())


@pytest.mark.parametrize(
    ("period", "n_bars", "expected"),
    [
        (MS_MIN, 20_000, None),
        (MS_MIN, 20_001, 180_000),
        (MS_MIN, 200_000, 900_000),
        (3_600_000, 50_000, 14_400_000),
        (MS_MIN, 1_600_000, 7_200_000),
        (86_400_000, 40_000, 259_200_000),
        (604_800_000, 30_000, 2 * 604_800_000),
        (7 * MS_MIN, 30_000, 14 * MS_MIN),  # no round timeframe near: a multiple of 7m
    ],
)
def test_display_bucket(period: int, n_bars: int, expected: int | None) -> None:
    bucket = display_bucket_ms(period, n_bars, (n_bars - 1) * period)
    assert bucket == expected
    if bucket is not None:
        assert (n_bars - 1) * period // bucket + 1 <= report.MAX_DISPLAY_BARS
        assert bucket % period == 0


def test_benchmark_is_buy_and_hold_and_can_be_given() -> None:
    result, candles = make_result(symbols=("A/USDT", "B/USDT"))
    figure = build_figure(result, candles)
    bench = next(t for t in figure.data if t.name == "buy & hold")
    a, b = candles["A/USDT"].close, candles["B/USDT"].close
    np.testing.assert_allclose(bench.y, 10_000 * (a / a[0] + b / b[0]) / 2, rtol=1e-12)
    given = np.linspace(10_000, 12_000, len(result.timestamps))
    figure = build_figure(result, candles, benchmark_equity=given)
    bench = next(t for t in figure.data if t.name == "buy & hold")
    np.testing.assert_array_equal(bench.y, given)
    with pytest.raises(ValueError, match="one value per bar"):
        build_figure(result, candles, benchmark_equity=given[:-1])


def test_report_metrics_use_the_benchmark(tmp_path: Path) -> None:
    result, candles = make_result()
    close = candles["BTC/USDT"].close
    path = write_html(result, candles, tmp_path / "r.html", title="t")
    bh = (close[-1] - close[0]) / close[0] * 100
    assert f"buy-and-hold {bh:+.2f} %" in path.read_text(encoding="utf-8")


def test_report_uses_the_results_own_metrics_when_complete(tmp_path: Path) -> None:
    result, candles = make_result()
    own = compute_metrics(
        result.timestamps,
        result.equity,
        result.trades,
        initial_cash=result.initial_cash,
        fees_paid=result.fees_paid,
    )
    own["total_return_pct"] = 123.456
    result2, _ = make_result(metrics=own)
    text = write_html(result2, candles, tmp_path / "r.html", title="t").read_text()
    assert "Return +123.46 %" in text


def test_long_trade_tables_show_first_and_last_rows(tmp_path: Path) -> None:
    result, candles = make_result(n=6_000, n_trades=1_200, seed=5)
    text = write_html(result, candles, tmp_path / "r.html", title="t").read_text()
    _check_html(text)
    assert "1,200 closed trades; showing the first 500 and the last 500" in text
    assert "200 trades not shown" in text
    assert '<td class="text">1200</td>' in text and '<td class="text">501</td>' not in text


def test_report_without_candles_still_draws_equity(tmp_path: Path) -> None:
    result, _ = make_result(n=500, n_trades=3)
    text = write_html(result, {}, tmp_path / "r.html", title="t").read_text()
    _check_html(text)
    assert "no buy-and-hold benchmark" in text


def test_verdict_wording() -> None:
    base = {"max_drawdown_pct": -5.4, "n_trades": 42}
    beat = verdict({**base, "total_return_pct": 3.21, "buy_and_hold_return_pct": -1.05}, n_open=1)
    assert beat == (
        "Return +3.21 % against buy-and-hold -1.05 %: it beat buy-and-hold by 4.26 points. "
        "Worst drawdown -5.40 %. 42 closed trades, 1 still open."
    )
    trail = verdict({**base, "total_return_pct": -2.0, "buy_and_hold_return_pct": 8.0})
    assert "trailed buy-and-hold by 10.00 points" in trail
    alone = verdict({"total_return_pct": 1.0, "buy_and_hold_return_pct": math.nan, "n_trades": 1})
    assert alone == "Return +1.00 % (no buy-and-hold benchmark). 1 closed trade."


def test_unknown_trade_side_is_refused() -> None:
    result, candles = make_result(n_trades=2, with_open=False)
    trades = result.trades.assign(side="sideways")
    bad = BacktestResult(
        initial_cash=result.initial_cash,
        timestamps=result.timestamps,
        equity=result.equity,
        trades=trades,
        open_trades=result.open_trades,
        fills=result.fills,
    )
    with pytest.raises(ValueError, match="long/short"):
        build_figure(bad, candles)


# --- JSON --------------------------------------------------------------------------------


class _Mode(Enum):
    FAST = "fast"


def test_json_round_trip(tmp_path: Path) -> None:
    settings = {
        "fast": np.int64(10),
        "rate": np.float64(0.001),
        "path": Path("/tmp/x"),
        "pair": ("BTC/USDT", "ETH/USDT"),
        "mode": _Mode.FAST,
        "bad": float("nan"),
    }
    result, _ = make_result(settings=settings)
    path = write_json(result, tmp_path / "run" / "result.json")
    document = read_json(path)
    assert document == to_json_dict(result)
    assert document["settings"] == {
        "fast": 10,
        "rate": 0.001,
        "path": "/tmp/x",
        "pair": ["BTC/USDT", "ETH/USDT"],
        "mode": "fast",
        "bad": None,
    }
    assert document["engine"] == "vectorized"
    assert document["final_equity"] == result.final_equity
    assert document["initial_cash"] == 10_000.0
    assert document["equity"] == {
        "n_points": 3_000,
        "first_time_ms": T0,
        "last_time_ms": T0 + 2_999 * MS_MIN,
        "first_time": "2025-01-01T00:00:00.000Z",
        "last_time": "2025-01-03T01:59:00.000Z",
    }
    assert math.isclose(document["fees_paid"], result.trades["fees"].sum())


def test_json_trades_have_exactly_the_listed_keys() -> None:
    result, _ = make_result(n_trades=4)
    document = to_json_dict(result)
    assert len(document["trades"]) == 4 and len(document["open_trades"]) == 1
    expected_keys = {
        "entry_time",
        "exit_time",
        "entry_time_ms",
        "exit_time_ms",
        "side",
        "entry_price",
        "exit_price",
        "size",
        "pnl",
        "fees",
        "symbol",
        "return_pct",
        "exit_reason",
    }
    assert set(TRADE_KEYS) == expected_keys
    for record in document["trades"] + document["open_trades"]:
        assert set(record) == expected_keys
    first, row = document["trades"][0], result.trades.iloc[0]
    assert first["entry_time_ms"] == int(row["entry_time"])
    assert first["entry_time"] == (
        pd.Timestamp(int(row["entry_time"]), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.000Z")
    )
    assert first["side"] == "long" and first["symbol"] == "BTC/USDT"
    assert first["pnl"] == float(row["pnl"]) and type(first["exit_time_ms"]) is int
    assert document["open_trades"][0]["return_pct"] is None  # NaN -> null


def test_json_nan_and_inf_become_null(tmp_path: Path) -> None:
    metrics = dict.fromkeys(METRIC_LABELS, 1.0)
    metrics.update(sharpe=math.nan, sortino=math.inf, calmar=-math.inf, n_trades=3)
    result, _ = make_result(metrics=metrics)
    path = write_json(result, tmp_path / "r.json")
    raw = path.read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    document = read_json(path)
    assert document["metrics"]["sharpe"] is None
    assert document["metrics"]["sortino"] is None and document["metrics"]["calmar"] is None
    assert document["metrics"]["n_trades"] == 3 and document["metrics"]["sqn"] == 1.0


def test_json_computes_metrics_when_the_result_has_none() -> None:
    result, _ = make_result()
    document = to_json_dict(result)
    assert list(document["metrics"]) == list(METRIC_LABELS)
    assert document["metrics"]["n_trades"] == len(result.trades)
    assert document["metrics"]["buy_and_hold_return_pct"] is None


def test_json_with_no_trades() -> None:
    result, _ = make_result(n_trades=0, with_open=False)
    document = to_json_dict(result)
    assert document["trades"] == [] and document["open_trades"] == []
    assert document["metrics"]["win_rate_pct"] is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("metrics"), r"missing \['metrics'\]"),
        (lambda d: d.pop("trades") and d.pop("engine"), r"missing \['engine', 'trades'\]"),
        (lambda d: d.update(format="other"), "format 'other'"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d["equity"].pop("n_points"), r"equity summary is missing \['n_points'\]"),
        (lambda d: d["trades"][1].pop("pnl"), r"trades\[1\] is missing \['pnl'\]"),
        (lambda d: d.update(trades={}), "must be a list"),
    ],
)
def test_read_json_says_what_is_missing(tmp_path: Path, edit, message: str) -> None:
    result, _ = make_result()
    document = to_json_dict(result)
    edit(document)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=message):
        read_json(path)


def test_read_json_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a backtest"):
        read_json(tmp_path / "a.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(tmp_path / "b.json")


def test_failed_json_write_leaves_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    result, _ = make_result()
    path = write_json(result, tmp_path / "r.json")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise TypeError("not serializable")

    monkeypatch.setattr(export.json, "dumps", broken)
    with pytest.raises(TypeError):
        write_json(result, path)
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError, match="full"):
        write_json(result, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
