"""stepped_parameters: writing the steps into the gradients (``overwrite=True``, the lookahead's
path) gives bit for bit the steps of the allocating path, for every supported optimizer; the
``torch.compile``-fused Adam step (``compiled=True``) gives them to float rounding."""

from __future__ import annotations

import shutil

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


def shared_and_optimizer(make_optimizer, fresh: bool):
    """The test model's shared parameters and an optimizer over the model, fresh or trained."""
    model = make_model()
    opt = make_optimizer(model.parameters()) if fresh else trained_optimizer(model, make_optimizer)
    return shared_of(model), opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fresh", [True, False])
def test_overwrite_gives_the_same_steps(name, fresh):
    params, opt = shared_and_optimizer(OPTIMIZERS[name], fresh)
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


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_wide_runs_cut_into_column_blocks_equal_real_steps(name, monkeypatch):
    """Runs wider than a block, and a param-group boundary inside a block: every row equals
    what ``optimizer.step()`` does with that gradient (on a copy), block size 7 and default."""
    import copy

    from taskgroup.affinity import optimizer_step

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in [(5, 6), (11,), (3, 4)]]
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]
    opt = OPTIMIZERS[name](groups)
    for _ in range(2):  # non-trivial state
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    grads = random_rows(params, n=3, seed=2)
    for block in (7, optimizer_step.BLOCK_COLUMNS):
        monkeypatch.setattr(optimizer_step, "BLOCK_COLUMNS", block)
        result = stepped_parameters(opt, params, grads)
        for i, row in enumerate(grads):
            twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            twin = copy.deepcopy(opt)
            twin.param_groups[0]["params"] = twin_params[:2]
            twin.param_groups[1]["params"] = twin_params[2:]
            twin.state = {
                t: copy.deepcopy(opt.state[p]) for t, p in zip(twin_params, params, strict=True)
            }
            sizes = [p.numel() for p in params]
            for p, g in zip(twin_params, torch.split(row, sizes), strict=True):
                p.grad = g.view_as(p).clone()
            twin.step()
            expected = flatten([p.detach() for p in twin_params])
            torch.testing.assert_close(result[i], expected, rtol=1e-6, atol=1e-7)


needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile needs a C++ compiler on CPU",
)


@pytest.fixture
def kernel_calls(monkeypatch) -> list:
    """One entry per use of the compiled Adam kernel (which still runs)."""
    from taskgroup.affinity import optimizer_step

    calls: list = []
    kernel = optimizer_step._fused_adam_kernel
    monkeypatch.setattr(optimizer_step, "_fused_adam_kernel", lambda: calls.append(1) or kernel())
    return calls


COMPILED_CASES = {
    **OPTIMIZERS,
    "adam_coupled_wd_maximize": lambda p: torch.optim.Adam(
        p, lr=1e-2, weight_decay=0.1, maximize=True
    ),
}


@needs_compiler
@pytest.mark.parametrize("name", sorted(COMPILED_CASES))
@pytest.mark.parametrize("fresh", [True, False])
def test_compiled_adam_equals_the_eager_arithmetic(name, fresh, kernel_calls):
    """The fused kernel gives the eager steps to float rounding where it applies (Adam with
    moment estimates, no AMSGrad; and runs there, and only there) and exactly the eager ones
    everywhere else."""
    params, opt = shared_and_optimizer(COMPILED_CASES[name], fresh)
    grads = random_rows(params, n=5, seed=3)
    eager = stepped_parameters(opt, params, grads)
    compiled = stepped_parameters(opt, params, grads.clone(), overwrite=True, compiled=True)
    fused = name.startswith("adam") and not fresh and "amsgrad" not in name
    assert bool(kernel_calls) == fused
    if fused:
        torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)
        assert not torch.equal(compiled, flatten([p.detach() for p in params]).expand_as(eager))
    else:
        assert torch.equal(compiled, eager)


@needs_compiler
def test_compiled_lookahead_equals_the_naive_loop(batch, kernel_calls):
    from taskgroup.affinity.lookahead import lookahead_affinity

    from .test_lookahead import LOSSES, naive_affinity

    model = make_model(batchnorm=True)
    opt = trained_optimizer(model, OPTIMIZERS["adamw"])
    x, t = batch
    ours = lookahead_affinity(model, x, t, LOSSES, optimizer=opt, compile_step=True)
    assert kernel_calls  # the fused kernel took the step
    ref = naive_affinity(model, x, t, LOSSES, optimizer=opt)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert ours.abs().max() > 1e-3


def test_a_failing_compile_names_the_cause(monkeypatch):
    from taskgroup.affinity import optimizer_step

    def broken(*args):
        raise OSError("no C++ compiler found")

    monkeypatch.setattr(optimizer_step, "_fused_adam_kernel", lambda: broken)
    model = make_model()
    opt = trained_optimizer(model, OPTIMIZERS["adam"])
    params = shared_of(model)
    with pytest.raises(RuntimeError, match=r"compile_step=True.*OSError: no C\+\+ compiler"):
        stepped_parameters(opt, params, random_rows(params), compiled=True)
