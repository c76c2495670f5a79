"""Download throughput against the local Binance server (no network, no rate-limit waits).

Measures what pivotal adds per page: ccxt request and parse, validation and one DuckDB
upsert transaction. Run: ``.venv/bin/python benchmarks/bench_download.py --days 30``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pivotal.config.models import DownloadConfig, ExchangeConfig, PivotalConfig
from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.clock import ReplayClock
from pivotal.data.download import download_candles
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.testing.binance_server import BinanceServer
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DAY = 86_400_000
START = 1_748_736_000_000  # 2025-06-01 00:00 UTC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of BTC/USDT 1m candles")
    args = parser.parse_args()
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit(SKIP_REASON)
    table = pq.read_table(
        shared / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet",
        columns=list(CANDLE_COLUMNS),
        filters=[("timestamp", ">=", START), ("timestamp", "<", START + args.days * DAY)],
    )
    candles = Candles.from_arrow(table)
    with (
        BinanceServer({("BTCUSDT", "1m"): candles}) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = PivotalConfig(
            download=DownloadConfig(fallback_exchanges=["binance"]),
            exchanges={"binance": ExchangeConfig(rest_url=server.url, rate_limit_ms=1)},
        )
        with DuckDBStore(Path(tmp) / "bench.duckdb") as store:
            started = time.perf_counter()
            [result] = download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1m"],
                since_ms=START, clock=ReplayClock(START + (args.days + 1) * DAY),
            )  # fmt: skip
            elapsed = time.perf_counter() - started
    print(
        f"{result.fetched:,} candles in {result.requests} requests, {elapsed:.2f} s: "
        f"{result.fetched / elapsed:,.0f} candles/s, {elapsed / result.requests * 1000:.1f} ms "
        "per request (local server, rate limit 1 ms)"
    )


if __name__ == "__main__":
    main()
