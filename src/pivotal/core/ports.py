"""The ports: the small protocols at pivotal's boundaries.

- :class:`Broker` is the only way anything above the trading layer reaches an exchange.
  The simulated broker (backtest and paper) and each exchange adapter (live) implement it,
  so strategies, the risk manager and the orchestrator run the same code in every mode.
- :class:`DecisionSource` is what the backtester and the orchestrator call for decisions:
  a reference strategy, or the orchestrator's model ensemble.
- :class:`MarketFeed` delivers market events (:mod:`pivotal.core.events`) to the runtime:
  a replay feed over stored candles, or an exchange's live streams.

Fills and order changes are *pulled*: ``Broker.drain_events()`` returns everything that
happened since the last call, oldest first, so one loop owns all state (no callbacks
re-entering the engine from another thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from pivotal.core.orders import AccountSnapshot, Fill, Order, OrderEvent, OrderRequest

if TYPE_CHECKING:
    from pivotal.core.candles import Candles
    from pivotal.core.events import MarketEvent
    from pivotal.core.timeframes import Timeframe
    from pivotal.core.types import TradingAction

BrokerEvent = OrderEvent | Fill

#: What :meth:`DecisionSource.next_wake` returns when the source never wants to decide again
#: for a symbol (a time after any close: 2**63 - 1 ms).
NEVER: Final[int] = 2**63 - 1


@runtime_checkable
class Broker(Protocol):
    """Submit, cancel, and read orders, positions and balances; fills arrive as events.

    ``submit`` never raises for a business refusal (insufficient funds, unknown symbol,
    reduce-only while flat): it returns the order in status ``REJECTED`` with the reason,
    and the account is untouched. It raises ``ValueError`` only for a malformed request
    and ``TransientError``/``OperationalError`` for infrastructure failures.
    """

    def submit(self, request: OrderRequest) -> Order: ...

    def cancel(self, client_order_id: str) -> Order: ...

    def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    def order(self, client_order_id: str) -> Order: ...

    def account(self) -> AccountSnapshot: ...

    def drain_events(self) -> list[BrokerEvent]: ...


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What a decision source may see at ``timestamp`` (the close of ``bar_index``).

    ``candles`` holds the symbol's base-timeframe candles up to and including the bar that
    just closed; ``higher`` holds other timeframes' candles whose close is at or before
    ``timestamp``. Nothing later is reachable from here: that is the no-look-ahead rule.
    """

    timestamp: int
    symbol: str
    bar_index: int
    candles: Candles
    account: AccountSnapshot
    open_orders: tuple[Order, ...] = ()
    higher: Mapping[Timeframe, Candles] = field(default_factory=dict)

    @property
    def position(self) -> float:
        """Signed position in base units (0.0 when flat)."""
        pos = self.account.positions.get(self.symbol)
        return 0.0 if pos is None else pos.quantity


@runtime_checkable
class DecisionSource(Protocol):
    """Turns what is known at a bar's close into trading actions.

    ``prepare`` receives a symbol's full candle series once before the run so a strategy
    can compute its *causal* indicators in bulk (each value at bar i uses bars ≤ i only).

    **Wake-ups are keyed by time.** ``next_wake(symbol, now_ms)`` returns a UTC ms close
    time ``>= now_ms``: ``decide`` runs next at the first of the symbol's bars whose close is
    at or after it. A source that needs every bar returns ``now_ms``; one that is done
    returns :data:`NEVER`. The runtime asks first with the close of the symbol's first bar
    past the warm-up (``warmup_bars()`` counts bars: decisions start at bar index
    ``warmup_bars()``), then after each decision (or gap close) at a close ``c`` with
    ``c + 1``. The backtest engine skips the bars in between, which is what makes signal
    strategies fast; fills, stops and equity are still computed for every bar. A live loop
    asks the same question, so it needs no bar count that only a replay knows.
    """

    name: str

    def warmup_bars(self) -> int: ...

    def prepare(self, symbol: str, candles: Candles) -> None: ...

    def next_wake(self, symbol: str, now_ms: int) -> int: ...

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]: ...


@runtime_checkable
class MarketFeed(Protocol):
    """The venue edge that produces market events for the runtime's loop.

    ``next_events()`` returns the events of the next event time, every symbol and stream
    that has one then, in a fixed order (base-timeframe candles of the traded symbols first,
    then other streams); ``None`` when the feed has finished. An empty sequence means
    nothing happened (a heartbeat). A replay feed first moves its
    :class:`~pivotal.core.clock.ReplayClock` to that time; a live feed blocks until the
    events arrive (the wall clock is then already past them).
    """

    def next_events(self) -> Sequence[MarketEvent] | None: ...
