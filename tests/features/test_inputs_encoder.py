"""The encoder's layout and values, computed by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.features.inputs import (
    BASE_CHANNELS,
    InputEncoder,
    InputSpec,
    build_input,
    closed_window,
)
from pivotal.features.scalers import FeatureLayout

M1, H1 = Timeframe.M1, Timeframe.H1
T = 1_748_736_000_000  # 2025-06-01 00:00 UTC
ETH = Symbol("ETH", "USDT")


def candles(tf: Timeframe, closes: list[float], volumes: list[float] | None = None) -> Candles:
    n = len(closes)
    close = np.asarray(closes, dtype=float)
    open_ = close * 0.99
    return Candles(
        T - tf.ms * np.arange(n, 0, -1, dtype=np.int64),
        open_,
        close * 1.02,
        open_ * 0.98,
        close,
        np.asarray(volumes if volumes is not None else np.arange(1.0, n + 1)),
    )


SPEC = InputSpec.candles(
    ["1m", "1h"], frames=4, min_frames=2, reference_symbol="BTC/USDT", reference_timeframes=["1m"]
)


def test_layout_names_order_and_shape() -> None:
    enc = InputEncoder(SPEC)
    assert BASE_CHANNELS == (
        "open_rel", "high_rel", "low_rel", "close_rel", "log_volume", "log_return", "present",
    )  # fmt: skip
    assert enc.layout.streams == ("1m", "1h", "reference 1m")
    assert enc.layout.channels.names == BASE_CHANNELS
    assert enc.layout.shape == (3, 4, 7)
    assert enc.layout.index("1h", "close_rel") == (1, 3)
    with pytest.raises(ValueError, match="unknown stream"):
        enc.layout.index("4h", "close_rel")
    assert InputEncoder(InputSpec.full()).layout.shape == (5, 300, 7)


def test_values_match_the_documented_formulas_and_padding_is_zero() -> None:
    m1 = candles(M1, [100.0, 110.0, 99.0, 121.0, 125.0], [0.0, 1.0, 2.0, 3.0, 4.0])
    h1 = candles(H1, [50.0, 40.0])  # 2 of 4 frames: left-padded
    ref = {M1: candles(M1, [10.0, 20.0, 40.0])}
    x = InputEncoder(SPEC).encode(build_input({M1: m1, H1: h1}, ETH, T, SPEC, reference=ref))
    assert x.dtype == torch.float32
    assert x.shape == (3, 4, 7)
    # 1m: the newest 4 closed candles, relative to the newest close (125)
    w = m1[1:]
    last = 125.0
    expect = np.column_stack(
        [
            w.open / last - 1,
            w.high / last - 1,
            w.low / last - 1,
            w.close / last - 1,
            np.log1p(w.volume),
            np.r_[0.0, np.log(w.close[1:] / w.close[:-1])],
            np.ones(4),
        ]
    ).astype(np.float32)
    assert np.array_equal(x[0].numpy(), expect)
    assert x[0, -1, 3] == 0.0  # close_rel of the newest frame
    # 1h: two padded frames of zeros, then two real ones; log_return 0 at the first real one
    assert torch.all(x[1, :2] == 0)
    assert x[1, 2:, 6].tolist() == [1.0, 1.0]
    assert x[1, 2, 5] == 0.0
    assert x[1, 3, 5] == pytest.approx(np.log(40 / 50))
    assert x[1, 2, 3] == pytest.approx(50 / 40 - 1)
    # reference: 3 of 4 frames
    assert x[2, :, 6].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert x[2, 1:, 3].tolist() == pytest.approx([-0.75, -0.5, 0.0])


def test_incomplete_inputs_are_refused_before_encoding() -> None:
    inp = build_input({M1: candles(M1, [1.0] * 5), H1: candles(H1, [1.0])}, ETH, T, SPEC)
    with pytest.raises(DataError, match=r"1h has 1 frames \(needs ≥ 2\); reference BTC/USDT 1m"):
        InputEncoder(SPEC).encode(inp)


def test_extra_channels_follow_the_base_ones_aligned_with_the_candles() -> None:
    spec = InputSpec.candles(["1m", "1h"], frames=4, min_frames=2)
    layout = FeatureLayout(("rsi", "macd"))
    m1, h1 = candles(M1, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), candles(H1, [7.0, 8.0, 9.0])
    full = {
        M1: np.column_stack([np.arange(6.0), np.r_[np.nan, np.arange(5.0)]]),
        H1: np.column_stack([np.arange(3.0) + 10, np.arange(3.0) + 20]),
    }
    inp = build_input({M1: m1, H1: h1}, ETH, T - 1, spec)  # the newest 1m/1h are still open
    extra = {}
    for tf, c in ((M1, m1), (H1, h1)):
        extra[tf] = (layout, full[tf][closed_window(c, tf, T - 1, spec.frames)])
    enc = InputEncoder(spec, extra=layout)
    assert enc.layout.channels.names == (*BASE_CHANNELS, "rsi", "macd")
    x = enc.encode(inp, extra)
    assert x[0, :, 7].tolist() == [1.0, 2.0, 3.0, 4.0]  # rows 1..4 of 6; row 5 still open
    assert x[0, :, 8].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert x[1, :, 7].tolist() == [0.0, 0.0, 10.0, 11.0]  # two padded frames
    with pytest.raises(ValueError, match="needs extra features"):
        enc.encode(inp)
    with pytest.raises(ValueError, match="shape"):
        enc.encode(inp, {**extra, M1: (layout, full[M1])})
    with pytest.raises(ValueError, match="feature layout differs"):
        enc.encode(inp, {**extra, H1: (FeatureLayout(("macd", "rsi")), extra[H1][1])})
    with pytest.raises(ValueError, match="without extra"):
        InputEncoder(spec).encode(inp, extra)
