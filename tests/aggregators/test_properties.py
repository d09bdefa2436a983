"""Mathematical properties, checked with hypothesis over random shapes, scales and permutations:
how each direction transforms when G is scaled (globally or per task) and when tasks are
permuted, and that d = Gᵀw wherever weights are defined."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskgroup import aggregators
from tests.aggregators.conftest import random_gradients

GRAMIAN = ["mean", "mgda", "pcgrad", "cagrad", "imtl_g", "aligned_mtl", "nash_mtl", "fairgrad"]
# exponent p with d(cG) = c^p d(G) (max_norm off): Nash-MTL is scale-free, α-fair c^((1−α)/(1+α))
SCALE_POWER = {
    "mean": 1.0,
    "mgda": 1.0,
    "pcgrad": 1.0,
    "cagrad": 1.0,
    "imtl_g": 1.0,
    "aligned_mtl": 1.0,
    "graddrop": 1.0,
    "nash_mtl": 0.0,
}
DETERMINISTIC = ["mean", "mgda", "cagrad", "imtl_g", "aligned_mtl", "nash_mtl", "fairgrad"]

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
shapes = st.tuples(st.integers(1, 8), st.integers(1, 24))
seeds = st.integers(0, 2**16)
factors = st.floats(1e-3, 1e3)


def fresh(name: str, **options):
    if name in ("nash_mtl", "fairgrad"):
        options.setdefault("max_norm", 0.0)
    return aggregators.get(name, **options)


def close(a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8 * scale)


@pytest.mark.parametrize("name", list(SCALE_POWER))
@SETTINGS
@given(shape=shapes, seed=seeds, c=factors)
def test_global_scale(name, shape, seed, c):
    G = random_gradients(*shape, seed)
    a = fresh(name)(G)
    b = fresh(name)(c * G)
    p = SCALE_POWER[name]
    typical = float(G.norm()) if p else shape[0] ** 0.5  # Nash-MTL: ‖d‖ = √k
    close(b, c**p * a, c**p * typical)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
@SETTINGS
@given(shape=shapes, seed=seeds, c=factors)
def test_fairgrad_scale(alpha, shape, seed, c):
    G = random_gradients(*shape, seed)
    a = fresh("fairgrad", alpha=alpha).aggregate(G)
    if a.info["status"] != "solved":
        return
    b = fresh("fairgrad", alpha=alpha)(c * G)
    close(b, c ** ((1 - alpha) / (1 + alpha)) * a.direction, float(b.norm()))


@SETTINGS
@given(shape=shapes, seed=seeds, scale_seed=seeds)
def test_nash_and_imtl_ignore_each_tasks_scale(shape, seed, scale_seed):
    G = random_gradients(*shape, seed)
    g = torch.Generator().manual_seed(scale_seed)
    scales = 10 ** (4 * torch.rand(shape[0], 1, generator=g, dtype=G.dtype) - 2)
    nash = fresh("nash_mtl").aggregate(G)
    close(fresh("nash_mtl")(G * scales), nash.direction, 1.0)
    if shape[0] <= shape[1]:
        # IMTL-G: the same line (Σ w = 1 sets magnitude and sign, which depend on the scales)
        a, b = fresh("imtl_g")(G), fresh("imtl_g")(G * scales)
        if float(a.norm()) > 0 and float(b.norm()) > 0:
            cos = float(a @ b / (a.norm() * b.norm()))
            assert abs(cos) > 1 - 1e-6


@pytest.mark.parametrize("name", DETERMINISTIC)
@SETTINGS
@given(shape=shapes, seed=seeds, data=st.data())
def test_permutation_equivariance(name, shape, seed, data):
    G = random_gradients(*shape, seed)
    order = torch.tensor(data.draw(st.permutations(range(shape[0]))))
    a = fresh(name).aggregate(G)
    b = fresh(name).aggregate(G[order])
    scale = float(G.norm()) + float(a.direction.norm())
    close(b.direction, a.direction, scale)
    if shape[0] <= shape[1]:  # with k > d the weights of one direction need not be unique
        torch.testing.assert_close(b.weights, a.weights[order], rtol=1e-6, atol=1e-9 * scale)


@SETTINGS
@given(shape=shapes, seed=seeds, data=st.data())
def test_graddrop_is_permutation_invariant_for_the_same_draw(shape, seed, data):
    G = random_gradients(*shape, seed)
    order = torch.tensor(data.draw(st.permutations(range(shape[0]))))
    close(fresh("graddrop")(G[order]), fresh("graddrop")(G), float(G.norm()))


@pytest.mark.parametrize("name", GRAMIAN)
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_direction_is_the_weighted_sum_and_weights_come_from_the_gramian(name, shape, seed):
    G = random_gradients(*shape, seed)
    result = fresh(name).aggregate(G)
    close(result.direction, result.weights @ G, float(result.direction.norm()) + 1e-300)
    w = fresh(name).weights_from_gramian(G @ G.T)
    torch.testing.assert_close(w, result.weights, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", [*GRAMIAN, "graddrop"])
@SETTINGS
@given(shape=shapes, seed=seeds, bound=st.floats(1e-3, 10.0))
def test_max_norm_bounds_the_direction(name, shape, seed, bound):
    G = random_gradients(*shape, seed)
    free = fresh(name, max_norm=0.0)(G)
    capped = fresh(name, max_norm=bound)(G)
    assert float(capped.norm()) <= bound * (1 + 1e-9)
    if float(free.norm()) <= bound:
        close(capped, free, bound)


@SETTINGS
@given(shape=st.tuples(st.integers(2, 8), st.integers(1, 24)), seed=seeds)
def test_mgda_and_cagrad_do_not_hurt_any_task_at_first_order(shape, seed):
    G = random_gradients(*shape, seed)
    d = fresh("mgda")(G)
    assert float((G @ d).min()) >= -1e-9 * float((G @ G.T).diagonal().max())
    # CAGrad with a large c approaches MGDA's conflict-free direction
    assert float((G @ fresh("cagrad", c=1e6)(G)).min()) >= -1e-3 * float(G.norm()) ** 2
