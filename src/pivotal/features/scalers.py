"""Feature scalers that fit on a training range only and travel inside checkpoints.

Every scaler works on a 2-D float64 matrix ``(rows, features)`` whose columns are named by a
:class:`FeatureLayout`. ``fit`` takes the matrix *and* the row range to learn from
(``train=slice(...)``) so the training span is explicit at the call site; statistics of
rows outside it never leak into the parameters. ``transform`` refuses a matrix whose layout
(names and order) differs from the one fitted. ``state_dict``/``from_state`` round-trip
through plain JSON-able data, which is how checkpoints carry them.

- :class:`StandardScaler`: ``(x - mean) / std`` with population std (ddof=0); a constant
  column gets std 1 (it maps to 0) rather than a division by zero.
- :class:`MinMaxScaler`: ``(x - min) / (max - min)`` into [0, 1] on the training span
  (values outside the span's range map outside [0, 1]; they are not clipped unless
  ``clip=True``); a constant column gets range 1.
- :class:`PivotBoundScaler`: price columns scaled by pivot-based bounds ``(low, high)``
  (seed 003's PivotBounds) into [0, 1]; the bounds are given, typically from the confirmed
  pivots of the training span, and non-price columns pass through unchanged.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FeatureLayout:
    """Names of the feature columns, in order. Two layouts match only if both are equal."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not names:
            raise ValueError("a feature layout needs at least one feature name")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique; repeated: {', '.join(duplicates)}")
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return len(self.names)

    def check(self, other: FeatureLayout, where: str) -> None:
        if other.names == self.names:
            return
        missing = [n for n in self.names if n not in other.names]
        extra = [n for n in other.names if n not in self.names]
        detail = []
        if missing:
            detail.append(f"missing {missing[:5]}")
        if extra:
            detail.append(f"unexpected {extra[:5]}")
        if not detail:
            detail.append("same names in a different order")
        raise ValueError(
            f"{where}: feature layout differs from the one fitted ({'; '.join(detail)}); "
            "build the features with the same layout, or fit a new scaler"
        )


def _as_matrix(x: Any, layout: FeatureLayout, where: str) -> Matrix:
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(layout):
        raise ValueError(
            f"{where}: expected a (rows, {len(layout)}) matrix for {len(layout)} features, "
            f"got shape {matrix.shape}"
        )
    return matrix


