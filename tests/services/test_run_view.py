"""The finished-run views over a small real data dir: discovery, every query, read-only
commands and the errors for what does not exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pivotal.core.errors import DataError, OperationalError
from pivotal.data.duckdb_store import STORE_FILE_NAME
from pivotal.services.discover import views_from_data_dir, views_from_results
from pivotal.services.run_view import RunView, SessionView
from pivotal.services.schemas import (
    EntriesCommand,
    ForceExitCommand,
    KillCommand,
    ProcessCommand,
    ThresholdsCommand,
)
from pivotal.services.view import NodeView, NotFound, QueryError, ReadOnly, Services


@pytest.fixture(scope="module")
def views(data_dir: Path) -> dict[str, NodeView]:
    return {v.id: v for v in views_from_data_dir(data_dir)}


def test_discover_finds_the_run_the_report_and_the_session(views):
    assert set(views) == {"run-run-a", "orch", "run-paper"}
    assert isinstance(views["run-run-a"], RunView) and isinstance(views["run-paper"], SessionView)
    assert all(isinstance(v, NodeView) for v in views.values())
    Services(views.values())  # ids unique
    for v in views.values():
        info = v.info()
        assert info.read_only and info.status == "finished" and info.symbols == ["BTC/USDT"]
        assert info.timeframes == ["1m", "5m", "1h"]
    assert views["run-paper"].info().kind == "paper"


def test_run_journal_run_rows(views):
    v = views["run-run-a"]
    decisions = v.decisions(limit=10)
    assert len(decisions) == 10 and decisions[-1].weights == {"pivot_cnn": 0.55, "dqn": 0.45}
    assert decisions[-1].p_buy is not None and decisions[-1].action in ("buy", "sell", "hold")
    assert [d.t for d in decisions] == sorted(d.t for d in decisions)
    assert len(v.fills()) == 4
    trades = v.trades()
    assert len(trades) == 2 and all(t.side == "long" for t in trades)
    fills = v.fills()
    assert trades[0].entry_price == fills[0].price and trades[0].exit_price == fills[1].price
    eq = v.equity(limit=100)
    assert len(eq.t) == 100 and eq.t == sorted(eq.t)
    assert max(eq.drawdown_pct) == 0.0 and min(eq.drawdown_pct) < 0
    summary = v.summary()
    assert summary.closed_trades == 2 and summary.pnl == pytest.approx(eq.equity[-1] - 100_000.0)
    assert any(a.level == "error" and a.kind == "risk_circuit_breaker" for a in v.alerts())
    assert v.risk().metrics["max_drawdown_pct"] < 0
    candles = v.candles("BTCUSDT", "1m", limit=600)
    assert {m.kind for m in candles.markers} == {"fill", "decision"}
    assert all(candles.bars.t[0] <= m.t < candles.bars.t[-1] + 60_000 for m in candles.markers)
    names = {m.name for m in v.models()}
    assert names == {"pivot_cnn", "dqn"}


def test_session_rows(views):
    v = views["run-paper"]
    assert len(v.fills()) == 2 and [f.side for f in v.fills()] == ["buy", "sell"]
    assert [o.status for o in v.orders()] == ["filled", "filled"] and v.orders(open_only=True) == []
    assert len(v.trades()) == 1
    assert {b.asset for b in v.balances()} == {"USDT"}
    assert v.positions() == []
    assert len(v.equity().t) == 40
    kinds = {a.kind for a in v.alerts()}
    assert {"session_start", "session_stop", "risk_refused", "reconcile"} <= kinds
    assert [d.action for d in v.decisions(limit=1000)].count("1 action") == 2
    assert v.candles("BTC/USDT", "5m", limit=50).bars.t


def test_report_view_controls_report_the_run_thresholds(views):
    controls = views["orch"].controls()
    assert (controls.buy_threshold, controls.sell_threshold, controls.min_confidence) == (
        0.55,
        0.5,
        0.3,
    )
    assert controls.read_only and not any(controls.processes.values())
    assert views["orch"].summary().closed_trades == 1


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        ("set_thresholds", ThresholdsCommand(buy_threshold=0.6)),
        ("set_entries", EntriesCommand(stopped=True)),
        ("force_exit", ForceExitCommand(symbol="BTC/USDT")),
        ("kill", KillCommand(confirm=True)),
        ("set_process", ProcessCommand(process="trading", enabled=False)),
    ],
)
def test_commands_are_refused_with_how_to_steer_a_running_node(views, call, arg):
    for v in views.values():
        with pytest.raises(
            ReadOnly, match=r"finished run.*pivotal run RUN_FILE --mode paper --serve"
        ):
            getattr(v, call)(arg)


def test_query_errors(views):
    v = views["run-run-a"]
    with pytest.raises(NotFound, match="symbols are: BTC/USDT"):
        v.candles("ETH/USDT", "1m")
    with pytest.raises(NotFound, match="timeframes are: 1m, 5m, 1h"):
        v.candles("BTC/USDT", "1d")
    with pytest.raises(QueryError, match="limit"):
        v.candles("BTC/USDT", "1m", limit=0)
    with pytest.raises(QueryError, match="limit"):
        v.decisions(limit=0)
    with pytest.raises(NotFound):
        v.decisions(symbol="ETHUSDT")


def test_views_from_results(data_dir: Path):
    (run,) = views_from_results(["run-a"], data_dir)
    assert run.info().source == "run journal: run-a"
    (report,) = views_from_results([data_dir / "reports" / "orch.json"], None)
    assert report.candles("BTC/USDT", "1h", limit=10).bars.t  # the store beside the report
    (session,) = views_from_results([data_dir / "trading" / "run.paper.journal"], data_dir)
    assert session.info().kind == "paper"
    with pytest.raises(NotFound, match=r"no run 'nope'.*runs: run-a.*orch.json.*run.paper.journal"):
        views_from_results(["nope"], data_dir)
    with pytest.raises(DataError, match="not a pivotal report"):
        views_from_results([data_dir / "reports" / "other.json"], data_dir)
    with pytest.raises(NotFound, match="without --data-dir"):
        views_from_results(["run-a"], None)


def test_session_controls_come_from_the_run_file_then_the_commands(views):
    v = views["run-paper"]
    controls = v.controls()
    # run file: buy 0.6 (the gate's defaults for the rest), then the journaled command: 0.7
    assert controls.buy_threshold == 0.7
    assert controls.sell_threshold == 0.5 and controls.min_confidence == 0.0
    assert v.risk().limits["fraction"] == 0.25
    assert "run file" in v.info().source


def test_models_and_pivot_predictions_of_the_inference_history(views):
    v = views["run-run-a"]
    states = {m.name: m for m in v.models()}
    assert states["pivot_cnn"].version == 3 and states["pivot_cnn"].gate_weight == 0.55
    assert states["dqn"].action == "BUY" and states["dqn"].output == {"q_values.BUY": 0.1}
    candles = v.candles("BTC/USDT", "1m", limit=1500)
    predictions = candles.predictions
    assert {(p.level, p.kind) for p in predictions} == {
        (1, "high"),
        (1, "low"),
        (2, "high"),
        (2, "low"),
    }
    for p in predictions:  # drawn from the last pivot of its level and kind known at made_t
        known = [
            m
            for m in candles.pivots
            if (m.level, m.kind) == (p.level, p.kind) and m.confirmed_t <= p.made_t
        ]
        assert (p.from_t, p.from_price) == (known[-1].t, known[-1].price)
        assert p.confidence == 0.6 and p.t > p.made_t
    # a strategy backtest in the same store shows no models' predictions
    assert views["orch"].models() == []


def test_cob_heatmap(views):
    cob = views["run-run-a"].cob("BTCUSDT", seconds=120)
    assert len(cob.t) == 120 and len(cob.bids) == 120 and len(cob.asks) == 120
    assert all(len(row) == len(cob.prices) for row in cob.bids)
    assert cob.prices == sorted(cob.prices) and sum(map(sum, cob.bids)) > 0
    assert set(cob.imbalance) == {"1s", "5s", "15s", "60s"} and len(cob.imbalance["60s"]) == 120
    with pytest.raises(QueryError, match="seconds"):
        views["run-run-a"].cob("BTC/USDT", seconds=0)


def test_a_store_held_by_a_running_writer_says_to_serve_from_the_node(tmp_path: Path):
    root = tmp_path / "busy"
    root.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "con.execute('CREATE TABLE t (x INT)'); print('ready', flush=True); sys.stdin.read()",
            str(root / STORE_FILE_NAME),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(OperationalError, match=r"running pivotal process.*--serve"):
            views_from_data_dir(root)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_missing_data_dir_and_empty_dir(tmp_path: Path):
    with pytest.raises(OperationalError, match="no data dir at"):
        views_from_data_dir(tmp_path / "absent")
    with pytest.raises(OperationalError, match="holds no market store"):
        views_from_data_dir(tmp_path)


def test_a_reports_curve_ends_at_its_final_equity(data_dir: Path, tmp_path: Path) -> None:
    """A position still open at the end: the closed trades alone would miss its PnL (and the
    fees of its entry), so the summary and the equity end at the report's final equity."""
    import json

    from pivotal.services.run_rows import records_from_report

    report = json.loads((data_dir / "reports" / "orch.json").read_text(encoding="utf-8"))
    report["result"]["final_equity"] = 1_042.5  # closed trades: +10
    path = tmp_path / "open-at-end.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    rec = records_from_report(path)
    assert rec.equity_v[-1] == 1_042.5
    assert int(rec.equity_t[-1]) == report["result"]["metrics"]["end"]
    assert list(rec.equity_v[:-1]) == [1_000.0, 1_010.0]


def test_a_chart_shows_only_predictions_made_while_its_bars_ran() -> None:
    """A chart of another span (1s bars stored for an older month) would be stretched across
    months by a line to a prediction made now; it shows none."""
    from pivotal.services.model_rows import predictions_in_window
    from pivotal.services.schemas import PivotPrediction

    minute = 60_000
    bars = [i * minute for i in range(100, 200)]

    def made(at: int, ahead: int) -> PivotPrediction:
        return PivotPrediction(
            model="pivot_cnn", level=1, kind="high", from_t=bars[0], from_price=1.0,
            t=at + ahead, price=2.0, confidence=0.5, made_t=at,
        )  # fmt: skip

    inside = made(bars[50], 10 * minute)
    kept = predictions_in_window(
        [inside, made(bars[-1] + 1000 * minute, minute), made(bars[0] - minute, minute),
         made(bars[60], 10_000 * minute)],
        bars,
        minute,
    )  # fmt: skip
    assert kept == [inside]
    assert predictions_in_window([inside], [], minute) == []
