"""Importing tick trades: pivotal's Parquet, Binance trade CSVs and tardis.dev CSVs.

Formats (detected from the columns):
- Parquet with ``timestamp`` (ms), ``trade_id``, ``price``, ``qty``/``quantity``,
  ``is_buyer_maker`` (pivotal's own layout, as in shared/data/trades).
- Binance (data.binance.vision) trade CSV, with or without header:
  ``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``; time in ms or µs.
- tardis.dev ``trades`` CSV(.gz): ``exchange,symbol,timestamp,local_timestamp,id,side,price,
  amount`` with µs timestamps; ``side`` is the aggressor's side.
Every batch passes :func:`~pivotal.data.validation.validate_trades` before it is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.data.series import WriteResult, normalize_exchange
from pivotal.data.store import MarketDataStore
from pivotal.data.validation import validate_trades

_BINANCE_COLUMNS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"]
# tardis.dev exchange names → ccxt ids
_TARDIS_EXCHANGES = {
    "binance": "binance",
    "binance-futures": "binanceusdm",
    "binance-delivery": "binancecoinm",
    "bitmex": "bitmex",
    "coinbase": "coinbase",
}
_US_THRESHOLD = 10**14  # epoch values above this are microseconds (year 5138 in ms)


@dataclass(frozen=True, slots=True)
class TradeImportResult:
    path: Path
    exchange: str
    symbol: Symbol
    rows: int
    written: WriteResult


def _to_ms(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    if len(values) and values.max() > _US_THRESHOLD:
        return values // 1000
    return values


def _read(path: Path) -> tuple[Trades, dict[str, str]]:
    """Parse one file; also return what the file itself says (exchange, symbol)."""
    name = path.name.lower()
    hints: dict[str, str] = {}
    try:
        if name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz")):
            head = pd.read_csv(path, nrows=1, header=None)
            has_header = not str(head.iloc[0, 0]).strip().lstrip("-").isdigit()
            frame = pd.read_csv(path, header=0 if has_header else None)
            if not has_header:
                if frame.shape[1] != len(_BINANCE_COLUMNS):
                    raise DataError(
                        f"{path}: a header-less trade CSV must have Binance's 7 columns "
                        f"({', '.join(_BINANCE_COLUMNS)}), found {frame.shape[1]}"
                    )
                frame.columns = _BINANCE_COLUMNS
        else:
            raise DataError(f"{path}: unsupported trade file; use .parquet, .csv or .csv.gz")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be parsed as trades: {exc}") from None
    cols = {c.lower(): c for c in frame.columns}
    try:
        if {"side", "amount", "local_timestamp"} <= cols.keys():  # tardis
            hints["exchange"] = _TARDIS_EXCHANGES.get(str(frame[cols["exchange"]].iloc[0]), "")
            hints["symbol"] = str(frame[cols["symbol"]].iloc[0])
            trades = Trades(
                timestamp=_to_ms(frame[cols["timestamp"]].to_numpy()),
                price=frame[cols["price"]].to_numpy(),
                quantity=frame[cols["amount"]].to_numpy(),
                is_buyer_maker=frame[cols["side"]].astype(str).str.lower().eq("sell").to_numpy(),
                trade_id=frame[cols["id"]].to_numpy(),
            )
        elif "time" in cols and "qty" in cols:  # Binance trade CSV
            trades = Trades(
                timestamp=_to_ms(frame[cols["time"]].to_numpy()),
                price=frame[cols["price"]].to_numpy(),
                quantity=frame[cols["qty"]].to_numpy(),
                is_buyer_maker=_as_bool(frame[cols["is_buyer_maker"]]),
                trade_id=frame[cols["id"]].to_numpy(),
            )
        else:
            trades = Trades.from_frame(frame)
            trades = Trades(
                _to_ms(trades.timestamp),
                trades.price,
                trades.quantity,
                trades.is_buyer_maker,
                trades.trade_id,
            )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a trade file pivotal understands: {exc}") from None
    return trades, hints


def _as_bool(series: pd.Series) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy()
    return series.astype(str).str.strip().str.lower().isin(("true", "1")).to_numpy()


_SYMBOL_IN_NAME = re.compile(r"^([A-Z0-9]+(?:_[A-Z0-9]+){0,2})-")


def infer_trade_symbol(path: Path) -> Symbol | None:
    """``BTC_USDT-trades-...`` → BTC/USDT; ``BTCUSDT-trades-...`` → BTC/USDT."""
    match = _SYMBOL_IN_NAME.match(path.name.upper())
    if not match:
        return None
    parts = match.group(1).split("_")
    try:
        if len(parts) >= 2:
            return Symbol(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
        return Symbol.from_exchange_id(parts[0])
    except ValueError:
        return None


def infer_trade_exchange(path: Path) -> str | None:
    """The nearest parent folder naming an exchange (``binance-usdm`` → binanceusdm)."""
    from pivotal.data.importers.naming import infer_exchange

    return infer_exchange(path)


def import_trade_files(
    paths: Sequence[Path],
    store: MarketDataStore,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    on_file: Callable[[], None] | None = None,
) -> list[TradeImportResult]:
    """Parse and validate every file first; write only if all are valid (one transaction each),
    each row labelled ``import:<file name>``."""
    parsed: list[tuple[Path, str, Symbol, Trades]] = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        trades, hints = _read(path)
        sym = Symbol.parse(symbol) if symbol else None
        if sym is None and hints.get("symbol"):
            sym = Symbol.from_exchange_id(hints["symbol"])
        sym = sym or infer_trade_symbol(path)
        if sym is None:
            raise DataError(f"{path}: cannot infer the symbol; pass --symbol BASE/QUOTE")
        ex = exchange or hints.get("exchange") or infer_trade_exchange(path)
        if not ex:
            raise DataError(f"{path}: cannot infer the exchange; pass --exchange ID")
        validate_trades(trades).raise_if_invalid(str(path), first_line=0)
        parsed.append((path, normalize_exchange(ex), sym, trades))
    results = []
    for path, ex, sym, trades in parsed:
        written = store.write_trades(ex, sym, trades, source=f"import:{path.name}")
        results.append(TradeImportResult(path, ex, sym, len(trades), written))
        if on_file:
            on_file()
    return results
