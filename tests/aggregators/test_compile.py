"""``MTLStep`` with ``torch.compile(model)``: the same update as the eager model (1e-5), with
the shared parameters named as in the module it wraps."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

import taskgroup as tg
from taskgroup.aggregators.step import compiled_original, has_compiled_modules
from taskgroup.gradients import flatten
from tests.aggregators.conftest import small_batch, small_losses, small_model

# inductor compiles its CPU kernels with a C++ compiler
pytestmark = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="no C++ compiler"
)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles its own model from a clean dynamo state (no recompile limit
    reached, so nothing silently falls back to eager)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def params(model) -> torch.Tensor:
    return flatten([p.detach() for p in model.parameters()])


def ran_compiled(model, x) -> bool:
    return "CompiledFunction" in model(x)["a"].grad_fn.name()


@pytest.mark.parametrize("name", ["mean", "pcgrad", "nash_mtl", "cagrad", "famo"])
def test_compiled_step_equals_eager(name):
    eager = small_model()
    compiled = torch.compile(copy.deepcopy(eager))
    step = tg.MTLStep(
        compiled, small_losses(), name, torch.optim.SGD(compiled.parameters(), lr=0.1)
    )
    reference = tg.MTLStep(eager, small_losses(), name, torch.optim.SGD(eager.parameters(), lr=0.1))
    assert step.shared_names == reference.shared_names  # no "_orig_mod." prefix
    start = params(eager)
    for seed in (1, 2):
        x, targets = small_batch(seed)
        result, expected = step(x, targets), reference(x, targets)
        torch.testing.assert_close(result.losses, expected.losses, rtol=1e-5, atol=1e-6)
        if expected.weights is not None:
            torch.testing.assert_close(result.weights, expected.weights, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(params(compiled), params(eager), rtol=0, atol=1e-5)
    assert (params(eager) - start).abs().max() > 1e-3  # the steps moved the parameters
    assert ran_compiled(compiled, small_batch(3)[0])


def test_compiled_names_and_compiled_submodules():
    eager = small_model()
    compiled = torch.compile(copy.deepcopy(eager))
    assert compiled_original(compiled) is compiled._orig_mod
    assert compiled_original(eager) is eager
    # names as the compiled module lists them lose their prefix
    names = [n for n, _ in compiled.named_parameters() if ".trunk." in f".{n}"]
    assert names[0].startswith("_orig_mod.trunk.")
    step = tg.MTLStep(
        compiled,
        small_losses(),
        "mgda",
        torch.optim.SGD(compiled.parameters(), lr=0.1),
        shared=names,
    )
    assert step.shared_names == [n for n, _ in eager.trunk.named_parameters(prefix="trunk")]
    # a compiled trunk inside an eager model: batched per-task gradients are turned off (a
    # compiled backward cannot run under vmap), and the step equals the eager one
    inner = copy.deepcopy(eager)
    inner.trunk = torch.compile(inner.trunk)
    assert has_compiled_modules(inner) and not has_compiled_modules(eager)
    step = tg.MTLStep(inner, small_losses(), "mgda", torch.optim.SGD(inner.parameters(), lr=0.1))
    reference = tg.MTLStep(
        eager, small_losses(), "mgda", torch.optim.SGD(eager.parameters(), lr=0.1)
    )
    assert not step.batched and reference.batched
    x, targets = small_batch()
    step(x, targets), reference(x, targets)
    torch.testing.assert_close(params(inner), params(eager), rtol=0, atol=1e-5)
