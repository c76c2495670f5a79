"""Seed 003's data models as frozen, typed dataclasses that do no I/O.

Times are UTC milliseconds since the epoch everywhere (``timestamp``); ``.time`` gives an
aware ``datetime`` for display. Constructors refuse NaN or non-positive prices and negative
quantities, so a bad value is caught where it enters, not three layers later.
Bulk data never travels as lists of these objects: use :class:`~pivotal.core.candles.Candles`
and :class:`~pivotal.core.trades.Trades` for that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe


def _check_timestamp(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{where}.timestamp must be UTC milliseconds as int, got {value!r}")
    if value < 0:
        raise ValueError(f"{where}.timestamp must not be negative, got {value}")


def _check_price(value: float, name: str, where: str) -> None:
    if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(value):
        raise ValueError(f"{where}.{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{where}.{name} must be positive, got {value}")


def _check_quantity(value: float, name: str, where: str) -> None:
    if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(value):
        raise ValueError(f"{where}.{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{where}.{name} must not be negative, got {value}")


def _check_unit(value: float, name: str, where: str) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}.{name} must lie in [0, 1], got {value!r}")


def _as_time(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def _frozen_mapping(value: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value or {}))


class TradeSide(StrEnum):
    """The aggressor's side of a trade."""

    BUY = "buy"
    SELL = "sell"


class Action(StrEnum):
    """A trading decision. CLOSE flattens the position (seed 000's fourth action)."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    CLOSE = "CLOSE"

    @classmethod
    def parse(cls, text: str | Action) -> Action:
        if isinstance(text, Action):
            return text
        try:
            return cls(str(text).upper())
        except ValueError:
            raise ValueError(
                f"unknown action {text!r}; allowed: {', '.join(a.value for a in cls)}"
            ) from None


class PivotKind(StrEnum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class MarketTick:
    """One trade. ``side`` is the aggressor's side; ``is_buyer_maker`` implies ``side == SELL``."""

    symbol: Symbol
    timestamp: int
    price: float
    quantity: float
    side: TradeSide
    trade_id: str
    is_buyer_maker: bool
    raw_data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "MarketTick")
        _check_price(self.price, "price", "MarketTick")
        _check_quantity(self.quantity, "quantity", "MarketTick")
        object.__setattr__(self, "side", TradeSide(self.side))
        expected = TradeSide.SELL if self.is_buyer_maker else TradeSide.BUY
        if self.side is not expected:
            raise ValueError(
                f"MarketTick side {self.side.value!r} contradicts "
                f"is_buyer_maker={self.is_buyer_maker}"
            )
        object.__setattr__(self, "raw_data", _frozen_mapping(self.raw_data))

    @property
    def volume(self) -> float:
        """Quote-asset volume (price × quantity)."""
        return self.price * self.quantity

    @property
    def time(self) -> datetime:
        return _as_time(self.timestamp)


@dataclass(frozen=True, slots=True)
class OHLCVBar:
    """One candle; ``timestamp`` is the open time. For many candles use ``Candles``."""

    symbol: Symbol
    timeframe: Timeframe
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    indicators: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "OHLCVBar")
        for name in ("open", "high", "low", "close"):
            _check_price(getattr(self, name), name, "OHLCVBar")
        _check_quantity(self.volume, "volume", "OHLCVBar")
        if (
            not self.low <= min(self.open, self.close)
            or not max(self.open, self.close) <= self.high
        ):
            raise ValueError(
                f"OHLCVBar at {self.timestamp} violates low <= open, close <= high: "
                f"o={self.open} h={self.high} l={self.low} c={self.close}"
            )
        object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))
        object.__setattr__(self, "indicators", _frozen_mapping(self.indicators))

    @classmethod
    def from_candles(
        cls, candles: Candles, i: int, symbol: Symbol, timeframe: Timeframe
    ) -> OHLCVBar:
        return cls(
            symbol,
            timeframe,
            int(candles.timestamp[i]),
            float(candles.open[i]),
            float(candles.high[i]),
            float(candles.low[i]),
            float(candles.close[i]),
            float(candles.volume[i]),
        )

    @property
    def time(self) -> datetime:
        return _as_time(self.timestamp)


