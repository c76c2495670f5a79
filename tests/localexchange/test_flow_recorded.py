"""recorded_flow: hftbacktest Binance spot recordings as a replayable flow.

The real-data tests check the flow against the oracles derived from the same messages
(``trades/binance-spot`` and ``orderbook/binance-spot`` parquet files, and
``pivotal.features.orderbook``); the small hand-written files check the rules and errors.
"""

from __future__ import annotations

import gzip
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.features.orderbook import DepthEvents, OrderBook, replay_depth
from pivotal.localexchange.flow import BookTop, DepthDiff, TradePrint
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.recorded import recorded_flow
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

SPAN = "20240808T2354-20240809T0005"
# symbol, stem, trades, bookTickers, diffs kept (all but those inside the snapshot),
# bookTicker checks the README reports as verified
CASES = [
    ("btcusdt", "BTC_USDT", 19_904, 73_174, 6_493, 1_072),
    ("ethusdt", "ETH_USDT", 14_515, 58_758, 6_468, 1_056),
]


def _data() -> Path:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    return data


def _files(data: Path, name: str) -> list[Path]:
    base = data / "messages" / "binance-spot" / "hftbacktest"
    return [base / f"{name}_20240808.gz", base / f"{name}_20240809.gz"]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def replayed(request: pytest.FixtureRequest) -> dict:
    """The flow, its events, and a MarketState replay with the bookTicker comparisons."""
    data = _data()
    name, stem, *_ = request.param
    flow = recorded_flow(_files(data, name))
    events = list(flow.events())
    ticker = pq.read_table(
        data / "orderbook" / "binance-spot" / f"{stem}-bookticker-{SPAN}.parquet",
        columns=["update_id", "bid_price", "ask_price"],
    ).to_pydict()
    by_id = dict(
        zip(
            ticker["update_id"],
            zip(ticker["bid_price"], ticker["ask_price"], strict=True),
            strict=True,
        )
    )
    market = MarketState(flow, timeframes=(Timeframe.S1, Timeframe.M1, Timeframe.M5))
    checks = mismatches = 0
    second = events[0].time_ms // 1000
    for event in events:
        while event.time_ms // 1000 > second:
            second += 1
            market.advance(second * 1000)
        market.apply(event)
        if type(event) is DepthDiff and event.last_id in by_id:
            book = market.depth(1)
            checks += 1
            mismatches += (book.bids[0][0], book.asks[0][0]) != by_id[event.last_id]
    return {
        "case": request.param,
        "data": data,
        "flow": flow,
        "events": events,
        "market": market,
        "checks": checks,
        "mismatches": mismatches,
    }


def test_counts_symbol_and_time_order(replayed: dict) -> None:
    name, _, n_trades, n_tops, n_diffs, _ = replayed["case"]
    flow, events = replayed["flow"], replayed["events"]
    assert flow.symbol == Symbol.from_exchange_id(name)
    assert flow.source == f"recorded:{name}_20240808.gz+{name}_20240809.gz"
    kinds = [type(e) for e in events]
    assert kinds.count(TradePrint) == n_trades
    assert kinds.count(BookTop) == n_tops
    assert kinds.count(DepthDiff) == n_diffs
    times = np.array([e.time_ms for e in events])
    assert np.all(np.diff(times) >= 0)
    assert (flow.start_ms, flow.end_ms) == (int(times[0]), int(times[-1]))
    assert (flow.tick_size, flow.step_size) == (0.01, 0.00001 if name == "btcusdt" else 0.0001)
    # a fresh iterator per call, identical events
    assert list(flow.events())[:100] == events[:100]


def test_snapshot_and_diff_sequence(replayed: dict) -> None:
    flow, events = replayed["flow"], replayed["events"]
    snap = flow.snapshot
    assert len(snap.bids) == len(snap.asks) == 1000
    assert snap.bids[0][0] < snap.asks[0][0]
    assert all(a[0] > b[0] for a, b in pairwise(snap.bids))
    diffs = [e for e in events if type(e) is DepthDiff]
    first = diffs[0]
    assert first.first_id <= snap.last_update_id + 1 <= first.last_id
    assert all(b.first_id == a.last_id + 1 for a, b in pairwise(diffs))


