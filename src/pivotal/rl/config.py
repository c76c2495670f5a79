"""Settings of the trading environment: market, window, episode, reward and the simulator.

``settings`` is the same :class:`~pivotal.trading.settings.TradingSettings` the backtester
takes (broker + risk + ATR period), so an agent trains against exactly the fills, fees,
sizing and limits a backtest of its actions would see.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pivotal.config.models import StrictModel
from pivotal.core.timeframes import Timeframe
from pivotal.trading.settings import TradingSettings

__all__ = ["EnvConfig", "RewardKind"]

RewardKind = Literal["pnl", "log_return", "differential_sharpe"]


class EnvConfig(StrictModel):
    """One :class:`~pivotal.rl.env.TradingEnv`'s settings (unknown keys refused).

    - ``symbol``: the traded market (``"BTC/USDT"``); ``timeframe``: the anchor: one env
      step is one anchor candle; ``streams``: further timeframes in the observation.
    - ``frames``: candles per stream in the observation window.
    - ``episode_length``: steps per episode (truncated after that many).
    - ``random_start``: episodes start at a random step of the env's range (from the env's
      seeded generator), else sequentially (each reset continues where the last ended).
    - ``reward``: ``"pnl"`` (Δequity / initial cash), ``"log_return"`` (log of the equity
      ratio) or ``"differential_sharpe"`` (Moody & Saffell, adaptation rate ``dsr_eta``).
    - ``drawdown_penalty`` × increase of the drawdown from the episode's equity peak (a
      share), and ``turnover_penalty`` × traded notional / equity, are subtracted.
    """

    symbol: str = "BTC/USDT"
    timeframe: str = "1m"
    streams: tuple[str, ...] = ()
    frames: int = Field(default=32, ge=1, le=100_000)
    episode_length: int = Field(default=1440, ge=1)
    random_start: bool = True
    reward: RewardKind = "log_return"
    drawdown_penalty: float = Field(default=0.0, ge=0.0)
    turnover_penalty: float = Field(default=0.0, ge=0.0)
    dsr_eta: float = Field(default=0.01, gt=0.0, lt=1.0)
    settings: TradingSettings = Field(default_factory=TradingSettings)

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if "/" not in value or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"symbol must look like 'BTC/USDT', got {value!r}")
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return str(Timeframe.parse(value))

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(Timeframe.parse(v)) for v in value)

    @field_validator("drawdown_penalty", "turnover_penalty")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"penalties must be finite numbers, got {value!r}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> EnvConfig:
        names = (self.timeframe, *self.streams)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"timeframe and streams repeat {', '.join(repeated)}; name each timeframe once "
                "(streams are the timeframes besides the anchor)"
            )
        return self

    @property
    def timeframes(self) -> tuple[Timeframe, ...]:
        """Anchor first, then the streams: the order they are encoded in."""
        return tuple(Timeframe.parse(t) for t in (self.timeframe, *self.streams))
