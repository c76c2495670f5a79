"""What a model declares it needs from the standardized input (seed 003's BaseDataInput).

An :class:`InputSpec` names the candle timeframes of the traded symbol, how many frames of
each the model reads (``frames``) and the fewest it accepts (``min_frames``), the reference
symbol and its timeframes, and which optional parts must be present. Validation
(:mod:`~pivotal.features.inputs.validation`) checks an input against the spec of the model
that will read it, so data that exists only for some timeframes still serves the models that
do not ask for the rest. ``InputSpec()`` is the seed's full set; see :meth:`InputSpec.full`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

__all__ = ["SEED_TIMEFRAMES", "InputPart", "InputSpec"]

SEED_TIMEFRAMES: tuple[Timeframe, ...] = (Timeframe.S1, Timeframe.M1, Timeframe.H1, Timeframe.D1)


class InputPart(StrEnum):
    """Optional parts of a ``BaseDataInput``; the value is the attribute name."""

    COB = "cob_data"
    INDICATORS = "technical_indicators"
    PIVOTS = "pivot_points"
    PREDICTIONS = "last_predictions"
    MICROSTRUCTURE = "market_microstructure"


def _timeframes(values: Iterable[Timeframe | str], name: str) -> tuple[Timeframe, ...]:
    if isinstance(values, str):
        raise TypeError(f"InputSpec.{name} must be a sequence of timeframes, not the string")
    parsed = tuple(Timeframe.parse(v) for v in values)
    repeated = sorted({str(tf) for tf in parsed if parsed.count(tf) > 1})
    if repeated:
        raise ValueError(f"InputSpec.{name} repeats {', '.join(repeated)}; name each once")
    return parsed


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The inputs one model reads.

    - ``timeframes``: candle streams of the traded symbol, in the order they are encoded.
    - ``frames``: candles per stream the model reads (the newest closed ones at ``t``).
    - ``min_frames``: fewest closed candles per stream that still make a usable input;
      between ``min_frames`` and ``frames`` the encoder left-pads and marks the padding.
    - ``reference_symbol`` / ``reference_timeframes``: the reference market's streams (BTC/USDT
      1s for the seed); ``reference_symbol=None`` means no reference (timeframes dropped).
    - ``required``: optional parts that must be present (non-empty) for the input to be valid.
    - ``prediction_sources``: model names whose last prediction must be present (implies
      ``InputPart.PREDICTIONS``).
    """

    timeframes: tuple[Timeframe, ...] = SEED_TIMEFRAMES
    frames: int = 300
    min_frames: int = 100
    reference_symbol: Symbol | None = field(default_factory=lambda: Symbol("BTC", "USDT"))
    reference_timeframes: tuple[Timeframe, ...] = (Timeframe.S1,)
    required: frozenset[InputPart] = frozenset({InputPart.COB})
    prediction_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        timeframes = _timeframes(self.timeframes, "timeframes")
        if not timeframes:
            raise ValueError("InputSpec.timeframes must name at least one timeframe")
        object.__setattr__(self, "timeframes", timeframes)
        for name in ("frames", "min_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"InputSpec.{name} must be an int, got {value!r}")
        if not 1 <= self.min_frames <= self.frames:
            raise ValueError(
                f"InputSpec needs 1 <= min_frames <= frames, got min_frames={self.min_frames}, "
                f"frames={self.frames}"
            )
        reference = self.reference_symbol
        if reference is not None:
            reference = Symbol.parse(reference)
        object.__setattr__(self, "reference_symbol", reference)
        ref_tfs = _timeframes(self.reference_timeframes, "reference_timeframes")
        object.__setattr__(self, "reference_timeframes", ref_tfs if reference else ())
        required = frozenset(InputPart(p) for p in self.required)
        sources = tuple(str(s) for s in self.prediction_sources)
        if any(not s for s in sources):
            raise ValueError("InputSpec.prediction_sources must not contain empty names")
        if sources:
            required |= {InputPart.PREDICTIONS}
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "prediction_sources", sources)

    @classmethod
    def full(cls) -> InputSpec:
        """Seed 003's full set: 300 frames of 1s/1m/1h/1d, BTC/USDT 1s reference, COB required.

        At least 100 frames per stream (the seed's minimum); the same as ``InputSpec()``.
        """
        return cls()

    @classmethod
    def candles(
        cls,
        timeframes: Iterable[Timeframe | str],
        *,
        frames: int = 300,
        min_frames: int = 100,
        reference_symbol: Symbol | str | None = None,
        reference_timeframes: Iterable[Timeframe | str] = (),
    ) -> InputSpec:
        """A spec that needs candle streams only (no COB, pivots or predictions)."""
        return cls(
            timeframes=tuple(Timeframe.parse(tf) for tf in timeframes),
            frames=frames,
            min_frames=min_frames,
            reference_symbol=None if reference_symbol is None else Symbol.parse(reference_symbol),
            reference_timeframes=tuple(Timeframe.parse(tf) for tf in reference_timeframes),
            required=frozenset(),
        )

    @property
    def streams(self) -> tuple[tuple[bool, Timeframe], ...]:
        """Candle streams in encoding order: ``(is_reference, timeframe)``, primary first."""
        return tuple((False, tf) for tf in self.timeframes) + tuple(
            (True, tf) for tf in self.reference_timeframes
        )

    @property
    def stream_names(self) -> tuple[str, ...]:
        """Names of the streams in encoding order: ``"1m"`` or ``"reference 1s"``."""
        return tuple(f"reference {tf}" if ref else str(tf) for ref, tf in self.streams)