def test_trades_equal_the_parquet_oracle(replayed: dict) -> None:
    _, stem, *_ = replayed["case"]
    data, market = replayed["data"], replayed["market"]
    oracle = pq.read_table(data / "trades" / "binance-spot" / f"{stem}-trades-{SPAN}.parquet")
    cols = oracle.to_pydict()
    expected = [
        TradePrint(t, i, p, q, m)
        for t, i, p, q, m in zip(
            cols["timestamp"],
            cols["trade_id"],
            cols["price"],
            cols["qty"],
            cols["is_buyer_maker"],
            strict=True,
        )
    ]
    assert [e for e in replayed["events"] if type(e) is TradePrint] == expected
    assert market.trades_recent(len(expected) + 10) == expected


def test_book_equals_bookticker_at_the_same_update_id(replayed: dict) -> None:
    *_, verified = replayed["case"]
    assert replayed["checks"] == verified
    assert replayed["mismatches"] == 0


def test_book_equals_the_orderbook_oracle(replayed: dict) -> None:
    _, stem, *_ = replayed["case"]
    frame = pq.read_table(
        replayed["data"] / "orderbook" / "binance-spot" / f"{stem}-depth-{SPAN}.parquet"
    ).to_pandas()
    book = OrderBook(replayed["flow"].symbol)
    counts = replay_depth(DepthEvents(frame), book)
    assert counts["gaps"] == 0
    market = replayed["market"]
    assert market.last_update_id == book.last_update_id
    bids, asks = book.depth(100_000)
    mine = market.depth(100_000)
    assert [tuple(r) for r in bids.tolist()] == list(mine.bids)
    assert [tuple(r) for r in asks.tolist()] == list(mine.asks)


def test_klines_equal_aggregate_trades(replayed: dict) -> None:
    trades = [e for e in replayed["events"] if type(e) is TradePrint]
    batch = Trades(
        np.array([t.time_ms for t in trades]),
        np.array([t.price for t in trades]),
        np.array([t.qty for t in trades]),
        np.array([t.buyer_maker for t in trades]),
        np.array([t.trade_id for t in trades]),
    )
    for tf in (Timeframe.S1, Timeframe.M1, Timeframe.M5):
        bars = aggregate_trades(batch, tf)
        klines = replayed["market"].klines(tf, None, None, 1000)
        c = bars.candles
        assert [k.open_time for k in klines] == c.timestamp.tolist()
        assert [(k.open, k.high, k.low, k.close, k.volume) for k in klines] == list(
            zip(
                c.open.tolist(),
                c.high.tolist(),
                c.low.tolist(),
                c.close.tolist(),
                c.volume.tolist(),
                strict=True,
            )
        )
        assert [k.trades for k in klines] == bars.trade_count.tolist()
        assert [k.taker_buy_volume for k in klines] == bars.buy_volume.tolist()
        assert [k.closed for k in klines][-2:] == [True, False]


# --------------------------------------------------------------- small hand-written files
T0 = 1_700_000_000_000  # exchange ms of the hand-written files
SNAP = {
    "lastUpdateId": 100,
    "bids": [["10.00", "1.0"], ["9.99", "2.0"]],
    "asks": [["10.01", "1.5"]],
}


def _depth(e: int, first: int, last: int, bids=(), asks=(), pu: int | None = None) -> dict:
    data = {"e": "depthUpdate", "E": e, "s": "ABCUSDT", "U": first, "u": last}
    data |= {"b": [list(x) for x in bids], "a": [list(x) for x in asks]}
    if pu is not None:
        data["pu"] = pu
    return {"stream": "abcusdt@depth@100ms", "data": data}


def _trade(e: int, t: int, tid: int, price: str, qty: str, maker: bool) -> dict:
    data = {"e": "trade", "E": e, "s": "ABCUSDT", "t": tid, "p": price, "q": qty, "T": t}
    return {"stream": "abcusdt@trade", "data": data | {"m": maker, "M": True}}


def _ticker(u: int, bid: str, ask: str) -> dict:
    data = {"u": u, "s": "ABCUSDT", "b": bid, "B": "1.0", "a": ask, "A": "2.0"}
    return {"stream": "abcusdt@bookTicker", "data": data}


def _write(path: Path, lines: list[tuple[int, dict]]) -> Path:
    body = b"".join(b"%d %s\n" % (ts, orjson.dumps(msg)) for ts, msg in lines)
    path.write_bytes(gzip.compress(body))
    return path


