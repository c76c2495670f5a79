"""The orchestrator's configuration: one strict, frozen model per component.

Unknown keys are refused (``StrictModel``), so a typo in a YAML file is an error naming the
key instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pivotal.config.models import StrictModel

__all__ = [
    "ExpertConfig",
    "GateConfig",
    "HistoryConfig",
    "InferenceConfig",
    "LearningConfig",
    "OrchestratorConfig",
    "StreamConfig",
]


class ExpertConfig(StrictModel):
    """One model behind the orchestrator, loaded from a checkpoint."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["pivot_cnn", "dqn"] = Field(
        description="pivot_cnn: a `pivotal train pivot_cnn` checkpoint; dqn: a "
        "`pivotal train dqn` checkpoint (its job file beside it)"
    )
    checkpoint: Path
    depends_on: list[str] = Field(
        default_factory=list,
        description="experts whose output of the same step this one reads (dqn: the CNN)",
    )


class GateConfig(StrictModel):
    """How the experts' votes become one action (mixture of experts)."""

    kind: Literal["vote", "learned"] = Field(
        default="vote",
        description="vote: confidence-weighted vote; learned: a small gating network trained "
        "on stored outcomes (falls back to the vote until it has enough examples)",
    )
    buy_threshold: float = Field(default=0.5, ge=0, le=1)
    sell_threshold: float = Field(default=0.5, ge=0, le=1)
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="below this combined confidence: HOLD"
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="prior weight per expert (default 1)"
    )
    learned_hidden: int = Field(default=16, ge=1, le=1024)
    learned_learning_rate: float = Field(default=0.01, gt=0, le=1)
    learned_min_examples: int = Field(default=64, ge=1)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v >= 0}
        if bad:
            raise ValueError(f"gate weights must be >= 0, got {bad}")
        return value


class InferenceConfig(StrictModel):
    """How the coordinator calls the experts."""

    timeout_ms: float = Field(
        default=2_000.0, gt=0, description="an expert slower than this is isolated (hang)"
    )
    parallel: bool = Field(
        default=True, description="run independent experts of a step at the same time"
    )
    max_failures: int = Field(
        default=1, ge=1, description="consecutive failures (raise, NaN, timeout) before isolation"
    )


class HistoryConfig(StrictModel):
    """Inference history in the store: every decision with its inputs and outputs."""

    enabled: bool = True
    max_age_days: float | None = Field(default=30.0, gt=0)
    max_megabytes: float | None = Field(default=512.0, gt=0)
    compression_level: int = Field(
        default=3, ge=0, le=22, description="zstd level of the payloads (0: stored)"
    )


class LearningConfig(StrictModel):
    """The inference → outcome → training loop (seed 003 §4.6)."""

    enabled: bool = True
    horizon_bars: int = Field(default=12, ge=1, description="base bars until a prediction matures")
    dead_band: float = Field(
        default=0.001, ge=0, description="|return| at or below this is labelled HOLD"
    )
    batch_size: int = Field(default=32, ge=1, description="new examples per online update")
    holdout: int = Field(
        default=64, ge=4, description="most recent matured examples a candidate is judged on"
    )
    epochs: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    score: Literal["log_loss", "accuracy"] = Field(
        default="log_loss",
        description="how a candidate is judged on the holdout: log_loss (lower log-loss by "
        "more than min_improvement, accuracy not lower) or accuracy (higher by more than "
        "min_improvement)",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="a candidate is promoted only when it beats the current model's holdout "
        "score by more than this",
    )
    accuracy_window: int = Field(default=200, ge=10)
    degradation_drop: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="rolling accuracy this far below its best triggers retraining",
    )
    retrain_epochs: int = Field(default=5, ge=1)
    buffer: int = Field(default=5_000, ge=16, description="matured examples kept per expert")
    apply_after_steps: int = Field(
        default=16,
        ge=1,
        description="a candidate trains on a worker thread; its result (promoted weights, "
        "events, checkpoint) takes effect this many steps after the step that asked for it, "
        "waiting there if the worker is late, so a replay is deterministic (1: before the "
        "next step, as if trained inline). Paper and live runs apply results as soon as "
        "they are ready instead",
    )
    keep_checkpoints: int = Field(default=5, ge=1)
    checkpoint_dir: Path | None = Field(
        default=None,
        description="where promoted models are kept (best N); none: not saved. Give each run "
        "its own folder ('{run}' is replaced by the run file's name); a backtest loads only "
        "checkpoints learned before its first learning bar",
    )

    @model_validator(mode="after")
    def _sizes(self) -> LearningConfig:
        if self.holdout >= self.buffer:
            raise ValueError(f"holdout ({self.holdout}) must be below buffer ({self.buffer})")
        return self


class StreamConfig(StrictModel):
    """Back-pressure of one kind of stream in the subscription manager."""

    refresh_ms: int = Field(default=1_000, ge=1, description="expected update period")
    capacity: int = Field(default=1_024, ge=1, description="updates buffered before overflow")
    overflow: Literal["coalesce", "drop_oldest"] = Field(
        default="coalesce",
        description="coalesce: keep only the newest update per key; drop_oldest: drop the "
        "oldest buffered update (both counted)",
    )


def _default_streams() -> dict[str, StreamConfig]:
    return {
        "candles": StreamConfig(refresh_ms=1_000, capacity=4_096, overflow="drop_oldest"),
        "cob": StreamConfig(refresh_ms=100, capacity=64, overflow="coalesce"),
        "trades": StreamConfig(refresh_ms=100, capacity=8_192, overflow="drop_oldest"),
        "indicators": StreamConfig(refresh_ms=1_000, capacity=256, overflow="coalesce"),
        "pivots": StreamConfig(refresh_ms=1_000, capacity=256, overflow="coalesce"),
    }


class OrchestratorConfig(StrictModel):
    """Everything the orchestrator needs besides its data and broker."""

    experts: list[ExpertConfig] = Field(default_factory=list)
    gate: GateConfig = Field(default_factory=GateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    streams: dict[Literal["candles", "cob", "trades", "indicators", "pivots"], StreamConfig] = (
        Field(default_factory=_default_streams)
    )
    output_capacity: int = Field(
        default=1_000, ge=1, description="outputs kept in memory per model and symbol"
    )
    frame_capacity: int = Field(
        default=1_500,
        ge=2,
        description="candles the market frame keeps per symbol and timeframe (seed 003's "
        "1,500-candle cache); at least the largest expert's frames",
    )

    @model_validator(mode="after")
    def _graph(self) -> OrchestratorConfig:
        names = [e.name for e in self.experts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"expert names must be unique; repeated: {repeated}")
        for expert in self.experts:
            unknown = [d for d in expert.depends_on if d not in names]
            if unknown:
                raise ValueError(
                    f"expert {expert.name!r} depends on unknown expert(s) {unknown}; "
                    f"experts: {names}"
                )
        unknown_weights = sorted(set(self.gate.weights) - set(names))
        if unknown_weights and names:
            raise ValueError(f"gate weights name unknown experts {unknown_weights}")
        return self
