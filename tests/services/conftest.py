"""A small real data dir for the finished-run views: a market store with planted candles, a
run in the run journal, a report JSON and a paper session journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.cob import synthetic_cob
from pivotal.core.journal import NewEntry
from pivotal.data.duckdb_store import STORE_FILE_NAME, DuckDBStore
from pivotal.data.inference_history import InferenceHistory
from pivotal.data.inference_record import InferenceRecord
from pivotal.data.order_journal import SqliteOrderJournal
from pivotal.data.run_journal import RunJournal
from pivotal.testing.orchestrator import GRID_START
from pivotal.testing.planted import planted_candles
from pivotal.testing.training import store_candles

MINUTE = 60_000
BARS = 6_000


def _decision(t: int, action: str) -> dict:
    p = {"BUY": [0.7, 0.1, 0.2], "SELL": [0.1, 0.7, 0.2], "HOLD": [0.2, 0.2, 0.6]}[action]
    return {
        "timestamp": t,
        "kind": "model_decision",
        "symbol": "BTC/USDT",
        "action": action,
        "confidence": max(p),
        "probabilities": p,
        "gate": "vote",
        "reason": f"{action}: test",
        "skipped": {},
        "contributions": [
            ["pivot_cnn", action, 0.6, 0.55, *p, 0.3],
            ["dqn", action, 0.5, 0.45, *p, 0.2],
        ],
    }


def _fill(t: int, side: str, qty: float, price: float) -> dict:
    return {
        "timestamp": t,
        "kind": "fill",
        "symbol": "BTC/USDT",
        "side": side,
        "quantity": qty,
        "price": price,
        "fee": qty * price * 0.001,
        "client_order_id": f"c{t}",
        "venue_order_id": None,
        "venue_trade_id": None,
    }


def _order(
    cid: str, side: str, qty: float, status: str, t: int, filled: float, price: float | None
) -> dict:
    request = {
        "symbol": "BTC/USDT",
        "side": side,
        "type": "market",
        "quantity": qty,
        "equity_fraction": None,
        "limit_price": None,
        "stop_price": None,
        "reduce_only": False,
        "time_in_force": "gtc",
        "expire_at_ms": None,
        "client_order_id": cid,
        "tag": "orchestrator:entry",
    }
    return {
        "request": request,
        "client_order_id": cid,
        "order_id": cid,
        "status": status,
        "created_ms": t,
        "updated_ms": t,
        "quantity": qty,
        "filled_quantity": filled,
        "average_fill_price": price,
        "fees_paid": 0.0,
        "reason": "accepted",
        "venue_order_id": cid,
    }


def _session_entries(candles) -> list[NewEntry]:
    t0 = int(candles.timestamp[-300])
    buy_t, sell_t = t0 + 10 * MINUTE, t0 + 100 * MINUTE
    buy_p, sell_p = float(candles.close[-290]), float(candles.close[-200])
    out = [
        NewEntry(
            t0,
            "session",
            {"event": "start", "mode": "paper", "venue": "binance", "symbols": ["BTC/USDT"]},
        ),
        NewEntry(
            t0,
            "reconcile",
            {
                "field": "balance",
                "asset": "USDT",
                "local": None,
                "venue": {"free": 100000.0, "locked": 0.0},
                "action": "adopted",
                "resolved": True,
                "message": "balance adopted",
            },
        ),
    ]
    for i in range(0, 200, 5):
        out.append(
            NewEntry(
                t0 + i * MINUTE,
                "decision",
                {
                    "timestamp": t0 + i * MINUTE,
                    "kind": "decision",
                    "symbol": "BTC/USDT",
                    "bar_index": i,
                    "actions": int(i in (10, 100)),
                    "source": "orchestrator",
                },
                symbol="BTC/USDT",
            )
        )
        out.append(NewEntry(t0 + i * MINUTE, "equity", {"equity": 100000.0 + i}))
    for cid, side, t, p in (("b1", "buy", buy_t, buy_p), ("s1", "sell", sell_t, sell_p)):
        req = _order(cid, side, 0.5, "new", t, 0.0, None)["request"]
        out += [
            NewEntry(
                t,
                "intent",
                {"request": req, "order_id": cid},
                client_order_id=cid,
                symbol="BTC/USDT",
            ),
            NewEntry(t, "submitted", {"attempt": 1}, client_order_id=cid, symbol="BTC/USDT"),
            NewEntry(
                t,
                "order",
                {"order": _order(cid, side, 0.5, "filled", t, 0.5, p)},
                client_order_id=cid,
                symbol="BTC/USDT",
            ),
            NewEntry(
                t,
                "fill",
                {
                    "fill": {
                        "order_id": cid,
                        "client_order_id": cid,
                        "symbol": "BTC/USDT",
                        "side": side,
                        "quantity": 0.5,
                        "price": p,
                        "fee": 0.5 * p * 0.001,
                        "liquidity": "taker",
                        "timestamp": t,
                        "tag": "",
                        "venue_order_id": cid,
                        "venue_trade_id": cid,
                    }
                },
                client_order_id=cid,
                symbol="BTC/USDT",
            ),
        ]
    out.append(
        NewEntry(
            sell_t + MINUTE,
            "alert",
            {"level": "warning", "message": "test alert", "record": {"kind": "risk_refused"}},
            symbol="BTC/USDT",
        )
    )
    command = {"command": "thresholds", "args": {"buy_threshold": 0.7}, "source": "api"}
    out.append(NewEntry(sell_t + MINUTE, "command", {"phase": "request", **command}))
    out.append(
        NewEntry(
            sell_t + MINUTE,
            "command",
            {"phase": "result", "command": "thresholds", "accepted": True, "detail": "applied"},
        )
    )
    out.append(NewEntry(sell_t + 2 * MINUTE, "session", {"event": "stop", "reason": "test"}))
    return out


def inference_record(t: int) -> InferenceRecord:
    """An orchestrator step with the PivotCNN's predicted pivots of levels 1 and 2."""
    points = [
        {"level": lv, "kind": k, "price": 100.0 + lv, "time": t + lv * 5 * MINUTE}
        for lv in (1, 2)
        for k in ("high", "low")
    ]
    contributions = [
        {"model": "pivot_cnn", "action": "HOLD", "confidence": 0.6, "weight": 0.55},
        {"model": "dqn", "action": "BUY", "confidence": 0.5, "weight": 0.45},
    ]
    return InferenceRecord(
        symbol="BTC/USDT",
        timestamp=t,
        action="HOLD",
        confidence=0.6,
        decision={"contributions": contributions, "versions": {"pivot_cnn": 3, "dqn": 0}},
        outputs={
            "pivot_cnn": {
                "action": "HOLD",
                "confidence": 0.6,
                "predictions": {"pivot_points": points, "probabilities": {"up": 0.2}},
            },
            "dqn": {"action": "BUY", "confidence": 0.5, "predictions": {"q_values": {"BUY": 0.1}}},
        },
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("services") / "data"
    root.mkdir()
    candles = planted_candles(BARS, seed=3, start_time=GRID_START)
    store = store_candles(root / STORE_FILE_NAME, candles, streams=("5m", "1h"))
    try:
        with RunJournal(
            store, "run-a", meta={"mode": "replay", "symbols": ["BTC/USDT"]}
        ) as journal:
            for i in range(BARS - 500, BARS):
                t = int(candles.timestamp[i]) + MINUTE
                journal.equity(
                    t, 100_000.0 + (i - BARS + 500) * 2.0 - (50.0 if i % 7 == 0 else 0.0)
                )
                if i % 10 == 0:
                    journal.decision(_decision(t, ("BUY", "HOLD", "SELL")[(i // 10) % 3]))
            for i, side in (
                (BARS - 400, "buy"),
                (BARS - 300, "sell"),
                (BARS - 200, "buy"),
                (BARS - 100, "sell"),
            ):
                record = _fill(
                    int(candles.timestamp[i]) + MINUTE, side, 1.0, float(candles.close[i])
                )
                journal.event(record)
                journal.fill(record)
            journal.event(
                {
                    "timestamp": int(candles.timestamp[-1]),
                    "kind": "risk_circuit_breaker",
                    "symbol": "BTC/USDT",
                    "message": "drawdown",
                }
            )
        last = int(candles.timestamp[-1]) + MINUTE
        store.write_cob("binance", "BTC/USDT", synthetic_cob(400, start=last - 400_000), "test")
        history = InferenceHistory(store)
        history.append([inference_record(last - 30 * MINUTE), inference_record(last)])
    finally:
        store.close()
    (root / "trading").mkdir()
    with SqliteOrderJournal(root / "trading" / "run.paper.journal") as session:
        session.append(_session_entries(candles))
    (root / "reports").mkdir()
    (root / "reports" / "run.yaml").write_text(
        "mode: paper\nsymbols: [BTC/USDT]\norchestrator:\n  gate: {buy_threshold: 0.6}\n"
        "settings:\n  risk: {fraction: 0.25}\n",
        encoding="utf-8",
    )
    report = {
        "format": "pivotal-run",
        "version": 1,
        "run": {
            "exchange": "binance",
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "orchestrator": {
                "gate": {"buy_threshold": 0.55, "sell_threshold": 0.5, "min_confidence": 0.3}
            },
        },
        "result": {
            "format": "pivotal-backtest",
            "initial_cash": 1000.0,
            "final_equity": 1010.0,
            "metrics": {"start": int(candles.timestamp[0]), "end": int(candles.timestamp[-1])},
            "settings": {},
            "trades": [
                {
                    "symbol": "BTC/USDT",
                    "side": "long",
                    "entry_time_ms": int(candles.timestamp[10]),
                    "exit_time_ms": int(candles.timestamp[20]),
                    "entry_price": 100.0,
                    "exit_price": 101.0,
                    "size": 10.0,
                    "pnl": 10.0,
                    "fees": 0.0,
                    "return_pct": 1.0,
                }
            ],
            "open_trades": [],
        },
        "decisions": [],
        "events": [],
    }
    (root / "reports" / "orch.json").write_text(json.dumps(report), encoding="utf-8")
    (root / "reports" / "other.json").write_text('{"hello": 1}', encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def candles_of_dir(data_dir: Path):
    with DuckDBStore(data_dir / STORE_FILE_NAME, read_only=True) as store:
        from pivotal.data.series import SeriesKey

        return {
            tf: store.read_candles(SeriesKey("binance", "BTC/USDT", tf))
            for tf in ("1m", "5m", "1h")
        }
