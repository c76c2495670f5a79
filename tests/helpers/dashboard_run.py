"""A finished run for the dashboard tests: a data dir whose store holds BTC/USDT and ETH/USDT
candles in 1s, 1m, 1h and 1d (planted, each series ending at the same time) and whose run
journal holds one run over both symbols with equity, decisions and fills (read by the real
:func:`pivotal.services.discover.views_from_data_dir`)."""

from __future__ import annotations

from pathlib import Path

from pivotal.data.duckdb_store import STORE_FILE_NAME, DuckDBStore
from pivotal.data.run_journal import RunJournal
from pivotal.data.series import SeriesKey
from pivotal.testing.orchestrator import GRID_START
from pivotal.testing.planted import planted_candles

SYMBOLS = (("BTC/USDT", 40_000.0), ("ETH/USDT", 2_000.0))
SERIES = (("1s", 1_000, 600), ("1m", 60_000, 600), ("1h", 3_600_000, 400), ("1d", 86_400_000, 200))
END = GRID_START + 1_440 * 60_000  # the runs' last bar ends here (a whole day after GRID_START)
RUN_ID = "dash-run"


def _decision(symbol: str, t: int, action: str) -> dict:
    p = {"BUY": [0.7, 0.1, 0.2], "SELL": [0.1, 0.7, 0.2], "HOLD": [0.2, 0.2, 0.6]}[action]
    return {
        "timestamp": t,
        "kind": "model_decision",
        "symbol": symbol,
        "action": action,
        "confidence": max(p),
        "probabilities": p,
        "gate": "vote",
        "reason": f"{action}: dashboard test",
        "skipped": {},
        "contributions": [["pivot_cnn", action, 0.6, 0.55, *p, 0.3]],
    }


def _fill(symbol: str, t: int, side: str, qty: float, price: float) -> dict:
    return {
        "timestamp": t,
        "kind": "fill",
        "symbol": symbol,
        "side": side,
        "quantity": qty,
        "price": price,
        "fee": qty * price * 0.001,
        "client_order_id": f"c{symbol[:3]}{t}",
        "venue_order_id": None,
        "venue_trade_id": None,
    }


def write_finished_run(root: Path) -> Path:
    """Create the data dir ``root`` (module docstring) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    store = DuckDBStore(root / STORE_FILE_NAME)
    try:
        minute = {}
        for k, (symbol, price) in enumerate(SYMBOLS):
            for tf, step, n in SERIES:
                candles = planted_candles(
                    n, seed=11 + k, start_price=price, start_time=END - n * step, bar_ms=step
                )
                store.write_candles(SeriesKey("binance", symbol, tf), candles, source="test")
                if tf == "1m":
                    minute[symbol] = candles
        with RunJournal(
            store, RUN_ID, meta={"mode": "replay", "symbols": [s for s, _ in SYMBOLS]}
        ) as journal:
            first = END - 300 * 60_000
            for i in range(300):
                t = first + i * 60_000
                journal.equity(t, 100_000.0 + 3.0 * i - (40.0 if i % 9 == 0 else 0.0))
                for symbol, _ in SYMBOLS:
                    if i % 10 == 0:
                        journal.decision(
                            _decision(symbol, t, ("BUY", "HOLD", "SELL")[(i // 10) % 3])
                        )
            for symbol, _ in SYMBOLS:
                close = minute[symbol].close
                for i, side in ((-250, "buy"), (-200, "sell"), (-120, "buy"), (-60, "sell")):
                    t = END + i * 60_000
                    record = _fill(symbol, t, side, 1.0, float(close[i]))
                    journal.event(record)
                    journal.fill(record)
    finally:
        store.close()
    return root
