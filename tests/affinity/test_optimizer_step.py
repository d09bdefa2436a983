"""stepped_parameters: writing the steps into the gradients (``overwrite=True``, the lookahead's
path) gives bit for bit the steps of the allocating path, for every supported optimizer."""

from __future__ import annotations

import pytest
import torch

from taskgroup.affinity.optimizer_step import stepped_parameters
from taskgroup.gradients import flatten

from .conftest import make_model
from .test_lookahead import OPTIMIZERS, trained_optimizer


def shared_of(model):
    return [p for n, p in model.named_parameters() if n.startswith("trunk.")]


def random_rows(params, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, sum(p.numel() for p in params), generator=g)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fresh", [True, False])
def test_overwrite_gives_the_same_steps(name, fresh):
    model = make_model()
    opt = (
        OPTIMIZERS[name](model.parameters())
        if fresh
        else trained_optimizer(model, OPTIMIZERS[name])
    )
    params = shared_of(model)
    grads = random_rows(params)
    kept = grads.clone()
    expected = stepped_parameters(opt, params, grads)
    assert torch.equal(grads, kept)  # the allocating path leaves the gradients alone
    result = stepped_parameters(opt, params, grads, overwrite=True)
    assert result.data_ptr() == grads.data_ptr()
    assert torch.equal(result, expected)


def test_overwrite_with_groups_of_their_own():
    """Several runs (param groups with their own hyper-parameters) write their own columns."""
    model = make_model()
    params = shared_of(model)
    groups = [
        {"params": params[:2], "lr": 1e-2, "weight_decay": 0.1},
        {"params": params[2:], "lr": 3e-3, "amsgrad": True},
    ]
    opt = trained_optimizer(model, lambda _: torch.optim.AdamW(groups))
    grads = random_rows(params, seed=1)
    expected = stepped_parameters(opt, params, grads)
    assert torch.equal(stepped_parameters(opt, params, grads, overwrite=True), expected)
    theta = flatten([p.detach() for p in params])
    assert not torch.equal(expected[0], theta)
