"""PyTorch networks that read the standardized input and a registry that names them."""

from pivotal.models import networks as networks  # registers the networks
from pivotal.models.base import InputShape, PivotalModel, TargetSpec, check_batch
from pivotal.models.outputs import to_model_outputs
from pivotal.models.registry import available, create, model_class, register

__all__ = [
    "InputShape",
    "PivotalModel",
    "TargetSpec",
    "available",
    "check_batch",
    "create",
    "model_class",
    "register",
    "to_model_outputs",
]
