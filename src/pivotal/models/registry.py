"""Names → model classes, so configs, checkpoints and the CLI can name any network.

``@register("transformer")`` on a :class:`~pivotal.models.base.PivotalModel` subclass adds it;
:func:`create` builds one by name and :func:`available` lists the names. Networks register
when :mod:`pivotal.models` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pivotal.models.base import InputShape, PivotalModel, TargetSpec

__all__ = ["available", "create", "model_class", "register"]

_REGISTRY: dict[str, type[PivotalModel]] = {}
M = TypeVar("M", bound=type[PivotalModel])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make the class buildable as ``create(name, ...)``."""
    if not name or name != name.strip() or name.lower() != name:
        raise ValueError(f"model names are lower-case without surrounding spaces, got {name!r}")

    def decorate(cls: M) -> M:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"model name {name!r} is already registered to {existing.__name__}")
        _REGISTRY[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def available() -> tuple[str, ...]:
    """Registered model names, sorted."""
    return tuple(sorted(_REGISTRY))


def model_class(name: str) -> type[PivotalModel]:
    """The class registered as ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; registered models: {', '.join(available()) or 'none'}"
        ) from None


def create(
    name: str, shape: InputShape, targets: TargetSpec, **hyperparameters: Any
) -> PivotalModel:
    """Build model ``name`` for ``shape``/``targets``; unknown hyperparameters are refused."""
    cls = model_class(name)
    try:
        return cls(shape, targets, **hyperparameters)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: {exc}") from None
