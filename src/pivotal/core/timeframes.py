"""Candle timeframes with exact durations.

Every timeframe divides a UTC day evenly, so a candle's open time is on the grid exactly
when ``timestamp_ms % duration_ms == 0`` (UTC day boundaries for ``1d``). Weekly and
monthly candles are left out on purpose: their grid is not a plain multiple of the epoch.
"""

from __future__ import annotations

from enum import StrEnum

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class Timeframe(StrEnum):
    """A candle duration, spelled as ccxt and Binance spell it (``1m``, ``4h``)."""

    S1 = "1s"
    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H2 = "2h"
    H4 = "4h"
    H6 = "6h"
    H8 = "8h"
    H12 = "12h"
    D1 = "1d"

    @property
    def ms(self) -> int:
        """Exact duration in milliseconds."""
        return int(self.value[:-1]) * _UNIT_MS[self.value[-1]]

    @property
    def seconds(self) -> int:
        return self.ms // 1000

    @classmethod
    def parse(cls, text: str | Timeframe) -> Timeframe:
        """Parse ``"1m"``; raise ``ValueError`` listing the allowed values otherwise."""
        if isinstance(text, Timeframe):
            return text
        try:
            return cls(str(text).strip())
        except ValueError:
            allowed = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown timeframe {text!r}; allowed: {allowed}") from None

    def floor(self, timestamp_ms: int) -> int:
        """Open time of the candle that contains ``timestamp_ms``."""
        return timestamp_ms - timestamp_ms % self.ms

    def is_aligned(self, timestamp_ms: int) -> bool:
        return timestamp_ms % self.ms == 0

    def __str__(self) -> str:
        return self.value
