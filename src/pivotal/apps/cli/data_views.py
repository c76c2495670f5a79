"""What ``pivotal data gaps`` and ``pivotal data resample`` print (kept apart from the commands)."""

from __future__ import annotations

import numpy as np
from rich.console import RenderableType
from rich.table import Table

from pivotal.apps.cli.common import format_time
from pivotal.core.gaps import coverage, find_series_gaps
from pivotal.core.timeframes import Timeframe
from pivotal.data.resample import CompleteBuckets
from pivotal.data.series import SeriesKey, WriteResult

SHORT_RUNS_SHOWN = 20
"""Missing runs too short to be gaps that ``data gaps`` lists before summarising the rest."""

PARTIAL_SHOWN = 5
"""Open times of skipped partial buckets that ``data resample`` names."""


def gaps_report(key: SeriesKey, timestamps: np.ndarray, max_missing: int) -> list[RenderableType]:
    """Every run of missing candles in ``timestamps`` (open times of one stored series), which
    of them are gaps under :mod:`pivotal.core.gaps` with ``max_missing``, and the coverage."""
    step = key.timeframe.ms
    runs = find_series_gaps(timestamps, step, max_missing_bars=0)
    cover = coverage(timestamps, step, max_missing_bars=max_missing)
    span = f"{format_time(int(timestamps[0]))} .. {format_time(int(timestamps[-1]))}"
    if not runs:
        return [f"{key} {span}: no missing candles ({len(timestamps):,} in a row)"]
    gaps = [r for r in runs if r.missing > max_missing]
    short = [r for r in runs if r.missing <= max_missing]
    table = Table(title=f"Missing candles in {key}", title_justify="left")
    for col in ("last before (UTC)", "first after (UTC)", "missing bars", "counts as"):
        table.add_column(col, justify="right" if col == "missing bars" else "left")
    shown = sorted(gaps + short[:SHORT_RUNS_SHOWN], key=lambda r: r.last_before)
    for run in shown:
        table.add_row(
            format_time(run.last_before),
            format_time(run.first_after),
            f"{run.missing:,}",
            "[bold]gap[/]" if run.missing > max_missing else "bridged",
        )
    lines: list[RenderableType] = [table]
    if len(short) > SHORT_RUNS_SHOWN:
        lines.append(f"... and {len(short) - SHORT_RUNS_SHOWN:,} more bridged runs not shown")
    lines.append(
        f"{key} {span}: {cover.present_bars:,} of {cover.expected_bars:,} bars present "
        f"({100 * cover.missing_share:.1f} % missing) in {len(runs):,} missing run(s), "
        f"{len(gaps):,} of them gaps (more than {max_missing} missing bars: backtests, training "
        f"and indicators restart after each; shorter runs are bridged)"
    )
    if cover.mostly_gaps:
        lines.append(f"[bold yellow]{key} is mostly gaps over {span}[/]")
    return lines


def resample_line(
    source: SeriesKey,
    target: Timeframe,
    built: CompleteBuckets,
    result: WriteResult,
) -> str:
    """One line per target timeframe: what was written (with ``--overwrite``, replaced
    exchange candles count as changed), kept and skipped."""
    parts = [
        f"{result.inserted:,} new",
        f"{result.updated:,} changed",
        f"{result.unchanged:,} unchanged",
    ]
    if result.kept:
        parts.append(
            f"[yellow]{result.kept:,} exchange candle(s) kept[/] (the resampled ones differ; "
            "--overwrite replaces them)"
        )
    line = (
        f"{source.symbol} {source.timeframe} → {target}: {len(built.candles):,} complete "
        f"candles ({', '.join(parts)})"
    )
    if built.skipped:
        named = ", ".join(format_time(int(t))[:16] for t in built.partial[:PARTIAL_SHOWN])
        more = ", …" if built.skipped > PARTIAL_SHOWN else ""
        line += (
            f"; {built.skipped:,} partial candle(s) skipped, source bars missing ({named}{more})"
        )
    return line
