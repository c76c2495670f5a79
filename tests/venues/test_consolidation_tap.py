"""The collector's multi-exchange book: two venues' books give 1s consolidated COB whose
combined buckets are the venues' sums, stamped before the update that closes the second,
a heatmap row per snapshot, and nothing from a book without an exchange time."""

from __future__ import annotations

import numpy as np

from pivotal.core.symbols import Symbol
from pivotal.features.orderbook.cob import bucketize
from pivotal.venues.consolidation import CONSOLIDATED_EXCHANGE, ConsolidationTap
from pivotal.venues.stream_events import BookItem

SYMBOL = Symbol.parse("BTC/USDT")


def _book(venue: str, t: int | None, mid: float, qty: float) -> BookItem:
    bids = np.array([[mid - 0.5 - i, qty + i] for i in range(30)])
    asks = np.array([[mid + 0.5 + i, qty * 2 + i] for i in range(30)])
    return BookItem(venue, SYMBOL, 0, t, None, bids, asks)


def test_two_venues_make_one_book_per_second_with_no_look_ahead() -> None:
    tap = ConsolidationTap([SYMBOL], ["binance", "bybit"])
    assert tap.on_book(_book("binance", None, 60_000.0, 1.0)) == []  # no time: waits
    assert tap.on_book(_book("binance", 1_000_100, 60_000.0, 1.0)) == []  # starts the clock
    assert tap.on_book(_book("bybit", 1_000_400, 60_010.0, 3.0)) == []
    # this update is stamped after 1_001_000: the second closes with the books before it
    out = tap.on_book(_book("binance", 1_001_050, 70_000.0, 9.0))
    assert len(out) == 1
    cob, source = out[0]
    assert cob.timestamp == 1_001_000
    assert source == f"{CONSOLIDATED_EXCHANGE}:binance+bybit"
    # the highest bid (bybit's) and the lowest ask (binance's): crossed venues, reported
    mid = ((60_010.0 - 0.5) + (60_000.0 + 0.5)) / 2
    assert cob.current_price == mid
    parts = [
        bucketize(b[:, 0], b[:, 1], a[:, 0], a[:, 1], mid, cob.bucket_size, 20)
        for b, a in (
            (_book("binance", 0, 60_000.0, 1.0).bids, _book("binance", 0, 60_000.0, 1.0).asks),
            (_book("bybit", 0, 60_010.0, 3.0).bids, _book("bybit", 0, 60_010.0, 3.0).asks),
        )
    ]
    np.testing.assert_allclose(cob.bid_volume, parts[0].bid_volume + parts[1].bid_volume)
    np.testing.assert_allclose(cob.ask_volume, parts[0].ask_volume + parts[1].ask_volume)
    heat = tap.heatmap(SYMBOL)
    assert list(heat.times) == [1_001_000] and tap.snapshots == 1
    per_venue = tap.heatmap(SYMBOL, venue="bybit")
    assert np.nansum(per_venue.matrix) > 0


def test_books_of_other_venues_and_symbols_are_ignored() -> None:
    tap = ConsolidationTap([SYMBOL], ["binance", "bybit"])
    assert tap.on_book(_book("mexc", 1_000, 60_000.0, 1.0)) == []
    other = BookItem("binance", Symbol.parse("ETH/USDT"), 0, 1_000, None,
                     np.array([[1.0, 1.0]]), np.array([[2.0, 1.0]]))  # fmt: skip
    assert tap.on_book(other) == []
    assert tap.snapshots == 0
