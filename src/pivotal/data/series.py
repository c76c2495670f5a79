"""Identity and summaries of stored series."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9_]{1,39}$")

CHANGE_TOLERANCE = 1e-9
"""A stored candle counts as *changed* by a write only when some open, high, low, close or
volume differs by more than this, relative to the larger of the two values; smaller
differences are float rounding (e.g. a volume summed in another order) and leave the stored
row untouched."""

DERIVED_SOURCE_PREFIXES = ("resampled:", "aggregated:")
"""Sources of candles pivotal computed from other stored data. Every other source (a file
import, a download, a legacy store's empty label) is treated as the exchange's own candles,
which a derived candle never replaces unless the user asks for it."""


def is_derived_source(source: str) -> bool:
    """Whether candles with this source label were computed by pivotal (resampled from a
    lower timeframe, aggregated from trades) rather than published by the exchange."""
    return source.startswith(DERIVED_SOURCE_PREFIXES)


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
class SourceShare:
    """How many stored candles of one series came from one source."""

    source: str
    rows: int


@dataclass(frozen=True, slots=True)
class SourceRange:
    """A run of consecutive stored candles (by open time) that came from one source."""

    source: str
    first: int
    last: int
    rows: int


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What the store holds for one series. ``gaps`` counts missing runs longer than the
    default of :mod:`pivotal.core.gaps`; ``missing`` counts every missing bar between the first
    and the last, ``missing_runs`` every run of them (gaps or not). ``sources`` counts rows per
    source (largest first); ``source`` is a one-line summary of it."""

    key: SeriesKey
    rows: int
    first: int | None
    last: int | None
    gaps: int
    missing: int
    source: str
    sources: tuple[SourceShare, ...] = ()
    missing_runs: int = 0

    @property
    def is_simulated(self) -> bool:
        if self.sources:
            return any(s.source.startswith("simulator") for s in self.sources)
        return self.source.startswith("simulator")


def describe_sources(shares: tuple[SourceShare, ...] | list[SourceShare]) -> str:
    """``import:x.parquet`` for one source; ``import:x.parquet 93 %, resampled:1m 7 %`` for
    several (largest first; a share that rounds to 0 shows as ``<1 %``)."""
    shares = [s for s in shares if s.rows]
    if not shares:
        return ""
    if len(shares) == 1:
        return shares[0].source or "-"
    total = sum(s.rows for s in shares)
    parts = []
    for s in sorted(shares, key=lambda s: (-s.rows, s.source)):
        pct = 100 * s.rows / total
        parts.append(f"{s.source or '-'} {'<1' if pct < 0.5 else f'{pct:.0f}'} %")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of an upsert: rows inserted as new, rows whose values changed (beyond
    :data:`CHANGE_TOLERANCE`) and were replaced, rows unchanged, and rows ``kept``: derived
    candles that differ from the exchange's stored ones and were not written (no overwrite)."""

    inserted: int
    updated: int
    unchanged: int
    kept: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.kept
