"""A module's parameter and buffer lists, kept until torch registers one anywhere.

Walking a module tree (``model.parameters()``, ``named_modules()``) costs tens of
microseconds per call; the experts ask for it on every step (:func:`weights_key`) and every
learning attempt (:func:`frozen_tensors`). The lists are kept per module and read again
after any parameter or buffer registration in the process (torch's global registration hooks
fire on ``register_parameter``/``register_buffer``, on assigning a ``Parameter`` or a buffer
attribute, and on ``load_state_dict(..., assign=True)``), so a replaced tensor is never
missed. In-place changes (optimizer steps, ``load_state_dict``) keep the tensors and bump
their version counters, which the callers sum.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

__all__ = ["frozen_tensors", "weights_key"]


class _Registrations:
    """Counts parameter and buffer registrations in the whole process."""

    count = 0

    @classmethod
    def seen(cls, module: nn.Module, name: str, value: Any) -> None:
        cls.count += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_Registrations.seen)
torch.nn.modules.module.register_module_buffer_registration_hook(_Registrations.seen)

_PARAMETERS: weakref.WeakKeyDictionary[nn.Module, tuple[int, list[nn.Parameter]]]
_PARAMETERS = weakref.WeakKeyDictionary()
_FROZEN: weakref.WeakKeyDictionary[nn.Module, tuple[int, nn.Module, list[torch.Tensor]]]
_FROZEN = weakref.WeakKeyDictionary()


def weights_key(model: nn.Module) -> tuple[int, int]:
    """Changes whenever the weights may have changed: a new module, a replaced parameter, or
    any in-place update of one (optimizer steps and ``load_state_dict`` bump a tensor's
    version counter)."""
    kept = _PARAMETERS.get(model)
    if kept is None or kept[0] != _Registrations.count:
        kept = (_Registrations.count, list(model.parameters()))
        _PARAMETERS[model] = kept
    return id(model), sum(p._version for p in kept[1])


def frozen_tensors(model: nn.Module, layer: nn.Module) -> list[torch.Tensor]:
    """``model``'s parameters and buffers outside ``layer`` (one of its submodules)."""
    kept = _FROZEN.get(model)
    if kept is None or kept[0] != _Registrations.count or kept[1] is not layer:
        own = {id(t) for t in (*layer.parameters(), *layer.buffers())}
        tensors = [t for t in (*model.parameters(), *model.buffers()) if id(t) not in own]
        kept = (_Registrations.count, layer, tensors)
        _FROZEN[model] = kept
    return kept[2]
