"""Training one output layer of a frozen network on the layer's inputs, computed once.

The PivotCNN expert learns online only its action head (one ``nn.Linear``); the rest of the
network is frozen and runs in eval mode, so the head's input for a stored example never
changes while the network object stays the same. :class:`HeadInputs` keeps those inputs per
example (captured by a forward pre-hook on the head while the whole network runs on the
stored ``x``, in batches), and :func:`fit_head` trains the head on them alone: each epoch of
an online update is then a few small matrix products instead of a pass through the
convolutions and the recurrent layer. The arithmetic is the head's own, on the same inputs:
results equal training through the whole network up to float rounding (the frozen part is
evaluated in other batch sizes).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pivotal.orchestrator.experts.linear_adam import linear_adam_step, supports
from pivotal.orchestrator.experts.tensor_lists import frozen_tensors

__all__ = [
    "HeadInputs",
    "fit_head",
    "frozen_stamp",
    "frozen_state_equal",
    "head_layer",
    "label_indices",
    "optimizes",
    "stored_window",
]

FORWARD_BATCH = 512
"""Examples per forward pass when computing head inputs (and scoring)."""


_PATHS: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()


def head_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` whose own name is ``name`` (e.g. ``action_logits``);
    ``ValueError`` when there is none or more than one. Its path is found once per model
    object (walking the module tree costs tens of microseconds)."""
    paths = _PATHS.setdefault(model, {})
    path = paths.get(name)
    if path is None:
        found = [p for p, _ in model.named_modules() if p.rsplit(".", 1)[-1] == name]
        if len(found) != 1:
            raise ValueError(
                f"the model has {len(found)} layers named {name!r}, need exactly one to train"
            )
        path = paths[name] = found[0]
    return model.get_submodule(path)


