"""The one-at-a-time builder: closed candles only, point in time, spec and validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.types import COBData, ModelOutput, PivotPoint
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.features.inputs import (
    InputBuilder,
    InputEncoder,
    InputPart,
    InputSpec,
    build_input,
    check_input,
    closed_window,
    require_complete,
)
from pivotal.features.inputs.validation import invalid_rows

T0 = 1_748_736_000_000  # 2025-06-01 00:00 UTC
ETH = Symbol("ETH", "USDT")
BTC = Symbol("BTC", "USDT")


def walk(tf: Timeframe, n: int, seed: int = 0, start: int | None = None) -> Candles:
    """``n`` candles of a random walk on ``tf``'s grid ending at ``T0`` (last opens at T0-tf)."""
    rng = np.random.default_rng(seed)
    first = T0 - n * tf.ms if start is None else start
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    return Candles(
        first + tf.ms * np.arange(n, dtype=np.int64),
        open_,
        np.maximum(open_, close) + spread,
        np.minimum(open_, close) - spread,
        close,
        rng.exponential(10.0, n),
    )


def full_data() -> dict[Timeframe, Candles]:
    return {tf: walk(tf, 400, seed=i) for i, tf in enumerate((Timeframe.S1, *FOUR[1:]))}


FOUR = (Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1)
CANDLES_ONLY = InputSpec.candles(FOUR, reference_symbol="BTC/USDT", reference_timeframes=["1s"])


def test_takes_the_newest_frames_closed_at_t_as_views() -> None:
    data = full_data()
    inp = build_input(data, "ETH/USDT", T0, CANDLES_ONLY, reference={"1s": walk(Timeframe.S1, 50)})
    for tf in FOUR:
        assert len(inp.ohlcv[tf]) == 300
        assert inp.ohlcv[tf].equals(data[tf][100:])
        assert np.shares_memory(inp.ohlcv[tf].close, data[tf].close)
    assert inp.reference_symbol == BTC
    assert len(inp.reference_ohlcv[Timeframe.S1]) == 50
    # one millisecond earlier, the newest candle of every timeframe is still open
    early = build_input(data, ETH, T0 - 1, CANDLES_ONLY)
    for tf in FOUR:
        assert early.ohlcv[tf].equals(data[tf][99:399])
    assert closed_window(data[Timeframe.H1], Timeframe.H1, T0 - 1, 300) == slice(99, 399)


def test_drops_unconfirmed_pivots_and_later_predictions_and_refuses_a_future_cob() -> None:
    pivots = [
        PivotPoint(ETH, T0 - 10_000, T0, 100.0, "high", 1),
        PivotPoint(ETH, T0 - 10_000, T0 + 1, 99.0, "low", 1),
    ]
    outputs = {
        name: ModelOutput("cnn", name, ETH, ts, 0.5, {"action": "BUY"})
        for name, ts in (("now", T0), ("later", T0 + 60_000))
    }
    inp = build_input(
        full_data(), ETH, T0, CANDLES_ONLY, pivot_points=pivots, last_predictions=outputs
    )
    assert inp.pivot_points == (pivots[0],)
    assert set(inp.last_predictions) == {"now"}
    with pytest.raises(ValueError, match="after t"):
        build_input(full_data(), ETH, T0, CANDLES_ONLY, cob_data=cob(T0 + 1))


def cob(ts: int) -> COBData:
    prices = np.array([99.0, 100.0, 101.0])
    ones = np.ones(3)
    return COBData(ETH, ts, 100.0, 1.0, prices, ones, ones, ones * 0, prices)


def test_the_error_lists_exactly_what_is_missing() -> None:
    data = full_data()
    data[Timeframe.H1] = data[Timeframe.H1][-42:]
    inp = build_input(data, ETH, T0, InputSpec.full())
    report = check_input(inp, InputSpec.full())
    assert not report.ok
    assert report.missing == (
        "1h has 42 frames (needs ≥ 100)",
        "reference BTC/USDT 1s missing",
        "cob_data missing",
    )
    # streams 1s, 1m, 1h, 1d, reference 1s, then the required COB: each one item
    assert report.completeness == pytest.approx((3 + 42 / 300) / 6)
    assert dict(report.frames)["1h"] == 42
    with pytest.raises(DataError) as err:
        require_complete(inp, InputSpec.full())
    assert str(err.value) == (
        "ETH/USDT at 2025-06-01 00:00 UTC: 1h has 42 frames (needs ≥ 100); "
        "reference BTC/USDT 1s missing; cob_data missing"
    )


