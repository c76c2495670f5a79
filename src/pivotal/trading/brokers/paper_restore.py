"""A paper session's restart: the paper broker's state rebuilt from its journal.

Private to the paper broker (it sets the broker's account and ledger). At a restart:

- the account starts from the session's deposit (the ``session`` entry with ``balances``) and
  books every journaled fill in journal order, so balances, positions, average prices,
  realized PnL and fees are exactly those of the run before the stop;
- every journaled order is known again (``order(cid)`` answers; a resubmitted client id
  returns the old order instead of placing a second one), and the id counters continue
  after the highest journaled ids (no venue trade id is ever reused, so the journal's
  deduplication never merges two fills);
- orders still working at the stop are **cancelled**, journaled with the reason: the paper
  venue's book lived in the stopped process, so nothing could have filled them while it was
  down, and resting them again at a later price would invent fills the market never gave.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pivotal.core.orders import OrderStatus
from pivotal.trading.brokers.paper_account import SpotAccount
from pivotal.trading.brokers.paper_orders import PaperOrder

if TYPE_CHECKING:
    from pivotal.trading.brokers.paper_config import PaperBrokerConfig
    from pivotal.trading.brokers.paper_orders import PaperLedger
    from pivotal.trading.journal_state import JournalState

__all__ = ["RESTART_REASON", "restore_state"]

RESTART_REASON = (
    "cancelled at the paper session's restart: the simulated venue stopped with the process"
)


def _number(text: str | None, pattern: re.Pattern[str]) -> int:
    match = pattern.fullmatch(text or "")
    return int(match.group(1)) if match else 0


def restore_state(
    ledger: PaperLedger,
    config: PaperBrokerConfig,
    state: JournalState,
    deposit: float,
    now: int,
) -> tuple[SpotAccount, list[str]]:
    """The account rebuilt from ``state`` and ``ledger`` refilled (module docstring); with
    lines saying what was restored."""
    prefix = re.escape(ledger.prefix)
    order_no = re.compile(rf"{prefix}-o(\d+)")
    trade_no = re.compile(rf"{prefix}-t(\d+)")
    auto_no = re.compile(rf"{prefix}-(\d+)")
    account = SpotAccount(deposit, config.currency)
    fills = state.fills()
    for index, fill in enumerate(fills):
        account.apply(fill, index)
        account.mark(fill.symbol, fill.price, fill.timestamp)
    cancelled = []
    order_seq = auto = trades = 0
    for order in state.orders():
        work = PaperOrder(order, _number(order.order_id, order_no))
        work.quantity = float(order.quantity or 0.0)
        work.filled_qty = float(order.filled_quantity)
        ledger.orders[order.client_order_id] = work
        order_seq = max(order_seq, work.seq)
        auto = max(auto, _number(order.client_order_id, auto_no))
        if order.status.is_active:
            ledger.transition(work, OrderStatus.CANCELLED, RESTART_REASON, now)
            cancelled.append(order.client_order_id)
    for fill in fills:
        trades = max(trades, _number(fill.venue_trade_id, trade_no))
    ledger.resume(order_seq=order_seq, auto=auto, trades=trades)
    ledger.flush()
    lines = [
        f"paper account restored from the journal: {len(fills)} fill(s), "
        f"{len(ledger.orders)} order(s), quote {account.quote:,.2f}"
    ]
    if cancelled:
        lines.append(f"{len(cancelled)} order(s) working at the stop cancelled: {RESTART_REASON}")
    return account, lines