def _good(tmp_path: Path) -> list[Path]:
    # local clock in ns, 1,000 ms behind the exchange
    ns = 1_000_000
    t0 = T0
    first = [
        (
            (t0 + 1_000) * ns,
            _depth(t0 + 2_000, 95, 99, [("10.00", "1.1")]),
        ),  # stale: inside the snapshot
        ((t0 + 1_010) * ns, _ticker(101, "10.00", "10.01")),
        ((t0 + 1_020) * ns, SNAP),
        ((t0 + 1_050) * ns, _trade(t0 + 2_050, t0 + 2_040, 7, "10.01", "0.5", False)),
        ((t0 + 1_100) * ns, _depth(t0 + 2_100, 98, 103, [("10.00", "0")], [("10.02", "3.0")])),
    ]
    second = [
        ((t0 + 1_150) * ns, _trade(t0 + 2_150, t0 + 2_149, 8, "9.99", "0.25", True)),
        ((t0 + 1_200) * ns, _depth(t0 + 2_200, 104, 106, [("9.98", "4.0")], [("10.01", "0")])),
        ((t0 + 1_210) * ns, _ticker(106, "9.99", "10.02")),
    ]
    return [_write(tmp_path / "abcusdt_1.gz", first), _write(tmp_path / "abcusdt_2.gz", second)]


def test_small_recording_rules(tmp_path: Path) -> None:
    flow = recorded_flow(_good(tmp_path))
    assert flow.symbol == Symbol("ABC", "USDT")
    assert (flow.tick_size, flow.step_size) == (0.01, 0.01)  # from the decimals
    assert flow.snapshot.last_update_id == 100
    assert flow.snapshot.bids == ((10.0, 1.0), (9.99, 2.0))
    events = list(flow.events())
    # offset = median(E - local) over depth and trade messages = 1000 ms
    assert events == [
        BookTop(T0 + 2_010, 101, 10.0, 1.0, 10.01, 2.0),
        TradePrint(T0 + 2_040, 7, 10.01, 0.5, False),
        DepthDiff(T0 + 2_100, 98, 103, ((10.0, 0.0),), ((10.02, 3.0),)),
        TradePrint(T0 + 2_149, 8, 9.99, 0.25, True),
        DepthDiff(T0 + 2_200, 104, 106, ((9.98, 4.0),), ((10.01, 0.0),)),
        BookTop(T0 + 2_210, 106, 9.99, 1.0, 10.02, 2.0),
    ]
    market = MarketState(flow)
    for event in events:
        market.apply(event)
    assert market.depth(10).bids == ((9.99, 2.0), (9.98, 4.0))
    assert market.depth(10).asks == ((10.02, 3.0),)
    assert market.top() == events[-1]


def test_symbol_argument_filters_and_checks(tmp_path: Path) -> None:
    files = _good(tmp_path)
    assert recorded_flow(files, "ABC/USDT").symbol == Symbol("ABC", "USDT")
    with pytest.raises(DataError, match="no stream messages"):
        recorded_flow(files, "BTCUSDT")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([(1, _depth(5, 101, 102))], "no REST depth snapshot"),
        ([(1, SNAP), (2, _depth(5, 103, 104))], "must straddle 101"),
        ([(1, SNAP), (2, _depth(5, 99, 102)), (3, _depth(6, 104, 105))], "sequence gap"),
        ([(1, SNAP), (2, _depth(5, 99, 102, pu=98))], "USD-M"),
        ([(1, SNAP), (2, {"stream": "abcusdt@kline_1m", "data": {}})], "unsupported stream"),
        (
            [(1, SNAP), (2, _trade(9, 9, 1, "1", "1", True)), (3, _trade(9, 8, 2, "1", "1", True))],
            "back in time",
        ),
    ],
    ids=["no-snapshot", "no-straddle", "gap", "usdm", "stream", "trade-order"],
)
def test_broken_recordings_raise(tmp_path: Path, lines: list, message: str) -> None:
    path = _write(tmp_path / "bad.gz", lines)
    with pytest.raises(DataError, match=message):
        recorded_flow([path])


def test_unreadable_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        recorded_flow([tmp_path / "missing.gz"])
    with pytest.raises(DataError, match="at least one"):
        recorded_flow([])
    bad = tmp_path / "text.gz"
    bad.write_bytes(gzip.compress(b"not a timestamp {}\n"))
    with pytest.raises(DataError, match=r"text\.gz:1"):
        recorded_flow([bad])
