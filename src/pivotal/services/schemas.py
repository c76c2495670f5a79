"""The JSON shapes of the query and command layer: what the API returns and accepts.

Every model is frozen and refuses unknown fields, so the OpenAPI spec (generated from these)
is exact. Times are UTC milliseconds; prices in the quote currency; quantities in the base
asset. Series are columnar (one list per column) so a 1,500-bar answer is a few lists, not
1,500 objects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Alert",
    "Balance",
    "Bars",
    "CandlesPayload",
    "ClosedTrade",
    "CobPayload",
    "CommandResult",
    "Controls",
    "DecisionRow",
    "EntriesCommand",
    "EquityPayload",
    "FillRow",
    "ForceExitCommand",
    "HealthPayload",
    "KillCommand",
    "MarkerRow",
    "ModelState",
    "NodeInfo",
    "OrderRow",
    "PivotMark",
    "PivotPrediction",
    "PositionRow",
    "ProcessCommand",
    "ProcessState",
    "RiskPayload",
    "StreamHealth",
    "Summary",
    "ThresholdsCommand",
]

NodeKind = Literal["backtest", "paper", "live"]
NodeStatus = Literal["running", "stopping", "stopped", "finished"]
ProcessName = Literal["streams", "inference", "learning", "trading"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- nodes -----------------------------------------------------------------------------------
class NodeInfo(_Model):
    """One node the server shows: a running session, or a finished run read from disk."""

    id: str = Field(description="URL-safe id, unique within this server")
    name: str
    kind: NodeKind
    status: NodeStatus
    exchange: str
    symbols: list[str]
    timeframes: list[str] = Field(description="the timeframes with candles, e.g. 1s 1m 1h 1d")
    read_only: bool = Field(description="true for a finished run: commands are refused")
    source: str = Field(description="what the node was read from (run file, journal, run id)")
    started_ms: int | None = None
    last_ms: int | None = None


class Summary(_Model):
    """Closed trades and balance at a glance (one row of the nodes overview)."""

    node: str
    currency: str
    balance: float = Field(description="cash in the quote currency")
    equity: float | None = None
    pnl: float = Field(description="equity minus the starting equity")
    pnl_pct: float | None = None
    drawdown_pct: float | None = Field(None, description="current drawdown from the peak, %")
    max_drawdown_pct: float | None = None
    closed_trades: int = 0
    win_rate: float | None = Field(None, description="winning closed trades / closed trades")
    open_positions: int = 0
    open_orders: int = 0
    last_ms: int | None = None
    entries_stopped: bool = False
    killed: bool = False


# -- market data -----------------------------------------------------------------------------
class Bars(_Model):
    """Candles, columnar; ``t`` is each candle's open time."""

    t: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


class PivotMark(_Model):
    """A Williams pivot (level 1..5) as known at ``confirmed_t`` (its confirming bar's close)."""

    level: int = Field(ge=1, le=5)
    kind: Literal["high", "low"]
    t: int
    price: float
    confirmed_t: int


class PivotPrediction(_Model):
    """The PivotCNN's predicted next pivot, drawn as a line from the last pivot of its level."""

    model: str
    level: int = Field(ge=1, le=5)
    kind: Literal["high", "low"]
    from_t: int
    from_price: float
    t: int = Field(description="the predicted pivot's time (decision time + predicted bars)")
    price: float
    confidence: float = Field(ge=0.0, le=1.0)
    made_t: int = Field(description="when the prediction was made")


class MarkerRow(_Model):
    """A decision or fill drawn on a chart."""

    t: int
    kind: Literal["decision", "fill"]
    side: Literal["buy", "sell", "close", "hold"]
    price: float | None
    confidence: float | None = None
    quantity: float | None = None
    label: str = ""


class CandlesPayload(_Model):
    node: str
    symbol: str
    timeframe: str
    bars: Bars
    pivots: list[PivotMark]
    predictions: list[PivotPrediction] = []
    markers: list[MarkerRow] = []


class CobPayload(_Model):
    """The consolidated order book heatmap (time × price) and the imbalance moving averages."""

    node: str
    symbol: str
    t: list[int]
    prices: list[float] = Field(description="the price grid (bucket centres)")
    bids: list[list[float]] = Field(description="per time row, size per price bucket")
    asks: list[list[float]]
    mid: list[float | None]
    imbalance: dict[str, list[float | None]] = Field(
        description="moving averages of the bid/ask imbalance, keyed by window (1s, 5s, 15s, 60s)"
    )


