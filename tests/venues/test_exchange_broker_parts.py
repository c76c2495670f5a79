"""The live broker's parts: API keys and the signed client, the header rate limiter, the
venue clock, the venue profiles."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import ccxt
import pytest

from pivotal.config.models import ExchangeConfig
from pivotal.core.errors import ConfigError, OperationalError
from pivotal.venues.header_limiter import HeaderRateLimiter
from pivotal.venues.trading_client import ApiKeys, create_trading_client
from pivotal.venues.venue_clock import VenueClock
from pivotal.venues.venue_profiles import PROFILES, profile
from venues.fake_ccxt import FakeTime, run

LOCAL = ExchangeConfig(rest_url="http://127.0.0.1:9001", ws_url="ws://127.0.0.1:9002")
KEYS = ApiKeys("key-123456789", "very-secret-value")


# -- keys -------------------------------------------------------------------------------------
def test_keys_never_show_the_secret() -> None:
    for text in (repr(KEYS), str(KEYS), f"{KEYS}", repr([KEYS])):
        assert "very-secret-value" not in text and "***" in text


def test_keys_from_env() -> None:
    env = {"PIVOTAL_EXCHANGES__BYBIT__API_KEY": "k", "PIVOTAL_EXCHANGES__BYBIT__SECRET": "s"}
    keys = ApiKeys.from_env("bybit", env)
    assert (keys.api_key, keys.api_secret) == ("k", "s")
    assert "PIVOTAL_EXCHANGES__BYBIT" in keys.source
    with pytest.raises(ConfigError, match="PIVOTAL_EXCHANGES__MEXC__SECRET"):
        ApiKeys.from_env("mexc", {"PIVOTAL_EXCHANGES__MEXC__API_KEY": "k"})


def test_keys_from_file_refuse_open_permissions_and_the_work_tree(tmp_path: Path) -> None:
    outside = tmp_path / "home"
    outside.mkdir()
    yaml_file = outside / "keys.yaml"
    yaml_file.write_text("api_key: k1\napi_secret: s1\n")
    os.chmod(yaml_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ApiKeys.from_file(yaml_file, cwd=outside)
    os.chmod(yaml_file, 0o600)
    keys = ApiKeys.from_file(yaml_file, cwd=outside)
    assert (keys.api_key, keys.api_secret) == ("k1", "s1")
    json_file = outside / "keys.json"
    json_file.write_text(json.dumps({"api_key": "k2", "api_secret": "s2"}))
    os.chmod(json_file, 0o600)
    assert ApiKeys.from_file(json_file, cwd=outside).api_key == "k2"
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    inside = repo / "conf" / "keys.yaml"
    inside.parent.mkdir()
    inside.write_text("api_key: k\napi_secret: s\n")
    os.chmod(inside, 0o600)
    with pytest.raises(ConfigError, match="git work tree"):
        ApiKeys.from_file(inside, cwd=repo / "conf")
    bad = outside / "bad.yaml"
    bad.write_text("- just a list\n")
    os.chmod(bad, 0o600)
    with pytest.raises(ConfigError, match="api_key and api_secret"):
        ApiKeys.from_file(bad, cwd=outside)


# -- the signed client -----------------------------------------------------------------------
def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if "://" in value else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    return []


def test_trading_client_is_redirected_everywhere_and_guarded() -> None:
    async def main() -> None:
        for venue in PROFILES:
            client = create_trading_client(venue, LOCAL, KEYS, testnet=False)
            try:
                assert client.secret == "very-secret-value" and client.verbose is False
                api = dict(client.urls["api"])
                ws = api.pop("ws")
                rest = _urls(api)
                base = "http://127.0.0.1:9001"
                assert rest and all(u == base or u.startswith(base + "/") for u in rest)
                assert all(u.startswith("ws://127.0.0.1:9002") for u in _urls(ws))
                with pytest.raises(OperationalError, match="refused a request"):
                    await client.fetch("https://api.example.com/api/v3/order")
                with pytest.raises(OperationalError, match="refused a socket"):
                    client.client("wss://stream.example.com/ws")
            finally:
                await client.close()
        binance = create_trading_client("binance", LOCAL, KEYS, testnet=False)
        assert binance.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:9002/ws-api/v3"
        await binance.close()
        bybit = create_trading_client("bybit", LOCAL, KEYS, testnet=False)
        assert bybit.urls["api"]["ws"]["private"]["spot"]["unified"] == (
            "ws://127.0.0.1:9002/v5/private"
        )
        assert bybit.options["enableUnifiedAccount"] is True
        await bybit.close()

    asyncio.run(main())


def test_testnet_uses_the_sandbox_and_mexc_has_none() -> None:
    async def main() -> None:
        client = create_trading_client("binance", ExchangeConfig(), KEYS, testnet=True)
        try:
            assert client.isSandboxModeEnabled
            assert "testnet" in client.urls["api"]["private"]
        finally:
            await client.close()

    asyncio.run(main())
    with pytest.raises(ConfigError, match="no testnet"):
        create_trading_client("mexc", ExchangeConfig(), KEYS, testnet=True)
    with pytest.raises(ConfigError, match="ws_url"):
        create_trading_client(
            "binance", ExchangeConfig(rest_url="http://127.0.0.1:1"), KEYS, testnet=False
        )
    with pytest.raises(ConfigError, match="supported"):
        create_trading_client("kraken", LOCAL, KEYS, testnet=False)


# -- the header limiter ------------------------------------------------------------------------
class HeaderClient:
    """Answers each ``fetch`` with the next scripted (status, headers)."""

    def __init__(self, replies: list[tuple[int, dict[str, str]]]) -> None:
        self.replies = replies
        self.sent: list[int] = []

    def on_rest_response(self, code: int, reason: str, url: str, method: str, headers: Any,
                         body: Any, *rest: Any) -> Any:  # fmt: skip
        return body

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        status, reply = self.replies.pop(0)
        self.sent.append(status)
        self.on_rest_response(status, "", url, method, reply, "{}")
        if status == 429:
            raise ccxt.DDoSProtection("binance 429 Too Many Requests")
        return {}


def test_limiter_slows_near_the_budget_and_honours_retry_after() -> None:
    time = FakeTime(start_ms=1_700_000_010_000)
    reset = 1_700_000_010_000 - 1_700_000_010_000 % 60_000 + 60_000
    limiter = HeaderRateLimiter(
        profile("binance"), time, fraction=0.8, jitter=0.0, sleep=time.sleep
    )
    client = HeaderClient([
        (200, {"X-MBX-USED-WEIGHT-1M": "100"}),
        (200, {"X-MBX-USED-WEIGHT-1M": "5000"}),
        (200, {"X-MBX-USED-WEIGHT-1M": "6000"}),
        (429, {"Retry-After": "7"}),
        (200, {}),
    ])  # fmt: skip
    limiter.install(client)

    async def main() -> None:
        await client.fetch("u")
        await client.fetch("u")  # 100 used: no wait before it
        assert time.sleeps == []
        await client.fetch("u")  # 5000 of 6000 used: the window's rest over the 1000 left
        assert time.sleeps == [pytest.approx((reset - 1_700_000_010_000) / 1000 / 1000)]
        with pytest.raises(ccxt.DDoSProtection):
            await client.fetch("u")  # used up: waits for the next minute, then gets a 429
        assert time.now >= reset
        before = time.now
        await client.fetch("u")  # the 429's Retry-After holds every request for 7 s
        assert time.now - before >= 7000
        assert limiter.gate.blocks == 1 and limiter.waits == 3 and client.sent[-1] == 200

    run(main(), time)


def test_limiter_reads_bybit_remaining_headers() -> None:
    time = FakeTime(start_ms=1_700_000_000_000)
    limiter = HeaderRateLimiter(profile("bybit"), time, jitter=0.0, sleep=time.sleep)
    limiter.observe(200, {"X-Bapi-Limit-Status": "1", "X-Bapi-Limit": "20",
                          "X-Bapi-Limit-Reset-Timestamp": str(time.now + 500)})  # fmt: skip
    assert limiter.delay_s() == pytest.approx(0.5)  # 19 of 20 used: 500 ms over 1 left
    limiter.observe(200, {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "20",
                          "X-Bapi-Limit-Reset-Timestamp": str(time.now + 800)})  # fmt: skip
    assert limiter.delay_s() == pytest.approx(0.8)
    mexc = HeaderRateLimiter(profile("mexc"), time, sleep=time.sleep)
    mexc.observe(200, {"X-MBX-USED-WEIGHT-1M": "6000"})
    assert mexc.delay_s() == 0.0


# -- the clock --------------------------------------------------------------------------------
class TimeClient:
    def __init__(self, server_ms: int) -> None:
        self.server_ms = server_ms
        self.options: dict[str, Any] = {}

    async def fetch_time(self) -> int:
        return self.server_ms


def test_clock_offset_from_the_midpoint_goes_into_ccxt() -> None:
    ticks = iter([1_000, 1_040, 5_000, 5_000])
    clock = VenueClock(recv_window_ms=3000, resync_s=2, local_ms=lambda: next(ticks))
    client = TimeClient(server_ms=61_020)
    offset = asyncio.run(clock.sync(client))
    assert offset == 60_000 and clock.round_trip_ms == 40
    assert client.options == {
        "recvWindow": 3000, "adjustForTimeDifference": False, "timeDifference": -60_000,
    }  # fmt: skip
    assert clock.due()  # 5 s later, resync every 2 s
    with pytest.raises(ValueError, match="recv_window_ms"):
        VenueClock(recv_window_ms=70_000)
