"""Item 9: with no network, ``pivotal data download`` gives up at once and says why.

The exchanges are pointed at hosts that cannot be reached the two ways an offline machine
fails: binance at a name that cannot be resolved (the reserved ``.invalid`` domain) and mexc
at a closed port on 127.0.0.1 (connection refused). Neither failure may enter the retry
schedule (``download.max_retries`` with exponential backoff, about two minutes per exchange
with the defaults): the recorded ``sleep`` must never be called. No progress bar may end at
100 % for a download that failed.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
from rich.progress import Progress

from pivotal.apps.cli.progress import DownloadProgressBar
from pivotal.config.models import DownloadConfig, ExchangeConfig, PivotalConfig
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import OperationalError
from pivotal.data.download import DownloadProgress, download_candles
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.exchanges import ExchangeUnreachable, probe_host
from pivotal.testing.binance_server import BinanceServer
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.network

UNRESOLVABLE = "api.pivotal-offline-test.invalid"
JAN_1_2025 = 1_735_689_600_000
DAY = 86_400_000


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def offline_config(port: int) -> PivotalConfig:
    return PivotalConfig(
        download=DownloadConfig(fallback_exchanges=["binance", "mexc"], max_retries=6),
        exchanges={
            "binance": ExchangeConfig(rest_url=f"https://{UNRESOLVABLE}"),
            "mexc": ExchangeConfig(rest_url=f"http://127.0.0.1:{port}"),
        },
    )


def test_unresolvable_and_refused_hosts_fail_without_retries(tmp_path: Path) -> None:
    port = closed_port()
    sleeps = Sleeps()
    events: list[DownloadProgress] = []
    with DuckDBStore(tmp_path / "s.duckdb") as store, Progress(disable=True) as bar:
        shown = DownloadProgressBar(bar)

        def progress(event: DownloadProgress) -> None:
            events.append(event)
            shown(event)

        with pytest.raises(OperationalError) as caught:
            download_candles(
                store, offline_config(port), exchange="binance",
                symbols=["BTC/USDT", "ETH/USDT"], timeframes=["1h"], since_ms=JAN_1_2025,
                clock=ReplayClock(JAN_1_2025 + DAY), progress=progress, sleep=sleeps,
            )  # fmt: skip
    message = str(caught.value)
    assert "could not reach any exchange for BTC/USDT 1h (binance, mexc)" in message
    assert f"binance: cannot resolve {UNRESOLVABLE}: no network?" in message
    assert f"mexc: cannot connect to 127.0.0.1:{port}: connection refused" in message
    assert "overloaded" not in message
    assert sleeps == []  # not one retry was scheduled
    finished = [e for e in events if e.done]
    assert [str(e.key) for e in finished] == ["binance BTC/USDT 1h", "mexc BTC/USDT 1h"]
    assert all(e.failed and e.fetched == 0 for e in finished)
    for task in bar.tasks:
        assert task.completed < task.total, task.description
        assert "failed" in task.description


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_an_unreachable_exchange_is_not_asked_again_for_the_next_series(tmp_path: Path) -> None:
    """The fallback still works, and the next series skips the host already found unreachable
    (one DNS verdict per run, not one per series)."""
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet")
    hours = Candles.from_frame(frame[["timestamp", "open", "high", "low", "close", "volume"]])
    hours = hours[(hours.timestamp >= JAN_1_2025) & (hours.timestamp < JAN_1_2025 + DAY)]
    sleeps = Sleeps()
    with (
        BinanceServer({("BTCUSDT", "1h"): hours}, flavor="mexc") as mexc,
        DuckDBStore(tmp_path / "s.duckdb") as store,
    ):
        config = PivotalConfig(
            download=DownloadConfig(fallback_exchanges=["binance", "mexc"]),
            exchanges={
                "binance": ExchangeConfig(rest_url=f"https://{UNRESOLVABLE}"),
                "mexc": ExchangeConfig(rest_url=mexc.url, rate_limit_ms=1),
            },
        )
        results = download_candles(
            store, config, exchange="binance", symbols=["BTC/USDT"], timeframes=["1h", "4h"],
            since_ms=JAN_1_2025, until_ms=JAN_1_2025 + DAY,
            clock=ReplayClock(JAN_1_2025 + 2 * DAY), sleep=sleeps,
        )  # fmt: skip
    assert [r.used_exchange for r in results] == ["mexc", "mexc"]
    assert all(f"cannot resolve {UNRESOLVABLE}" in r.fallbacks[0] for r in results)
    assert results[0].fetched == len(hours)
    assert sleeps == []


def test_probe_names_the_failing_step() -> None:
    port = closed_port()
    unresolved = probe_host("binance", UNRESOLVABLE, 443, timeout_s=3.0)
    refused = probe_host("mexc", "127.0.0.1", port, timeout_s=3.0)
    assert isinstance(unresolved, ExchangeUnreachable) and unresolved.host == UNRESOLVABLE
    assert "cannot resolve" in str(unresolved)
    assert isinstance(refused, ExchangeUnreachable)
    assert "connection refused" in str(refused)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert probe_host("x", "127.0.0.1", listening.getsockname()[1], timeout_s=3.0) is None


def test_cli_says_the_network_is_missing(tmp_path: Path) -> None:
    port = closed_port()
    env = {
        "PIVOTAL_EXCHANGES__BINANCE__REST_URL": f"https://{UNRESOLVABLE}",
        "PIVOTAL_EXCHANGES__MEXC__REST_URL": f"http://127.0.0.1:{port}",
    }
    args = ["data", "download", "--symbols", "BTC/USDT", "--timeframes", "1h"]
    result = run_cli([*args, "--since", "2025-01-01", "-d", str(tmp_path)], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert f"cannot resolve {UNRESOLVABLE}: no network?" in result.stderr
    assert "connection refused" in result.stderr
    assert "retry" not in result.stderr  # no retry was logged
    assert "100%" not in result.stderr and "Traceback" not in result.stderr
