"""Deterministic client order ids."""

from __future__ import annotations

import re

import pytest

from pivotal.venues.order_ids import client_order_id, is_pivotal_id
from pivotal.venues.venue_profiles import PROFILES

TS = 1_700_000_060_000


def test_same_inputs_same_id_and_any_change_a_new_one() -> None:
    first = client_order_id("sess", TS, "BTC/USDT", 0)
    assert first == client_order_id("sess", TS, "BTC/USDT", 0)
    others = {
        client_order_id("sess2", TS, "BTC/USDT", 0),
        client_order_id("sess", TS + 1, "BTC/USDT", 0),
        client_order_id("sess", TS, "ETH/USDT", 0),
        client_order_id("sess", TS, "BTC/USDT", 1),
        client_order_id("sess", TS, "BTC/USDT", 0, "stop"),
    }
    assert first not in others and len(others) == 5


def test_ids_fit_every_venue() -> None:
    ident = client_order_id("a-very-long-session-name" * 4, 2**44, "BTC/USDT", 10**6, "x" * 50)
    assert ident.startswith("pv") and len(ident) <= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]+", ident)
    assert is_pivotal_id(ident)
    for profile in PROFILES.values():
        assert profile.valid_client_id(ident)
    assert not is_pivotal_id("x-TKT5PX2F123")


@pytest.mark.parametrize(
    ("session", "ts", "index"), [("", TS, 0), ("s", -1, 0), ("s", TS, -1), ("s", True, 0)]
)
def test_bad_inputs_are_refused(session: str, ts: int, index: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        client_order_id(session, ts, "BTC/USDT", index)
