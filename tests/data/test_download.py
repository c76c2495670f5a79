"""The download service against a local Binance/MEXC server built from real candles.

Every request goes to 127.0.0.1 (``pivotal.testing.binance_server``); faults are injected
there, retries wait through a recording ``sleep`` so nothing really waits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pivotal.config.models import DownloadConfig, ExchangeConfig, PivotalConfig
from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import DataError, OperationalError
from pivotal.core.timeframes import Timeframe
from pivotal.data.download import DownloadProgress, download_candles
from pivotal.data.duckdb_store import DuckDBStore, find_gaps
from pivotal.data.series import SeriesKey
from pivotal.testing.binance_server import BinanceServer, Fault

SHARED = Path(
    os.environ.get("PIVOTAL_SHARED_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
OHLCV = SHARED / "ohlcv" / "binance-spot"
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not OHLCV.is_dir(),
        reason=f"real candles not found at {OHLCV} (set PIVOTAL_SHARED_DATA to the shared data)",
    ),
]

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
JUN_1_2025 = 1_748_736_000_000  # 2025-06-01 00:00 UTC
JAN_1_2025 = 1_735_689_600_000
MAR_24_2023 = 1_679_616_000_000  # day of the real 80-minute Binance outage


def load(relative: str, start: int, end: int) -> Candles:
    """Real candles with ``start <= open < end`` from a shared Parquet file."""
    table = pq.read_table(
        OHLCV / relative,
        columns=list(CANDLE_COLUMNS),
        filters=[("timestamp", ">=", start), ("timestamp", "<", end)],
    )
    return Candles.from_arrow(table)


class Sleeps(list[float]):
    """A ``sleep`` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_config(urls: dict[str, str], **download: object) -> PivotalConfig:
    settings: dict[str, object] = {
        "fallback_exchanges": ["binance", "mexc"],
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 10.0,
    }
    settings.update(download)
    return PivotalConfig(
        download=DownloadConfig(**settings),  # type: ignore[arg-type]
        exchanges={
            ex: ExchangeConfig(rest_url=url, rate_limit_ms=1, timeout_s=2.0)
            for ex, url in urls.items()
        },
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with DuckDBStore(tmp_path / "market.duckdb") as opened:
        yield opened


@pytest.fixture(scope="module")
def minutes() -> dict[str, Candles]:
    """Three days of real BTC and ETH 1m candles (4,320 each: five 1000-candle pages)."""
    end = JUN_1_2025 + 3 * DAY
    return {s: load(f"1m/{s}_USDT-1m.parquet", JUN_1_2025, end) for s in ("BTC", "ETH")}


@pytest.fixture(scope="module")
def hours() -> dict[str, Candles]:
    end = JAN_1_2025 + 60 * DAY
    return {s: load(f"1h/{s}_USDT-1h.parquet", JAN_1_2025, end) for s in ("BTC", "ETH")}


def key(exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    return SeriesKey(exchange, symbol, Timeframe.parse(timeframe))


def test_end_to_end_with_faults_equals_source_then_resumes(
    store: DuckDBStore, minutes: dict[str, Candles], hours: dict[str, Candles]
) -> None:
    source = {(f"{s}/USDT", "1m"): c for s, c in minutes.items()}
    source |= {(f"{s}/USDT", "1h"): c for s, c in hours.items()}
    clock = ReplayClock(JUN_1_2025 + 10 * DAY)
    sleeps = Sleeps()
    progress: list[DownloadProgress] = []
    with BinanceServer(source) as server:
        server.inject(
            Fault.http_error(429, retry_after_s=2, after=1),
            Fault.http_error(500, after=2),
            Fault.drop(after=3),
        )
        config = make_config({"binance": server.url})

        def run() -> list:
            return download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT", "ETH/USDT"],
                timeframes=["1m", "1h"], since_ms=JAN_1_2025, clock=clock,
                progress=progress.append, sleep=sleeps,
            )  # fmt: skip

        results = run()
        assert [str(r.key) for r in results] == [
            "binance BTC/USDT 1m", "binance BTC/USDT 1h",
            "binance ETH/USDT 1m", "binance ETH/USDT 1h",
        ]  # fmt: skip
        for result in results:
            expected = source[(str(result.key.symbol), result.key.timeframe.value)]
            assert store.read_candles(result.key).equals(expected), result.key
            assert result.used_exchange == result.requested_exchange == "binance"
            assert result.fetched == result.written.inserted == len(expected)
            assert (result.first, result.last) == (expected.timestamp[0], expected.timestamp[-1])
        assert sum(r.retries for r in results) == 3
        assert 2.0 in sleeps  # Retry-After honoured
        assert [r.outcome for r in server.klines_requests()].count("200") == 5 + 2 + 5 + 2
        assert {r.path for r in server.requests} == {"/api/v3/exchangeInfo", "/api/v3/klines"}
        btc_1m = [p for p in progress if p.key == results[0].key]
        assert [p.fetched for p in btc_1m] == [0, 1000, 2000, 3000, 4000, 4320, 4320]
        assert {p.expected for p in btc_1m} == {(JUN_1_2025 + 10 * DAY - JAN_1_2025) // MIN}
        assert btc_1m[-1].done

        # a second run fetches nothing: one request per series, resuming after the last candle
        server.reset_requests()
        again = run()
        assert all(r.fetched == 0 and r.written.total == 0 for r in again)
        starts = [r.int_param("startTime") for r in server.klines_requests()]
        assert starts == [r.last + r.key.timeframe.ms for r in results]

        # the exchange gains 90 new BTC minutes: only those are fetched
        extra = load("1m/BTC_USDT-1m.parquet", JUN_1_2025, JUN_1_2025 + 3 * DAY + 90 * MIN)
        server.set_candles("BTCUSDT", "1m", extra)
        server.reset_requests()
        third = run()
        assert [r.fetched for r in third] == [90, 0, 0, 0]
        assert third[0].first == results[0].last + MIN
        assert store.read_candles(results[0].key).equals(extra)
        assert server.klines_requests()[0].int_param("startTime") == results[0].last + MIN


def test_real_outage_gap_survives_download(store: DuckDBStore) -> None:
    day = load("1m/BTC_USDT-1m.parquet", MAR_24_2023, MAR_24_2023 + DAY)
    source_gaps = find_gaps(day.timestamp, Timeframe.M1)
    assert [(g.missing, g.start) for g in source_gaps] == [(80, MAR_24_2023 + (12 * 60 + 40) * MIN)]
    with BinanceServer({("BTCUSDT", "1m"): day}) as server:
        config = make_config({"binance": server.url}, page_limit=500)
        [result] = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1m"],
            since_ms=MAR_24_2023, until_ms=MAR_24_2023 + DAY, clock=ReplayClock(2**41),
        )  # fmt: skip
    assert result.fetched == len(day) == 1440 - 80
    assert store.gaps(result.key) == source_gaps
    assert store.read_candles(result.key).equals(day)


def test_still_open_candle_is_not_stored(store: DuckDBStore, minutes: dict[str, Candles]) -> None:
    btc = minutes["BTC"]
    clock = ReplayClock(int(btc.timestamp[100]) + 30_000)  # half-way through candle 100
    with BinanceServer({("BTCUSDT", "1m"): btc}) as server:
        config = make_config({"binance": server.url})
        args = {"exchange": "binance", "symbols": ["BTC/USDT"], "timeframes": ["1m"]}
        [first] = download_candles(store, config, **args, since_ms=JUN_1_2025, clock=clock)
        assert first.fetched == 100
        assert store.last_timestamp(first.key) == btc.timestamp[99]
        clock.advance_to(int(btc.timestamp[100]) + MIN)  # candle 100 has just closed
        [second] = download_candles(store, config, **args, since_ms=JUN_1_2025, clock=clock)
    assert (second.fetched, second.first) == (1, btc.timestamp[100])
    assert store.read_candles(first.key).equals(btc[:101])


def test_falls_back_to_mexc_and_stores_under_it(
    store: DuckDBStore, hours: dict[str, Candles]
) -> None:
    btc = hours["BTC"]
    sleeps = Sleeps()
    with (
        BinanceServer({("BTCUSDT", "1h"): btc}) as binance,
        BinanceServer({("BTCUSDT", "1h"): btc}, flavor="mexc") as mexc,
    ):
        binance.inject(Fault.http_error(500, times=None))
        config = make_config({"binance": binance.url, "mexc": mexc.url})
        [result] = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
            since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + 90 * DAY), sleep=sleeps,
        )  # fmt: skip
        assert len(binance.klines_requests()) == 4  # 1 + max_retries
        assert {r.params["interval"] for r in mexc.klines_requests()} == {"60m"}
        assert {r.path for r in mexc.requests} == {"/api/v3/exchangeInfo", "/api/v3/klines"}
    assert sleeps == [0.01, 0.02, 0.04]
    assert (result.requested_exchange, result.used_exchange) == ("binance", "mexc")
    assert result.key == key("mexc", "BTC/USDT", "1h")
    assert "binance" in result.fallbacks[0] and "HTTP 500" in result.fallbacks[0]
    assert store.read_candles(result.key).equals(btc)
    assert store.last_timestamp(key("binance", "BTC/USDT", "1h")) is None


