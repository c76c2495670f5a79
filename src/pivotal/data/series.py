"""Identity and summaries of stored series."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


def normalize_exchange(name: str) -> str:
    """Exchange ids are lower-case ccxt ids (``binance``, ``mexc``)."""
    value = name.strip().lower()
    if not _EXCHANGE_ID.match(value):
        raise ValueError(
            f"exchange {name!r} is not a valid id; use a lower-case ccxt id such as binance or mexc"
        )
    return value


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """One candle series: ``(exchange, symbol, timeframe)``."""

    exchange: str
    symbol: Symbol
    timeframe: Timeframe

    def __post_init__(self) -> None:
        object.__setattr__(self, "exchange", normalize_exchange(self.exchange))
        object.__setattr__(self, "symbol", Symbol.parse(self.symbol))
        object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe}"


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles: the first missing open time, the last one, and how many."""

    start: int
    end: int
    missing: int


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What the store holds for one series."""

    key: SeriesKey
    rows: int
    first: int | None
    last: int | None
    gaps: int
    missing: int
    source: str

    @property
    def is_simulated(self) -> bool:
        return self.source.startswith("simulator")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of an upsert: rows inserted as new, rows whose values changed, rows unchanged."""

    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged
