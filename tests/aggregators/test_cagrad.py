"""CAGrad's solver: the active-set closed forms against the safeguarded search over τ (the
reference path) and against the dual objective itself, cold and warm-started."""

from __future__ import annotations

import numpy as np
import pytest

from taskgroup.aggregators.cagrad import cagrad_weights
from tests.aggregators.conftest import random_gradients

SHAPES = [(2, 7), (3, 20), (5, 40), (9, 64), (11, 300), (20, 10)]


def dual_objective(K: np.ndarray, c: float, w: np.ndarray) -> float:
    """F(w) = g_wᵀg_0 + c ‖g_0‖ ‖g_w‖ from the Gramian."""
    b = K.mean(axis=1)
    return float(b @ w + c * np.sqrt(b.mean()) * np.sqrt(max(w @ K @ w, 0.0)))


def gramian(k: int, d: int, seed: int) -> np.ndarray:
    G = random_gradients(k, d, seed).numpy()
    return G @ G.T


def drifting_gramians(k: int, d: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((k, d)) + 0.3 * rng.standard_normal(d)
    out = []
    for _ in range(steps):
        G = G + 0.3 * rng.standard_normal((k, d))
        out.append(G @ G.T)
    return out


@pytest.mark.parametrize("c", [0.1, 0.4, 0.5, 1.5, 10.0])
@pytest.mark.parametrize(("k", "d"), SHAPES)
def test_active_set_equals_the_search(k, d, c):
    for seed in range(6):
        K = gramian(k, d, seed)
        fast, w_fast, info = cagrad_weights(K, c)
        slow, w_slow, _ = cagrad_weights(K, c, fast=False)
        assert info["iterations"] == 0  # the closed forms found it: no search
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
        assert dual_objective(K, c, w_fast) <= dual_objective(K, c, w_slow) + 1e-12 * abs(
            dual_objective(K, c, w_slow)
        )


@pytest.mark.parametrize("c", [0.4, 1.5])
def test_warm_started_sequence_equals_cold_solves(c):
    start = tau = None
    for K in drifting_gramians(9, 50, 40):
        warm, w, info = cagrad_weights(K, c, start=start, tau=tau)
        start, tau = w, info["tau"]
        cold, _, _ = cagrad_weights(K, c, fast=False)
        np.testing.assert_allclose(warm, cold, rtol=1e-9, atol=1e-12)


def test_the_solution_minimises_the_dual():
    """No feasible perturbation of w lowers F (the KKT conditions hold on the simplex)."""
    rng = np.random.default_rng(0)
    for seed in range(10):
        K = gramian(9, 64, seed)
        _, w, _ = cagrad_weights(K, 0.4)
        best = dual_objective(K, 0.4, w)
        for _ in range(200):
            other = np.clip(w + 0.05 * rng.standard_normal(len(w)), 0.0, None)
            other /= other.sum()
            assert dual_objective(K, 0.4, other) >= best - 1e-12 * abs(best)


def test_the_search_brackets_tau_before_stopping():
    """The search used to stop after one step whenever τ had only a lower bound (∞ − lo <= ∞):
    on this Gramian it returned a w whose dual objective was 2% above the optimum."""
    K = gramian(2, 7, 1)
    fast, w_fast, _ = cagrad_weights(K, 0.4)
    slow, w_slow, info = cagrad_weights(K, 0.4, fast=False)
    assert info["iterations"] > 1
    np.testing.assert_allclose(w_slow, w_fast, atol=1e-12)
    np.testing.assert_allclose(slow, fast, rtol=1e-12)
