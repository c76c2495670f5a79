"""Batch Williams pivots: a hand-built example per level, tie rules, a brute-force oracle, the
prefix property and no look-ahead (hypothesis and real data), timestamps, bad input, chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Symbol
from pivotal.core.candles import Candles
from pivotal.core.types import PivotKind, PivotPoint
from pivotal.features.pivots import pivots_known_at, to_pivot_points, williams_pivots
from pivotal.features.pivots.williams import swing_positions
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
real_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)


# -- a slow, obviously-correct oracle ----------------------------------------------------------
def oracle(high, low, levels, strengths) -> list[tuple]:
    """Rows (level, kind, index, confirm_index, price) straight from the definitions."""
    rows = []
    for kind, values in (("high", list(high)), ("low", [-v for v in low])):
        # items: (value, index, confirm_index)
        items = [(v, i, i) for i, v in enumerate(values)]
        for level in range(1, levels + 1):
            n = strengths[level - 1]
            found = []
            for j in range(n, len(items) - n):
                v = items[j][0]
                if all(items[k][0] < v for k in range(j - n, j)) and all(
                    items[k][0] <= v for k in range(j + 1, j + n + 1)
                ):
                    found.append((v, items[j][1], items[j + n][2]))
            for v, i, c in found:
                rows.append((level, kind, i, c, v if kind == "high" else -v))
            items = found
    return sorted(rows, key=lambda r: (r[3], r[0], r[1]))


def as_rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (int(lv), str(k), int(i), int(c), float(p))
        for lv, k, i, c, p in frame[
            ["level", "kind", "index", "confirm_index", "price"]
        ].itertuples(index=False)
    ]


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@st.composite
def walks(draw, max_len: int = 250):
    """Integer random walks (so ties and flat runs are common) with a 0..2 high-low spread."""
    n = draw(st.integers(0, max_len))
    steps = draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n))
    spread = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    low = 100.0 + np.cumsum(np.asarray(steps, dtype=np.float64))
    return low + np.asarray(spread, dtype=np.float64), low


strengths = st.one_of(
    st.integers(1, 3).map(lambda s: (s, s, s, s, s)),
    st.lists(st.integers(1, 3), min_size=5, max_size=5).map(tuple),
)


# -- hand-built example ------------------------------------------------------------------------
HAND_HIGH = [1, 3, 1, 5, 1, 4, 1, 6, 1, 8, 1, 7, 1, 5, 1, 6, 1, 4, 1]
EVEN_LOWS = [0.9, 0.6, 0.8, 0.4, 0.7, 0.2, 0.5, 0.3, 0.6, 0.95]
HAND_LOW = [EVEN_LOWS[i // 2] if i % 2 == 0 else HAND_HIGH[i] - 0.5 for i in range(19)]
HAND_EXPECTED = [
    *[(1, "high", i, i + 1, float(HAND_HIGH[i])) for i in range(1, 18, 2)],
    *[(1, "low", i, i + 1, HAND_LOW[i]) for i in range(2, 17, 2)],
    (2, "high", 3, 6, 5.0),
    (2, "high", 9, 12, 8.0),
    (2, "high", 15, 18, 6.0),
    (2, "low", 6, 9, 0.4),
    (2, "low", 10, 13, 0.2),
    (2, "low", 14, 17, 0.3),
    (3, "high", 9, 18, 8.0),
    (3, "low", 10, 17, 0.2),
]


def test_hand_built_example_has_the_known_pivots_at_each_level() -> None:
    got = williams_pivots(HAND_HIGH, HAND_LOW, levels=3, strength=1)
    expected = sorted(HAND_EXPECTED, key=lambda r: (r[3], r[0], r[1]))
    assert as_rows(got) == expected
    assert list(got.columns) == ["level", "kind", "index", "confirm_index", "price"]
    # level 4 has no pivots: one level-3 pivot of each kind cannot be a swing
    assert as_rows(williams_pivots(HAND_HIGH, HAND_LOW, levels=4, strength=1)) == expected


def test_flat_top_and_bottom_pick_the_leftmost_bar() -> None:
    high = [1, 2, 2, 2, 1, 1, 1]
    low = [0.5, 1, 1, 1, 0.2, 0.2, 0.5]
    got = as_rows(williams_pivots(high, low, levels=1, strength=1))
    assert got == [(1, "high", 1, 2, 2.0), (1, "low", 4, 5, 0.2)]


def test_highs_and_lows_do_not_alternate() -> None:
    # two swing highs in a row with no swing low between (flat lows)
    got = as_rows(williams_pivots([1, 3, 2, 4, 3], [0.5] * 5, levels=1, strength=1))
    assert got == [(1, "high", 1, 2, 3.0), (1, "high", 3, 4, 4.0)]
    # an outside bar is both a high and a low pivot, high listed first
    got = as_rows(williams_pivots([2, 3, 2], [1, 0, 1], levels=1, strength=1))
    assert got == [(1, "high", 1, 2, 3.0), (1, "low", 1, 2, 0.0)]


def test_per_level_strength_and_too_short_input() -> None:
    high, low = walks_example()
    got = williams_pivots(high, low, levels=3, strength=(3, 1, 2))
    assert as_rows(got) == oracle(high, low, 3, (3, 1, 2))
    assert (got.loc[got.level == 1, "confirm_index"] - got.loc[got.level == 1, "index"] == 3).all()
    assert williams_pivots(high[:6], low[:6], strength=3).empty  # needs 2n + 1 bars
    assert williams_pivots([], [], strength=3).empty


def walks_example() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    low = 100 + np.cumsum(rng.integers(-2, 3, 2_000)).astype(float)
    return low + rng.integers(0, 3, 2_000), low


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 8, 13])
def test_swing_positions_matches_the_definition(width: int) -> None:
    values = np.random.default_rng(width).integers(0, 6, 400).astype(float)
    expected = [
        j
        for j in range(width, len(values) - width)
        if values[j] > values[j - width : j].max()
        and values[j] >= values[j + 1 : j + width + 1].max()
    ]
    assert swing_positions(values, width).tolist() == expected


# -- properties on generated series ------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(walks(), strengths, st.integers(1, 5))
def test_equals_the_brute_force_oracle(bars, strength, levels) -> None:
    high, low = bars
    got = williams_pivots(high, low, levels=levels, strength=strength[:levels])
    assert as_rows(got) == oracle(high, low, levels, strength)


@settings(max_examples=150, deadline=None)
@given(walks(), strengths, st.data())
def test_prefix_property_on_random_walks(bars, strength, data) -> None:
    high, low = bars
    full = williams_pivots(high, low, levels=5, strength=strength)
    m = data.draw(st.integers(0, len(high)), label="prefix")
    prefix = williams_pivots(high[:m], low[:m], levels=5, strength=strength)
    assert_same(prefix, full[full.confirm_index < m])
    assert_same(pivots_known_at(full, m - 1), full[full.confirm_index < m])


@settings(max_examples=100, deadline=None)
@given(walks(), st.integers(1, 3), st.data())
def test_changing_bars_after_t_changes_no_pivot_known_at_t(bars, strength, data) -> None:
    high, low = bars
    if len(high) == 0:
        return
    t = data.draw(st.integers(0, len(high) - 1), label="t")
    tail = len(high) - t - 1
    new_low = data.draw(st.lists(st.integers(50, 150), min_size=tail, max_size=tail))
    spread = data.draw(st.lists(st.integers(0, 3), min_size=tail, max_size=tail))
    high2, low2 = high.copy(), low.copy()
    low2[t + 1 :] = new_low
    high2[t + 1 :] = low2[t + 1 :] + np.asarray(spread, dtype=float)
    before = williams_pivots(high, low, strength=strength)
    after = williams_pivots(high2, low2, strength=strength)
    assert_same(pivots_known_at(before, t), pivots_known_at(after, t))


# -- real data ---------------------------------------------------------------------------------
def btc(timeframe: str) -> pd.DataFrame:
    assert DATA is not None
    return pd.read_parquet(DATA / f"ohlcv/binance-spot/{timeframe}/BTC_USDT-{timeframe}.parquet")


@real_data
def test_prefix_property_and_no_look_ahead_on_real_1h_bars() -> None:
    df = btc("1h")
    high, low, ts = df.high.to_numpy(), df.low.to_numpy(), df.timestamp.to_numpy()
    full = williams_pivots(high, low, levels=5, strength=2, timestamps=ts)
    assert set(full.level) == {1, 2, 3, 4, 5}
    rng = np.random.default_rng(3)
    for m in [*rng.integers(0, len(df), 12).tolist(), len(df) - 1, 5]:
        prefix = williams_pivots(high[:m], low[:m], levels=5, strength=2, timestamps=ts[:m])
        assert_same(prefix, full[full.confirm_index < m])
        # look-ahead: a crash after bar m - 1 leaves everything known at m - 1 as it was
        crash_low = low.copy()
        crash_low[m:] = low[m:] * 0.5
        changed = williams_pivots(high, crash_low, levels=5, strength=2, timestamps=ts)
        assert_same(pivots_known_at(changed, m - 1), full[full.confirm_index < m])


@real_data
def test_real_1m_pivots_are_well_formed() -> None:
    df = btc("1m").iloc[:300_000]
    high, low, ts = df.high.to_numpy(), df.low.to_numpy(), df.timestamp.to_numpy()
    p = williams_pivots(high, low, levels=5, strength=(2, 2, 2, 2, 2), timestamps=ts)
    assert (np.diff(p.confirm_index.to_numpy()) >= 0).all()
    highs, lows = p.kind == "high", p.kind == "low"
    assert np.array_equal(p.price[highs].to_numpy(), high[p["index"][highs]])
    assert np.array_equal(p.price[lows].to_numpy(), low[p["index"][lows]])
    assert np.array_equal(p.timestamp.to_numpy(), ts[p["index"].to_numpy()])
    assert np.array_equal(p.confirm_timestamp.to_numpy(), ts[p.confirm_index.to_numpy()])
    counts = p.groupby("level").size().to_numpy()
    assert (np.diff(counts) < 0).all()  # each level is sparser than the one below
    lvl1 = p[p.level == 1]
    assert (lvl1.confirm_index - lvl1["index"] == 2).all()


# -- timestamps and PivotPoint -----------------------------------------------------------------
def test_timestamps_and_pivot_points() -> None:
    ts = 1_700_000_000_000 + 60_000 * np.arange(len(HAND_HIGH), dtype=np.int64)
    p = williams_pivots(HAND_HIGH, HAND_LOW, levels=3, strength=1, timestamps=ts)
    p_dt = williams_pivots(
        HAND_HIGH, HAND_LOW, levels=3, strength=1, timestamps=ts.astype("datetime64[ms]")
    )
    assert_same(p, p_dt)
    points = to_pivot_points(p, "BTC/USDT", bar_ms=60_000)
    assert points == to_pivot_points(
        p.drop(columns=["timestamp", "confirm_timestamp"]), "BTC/USDT", ts, bar_ms=60_000
    )
    first = points[0]
    assert first == PivotPoint(
        symbol=Symbol.parse("BTC/USDT"),
        timestamp=int(ts[1]),
        confirmed_at=int(ts[2]) + 60_000,  # known when the confirm bar closes
        price=3.0,
        kind=PivotKind.HIGH,
        level=1,
    )
    assert all(pt.confirmed_at >= pt.timestamp for pt in points)
    with pytest.raises(ValueError, match="no timestamp columns"):
        to_pivot_points(p.drop(columns=["timestamp", "confirm_timestamp"]), "BTC/USDT", bar_ms=1)
    with pytest.raises(ValueError, match="same bars"):
        to_pivot_points(p, "BTC/USDT", ts[:5], bar_ms=60_000)
    with pytest.raises(ValueError, match="bar_ms"):
        to_pivot_points(p, "BTC/USDT", bar_ms=0)


def test_regression_pivot_not_known_before_confirm_bar_closes() -> None:
    """Bug: confirmed_at was the confirm bar's *open*, so an input built while that bar was
    still open used a pivot that depends on the bar's (not yet final) high and low."""
    ts = 1_700_000_000_000 + 60_000 * np.arange(len(HAND_HIGH), dtype=np.int64)
    p = williams_pivots(HAND_HIGH, HAND_LOW, levels=1, strength=1, timestamps=ts)
    for point, confirm in zip(
        to_pivot_points(p, "BTC/USDT", bar_ms=60_000), p["confirm_index"], strict=True
    ):
        assert point.confirmed_at == ts[confirm] + 60_000
        assert point.confirmed_at > ts[confirm]


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"high": [2, 3, 4], "low": [1, 2]}, ValueError, "equal lengths"),
        ({"high": [2, np.nan, 4], "low": [1, 1, 1]}, ValueError, "NaN.*first at bar 1"),
        ({"high": [2, 3, 4], "low": [1, np.inf, 1]}, ValueError, "NaN/infinite"),
        ({"high": [2, 3, 4], "low": [1, 3.5, 1]}, ValueError, "high < low.*bar 1"),
        ({"high": [[2, 3]], "low": [[1, 2]]}, ValueError, "one-dimensional"),
        ({"high": ["a"], "low": [1]}, TypeError, "numeric"),
        ({"strength": 0}, ValueError, "strength must be >= 1"),
        ({"strength": -2}, ValueError, "strength must be >= 1"),
        ({"strength": (2, 2)}, ValueError, "2 entries but levels=5"),
        ({"strength": 1.5}, TypeError, "strength"),
        ({"strength": True}, TypeError, "strength"),
        ({"levels": 0}, ValueError, "levels must be between 1"),
        ({"levels": 11}, ValueError, "levels must be between 1"),
        ({"levels": 2.0}, TypeError, "levels must be an int"),
        ({"timestamps": [1, 2]}, ValueError, "timestamps must be one-dimensional with 3"),
        ({"timestamps": [1.0, 2.0, 3.0]}, TypeError, "int UTC milliseconds"),
    ],
)
def test_bad_input_says_what_is_wrong(kwargs, error, match) -> None:
    args = {"high": [2.0, 3.0, 4.0], "low": [1.0, 2.0, 3.0], **kwargs}
    with pytest.raises(error, match=match):
        williams_pivots(**args)


# -- chart -------------------------------------------------------------------------------------
def test_pivot_chart_draws_candles_and_each_level(tmp_path) -> None:
    from pivotal.features.pivots.chart import pivot_chart

    n = len(HAND_HIGH)
    ts = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    mid = (np.asarray(HAND_HIGH) + np.asarray(HAND_LOW)) / 2
    candles = Candles(ts, mid, HAND_HIGH, HAND_LOW, mid, np.ones(n))
    p = williams_pivots(HAND_HIGH, HAND_LOW, levels=3, strength=1)
    fig = pivot_chart(candles, p, title="hand")
    names = [trace.name for trace in fig.data]
    assert names[0] == "candles"
    assert {"L1 highs", "L1 lows", "L2 structure", "L3 highs", "L3 lows"} <= set(names)
    l3 = next(t for t in fig.data if t.name == "L3 highs")
    assert list(l3.y) == [8.0]
    assert fig.layout.title.text == "hand"
    out = tmp_path / "pivots.html"
    fig.write_html(out, include_plotlyjs=False)
    assert out.stat().st_size > 1_000
    with pytest.raises(ValueError, match="candles has 5 bars"):
        pivot_chart(candles[:5], p)
