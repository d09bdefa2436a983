"""Every aggregator against an independent computation: a from-scratch formula written here and,
where installed, torchjd's implementation (a test-only dependency). Same direction to cosine
>= 0.999 on random matrices; most agree far closer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from taskgroup import aggregators
from taskgroup.aggregators.pcgrad import pcgrad_coefficients
from tests.aggregators.conftest import SEEDS, SHAPES, cosine, quiet, random_gradients

CASES = list(itertools.product(SHAPES, SEEDS))
IDS = [f"k{k}-d{d}-s{s}" for (k, d), s in CASES]


def torchjd_aggregation():
    return pytest.importorskip("torchjd.aggregation")


# -------------------------------------------------------------------------------------------
# from-scratch references (plain loops over vectors, no Gramian tricks)


def mgda_frank_wolfe(G: torch.Tensor, iterations: int = 20000) -> torch.Tensor:
    """Sener & Koltun's Frank-Wolfe on the vectors themselves, run to high precision."""
    k = G.shape[0]
    w = torch.full((k,), 1.0 / k, dtype=G.dtype)
    for _ in range(iterations):
        d = w @ G
        t = int(torch.argmin(G @ d))
        direction = G[t] - d
        denom = float(direction @ direction)
        if denom == 0:
            break
        gamma = min(max(float(-(d @ direction)) / denom, 0.0), 1.0)
        if gamma < 1e-15:
            break
        w = (1 - gamma) * w
        w[t] += gamma
    return w @ G


def pcgrad_loop(G: torch.Tensor, orders: np.ndarray) -> torch.Tensor:
    """Algorithm 1 of Yu et al. on the vectors, with the given visiting orders."""
    projected = []
    for i in range(G.shape[0]):
        g = G[i].clone()
        for j in orders[i]:
            if j == i:
                continue
            inner = g @ G[j]
            if inner < 0:
                g = g - inner / (G[j] @ G[j]) * G[j]
        projected.append(g)
    return torch.stack(projected)


