"""The columnar trade container: one row per exchange trade.

Schema: ``timestamp`` (int64, trade time, UTC ms), ``price`` (float64), ``quantity``
(float64, base asset), ``is_buyer_maker`` (bool: the aggressor sold), ``trade_id`` (int64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

TRADE_COLUMNS: tuple[str, ...] = ("timestamp", "price", "quantity", "is_buyer_maker", "trade_id")
_DTYPES: dict[str, Any] = {
    "timestamp": np.int64,
    "price": np.float64,
    "quantity": np.float64,
    "is_buyer_maker": np.bool_,
    "trade_id": np.int64,
}


@dataclass(frozen=True, slots=True, eq=False)
class Trades:
    timestamp: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    quantity: npt.NDArray[np.float64]
    is_buyer_maker: npt.NDArray[np.bool_]
    trade_id: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        n = None
        for name in TRADE_COLUMNS:
            array = np.asarray(getattr(self, name))
            if array.ndim != 1:
                raise ValueError(f"trade column {name!r} must be one-dimensional")
            try:
                array = np.ascontiguousarray(array, dtype=_DTYPES[name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"trade column {name!r}: {exc}") from None
            array = array.copy() if array.flags.writeable and array.base is None else array
            array.flags.writeable = False
            object.__setattr__(self, name, array)
            if n is not None and len(array) != n:
                raise ValueError("trade columns must have equal lengths")
            n = len(array)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Trades:
        columns = {c.lower(): c for c in frame.columns}
        aliases = {"quantity": ("quantity", "qty", "amount"), "trade_id": ("trade_id", "id")}
        data: dict[str, Any] = {}
        for name in TRADE_COLUMNS:
            for alias in aliases.get(name, (name,)):
                if alias in columns:
                    data[name] = frame[columns[alias]].to_numpy()
                    break
            else:
                if name == "trade_id":
                    data[name] = np.arange(len(frame), dtype=np.int64)
                elif name == "is_buyer_maker" and "side" in columns:
                    data[name] = (
                        frame[columns["side"]].astype(str).str.lower().eq("sell").to_numpy()
                    )
                else:
                    raise ValueError(
                        f"trade frame lacks column {name!r}; it has {list(frame.columns)}"
                    )
        return cls(**data)

    def __len__(self) -> int:
        return len(self.timestamp)

    def __getitem__(self, key: slice | npt.NDArray[Any]) -> Trades:
        return Trades(*(getattr(self, c)[key] for c in TRADE_COLUMNS))

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({c: getattr(self, c) for c in TRADE_COLUMNS})
