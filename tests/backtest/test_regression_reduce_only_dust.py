"""Regression: a reduce-only exit left float dust (4e-16 BTC) when a protective stop had been
sized at decision time and the entry filled at a gapped open. Every later CLOSE was then
refused as below the lot size and every BUY answered "already long": the strategy stopped
trading for good (BTC 1h, sma_cross 10/30, fraction 0.9, 2 % stop, 4 % take-profit, from
January 2018)."""

from __future__ import annotations

import pandas as pd
import pytest

from pivotal.backtest.api import backtest
from pivotal.core.candles import Candles
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.risk import RiskConfig
from pivotal.trading.settings import TradingSettings


def test_protective_exit_leaves_no_dust_and_trading_goes_on() -> None:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet")
    candles = Candles.from_frame(frame.reset_index(drop=True).iloc[:20_000])
    settings = TradingSettings(
        risk=RiskConfig(fraction=0.9, stop_loss_pct=0.02, take_profit_pct=0.04)
    )
    result = backtest(
        {"BTC/USDT": candles},
        "sma_cross",
        {"fast": 10, "slow": 30},
        timeframe="1h",
        settings=settings,
    )
    # trades keep coming through the whole span, not only before the first dust exit
    entries = result.trades["entry_bar"].to_numpy()
    assert entries.max() > 0.9 * len(candles)