def test_unlisted_symbol_falls_back_without_retries(
    store: DuckDBStore, hours: dict[str, Candles]
) -> None:
    sleeps = Sleeps()
    with (
        BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}) as binance,
        BinanceServer({("ETHUSDT", "1h"): hours["ETH"]}, flavor="mexc") as mexc,
    ):
        config = make_config({"binance": binance.url, "mexc": mexc.url})
        [result] = download_candles(
            store, config, exchange="binance", symbols=["ETH/USDT"], timeframes=["1h"],
            since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + 90 * DAY), sleep=sleeps,
        )  # fmt: skip
        assert binance.klines_requests() == []
    assert result.used_exchange == "mexc" and sleeps == []
    assert "does not list ETH/USDT" in result.fallbacks[0]
    assert store.read_candles(result.key).equals(hours["ETH"])


def test_every_exchange_failing_raises_one_clear_error(
    store: DuckDBStore, hours: dict[str, Candles]
) -> None:
    data = {("BTCUSDT", "1h"): hours["BTC"]}
    with BinanceServer(data) as binance, BinanceServer(data, flavor="mexc") as mexc:
        binance.inject(Fault.http_error(503, times=None))
        mexc.inject(Fault.http_error(429, retry_after_s=1, times=None))
        config = make_config({"binance": binance.url, "mexc": mexc.url}, max_retries=1)
        with pytest.raises(OperationalError) as caught:
            download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
                since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + 90 * DAY), sleep=Sleeps(),
            )  # fmt: skip
    message = str(caught.value)
    assert "could not download BTC/USDT 1h from any exchange (binance, mexc)" in message
    assert "  - binance BTC/USDT 1h: still failing after 1 retries" in message
    assert "  - mexc BTC/USDT 1h: still failing after 1 retries" in message
    assert "HTTP 503" in message and "HTTP 429" in message


