"""Checkpoints: a trained network with everything needed to rebuild and trust it.

A checkpoint file (``torch.save``) holds the weights, the optimizer state, and plain-Python
metadata: the registry name and ``model.config()`` (shape, targets, hyperparameters), the
training config, the feature scaler's state, the feature layout (names and order), the input
spec, metrics, the data span it was trained on, the package version and the creation time
(UTC ms). Files load with ``torch.load(weights_only=True)``: no arbitrary code runs.

Writes are atomic: a temporary file in the same directory is written, synced and renamed
over the target, so a crash never leaves a partial checkpoint behind.
:class:`CheckpointManager` keeps the best ``keep`` checkpoints of one model by a metric
(seed 003: "only top 5 to 10 best checkpoints are stored for each model") with an index
file, and loads the best at start-up.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pivotal.core.errors import ModelError
from pivotal.data.atomic import atomic_write, atomic_write_text
from pivotal.features.inputs.encoder import InputLayout
from pivotal.features.inputs.spec import InputSpec
from pivotal.features.scalers import FeatureLayout, Scaler, scaler_from_state
from pivotal.models import registry
from pivotal.models.base import InputShape, PivotalModel, TargetSpec
from pivotal.training.config import TrainingConfig

__all__ = [
    "Checkpoint",
    "atomic_write",
    "atomic_write_text",
    "json_safe",
    "layout_differences",
    "layout_to_dict",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "spec_to_dict",
]

logger = logging.getLogger(__name__)

FORMAT = "pivotal-checkpoint"
FORMAT_VERSION = 1
DATA_SPAN_KEYS = ("symbol", "exchange", "timeframe", "start", "end")
Layout = FeatureLayout | InputLayout | Mapping[str, Any]


# --- plain metadata --------------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain Python (dict/list/tuple/str/int/float/bool/None) or ``TypeError``."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, Enum):
        return _plain(value.value, where)
    if value is None or isinstance(value, bool | int | float | str):
        return type(value)(value) if value is not None else None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, tuple):
        return tuple(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} cannot be stored in a checkpoint; use plain "
        "numbers, strings, lists and dicts"
    )


def json_safe(value: Any) -> Any:
    """Tuples → lists, for JSON files."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def layout_to_dict(layout: Layout) -> dict[str, Any]:
    """A feature layout (``FeatureLayout``) or encoded-input layout (``InputLayout``) as data.

    ``{"kind": "features", "names": [...]}`` or ``{"kind": "input", "streams": [...],
    "frames": n, "channels": [...]}``; a mapping of that form passes through (checked).
    """
    if isinstance(layout, FeatureLayout):
        return {"kind": "features", "names": list(layout.names)}
    if isinstance(layout, InputLayout):
        return {
            "kind": "input",
            "streams": list(layout.streams),
            "frames": int(layout.frames),
            "channels": list(layout.channels.names),
        }
    if isinstance(layout, Mapping):
        kind = layout.get("kind")
        keys = {"features": {"kind", "names"}, "input": {"kind", "streams", "frames", "channels"}}
        if kind not in keys or set(layout) != keys[kind]:
            raise ValueError(
                f"a layout mapping needs kind 'features' (names) or 'input' (streams, frames, "
                f"channels), got keys {sorted(layout)}"
            )
        return json_safe(_plain(dict(layout), "feature_layout"))
    raise TypeError(
        f"feature_layout must be a FeatureLayout, an InputLayout or its dict, "
        f"got {type(layout).__name__}"
    )


def _list_diff(name: str, saved: list[Any], expected: list[Any]) -> list[str]:
    if saved == expected:
        return []
    missing = [n for n in expected if n not in saved]
    extra = [n for n in saved if n not in expected]
    out = []
    if missing:
        out.append(f"{name} expected but not in the checkpoint: {missing}")
    if extra:
        out.append(f"{name} in the checkpoint but not expected: {extra}")
    if not out:
        out.append(f"{name} in another order: checkpoint {saved}, expected {expected}")
    return out


