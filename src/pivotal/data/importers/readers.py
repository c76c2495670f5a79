"""Reading candle files into :class:`~pivotal.core.candles.Candles`.

Formats are told apart by content (magic bytes, then the first character, then the first
line); a ``.parquet``/``.feather``/``.zip`` name must agree with the content, a text name
need not (a gzip-compressed ``.csv`` reads fine):

- CSV (plain, gzip, or the one CSV inside a ``.zip``) whose header names a time column
  (:data:`TIME_COLUMNS`) and ``open``, ``high``, ``low``, ``close``, ``volume`` in any case
  and order; other columns are ignored. Delimiter ``,``, ``;`` or tab.
- Binance Data Vision kline CSV: 12 columns ``open_time, open, high, low, close, volume,
  close_time, ...``, with or without that header. A header-less CSV with 6 columns is read as
  ``timestamp, open, high, low, close, volume``.
- Parquet and Arrow IPC/feather (freqtrade's feather has a UTC ``date`` column).
- JSON (also gzip): freqtrade candles ``[[ms, open, high, low, close, volume], ...]``. (Binance
  REST kline dumps are left out on purpose: mark/index-price klines share their layout.)

Times: integer (or whole float) epochs in s, ms, µs or ns, told apart per value by magnitude
(below 1e11: s; below 1e14: ms; below 1e17: µs; else ns; Binance spot files switched from
ms to µs in 2025); datetime and date columns; ISO-8601 strings, naive meaning UTC. A time
that is not a whole millisecond is refused, not rounded. Empty or ``NaN`` price cells become
NaN, which validation then reports by line.

Errors: :class:`ParseError` names the file, the place (``line N``: 1-based line of a text
file; ``row N``: 0-based row of Parquet, feather and JSON) and what was wrong.
:class:`NotCandlesError` marks a readable file that holds no candles (trades, an order
book, metadata), which a directory import skips.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.errors import DataError

TIME_COLUMNS: tuple[str, ...] = ("timestamp", "open_time", "time", "date", "datetime", "ts")
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
BINANCE_KLINE_COLUMNS: tuple[str, ...] = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
_SECONDS_BELOW = 10**11  # 1973-03-03 in ms; today's epoch seconds are ~1.7e9
_MS_BELOW = 10**14  # year 5138 in ms; today's epoch µs are ~1.7e15
_US_BELOW = 10**17  # year 5138 in µs; today's epoch ns are ~1.7e18
_UNIT_FACTORS = {"s": 1000, "ms": 1, "us": -1000, "ns": -1_000_000}  # <0: divide
_BINARY_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".feather": "feather"}
_BINARY_SUFFIXES |= {".arrow": "feather", ".zip": "zip"}
_NULL_TEXT = frozenset({"", "nan", "null", "none", "n/a", "na", "-nan"})


class ParseError(DataError):
    """A file could not be read as candles; the message says which file, where and why."""


class NotCandlesError(ParseError):
    """The file is readable but holds no candles (trades, an order book, metadata)."""


@dataclass(frozen=True, slots=True)
class CandleFile:
    """One parsed file.

    ``where`` names the file in messages (``a.zip:a.csv`` for a zip member); ``first_line``
    is the file line of row 0 for text formats (2 after a header, 1 without), and 0 where
    rows have no lines (Parquet, feather, JSON: places are then 0-based rows).
    """

    path: Path
    format: str
    candles: Candles
    where: str
    first_line: int


@dataclass(frozen=True, slots=True)
class _Source:
    where: str
    first_line: int = 0

    def at(self, row: int) -> str:
        if self.first_line:
            return f"{self.where} line {row + self.first_line}"
        return f"{self.where} row {row}"

    def fail(self, row: int, message: str) -> ParseError:
        return ParseError(f"{self.at(row)}: {message}")


def read_candle_file(path: Path) -> CandleFile:
    """Parse one candle file (see the module docstring for formats, times and errors)."""
    path = Path(path)
    where = str(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ParseError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise ParseError(f"{where}: the file is empty (0 bytes); there are no candles in it")
    kind = _sniff(head)
    suffix = next((s for s in _BINARY_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is not None and _BINARY_SUFFIXES[suffix] != kind:
        raise ParseError(
            f"{where}: named {suffix} but the content is not {_BINARY_SUFFIXES[suffix]} "
            f"(it starts with {head!r}); re-export the file or fix its name"
        )
    try:
        if kind in ("parquet", "feather"):
            return _read_columnar(path, where, kind)
        if kind == "zip":
            return _read_zip(path, where)
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if kind == "gzip":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ParseError(f"{where}: broken gzip data ({exc}); download it again") from None
        return _read_text(path, data, where, "+gzip")
    return _read_text(path, data, where, "")


def _sniff(head: bytes) -> str:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"ARROW1", b"FEA1")):
        return "feather"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "text"


# -- columnar formats ---------------------------------------------------------------------
def _read_columnar(path: Path, where: str, kind: str) -> CandleFile:
    """Parquet (only the needed columns are read) or Arrow IPC/feather."""
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            columns = _resolve(pq.read_schema(path).names, where)
            table = pq.read_table(path, columns=[columns[0], *columns[1].values()])
        else:
            table = feather.read_table(path, memory_map=False)
            columns = _resolve(table.column_names, where)
    except (pa.ArrowException, OSError) as exc:
        raise ParseError(f"{where}: not a readable {kind} file ({exc})") from None
    return CandleFile(path, kind, _table_candles(table, columns, _Source(where)), where, 0)


def _read_zip(path: Path, where: str) -> CandleFile:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and not m.filename.startswith("__MACOSX/")
            ]
            if len(members) != 1:
                listed = ", ".join(m.filename for m in members[:5]) or "nothing"
                raise ParseError(
                    f"{where}: a zip must hold exactly one candle file (as Binance ships them); "
                    f"it holds {len(members)}: {listed}. Unpack it and import the files"
                )
            member = members[0]
            data = archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ParseError(f"{where}: broken zip archive ({exc}); download it again") from None
    return _read_text(path, data, f"{where}:{member.filename}", "+zip")


def _resolve(names: Sequence[str], where: str) -> tuple[str, dict[str, str]]:
    """(time column, {schema name: file column}) matched case-insensitively."""
    lower: dict[str, str] = {}
    for raw in names:
        lower.setdefault(str(raw).strip().lower(), raw)
    time = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if time is None or any(c not in lower for c in VALUE_COLUMNS):
        raise NotCandlesError(_not_candles(where, names))
    return time, {c: lower[c] for c in VALUE_COLUMNS}


def _not_candles(where: str, names: Sequence[object]) -> str:
    shown = ", ".join(map(str, names[:12])) + (", ..." if len(names) > 12 else "")
    lower = {str(n).strip().lower() for n in names}
    hint = ""
    if lower & {"bid_price", "ask_price", "is_snapshot", "first_update_id"}:
        hint = (
            " It looks like order-book data: `pivotal data import` takes depth files (a REST "
            "snapshot plus every diff-depth update, stored as 1s COB snapshots), not quotes."
        )
    elif "price" in lower and lower & {"qty", "quantity", "amount"}:
        hint = " It looks like trades: import those with `pivotal data import-trades`."
    return (
        f"{where}: holds no candles (columns: {shown}); candle files need a time column "
        f"({', '.join(TIME_COLUMNS)}) and open, high, low, close, volume.{hint}"
    )


def _table_candles(table: pa.Table, columns: tuple[str, dict[str, str]], src: _Source) -> Candles:
    time, values = columns
    if table.num_rows == 0:
        raise ParseError(f"{src.where}: holds no rows; there are no candles in it")
    arrays = {"timestamp": _to_ms(table.column(time), time, src)}
    arrays |= {name: _to_float(table.column(raw), raw, src) for name, raw in values.items()}
    return _candles(arrays)


def _candles(columns: dict[str, np.ndarray]) -> Candles:
    for array in columns.values():
        array.flags.writeable = False  # fresh arrays of ours: Candles keeps them without a copy
    return Candles(**columns)


# -- text formats ---------------------------------------------------------------------------
def _read_text(path: Path, data: bytes, where: str, wrapper: str) -> CandleFile:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    start = data.lstrip()[:1]
    if not start:
        raise ParseError(f"{where}: holds only white space; there are no candles in it")
    if start in (b"[", b"{"):
        candles, fmt = _parse_json(data, where)
        return CandleFile(path, fmt + wrapper, candles, where, 0)
    candles, fmt, first_line = _parse_csv(data, where)
    return CandleFile(path, fmt + wrapper, candles, where, first_line)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _CsvPlan:
    """How to read one CSV: options, all column names, the time and the value columns."""

    read: pacsv.ReadOptions
    parse: pacsv.ParseOptions
    names: list[str]
    time: str
    values: dict[str, str]

    def table(
        self, data: bytes, value_type: pa.DataType, time_type: pa.DataType | None
    ) -> pa.Table:
        types = {c: value_type for c in self.values.values()}
        if time_type is not None:
            types[self.time] = time_type
        wanted = [self.time, *self.values.values()]
        convert = pacsv.ConvertOptions(include_columns=wanted, column_types=types)
        return pacsv.read_csv(pa.BufferReader(data), self.read, self.parse, convert)


def _parse_csv(data: bytes, where: str) -> tuple[Candles, str, int]:
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).decode("utf-8", errors="replace").rstrip("\r")
    delimiter = max((",", ";", "\t"), key=first.count)
    fields = [f.strip().strip('"').strip() for f in first.split(delimiter)]
    parse = pacsv.ParseOptions(delimiter=delimiter)
    if not any(_is_number(f) for f in fields):  # a header
        time, values = _resolve(fields, where)
        is_binance = tuple(f.lower() for f in fields) == BINANCE_KLINE_COLUMNS
        fmt, first_line = ("binance-csv" if is_binance else "csv"), 2
        plan = _CsvPlan(
            pacsv.ReadOptions(column_names=fields, skip_rows=1), parse, fields, time, values
        )
    else:
        if len(fields) not in (len(BINANCE_KLINE_COLUMNS), len(CANDLE_COLUMNS)):
            raise NotCandlesError(
                f"{where}: line 1 has {len(fields)} columns and no header; candle CSVs without a "
                "header have 12 columns (Binance kline) or 6 (timestamp, open, high, low, close, "
                "volume). Add a header line naming the columns"
            )
        is_binance = len(fields) == len(BINANCE_KLINE_COLUMNS)
        names = list(BINANCE_KLINE_COLUMNS if is_binance else CANDLE_COLUMNS)
        fmt, first_line = ("binance-csv" if is_binance else "csv"), 1
        values = {c: c for c in VALUE_COLUMNS}
        plan = _CsvPlan(pacsv.ReadOptions(column_names=names), parse, names, names[0], values)
    src = _Source(where, first_line)
    try:
        table = plan.table(data, pa.float64(), None)
    except pa.ArrowInvalid as exc:
        raise _explain_csv_failure(data, exc, src, plan) from None
    return _table_candles(table, (plan.time, plan.values), src), fmt, first_line


def _explain_csv_failure(
    data: bytes, exc: pa.ArrowInvalid, src: _Source, plan: _CsvPlan
) -> ParseError:
    """Find the line behind a pyarrow CSV error (it names no line); only runs on failure."""
    if "columns" in str(exc):
        text = io.StringIO(data.decode("utf-8", errors="replace"))
        reader = csv.reader(text, delimiter=plan.parse.delimiter)
        width = len(plan.names)
        for row in reader:
            if row and len(row) != width:
                return ParseError(
                    f"{src.where} line {reader.line_num}: {len(row)} columns where the file "
                    f"has {width}: {plan.parse.delimiter.join(row)[:80]!r}"
                )
    try:
        table = plan.table(data, pa.string(), pa.string())
    except pa.ArrowInvalid:
        return ParseError(f"{src.where}: cannot be parsed as CSV ({exc})")
    _strings_to_ms(table.column(plan.time), plan.time, src)  # raises at a bad time cell
    for name in plan.values.values():
        _strings_to_float(table.column(name), name, src)  # raises at a bad number
    return ParseError(f"{src.where}: cannot be parsed as CSV ({exc})")


def _parse_json(data: bytes, where: str) -> tuple[Candles, str]:
    src = _Source(where)
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{where} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ParseError(f"{where}: not UTF-8 text, so not a JSON candle file") from None
    shape = "[[ms, open, high, low, close, volume], ...]"
    if not isinstance(payload, list):
        kind = f"an object with keys {list(payload)[:5]}" if isinstance(payload, dict) else "JSON"
        raise NotCandlesError(f"{where}: holds {kind}, not a list of candles like {shape}")
    if not payload:
        raise ParseError(f"{where}: holds an empty list; there are no candles in it")
    head = payload[0]
    if not isinstance(head, list) or len(head) != len(CANDLE_COLUMNS):
        raise NotCandlesError(
            f"{where}: row 0 is {json.dumps(head)[:80]}; freqtrade candle files hold {shape}"
        )
    try:
        array = np.array(payload, dtype=np.float64)
    except (ValueError, TypeError):
        array = None
    if array is None or array.ndim != 2 or array.shape[1] != len(CANDLE_COLUMNS):
        raise _locate_json_row(payload, src)
    columns = {"timestamp": _to_ms(pa.chunked_array([array[:, 0]]), "time", src)}
    columns |= {name: np.ascontiguousarray(array[:, i + 1]) for i, name in enumerate(VALUE_COLUMNS)}
    return _candles(columns), "freqtrade-json"


def _locate_json_row(payload: list[object], src: _Source) -> ParseError:
    width = len(CANDLE_COLUMNS)
    for i, row in enumerate(payload):
        if not isinstance(row, list) or len(row) != width:
            return src.fail(i, f"holds {json.dumps(row)[:80]}, not a list of {width} values")
        for j, value in enumerate(row):
            try:
                float(value if value is not None else "nan")
            except (TypeError, ValueError):
                return src.fail(i, f"{CANDLE_COLUMNS[j]} is {value!r}, not a number")
    return ParseError(f"{src.where}: rows cannot be read as numbers")


# -- column conversion ----------------------------------------------------------------------
def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _to_ms(column: pa.ChunkedArray, name: str, src: _Source) -> np.ndarray:
    """A time column as int64 UTC milliseconds (see the module docstring for what is read)."""
    kind = column.type
    if column.null_count:
        row = _first(column.is_null().to_numpy(zero_copy_only=False))
        raise src.fail(row, f"column {name!r} is empty; every candle needs its open time")
    if pa.types.is_integer(kind):
        return _epoch_to_ms(column.to_numpy().astype(np.int64, copy=False), name, src)
    if pa.types.is_floating(kind):
        values = column.to_numpy()
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            row = _first(bad)
            raise src.fail(row, f"column {name!r} holds {values[row]}, not a whole epoch time")
        return _epoch_to_ms(values.astype(np.int64), name, src)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_date(kind):
            column = column.cast(pa.timestamp("ms"))
            kind = column.type
        ticks = column.cast(pa.int64()).to_numpy()
        return _scale(ticks, _UNIT_FACTORS[kind.unit], name, kind.unit, src)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings_to_ms(column, name, src)
    raise ParseError(f"{src.where}: column {name!r} has type {kind}, not a time")


def _scale(
    ticks: np.ndarray, factor: int, name: str, unit: str, src: _Source, rows: Any = None
) -> np.ndarray:
    """Multiply by ``factor`` (> 0) or divide by ``-factor``, refusing sub-ms remainders;
    ``rows`` maps positions in ``ticks`` to file rows when ``ticks`` is a subset."""
    if factor > 0:
        return ticks * factor if factor != 1 else ticks
    remainder = ticks % -factor != 0
    if remainder.any():
        i = _first(remainder)
        row = i if rows is None else int(rows[i])
        raise src.fail(
            row,
            f"column {name!r} holds {ticks[i]}, a {unit} time that is not a whole "
            "millisecond; candle open times must be whole milliseconds",
        )
    return ticks // -factor


def _epoch_to_ms(values: np.ndarray, name: str, src: _Source) -> np.ndarray:
    """Epoch numbers to ms, the unit of each value told by its magnitude."""
    if not len(values):
        return values
    if values.min() >= _SECONDS_BELOW and values.max() < _MS_BELOW:
        return values  # all milliseconds: the common case, no copy
    size = np.abs(values)
    out = values.copy()
    for unit, mask in (
        ("s", size < _SECONDS_BELOW),
        ("us", (size >= _MS_BELOW) & (size < _US_BELOW)),
        ("ns", size >= _US_BELOW),
    ):
        if mask.any():
            factor = _UNIT_FACTORS[unit]
            where = np.flatnonzero(mask)
            out[where] = _scale(values[where], factor, name, unit, src, where)
    return out


def _strings_to_ms(column: pa.ChunkedArray, name: str, src: _Source) -> np.ndarray:
    values = column.to_pandas()
    blank = (values.isna() | (values.str.strip() == "")).to_numpy()
    if blank.any():
        raise src.fail(_first(blank), f"column {name!r} is empty; every candle needs its open time")
    numbers = pd.to_numeric(values, errors="coerce")
    parsed = numbers.notna().to_numpy()
    if parsed.all():
        return _to_ms(pa.chunked_array([pa.array(numbers.to_numpy())]), name, src)
    if parsed.any():
        row = _first(~parsed)
        raise src.fail(row, f"column {name!r} holds {values.iloc[row]!r}, not an epoch time")
    stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    missing = stamps.isna().to_numpy()
    if missing.any():
        row = _first(missing)
        raise src.fail(
            row, f"column {name!r} holds {values.iloc[row]!r}, not an ISO-8601 time or epoch number"
        )
    ticks = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return _scale(ticks, _UNIT_FACTORS["ns"], name, "ns", src)


def _to_float(column: pa.ChunkedArray, name: str, src: _Source) -> np.ndarray:
    """A price or volume column as float64; empty cells become NaN (validation reports them)."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings_to_float(column, name, src)
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind)):
        raise ParseError(f"{src.where}: column {name!r} has type {kind}, not a number")
    if kind != pa.float64():
        column = column.cast(pa.float64())
    return column.to_numpy()


def _strings_to_float(column: pa.ChunkedArray, name: str, src: _Source) -> np.ndarray:
    values = column.to_pandas()
    numbers = pd.to_numeric(values, errors="coerce")
    blank = values.isna() | values.str.strip().str.lower().isin(_NULL_TEXT)
    bad = (numbers.isna() & ~blank).to_numpy()
    if bad.any():
        row = _first(bad)
        raise src.fail(row, f"column {name!r} holds {values.iloc[row]!r}, not a number")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
