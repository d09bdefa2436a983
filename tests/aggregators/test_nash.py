"""Nash-MTL's solver: the bargaining equation to 1e-6, the cvxpy reference path, warm starts,
the reference options, the degenerate cases and no silent fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskgroup import aggregators
from taskgroup.aggregators.nash_mtl import residual, solve_alpha_fair, solve_alpha_fair_cvxpy
from tests.aggregators.conftest import random_gradients


def relative_residual(G: torch.Tensor, w: torch.Tensor) -> float:
    K = (G @ G.T).numpy()
    w = w.numpy()
    return float(np.linalg.norm(K @ w - 1 / w) / np.linalg.norm(1 / w))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 5, 11])
def test_newton_and_cvxpy_paths_agree(k, seed):
    G = random_gradients(k, 4 * k, seed, spread=100.0)
    newton = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G)
    reference = aggregators.get("nash_mtl", max_norm=0.0, solver="cvxpy").aggregate(G)
    assert relative_residual(G, newton.weights) <= 1e-6
    assert newton.info["residual"] <= 1e-10
    # Clarabel's interior point stops at ~1e-8 duality gap: a few 1e-5 relative in the weights
    torch.testing.assert_close(newton.weights, reference.weights, rtol=2e-4, atol=0)
    assert reference.info["residual"] <= 1e-3


def test_scale_invariance_and_norm():
    G = random_gradients(6, 30, 0)
    scales = torch.tensor([1e-4, 1.0, 10.0, 1e3, 0.5, 2.0], dtype=torch.float64)[:, None]
    a = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G)
    b = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G * scales)
    torch.testing.assert_close(a.direction, b.direction)  # each task's scale is irrelevant
    torch.testing.assert_close(a.weights, b.weights * scales.flatten())
    assert abs(float(a.direction.norm()) - 6**0.5) < 1e-9  # ‖d‖² = wᵀKw = k


def test_warm_start_converges_faster_to_the_same_answer():
    G = random_gradients(11, 200, 3)
    agg = aggregators.get("nash_mtl", max_norm=0.0)
    first = agg.aggregate(G)
    g = torch.Generator().manual_seed(9)
    moved = G + 0.05 * torch.randn(G.shape, generator=g, dtype=G.dtype)
    warm = agg.aggregate(moved)
    cold = aggregators.get("nash_mtl", max_norm=0.0).aggregate(moved)
    torch.testing.assert_close(warm.weights, cold.weights, rtol=1e-9, atol=0)
    assert warm.info["iterations"] <= cold.info["iterations"]
    assert first.info["status"] == "solved"


def test_max_norm_caps_the_direction_like_the_reference():
    G = random_gradients(4, 10, 1)
    free = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G)
    capped = aggregators.get("nash_mtl", max_norm=0.5).aggregate(G)  # default 1.0, reference's
    assert abs(float(capped.direction.norm()) - 0.5) < 1e-12
    torch.testing.assert_close(capped.direction, free.direction * 0.5 / free.direction.norm())
    torch.testing.assert_close(capped.direction, capped.weights @ G)
    loose = aggregators.get("nash_mtl", max_norm=10.0).aggregate(G)
    torch.testing.assert_close(loose.direction, free.direction)


def test_update_weights_every_reuses_the_weights_in_between():
    agg = aggregators.get("nash_mtl", max_norm=0.0, update_weights_every=3)
    Gs = [random_gradients(3, 8, s) for s in range(7)]
    results = [agg.aggregate(G) for G in Gs]
    statuses = [r.info["status"] for r in results]
    assert statuses == ["solved", "reused", "reused", "solved", "reused", "reused", "solved"]
    torch.testing.assert_close(results[1].weights, results[0].weights)
    torch.testing.assert_close(results[2].direction, results[0].weights @ Gs[2])
    fresh = aggregators.get("nash_mtl", max_norm=0.0).aggregate(Gs[3])
    torch.testing.assert_close(results[3].weights, fresh.weights)


def test_degenerate_cases_are_defined():
    g = random_gradients(3, 6, 0)
    agg = aggregators.get("nash_mtl", max_norm=0.0)
    # a zero row takes no part: weight 0, the others solve their own bargaining
    with_zero = torch.cat([g[:2], torch.zeros(1, 6, dtype=g.dtype)])
    result = agg.aggregate(with_zero)
    assert float(result.weights[2]) == 0 and result.info["status"] == "solved"
    two = aggregators.get("nash_mtl", max_norm=0.0).aggregate(g[:2])
    torch.testing.assert_close(result.weights[:2], two.weights)
    # identical rows: the equation still has its unique solution, shared equally
    same = aggregators.get("nash_mtl", max_norm=0.0).aggregate(torch.stack([g[0], g[0]]))
    expected = torch.full((2,), 0.5**0.5 / float(g[0].norm()), dtype=g.dtype)
    torch.testing.assert_close(same.weights, expected)
    # k = 1: w = 1/‖g‖
    one = aggregators.get("nash_mtl", max_norm=0.0).aggregate(g[:1])
    torch.testing.assert_close(one.direction, g[0] / g[0].norm())
    # opposite gradients: Pareto-stationary, no bargaining solution: zero update
    stuck = aggregators.get("nash_mtl").aggregate(torch.stack([g[0], -2 * g[0], g[1]]))
    assert stuck.info["status"] == "pareto_stationary"
    assert float(stuck.direction.abs().max()) == 0 and float(stuck.weights.abs().max()) == 0
    # all zero
    zero = aggregators.get("nash_mtl").aggregate(torch.zeros(3, 4))
    assert zero.info["status"] == "zero_gradients" and float(zero.direction.abs().max()) == 0


def test_cvxpy_path_handles_the_same_degenerate_cases():
    g = random_gradients(3, 6, 0).numpy()
    K = g @ g.T
    K[2, :] = K[:, 2] = 0
    newton, cvx = solve_alpha_fair(K), solve_alpha_fair_cvxpy(K)
    assert newton.weights[2] == cvx.weights[2] == 0
    np.testing.assert_allclose(newton.weights, cvx.weights, rtol=2e-4)
    opposite = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert solve_alpha_fair_cvxpy(opposite).status == "pareto_stationary"
    assert solve_alpha_fair(opposite).status == "pareto_stationary"


def test_no_silent_fallback(monkeypatch):
    """A solver that fails raises; it never returns the previous or equal weights."""
    G = random_gradients(3, 6, 0)
    agg = aggregators.get("nash_mtl", max_iter=1, tol=1e-300)
    with pytest.raises(RuntimeError, match="did not converge"):
        agg.aggregate(G)

    from taskgroup.aggregators import nash_mtl

    def failing(self, C):
        return None, "solver_error"

    monkeypatch.setattr(nash_mtl._CvxpyAlphaFair, "solve", failing)
    with pytest.raises(RuntimeError, match="cvxpy"):
        aggregators.get("nash_mtl", solver="cvxpy").aggregate(G)


def test_residual_helper():
    K = np.array([[2.0, 0.5], [0.5, 1.0]])
    w = solve_alpha_fair(K).weights
    assert residual(K, w) < 1e-12
    assert residual(K, np.zeros(2)) == 0.0


def test_changing_the_task_count_needs_a_reset():
    agg = aggregators.get("nash_mtl")
    agg(random_gradients(3, 5, 0))
    with pytest.raises(ValueError, match="reset"):
        agg(random_gradients(4, 5, 0))
    agg.reset()
    agg(random_gradients(4, 5, 0))


def test_ccp_is_the_reference_procedure():
    """solver="ccp" reproduces the reference implementation's ECOS sequence (torchjd's port)
    step by step, warm starts included, and reports how far its answer is from the equation."""
    jd = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("ecos")
    import warnings

    G = random_gradients(4, 20, 1)
    ours = aggregators.get("nash_mtl", max_norm=0.0, solver="ccp")
    theirs = jd.NashMTL(n_tasks=4, max_norm=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(3):
            Gs = G + 0.1 * step
            result = ours.aggregate(Gs)
            assert result.info["residual"] == pytest.approx(
                relative_residual(Gs, result.weights), rel=1e-9
            )
            torch.testing.assert_close(result.direction, theirs(Gs), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="needs alpha = 1"):
        aggregators.get("fairgrad", alpha=2.0, solver="ccp")


@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("eps", [1e-3, 1e-4, 3e-5, 1e-7])
def test_nearly_opposite_gradients(alpha, eps):
    """Ill-conditioned Gramians near a Pareto-stationary point: solved to 1e-6 (Newton stops at
    the rounding floor) or declared stationary — never an error, never NaN."""
    G = torch.tensor([[3.0, 0.0, 0.0], [-0.2, 0.2 * eps, 0.0]], dtype=torch.float64)
    result = aggregators.get("fairgrad", alpha=alpha, max_norm=0.0).aggregate(G)
    if result.info["status"] == "solved":
        w = result.weights.numpy()
        K = (G @ G.T).numpy()
        target = w ** (-1 / alpha)
        # evaluating K w − target in float64 cancels terms ~1e7 times larger than the target
        floor = 64 * np.finfo(np.float64).eps * np.linalg.norm(np.abs(K) @ w + target)
        bound = max(1e-6 * np.linalg.norm(target), floor)
        assert np.linalg.norm(K @ w - target) <= bound
    else:
        assert result.info["status"] == "pareto_stationary" and eps < 1e-4
    assert bool(torch.isfinite(result.direction).all())


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_rescaled_warm_starts_reach_the_cold_solution(alpha):
    """The per-coordinate rescaling of the start only changes where Newton begins: along a
    drifting sequence, warm solves equal cold ones and meet the tolerance."""
    g = torch.Generator().manual_seed(4)
    G = random_gradients(9, 60, 4)
    start = None
    for _ in range(15):
        G = G + 0.3 * torch.randn(G.shape, generator=g, dtype=G.dtype)
        K = (G @ G.T).numpy()
        warm = solve_alpha_fair(K, alpha, start=start)
        cold = solve_alpha_fair(K, alpha)
        start = warm.scaled
        assert warm.status == cold.status == "solved"
        assert residual(K, warm.weights, alpha) <= 1e-10
        np.testing.assert_allclose(warm.weights, cold.weights, rtol=1e-9)
