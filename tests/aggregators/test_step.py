"""The training-step integration: ``aggregator.backward`` fills ``.grad`` (shared parameters get
the aggregated direction, task-specific ones their own task's gradient), ``on="features"``, and
``MTLStep`` around any optimizer, checked against per-task autograd loops written here."""

from __future__ import annotations

import copy

import pytest
import torch

import taskgroup as tg
from taskgroup import aggregators
from taskgroup.gradients import flatten
from tests.aggregators.conftest import small_batch, small_losses, small_model


def per_task_losses(model, x, targets):
    outputs = model(x)
    return torch.stack([fn(outputs[n], targets[n]) for n, fn in small_losses().items()])


def gradient_rows(losses, params):
    """The per-task gradient matrix, one plain autograd call per task."""
    rows = [flatten(torch.autograd.grad(loss, params, retain_graph=True)) for loss in losses]
    return torch.stack(rows)


def grads_of(params):
    return flatten([p.grad for p in params])


@pytest.mark.parametrize("name", ["mean", "mgda", "pcgrad", "cagrad", "nash_mtl", "graddrop"])
@pytest.mark.parametrize("as_list", [False, True])
def test_backward_fills_grad(name, as_list):
    model = small_model()
    x, targets = small_batch()
    losses = per_task_losses(model, x, targets)
    shared = list(model.trunk.parameters())
    heads = list(model.heads.parameters())
    G = gradient_rows(losses, shared)
    expected_heads = flatten(torch.autograd.grad(losses.sum(), heads, retain_graph=True))
    expected = aggregators.get(name)(G)
    agg = aggregators.get(name)
    result = agg.backward(list(losses) if as_list else losses, model.trunk)
    torch.testing.assert_close(grads_of(shared), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result.direction, expected, rtol=1e-5, atol=1e-7)
    # the heads were found in the graph; each gets its own task's gradient
    torch.testing.assert_close(grads_of(heads), expected_heads)


def test_backward_accumulates_and_takes_explicit_task_params():
    model = small_model()
    x, targets = small_batch()
    shared, heads = list(model.trunk.parameters()), list(model.heads.parameters())
    for p in shared + heads:
        p.grad = torch.ones_like(p)
    losses = per_task_losses(model, x, targets)
    G = gradient_rows(losses, shared)
    head_grads = flatten(torch.autograd.grad(losses.sum(), heads, retain_graph=True))
    aggregators.get("mean").backward(losses, shared, task_params=heads, batched=False)
    torch.testing.assert_close(grads_of(shared), 1 + G.mean(0))
    torch.testing.assert_close(grads_of(heads), 1 + head_grads)


def test_features_mode_is_mgda_ub():
    """MGDA-UB: weights from the Gramian of the feature gradients, then one backward of the
    weighted loss through the trunk."""
    model = small_model()
    x, targets = small_batch()
    z = model.trunk(x)
    outputs = {n: h(z) for n, h in model.heads.items()}
    losses = torch.stack([fn(outputs[n], targets[n]) for n, fn in small_losses().items()])
    shared = list(model.trunk.parameters())
    Gz = gradient_rows(losses, [z])
    w = aggregators.get("mgda").weights(Gz)
    expected = flatten(torch.autograd.grad((w * losses).sum(), shared, retain_graph=True))
    aggregators.get("mgda").backward(losses, shared, features=z)
    torch.testing.assert_close(grads_of(shared), expected, rtol=1e-5, atol=1e-7)


def test_features_mode_bounds_the_parameter_gradient():
    model = small_model()
    x, targets = small_batch()
    z = model.trunk(x)
    losses = torch.stack([fn(model.heads[n](z), targets[n]) for n, fn in small_losses().items()])
    aggregators.get("nash_mtl", max_norm=1e-3).backward(losses, model.trunk, features=z)
    norm = float(grads_of(list(model.trunk.parameters())).norm())
    assert norm == pytest.approx(1e-3, rel=1e-5)


def test_nash_reused_weights_skip_the_per_task_gradients():
    model = small_model()
    x, targets = small_batch()
    agg = aggregators.get("nash_mtl", update_weights_every=2, max_norm=0.0)
    shared = list(model.trunk.parameters())
    first = agg.backward(per_task_losses(model, x, targets), shared)
    model.zero_grad()
    x2, targets2 = small_batch(seed=5)
    losses = per_task_losses(model, x2, targets2)
    weighted = (first.weights * losses).sum()
    expected = flatten(torch.autograd.grad(weighted, shared, retain_graph=True))
    second = agg.backward(losses, shared)
    assert second.info["status"] == "reused"
    torch.testing.assert_close(grads_of(shared), expected)


