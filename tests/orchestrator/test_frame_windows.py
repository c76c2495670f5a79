"""The frame cuts an input's candle windows straight from its rows and counts invalid candles
as they arrive: at every step each window holds the rows that ``closed_window`` cuts from the
held candles (the exact path ``build_input`` takes), and ``MarketFrame.check_input`` gives
``check_input``'s report, for any gaps, invalid candles, capacity and specs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import BaseDataInput
from pivotal.features.inputs import InputSpec, check_input
from pivotal.features.inputs.builder import closed_window
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.orchestrator.frame import MarketFrame

ETH, BTC = "ETH/USDT", "BTC/USDT"
M1 = Timeframe.M1
T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
MAX_MISSING = 2
# cheap per-candle columns: the windows and counts do not depend on them
COLUMNS = ColumnsConfig(indicators=False, pivot_levels=1)


@st.composite
def _candles(draw: st.DrawFn, most: int = 70) -> Candles:
    """1m candles with gaps (a jump of more than MAX_MISSING + 1 bars) and candles the frame
    takes but input validation counts as invalid (open or low not positive)."""
    n = draw(st.integers(1, most))
    jumps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 4, 9]), min_size=n, max_size=n))
    opens = T0 + 60_000 * np.cumsum(jumps)
    kinds = draw(st.lists(st.sampled_from(["ok"] * 6 + ["open", "low", "both"]), min_size=n))
    rows = []
    for i in range(n):
        close = 100.0 + i % 7
        open_, high, low = close - 1.0, close + 2.0, close - 2.0
        kind = kinds[i % len(kinds)]
        if kind in ("open", "both"):
            open_ = draw(st.sampled_from([0.0, -1.0, -0.0]))
        if kind in ("low", "both"):
            low = draw(st.sampled_from([0.0, -3.0]))
        rows.append((open_, high, low, close, float(i % 5)))
    o, h, lo, c, v = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return Candles(opens.astype(np.int64), o, h, lo, c, v)


def _expected_window(
    frame: MarketFrame, symbol: str, tf: Timeframe, t: int, frames: int
) -> Candles | None:
    """What build_input keeps of the held candles closed at ``t`` (None: no window)."""
    series = frame._markets[Symbol.parse(symbol)].series[tf]
    held = series.rolling.candles(series.closed_end(t))
    window = closed_window(held, tf, t, frames, max_missing_bars=frame.max_missing_bars)
    return None if window.stop <= window.start else held.rows(window.start, window.stop)


def _same(a: Candles, b: Candles) -> bool:
    return a.equals(b) and all(
        getattr(a, c).tobytes() == getattr(b, c).tobytes()
        for c in ("timestamp", "open", "high", "low", "close", "volume")
    )


def _check_step(frame: MarketFrame, spec: InputSpec, checks: list[InputSpec], t: int) -> None:
    inp = frame.input(ETH, spec)
    for symbol, tf, got in ((ETH, M1, inp.ohlcv), (BTC, M1, inp.reference_ohlcv)):
        expected = _expected_window(frame, symbol, tf, t, spec.frames)
        if expected is None:
            assert tf not in got
        else:
            assert _same(got[tf], expected)
    for other in checks:
        assert frame.check_input(inp, other) == check_input(inp, other)


@settings(max_examples=80, deadline=None)
@given(
    eth=_candles(),
    btc=_candles(40),
    capacity=st.integers(2, 12),
    sizes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=2, max_size=4),
    loaded=st.booleans(),
)
def test_windows_and_reports_equal_the_exact_path(
    eth: Candles,
    btc: Candles,
    capacity: int,
    sizes: list[tuple[int, int]],
    loaded: bool,
) -> None:
    """Small capacities: windows as long as everything held, over several reallocations."""
    frames = min(sizes[0][0], capacity)
    spec = InputSpec(
        timeframes=(M1,),
        frames=frames,
        min_frames=1,
        reference_symbol=Symbol.parse(BTC),
        reference_timeframes=(M1,),
        required=frozenset(),
    )
    checks = [
        InputSpec(
            timeframes=(M1,),
            frames=max(f, m),
            min_frames=min(f, m),
            reference_symbol=Symbol.parse(BTC) if f % 2 else None,
            reference_timeframes=(M1,),
            required=frozenset(),
        )
        for f, m in sizes[1:]
    ]
    # no pivots in the input: a candle's non-positive low would make a pivot's price invalid
    frame = MarketFrame(
        capacity=capacity, columns=COLUMNS, max_missing_bars=MAX_MISSING, max_pivots=0
    )
    frame.load(BTC, {M1: btc})
    if loaded:
        frame.load(ETH, {M1: eth})
    for i in range(len(eth)):
        if not loaded:
            frame.append_candles(ETH, M1, eth.rows(i, i + 1))
        t = int(eth.timestamp[i]) + M1.ms
        frame.advance(ETH, t)
        _check_step(frame, spec, checks, t)


def test_candles_the_frame_did_not_hand_out_are_scanned() -> None:
    candles = Candles(
        np.array([T0, T0 + 60_000], dtype=np.int64),
        np.array([-1.0, 1.0]),
        np.array([2.0, 2.0]),
        np.array([0.5, 0.5]),
        np.array([1.0, 1.0]),
        np.array([1.0, 1.0]),
    )
    frame = MarketFrame(capacity=8, columns=COLUMNS)
    frame.load(ETH, {M1: candles})
    frame.advance(ETH, T0 + 120_000)
    spec = InputSpec.candles(["1m"], frames=2, min_frames=1)
    inp = frame.input(ETH, spec)
    window = inp.ohlcv[M1]
    assert frame._invalid_rows(window, 0) == 1  # counted as it arrived
    copy = Candles(*(getattr(window, c).copy() for c in window.columns()))
    assert frame._invalid_rows(copy, 0) is None  # not one of the frame's: scanned
    foreign = BaseDataInput(symbol=inp.symbol, timestamp=inp.timestamp, ohlcv={M1: copy})
    report = frame.check_input(foreign, spec)
    assert report == check_input(foreign, spec) and not report.ok
