"""The columnar candle container that all bulk code uses.

Fixed schema: ``timestamp`` (int64, candle **open** time, UTC milliseconds), ``open``,
``high``, ``low``, ``close``, ``volume`` (float64, volume in the base asset). Arrays are
read-only views so a container can be shared without copying; build a new one to change it.
Semantic checks (grid, OHLC order, NaN) live in :mod:`pivotal.data.validation`; this type
only guarantees the schema: one-dimensional columns of equal length and the right dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

CANDLE_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]


def _column(name: str, values: Any, dtype: type) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"candle column {name!r} must be one-dimensional, got shape {array.shape}")
    if dtype is np.int64 and array.dtype.kind == "f":
        if len(array) and not np.all(np.isfinite(array)):
            raise ValueError("candle column 'timestamp' contains NaN or infinity")
        if len(array) and not np.array_equal(array, np.round(array)):
            raise ValueError("candle column 'timestamp' must hold whole milliseconds")
    if dtype is np.int64 and array.dtype.kind == "M":
        array = array.astype("datetime64[ms]").astype(np.int64)
    try:
        out = np.ascontiguousarray(array, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"candle column {name!r} cannot be read as {np.dtype(dtype)}: {exc}"
        ) from None
    if out is array and out.flags.writeable:
        out = out.copy()
    out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Candles:
    """OHLCV candles as parallel numpy arrays (see the module docstring for the schema)."""

    timestamp: Int64Array
    open: Float64Array
    high: Float64Array
    low: Float64Array
    close: Float64Array
    volume: Float64Array

    def __post_init__(self) -> None:
        lengths = set()
        for name in CANDLE_COLUMNS:
            dtype = np.int64 if name == "timestamp" else np.float64
            array = _column(name, getattr(self, name), dtype)
            object.__setattr__(self, name, array)
            lengths.add(len(array))
        if len(lengths) > 1:
            sizes = {name: len(getattr(self, name)) for name in CANDLE_COLUMNS}
            raise ValueError(f"candle columns must have equal lengths, got {sizes}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Candles:
        return cls(
            *(
                np.empty(0, dtype=np.int64 if c == "timestamp" else np.float64)
                for c in CANDLE_COLUMNS
            )
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Candles:
        """From a DataFrame with the six schema columns (``timestamp`` may be the index).

        A datetime ``timestamp`` (naive = UTC) is converted to milliseconds.
        """
        columns = {str(c).lower(): c for c in frame.columns}
        data: dict[str, Any] = {}
        for name in CANDLE_COLUMNS:
            if name in columns:
                data[name] = frame[columns[name]].to_numpy()
            elif name == "timestamp" and frame.index.name in ("timestamp", "date", "time"):
                data[name] = _index_to_ms(frame.index)
            else:
                raise ValueError(
                    f"candle frame lacks column {name!r}; it has {list(frame.columns)}"
                )
        ts = data["timestamp"]
        if getattr(ts, "dtype", None) is not None and ts.dtype.kind == "M":
            data["timestamp"] = _datetime_to_ms(ts)
        elif getattr(ts, "dtype", None) is not None and ts.dtype == object:
            import pandas as pd

            data["timestamp"] = _index_to_ms(pd.DatetimeIndex(pd.to_datetime(ts, utc=True)))
        return cls(**data)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Candles:
        return cls(**{name: table.column(name).to_numpy() for name in CANDLE_COLUMNS})

    @classmethod
    def concat(cls, parts: list[Candles]) -> Candles:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, c) for p in parts]) for c in CANDLE_COLUMNS))

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.timestamp)

    def __getitem__(self, key: slice | npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Candles:
        if isinstance(key, int):
            raise TypeError("index Candles with a slice or mask; use .bar(i) for one candle")
        return Candles(*(getattr(self, c)[key] for c in CANDLE_COLUMNS))

    def head(self, stop: int) -> Candles:
        """The first ``stop`` candles as views, without re-validating the columns.

        The hot path of a backtest builds one such view per decision; slicing validated,
        read-only columns cannot break the schema, so the checks of ``__init__`` are skipped.
        """
        view = object.__new__(Candles)
        for name in CANDLE_COLUMNS:
            object.__setattr__(view, name, getattr(self, name)[:stop])
        return view

    def rows(self, start: int, stop: int) -> Candles:
        """Candles ``start..stop-1`` as views, without re-validating the columns (as
        :meth:`head`): the per-bar path pushes one-row views of this kind to the broker."""
        view = object.__new__(Candles)
        for name in CANDLE_COLUMNS:
            object.__setattr__(view, name, getattr(self, name)[start:stop])
        return view

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in CANDLE_COLUMNS}

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> Candles:
        """Candles with ``start_ms <= timestamp < end_ms`` (binary search; data must be sorted)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.timestamp, start_ms, "left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.timestamp, end_ms, "left"))
        return self[lo:hi]

    def equals(self, other: Candles) -> bool:
        """Exact equality of every column (NaN equal to NaN)."""
        return len(self) == len(other) and all(
            np.array_equal(getattr(self, c), getattr(other, c), equal_nan=(c != "timestamp"))
            for c in CANDLE_COLUMNS
        )

    @property
    def datetimes(self) -> npt.NDArray[np.datetime64]:
        """Open times as ``datetime64[ms]`` (UTC)."""
        return self.timestamp.astype("datetime64[ms]")

    # -- conversion ---------------------------------------------------------------------
    def to_frame(self, datetime_index: bool = False) -> pd.DataFrame:
        """A DataFrame with the schema columns; optionally a UTC DatetimeIndex instead."""
        import pandas as pd

        frame = pd.DataFrame({name: getattr(self, name) for name in CANDLE_COLUMNS}, copy=False)
        if datetime_index:
            frame.index = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
            frame.index.name = "timestamp"
        return frame

    def to_arrow(self) -> pa.Table:
        import pyarrow as pa

        return pa.table({name: getattr(self, name) for name in CANDLE_COLUMNS})

    def __repr__(self) -> str:
        if not len(self):
            return "Candles(0 rows)"
        first, last = self.datetimes[0], self.datetimes[-1]
        return f"Candles({len(self)} rows, {first} .. {last} UTC)"


def _datetime_to_ms(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype("datetime64[ms]").astype(np.int64)


def _index_to_ms(index: Any) -> np.ndarray:
    import pandas as pd

    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy().astype("datetime64[ms]").astype(np.int64)
