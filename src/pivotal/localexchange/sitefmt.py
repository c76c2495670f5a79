"""Small helpers shared by the Bybit and MEXC sites: number text, query parameters.

Exchanges send prices and quantities as decimal strings. :func:`decimals_of` gives the
number of decimals of a tick or step size (``0.01`` → 2) and :func:`num` writes a value
with that many decimals, or its shortest exact positional form when the fixed form would
round it (a synthetic price off the tick grid keeps its value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def decimals_of(step: float) -> int:
    """Decimals of a tick or step size: ``0.01`` → 2, ``1e-05`` → 5, ``1.0`` → 0."""
    if not math.isfinite(step) or step <= 0:
        return 8
    text = np.format_float_positional(step, trim="-")
    return len(text.split(".", 1)[1]) if "." in text else 0


def num(value: float, decimals: int = 8) -> str:
    """``value`` with ``decimals`` decimals, or its shortest exact text when that would round."""
    text = f"{value:.{decimals}f}"
    if float(text) == value:
        return text
    return np.format_float_positional(value, trim="-")


def amount(value: float, decimals: int = 8) -> str:
    """A summed amount (a candle's volume, a turnover): ``decimals`` decimals, no trailing
    zeros, so float noise of a sum (``2.2875900000000002``) is not shown."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def int_param(query: Mapping[str, str], name: str) -> int | None:
    """An optional non-negative integer query parameter; ``ValueError`` when malformed."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise ValueError(f"parameter {name!r} must be a non-negative integer, got {raw!r}")
    return int(raw)


def market_sizes(market: Any) -> tuple[float, float]:
    """A market's (tick size, step size): from ``market.flow`` or the market itself.

    Defaults (0.01, 0.00001) when neither says (Binance BTCUSDT's sizes).
    """
    source = getattr(market, "flow", None)
    tick = getattr(source, "tick_size", None) or getattr(market, "tick_size", None) or 0.01
    step = getattr(source, "step_size", None) or getattr(market, "step_size", None) or 0.00001
    return float(tick), float(step)
