"""Tables shared by ``data list`` and ``demo``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from pivotal.apps.cli.common import format_time
from pivotal.data.series import SeriesInfo
from pivotal.data.statistics import SeriesStats


def series_table(
    infos: Sequence[SeriesInfo],
    title: str,
    stats: dict[str, SeriesStats] | None = None,
) -> Table:
    """One row per stored series; with ``stats`` (keyed by ``str(info.key)``) adds statistics."""
    table = Table(title=title, title_justify="left")
    for col in ("exchange", "symbol", "tf", "first (UTC)", "last (UTC)", "rows", "gaps", "missing"):
        table.add_column(col, justify="right" if col in ("rows", "gaps", "missing") else "left")
    if stats is not None:
        for col in ("last close", "return", "ann. vol", "max DD", "zero-vol"):
            table.add_column(col, justify="right")
    table.add_column("source")
    for info in infos:
        row = [
            info.key.exchange,
            str(info.key.symbol),
            info.key.timeframe.value,
            format_time(info.first),
            format_time(info.last),
            f"{info.rows:,}",
            f"{info.gaps:,}" if info.gaps else "0",
            f"{info.missing:,}",
        ]
        if stats is not None:
            s = stats.get(str(info.key))
            row += (
                [
                    f"{s.last_close:,.2f}",
                    f"{s.total_return:+.1%}",
                    f"{s.annual_volatility:.0%}",
                    f"{s.max_drawdown:.0%}",
                    f"{s.zero_volume_candles:,}",
                ]
                if s
                else ["-"] * 5
            )
        source = info.source or "-"
        row.append(f"[bold yellow]{source}[/]" if info.is_simulated else source)
        table.add_row(*row)
    return table
