"""A symbol's closed bars as a feed delivered them, for a run without a preloaded history."""

from __future__ import annotations

import numpy as np

from pivotal.core.candles import CANDLE_COLUMNS, Candles

__all__ = ["CandleHistory"]

_FIRST_ROWS = 1024


class CandleHistory:
    """Bars in arrival order (the first is bar 0), in columns grown by doubling.

    :meth:`view` is a read-only :class:`Candles` over the rows so far (no copy). Memory
    grows with the run: a long live run should pass the kernel a bounded ``candles_view``
    (the orchestrator's frame) instead.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._rows = 0
        self._columns = {
            name: np.empty(_FIRST_ROWS, dtype=np.int64 if name == "timestamp" else np.float64)
            for name in CANDLE_COLUMNS
        }
        self._whole = self._freeze()

    def __len__(self) -> int:
        return self._rows

    def append(self, candle: Candles) -> int:
        """Keep the one-row ``candle``; its bar index. ``ValueError`` unless it opens after
        the previous bar."""
        if len(candle) != 1:
            raise ValueError(f"a closed bar is one candle, got {len(candle)} for {self.symbol}")
        opened = int(candle.timestamp[0])
        rows = self._rows
        if rows and opened <= int(self._columns["timestamp"][rows - 1]):
            raise ValueError(
                f"{self.symbol} bar opened at {opened} arrived after the bar opened at "
                f"{int(self._columns['timestamp'][rows - 1])}: bars must come oldest first, once"
            )
        if rows == len(self._columns["timestamp"]):
            for name, column in self._columns.items():
                grown = np.empty(2 * len(column), dtype=column.dtype)
                grown[:rows] = column
                self._columns[name] = grown
            self._whole = self._freeze()
        for name, column in self._columns.items():
            column[rows] = getattr(candle, name)[0]
        self._rows = rows + 1
        return rows

    def view(self) -> Candles:
        return self._whole.head(self._rows)

    def _freeze(self) -> Candles:
        views = []
        for name in CANDLE_COLUMNS:
            view = self._columns[name][:]
            view.flags.writeable = False
            views.append(view)
        return Candles(*views)
