"""Seed 003's CheckpointManager: the best N checkpoints per model, and a trainer callback."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pivotal.core.errors import ModelError
from pivotal.models.base import PivotalModel
from pivotal.training.checkpoints import (
    Checkpoint,
    Layout,
    atomic_write_text,
    json_safe,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from pivotal.training.trainer import Callback, EpochLog, Trainer

__all__ = ["CheckpointCallback", "CheckpointEntry", "CheckpointManager"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """One kept checkpoint: its file, epoch, ranking value and all its metrics."""

    path: Path
    epoch: int
    value: float
    metrics: dict[str, Any]
    created_at_ms: int
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "epoch": self.epoch,
            "value": self.value,
            "metrics": json_safe(self.metrics),
            "created_at_ms": self.created_at_ms,
            "seq": self.seq,
        }


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CheckpointManager:
    """Keeps the best ``keep`` checkpoints of one model in ``directory`` by ``metric``.

    Files are named ``<model_name>_e<epoch>_<metric>_<value>.pt``; the index
    ``<model_name>.checkpoints.json`` lists them best first with their metrics. ``mode`` is
    ``"min"`` (lower is better, e.g. losses) or ``"max"``. Ties keep the older checkpoint.
    A lost or unreadable index is rebuilt from the checkpoint files.
    """

    def __init__(
        self,
        directory: str | Path,
        model_name: str,
        keep: int = 5,
        metric: str = "val_loss",
        mode: Literal["min", "max"] = "min",
    ) -> None:
        if not _NAME.match(model_name or ""):
            raise ValueError(
                f"model_name must be letters, digits, '_', '.', '-' (a file name), got "
                f"{model_name!r}"
            )
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive int, got {keep!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.model_name = model_name
        self.keep = keep
        self.metric = metric
        self.mode = mode
        self.index_path = self.directory / f"{model_name}.checkpoints.json"
        self._entries = self._load_index()

    # ranking ---------------------------------------------------------------------------------

    def _key(self, entry: CheckpointEntry) -> tuple[float, int]:
        return (entry.value if self.mode == "min" else -entry.value, entry.seq)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    # index -------------------------------------------------------------------------------------

    def _load_index(self) -> list[CheckpointEntry]:
        if not self.index_path.is_file():
            return self._rebuild()
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
            if data["metric"] != self.metric or data["mode"] != self.mode:
                raise ValueError(
                    f"{self.index_path} ranks by {data['metric']} ({data['mode']}), not "
                    f"{self.metric} ({self.mode}); use the same metric and mode or another "
                    "directory"
                )
            entries = [
                CheckpointEntry(
                    path=self.directory / e["file"],
                    epoch=int(e["epoch"]),
                    value=float(e["value"]),
                    metrics=dict(e["metrics"]),
                    created_at_ms=int(e["created_at_ms"]),
                    seq=int(e["seq"]),
                )
                for e in data["checkpoints"]
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            logger.warning("checkpoint index %s unreadable (%s); rebuilding", self.index_path, exc)
            return self._rebuild()
        kept = [e for e in entries if e.path.is_file()]
        return sorted(kept, key=self._key)

    def _rebuild(self) -> list[CheckpointEntry]:
        entries = []
        for seq, path in enumerate(sorted(self.directory.glob(f"{self.model_name}_e*.pt"))):
            try:
                ckpt = read_checkpoint(path)
            except ModelError as exc:
                logger.warning("skipping unreadable checkpoint %s: %s", path, exc)
                continue
            value = ckpt.metrics.get(self.metric)
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            entries.append(
                CheckpointEntry(
                    path, ckpt.epoch or 0, float(value), ckpt.metrics, ckpt.created_at_ms, seq
                )
            )
        entries.sort(key=self._key)
        if entries:
            self._write_index(entries)
        return entries

    def _write_index(self, entries: list[CheckpointEntry]) -> None:
        data = {
            "model_name": self.model_name,
            "metric": self.metric,
            "mode": self.mode,
            "keep": self.keep,
            "checkpoints": [e.to_dict() for e in entries],
        }
        atomic_write_text(self.index_path, json.dumps(data, indent=2) + "\n")

    # public ------------------------------------------------------------------------------------

    def list(self) -> list[CheckpointEntry]:
        """Kept checkpoints, best first."""
        return list(self._entries)

    def best_path(self) -> Path | None:
        """The best checkpoint's file, or None when there is none."""
        return self._entries[0].path if self._entries else None

    def ranking_value(self, metrics: Mapping[str, Any]) -> float:
        """``metrics[metric]`` as a finite float; ``ValueError`` naming what is wrong."""
        value = metrics.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
            raise ValueError(
                f"metrics must contain a number {self.metric!r} to rank checkpoints, got "
                f"{value!r} (metrics: {sorted(metrics)}); train with validation data or "
                "rank by another metric"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {self.metric!r} is {value}; it cannot rank a checkpoint")
        return value

    def admits(self, value: float) -> bool:
        """Whether a checkpoint ranked by ``value`` would be among the best ``keep`` (ties
        keep the older one, so a tie with the last kept is not admitted)."""
        entries = self._entries
        return len(entries) < self.keep or self._better(value, entries[self.keep - 1].value)

    def path_for(self, epoch: int, value: float) -> Path:
        """The file a checkpoint of ``epoch`` ranked by ``value`` is written to."""
        return self.directory / f"{self.model_name}_e{epoch:04d}_{self.metric}_{value:.6g}.pt"

    def record(
        self,
        path: Path,
        *,
        epoch: int,
        value: float,
        metrics: Mapping[str, Any],
        created_at_ms: int,
    ) -> CheckpointEntry:
        """Rank the checkpoint just written to ``path``, rewrite the index and delete the
        files it displaced from the best ``keep``. Returns its entry."""
        entries = self._entries
        seq = max((e.seq for e in entries), default=-1) + 1
        entry = CheckpointEntry(Path(path), epoch, value, dict(metrics), int(created_at_ms), seq)
        ranked = sorted([e for e in entries if e.path != entry.path] + [entry], key=self._key)
        kept, dropped = ranked[: self.keep], ranked[self.keep :]
        self._write_index(kept)
        self._entries = kept
        for old in dropped:
            old.path.unlink(missing_ok=True)
        return entry

    def save(
        self,
        *,
        model: PivotalModel,
        epoch: int,
        metrics: Mapping[str, Any],
        **kwargs: Any,
    ) -> Path | None:
        """Save a checkpoint if it ranks among the best ``keep``; drop the ones it displaces.

        ``metrics`` must hold a finite ``metric``; ``kwargs`` go to :func:`save_checkpoint`
        (``training_config`` is required there). Returns the new file, or None when it would
        not have been kept (nothing is written then).
        """
        value = self.ranking_value(metrics)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if not self.admits(value):
            return None
        path = self.path_for(epoch, value)
        ckpt = save_checkpoint(path, model=model, metrics=metrics, epoch=epoch, **kwargs)
        self.record(
            path, epoch=epoch, value=value, metrics=ckpt.metrics, created_at_ms=ckpt.created_at_ms
        )
        return path

    def load_best(
        self, *, expected_layout: Layout | None = None, map_location: Any = "cpu"
    ) -> tuple[PivotalModel, Checkpoint] | None:
        """The best loadable checkpoint's model and metadata; None when there is none.

        A corrupt file is skipped (with a warning) in favour of the next best; a layout
        mismatch raises ``ValueError`` as in :func:`load_checkpoint`.
        """
        for entry in self._entries:
            try:
                return load_checkpoint(
                    entry.path, expected_layout=expected_layout, map_location=map_location
                )
            except (ModelError, FileNotFoundError) as exc:
                logger.warning(
                    "cannot load checkpoint %s (%s); trying the next best", entry.path, exc
                )
        return None


class CheckpointCallback(Callback):
    """Saves each epoch through a :class:`CheckpointManager` (it keeps only the best).

    ``save_kwargs`` (``scaler_state``, ``feature_layout``, ``input_spec``, ``data_span``,
    ``model_name``) are passed to every save; the metrics are :meth:`EpochLog.metrics`.
    """

    def __init__(self, manager: CheckpointManager, **save_kwargs: Any) -> None:
        self.manager = manager
        self.save_kwargs = save_kwargs
        self.saved: list[Path] = []

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        path = self.manager.save(
            model=trainer.model,
            optimizer=trainer.optimizer,
            training_config=trainer.config,
            epoch=log.epoch,
            metrics=log.metrics(),
            **self.save_kwargs,
        )
        if path is not None:
            self.saved.append(path)
