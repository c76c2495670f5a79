"""Validation of a ``BaseDataInput`` against the spec of the model that will read it.

Done before inference (seed 003): every stream the spec names needs at least ``min_frames``
closed candles with finite, positive prices and finite, non-negative volume, and every
required part must be present.

**Completeness** is the mean of one score per checked item, in [0, 1]:

- each candle stream (primary timeframes, then reference timeframes): the number of valid
  candles among its newest ``frames`` divided by ``frames`` (300 of 300 → 1.0, 150 → 0.5,
  absent → 0.0); a stream can score above 0 and still be missing (fewer than ``min_frames``);
- each required part: 1.0 present, 0.0 absent; with ``prediction_sources`` each named model's
  last prediction is one item.

An input is ``ok`` when nothing is missing; then completeness lies in
``[min_frames / frames, 1]`` for the streams and is 1.0 for the parts.

A caller that already knows how many invalid candles a window holds (the market frame counts
each candle once, as it arrives) passes ``invalid_rows`` to :func:`check_input`, which then
reads the count instead of scanning the window; the report is the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.errors import DataError
from pivotal.core.types import BaseDataInput
from pivotal.features.inputs.spec import InputPart, InputSpec

__all__ = [
    "InputReport",
    "InvalidRows",
    "check_input",
    "format_time",
    "invalid_rows",
    "require_complete",
]

InvalidRows = Callable[[Candles, int], int | None]
"""``invalid(candles, start)``: the number of candles among ``candles[start:]`` that
:func:`invalid_rows` counts, when the caller knows it for this very ``candles`` object;
None when it does not (the rows are then scanned)."""

_PART_ORDER = {part: i for i, part in enumerate(InputPart)}


@dataclass(frozen=True, slots=True)
class InputReport:
    """Outcome of :func:`check_input`.

    ``completeness`` in [0, 1] (see the module docstring); ``missing`` one readable line per
    problem, in spec order (streams, then reference streams, then parts); ``frames`` the number
    of candles per stream name (``"1m"``, ``"reference 1s"``) as present in the input.
    """

    symbol: str
    timestamp: int
    completeness: float
    missing: tuple[str, ...]
    frames: tuple[tuple[str, int], ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    def message(self) -> str:
        """``"ETH/USDT at 2025-06-01 12:00 UTC: 1h has 42 frames (needs ≥ 100); ..."``."""
        head = f"{self.symbol} at {format_time(self.timestamp)}"
        return f"{head}: {'; '.join(self.missing)}" if self.missing else f"{head}: complete"


def format_time(timestamp_ms: int) -> str:
    """UTC time for messages: minutes, with seconds (and milliseconds) only when non-zero."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    if timestamp_ms % 1000:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    if timestamp_ms % 60_000:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def invalid_rows(candles: Candles) -> int:
    """Candles with a NaN, infinite or non-positive price, or a NaN/negative/infinite volume."""
    return _invalid(candles, 0, len(candles))


def _invalid(candles: Candles, start: int, stop: int) -> int:
    """:func:`invalid_rows` of rows ``start:stop`` (array slices: no Candles is built)."""
    if stop <= start:
        return 0
    volume = candles.volume[start:stop]
    prices = [p[start:stop] for p in (candles.open, candles.high, candles.low, candles.close)]
    if (
        volume.min() >= 0.0
        and volume.max() < math.inf
        and all(p.min() > 0.0 and p.max() < math.inf for p in prices)
    ):
        return 0  # the common case, in ten reductions (a NaN fails every comparison)
    with np.errstate(invalid="ignore"):  # NaN compares False: counted below as bad
        ok = np.isfinite(volume) & (volume >= 0)
        for p in prices:
            ok &= np.isfinite(p) & (p > 0)
    return len(ok) - int(np.count_nonzero(ok))


def _stream(
    label: str, candles: Candles | None, spec: InputSpec, invalid: InvalidRows | None
) -> tuple[float, list[str]]:
    n = 0 if candles is None else len(candles)
    if candles is None or n == 0:
        return 0.0, [f"{label} missing"]
    start = max(0, n - spec.frames)
    bad = None if invalid is None else invalid(candles, start)
    if bad is None:
        bad = _invalid(candles, start, n)
    problems = []
    if n < spec.min_frames:
        problems.append(f"{label} has {n} frames (needs ≥ {spec.min_frames})")
    if bad:
        problems.append(f"{label} has {bad} candles with NaN, infinite or non-positive values")
    return (n - start - bad) / spec.frames, problems


def _part_present(inp: BaseDataInput, part: InputPart) -> bool:
    value = getattr(inp, part.value)
    return value is not None and (part is InputPart.COB or len(value) > 0)


def check_input(
    inp: BaseDataInput, spec: InputSpec, *, invalid_rows: InvalidRows | None = None
) -> InputReport:
    """Check ``inp`` against ``spec`` without raising; see the module docstring for the score.

    ``invalid_rows``: where the caller knows the invalid candles of a window (:data:`
    InvalidRows`); the report is the one a scan gives, as long as the counts are right."""
    scores: list[float] = []
    missing: list[str] = []
    frames: list[tuple[str, int]] = []
    for tf in spec.timeframes:
        candles = inp.ohlcv.get(tf)
        label = str(tf)
        score, problems = _stream(label, candles, spec, invalid_rows)
        scores.append(score)
        missing += problems
        frames.append((label, 0 if candles is None else len(candles)))
    ref = spec.reference_symbol
    for tf in spec.reference_timeframes:
        label = f"reference {ref} {tf}"
        same = inp.reference_symbol == ref
        candles = inp.reference_ohlcv.get(tf) if same else None
        score, problems = _stream(label, candles, spec, invalid_rows)
        if not same and inp.reference_symbol is not None:
            problems = [f"{label} missing (the input's reference is {inp.reference_symbol})"]
        scores.append(score)
        missing += problems
        frames.append((f"reference {tf}", 0 if candles is None else len(candles)))
    for part in sorted(spec.required, key=_PART_ORDER.__getitem__):
        if part is InputPart.PREDICTIONS and spec.prediction_sources:
            for name in spec.prediction_sources:
                present = name in inp.last_predictions
                scores.append(float(present))
                if not present:
                    missing.append(f"last prediction of {name} missing")
            continue
        present = _part_present(inp, part)
        scores.append(float(present))
        if not present:
            missing.append(f"{part.value} missing")
    return InputReport(
        symbol=str(inp.symbol),
        timestamp=inp.timestamp,
        completeness=float(sum(scores) / len(scores)),
        missing=tuple(missing),
        frames=tuple(frames),
    )


def require_complete(inp: BaseDataInput, spec: InputSpec) -> InputReport:
    """The report of :func:`check_input`; raise ``DataError`` listing every problem if not ok.

    The message reads ``"<symbol> at <UTC time>: <problem>; <problem>; ..."``, e.g.
    ``"ETH/USDT at 2025-06-01 12:00 UTC: 1h has 42 frames (needs ≥ 100); reference BTC/USDT
    1s missing; cob_data missing"``.
    """
    report = check_input(inp, spec)
    if not report.ok:
        raise DataError(report.message())
    return report
