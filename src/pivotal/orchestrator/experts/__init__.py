"""Trained checkpoints as orchestrator experts: :class:`PivotCNNExpert` (trainable online,
its action head) and :class:`DQNExpert` (reads the PivotCNN's output of the same step), and
:func:`expert_from_config` that builds either from an :class:`ExpertConfig`."""

from __future__ import annotations

from pivotal.orchestrator.config import ExpertConfig
from pivotal.orchestrator.contracts import Expert
from pivotal.orchestrator.experts.dqn import DQNExpert
from pivotal.orchestrator.experts.pivot_cnn import PivotCNNExpert

__all__ = ["DQNExpert", "PivotCNNExpert", "expert_from_config"]


def expert_from_config(config: ExpertConfig, *, device: str = "cpu") -> Expert:
    """The expert ``config`` describes. ``pivot_cnn`` takes no ``depends_on``; ``dqn`` takes
    the name of its PivotCNN expert there when its job was trained with CNN features (one
    name), none otherwise. ``ValueError`` for other ``depends_on``."""
    deps = list(config.depends_on)
    if config.kind == "pivot_cnn":
        if deps:
            raise ValueError(
                f"expert {config.name!r}: a pivot_cnn expert reads no other expert; drop "
                f"depends_on {deps}"
            )
        return PivotCNNExpert(config.checkpoint, name=config.name, device=device)
    if len(deps) > 1:
        raise ValueError(
            f"expert {config.name!r}: a dqn expert reads at most one PivotCNN expert, got "
            f"depends_on {deps}"
        )
    return DQNExpert(
        config.checkpoint, name=config.name, cnn=deps[0] if deps else None, device=device
    )
