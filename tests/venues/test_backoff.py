"""Reconnect waits, subscription pacing and the Retry-After gate, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from pivotal.config.models import StreamsConfig
from pivotal.venues.backoff import (
    Backoff,
    RequestGate,
    SubscriptionPacer,
    retry_after_from_headers,
)
from venues.fake_ccxt import FakeTime, run


def test_backoff_grows_caps_and_jitters_repeatably() -> None:
    config = StreamsConfig(backoff_initial_s=0.5, backoff_factor=2, backoff_max_s=8, jitter=0.2)
    one = Backoff.from_config(config, "BTC/USDT trades")
    assert [one.base(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    delays = [one.delay(n) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        assert 0.8 * one.base(n) <= d <= 1.2 * one.base(n)
    assert len(set(delays[4:])) == 3  # jittered, not the same cap three times
    again = Backoff.from_config(config, "BTC/USDT trades")
    assert [again.delay(n) for n in range(1, 8)] == delays  # seeded: repeatable
    other = Backoff.from_config(config, "ETH/USDT trades")
    assert [other.delay(n) for n in range(1, 8)] != delays  # streams do not redial together
    flat = Backoff.from_config(config.model_copy(update={"jitter": 0.0}), "x")
    assert flat.delay(3) == 2
    with pytest.raises(ValueError, match="initial_s > 0"):
        Backoff(initial_s=0, factor=2, max_s=1, jitter=0, rng=None)  # type: ignore[arg-type]


def test_pacer_allows_k_per_second() -> None:
    time = FakeTime(start_ms=0)
    pacer = SubscriptionPacer(5, time, time.sleep)
    stamps: list[int] = []

    async def one() -> None:
        await pacer.acquire()
        stamps.append(time.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(12)))

    run(main(), time)
    assert stamps == [0] * 5 + [1000] * 5 + [2000] * 2
    assert pacer.waits == 7
    for t in stamps:  # never more than 5 inside any one-second window
        assert sum(1 for s in stamps if t <= s < t + 1000) <= 5


def test_retry_after_is_read_in_any_case() -> None:
    assert retry_after_from_headers({"Retry-After": "7"}, 0) == 7.0
    assert retry_after_from_headers({"retry-after": "2.5"}, 0) == 2.5
    assert retry_after_from_headers({"X-MBX-USED-WEIGHT-1M": "1200"}, 0) is None
    assert retry_after_from_headers(None, 0) is None
    # an HTTP date: seconds from now
    assert retry_after_from_headers({"Retry-After": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4000) == 6.0


def test_gate_holds_until_retry_after() -> None:
    time = FakeTime(start_ms=0)
    gate = RequestGate(time, time.sleep)
    gate.block_for(3)
    gate.block_for(1)  # a shorter hold never shortens the longer one
    assert gate.remaining_s() == 3
    waited = run(gate.wait(), time)
    assert waited == 3
    assert time.now == 3000
    assert gate.blocks == 2
    assert run(gate.wait(), time) == 0
