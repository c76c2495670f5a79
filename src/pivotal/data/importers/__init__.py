"""Importing candle files: CSV(.gz), zip, Parquet, Binance kline CSV, freqtrade JSON/feather.

- :mod:`.naming`: exchange, symbol and timeframe from a path.
- :mod:`.readers`: format detection and parsing into :class:`~pivotal.core.candles.Candles`.
- :mod:`.ingest`: the service: collect, read and validate every file, then write.
"""

from pivotal.data.importers.ingest import (
    ImportAborted,
    ImportResult,
    ProgressEvent,
    collect_files,
    import_files,
)
from pivotal.data.importers.naming import NameHints, infer_exchange, infer_names, resolve_key
from pivotal.data.importers.readers import (
    CandleFile,
    NotCandlesError,
    ParseError,
    read_candle_file,
)

__all__ = [
    "CandleFile",
    "ImportAborted",
    "ImportResult",
    "NameHints",
    "NotCandlesError",
    "ParseError",
    "ProgressEvent",
    "collect_files",
    "import_files",
    "infer_exchange",
    "infer_names",
    "read_candle_file",
    "resolve_key",
]
