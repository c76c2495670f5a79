"""The action head's direct Adam steps (``linear_adam``) against autograd + ``optimizer.step()``:
the same weights, optimizer state and losses, bit for bit, over several fits that carry the
optimizer's state; optimizers it cannot reproduce keep the autograd path."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pivotal.orchestrator.experts import action_head
from pivotal.orchestrator.experts.linear_adam import supports


def _fit_both(
    monkeypatch: pytest.MonkeyPatch, rows: int, batch: int, fits: int, lr: float, seed: int
) -> tuple[nn.Linear, nn.Linear, torch.optim.Adam, torch.optim.Adam]:
    torch.manual_seed(seed)
    direct = nn.Linear(16, 3)
    reference = copy.deepcopy(direct)
    o_direct = torch.optim.Adam(direct.parameters(), lr=lr)
    o_reference = torch.optim.Adam(reference.parameters(), lr=lr)
    assert supports(direct, o_direct)
    for fit in range(fits):
        x = torch.randn(rows, 16) * 3
        y = torch.randint(0, 3, (rows,))
        a = action_head.fit_head(
            direct, o_direct, x, y, epochs=2, batch_size=batch, seed=fit, device="cpu"
        )
        with monkeypatch.context() as m:
            m.setattr(action_head, "supports", lambda *_: False)
            b = action_head.fit_head(
                reference, o_reference, x, y, epochs=2, batch_size=batch, seed=fit, device="cpu"
            )
        assert a == b
    return direct, reference, o_direct, o_reference


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 90),
    batch=st.integers(1, 40),
    fits=st.integers(1, 3),
    lr=st.sampled_from([1e-4, 1e-3, 5e-2]),
    seed=st.integers(0, 10_000),
)
def test_direct_steps_equal_autograd_bit_for_bit(
    rows: int, batch: int, fits: int, lr: float, seed: int
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        direct, reference, o_direct, o_reference = _fit_both(
            monkeypatch, rows, batch, fits, lr, seed
        )
    for p, q in zip(direct.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    a, b = o_direct.state_dict(), o_reference.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for key, state in a["state"].items():
        assert state.keys() == b["state"][key].keys()
        for name, value in state.items():
            other = b["state"][key][name]
            assert value.dtype == other.dtype and torch.equal(value, other), name


def test_other_optimizers_keep_the_autograd_path() -> None:
    layer = nn.Linear(4, 3)
    assert supports(layer, torch.optim.Adam(layer.parameters()))
    assert not supports(layer, torch.optim.Adam(layer.parameters(), amsgrad=True))
    assert not supports(layer, torch.optim.Adam(layer.parameters(), weight_decay=0.1))
    assert not supports(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    assert not supports(layer, torch.optim.Adam([layer.weight]))  # not the bias too
    assert not supports(nn.Linear(4, 3, bias=False), torch.optim.Adam([layer.weight]))
    other = nn.Sequential(nn.Linear(4, 3))
    assert not supports(other, torch.optim.Adam(other.parameters()))