def layout_differences(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`layout_to_dict` layouts (empty: same)."""
    if saved.get("kind") != expected.get("kind"):
        return [f"the checkpoint has a {saved.get('kind')} layout, expected {expected['kind']}"]
    if saved["kind"] == "features":
        return _list_diff("features", list(saved["names"]), list(expected["names"]))
    diffs = _list_diff("streams", list(saved["streams"]), list(expected["streams"]))
    if saved["frames"] != expected["frames"]:
        diffs.append(f"frames: checkpoint {saved['frames']}, expected {expected['frames']}")
    diffs += _list_diff("channels", list(saved["channels"]), list(expected["channels"]))
    return diffs


def spec_to_dict(spec: InputSpec) -> dict[str, Any]:
    """An ``InputSpec`` as plain data (timeframes and symbols as strings)."""
    return {
        "timeframes": [str(tf) for tf in spec.timeframes],
        "frames": spec.frames,
        "min_frames": spec.min_frames,
        "reference_symbol": None if spec.reference_symbol is None else str(spec.reference_symbol),
        "reference_timeframes": [str(tf) for tf in spec.reference_timeframes],
        "required": sorted(p.value for p in spec.required),
        "prediction_sources": list(spec.prediction_sources),
    }


def _package_version() -> str:
    try:
        return importlib.metadata.version("pivotal")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# --- one checkpoint --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint's metadata (plain data) and optimizer state; the weights are in the model.

    ``model_config`` is ``model.config()`` (``shape``, ``targets``, ``hyperparameters``);
    ``created_at_ms`` is UTC milliseconds.
    """

    path: Path
    model_name: str
    model_config: dict[str, Any]
    training_config: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    scaler_state: dict[str, Any] | None
    feature_layout: dict[str, Any] | None
    input_spec: dict[str, Any] | None
    metrics: dict[str, Any]
    data_span: dict[str, Any] | None
    epoch: int | None
    package_version: str
    created_at_ms: int
    format_version: int = FORMAT_VERSION
    pipeline: dict[str, Any] | None = None
    """What the training pipeline needs to rebuild the data (its job and target scaling)."""

    @property
    def trained_until_ms(self) -> int | None:
        """The newest time (UTC ms) whose market data may have gone into these weights, the
        latest of: ``metrics["learned_until_ms"]`` (the orchestrator's learning loop: the
        close of the newest candle it learned from), the training job's ``until`` (``pivotal
        train``: the end of the range it read, validation and test included) and
        ``data_span["end"]`` (the last training sample). None when none is recorded."""
        found: list[int] = []
        learned = self.metrics.get("learned_until_ms")
        if isinstance(learned, int | float) and not isinstance(learned, bool):
            found.append(int(learned))
        job = (self.pipeline or {}).get("job")
        until = job.get("until") if isinstance(job, Mapping) else None
        if isinstance(until, int) and not isinstance(until, bool):
            found.append(until)
        end = (self.data_span or {}).get("end")
        if isinstance(end, int | float) and not isinstance(end, bool):
            found.append(int(end))
        return max(found) if found else None

    def scaler(self) -> Scaler | None:
        """The fitted feature scaler, rebuilt with ``scaler_from_state`` (None if absent)."""
        return None if self.scaler_state is None else scaler_from_state(self.scaler_state)

    def training(self) -> TrainingConfig:
        """The training config it was trained with."""
        return TrainingConfig.model_validate(self.training_config)


def save_checkpoint(
    path: str | Path,
    *,
    model: PivotalModel,
    training_config: TrainingConfig | Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scaler_state: Mapping[str, Any] | Any | None = None,
    feature_layout: Layout | None = None,
    input_spec: InputSpec | Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    data_span: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    epoch: int | None = None,
    pipeline: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Atomically write a checkpoint of ``model`` to ``path`` and return its metadata.

    ``model_name`` defaults to the name the model class was registered under.
    ``scaler_state`` is a scaler's ``state_dict()`` (or the fitted scaler itself);
    ``data_span`` names ``symbol, exchange, timeframe, start, end`` (start/end UTC ms).
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model must be a PivotalModel, got {type(model).__name__}")
    name = model_name or getattr(model, "registry_name", None)
    if not name:
        raise ValueError(
            f"{type(model).__name__} is not registered; register it with "
            "pivotal.models.register(name) or pass model_name="
        )
    if isinstance(training_config, TrainingConfig):
        training = training_config.model_dump(mode="json")
    else:
        training = TrainingConfig.model_validate(training_config).model_dump(mode="json")
    if scaler_state is not None and not isinstance(scaler_state, Mapping):
        scaler_state = scaler_state.state_dict()
    span = None
    if data_span is not None:
        missing = [k for k in DATA_SPAN_KEYS if k not in data_span]
        if missing:
            raise ValueError(f"data_span needs {list(DATA_SPAN_KEYS)}; missing {missing}")
        span = _plain(dict(data_span), "data_span")
    spec = input_spec
    if isinstance(spec, InputSpec):
        spec = spec_to_dict(spec)
    metadata = {
        "model_name": str(name),
        "model_config": _plain(model.config(), "model_config"),
        "training_config": training,
        "scaler_state": _plain(scaler_state, "scaler_state"),
        "feature_layout": None if feature_layout is None else layout_to_dict(feature_layout),
        "input_spec": _plain(spec, "input_spec"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "data_span": span,
        "epoch": None if epoch is None else int(epoch),
        "package_version": _package_version(),
        "created_at_ms": int(time.time() * 1000),
        "pipeline": _plain(None if pipeline is None else dict(pipeline), "pipeline"),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": metadata,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": None if optimizer is None else optimizer.state_dict(),
    }
    target = atomic_write(path, lambda fh: torch.save(payload, fh))
    return Checkpoint(
        path=target,
        optimizer_state=payload["optimizer_state"],
        format_version=FORMAT_VERSION,
        **metadata,
    )


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path or list checkpoints")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unreadable file: truncated zip, garbage, foreign pickle
        raise ModelError(
            f"checkpoint {path} is corrupt or not a checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:200]}); delete it or load another one"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a pivotal checkpoint (no '{FORMAT}' marker)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"checkpoint {path} has format version {version!r}; this pivotal reads up to "
            f"{FORMAT_VERSION}: upgrade pivotal"
        )
    return payload


def _metadata(path: Path, payload: Mapping[str, Any]) -> Checkpoint:
    meta = payload.get("metadata")
    optional = {"pipeline"}
    fields = set(Checkpoint.__dataclass_fields__) - {"path", "optimizer_state", "format_version"}
    if not isinstance(meta, dict) or not fields - optional <= set(meta):
        raise ModelError(f"checkpoint {path} has incomplete metadata; it cannot be rebuilt")
    return Checkpoint(
        path=path,
        optimizer_state=payload.get("optimizer_state"),
        format_version=int(payload["format_version"]),
        **{k: meta[k] for k in fields if k in meta},
    )


def read_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> Checkpoint:
    """Only the metadata (and optimizer state) of a checkpoint, without building the model."""
    p = Path(path)
    return _metadata(p, _read(p, map_location))


def load_checkpoint(
    path: str | Path,
    *,
    expected_layout: Layout | None = None,
    map_location: Any = "cpu",
) -> tuple[PivotalModel, Checkpoint]:
    """Rebuild the model of a checkpoint (in eval mode) and return it with its metadata.

    ``expected_layout`` (the layout of the inputs the caller will feed) must equal the
    checkpoint's, or ``ValueError`` lists the differences. ``FileNotFoundError`` for a
    missing file; ``ModelError`` for a corrupt file, an unregistered model name, or weights
    that do not fit the architecture.
    """
    p = Path(path)
    payload = _read(p, map_location)
    ckpt = _metadata(p, payload)
    if expected_layout is not None:
        expected = layout_to_dict(expected_layout)
        if ckpt.feature_layout is None:
            raise ValueError(
                f"checkpoint {p} stores no feature layout, so it cannot be checked against "
                "the expected one; re-save it with feature_layout="
            )
        diffs = layout_differences(ckpt.feature_layout, expected)
        if diffs:
            raise ValueError(
                f"checkpoint {p} was trained on another feature layout: {'; '.join(diffs)}. "
                "Build the inputs with the checkpoint's layout, or train a new model"
            )
    if ckpt.model_name not in registry.available():
        raise ModelError(
            f"checkpoint {p} was saved by model {ckpt.model_name!r}, which is not registered "
            f"(registered: {', '.join(registry.available()) or 'none'}); import the module "
            "that registers it"
        )
    cfg = ckpt.model_config
    try:
        model = registry.create(
            ckpt.model_name,
            InputShape(**cfg["shape"]),
            TargetSpec.from_dict(cfg["targets"]),
            **cfg["hyperparameters"],
        )
        model.load_state_dict(payload["model_state"])
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelError(
            f"checkpoint {p}: cannot rebuild model {ckpt.model_name!r} from its config and "
            f"weights ({exc}); it was saved by pivotal {ckpt.package_version}"
        ) from exc
    if isinstance(map_location, str | torch.device):
        model.to(map_location)
    model.eval()
    return model, ckpt
