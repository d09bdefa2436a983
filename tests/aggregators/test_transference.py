"""The transference (IT-MTL) aggregator picks the candidate whose real optimizer step lowers the
loss most, as found by copying the model and optimizer and stepping each copy."""

from __future__ import annotations

import copy

import pytest
import torch

import taskgroup as tg
from taskgroup import aggregators
from taskgroup.gradients import flatten
from tests.aggregators.conftest import small_batch, small_losses, small_model


def losses_of(model, x, targets):
    outputs = model(x)
    return torch.stack([fn(outputs[n], targets[n]) for n, fn in small_losses().items()])


def warmed_up(seed=0):
    """A batch-norm model and an Adam optimizer with a few real steps of state."""
    model = small_model(seed, batchnorm=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for s in range(3):
        x, targets = small_batch(seed=10 + s)
        optimizer.zero_grad()
        losses_of(model, x, targets).sum().backward()
        optimizer.step()
    return model, optimizer


def copy_and_step(model, optimizer, direction):
    """Total loss after the optimizer steps the shared parameters along ``direction``."""
    clone = copy.deepcopy(model)
    opt = torch.optim.Adam(clone.parameters(), lr=0.05)
    opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # load_state_dict shares tensors
    start = 0
    for p in clone.trunk.parameters():
        p.grad = direction[start : start + p.numel()].view_as(p).clone()
        start += p.numel()
    opt.step()
    return clone


@pytest.mark.parametrize("score", ["total", "relative"])
def test_picks_the_candidate_with_the_best_real_step(score):
    model, optimizer = warmed_up()
    x, targets = small_batch(seed=3)
    reference_model = copy.deepcopy(model)
    base = losses_of(reference_model, x, targets)
    G = torch.stack(
        [
            flatten(
                torch.autograd.grad(
                    loss, list(reference_model.trunk.parameters()), retain_graph=True
                )
            )
            for loss in base
        ]
    )
    candidates = {
        "mean": aggregators.get("mean")(G),
        "mgda": aggregators.get("mgda")(G),
        "cagrad": aggregators.get("cagrad")(G),
        **{f"task {i}": G[i] for i in range(3)},
    }
    scores = {}
    stepped = {}
    for label, direction in candidates.items():
        clone = copy_and_step(reference_model, optimizer, direction.detach())
        after = losses_of(clone, x, targets).detach()
        stepped[label] = clone
        scores[label] = float(after.sum() if score == "total" else (after / base.detach()).mean())
    best = min(scores, key=scores.get)

    step = tg.MTLStep(
        model,
        small_losses(),
        "transference",
        optimizer,
        candidates=["mean", "mgda", "cagrad"],
        per_task=True,
        score=score,
    )
    running = model.trunk[1].running_mean.clone()
    result = step(x, targets)
    assert result.info["chosen"] == best
    for label, value in scores.items():
        assert result.info["scores"][label] == pytest.approx(value, rel=1e-5)
    # the shared parameters took the winner's step
    torch.testing.assert_close(
        flatten([p.detach() for p in model.trunk.parameters()]),
        flatten([p.detach() for p in stepped[best].trunk.parameters()]),
    )
    # only the one training forward touched the running statistics
    reference_model.train()
    assert not torch.equal(running, model.trunk[1].running_mean)
    torch.testing.assert_close(model.trunk[1].running_mean, reference_model.trunk[1].running_mean)


def test_context_with_plain_sgd_and_projections():
    model = small_model()
    x, targets = small_batch()
    losses = losses_of(model, x, targets)
    shared = list(model.trunk.parameters())
    context = aggregators.lookahead_context(model, x, targets, small_losses(), lr=0.5)
    torch.testing.assert_close(context.base_losses, losses.detach())
    agg = aggregators.get("transference", candidates=["mean"], projections=True)
    result = agg.backward(losses, shared, context=context)
    assert result.info["chosen"] in {"mean", "projection 0", "projection 1", "projection 2"}
    assert len(result.info["scores"]) == 4
    before = flatten([p.detach().clone() for p in shared])
    best = result.info["scores"][result.info["chosen"]]
    assert all(best <= value < float("inf") for value in result.info["scores"].values())
    # backward only fills .grad: the model itself did not move
    torch.testing.assert_close(before, flatten([p.detach() for p in shared]))


def test_needs_a_supported_optimizer_for_the_optimizer_lookahead():
    model = small_model()
    with pytest.raises(ValueError, match='lookahead="optimizer" supports SGD, Adam and AdamW'):
        tg.MTLStep(model, small_losses(), "transference", torch.optim.RMSprop(model.parameters()))
    step = tg.MTLStep(
        model,
        small_losses(),
        "transference",
        torch.optim.RMSprop(model.parameters(), lr=0.01),
        lookahead="sgd",
    )
    x, targets = small_batch()
    assert step(x, targets).info["chosen"] in {"mean", "pcgrad"}