def test_loss_weighting_backward_clips_the_shared_gradient():
    model = small_model()
    x, targets = small_batch()
    famo = aggregators.get("famo", max_norm=1e-4)
    famo.backward(per_task_losses(model, x, targets), model.trunk)
    assert float(grads_of(list(model.trunk.parameters())).norm()) == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("name", ["mean", "mgda", "nash_mtl", "pcgrad"])
def test_mtlstep_takes_the_aggregated_sgd_step(name):
    model = small_model()
    reference = copy.deepcopy(model)
    x, targets = small_batch()
    lr = 0.1
    step = tg.MTLStep(model, small_losses(), name, torch.optim.SGD(model.parameters(), lr=lr))
    result = step(x, targets)
    losses = per_task_losses(reference, x, targets)
    shared = list(reference.trunk.parameters())
    heads = list(reference.heads.parameters())
    direction = aggregators.get(name)(gradient_rows(losses, shared))
    head_grad = flatten(torch.autograd.grad(losses.sum(), heads))
    torch.testing.assert_close(result.losses, losses.detach())
    moved_shared = flatten([p.detach() for p in model.trunk.parameters()])
    moved_heads = flatten([p.detach() for p in model.heads.parameters()])
    torch.testing.assert_close(moved_shared, flatten(shared).detach() - lr * direction)
    torch.testing.assert_close(moved_heads, flatten(heads).detach() - lr * head_grad)


def test_mtlstep_features_mode_and_tasksets():
    bench = tg.data.get("planted", seed=0)
    model = bench.make_model(seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = tg.MTLStep(model, bench.tasks, "mgda", optimizer, on="features")
    x, targets = next(bench.train.batches(32, seed=0))
    before = flatten([p.detach().clone() for p in model.parameters()])
    result = step(x, targets)
    assert result.weights.shape == (len(bench.tasks),)
    assert not torch.equal(before, flatten([p.detach() for p in model.parameters()]))


def test_mtlstep_registers_uw_parameters_and_learns_them():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = tg.MTLStep(model, small_losses(), "uw", optimizer, lr=0.5)
    uw = step.aggregator
    assert optimizer.param_groups[-1]["params"] == uw.parameters()
    assert optimizer.param_groups[-1]["lr"] == 0.5
    x, targets = small_batch()
    result = step(x, targets)
    torch.testing.assert_close(result.weights, torch.full((3,), 0.5))
    # ds_i = ½(1 − L_i): each log-variance moved against its gradient
    expected = -0.5 * 0.5 * (1 - result.losses)
    torch.testing.assert_close(uw.log_variances.detach(), expected)


def test_mtlstep_feeds_famo_the_losses_after_the_step():
    model = small_model(batchnorm=True)
    step = tg.MTLStep(model, small_losses(), "famo", torch.optim.SGD(model.parameters(), lr=0.1))
    x, targets = small_batch()
    running = model.trunk[1].running_mean.clone()
    rng = torch.get_rng_state()
    step(x, targets)
    famo = step.aggregator
    assert not torch.equal(famo.logits.detach(), torch.zeros(3, dtype=torch.float64))
    assert famo._previous is None  # observed: nothing pending
    # one training forward updated the running stats; the after-step evaluation did not
    reference = copy.deepcopy(small_model(batchnorm=True))
    reference.train()
    reference(x)
    torch.testing.assert_close(model.trunk[1].running_mean, reference.trunk[1].running_mean)
    assert not torch.equal(running, model.trunk[1].running_mean)
    assert torch.equal(torch.get_rng_state(), rng)


def test_mtlstep_input_errors():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        tg.MTLStep(model, small_losses(), "mean", None)
    with pytest.raises(ValueError, match="on must be one of params, features"):
        tg.MTLStep(model, small_losses(), "mean", optimizer, on="heads")
    with pytest.raises(ValueError, match="unknown aggregator 'nash'"):
        tg.MTLStep(model, small_losses(), "nash", optimizer)
    with pytest.raises(ValueError, match="options go with a name"):
        tg.MTLStep(model, small_losses(), aggregators.get("cagrad"), optimizer, c=0.5)
    with pytest.raises(ValueError, match="does not apply to transference"):
        tg.MTLStep(model, small_losses(), "transference", optimizer, on="features")
    with pytest.raises(ValueError, match="uw is a loss weighting"):
        tg.MTLStep(model, small_losses(), "uw", optimizer, on="features")
    plain = torch.nn.ModuleDict({"trunk": torch.nn.Linear(5, 6)})
    with pytest.raises(ValueError, match="needs a MultiTaskModel"):
        tg.MTLStep(
            plain,
            small_losses(),
            "mgda",
            torch.optim.SGD(plain.parameters(), lr=0.1),
            shared=["trunk.weight"],
            on="features",
        )
    step = tg.MTLStep(model, small_losses(), "mean", optimizer)
    x, targets = small_batch()
    with pytest.raises(ValueError, match="targets has no entry for task"):
        step(x, {"a": targets["a"]})
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        step(x, targets)
