"""Adam steps of one ``nn.Linear`` under cross-entropy, with the gradients written out.

The PivotCNN's online update trains only its action head (a linear layer) on cached inputs
(:mod:`~pivotal.orchestrator.experts.action_head`): a few dozen examples, a few steps. At
that size autograd and the optimizer's generic machinery (graph, hooks, dispatch through
``Optimizer.step``) cost ten times the arithmetic. :func:`linear_adam_step` does the same
step directly:

- the forward pass is the layer's own ``F.linear``; the loss is ``nll_loss`` of
  ``log_softmax`` (what ``F.cross_entropy`` computes);
- the gradient of the mean loss with respect to the logits is log-softmax's own backward
  kernel applied to nll's (``-1/n`` at each label); the weight's gradient is ``g.T @ x``
  and the bias's ``g.sum(0)``, as the addmm backward forms them;
- the update is ``torch.optim.Adam``'s single-tensor algorithm (the one it runs on the CPU)
  on the optimizer's own state (``step``, ``exp_avg``, ``exp_avg_sq``), so the optimizer's
  ``state_dict`` (saved in online checkpoints) is the same as after ``optimizer.step()``.

Only a plain Adam qualifies (:func:`supports`: no AMSGrad, weight decay, maximize, fused,
foreach, capturable or differentiable variant; one group holding exactly the layer's weight
and bias); anything else keeps the autograd path. The results equal the autograd path's to
float rounding (tested; on the CPU builds tested they are the same bits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["linear_adam_step", "supports"]

_OFF = ("amsgrad", "maximize", "capturable", "differentiable")


def supports(layer: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether :func:`linear_adam_step` computes ``optimizer``'s step on ``layer`` exactly."""
    if type(optimizer) is not torch.optim.Adam or type(layer) is not nn.Linear:
        return False
    if layer.bias is None or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    params = group["params"]
    if len(params) != 2 or params[0] is not layer.weight or params[1] is not layer.bias:
        return False
    if any(group.get(flag) for flag in _OFF) or group.get("fused") or group.get("foreach"):
        return False
    if group.get("weight_decay", 0) != 0 or group.get("decoupled_weight_decay"):
        return False
    beta1, beta2 = group["betas"]
    values = (group["lr"], beta1, beta2, group["eps"])
    if not all(isinstance(v, float | int) and not isinstance(v, bool) for v in values):
        return False
    return all(not p.is_complex() and not p.is_sparse for p in params)


def _state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, torch.Tensor]:
    state = optimizer.state[param]
    if not state:  # what Adam's lazy initialisation makes (non-capturable, non-fused)
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        state["step"] = torch.tensor(0.0, dtype=scalar, device="cpu")
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state


def _adam(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, grad: torch.Tensor, group: dict
) -> None:
    state = _state(optimizer, param)
    step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
    beta1, beta2 = group["betas"]
    lr, eps = group["lr"], group["eps"]
    step_t += 1
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = step_t.item()
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)


def linear_adam_step(
    layer: nn.Linear, optimizer: torch.optim.Optimizer, x: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """One Adam step of ``layer`` on the mean cross-entropy of ``layer(x)`` against
    ``labels`` (class indices); returns the loss (a 0-d tensor, before the step). The
    caller checks :func:`supports` first."""
    weight, bias = layer.weight, layer.bias
    with torch.no_grad():
        lsm = torch.log_softmax(F.linear(x, weight, bias), 1)
        loss = F.nll_loss(lsm, labels)
        grad_lsm = torch.zeros_like(lsm)  # nll_loss's backward for the mean: -1/n at labels
        grad_lsm[torch.arange(len(labels), device=lsm.device), labels] = -1.0 / len(labels)
        g = torch._log_softmax_backward_data(grad_lsm, lsm, 1, lsm.dtype)
        grad_weight = g.t().mm(x)
        grad_bias = g.sum(0)
        group = optimizer.param_groups[0]
        _adam(optimizer, weight, grad_weight, group)
        _adam(optimizer, bias, grad_bias, group)
    return loss
