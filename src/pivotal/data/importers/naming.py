"""Which series a candle file holds, read from its path: exchange, symbol and timeframe.

File names recognised (after stripping ``.csv``, ``.csv.gz``, ``.zip``, ``.parquet``, ``.pq``,
``.feather``, ``.arrow``, ``.json``, ``.json.gz``):

- freqtrade: ``BTC_USDT-1m`` (spot), ``BTC_USDT_USDT-1h-futures`` (futures; the third part is
  the settle asset, so the symbol is ``BTC/USDT:USDT``). Mark, index and funding-rate files
  (``-mark``, ``-index``, ``-premiumIndex``, ``-funding_rate``) are not trade candles.
- pivotal's shared data: ``BTC_USDT-1m`` and windows ``BTC_USDT-1m_20200521-20200620``.
- Binance Data Vision: ``BTCUSDT-1m-2024-01-01`` (daily) and ``BTCUSDT-1h-2024-01`` (monthly).
- Loosely, ``BTCUSDT-1h`` / ``BTCUSDT_1h`` followed by anything.

The exchange is the nearest parent directory whose name is a known ccxt id, either whole
(``binanceusdm``), without its dashes (``binance-usdm`` → ``binanceusdm``) or up to its first
dash (``binance-spot`` → ``binance``). Failing that, the data.binance.vision folder layout
(``.../spot/.../klines/...``, ``.../futures/um/...``) names Binance. Explicit values (the
``--exchange``/``--symbol``/``--timeframe`` flags) always override what the path says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey, normalize_exchange

# Static on purpose: importing ccxt costs ~1 s of start-up and this list changes rarely.
KNOWN_EXCHANGES: tuple[str, ...] = (
    "binance",
    "binanceus",
    "binanceusdm",
    "binancecoinm",
    "bitfinex",
    "bitget",
    "bitmart",
    "bitmex",
    "bitstamp",
    "bybit",
    "coinbase",
    "coinbaseexchange",
    "cryptocom",
    "deribit",
    "gate",
    "gateio",
    "gemini",
    "htx",
    "huobi",
    "hyperliquid",
    "kraken",
    "krakenfutures",
    "kucoin",
    "kucoinfutures",
    "mexc",
    "okx",
    "phemex",
    "poloniex",
    "upbit",
)

# Folder names people use for a market of an exchange, where dropping the dash is not enough.
_FOLDER_ALIASES: dict[str, str] = {
    "binance-futures": "binanceusdm",
    "binance-um": "binanceusdm",
    "binance-cm": "binancecoinm",
    "binance-delivery": "binancecoinm",
}

# Longest first, so that ``.csv.gz`` is stripped whole.
CANDLE_SUFFIXES: tuple[str, ...] = (
    ".csv.gz",
    ".json.gz",
    ".csv",
    ".zip",
    ".parquet",
    ".pq",
    ".feather",
    ".arrow",
    ".json",
)

_TF = r"\d+(?:mo|[smhdwyM])"
_FREQTRADE = re.compile(
    rf"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){{1,2}})-(?P<tf>{_TF})"
    r"(?:-(?P<ctype>[A-Za-z_]+))?(?:_(?P<start>\d{8})-(?P<end>\d{8}))?$"
)
_BINANCE = re.compile(
    rf"^(?P<id>[A-Za-z0-9]+)-(?P<tf>{_TF})-(?P<date>\d{{4}}-\d{{2}}(?:-\d{{2}})?)$"
)
_LOOSE = re.compile(rf"^(?P<id>[A-Za-z0-9]+)[-_](?P<tf>{_TF})(?:[-_.].*)?$")

TRADE_CANDLE_TYPES: tuple[str, ...] = ("spot", "futures")


@dataclass(frozen=True, slots=True)
class NameHints:
    """What a path says about its series; ``None`` where it says nothing.

    ``timeframe_text`` is the raw timeframe token (kept so an unsupported one such as ``1w``
    can be reported); ``candle_type`` is freqtrade's (``spot`` when the name has none);
    ``style`` is ``freqtrade``, ``binance``, ``loose`` or ``None`` (name not recognised).
    """

    exchange: str | None = None
    symbol: Symbol | None = None
    timeframe_text: str | None = None
    candle_type: str = "spot"
    style: str | None = None

    @property
    def is_trade_candles(self) -> bool:
        """False for freqtrade mark/index/premium/funding files, which are not trade candles."""
        return self.candle_type in TRADE_CANDLE_TYPES


def strip_suffix(name: str) -> str:
    """The file name without its candle-file extension (``a.csv.gz`` → ``a``)."""
    lower = name.lower()
    for suffix in CANDLE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def has_candle_suffix(path: Path) -> bool:
    """Whether a directory walk should look at this file (by extension only)."""
    return path.name.lower().endswith(CANDLE_SUFFIXES)


def _exchange_of_folder(name: str) -> str | None:
    lower = name.strip().lower()
    if lower in _FOLDER_ALIASES:
        return _FOLDER_ALIASES[lower]
    for candidate in (lower, lower.replace("-", "").replace("_", ""), lower.split("-", 1)[0]):
        if candidate in KNOWN_EXCHANGES:
            return candidate
    return None


def infer_exchange(path: Path) -> str | None:
    """The exchange named by the nearest parent folder, else by the Binance Vision layout."""
    parents = Path(path).resolve().parents
    for parent in parents:
        found = _exchange_of_folder(parent.name)
        if found:
            return found
    parts = [p.name.lower() for p in parents]
    if "klines" in parts:
        if "futures" in parts and "um" in parts:
            return "binanceusdm"
        if "futures" in parts and "cm" in parts:
            return "binancecoinm"
        if "spot" in parts:
            return "binance"
    return None


def _symbol_from_pair(pair: str) -> Symbol | None:
    parts = pair.upper().split("_")
    try:
        if len(parts) == 1:
            return Symbol.from_exchange_id(parts[0])
        return Symbol(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
    except ValueError:
        return None


def parse_file_name(name: str) -> NameHints:
    """Symbol and timeframe from a file name (no exchange: that comes from folders)."""
    stem = strip_suffix(Path(name).name)
    match = _FREQTRADE.match(stem)
    if match:
        ctype = match["ctype"] or "spot"
        symbol = _symbol_from_pair(match["pair"])
        if symbol is not None and ctype == "futures" and symbol.settle is None:
            symbol = Symbol(symbol.base, symbol.quote, symbol.quote)
        return NameHints(None, symbol, match["tf"], ctype, "freqtrade")
    for style, pattern in (("binance", _BINANCE), ("loose", _LOOSE)):
        match = pattern.match(stem)
        if match:
            return NameHints(None, _symbol_from_pair(match["id"]), match["tf"], "spot", style)
    return NameHints()


def infer_names(path: Path) -> NameHints:
    """Everything the path says: symbol and timeframe from the name, exchange from folders."""
    hints = parse_file_name(Path(path).name)
    return NameHints(
        infer_exchange(path), hints.symbol, hints.timeframe_text, hints.candle_type, hints.style
    )


def parse_exchange_flag(value: str) -> str:
    """Check an explicit ``--exchange``; raise :class:`DataError` saying what is allowed."""
    try:
        return normalize_exchange(value)
    except ValueError as exc:
        raise DataError(f"--exchange {value!r}: {exc}") from None


def parse_symbol_flag(value: str) -> Symbol:
    """Check an explicit ``--symbol``: ccxt form ``BTC/USDT`` or an id such as ``BTCUSDT``."""
    try:
        return Symbol.parse(value)
    except ValueError:
        try:
            return Symbol.from_exchange_id(value)
        except ValueError:
            raise DataError(
                f"--symbol {value!r} is neither BASE/QUOTE (e.g. BTC/USDT) nor an exchange id "
                "with a known quote asset (e.g. BTCUSDT)"
            ) from None


def parse_timeframe_flag(value: str) -> Timeframe:
    """Check an explicit ``--timeframe``; the message lists the allowed values."""
    try:
        return Timeframe.parse(value)
    except ValueError as exc:
        raise DataError(f"--timeframe: {exc}") from None


def resolve_key(
    path: Path,
    *,
    exchange: str | None = None,
    symbol: Symbol | None = None,
    timeframe: Timeframe | None = None,
    spacing: str = "",
) -> SeriesKey:
    """The series of ``path``: explicit values first, then what the path says.

    ``spacing`` (e.g. ``"1h"``), when known from the data, is suggested in the message if the
    timeframe cannot be inferred. Raises :class:`DataError` naming the flag to pass.
    """
    hints = infer_names(path)
    missing: list[str] = []
    exchange = exchange or hints.exchange
    if exchange is None:
        example = "binance" if hints.style == "binance" else "binance, bybit, ..."
        missing.append(
            f"the exchange (no parent folder is named after one): pass --exchange ({example})"
        )
    symbol = symbol or hints.symbol
    if symbol is None:
        missing.append(
            "the symbol (the name is not like BTC_USDT-1m or BTCUSDT-1m-2024-01-01): "
            "pass --symbol, e.g. --symbol BTC/USDT"
        )
    if timeframe is None and hints.timeframe_text is not None:
        try:
            timeframe = Timeframe.parse(hints.timeframe_text)
        except ValueError:
            allowed = ", ".join(t.value for t in Timeframe)
            raise DataError(
                f"{path}: the file name says timeframe {hints.timeframe_text!r}, which pivotal "
                f"does not store (allowed: {allowed}); resample it first or import another file"
            ) from None
    if timeframe is None:
        hint = f" (the rows are {spacing} apart)" if spacing else ""
        missing.append(f"the timeframe{hint}: pass --timeframe, e.g. --timeframe 1m")
    if missing or exchange is None or symbol is None or timeframe is None:
        raise DataError(f"{path}: cannot tell " + "; nor ".join(missing))
    return SeriesKey(exchange, symbol, timeframe)