@dataclass(frozen=True, slots=True)
class PivotPoint:
    """A Williams market-structure pivot.

    ``timestamp`` is the extreme bar's open time; ``confirmed_at`` is the time (UTC ms) at which
    the pivot becomes known: the close of its confirm bar. Anything acting at time t may use
    the pivot only when ``confirmed_at <= t``.
    """

    symbol: Symbol
    timestamp: int
    confirmed_at: int
    price: float
    kind: PivotKind
    level: int
    confidence: float = 1.0

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "PivotPoint")
        _check_timestamp(self.confirmed_at, "PivotPoint")
        if self.confirmed_at < self.timestamp:
            raise ValueError(
                f"PivotPoint confirmed_at {self.confirmed_at} precedes its extreme {self.timestamp}"
            )
        _check_price(self.price, "price", "PivotPoint")
        object.__setattr__(self, "kind", PivotKind(self.kind))
        if not 1 <= self.level <= 10:
            raise ValueError(f"PivotPoint.level must be in 1..10, got {self.level}")
        _check_unit(self.confidence, "confidence", "PivotPoint")


@dataclass(frozen=True, slots=True)
class TradingAction:
    """A decision to act, from a model or the orchestrator, before risk checks and sizing."""

    symbol: Symbol
    timestamp: int
    action: Action
    confidence: float
    source: str
    price: float | None = None
    quantity: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "TradingAction")
        object.__setattr__(self, "action", Action.parse(self.action))
        _check_unit(self.confidence, "confidence", "TradingAction")
        if not self.source:
            raise ValueError("TradingAction.source must name the model or component that decided")
        if self.price is not None:
            _check_price(self.price, "price", "TradingAction")
        if self.quantity is not None:
            _check_quantity(self.quantity, "quantity", "TradingAction")


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """Seed 003's extensible model output.

    Standard ``predictions`` keys: ``action`` (BUY/SELL/HOLD), ``action_confidence``,
    ``direction_vector`` in [-1, 1], ``direction_confidence``, ``probabilities``
    (action → probability). ``hidden_states`` feed other models (cross-model feeding).
    """

    model_type: str
    model_name: str
    symbol: Symbol
    timestamp: int
    confidence: float
    predictions: Mapping[str, Any]
    hidden_states: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "ModelOutput")
        _check_unit(self.confidence, "confidence", "ModelOutput")
        if not self.model_name:
            raise ValueError("ModelOutput.model_name must not be empty")
        object.__setattr__(self, "predictions", _frozen_mapping(self.predictions))
        if self.hidden_states is not None:
            object.__setattr__(self, "hidden_states", _frozen_mapping(self.hidden_states))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    @property
    def action(self) -> Action | None:
        value = self.predictions.get("action")
        return None if value is None else Action.parse(value)