# -- models and decisions ----------------------------------------------------------------------
class ModelState(_Model):
    name: str
    symbol: str | None = None
    state: Literal["ready", "warming", "disabled", "error", "unknown"]
    t: int | None = Field(None, description="time of the latest output")
    action: str | None = None
    confidence: float | None = None
    output: dict[str, float | None] = Field(
        default_factory=dict, description="the latest output's named values"
    )
    accuracy: float | None = Field(None, description="rolling accuracy of resolved outputs")
    accuracy_n: int = 0
    gate_weight: float | None = None
    version: int | None = None
    error: str | None = None


class DecisionRow(_Model):
    t: int
    symbol: str
    action: str
    confidence: float | None = None
    p_buy: float | None = None
    p_sell: float | None = None
    p_hold: float | None = None
    executed: bool | None = None
    reason: str = ""
    weights: dict[str, float] = Field(default_factory=dict, description="each model's weight")


# -- trading -----------------------------------------------------------------------------------
class OrderRow(_Model):
    client_order_id: str
    symbol: str
    side: str
    type: str
    status: str
    quantity: float
    filled: float
    limit_price: float | None = None
    stop_price: float | None = None
    average_price: float | None = None
    created_ms: int | None = None
    updated_ms: int | None = None
    reason: str = ""


class FillRow(_Model):
    t: int
    symbol: str
    side: str
    price: float
    quantity: float
    fee: float = 0.0
    fee_asset: str | None = None
    client_order_id: str | None = None
    trade_id: str | None = None


class PositionRow(_Model):
    symbol: str
    quantity: float
    entry_price: float | None = None
    mark_price: float | None = None
    value: float | None = None
    unrealized_pnl: float | None = None


class Balance(_Model):
    asset: str
    free: float
    locked: float = 0.0
    total: float


class ClosedTrade(_Model):
    symbol: str
    side: Literal["long", "short"]
    quantity: float
    entry_t: int
    exit_t: int
    entry_price: float
    exit_price: float
    pnl: float
    pnl_pct: float | None = None
    fees: float = 0.0


class EquityPayload(_Model):
    node: str
    t: list[int]
    equity: list[float]
    drawdown_pct: list[float]


class Alert(_Model):
    t: int
    level: Literal["info", "warning", "error", "critical"]
    kind: str
    message: str


class RiskPayload(_Model):
    node: str
    metrics: dict[str, float | None] = Field(
        description="exposure, drawdown, daily PnL, VaR… as the risk manager computes them"
    )
    limits: dict[str, float | None]
    entries_stopped: bool
    breaker: str | None = None


# -- health ------------------------------------------------------------------------------------
class StreamHealth(_Model):
    venue: str
    symbol: str
    channel: str
    state: str
    messages: int = 0
    lag_ms: float | None = None
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    last_error: str | None = None


class ProcessState(_Model):
    enabled: bool
    state: str = Field(description="running, paused, stopped, finished, error")
    detail: str = ""


class HealthPayload(_Model):
    node: str
    streams: list[StreamHealth]
    processes: dict[str, ProcessState]
    errors: list[Alert] = []


# -- controls and commands ---------------------------------------------------------------------
class Controls(_Model):
    """What a user can change, as it is now."""

    node: str
    buy_threshold: float | None
    sell_threshold: float | None
    min_confidence: float | None
    entries_stopped: bool
    processes: dict[str, bool] = Field(description="streams, inference, learning, trading")
    killed: bool
    read_only: bool


class ThresholdsCommand(_Model):
    buy_threshold: float | None = Field(None, ge=0.0, le=1.0)
    sell_threshold: float | None = Field(None, ge=0.0, le=1.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)


class EntriesCommand(_Model):
    stopped: bool = Field(description="true: no new entries (exits still run)")


class ForceExitCommand(_Model):
    symbol: str


class KillCommand(_Model):
    confirm: Literal[True] = Field(description="must be true: the kill switch flattens everything")
    reason: str = Field("dashboard kill switch", max_length=200)


class ProcessCommand(_Model):
    process: ProcessName
    enabled: bool


class CommandResult(_Model):
    node: str
    command: str
    accepted: bool
    detail: str
    applied_ms: int | None = None
    controls: Controls | None = None
