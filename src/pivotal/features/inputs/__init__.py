"""The standardized model input (seed 003's StandardizedDataProvider / BaseDataInput).

- :class:`InputSpec`: what a model declares it reads (timeframes, frames, reference, parts).
- :func:`build_input` / :class:`InputBuilder`: one ``BaseDataInput`` at ``t``, known at ``t``.
- :func:`check_input` / :func:`require_complete`: validation before inference.
- :class:`InputEncoder`: the input as a ``(streams, frames, channels)`` float32 tensor.
- :class:`EncodedInputDataset`: the same tensors in bulk for every close of a range.
- :func:`candle_columns` / :class:`ColumnsConfig`: per-candle indicator, pivot and COB columns.
- :class:`StreamingCandleColumns`, :class:`RollingCandles`, :class:`ObservationBuilder`: the
  same columns one candle at a time, a bounded window of them, and the encoded sample from it.
- :class:`StandardizedDataProvider`: everything above from a store at ``t``, plus
  :class:`COBHistory`, :class:`PredictionLog` and the :class:`ContextEncoder` vector.
"""

from pivotal.features.inputs.builder import InputBuilder, build_input, closed_window
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.context import ContextEncoder
from pivotal.features.inputs.dataset import EncodedInputDataset
from pivotal.features.inputs.encoder import (
    BASE_CHANNELS,
    ExtraFeatures,
    InputEncoder,
    InputLayout,
)
from pivotal.features.inputs.history import COBHistory, PredictionLog
from pivotal.features.inputs.observation import ObservationBuilder
from pivotal.features.inputs.provider import EncodedInput, StandardizedDataProvider
from pivotal.features.inputs.rolling import RollingCandles
from pivotal.features.inputs.spec import SEED_TIMEFRAMES, InputPart, InputSpec
from pivotal.features.inputs.streaming_columns import StreamingCandleColumns
from pivotal.features.inputs.validation import InputReport, check_input, require_complete

__all__ = [
    "BASE_CHANNELS",
    "SEED_TIMEFRAMES",
    "COBHistory",
    "ColumnsConfig",
    "ContextEncoder",
    "ObservationBuilder",
    "RollingCandles",
    "StreamingCandleColumns",
    "EncodedInput",
    "PredictionLog",
    "StandardizedDataProvider",
    "candle_columns",
    "EncodedInputDataset",
    "ExtraFeatures",
    "InputBuilder",
    "InputEncoder",
    "InputLayout",
    "InputPart",
    "InputReport",
    "InputSpec",
    "build_input",
    "check_input",
    "closed_window",
    "require_complete",
]
