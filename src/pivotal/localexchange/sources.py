"""Where the local exchange's flows come from: recorded message files or stored candles.

Used by ``pivotal exchange serve``; every problem is a :class:`ConfigError` or
:class:`DataError` that says what was wrong and what to pass instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pivotal.core.clock import utc_text
from pivotal.core.errors import ConfigError, DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.localexchange.flow import SymbolFlow
from pivotal.localexchange.recorded import recorded_flow
from pivotal.localexchange.synthetic import synthetic_flow

#: Recorded Binance spot messages inside the shared data folder.
MESSAGES_SUBDIR = Path("messages") / "binance-spot" / "hftbacktest"
_DAY_FILE = re.compile(r"^(?P<sym>[a-z0-9]+)_(?P<day>\d{8})\.gz$")
#: Closed candles before the served span given to ``/klines`` as history.
HISTORY_BARS = 1000


def find_shared_data() -> Path | None:
    """``$PIVOTAL_SHARED_DATA``, else a ``shared/data`` folder beside the working directory
    or beside a parent of this package (a checkout's ``../shared/data``); None when absent."""
    env = os.environ.get("PIVOTAL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path.cwd().parent / "shared" / "data")
    candidates += [p.parent / "shared" / "data" for p in Path(__file__).resolve().parents]
    for path in candidates:
        if (path / "README.md").is_file():
            return path
    return None


def default_message_files(shared: Path | None = None) -> list[Path]:
    """The recorded day files (``<symbol>_<YYYYMMDD>.gz``) of the shared data, by name.

    Raises :class:`ConfigError` saying what to pass when there are none.
    """
    shared = shared if shared is not None else find_shared_data()
    folder = None if shared is None else shared / MESSAGES_SUBDIR
    files = [] if folder is None or not folder.is_dir() else sorted(folder.iterdir())
    days = [f for f in files if _DAY_FILE.match(f.name)]
    if not days:
        where = "no shared data folder found" if shared is None else f"none in {folder}"
        raise ConfigError(
            f"no recorded messages to serve ({where}); pass --messages FILE... (hftbacktest "
            "files), or --data-dir with --exchange/--timeframe/--since/--until for stored "
            "candles, or set PIVOTAL_SHARED_DATA to the shared data folder"
        )
    return days


def group_message_files(paths: Sequence[Path]) -> dict[str, list[Path]]:
    """Files grouped by the symbol their name starts with (``btcusdt_20240808.gz``), keeping
    the given order inside a group; files not named so form one group keyed ``""``."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        match = _DAY_FILE.match(path.name) or re.match(r"^(?P<sym>[a-z0-9]+)_", path.name)
        groups.setdefault(match["sym"] if match else "", []).append(path)
    return groups


def flows_from_messages(
    paths: Sequence[Path | str], symbols: Sequence[Symbol] | None = None
) -> list[SymbolFlow]:
    """One recorded flow per symbol in ``paths``; only ``symbols`` when given (each must be
    found in the files)."""
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise DataError(f"message file {path} does not exist; pass existing hftbacktest files")
    flows: list[SymbolFlow] = []
    named_found: list[Symbol] = []
    for prefix, group in group_message_files(files).items():
        named: Symbol | None = None
        if prefix:
            try:
                named = Symbol.from_exchange_id(prefix)
            except ValueError:
                named = None
        if named is not None:
            named_found.append(named)
        if symbols is not None and named is not None and named not in symbols:
            continue
        flows.append(recorded_flow(group, named))
    found = list(dict.fromkeys([*named_found, *(flow.symbol for flow in flows)]))
    if symbols is not None:
        flows = [flow for flow in flows if flow.symbol in symbols]
        missing = [s for s in symbols if s not in found]
        if missing:
            raise ConfigError(
                f"symbol(s) {', '.join(map(str, missing))} not in the message files (they hold "
                f"{', '.join(map(str, found)) or 'nothing'}); pick --symbol from those"
            )
    if len({f.symbol for f in flows}) != len(flows):
        raise ConfigError(
            "two groups of message files hold the same symbol; name the files "
            "<symbol>_<YYYYMMDD>.gz so they group by symbol"
        )
    return flows


def flows_from_store(
    store: MarketDataStore,
    exchange: str,
    symbols: Sequence[Symbol],
    timeframe: Timeframe,
    since: int | None,
    until: int | None,
    *,
    seed: int,
) -> list[SymbolFlow]:
    """A synthetic flow per symbol from the stored candles in ``[since, until)``.

    Up to :data:`HISTORY_BARS` stored candles before ``since`` become the flows' history.
    """
    if not symbols:
        raise ConfigError("serving stored candles needs --symbol (e.g. BTC/USDT)")
    stored = {info.key: info for info in store.series()}
    flows = []
    for index, symbol in enumerate(symbols):
        key = SeriesKey(exchange, symbol, timeframe)
        info = stored.get(key)
        if info is None or not info.rows:
            have = ", ".join(sorted(str(k) for k in stored)) or "nothing"
            raise ConfigError(f"no stored candles for {key}; the store holds: {have}")
        candles = store.read_candles(key, since, until)
        if len(candles) == 0:
            raise DataError(
                f"no stored {key} candles from {_when(since, 'the first')} to "
                f"{_when(until, 'the last')}; they span {_when(info.first, '?')} to "
                f"{_when(info.last, '?')}: choose --since/--until inside that span"
            )
        first = int(candles.timestamp[0])
        before = store.read_candles(key, first - HISTORY_BARS * timeframe.ms, first)
        history = {timeframe: before} if len(before) else None
        flows.append(synthetic_flow(candles, timeframe, symbol, seed=seed + index, history=history))
    return flows


def _when(ms: int | None, default: str) -> str:
    return default if ms is None else utc_text(ms)
