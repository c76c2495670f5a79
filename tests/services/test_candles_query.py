"""Candles with pivots from the store: the full series' pivots confirmed inside the window, no
look-ahead, incremental answers that join up, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivotal.data.duckdb_store import STORE_FILE_NAME, DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.features.pivots import williams_pivots
from pivotal.services.candles_query import (
    PivotCache,
    SeriesCatalog,
    candles_payload,
    read_newest,
    timeframes_of,
)
from pivotal.services.view import NotFound, QueryError


@pytest.fixture
def store(data_dir: Path):
    with DuckDBStore(data_dir / STORE_FILE_NAME, read_only=True) as s:
        yield s


def full_marks(candles, step: int, first: int, last: int) -> set[tuple]:
    f = williams_pivots(candles.high, candles.low, 5, 2, candles.timestamp, step_ms=step)
    out = set()
    for lv, k, t, p, c in zip(
        f.level, f.kind.astype(str), f.timestamp, f.price, f.confirm_timestamp, strict=True
    ):
        if first <= c <= last:
            out.add((int(lv), k, int(t), float(p), int(c) + step))
    return out


def marks(payload) -> set[tuple]:
    return {(m.level, m.kind, m.t, m.price, m.confirmed_t) for m in payload.pivots}


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize(("tf", "limit"), [("1m", 1500), ("1m", 37), ("5m", 600), ("1h", 100)])
def test_pivots_equal_the_full_series_inside_the_window(store, candles_of_dir, tf, limit, cached):
    full = candles_of_dir[tf]
    step = SeriesKey("binance", "BTC/USDT", tf).timeframe.ms
    cache = PivotCache(store) if cached else None
    p = candles_payload(
        store, "binance", "BTC-USDT", tf, limit=limit, since_ms=None, node_id="n", pivots=cache
    )
    assert p.symbol == "BTC/USDT" and p.timeframe == tf
    assert p.bars.t == full.timestamp[-limit:].tolist()
    assert p.bars.close == full.close[-limit:].tolist()
    expected = full_marks(full, step, p.bars.t[0], p.bars.t[-1])
    got = marks(p)
    assert expected, "the window should hold pivots"
    if cached:
        assert got == expected
    else:  # a window: levels 1-3 exact on a planted series
        assert {g for g in got if g[0] <= 3} == {e for e in expected if e[0] <= 3}
    # no look-ahead: every pivot is confirmed by a returned bar that has closed
    assert all(p.bars.t[0] + step <= m.confirmed_t <= p.bars.t[-1] + step for m in p.pivots)
    assert all(m.t < m.confirmed_t for m in p.pivots)


def test_incremental_answers_join_up_to_the_full_answer(store):
    cache = PivotCache(store)
    whole = candles_payload(
        store, "binance", "BTCUSDT", "1m", limit=1000, since_ms=None, node_id="n", pivots=cache
    )
    cut = whole.bars.t[700]
    tail = candles_payload(
        store, "binance", "BTCUSDT", "1m", limit=1000, since_ms=cut, node_id="n", pivots=cache
    )
    assert tail.bars.t == whole.bars.t[700:]
    head = {m for m in marks(whole) if m[4] <= cut}  # confirmed by a bar before the cut
    assert head | marks(tail) == marks(whole)
    assert not head & marks(tail)
    # an answer since a time after the last bar is empty
    empty = candles_payload(
        store, "binance", "BTCUSDT", "1m", limit=5, since_ms=whole.bars.t[-1] + 1, node_id="n"
    )
    assert empty.bars.t == [] and empty.pivots == []


def test_read_newest_reads_across_gaps(store, candles_of_dir):
    key = SeriesKey("binance", "BTC/USDT", "1h")
    bars = read_newest(store, key, 10**6)
    assert len(bars) == len(candles_of_dir["1h"])
    assert (
        read_newest(store, key, 3).timestamp.tolist()
        == candles_of_dir["1h"].timestamp[-3:].tolist()
    )


def test_errors_name_what_was_wrong(store):
    with pytest.raises(NotFound, match="symbols are: BTC/USDT"):
        candles_payload(store, "binance", "ETHUSDT", "1m", limit=10, since_ms=None, node_id="n")
    with pytest.raises(NotFound, match="timeframes are: 1m, 5m, 1h"):
        candles_payload(store, "binance", "BTC/USDT", "4h", limit=10, since_ms=None, node_id="n")
    with pytest.raises(NotFound, match="timeframes are"):
        candles_payload(
            store, "binance", "BTC/USDT", "banana", limit=10, since_ms=None, node_id="n"
        )
    for bad in (0, 5001, -1):
        with pytest.raises(QueryError, match="limit must be an integer from 1 to 5000"):
            candles_payload(
                store, "binance", "BTC/USDT", "1m", limit=bad, since_ms=None, node_id="n"
            )
    with pytest.raises(QueryError, match="symbol"):
        candles_payload(store, "binance", "???", "1m", limit=10, since_ms=None, node_id="n")
    assert timeframes_of(store, "binance", "btcusdt") == ["1m", "5m", "1h"]
    assert timeframes_of(SeriesCatalog(store), "binance", "BTC/USDT") == ["1m", "5m", "1h"]


@pytest.mark.parametrize("seed", [1, 2])
def test_real_candles_with_gaps_give_the_full_series_pivots(tmp_path: Path, seed: int):
    from helpers.real_candles import cut_gaps, real_1m
    from pivotal.testing.training import store_candles

    candles = cut_gaps(real_1m("BTC", 20_000, seed), seed, 8)
    store = store_candles(tmp_path / STORE_FILE_NAME, candles, streams=("5m",))
    try:
        cache = PivotCache(store)
        for tf, limit in (("1m", 1500), ("5m", 1200)):
            full = store.read_candles(SeriesKey("binance", "BTC/USDT", tf))
            step = SeriesKey("binance", "BTC/USDT", tf).timeframe.ms
            for since in (None, int(full.timestamp[-200])):
                p = candles_payload(
                    store,
                    "binance",
                    "BTCUSDT",
                    tf,
                    limit=limit,
                    since_ms=since,
                    node_id="n",
                    pivots=cache,
                )
                assert marks(p) == full_marks(full, step, p.bars.t[0], p.bars.t[-1])
                window = candles_payload(
                    store, "binance", "BTCUSDT", tf, limit=limit, since_ms=since, node_id="n"
                )
                assert window.bars == p.bars
                low = {m for m in marks(window) if m[0] <= 3}
                assert low == {m for m in marks(p) if m[0] <= 3}
    finally:
        store.close()


def test_until_ms_keeps_only_the_candles_closed_by_then(store, candles_of_dir) -> None:
    full = candles_of_dir["1m"]
    minute = 60_000
    now = int(full.timestamp[-300]) + minute // 2  # inside a bar: that bar is not closed
    p = candles_payload(
        store, "binance", "BTC/USDT", "1m", limit=100, since_ms=None, node_id="n", until_ms=now
    )
    assert p.bars.t == full.timestamp[-400:-300].tolist()
    assert all(t + minute <= now for t in p.bars.t)
    assert all(m.confirmed_t <= now for m in p.pivots)
    later = candles_payload(
        store, "binance", "BTC/USDT", "1m", limit=100, since_ms=p.bars.t[-1], node_id="n",
        until_ms=now,
    )  # fmt: skip
    assert later.bars.t == [p.bars.t[-1]]


def test_history_fills_the_window_before_a_sessions_own_bars(
    store, candles_of_dir, tmp_path: Path
) -> None:
    """A session's collected store holds only its own bars; the data dir's older ones come
    first, none of them at or after the collected store's first bar."""
    from pivotal.data.duckdb_store import DuckDBStore

    full = candles_of_dir["1m"]
    key = SeriesKey("binance", "BTC/USDT", "1m")
    with DuckDBStore(tmp_path / "collected.duckdb") as collected:
        collected.write_candles(key, full[-30:])
        history = (store, SeriesCatalog(store))
        p = candles_payload(
            collected, "binance", "BTC/USDT", "1m", limit=100, since_ms=None, node_id="n",
            history=history,
        )  # fmt: skip
        assert p.bars.t == full.timestamp[-100:].tolist()
        assert p.bars.close == full.close[-100:].tolist()
        alone = candles_payload(
            collected, "binance", "BTC/USDT", "1m", limit=100, since_ms=None, node_id="n"
        )
        assert alone.bars.t == full.timestamp[-30:].tolist()
        assert len(marks(p)) >= len(marks(alone))


def test_the_memo_answers_like_a_fresh_read_and_sees_a_new_bar(
    candles_of_dir, tmp_path: Path
) -> None:
    from pivotal.data.duckdb_store import DuckDBStore

    full = candles_of_dir["1m"]
    key = SeriesKey("binance", "BTC/USDT", "1m")
    memo: dict = {}
    with DuckDBStore(tmp_path / "live.duckdb") as live:
        live.write_candles(key, full[:-10])

        def ask(use: dict | None, since: int | None = None):
            return candles_payload(
                live, "binance", "BTC/USDT", "1m", limit=300, since_ms=since, node_id="n",
                catalog=SeriesCatalog(live), memo=use,
            )  # fmt: skip

        first = ask(memo)
        assert ask(memo) == first == ask(None)
        assert len(memo) == 1
        live.write_candles(key, full[-10:-9])  # a new bar closes
        after = ask(memo)
        assert after == ask(None) and after.bars.t[-1] == int(full.timestamp[-10])
        since = ask(memo, since=first.bars.t[-1])
        assert since == ask(None, since=first.bars.t[-1]) and len(since.bars.t) == 2
