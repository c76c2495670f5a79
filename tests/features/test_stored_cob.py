"""Stored COB read back by the features: the same snapshots as the depth replay, bit for bit,
and StoredCOB answering as a COBHistory holding them (so backtests read what live stored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.cob import T0, assert_same_cob, synthetic_cob
from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.types import COBData
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.importers import import_files
from pivotal.data.series import SeriesKey
from pivotal.features.inputs import InputSpec
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.context import ContextEncoder
from pivotal.features.inputs.history import COBHistory, StoredCOB, cob_source
from pivotal.features.inputs.provider import StandardizedDataProvider
from pivotal.features.orderbook import DepthEvents, OrderBook, iter_cob
from pivotal.features.orderbook.recorded import cob_from_depth_files
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
BTC = Symbol("BTC", "USDT")
DEPTH = "orderbook/binance-spot/BTC_USDT-depth-20240808T2354-20240809T0005.parquet"


@pytest.fixture(scope="module")
def depth_frame() -> pd.DataFrame:
    if DATA is None:
        pytest.skip(SKIP_REASON)
    return pd.read_parquet(DATA / DEPTH)


@pytest.fixture(scope="module")
def replayed(depth_frame: pd.DataFrame) -> list[COBData]:
    """The snapshots computed straight from the depth file (the COB sampler)."""
    return list(iter_cob(DepthEvents(depth_frame), OrderBook(BTC)))


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


# -- real recorded depth ------------------------------------------------------------------
@needs_data
def test_imported_depth_reads_back_as_the_replayed_snapshots_bit_for_bit(
    store: DuckDBStore, replayed: list[COBData]
) -> None:
    assert DATA is not None
    (result,) = import_files([DATA / DEPTH], store, depth=cob_from_depth_files)
    assert result.kind == "cob" and result.key == SeriesKey("binance", BTC, Timeframe.S1)
    assert result.rows == result.written.inserted == len(replayed) > 600
    stored = store.read_cob("binance", BTC)
    assert_same_cob(stored, replayed)
    assert any(np.isnan(s.imbalance_ma[60]).all() for s in stored)  # warm-up kept as NaN
    arrays = store.read_cob_arrays("binance", BTC)
    assert arrays.imbalance.tobytes() == np.stack([s.imbalance for s in replayed]).tobytes()
    assert set(arrays.source) == {f"import:{Path(DEPTH).name}"}
    again = import_files([DATA / DEPTH], store, depth=cob_from_depth_files)
    assert again[0].written.unchanged == len(replayed)  # idempotent


@needs_data
def test_a_recording_split_in_two_files_replays_as_one(
    tmp_path: Path, store: DuckDBStore, depth_frame: pd.DataFrame, replayed: list[COBData]
) -> None:
    folder = tmp_path / "binance"
    folder.mkdir()
    ts = depth_frame.local_ts_ns.to_numpy()
    boundaries = np.flatnonzero(ts[1:] != ts[:-1]) + 1  # rows where an event starts
    cut = int(boundaries[len(boundaries) // 2])  # mid-file, between two events
    depth_frame.iloc[cut:].to_parquet(folder / "BTC_USDT-depth-2.parquet")
    depth_frame.iloc[:cut].to_parquet(folder / "BTC_USDT-depth-1.parquet")
    (result,) = import_files([folder], store, depth=cob_from_depth_files)
    assert [p.name for p in result.files] == [
        "BTC_USDT-depth-1.parquet",
        "BTC_USDT-depth-2.parquet",
    ]
    assert_same_cob(store.read_cob("binance", BTC), replayed)


@needs_data
def test_the_provider_reads_stored_cob_as_the_recorded_history(
    store: DuckDBStore, replayed: list[COBData]
) -> None:
    """Backtest (stored, the default) and live (recorded in memory) give the same inputs."""
    assert DATA is not None
    m1 = pd.read_parquet(DATA / "ohlcv/binance-spot/1m/BTC_USDT-1m.parquet")
    first, last = replayed[0].timestamp, replayed[-1].timestamp
    rows = m1[(m1.timestamp >= first - 400 * 60_000) & (m1.timestamp <= last + 60_000)]
    store.write_candles(SeriesKey("binance", BTC, "1m"), Candles.from_frame(rows))
    store.write_cob("binance", BTC, replayed, source="import:depth")
    spec = InputSpec.candles(["1m"], frames=32, min_frames=16)
    kwargs = {
        "columns": ColumnsConfig(cob=True),
        "context": ContextEncoder([], cob=True),
        "history_bars": 300,
    }
    stored = StandardizedDataProvider(store, "binance", spec, **kwargs)  # type: ignore[arg-type]
    assert isinstance(stored.cob, StoredCOB)
    memory = COBHistory()
    memory.extend(replayed)
    recorded = StandardizedDataProvider(store, "binance", spec, cob=memory, **kwargs)  # type: ignore[arg-type]
    closes = [first - first % 60_000 + k * 60_000 for k in range(0, 12)]
    for t in [first - 1, first, first + 500, *closes, last, last + 61_000]:
        a, b = stored.encode(BTC, t), recorded.encode(BTC, t)
        assert (a.input.cob_data is None) == (b.input.cob_data is None), t
        if b.input.cob_data is not None:
            assert_same_cob([a.input.cob_data], [b.input.cob_data])
        assert a.x.numpy().tobytes() == b.x.numpy().tobytes(), t
        assert a.context.numpy().tobytes() == b.context.numpy().tobytes(), t
    assert recorded.encode(BTC, last).input.cob_data is not None
    names = stored.encoder.layout.channels.names
    present = stored.encode(BTC, closes[-1]).x[0, :, names.index("cob_present")]
    assert float(present.max()) == 1.0  # the COB columns did see stored snapshots


# -- StoredCOB against COBHistory (seeded, no shared data needed) -------------------------
def _with_holes(n: int) -> list[COBData]:
    snaps = synthetic_cob(n, seed=5)
    return [s for i, s in enumerate(snaps) if not (40 <= i < 70 or i % 17 == 3)]


def test_stored_cob_answers_as_a_history_holding_every_snapshot(store: DuckDBStore) -> None:
    snaps = _with_holes(300)
    store.write_cob("binance", BTC, snaps)
    memory = COBHistory()
    memory.extend(snaps)
    source = StoredCOB(store, "binance", capacity=50)
    rng = np.random.default_rng(1)
    forward = [T0 - 5_000 + 350 * k for k in range(900)]
    jumps = rng.integers(T0 - 10_000, T0 + 320_000, 120).tolist()
    for t in forward + jumps:
        want = memory.latest(BTC, t)
        got = source.latest(BTC, t)
        assert (got is None) == (want is None), t
        if want is not None:
            assert got is not None and got.timestamp == want.timestamp
        span = int(rng.integers(0, 20_000))
        got_span = source.between(BTC, t - span, t)
        assert [s.timestamp for s in got_span] == [
            s.timestamp for s in memory.between(BTC, t - span, t)
        ]
    assert source.latest("ETH/USDT", T0 + 10_000) is None


def test_stepping_forward_reads_each_snapshot_once(store: DuckDBStore) -> None:
    snaps = synthetic_cob(600)
    store.write_cob("binance", BTC, snaps)
    source = StoredCOB(store, "binance")
    for k in range(600):
        t = T0 + 1_000 * k + 400
        assert source.latest(BTC, t).timestamp == T0 + 1_000 * k  # type: ignore[union-attr]
        assert len(source.between(BTC, t - 60_000, t)) == min(k + 1, 60)
    assert source.reads <= 601  # one small read per step, never the whole span again


def test_snapshots_stored_later_are_seen(store: DuckDBStore) -> None:
    """Live: a collector stores snapshots while the features read them."""
    snaps = synthetic_cob(20)
    source = StoredCOB(store, "binance")
    assert source.latest(BTC, T0 + 30_000) is None
    store.write_cob("binance", BTC, snaps[:10])
    assert source.latest(BTC, T0 + 30_000).timestamp == T0 + 9_000  # type: ignore[union-attr]
    assert len(source.between(BTC, T0, T0 + 30_000)) == 10
    store.write_cob("binance", BTC, snaps[10:])
    # the same question again is answered from memory; a later one reads what came since
    assert source.latest(BTC, T0 + 30_000).timestamp == T0 + 9_000  # type: ignore[union-attr]
    assert source.latest(BTC, T0 + 31_000).timestamp == T0 + 19_000  # type: ignore[union-attr]
    assert_same_cob(source.between(BTC, T0, T0 + 31_000), snaps)


def test_the_default_source_and_a_history_loaded_from_the_store(store: DuckDBStore) -> None:
    snaps = synthetic_cob(30)
    store.write_cob("binance", BTC, snaps)
    assert isinstance(cob_source(store, "binance"), StoredCOB)
    assert isinstance(cob_source(object(), "binance"), COBHistory)
    loaded = COBHistory.from_store(store, "binance", [BTC, "ETH/USDT"], T0 + 5_000, T0 + 25_000)
    assert_same_cob(loaded.between(BTC, 0, 2**62), snaps[5:25])
    with pytest.raises(ValueError, match="capacity"):
        StoredCOB(store, "binance", capacity=0)
