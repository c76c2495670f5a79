"""``weights_key``: the accelerators' test of whether a network's weights may have changed."""

from __future__ import annotations

import torch

from pivotal.orchestrator.experts.tensor_lists import weights_key


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_unchanged_weights_keep_their_key() -> None:
    net = _net()
    assert weights_key(net) == weights_key(net)
    with torch.no_grad():
        net(torch.ones(1, 3))  # inference does not touch the weights
    assert weights_key(net) == weights_key(net)


def test_an_optimizer_step_and_a_loaded_state_change_the_key() -> None:
    net = _net()
    before = weights_key(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    stepped = weights_key(net)
    assert stepped != before
    net.load_state_dict(_net().state_dict())
    assert weights_key(net) != stepped


def test_a_replaced_parameter_changes_the_key() -> None:
    net = _net()
    before = weights_key(net)
    net[2].weight = torch.nn.Parameter(torch.zeros(2, 4))  # a new tensor, version 0
    assert weights_key(net) != before
    loaded = weights_key(net)
    net.load_state_dict(_net().state_dict(), assign=True)
    assert weights_key(net) != loaded


def test_another_module_has_another_key() -> None:
    a, b = _net(), _net()
    assert weights_key(a) != weights_key(b)
