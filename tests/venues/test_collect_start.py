"""The collector's start: a symbol no exchange lists is refused with its name, an endpoint
nobody answers on is refused with each exchange's failure (fast, no endless retry), and in
both cases the clients are closed (no unclosed-session warnings)."""

from __future__ import annotations

import asyncio
import socket
import warnings
from pathlib import Path

import pytest
from tests.helpers.site_flow import handmade_flow

from pivotal.config.models import ExchangeConfig
from pivotal.core.clock import WallClock
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.data.duckdb_store import open_store
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.venues.clients import create_stream_client
from pivotal.venues.collector import CollectConfig, Collector


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(rest: str, symbols: tuple[str, ...], data_dir: Path) -> None:
    ws = "ws" + rest[len("http") :]
    client = create_stream_client("binance", ExchangeConfig(rest_url=rest, ws_url=ws))
    config = CollectConfig(
        exchanges=("binance",), symbols=symbols, timeframes=("1s",), connect_timeout_s=5
    )
    with open_store(data_dir) as store:
        collector = Collector(store, {"binance": client}, config, clock=WallClock())
        try:
            await collector.run(duration_s=30)
        finally:
            assert client.session is None or client.session.closed


def test_a_symbol_the_exchange_does_not_list_is_refused_by_name(tmp_path: Path) -> None:
    flows = [handmade_flow(5)]
    with (
        LocalExchangeThread(flows, ServeConfig(mode="manual")) as exchange,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(ConfigError, match=r"DOGE/USDT not listed on binance"):
            asyncio.run(_start(exchange.urls["binance"].rest, ("DOGE/USDT",), tmp_path))


def test_an_endpoint_nobody_answers_on_is_refused_with_the_reason(tmp_path: Path) -> None:
    rest = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(OperationalError, match=r"no exchange answered \(binance: .*--endpoint"):
        asyncio.run(_start(rest, ("BTC/USDT",), tmp_path))