class _Scaler(ABC):
    kind: ClassVar[str]

    def __init__(self) -> None:
        self.layout: FeatureLayout | None = None

    @property
    def fitted(self) -> bool:
        return self.layout is not None

    def _train_rows(self, x: Any, layout: FeatureLayout, train: slice) -> Matrix:
        matrix = _as_matrix(x, layout, f"{self.kind}.fit")
        rows = matrix[train]
        if len(rows) == 0:
            raise ValueError(f"{self.kind}.fit: the training range {train} selects no rows")
        if not np.all(np.isfinite(rows)):
            bad = np.argwhere(~np.isfinite(rows))[0]
            raise ValueError(
                f"{self.kind}.fit: training rows contain NaN or infinity (first at row "
                f"{bad[0]}, feature {layout.names[bad[1]]!r}); drop warm-up rows first"
            )
        return rows

    def _ready(self, x: Any, layout: FeatureLayout, verb: str) -> Matrix:
        if self.layout is None:
            raise ValueError(f"{self.kind}.{verb}: fit the scaler first")
        self.layout.check(layout, f"{self.kind}.{verb}")
        return _as_matrix(x, layout, f"{self.kind}.{verb}")

    def state_dict(self) -> dict[str, Any]:
        if self.layout is None:
            raise ValueError(f"{self.kind}: an unfitted scaler has no state to save")
        return {"kind": self.kind, "features": list(self.layout.names), **self._params()}

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The fitted parameters, as JSON-able data."""


class StandardScaler(_Scaler):
    kind = "standard"

    def __init__(self) -> None:
        super().__init__()
        self.mean: Matrix = np.empty(0)
        self.std: Matrix = np.empty(0)

    def fit(self, x: Any, layout: FeatureLayout, train: slice) -> StandardScaler:
        rows = self._train_rows(x, layout, train)
        self.mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        self.layout = layout
        return self

    def transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        return (self._ready(x, layout, "transform") - self.mean) / self.std

    def inverse_transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        return self._ready(x, layout, "inverse_transform") * self.std + self.mean

    def _params(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class MinMaxScaler(_Scaler):
    kind = "minmax"

    def __init__(self, clip: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.low: Matrix = np.empty(0)
        self.span: Matrix = np.empty(0)

    def fit(self, x: Any, layout: FeatureLayout, train: slice) -> MinMaxScaler:
        rows = self._train_rows(x, layout, train)
        self.low = rows.min(axis=0)
        span = rows.max(axis=0) - self.low
        self.span = np.where(span > 0, span, 1.0)
        self.layout = layout
        return self

    def transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        out = (self._ready(x, layout, "transform") - self.low) / self.span
        return np.clip(out, 0.0, 1.0) if self.clip else out

    def inverse_transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        return self._ready(x, layout, "inverse_transform") * self.span + self.low

    def _params(self) -> dict[str, Any]:
        return {"low": self.low.tolist(), "span": self.span.tolist(), "clip": self.clip}


class PivotBoundScaler(_Scaler):
    kind = "pivot_bounds"

    def __init__(self) -> None:
        super().__init__()
        self.low = math.nan
        self.high = math.nan
        self.price_columns: tuple[str, ...] = ()

    def fit(
        self,
        layout: FeatureLayout,
        low: float,
        high: float,
        price_columns: Sequence[str],
    ) -> PivotBoundScaler:
        """Use bounds ``low < high`` (from pivots confirmed in the training span)."""
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"pivot bounds need finite low < high, got low={low}, high={high}")
        unknown = [c for c in price_columns if c not in layout.names]
        if unknown:
            raise ValueError(f"price columns {unknown} are not in the feature layout")
        if not price_columns:
            raise ValueError("name at least one price column to scale by the pivot bounds")
        self.low, self.high = float(low), float(high)
        self.price_columns = tuple(price_columns)
        self.layout = layout
        return self

    def _mask(self) -> npt.NDArray[np.bool_]:
        assert self.layout is not None
        return np.array([n in self.price_columns for n in self.layout.names])

    def transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        out = self._ready(x, layout, "transform").copy()
        mask = self._mask()
        out[:, mask] = (out[:, mask] - self.low) / (self.high - self.low)
        return out

    def inverse_transform(self, x: Any, layout: FeatureLayout) -> Matrix:
        out = self._ready(x, layout, "inverse_transform").copy()
        mask = self._mask()
        out[:, mask] = out[:, mask] * (self.high - self.low) + self.low
        return out

    def _params(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "price_columns": list(self.price_columns)}


Scaler = StandardScaler | MinMaxScaler | PivotBoundScaler


def scaler_from_state(state: dict[str, Any]) -> Scaler:
    """Rebuild a fitted scaler from :meth:`state_dict` output (e.g. read from a checkpoint)."""
    kind = state.get("kind")
    layout = FeatureLayout(tuple(state["features"]))
    if kind == StandardScaler.kind:
        standard = StandardScaler()
        standard.mean = np.asarray(state["mean"], dtype=np.float64)
        standard.std = np.asarray(state["std"], dtype=np.float64)
        standard.layout = layout
        return standard
    if kind == MinMaxScaler.kind:
        minmax = MinMaxScaler(clip=bool(state["clip"]))
        minmax.low = np.asarray(state["low"], dtype=np.float64)
        minmax.span = np.asarray(state["span"], dtype=np.float64)
        minmax.layout = layout
        return minmax
    if kind == PivotBoundScaler.kind:
        return PivotBoundScaler().fit(
            layout, state["low"], state["high"], tuple(state["price_columns"])
        )
    raise ValueError(
        f"unknown scaler kind {kind!r}; expected one of standard, minmax, pivot_bounds"
    )
