"""Import one year of real 1m candles (525,600 rows) from Parquet and CSV, beside pandas.

Run: ``.venv/bin/python benchmarks/bench_import.py``. Needs ../shared/data (or
``$PIVOTAL_SHARED_DATA``): the first 525,600 rows of the real Binance BTC/USDT 1m file are
written to a temporary Parquet (zstd) and CSV file. Each figure is the best of 5 runs in
this process. "pivotal import" is :func:`pivotal.data.importers.import_files` into a fresh
DuckDB store: detect, parse, infer the series, validate, upsert (the store is opened
before the clock starts). Peers do the closest plain-pandas job: read the file and write
it back out as Parquet. Read-back is ``store.read_candles`` (to numpy) beside
``pandas.read_parquet`` of the same rows. Targets: import from Parquet < 3 s, read-back < 0.3 s.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import import_files, read_candle_file
from pivotal.data.series import SeriesKey
from pivotal.data.validation import validate_candles
from pivotal.testing import timing
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

ROWS = 525_600
REPEATS = 5
KEY = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)
IMPORT_TARGET_S = 3.0
READ_TARGET_S = 0.3


def best_of(run: Callable[[], object], setup: Callable[[], None] | None = None) -> float:
    """Fastest of ``REPEATS`` timed calls of ``run``; ``setup`` runs untimed before each."""
    return timing.best_of(run, REPEATS, setup=setup, warmup=False)


def timed_import(path: Path, work: Path) -> float:
    """Best time of importing ``path`` into a fresh store (a new file each run)."""
    runs = iter(range(REPEATS))
    stores: list[DuckDBStore] = []

    def fresh() -> None:
        for store in stores:
            store.close()
        stores[:] = [DuckDBStore(work / f"import-{path.suffix[1:]}-{next(runs)}.duckdb")]

    def run() -> None:
        (result,) = import_files([path], stores[0])
        assert result.written.inserted == ROWS

    best = best_of(run, fresh)
    stores[0].close()
    return best


def main() -> int:
    console = Console(width=max(Console().width, 110))
    data = shared_data_dir()
    if data is None:
        console.print(f"[yellow]skipped:[/] {SKIP_REASON}")
        return 0
    source = data / "ohlcv" / "binance-spot" / "1m" / "BTC_USDT-1m.parquet"
    year = pq.read_table(source).slice(0, ROWS)
    candles = Candles.from_arrow(year)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "binance"
        folder.mkdir()
        parquet = folder / "BTC_USDT-1m.parquet"
        csv = folder / "BTC_USDT-1m.csv"
        pq.write_table(candles.to_arrow(), parquet, compression="zstd")
        candles.to_frame().to_csv(csv, index=False)
        out = work / "peer.parquet"

        rows: list[tuple[str, float, str, float]] = []
        ours = timed_import(parquet, work)
        peer = best_of(lambda: pd.read_parquet(parquet).to_parquet(out))
        rows.append(("import Parquet", ours, "pd.read_parquet + to_parquet", peer))
        ours_csv = timed_import(csv, work)
        peer_csv = best_of(lambda: pd.read_csv(csv, engine="pyarrow").to_parquet(out))
        rows.append(("import CSV", ours_csv, "pd.read_csv(pyarrow) + to_parquet", peer_csv))

        parse = best_of(lambda: read_candle_file(parquet))
        rows.append(
            (
                "  parse Parquet only",
                parse,
                "pd.read_parquet",
                best_of(lambda: pd.read_parquet(parquet)),
            )
        )
        rows.append(
            (
                "  validate only",
                best_of(lambda: validate_candles(candles, Timeframe.M1)),
                "",
                float("nan"),
            )
        )
        parse_csv = best_of(lambda: read_candle_file(csv))
        rows.append(
            (
                "  parse CSV only",
                parse_csv,
                "pd.read_csv(pyarrow)",
                best_of(lambda: pd.read_csv(csv, engine="pyarrow")),
            )
        )

        with DuckDBStore(work / "read.duckdb") as store:
            store.write_candles(KEY, candles)
            back = best_of(lambda: store.read_candles(KEY))
            assert store.read_candles(KEY).equals(candles)
        read_peer = best_of(lambda: pd.read_parquet(parquet))
        rows.append(("read back (store.read_candles)", back, "pd.read_parquet", read_peer))

    table = Table(title=f"Import of {ROWS:,} real BTC/USDT 1m candles, best of {REPEATS}")
    for name in ("pivotal", "seconds", "peer", "seconds", "pivotal / peer"):
        table.add_column(name, justify="left" if name in ("pivotal", "peer") else "right")
    for name, ours_s, peer_name, peer_s in rows:
        ratio = f"{ours_s / peer_s:.2f}×" if peer_s == peer_s else ""
        peer_text = f"{peer_s:.3f}" if peer_s == peer_s else ""
        table.add_row(name, f"{ours_s:.3f}", peer_name, peer_text, ratio)
    console.print(table)
    verdicts = [
        ("import from Parquet", ours, IMPORT_TARGET_S),
        ("read back", back, READ_TARGET_S),
    ]
    failed = False
    for label, seconds, target in verdicts:
        ok = seconds < target
        failed |= not ok
        mark = "[green]ok[/]" if ok else "[red]SLOW[/]"
        console.print(f"{mark} {label}: {seconds:.3f} s (target < {target} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
