"""Tables shared by ``data list`` and ``demo``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table

from pivotal.apps.cli.common import format_time
from pivotal.data.series import SeriesInfo
from pivotal.data.statistics import SeriesStats


def series_table(infos: Sequence[SeriesInfo], title: str) -> Table:
    """One row per stored series: span, rows, gaps and where it came from."""
    table = Table(title=title, title_justify="left")
    for col in ("exchange", "symbol", "tf", "first (UTC)", "last (UTC)", "rows", "gaps", "missing"):
        table.add_column(col, justify="right" if col in ("rows", "gaps", "missing") else "left")
    table.add_column("source")
    for info in infos:
        source = info.source or "-"
        table.add_row(
            info.key.exchange,
            str(info.key.symbol),
            info.key.timeframe.value,
            format_time(info.first),
            format_time(info.last),
            f"{info.rows:,}",
            f"{info.gaps:,}",
            f"{info.missing:,}",
            f"[bold yellow]{source}[/]" if info.is_simulated else source,
        )
    return table


def stats_table(infos: Sequence[SeriesInfo], stats: Mapping[str, SeriesStats], title: str) -> Table:
    """Basic statistics per series (see :class:`~pivotal.data.statistics.SeriesStats`)."""
    table = Table(title=title, title_justify="left")
    for col in ("exchange", "symbol", "tf"):
        table.add_column(col)
    for col in (
        "first open",
        "last close",
        "low",
        "high",
        "return",
        "ann. vol",
        "max DD",
        "mean volume",
        "zero-vol bars",
    ):
        table.add_column(col, justify="right")
    for info in infos:
        s = stats[str(info.key)]
        exchange = info.key.exchange
        table.add_row(
            f"[bold yellow]{exchange}[/]" if info.is_simulated else exchange,
            str(info.key.symbol),
            info.key.timeframe.value,
            f"{s.first_open:,.2f}",
            f"{s.last_close:,.2f}",
            f"{s.low:,.2f}",
            f"{s.high:,.2f}",
            f"{s.total_return:+.1%}",
            f"{s.annual_volatility:.0%}",
            f"{s.max_drawdown:.0%}",
            f"{s.mean_volume:,.1f}",
            f"{s.zero_volume_candles:,}",
        )
    return table