def test_timeframe_not_served_skips_the_exchange(
    store: DuckDBStore, hours: dict[str, Candles]
) -> None:
    with BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}, flavor="mexc") as mexc:
        config = make_config({"mexc": mexc.url}, fallback_exchanges=["mexc"])
        with pytest.raises(OperationalError, match="mexc does not serve 1s candles"):
            download_candles(
                store, config, exchange="mexc", symbols=["BTC/USDT"], timeframes=["1s"],
                since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + DAY),
            )  # fmt: skip
        assert mexc.requests == []


def test_non_retryable_error_is_not_retried(store: DuckDBStore, hours: dict[str, Candles]) -> None:
    sleeps = Sleeps()
    with BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}) as server:
        server.inject(Fault.reply({"code": -1121, "msg": "Invalid symbol."}, status=400))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        with pytest.raises(OperationalError, match="does not know this symbol"):
            download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
                since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + DAY), sleep=sleeps,
            )  # fmt: skip
        assert len(server.klines_requests()) == 1
    assert sleeps == []


def test_timeout_is_retried(store: DuckDBStore, hours: dict[str, Candles]) -> None:
    sleeps = Sleeps()
    with BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}) as server:
        server.inject(Fault.slow(1.0))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        config = config.model_copy(
            update={"exchanges": {"binance": ExchangeConfig(rest_url=server.url, timeout_s=0.2)}}
        )
        [result] = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
            since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + DAY), sleep=sleeps,
        )  # fmt: skip
    assert (result.retries, result.fetched, sleeps) == (1, 24, [0.01])


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (["{t}", "100.0", "90.0", "95.0", "96.0", "1.0"], "high below open or close"),
        (["{t}", "abc", "101.0", "95.0", "96.0", "1.0"], "NaN or infinite price or volume"),
        (["{t}", "100.0"], "expected a JSON list of rows [open time (ms), open, high"),
    ],
    ids=["high-below-low", "unreadable-price", "short-row"],
)
def test_bad_reply_is_refused_and_nothing_of_it_stored(
    store: DuckDBStore, minutes: dict[str, Candles], bad_row: list[str], reason: str
) -> None:
    btc = minutes["BTC"]
    cursor = int(btc.timestamp[1000])  # the second page starts here
    row: list[object] = [cursor if v == "{t}" else v for v in bad_row]
    if len(row) == 6:
        row += [cursor + MIN - 1, "0", 0, "0", "0", "0"]
    with BinanceServer({("BTCUSDT", "1m"): btc}) as server:
        server.inject(Fault.reply([row], after=1))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        with pytest.raises(DataError) as caught:
            download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1m"],
                since_ms=JUN_1_2025, clock=ReplayClock(JUN_1_2025 + 10 * DAY),
            )  # fmt: skip
    message = str(caught.value)
    assert reason in message and "BTC/USDT 1m" in message and "2025-06-01T16:40:00Z" in message
    assert "Nothing from this page was stored" in message
    assert store.read_candles(key("binance", "BTC/USDT", "1m")).equals(btc[:1000])


