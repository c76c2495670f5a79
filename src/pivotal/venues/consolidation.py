"""The collector's multi-exchange book: venue books in, 1s consolidated COB and heatmap out.

:class:`ConsolidationTap` feeds every book item of the consolidated venues into one
:class:`~pivotal.features.orderbook.consolidated.ConsolidatedBook` per symbol. Before an
update stamped ``t`` is applied, the seconds ``T <= t`` not yet sampled are snapshotted (the
:class:`~pivotal.features.orderbook.cob.COBSampler` rule: the snapshot at ``T`` holds only
updates before ``T``), so the consolidated 1s series has no look-ahead either. Each snapshot
becomes a combined :class:`~pivotal.core.types.COBData` (stored under the exchange id
``consolidated``, its source naming the venues that contributed) and a row of the symbol's
:class:`~pivotal.features.orderbook.heatmap.RollingHeatmap` (time × price, per venue and
combined) that models and the dashboard read.

Times: venue books are stamped with the venue's event time (the local exchange gives every
venue the same market clock; live venues' clocks agree to well under a second, which the
staleness rule of the consolidated book absorbs).
"""

from __future__ import annotations

from collections.abc import Sequence

from pivotal.core.symbols import Symbol
from pivotal.core.types import COBData
from pivotal.features.orderbook.cob import COBConfig
from pivotal.features.orderbook.consolidated import (
    ConsolidatedBooks,
    ConsolidatedConfig,
    ConsolidatedSnapshot,
)
from pivotal.features.orderbook.heatmap import Heatmap, RollingHeatmap
from pivotal.venues.stream_events import BookItem

__all__ = ["CONSOLIDATED_EXCHANGE", "ConsolidationTap"]

#: The exchange id consolidated COB snapshots are stored under.
CONSOLIDATED_EXCHANGE = "consolidated"


class ConsolidationTap:
    """Consolidated books and heatmaps for ``symbols`` over ``venues`` (module docstring)."""

    def __init__(
        self,
        symbols: Sequence[Symbol | str],
        venues: Sequence[str],
        cob: COBConfig | None = None,
        *,
        stale_after_ms: int = 5_000,
        heatmap_rows: int = 3_600,
    ) -> None:
        self.venues = tuple(v.lower() for v in venues)
        self.symbols = tuple(Symbol.parse(s) for s in symbols)
        config = ConsolidatedConfig(cob=cob or COBConfig(), stale_after_ms=stale_after_ms)
        self.books = ConsolidatedBooks(self.symbols, self.venues, config)
        width = 2 * config.cob.buckets + 1
        self._heatmaps = {s: RollingHeatmap(heatmap_rows, width, self.venues) for s in self.symbols}
        self.snapshots = 0

    def on_book(self, item: BookItem) -> list[tuple[COBData, str]]:
        """Apply one venue book; returns the consolidated snapshots (with their source label)
        of the seconds that closed before it."""
        if item.exchange not in self.venues or item.symbol not in self._heatmaps:
            return []
        time_ms = item.time_ms
        if time_ms is None:
            return []  # no exchange time (ccxt's first REST snapshot): the next update has one
        book = self.books.book(item.symbol)
        out = [self._keep(s) for s in book.advance(time_ms)]
        self.books.update(
            item.exchange,
            item.symbol,
            item.bids,
            item.asks,
            time_ms,
            nonce=item.nonce,
            received_ms=time_ms,
        )
        return out

    def _keep(self, snapshot: ConsolidatedSnapshot) -> tuple[COBData, str]:
        self._heatmaps[snapshot.symbol].push(snapshot)
        self.snapshots += 1
        source = f"{CONSOLIDATED_EXCHANGE}:{'+'.join(snapshot.contributors)}"
        return snapshot.to_cob(), source

    def heatmap(
        self, symbol: Symbol | str, value: str = "total_volume", venue: str | None = None
    ) -> Heatmap:
        """The rolling time × price matrix of ``symbol`` (combined, or one ``venue``'s row)."""
        return self._heatmaps[Symbol.parse(symbol)].matrix(value, venue=venue)
