"""The golden orchestrated run: real BTC/USDT and ETH/USDT 5m bars, learning on.

Recorded before the runtime moved to pushed bars (issue 14) so the new runtime can be
checked against what the old one decided. :func:`golden_run` trains a tiny PivotCNN (5m +
1h) and a DQN over its features on real BTC 5m bars, then runs both symbols through
``run_backtest_mode`` with a learning span and a trading span after it, and returns the
decisions, fills and equity curve as frames. ``python tests/golden/golden_run.py`` rewrites
the recording (only when the runtime is meant to change its results; the
closing note of that change must explain every difference). ``python -m
pivotal.testing.golden tests/golden/orchestrated_5m.json.gz`` rewrites the recording.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers.readers import read_candle_file
from pivotal.data.resample import resample
from pivotal.data.store import SeriesKey
from pivotal.orchestrator.run import run_backtest_mode
from pivotal.orchestrator.run_file import RunConfig
from pivotal.testing.orchestrator import train_tiny_experts

SYMBOLS = ("BTC/USDT", "ETH/USDT")


@dataclass(frozen=True)
class RealRun:
    """The shape of an orchestrated run on real data: ``timeframe`` base bars with
    ``streams``; the tiny experts train on ``train_bars`` BTC bars, then the run learns over
    ``learn_bars`` and trades ``trade_bars``, ``end_offset`` bars before the end of the
    shorter file. ``hole``: base bars removed from ETH's data in the middle of the trading
    span (a gap, :mod:`pivotal.core.gaps`), 0 for none."""

    timeframe: str = "5m"
    streams: tuple[str, ...] = ("1h",)
    train_bars: int = 2_400
    learn_bars: int = 400
    trade_bars: int = 800
    warmup_bars: int = 60
    end_offset: int = 2_000
    hole: int = 0


GOLDEN_RUN = RealRun()
"""The recorded run: real BTC/USDT and ETH/USDT 5m bars with the 1h stream."""


def read_real(data_dir: Path, symbol: str, timeframe: str = "5m") -> Candles:
    """The real candles of ``symbol`` from ``../shared/data``, through the importers'
    reader."""
    name = symbol.replace("/", "_")
    path = data_dir / "ohlcv" / "binance-spot" / timeframe / f"{name}-{timeframe}.parquet"
    return read_candle_file(path).candles


def golden_run(
    root: Path,
    data_dir: Path,
    *,
    shape: RealRun = GOLDEN_RUN,
    learning: dict[str, Any] | None = None,
    **run_fields: Any,
) -> dict[str, pd.DataFrame]:
    """Decisions, fills and equity of an orchestrated run of ``shape`` (module docstring);
    ``learning`` overrides fields of the orchestrator's learning settings, ``run_fields``
    fields of the run file (e.g. ``accelerate``)."""
    base = Timeframe.parse(shape.timeframe)
    series = {s: read_real(data_dir, s, shape.timeframe) for s in SYMBOLS}
    stop = min(int(c.timestamp[-1]) for c in series.values()) - shape.end_offset * base.ms
    btc = series["BTC/USDT"]
    end = int(np.searchsorted(btc.timestamp, stop))
    span = shape.learn_bars + shape.trade_bars
    train = btc[end - span - shape.train_bars - shape.warmup_bars : end - span]
    tiny = train_tiny_experts(
        root / "experts",
        train,
        timeframe=shape.timeframe,
        streams=shape.streams,
        frames=8,
        seed=0,
    )
    first = int(btc.timestamp[end - span])
    learn_from = first
    since = first + shape.learn_bars * base.ms
    until = since + shape.trade_bars * base.ms
    store_path = root / "store.duckdb"
    with DuckDBStore(store_path) as store:
        for symbol, bars in series.items():
            longest = max(Timeframe.parse(tf).ms for tf in (shape.timeframe, *shape.streams))
            window = bars.between(learn_from - 2 * shape.warmup_bars * longest, until)
            if shape.hole and symbol == "ETH/USDT":
                middle = since + (shape.trade_bars // 2) * base.ms
                keep = (window.timestamp < middle) | (
                    window.timestamp >= middle + shape.hole * base.ms
                )
                window = window[np.flatnonzero(keep)]
            store.write_candles(SeriesKey("binance", symbol, base), window, source="test")
            for stream in shape.streams:
                tf = Timeframe.parse(stream)
                store.write_candles(
                    SeriesKey("binance", symbol, tf), resample(window, base, tf), source="test"
                )
        config = RunConfig.model_validate(
            {
                "symbols": list(SYMBOLS),
                "timeframe": shape.timeframe,
                "learn_from": learn_from,
                "since": since,
                "until": until,
                "warmup_bars": shape.warmup_bars,
                "orchestrator": {
                    "experts": tiny.experts(),
                    "gate": {"buy_threshold": 0.0, "sell_threshold": 0.0},
                    "learning": {
                        "horizon_bars": 6,
                        "batch_size": 32,
                        "holdout": 32,
                        "checkpoint_dir": str(root / "online"),
                        **(learning or {}),
                    },
                },
                **run_fields,
            }
        )
        run = run_backtest_mode(store, config)
    decisions = run.decisions[["timestamp", "symbol", "action", "confidence"]].copy()
    fills = run.result.fills.copy()
    equity = pd.DataFrame({"timestamp": run.result.timestamps, "equity": run.result.equity})
    return {"decisions": decisions, "fills": fills, "equity": equity, "gaps": _gaps(run)}


def _gaps(run: Any) -> pd.DataFrame:
    return pd.DataFrame([dict(g) for g in run.gaps])


def write_golden(path: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Store ``frames`` as gzipped JSON (``mtime=0``: the same frames give the same bytes)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(json.dumps(_to_json(frames)).encode())


def _to_json(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Frames as JSON-ready dicts; floats keep every digit (``repr``), unlike ``to_json``."""
    out: dict[str, Any] = {}
    for name, frame in frames.items():
        split = frame.to_dict(orient="split", index=False)
        out[name] = {"columns": list(split["columns"]), "data": split["data"]}
    return out


def read_golden(path: Path) -> dict[str, pd.DataFrame]:
    """The frames :func:`write_golden` stored."""
    with gzip.open(path, "rt") as handle:
        data = json.load(handle)
    return {
        name: pd.DataFrame(part["data"], columns=part["columns"]) for name, part in data.items()
    }


if __name__ == "__main__":
    import tempfile

    from pivotal.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None or len(sys.argv) != 2:
        sys.exit("usage: python -m pivotal.testing.golden OUT.json.gz (needs ../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        frames = golden_run(Path(tmp), data)
    write_golden(Path(sys.argv[1]), frames)
    counts = frames["decisions"]["action"].value_counts().to_dict()
    print(
        f"wrote {sys.argv[1]}: {len(frames['decisions'])} decisions {counts}, "
        f"{len(frames['fills'])} fills, final equity {frames['equity']['equity'].iloc[-1]:.2f}"
    )
