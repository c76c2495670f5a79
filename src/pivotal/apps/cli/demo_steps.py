"""The demo's steps, kept apart from argument parsing so tests can call them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.progress import Progress
from rich.table import Table

from pivotal.apps.cli.progress import DownloadProgressBar, ImportProgress
from pivotal.apps.cli.simulated import store_simulated
from pivotal.apps.cli.summary import series_table, stats_table
from pivotal.config import PivotalConfig
from pivotal.core.clock import WallClock
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey
from pivotal.data.statistics import SeriesStats, series_stats

DAY_MS = 86_400_000


def import_folder(store: DuckDBStore, folder: Path, bar: Progress) -> str:
    """Import every candle file under ``folder`` (its ``ohlcv/`` part when present) and the
    spot trades under ``trades/``, then build 1s candles from those trades."""
    from pivotal.data.importers import import_files
    from pivotal.data.tick_aggregation import aggregate_trades
    from pivotal.data.trade_import import import_trade_files

    ohlcv = folder / "ohlcv" if (folder / "ohlcv").is_dir() else folder
    results = import_files([ohlcv], store, progress=ImportProgress(bar))
    trade_files = sorted((folder / "trades" / "binance-spot").glob("*.parquet"))
    aggregated = 0
    if trade_files:
        task = bar.add_task("trades", total=len(trade_files))
        imported = import_trade_files(trade_files, store, on_file=lambda: bar.advance(task))
        for r in imported:
            bars = aggregate_trades(store.read_trades(r.exchange, r.symbol), Timeframe.S1)
            key = SeriesKey(r.exchange, r.symbol, Timeframe.S1)
            store.write_candles(key, bars.candles, source="aggregated:trades")
            aggregated += len(bars.candles)
    files = len({r.path for r in results})
    note = f"REAL market data imported from {folder.resolve()} ({files} candle files"
    if trade_files:
        note += f", {len(trade_files)} trade files → {aggregated:,} 1s candles"
    return note + ")"


def download_recent(
    store: DuckDBStore,
    config: PivotalConfig,
    symbols: Sequence[str],
    days: int,
    bar: Progress,
) -> str:
    """Download the last ``days`` of 1m candles and a year of 1h candles.

    The demo allows one retry with a short backoff, so that a machine without network falls
    back to the simulator within seconds instead of minutes.
    """
    from pivotal.data.download import download_candles

    patient = config.download
    config = config.model_copy(
        update={
            "download": patient.model_copy(
                update={
                    "max_retries": min(patient.max_retries, 1),
                    "backoff_max_s": min(patient.backoff_max_s, 2.0),
                }
            )
        }
    )
    now = WallClock().now_ms()
    results = []
    for timeframe, span in (("1m", days * DAY_MS), ("1h", 365 * DAY_MS)):
        results += download_candles(
            store,
            config,
            exchange=config.download.fallback_exchanges[0],
            symbols=symbols,
            timeframes=[timeframe],
            since_ms=now - span,
            progress=DownloadProgressBar(bar),
        )
    used = sorted({r.used_exchange for r in results})
    return f"REAL market data downloaded from {', '.join(used)}"


def simulate_fallback(store: DuckDBStore, symbols: Sequence[str]) -> str:
    """Offline with no data: store simulated candles under the exchange 'simulator'."""
    sources = []
    for i, symbol in enumerate(symbols):
        base = symbol.split("/")[0]
        _, source, _ = store_simulated(store, f"{base}/USDT", "1m", 43_200, seed=7 + i)
        sources.append(f"{base}/USDT ({source})")
    return "SIMULATED data, not market data: " + ", ".join(sources)


def summarise(store: DuckDBStore) -> list[Table]:
    """The stored series with their gaps, and basic statistics of each."""
    infos = store.series()
    stats: dict[str, SeriesStats] = {}
    for info in infos:
        stats[str(info.key)] = series_stats(store.read_candles(info.key), info.key.timeframe)
    return [
        series_table(infos, title="What is stored"),
        stats_table(infos, stats, title="Basic statistics (whole stored span)"),
    ]


def feature_step(store: DuckDBStore, out_dir: Path, bars: int = 1000) -> list[str]:
    """Indicators and pivots of the hourly series, and a pivot chart per symbol."""
    from pivotal.apps.cli.files import write_atomically
    from pivotal.features.indicators import FEATURE_COLUMNS, compute_indicator_features
    from pivotal.features.pivots import williams_pivots
    from pivotal.features.pivots.chart import pivot_chart

    lines = []
    stored = store.series()
    hourly = [i for i in stored if i.key.timeframe is Timeframe.H1]
    minutely = [i for i in stored if i.key.timeframe is Timeframe.M1]
    for info in (hourly or minutely)[:2]:
        candles = store.read_candles(info.key)[-bars:]
        features = compute_indicator_features(candles)
        pivots = williams_pivots(candles.high, candles.low, timestamps=candles.timestamp)
        name = f"{info.key.exchange}_{info.key.symbol.file_stem}_{info.key.timeframe}-pivots.html"
        figure = pivot_chart(candles, pivots, title=f"{info.key}: Williams pivots, 5 levels")
        path = write_atomically(
            out_dir / name, lambda tmp, f=figure: f.write_html(tmp, include_plotlyjs=True)
        )
        levels = pivots.groupby("level").size().to_dict()
        last = {k: float(v[-1]) for k, v in features.items() if k in ("rsi", "atr", "macd")}
        lines.append(
            f"{info.key}: {len(FEATURE_COLUMNS)} indicators on the last {len(candles):,} candles "
            f"(RSI {last['rsi']:.1f}, ATR {last['atr']:,.2f}, MACD {last['macd']:+,.2f}); "
            f"pivots per level {levels}; chart {path}"
        )
    return lines


def backtest_step(store: DuckDBStore, out_dir: Path) -> list[str]:
    """An SMA(10)/SMA(30) cross on the first two symbols' hourly series in one
    account (half the equity each, a 5 % stop-loss), through the SimulatedBroker and the
    RiskManager, with an HTML report and the JSON trades."""
    from pivotal.backtest.api import backtest
    from pivotal.backtest.export import write_json
    from pivotal.backtest.report import write_html
    from pivotal.trading.brokers.config import SimulatedBrokerConfig
    from pivotal.trading.fees import FeeSchedule
    from pivotal.trading.risk import RiskConfig
    from pivotal.trading.settings import TradingSettings

    stored = store.series()
    hourly = [i for i in stored if i.key.timeframe is Timeframe.H1]
    minutely = [i for i in stored if i.key.timeframe is Timeframe.M1]
    chosen = (hourly or minutely)[:2]
    if not chosen:
        return ["no hourly or minute candles stored: nothing to backtest"]
    timeframe = chosen[0].key.timeframe
    candles = {str(i.key.symbol): store.read_candles(i.key) for i in chosen}
    settings = TradingSettings(
        broker=SimulatedBrokerConfig(fees=FeeSchedule(maker=0.001, taker=0.001)),
        risk=RiskConfig(fraction=1.0 / len(candles), stop_loss_pct=0.05),
    )
    result = backtest(
        candles, "sma_cross", {"fast": 10, "slow": 30}, timeframe=timeframe, settings=settings
    )
    names = ", ".join(candles)
    stem = "backtest_sma_cross_" + "_".join(i.key.symbol.file_stem for i in chosen)
    html = write_html(
        result, candles, out_dir / f"{stem}.html", title=f"sma_cross 10/30 on {names} {timeframe}"
    )
    json_path = write_json(result, out_dir / f"{stem}.json")
    m = result.metrics
    stops = int(result.fills["tag"].str.endswith(":stop").sum())
    return [
        f"sma_cross 10/30 on {names} {timeframe}, {len(result.timestamps):,} bars, 0.1 % fee "
        f"per side, half the equity per symbol, 5 % stop-loss:",
        f"  {int(m['n_trades']):,} trades ({stops} stopped out), return "
        f"{m['total_return_pct']:+.1f} % vs buy-and-hold {m['buy_and_hold_return_pct']:+.1f} %, "
        f"max drawdown {m['max_drawdown_pct']:.1f} %, fees {m['fees_paid']:,.0f}",
        f"  report {html}; trades {json_path}",
    ]


def dashboard_commands(data_dir: str | Path) -> list[str]:
    """How to open the dashboard after the demo: on its finished results, or (again) with a
    paper session trading live."""
    import shlex

    where = shlex.quote(str(data_dir))
    return [f"pivotal serve --data-dir {where}", f"pivotal demo --serve --data-dir {where}"]


def next_commands(data_dir: str | Path, run_file: Path | None) -> list[str]:
    """The three commands to try after the demo, for the data dir as the user gave it: list
    the kept checkpoints, repeat the orchestrated run from its run file (or list the data
    when the orchestrator did not run), and read the stored decisions back."""
    import shlex

    where = shlex.quote(str(data_dir))
    listing = f"pivotal models list --data-dir {where}"
    query = f"pivotal decisions query --symbol BTC/USDT --latest --limit 5 --data-dir {where}"
    if run_file is None:
        return [f"pivotal data list --data-dir {where}", listing, query]
    report = shlex.quote(str(run_file.with_name("rerun.html")))
    again = f"pivotal run {shlex.quote(str(run_file))} --data-dir {where} --report {report}"
    return [listing, again, query]