def test_complete_input_scores_one_and_bad_values_are_reported() -> None:
    spec = InputSpec(prediction_sources=("cnn", "dqn"))
    assert spec.required == {InputPart.COB, InputPart.PREDICTIONS}
    out = ModelOutput("cnn", "cnn", ETH, T0, 0.5, {"action": "BUY"})
    ref = {Timeframe.S1: walk(Timeframe.S1, 300, seed=9)}
    inp = build_input(
        full_data(), ETH, T0, spec, reference=ref, cob_data=cob(T0), last_predictions={"cnn": out}
    )
    report = check_input(inp, spec)
    assert report.missing == ("last prediction of dqn missing",)
    assert report.completeness == pytest.approx(7 / 8)  # 5 streams, cob, cnn, dqn
    assert check_input(inp, InputSpec()).ok
    assert check_input(inp, InputSpec()).completeness == 1.0

    data = full_data()
    m1 = data[Timeframe.M1]
    close = m1.close.copy()
    close[-3:] = np.nan
    data[Timeframe.M1] = Candles(m1.timestamp, m1.open, m1.high, m1.low, close, m1.volume)
    bad = check_input(build_input(data, ETH, T0, CANDLES_ONLY, reference=ref), CANDLES_ONLY)
    assert bad.missing == ("1m has 3 candles with NaN, infinite or non-positive values",)


def test_a_model_declaring_only_1m_and_1h_is_served_without_1s_and_1d() -> None:
    data = {tf: c for tf, c in full_data().items() if tf in (Timeframe.M1, Timeframe.H1)}
    spec = InputSpec.candles(["1m", "1h"], frames=300, min_frames=100)
    inp = build_input(data, ETH, T0, spec)
    assert check_input(inp, spec).ok
    assert InputEncoder(spec).encode(inp).shape == (2, 300, 7)
    with pytest.raises(DataError, match="1s missing; 1d missing; reference BTC/USDT 1s missing"):
        require_complete(build_input(data, ETH, T0, InputSpec.full()), InputSpec.full())


def test_spec_checks_its_fields() -> None:
    assert InputSpec.full() == InputSpec()
    assert InputSpec().stream_names == ("1s", "1m", "1h", "1d", "reference 1s")
    assert InputSpec(reference_symbol=None).reference_timeframes == ()
    with pytest.raises(ValueError, match="min_frames <= frames"):
        InputSpec(frames=50, min_frames=100)
    with pytest.raises(ValueError, match="repeats 1m"):
        InputSpec(timeframes=("1m", "1m"))
    with pytest.raises(ValueError, match="unknown timeframe"):
        InputSpec(timeframes=("7m",))


def test_store_backed_builder_equals_build_input(tmp_path: Path) -> None:
    data = full_data()
    ref = walk(Timeframe.S1, 400, seed=7)
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        for tf, candles in data.items():
            store.write_candles(SeriesKey("binance", ETH, tf), candles)
        store.write_candles(SeriesKey("binance", BTC, Timeframe.S1), ref)
        spec = InputSpec(required=frozenset())
        for t in (T0, T0 - 1, T0 - 3_600_000 + 5):
            got = InputBuilder(store, "binance", spec).build("ETH/USDT", t)
            want = build_input(data, ETH, t, spec, reference={Timeframe.S1: ref})
            assert set(got.ohlcv) == set(want.ohlcv)
            assert all(got.ohlcv[tf].equals(want.ohlcv[tf]) for tf in want.ohlcv)
            assert set(got.reference_ohlcv) == set(want.reference_ohlcv)
            assert all(got.reference_ohlcv[tf].equals(c) for tf, c in want.reference_ohlcv.items())


@settings(max_examples=40, deadline=None)
@given(
    back=st.one_of(st.integers(0, 500_000), st.integers(0, 30 * 86_400_000)),
    tail=st.integers(1, 400),
    seed=st.integers(0, 2**16),
)
def test_appending_data_after_t_changes_nothing_built_at_t(back: int, tail: int, seed: int) -> None:
    """Truncate every series to what has opened by t, append arbitrary later candles: same input."""
    t = T0 - back
    data = full_data()
    spec = InputSpec.candles(FOUR, frames=300, min_frames=1)
    now = build_input({tf: c.between(None, t) for tf, c in data.items()}, ETH, t, spec)
    rng = np.random.default_rng(seed)
    later = {}
    for tf, c in data.items():
        future = walk(tf, tail, seed=int(rng.integers(1 << 30)), start=tf.floor(t))
        # the candle open at t (if any) is revised by the future data, as a re-download would
        later[tf] = Candles.concat([c.between(None, tf.floor(t)), future])
    again = build_input(later, ETH, t, spec)
    for tf in FOUR:
        assert now.frames(tf).equals(again.frames(tf))
    report = check_input(now, spec)
    assert check_input(again, spec) == report
    if report.ok:
        assert InputEncoder(spec).encode(now).equal(InputEncoder(spec).encode(again))


_price = st.one_of(
    st.floats(min_value=-5.0, max_value=5.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e300]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[_price] * 5), min_size=1, max_size=8))
def test_invalid_rows_counts_every_bad_candle(rows: list[tuple[float, ...]]) -> None:
    """The fast all-good check and the row count agree with a row-by-row reading."""
    o, h, lo, c, v = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    candles = Candles(np.arange(len(rows), dtype=np.int64) * 60_000, o, h, lo, c, v)
    expected = sum(
        1
        for *prices, volume in rows
        if not (
            all(math.isfinite(p) and p > 0 for p in prices)
            and math.isfinite(volume)
            and volume >= 0
        )
    )
    assert invalid_rows(candles) == expected