def cagrad_scipy(G: torch.Tensor, c: float) -> torch.Tensor:
    """The CAGrad reference's recipe: SLSQP on the dual over the simplex, rescale 1/(1+c²)."""
    GG = (G @ G.T).numpy()
    k = len(GG)
    g0_norm = np.sqrt(GG.mean() + 1e-8)
    b = np.ones(k) / k
    coef = c * g0_norm

    def objective(x):
        return x @ GG @ b + coef * np.sqrt(x @ GG @ x + 1e-8)

    result = minimize(
        objective,
        b,
        bounds=[(0, 1)] * k,
        constraints={"type": "eq", "fun": lambda x: 1 - x.sum()},
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    gw = torch.as_tensor(result.x) @ G
    return (G.mean(0) + coef / (gw.norm() + 1e-8) * gw) / (1 + c**2)


def imtl_g_original(G: torch.Tensor) -> torch.Tensor:
    """IMTL-G's closed form from the paper: α_{2:k} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:k}."""
    U = G / G.norm(dim=1, keepdim=True)
    D = G[0] - G[1:]
    Udiff = U[0] - U[1:]
    alpha_rest = (G[0] @ Udiff.T) @ torch.linalg.inv(D @ Udiff.T)
    alpha = torch.cat([1 - alpha_rest.sum().reshape(1), alpha_rest])
    return alpha @ G


def aligned_svd(G: torch.Tensor) -> torch.Tensor:
    """Aligned-MTL on the thin SVD: Ĝ = σ_min U Vᵀ, d = Ĝᵀ 1/k."""
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    keep = S.max() * 1e-10 < S
    aligned = S[keep].min() * U[:, keep] @ Vh[keep]
    return aligned.mean(dim=0)


def graddrop_loop(G: torch.Tensor, U: torch.Tensor, leak: torch.Tensor) -> torch.Tensor:
    """GradDrop's masking written row by row (Chen et al., Algorithm 1)."""
    purity = 0.5 * (1 + G.sum(0) / G.abs().sum(0))
    out = torch.zeros(G.shape[1], dtype=G.dtype)
    for i in range(G.shape[0]):
        mask = ((purity > U) & (G[i] > 0)) | ((purity < U) & (G[i] < 0))
        out += (leak[i] + (1 - leak[i]) * mask) * G[i]
    return out


def alpha_fair_root(G: torch.Tensor, alpha: float) -> np.ndarray:
    """Solve Kw = w^(−1/α) with a generic root finder on log w (scipy least squares)."""
    from scipy.optimize import least_squares

    K = (G @ G.T).numpy()
    result = least_squares(
        lambda z: K @ np.exp(z) * np.exp(z / alpha) - 1.0,
        np.zeros(len(K)),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
    )
    return np.exp(result.x)


# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_mean(shape, seed):
    G = random_gradients(*shape, seed)
    result = aggregators.get("mean").aggregate(G)
    torch.testing.assert_close(result.direction, G.sum(0) / len(G))
    torch.testing.assert_close(result.direction, result.weights @ G)


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_mgda_is_the_min_norm_point(shape, seed):
    G = random_gradients(*shape, seed)
    result = aggregators.get("mgda").aggregate(G)
    w, d = result.weights, result.direction
    # KKT of min_{w ∈ Δ} wᵀKw: feasibility, g_iᵀd >= ‖d‖² for all i, equality on the support
    scale = float((G @ G.T).diagonal().max())
    assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-12
    slack = G @ d - d @ d
    assert float(slack.min()) >= -1e-9 * scale
    assert float((w * slack).abs().max()) <= 1e-9 * scale
    reference = mgda_frank_wolfe(G)
    if float(reference.norm()) > 1e-3 * scale**0.5:
        assert cosine(d, reference) >= 0.999
    assert float(d.norm()) <= float(reference.norm()) * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_mgda_matches_torchjd(shape, seed):
    jd = torchjd_aggregation()
    G = random_gradients(*shape, seed)
    ours = aggregators.get("mgda")(G)
    theirs = jd.MGDA(epsilon=1e-10, max_iters=3000)(G)
    if float(theirs.norm()) > 1e-6:
        assert cosine(ours, theirs) >= 0.999


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_pcgrad_equals_the_sequential_projections(shape, seed):
    G = random_gradients(*shape, seed)
    k = len(G)
    orders = np.argsort(np.random.default_rng(seed).random((k, k)), axis=1)
    C = pcgrad_coefficients((G @ G.T).numpy(), orders)
    projected = pcgrad_loop(G, orders)
    torch.testing.assert_close(torch.as_tensor(C) @ G, projected)
    agg = aggregators.get("pcgrad", seed=seed)
    # the aggregator draws its orders the same way from its seed
    torch.testing.assert_close(agg(G), projected.sum(0))


@pytest.mark.parametrize("seed", SEEDS)
def test_pcgrad_two_tasks_matches_torchjd_and_removes_the_conflict(seed):
    jd = torchjd_aggregation()
    G = random_gradients(2, 30, seed)
    G[1] = G[1] - 2 * (G[1] @ G[0]) / (G[0] @ G[0]) * G[0] - 0.1 * G[0]  # make them conflict
    assert float(G[0] @ G[1]) < 0
    ours = aggregators.get("pcgrad")(G)
    torch.testing.assert_close(ours, jd.PCGrad()(G))
    C = torch.as_tensor(pcgrad_coefficients((G @ G.T).numpy(), np.array([[1, 0], [0, 1]])))
    projected = C @ G
    assert float(projected[0] @ G[1]) >= -1e-10 and float(projected[1] @ G[0]) >= -1e-10


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_pcgrad_removes_conflicts(shape, seed):
    G = random_gradients(*shape, seed)
    k = len(G)
    orders = np.argsort(np.random.default_rng(seed).random((k, k)), axis=1)
    projected = torch.as_tensor(pcgrad_coefficients((G @ G.T).numpy(), orders)) @ G
    scale = float((G @ G.T).diagonal().max())
    for i in range(k):
        last = [j for j in orders[i] if j != i][-1]
        # the last projection leaves g_i^PC with no conflict against g_last
        assert float(projected[i] @ G[last]) >= -1e-10 * scale
        # and each projection only removes conflict: g_i^PC · g_i stays positive here
        assert float(projected[i] @ G[i]) > 0


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
@pytest.mark.parametrize("c", [0.4, 0.5, 1.5])
def test_cagrad(shape, seed, c):
    G = random_gradients(*shape, seed)
    ours = aggregators.get("cagrad", c=c)(G)
    assert cosine(ours, cagrad_scipy(G, c)) >= 0.999


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_cagrad_matches_torchjd(shape, seed):
    jd = torchjd_aggregation()
    G = random_gradients(*shape, seed)
    ours = aggregators.get("cagrad", c=0.4, rescale=0).aggregate(G)
    theirs = quiet(jd.CAGrad(c=0.4), G)
    # torchjd solves the same dual with cvxpy/Clarabel at its default tolerance
    assert cosine(ours.direction, theirs) >= 0.9999
    assert abs(float(ours.direction.norm() / theirs.norm()) - 1) < 1e-3


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_imtl_g(shape, seed):
    G = random_gradients(*shape, seed)
    result = aggregators.get("imtl_g").aggregate(G)
    d = result.direction
    assert abs(float(result.weights.sum()) - 1) < 1e-10
    if shape[0] <= shape[1]:  # the original closed form needs independent gradients
        assert cosine(d, imtl_g_original(G)) >= 0.999
        torch.testing.assert_close(d, imtl_g_original(G), rtol=1e-6, atol=1e-9)
        projections = (G / G.norm(dim=1, keepdim=True)) @ d  # all equal: IMTL-G's definition
        torch.testing.assert_close(projections, projections.mean().expand_as(projections))


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_imtl_g_matches_torchjd(shape, seed):
    jd = torchjd_aggregation()
    G = random_gradients(*shape, seed)
    torch.testing.assert_close(aggregators.get("imtl_g")(G), jd.IMTLG()(G), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_aligned_mtl(shape, seed):
    G = random_gradients(*shape, seed)
    ours = aggregators.get("aligned_mtl")(G)
    assert cosine(ours, aligned_svd(G)) >= 0.999
    torch.testing.assert_close(ours, aligned_svd(G), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_aligned_mtl_matches_torchjd(shape, seed):
    jd = torchjd_aggregation()
    G = random_gradients(*shape, seed)
    torch.testing.assert_close(
        aggregators.get("aligned_mtl")(G), jd.AlignedMTL()(G), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop(shape, seed, leak):
    G = random_gradients(*shape, seed)
    ours = aggregators.get("graddrop", seed=seed, leak=leak)(G)
    U = torch.rand(G.shape[1], generator=torch.Generator().manual_seed(seed), dtype=G.dtype)
    reference = graddrop_loop(G, U, torch.full((len(G),), leak, dtype=G.dtype))
    torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("seed", SEEDS)
def test_graddrop_matches_torchjd(seed):
    jd = torchjd_aggregation()
    G = random_gradients(4, 50, seed)
    ours = aggregators.get("graddrop", seed=seed)(G)
    torch.manual_seed(seed)  # torchjd draws U from the global stream
    torch.testing.assert_close(ours, jd.GradDrop()(G))


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_nash_mtl_solves_the_bargaining_equation(shape, seed):
    G = random_gradients(*shape, seed)
    result = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G)
    if result.info["status"] == "pareto_stationary":  # k > d: 0 can lie in the convex hull
        assert shape[0] > shape[1]
        return
    w = result.weights.numpy()
    K = (G @ G.T).numpy()
    assert np.linalg.norm(K @ w - 1 / w) <= 1e-6 * np.linalg.norm(1 / w)
    assert result.info["residual"] <= 1e-10
    np.testing.assert_allclose(w, alpha_fair_root(G, 1.0), rtol=1e-6)


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=IDS)
def test_nash_mtl_matches_torchjd(shape, seed):
    jd = torchjd_aggregation()
    pytest.importorskip("ecos")
    G = random_gradients(*shape, seed)
    ours = aggregators.get("nash_mtl", max_norm=0.0).aggregate(G)
    if ours.info["status"] != "solved":
        return
    theirs = quiet(jd.NashMTL(n_tasks=shape[0], max_norm=0.0, optim_niter=100), G)
    assert cosine(ours.direction, theirs) >= 0.999


@pytest.mark.parametrize(("shape", "seed"), CASES[::2], ids=IDS[::2])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad(shape, seed, alpha):
    G = random_gradients(*shape, seed)
    result = aggregators.get("fairgrad", alpha=alpha, max_norm=0.0).aggregate(G)
    if result.info["status"] == "pareto_stationary":
        return
    w = result.weights.numpy()
    K = (G @ G.T).numpy()
    target = w ** (-1 / alpha)
    assert np.linalg.norm(K @ w - target) <= 1e-6 * np.linalg.norm(target)
    np.testing.assert_allclose(w, alpha_fair_root(G, alpha), rtol=1e-6)


@pytest.mark.parametrize(("shape", "seed"), CASES[::2], ids=IDS[::2])
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_fairgrad_matches_torchjd(shape, seed, alpha):
    jd = torchjd_aggregation()
    G = random_gradients(*shape, seed)
    ours = aggregators.get("fairgrad", alpha=alpha, max_norm=0.0).aggregate(G)
    if ours.info["status"] != "solved":
        return
    theirs = jd.FairGrad(alpha=alpha)(G)
    assert cosine(ours.direction, theirs) >= 0.999