def test_malformed_reply_is_a_data_error(store: DuckDBStore, hours: dict[str, Candles]) -> None:
    with BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}) as server:
        server.inject(Fault.reply([[None, "1", "1", "1", "1", "1"]]))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        with pytest.raises(DataError, match="malformed klines"):
            download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
                since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + DAY),
            )  # fmt: skip
    assert store.last_timestamp(key("binance", "BTC/USDT", "1h")) is None


def test_one_second_candles_page_by_1000_seconds(store: DuckDBStore) -> None:
    """1s klines from real trades (Binance spot BTCUSDT, 2024-08-08 23:54..00:05)."""
    trades = pq.read_table(
        SHARED / "trades" / "binance-spot" / "BTC_USDT-trades-20240808T2354-20240809T0005.parquet",
        columns=["timestamp", "price", "qty"],
    ).to_pandas()
    trades.index = trades.pop("timestamp") // 1000 * 1000
    bars = trades.groupby(level=0).agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"),
        close=("price", "last"), volume=("qty", "sum"),
    )  # fmt: skip
    seconds = Candles(
        bars.index.to_numpy(np.int64), *(bars[c].to_numpy() for c in CANDLE_COLUMNS[1:])
    )
    start = int(seconds.timestamp[0])
    with BinanceServer({("BTCUSDT", "1s"): seconds}) as server:
        config = make_config({"binance": server.url}, page_limit=200)
        [result] = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1s"],
            since_ms=start, clock=ReplayClock(int(seconds.timestamp[-1]) + 1000),
        )  # fmt: skip
        pages = [(r.int_param("startTime"), r.params["limit"]) for r in server.klines_requests()]
    assert store.read_candles(result.key).equals(seconds)
    assert len(pages) == -(-len(seconds) // 200)  # Binance fills pages: a short one ends it
    assert pages[0] == (start, "200")


def test_bad_arguments_are_refused_before_any_request(store: DuckDBStore) -> None:
    config = make_config({})
    common = {"exchange": "binance", "symbols": ["BTC/USDT"], "since_ms": JAN_1_2025}
    with pytest.raises(ValueError, match="unknown timeframe '7m'"):
        download_candles(store, config, **common, timeframes=["7m"])
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        download_candles(store, config, **{**common, "symbols": ["BTCUSDT"]}, timeframes=["1m"])
    with pytest.raises(ValueError, match="must be later than since"):
        download_candles(store, config, **common, timeframes=["1m"], until_ms=JAN_1_2025)


def test_page_overlapping_the_previous_one_is_deduplicated(
    store: DuckDBStore, minutes: dict[str, Candles]
) -> None:
    btc = minutes["BTC"]
    with BinanceServer({("BTCUSDT", "1m"): btc}) as server:
        # the second page repeats the first page's last candle before its own 1000
        query = {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(btc.timestamp[999])}
        server.inject(Fault.reply(server.klines({**query, "limit": "1000"}), after=1))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        [result] = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1m"],
            since_ms=JUN_1_2025, clock=ReplayClock(JUN_1_2025 + 10 * DAY),
        )  # fmt: skip
    assert result.fetched == result.written.inserted == len(btc)
    assert store.read_candles(result.key).equals(btc)


def test_ban_longer_than_the_backoff_cap_stops_instead_of_waiting(
    store: DuckDBStore, hours: dict[str, Candles]
) -> None:
    sleeps = Sleeps()
    with BinanceServer({("BTCUSDT", "1h"): hours["BTC"]}) as server:
        server.inject(Fault.http_error(418, retry_after_s=3600))
        config = make_config({"binance": server.url}, fallback_exchanges=["binance"])
        with pytest.raises(OperationalError) as caught:
            download_candles(
                store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h"],
                since_ms=JAN_1_2025, clock=ReplayClock(JAN_1_2025 + DAY), sleep=sleeps,
            )  # fmt: skip
    assert sleeps == []
    assert "asks to wait 3600 s (DDoSProtection, HTTP 418, Retry-After)" in str(caught.value)
