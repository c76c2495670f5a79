"""The symbol pipeline publishes, with each 1s COB snapshot, a BookLevels of the same time
holding the top of the very book that snapshot sampled (the book *before* the update that
closed the second), only for books of known exchange time; and the BookLevels value itself
refuses what is not a book (shape, non-positive or non-finite values, order, a crossed top).
A listener that has no use for BookLevels (the orchestrator's intake) ignores it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from pivotal.core.candles import Candles
from pivotal.core.events import BookLevels, BookUpdated, MarketEvent
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.series import SeriesKey
from pivotal.orchestrator.frame import MarketFrame
from pivotal.orchestrator.intake import BarIntake
from pivotal.orchestrator.subscriptions import DataSubscriptionManager
from pivotal.venues.symbol_pipeline import DEFAULT_BOOK_LEVELS, SymbolPipeline

T0 = 1_751_328_000_000


class Sink:
    def __init__(self) -> None:
        self.cob: list[COBData] = []

    def add_candles(self, key: SeriesKey, candles: Candles, source: str) -> None:
        pass

    def add_trades(self, exchange: str, symbol: Symbol, trades: Trades, source: str) -> None:
        pass

    def add_cob(
        self, exchange: str, symbol: Symbol, snapshots: Sequence[COBData], source: str
    ) -> None:
        self.cob.extend(snapshots)


def _side(best: float, step: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prices = best + step * np.arange(n)
    return np.column_stack((prices, rng.uniform(0.1, 3.0, n)))


def _books(n_levels: int) -> list[tuple[np.ndarray, np.ndarray, int | None]]:
    """Timed books through four seconds, one of unknown time in the third."""
    out: list[tuple[np.ndarray, np.ndarray, int | None]] = []
    for i, t in enumerate([T0 + 100, T0 + 700, T0 + 1_300, T0 + 2_200, T0 + 2_600, T0 + 4_100]):
        mid = 100.0 + i
        bids = _side(mid - 0.05, -0.1, n_levels, seed=i)
        asks = _side(mid + 0.05, 0.1, n_levels, seed=100 + i)
        out.append((bids, asks, t))
    bids, asks, _ = out[4]
    out[4] = (bids, asks, None)  # a REST snapshot: no exchange time
    return out


@pytest.mark.parametrize("levels", [DEFAULT_BOOK_LEVELS, 5])
def test_each_cob_second_brings_the_top_levels_of_the_book_it_sampled(levels: int) -> None:
    sink = Sink()
    events: list[MarketEvent] = []
    pipeline = SymbolPipeline(
        "BTC/USDT", "binance", sink, publish=events.extend, book_levels=levels
    )
    books = _books(30)
    for bids, asks, t in books:
        pipeline.on_book("binance", bids, asks, None, t)
    updated = [e for e in events if isinstance(e, BookUpdated)]
    tops = [e for e in events if isinstance(e, BookLevels)]
    assert (
        [e.event_time for e in tops] == [e.event_time for e in updated] == [T0 + 1_000, T0 + 2_000]
    )
    # each second's book is the one standing before the update that closed the second
    sampled = {T0 + 1_000: books[1], T0 + 2_000: books[2]}
    for top in tops:
        bids, asks, _ = sampled[top.event_time]
        np.testing.assert_array_equal(top.bids, bids[:levels])
        np.testing.assert_array_equal(top.asks, asks[:levels])
        assert top.symbol == "BTC/USDT"
        assert top.mid == pytest.approx(
            next(s for s in sink.cob if s.timestamp == top.event_time).current_price
        )
    # the REST book (unknown time) invalidates the book: seconds 3 and 4 get nothing at all
    assert pipeline.counts.book_levels == len(tops) == pipeline.counts.cob_snapshots


def test_no_book_levels_when_turned_off_and_a_crossed_book_is_counted_not_raised() -> None:
    events: list[MarketEvent] = []
    off = SymbolPipeline("BTC/USDT", "binance", Sink(), publish=events.extend, book_levels=None)
    for bids, asks, t in _books(3)[:3]:
        off.on_book("binance", bids, asks, None, t)
    assert any(isinstance(e, BookUpdated) for e in events)
    assert not any(isinstance(e, BookLevels) for e in events)

    events.clear()
    pipeline = SymbolPipeline("BTC/USDT", "binance", Sink(), publish=events.extend)
    crossed_bids = np.array([[100.2, 1.0], [100.0, 1.0]])
    asks = np.array([[100.1, 1.0], [100.3, 1.0]])
    pipeline.on_book("binance", crossed_bids, asks, None, T0 + 100)
    pipeline.on_book("binance", crossed_bids, asks, None, T0 + 1_100)
    assert pipeline.counts.bad_books == 1
    assert not any(isinstance(e, BookLevels) for e in events)
    with pytest.raises(ValueError, match="book_levels"):
        SymbolPipeline("BTC/USDT", "binance", Sink(), book_levels=0)


@pytest.mark.parametrize(
    ("bids", "asks", "words"),
    [
        ([[100.0, 1.0, 3.0]], [[101.0, 1.0]], "shape"),
        ([[100.0, 0.0]], [[101.0, 1.0]], "finite and above 0"),
        ([[100.0, float("nan")]], [[101.0, 1.0]], "finite and above 0"),
        ([[99.0, 1.0], [100.0, 1.0]], [[101.0, 1.0]], "descending"),
        ([[100.0, 1.0]], [[102.0, 1.0], [101.0, 1.0]], "ascending"),
        ([[101.0, 1.0]], [[101.0, 1.0]], "crossed"),
    ],
)
def test_book_levels_refuse_what_is_not_a_book(
    bids: list[list[float]], asks: list[list[float]], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        BookLevels("BTC/USDT", np.array(bids), np.array(asks), T0)


def test_book_levels_own_read_only_float64_copies_and_allow_an_empty_side() -> None:
    source = np.array([[100.0, 1.0], [99.0, 2.0]])
    levels = BookLevels("BTC/USDT", source, np.empty((0, 2)), T0)
    source[0, 0] = 1.0
    assert levels.bids.dtype == np.float64 and levels.bids[0, 0] == 100.0
    assert not levels.bids.flags.writeable
    assert levels.best_bid == 100.0 and levels.best_ask is None and np.isnan(levels.mid)
    assert levels.asks.shape == (0, 2)


def test_the_orchestrator_intake_ignores_book_levels() -> None:
    intake = BarIntake(DataSubscriptionManager(MarketFrame()))
    intake.push(BookLevels("BTC/USDT", [[100.0, 1.0]], [[101.0, 1.0]], T0))  # no error
    with pytest.raises(TypeError, match="BookLevels"):
        intake.push("not an event")  # type: ignore[arg-type]