@dataclass(frozen=True, slots=True, eq=False)
class COBData:
    """Consolidated order book at one instant, bucketed around the mid price.

    Arrays are indexed by bucket, lowest price first: ``bucket_prices[i]`` is the lower edge
    of bucket i (``2 * n + 1`` buckets for ±n around the current price). ``imbalance`` is
    ``(bid - ask) / (bid + ask)`` per bucket (0 where both are 0). ``imbalance_ma`` maps a
    window in seconds (1, 5, 15, 60) to moving averages for the central buckets.
    """

    symbol: Symbol
    timestamp: int
    current_price: float
    bucket_size: float
    bucket_prices: npt.NDArray[np.float64]
    bid_volume: npt.NDArray[np.float64]
    ask_volume: npt.NDArray[np.float64]
    imbalance: npt.NDArray[np.float64]
    volume_weighted_prices: npt.NDArray[np.float64]
    imbalance_ma: Mapping[int, npt.NDArray[np.float64]] = field(default_factory=dict)
    order_flow_metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "COBData")
        _check_price(self.current_price, "current_price", "COBData")
        _check_price(self.bucket_size, "bucket_size", "COBData")
        n = len(self.bucket_prices)
        for name in ("bid_volume", "ask_volume", "imbalance", "volume_weighted_prices"):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != (n,):
                raise ValueError(f"COBData.{name} must have shape ({n},), got {array.shape}")
            if name.endswith("volume") and np.any(array < 0):
                raise ValueError(f"COBData.{name} must not be negative")
            object.__setattr__(self, name, array)
        object.__setattr__(self, "imbalance_ma", _frozen_mapping(self.imbalance_ma))
        object.__setattr__(self, "order_flow_metrics", _frozen_mapping(self.order_flow_metrics))

    @property
    def price_buckets(self) -> dict[float, dict[str, float]]:
        """Seed 003's dictionary view: bucket price → {bid_volume, ask_volume, imbalance}."""
        return {
            float(p): {"bid_volume": float(b), "ask_volume": float(a), "imbalance": float(i)}
            for p, b, a, i in zip(
                self.bucket_prices, self.bid_volume, self.ask_volume, self.imbalance, strict=True
            )
        }


@dataclass(frozen=True, slots=True, eq=False)
class BaseDataInput:
    """The standardized input every model receives (seed 003).

    ``ohlcv`` maps a timeframe to the latest candles (300 by default, oldest first) of the
    primary symbol; ``reference_ohlcv`` holds the reference symbol's candles (BTC's 1s bars
    for an ETH model). Everything in it is known at ``timestamp``: pivots included only when
    confirmed, candles only when closed.
    """

    symbol: Symbol
    timestamp: int
    ohlcv: Mapping[Timeframe, Candles]
    reference_symbol: Symbol | None = None
    reference_ohlcv: Mapping[Timeframe, Candles] = field(default_factory=dict)
    cob_data: COBData | None = None
    technical_indicators: Mapping[str, float] = field(default_factory=dict)
    pivot_points: tuple[PivotPoint, ...] = ()
    last_predictions: Mapping[str, ModelOutput] = field(default_factory=dict)
    market_microstructure: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp, "BaseDataInput")
        late = [p for p in self.pivot_points if p.confirmed_at > self.timestamp]
        if late:
            raise ValueError(
                f"BaseDataInput at {self.timestamp} holds {len(late)} pivot(s) not yet confirmed "
                f"(first confirmed at {late[0].confirmed_at}); pass only pivots known at that time"
            )
        for mapping_name in ("ohlcv", "reference_ohlcv"):
            mapping = getattr(self, mapping_name)
            for tf, candles in mapping.items():
                if (
                    len(candles)
                    and int(candles.timestamp[-1]) + Timeframe.parse(tf).ms > self.timestamp
                ):
                    raise ValueError(
                        f"BaseDataInput.{mapping_name}[{tf}] ends with a candle that closes after "
                        f"{self.timestamp}; pass only closed candles"
                    )
            object.__setattr__(
                self,
                mapping_name,
                _frozen_mapping({Timeframe.parse(tf): c for tf, c in mapping.items()}),
            )
        object.__setattr__(self, "pivot_points", tuple(self.pivot_points))
        for name in ("technical_indicators", "last_predictions", "market_microstructure"):
            object.__setattr__(self, name, _frozen_mapping(getattr(self, name)))

    def frames(self, timeframe: Timeframe | str) -> Candles:
        return self.ohlcv.get(Timeframe.parse(timeframe), Candles.empty())

    @property
    def ohlcv_1s(self) -> Candles:
        return self.frames(Timeframe.S1)

    @property
    def ohlcv_1m(self) -> Candles:
        return self.frames(Timeframe.M1)

    @property
    def ohlcv_1h(self) -> Candles:
        return self.frames(Timeframe.H1)

    @property
    def ohlcv_1d(self) -> Candles:
        return self.frames(Timeframe.D1)