def optimizes(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """Whether ``optimizer`` has one group holding exactly ``params`` (the same objects)."""
    groups = optimizer.param_groups
    if len(groups) != 1 or len(groups[0]["params"]) != len(params):
        return False
    return all(a is b for a, b in zip(groups[0]["params"], params, strict=True))


def label_indices(
    examples: Sequence[Any], columns: Mapping[Any, int], where: Callable[[Any], str]
) -> torch.Tensor:
    """The head's column of each example's outcome label (``columns``: label → column),
    ``ValueError`` saying ``where(example)`` for a label the head has no column for."""
    out = []
    for e in examples:
        index = columns.get(e.outcome.label)
        if index is None:
            raise ValueError(
                f"{where(e)}: outcome label {e.outcome.label} is not one of the action head's "
                f"{[str(k) for k in columns]}"
            )
        out.append(index)
    return torch.as_tensor(out, dtype=torch.int64)


def stored_window(
    tensors: Mapping[str, Any], key: str, want: tuple[int, ...], what: str
) -> torch.Tensor:
    """``tensors[key]`` (a stored input of shape ``(batch, *want)``) as an own, writable,
    C-ordered float32 tensor; ``ValueError`` starting with ``what`` when it is missing or
    shaped for another model."""
    if key not in tensors:
        raise ValueError(
            f"{what}: tensors hold {sorted(tensors)}, not {key!r} (the standardised input its "
            "inference stored)"
        )
    x = tensors[key]
    if isinstance(x, torch.Tensor):  # numpy's conversion of a tensor is ~100x slower
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise ValueError(
            f"{what}: {key} must be (batch, {', '.join(map(str, want))}), got {x.shape}; it "
            "was stored by another model"
        )
    return torch.from_numpy(np.array(x, dtype=np.float32, order="C"))


def frozen_stamp(model: nn.Module, layer: nn.Module) -> int:
    """A number that changes whenever a parameter or buffer of ``model`` outside ``layer``
    is changed in place (the sum of their autograd version counters)."""
    return sum(t._version for t in frozen_tensors(model, layer))


def frozen_state_equal(model: nn.Module, layer: nn.Module, state: Mapping[str, Any]) -> bool:
    """Whether ``state`` (a ``state_dict``) holds exactly ``model``'s current values for
    everything outside ``layer``."""
    prefix = next(path for path, m in model.named_modules() if m is layer) + "."
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            continue
        other = state.get(key)
        if not isinstance(other, torch.Tensor) or not torch.equal(value, other):
            return False
    return True


class HeadInputs:
    """The inputs of a network's trained layer per example key, at most ``capacity`` of
    them (the least recently used are dropped). Valid for one network object while its
    frozen part stays unchanged: :meth:`for_model` gives an empty cache otherwise."""

    def __init__(
        self, model: nn.Module | None = None, capacity: int = 20_000, stamp: int = 0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.model = model
        self.capacity = capacity
        self.stamp = stamp
        self._rows: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.computed = 0
        """Examples whose inputs were computed (a forward pass of the network each)."""

    def __len__(self) -> int:
        return len(self._rows)

    def for_model(self, model: nn.Module, layer: nn.Module) -> HeadInputs:
        """This cache when it was made for ``model`` and the frozen part has not changed
        since, else a new empty one for it."""
        stamp = frozen_stamp(model, layer)
        if self.model is model and self.stamp == stamp:
            return self
        return HeadInputs(model, self.capacity, stamp)

    def restamped(self, model: nn.Module, layer: nn.Module) -> HeadInputs:
        """This cache, still valid for ``model``: its frozen part was reloaded with the same
        values (a rollback), which changed the version counters only."""
        if self.model is not model:
            return HeadInputs(model, self.capacity, frozen_stamp(model, layer))
        self.stamp = frozen_stamp(model, layer)
        return self

    def rows(
        self,
        layer: nn.Module,
        keys: Sequence[Hashable],
        x_of: Callable[[int], torch.Tensor],
        device: str | torch.device,
    ) -> torch.Tensor:
        """``(len(keys), layer inputs)``: the cached rows, the missing ones computed by
        running the network on ``x_of(i)`` (example ``i``'s input, batch of one) in batches
        of :data:`FORWARD_BATCH`, under ``no_grad`` in the network's current mode."""
        if self.model is None:
            raise ValueError("HeadInputs has no network; make it with for_model(model)")
        missing = [i for i, k in enumerate(keys) if k not in self._rows]
        for lo in range(0, len(missing), FORWARD_BATCH):
            part = missing[lo : lo + FORWARD_BATCH]
            x = torch.cat([x_of(i) for i in part]).to(device)
            captured: list[torch.Tensor] = []
            keep = captured.append
            hook = layer.register_forward_pre_hook(lambda _m, args, keep=keep: keep(args[0]))
            try:
                with torch.no_grad():
                    self.model(x, None)
            finally:
                hook.remove()
            if len(captured) != 1:
                raise ValueError(
                    f"the trained layer ran {len(captured)} times in one forward pass; only a "
                    "layer used once per pass can be trained on cached inputs"
                )
            rows = captured[0].detach().cpu()
            for j, i in enumerate(part):
                self._rows[keys[i]] = rows[j]
            self.computed += len(part)
        out = []
        for k in keys:
            self._rows.move_to_end(k)
            out.append(self._rows[k])
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return torch.stack(out)


def fit_head(
    layer: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str | torch.device,
) -> float:
    """Train ``layer`` on ``inputs`` → ``labels`` (class indices) with cross-entropy for
    ``epochs`` passes in mini-batches of ``batch_size``, shuffled by
    ``np.random.default_rng(seed)`` (the order the whole-network training used); returns the
    mean loss per example over all steps. A plain Adam on an ``nn.Linear`` takes its steps
    without autograd (:mod:`~pivotal.orchestrator.experts.linear_adam`), to the same values."""
    rng = np.random.default_rng(seed)
    total, count = 0.0, 0
    direct = isinstance(layer, nn.Linear) and supports(layer, optimizer)
    inputs, labels = inputs.to(device), labels.to(device)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(labels))).to(device)
            for lo in range(0, len(labels), batch_size):
                idx = order[lo : lo + batch_size]
                if direct:
                    loss = linear_adam_step(layer, optimizer, inputs[idx], labels[idx])
                else:
                    logits = layer(inputs[idx])
                    loss = F.cross_entropy(logits, labels[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
    return total / count
