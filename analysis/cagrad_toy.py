"""The CAGrad two-objective toy problem, run with every aggregator of taskgroup.

Liu et al. ("Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021, ``toy.py``
of their repository) built two losses on x ∈ R² whose gradients conflict. Their Pareto set is the
curve x₂ = x₂*(x₁), −7 ≤ x₁ ≤ 7, with x₂* between −8.4345 (at x₁ = ±7) and −8.3551 (at x₁ = 0,
the minimum of the average loss; the papers draw the set as the segment x₂ = −8.3552): here it is
computed exactly (for x₁ = 14λ − 7 the minimiser over x₂ of λ L₁ + (1 − λ) L₂). Navon et
al. (Nash-MTL, ICML 2022) reuse it from five starting points, (−8.5, 7.5), (0, 0), (9, 9),
(−7.5, −0.5), (9, −1), optionally with the first loss scaled by 0.1 (``--scale 0.1``) to test
invariance to the losses' scales. Each run takes ``--steps`` Adam steps (lr 1e-3, the papers'
optimiser; 35 000 steps as in Nash-MTL's toy) on x with the update of one aggregator from the
registry, with its default options except CAGrad's c = 0.5 (the CAGrad toy's) and FAMO's
γ = 0 with lower bounds −21 (FAMO's toy settings); the loss weightings' own parameters (``uw``)
take Adam steps with lr 0.025 (Nash-MTL's toy). ``transference`` scores its candidates
(``mean``, ``pcgrad``) by the losses after the Adam step each would take.

One run from a published start can be a chaotic outcome (PCGrad's end point moved from mean loss
0.34 to −10.52 when its start moved by 1e-9; from (0, 0) the first coordinate of most methods'
update is rounding noise, which Adam's normalised step turns into steps of ±lr), so ``--perturb
P`` also runs each method from P starts drawn around each published start (Gaussian, standard
deviation ``--sigma`` per coordinate, seeded by ``--seed``) and reports, per method and published
start, the spread over those P runs: how many end on the Pareto set, and the median and 5–95%
range of the end point's mean loss. The figures always show the runs from the published starts
themselves.

All starts of a method run at once (:func:`run`): the toy is two-dimensional with two tasks, so
each method's update is computed for every start in one batch — the Gramian methods from the
closed forms of their k = 2 weights (MGDA's min-norm point, CAGrad's dual, IMTL-G, Nash-MTL and
FairGrad at α = 1, PCGrad), Aligned-MTL from one stacked eigendecomposition, the loss weightings
from one summed objective with per-start state — and a start whose Gramian the closed form does
not cover (a zero gradient, near-parallel gradients with a near-singular Gramian, Nash-MTL's
gradients within 1 + cos ≈ 1e-10 of opposition, where the library's answer depends on its
Newton path) is handed to its own instance of the library's method. Near-opposite gradients,
where every run that reaches the Pareto set ends, stay in the closed forms of IMTL-G and
Nash-MTL, which take 1 + cos from the unit gradients and so stay exact to rounding there.
:func:`run_sequential` is the reference: one library instance per start, called once per start
and step. The two agree bit for bit for ``mean``, ``pcgrad``,
``cagrad``, ``aligned_mtl``, ``graddrop``, ``transference`` and the loss weightings, and to
rounding (1e-14 after 300 steps) for ``mgda``, ``imtl_g``, ``nash_mtl`` and ``fairgrad``, except
from a start on the symmetry axis x₁ = 0, where rounding decides the direction (tests/analysis/
test_cagrad_toy.py). The spread therefore costs about one run: a step of 105 starts took 8.9 ms
against 8.6 ms for the 5 published ones (``mean``, autograd gradients, on the loaded shared
machine); the task gradients are in closed form (:func:`losses_and_gradients`, 4× faster than
autograd). The wall time of a whole spread is written into ``cagrad_toy_spread.txt``.

Outputs: ``docs/img/cagrad_toy_landscape.png`` (trajectories on the average loss, one panel per
aggregator), ``docs/img/cagrad_toy_pareto.png`` (the same runs in loss space with the Pareto front)
and tables of where each run ends (also ``analysis/results/cagrad_toy.json``; with ``--perturb``,
``cagrad_toy_spread.txt``/``.json``).

Run from the repository root (``--steps 5000`` for a quick look)::

    OMP_NUM_THREADS=1 python analysis/cagrad_toy.py [--steps 35000] [--scale 1.0] \
        [--perturb 20 --sigma 0.1 --seed 0] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import warnings
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from taskgroup import aggregators
from taskgroup.aggregators import TransferenceContext
from taskgroup.aggregators.base import EPS as FLOAT64_EPS
from taskgroup.aggregators.cagrad import STATIONARY as CAGRAD_STATIONARY
from taskgroup.aggregators.simplex_qp import RIDGE

ROOT = Path(__file__).resolve().parents[1]
STARTS = torch.tensor(
    [[-8.5, 7.5], [0.0, 0.0], [9.0, 9.0], [-7.5, -0.5], [9.0, -1.0]], dtype=torch.float64
)
PARETO_X2 = -8.3552  # the set at x1 = 0 (the papers' drawing)
ON_SET = 0.02  # an end point this close to the Pareto set is on it
LOWER = 5e-6
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8
OPTIONS = {"cagrad": {"c": 0.5}, "famo": {"gamma": 0.0}}
METHOD_LR = 0.025


def toy_losses(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The two losses ``[N, 2]`` at points ``x: [N, 2]`` (CAGrad's toy; loss 1 times scale)."""
    x1, x2 = x[:, 0], x[:, 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([(f1 * c1 + f1_sq * c2) * scale, f2 * c1 + f2_sq * c2], dim=1)


def losses_and_gradients(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses ``[N, 2]`` and per-point task gradients ``[N, 2 tasks, 2 coords]``, the gradients
    in closed form (the derivative of every piece of :func:`toy_losses`, with autograd's
    conventions at the kinks: ``clamp`` passes the gradient where its input is at or beyond
    the bound, ``abs`` has derivative 0 at 0); equal to autograd's to rounding
    (:func:`autograd_gradients`, tests/analysis/test_cagrad_toy.py) and several times faster."""
    x1, x2 = x[:, 0], x[:, 1]
    t = torch.tanh(-x2)
    dt = -(1 - t * t)  # d tanh(-x2) / d x2
    u1, u2 = 0.5 * (-x1 - 7) - t, 0.5 * (-x1 + 3) + t + 2
    a1, a2 = u1.abs(), u2.abs()
    f1, f2 = torch.clamp(a1, LOWER).log() + 6, torch.clamp(a2, LOWER).log() + 6
    g1 = torch.where(a1 >= LOWER, torch.sign(u1) / a1, 0.0)  # d f / d u
    g2 = torch.where(a2 >= LOWER, torch.sign(u2) / a2, 0.0)
    h, k = torch.tanh(x2 * 0.5), torch.tanh(-x2 * 0.5)
    c1, c2 = torch.clamp(h, 0), torch.clamp(k, 0)
    dc1 = torch.where(h >= 0, 0.5 * (1 - h * h), 0.0)
    dc2 = torch.where(k >= 0, -0.5 * (1 - k * k), 0.0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    dsq_dx2 = -0.02 * (-x2 - 8)
    G = torch.stack(
        [
            torch.stack(
                [
                    -0.5 * g1 * c1 - 0.2 * (-x1 + 7) * c2,
                    -dt * g1 * c1 + f1 * dc1 + dsq_dx2 * c2 + f1_sq * dc2,
                ],
                dim=1,
            )
            * scale,
            torch.stack(
                [
                    -0.5 * g2 * c1 - 0.2 * (-x1 - 7) * c2,
                    dt * g2 * c1 + f2 * dc1 + dsq_dx2 * c2 + f2_sq * dc2,
                ],
                dim=1,
            ),
        ],
        dim=1,
    )
    losses = torch.stack([(f1 * c1 + f1_sq * c2) * scale, f2 * c1 + f2_sq * c2], dim=1)
    return losses, G


def autograd_gradients(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The task gradients ``[N, 2, 2]`` of :func:`toy_losses` by autograd (the reference)."""
    x = x.detach().requires_grad_(True)
    losses = toy_losses(x, scale)
    rows = [torch.autograd.grad(losses[:, i].sum(), x, retain_graph=True)[0] for i in range(2)]
    return torch.stack(rows, dim=1)


class Adam:
    """Adam on a batch of independent points (torch.optim.Adam's update, element-wise)."""

    def __init__(self, shape, lr: float):
        self.lr = lr
        self.m = torch.zeros(shape, dtype=torch.float64)
        self.v = torch.zeros(shape, dtype=torch.float64)
        self.t = 0

    def step_for(self, gradient: torch.Tensor, t: int, m: torch.Tensor, v: torch.Tensor):
        m = BETAS[0] * m + (1 - BETAS[0]) * gradient
        v = BETAS[1] * v + (1 - BETAS[1]) * gradient**2
        m_hat = m / (1 - BETAS[0] ** t)
        v_hat = v / (1 - BETAS[1] ** t)
        return -self.lr * m_hat / (v_hat.sqrt() + EPS), m, v

    def step(self, gradient: torch.Tensor) -> torch.Tensor:
        self.t += 1
        update, self.m, self.v = self.step_for(gradient, self.t, self.m, self.v)
        return update

    def would_step(self, gradients: torch.Tensor, i: int) -> torch.Tensor:
        """The updates ``[m, 2]`` point i would take for each candidate gradient row."""
        update, _, _ = self.step_for(gradients, self.t + 1, self.m[i], self.v[i])
        return update


def perturbed_starts(perturb: int, sigma: float, seed: int) -> torch.Tensor:
    """The published starts ``[5, 2]`` followed by ``perturb`` starts around each
    (``[5 + 5·perturb, 2]``: row 5 + s·perturb + r is the r-th perturbation of start s), drawn as
    start + N(0, sigma²) per coordinate from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, size=(len(STARTS), perturb, 2))
    around = STARTS.numpy()[:, None, :] + noise
    return torch.cat([STARTS, torch.as_tensor(around.reshape(-1, 2))])


def run_sequential(
    name: str, steps: int, scale: float, starts: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The reference path of :func:`run`: every row of ``starts`` with its own instance of the
    library's method, called once per start and step (slow: one Python call per start)."""
    starts = STARTS if starts is None else starts
    n = len(starts)
    options = method_options(name, scale)
    methods = [aggregators.get(name, **options) for _ in range(n)]
    x = starts.clone()
    adam = Adam(x.shape, LR)
    loss_weighting = methods[0].kind == "loss"
    if loss_weighting:
        for method in methods:
            method.prepare(2, dtype=torch.float64)
        own = [p for method in methods for p in method.parameters()]
        own_optimizer = torch.optim.Adam(own, lr=METHOD_LR) if own else None
    shown = min(len(STARTS), n)
    trajectory = np.empty((steps + 1, shown, 2))
    trajectory[0] = x[:shown].numpy()
    for t in range(steps):
        if loss_weighting:
            xg = x.detach().requires_grad_(True)
            losses = toy_losses(xg, scale)
            if own_optimizer is not None:
                own_optimizer.zero_grad()
            objective = sum(method(losses[i]) for i, method in enumerate(methods))
            objective.backward()
            direction = clipped(xg.grad, methods[0].max_norm)
            if own_optimizer is not None:
                own_optimizer.step()
        else:
            losses, G = losses_and_gradients(x, scale)
            rows = []
            for i, method in enumerate(methods):
                if name == "transference":
                    context = TransferenceContext(
                        evaluate=lambda D, i=i, x=x: toy_losses(
                            x[i] + adam.would_step(D, i), scale
                        ),
                        base_losses=losses[i],
                    )
                    rows.append(method.aggregate(G[i], context=context).direction)
                else:
                    rows.append(method(G[i]))
            direction = torch.stack(rows)
        x = x + adam.step(direction.detach())
        trajectory[t + 1] = x[:shown].numpy()
    return trajectory, x.numpy()


def method_options(name: str, scale: float) -> dict:
    """The registry options of ``name`` in the toy (CAGrad's c, FAMO's γ and lower bounds)."""
    options = dict(OPTIONS.get(name, {}))
    if name == "famo":
        options["min_losses"] = [-21.0 * scale, -21.0]
    return options


def clipped(direction: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row of ``direction`` ``[N, 2]`` scaled down to norm ``max_norm`` (0: unchanged),
    as the reference clips the shared parameters' gradient."""
    if max_norm <= 0:
        return direction
    norms = direction.norm(dim=1, keepdim=True)
    return direction * torch.clamp(max_norm / norms, max=1.0)


# ------------------------------------------------------------------------------------------
# The batched path: every start at once, per method, with the k = 2 closed forms


def gramians(G: torch.Tensor) -> np.ndarray:
    """``K = GGᵀ`` ``[N, 2, 2]`` of per-start gradients ``G: [N, 2, 2]`` (symmetrised, float64,
    as :func:`taskgroup.aggregators.base.gramian` forms each one)."""
    K = (G @ G.transpose(1, 2)).numpy()
    return (K + K.transpose(0, 2, 1)) * 0.5


def _entries(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c)`` = (‖g₁‖², g₁·g₂, ‖g₂‖²) ``[N]`` each."""
    return K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]


def _pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.stack([first, second], axis=1)


def mean_weights(K: np.ndarray, c_option: float, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.full((len(K), 2), 0.5), np.ones(len(K), dtype=bool)


def mgda_weights(K: np.ndarray, c_option: float, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The min-norm point of the segment [g₂, g₁] on ``Q = K + δI`` (δ = 1e-12 max K_ii, the
    ridge of :func:`~taskgroup.aggregators.simplex_qp.regularized`): w₁ = clip((q₂₂ − q₁₂) /
    (q₁₁ + q₂₂ − 2q₁₂), 0, 1). Irregular: a zero gradient, or Q not positive definite."""
    a, b, c = _entries(K)
    delta = RIDGE * np.maximum(a, c)
    q11, q22 = a + delta, c + delta
    regular = (a > 0) & (c > 0) & (q11 * q22 - b * b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = np.clip((q22 - b) / (q11 + q22 - 2.0 * b), 0.0, 1.0)
    return _pair(w1, 1.0 - w1), regular


def pcgrad_weights(K: np.ndarray, c_option: float, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """With two tasks each gradient has one other to project on, so the visiting order does
    not matter: w = (1 − min(b, 0)/a, 1 − min(b, 0)/c). Irregular: a zero gradient."""
    a, b, c = _entries(K)
    regular = (a > 0) & (c > 0)
    conflict = np.minimum(b, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _pair(1.0 + (0.0 - conflict / a), (0.0 - conflict / c) + 1.0), regular


def cagrad_weights_2(
    K: np.ndarray, c_option: float, G: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CAGrad's dual min_{w ∈ Δ₂} bᵀw + ρ √(wᵀQw) (b = K·1/2, ρ = c‖g₀‖, Q the ridged K of the
    library's solver) in closed form. On w = (x, 1 − x) with D = q₁₁ − 2q₁₂ + q₂₂,
    E = q₁₂ − q₂₂, m = det Q and s = b₁ − b₂, the stationarity condition
    s + ρ (Dx + E)/√(wᵀQw) = 0 gives y = Dx + E = −sign(s) |s| √(m / (ρ²D − s²)) when
    ρ²D > s² (else the vertex x = 0 for s > 0, x = 1 for s < 0); the objective is convex, so x
    is clipped to [0, 1]. Then the weights are 1/2 + ρ/‖g_w‖ · w (the mean alone at a Pareto-
    stationary point, and where ρ = 0), divided by 1 + c². Irregular: a zero gradient, D or
    det Q ≤ 0."""
    a, b, c = _entries(K)
    half = K.sum(axis=2) / 2  # b of the library: K·1/k
    rho2 = c_option * c_option * np.maximum(half.sum(axis=1) / 2, 0.0)
    delta = RIDGE * np.maximum(a, c)
    q11, q22 = a + delta, c + delta
    D, E, m = q11 - 2.0 * b + q22, b - q22, q11 * q22 - b * b
    s = half[:, 0] - half[:, 1]
    mean_only = rho2 <= 0  # g₀ = 0 (as at ★): the library returns the mean weights
    regular = mean_only | ((a > 0) & (c > 0) & (D > 0) & (m > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = rho2 * D - s * s
        y = -np.sign(s) * np.abs(s) * np.sqrt(m / gap)
        interior = np.clip((y - E) / D, 0.0, 1.0)
        x = np.where(gap > 0, interior, np.where(s > 0, 0.0, 1.0))
        w = _pair(x, 1.0 - x)
        q = np.einsum("ni,nij,nj->n", w, K, w)
        stationary = q <= CAGRAD_STATIONARY * np.maximum(a, c)
        correction = np.where(stationary, 0.0, np.sqrt(rho2) / np.sqrt(q))
    weights = np.where(mean_only[:, None], 0.5, 0.5 + correction[:, None] * w)
    return weights / (1.0 + c_option**2), regular


def imtl_g_weights(K: np.ndarray, c_option: float, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal projections on both unit gradients: K⁻¹n ∝ (‖g₂‖, ‖g₁‖), so
    w = (‖g₂‖, ‖g₁‖) / (‖g₁‖ + ‖g₂‖), exact however near-opposite the gradients are (where the
    library's pseudo-inverse of the near-singular K loses digits, and at exact opposition its
    d = 0 is this form's limit). Irregular: a zero gradient, or near-parallel gradients with K
    near singular (det K ≤ 1e-8 (tr K)²), where the library's rank decision picks another of
    the many equal-projection weights."""
    a, b, c = _entries(K)
    regular = (a > 0) & (c > 0) & ((b < 0) | (a * c - b * b > 1e-8 * (a + c) ** 2))
    n1, n2 = np.sqrt(np.clip(a, 0.0, None)), np.sqrt(np.clip(c, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _pair(n2, n1) / (n1 + n2)[:, None], regular


def aligned_mtl_weights(
    K: np.ndarray, c_option: float, G: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """B·(1/2, 1/2) with B = √λ_min U Λ^(−1/2) Uᵀ, from numpy's eigh of all Gramians at once
    (the library's formula, stacked). Irregular: an eigenvalue the library would drop."""
    eigenvalues, vectors = np.linalg.eigh(K)
    top = eigenvalues[:, -1]
    regular = (top > 0) & (eigenvalues[:, 0] > np.maximum(top, 0.0) * 2 * FLOAT64_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = vectors / np.sqrt(eigenvalues)[:, None, :]
        B = np.sqrt(eigenvalues[:, :1, None]) * scaled @ vectors.transpose(0, 2, 1)
    return B @ np.full(2, 0.5), regular


def nash_mtl_weights(
    K: np.ndarray, c_option: float, G: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kw = 1/w for k = 2: a w₁² = c w₂², so w₁ = 1/√(a (1 + cos)) and w₂ = 1/√(c (1 + cos)),
    cos = cos(g₁, g₂) (FairGrad at α = 1 is the same). 1 + cos = ‖u₁ + u₂‖²/2 is taken from
    the unit gradients u_i = g_i/‖g_i‖, not from K, where it cancels: the weights stay exact to
    rounding as the gradients near opposition, where the library's Newton solve stops at its
    rounding floor (a relative residual up to 1e-6). Below 1 + cos = 1e-10 (0.99e-10 here) the
    weights are 0, as the library's: the solution's normalised weights 1/√(1 + cos) pass its
    Newton limit 1e5, and its Pareto-stationarity test, (1 + cos)/2 ≤ 1e-10, then returns
    d = 0; above 2e-10 that test fails and its Newton solve goes on to this form's solution.
    Irregular: a zero gradient, or 1 + cos in [0.99e-10, 2.01e-10], where the library's answer
    depends on whether its Newton path passes the limit."""
    a, _, c = _entries(K)
    norms = np.linalg.norm(G, axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        opposition = 0.5 * np.sum((G / norms).sum(axis=1) ** 2, axis=1)  # 1 + cos
        stationary = opposition < 0.99e-10
        regular = (a > 0) & (c > 0) & (stationary | (opposition > 2.01e-10))
        w = _pair(1.0 / np.sqrt(a * opposition), 1.0 / np.sqrt(c * opposition))
    return np.where(stationary[:, None], 0.0, w), regular


GRAMIAN_WEIGHTS = {
    "mean": mean_weights,
    "mgda": mgda_weights,
    "pcgrad": pcgrad_weights,
    "cagrad": cagrad_weights_2,
    "imtl_g": imtl_g_weights,
    "aligned_mtl": aligned_mtl_weights,
    "nash_mtl": nash_mtl_weights,
    "fairgrad": nash_mtl_weights,
}


class GramianUpdate:
    """A Gramian method's directions ``[N, 2]`` for all starts at once: the closed-form weights
    of :data:`GRAMIAN_WEIGHTS`, bounded to ``max_norm`` through wᵀKw and combined as Gᵀw, as
    :class:`~taskgroup.aggregators.base.GramianAggregator` does for one start. A start whose
    Gramian the closed form does not cover (a zero gradient, near-singular or near-opposite
    gradients: the library's degenerate cases) is handed to its own instance of the library's
    method (``fallbacks`` counts them)."""

    def __init__(self, name: str, scale: float):
        self.name, self.scale = name, scale
        self.options = method_options(name, scale)
        reference = aggregators.get(name, **self.options)
        if name == "fairgrad" and reference.alpha != 1.0:
            raise ValueError("the batched FairGrad is the α = 1 closed form")
        self.max_norm = reference.max_norm
        self.c = getattr(reference, "c", 0.0)
        self.library: dict[int, aggregators.Aggregator] = {}
        self.fallbacks = 0

    def __call__(self, x: torch.Tensor, adam: Adam) -> torch.Tensor:
        return self.directions(losses_and_gradients(x, self.scale)[1])

    def directions(self, G: torch.Tensor) -> torch.Tensor:
        """The directions ``[N, 2]`` of per-start gradients ``G: [N, 2 tasks, 2]``."""
        if self.name == "mean":
            return G.mean(dim=1)
        K = gramians(G)
        w, regular = GRAMIAN_WEIGHTS[self.name](K, self.c, G.numpy())
        if self.max_norm > 0:
            norms = np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", w, K, w), 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                bounded = w * (self.max_norm / norms)[:, None]
            w = np.where((norms > self.max_norm)[:, None], bounded, w)
        out = (torch.as_tensor(w)[:, None, :] @ G)[:, 0]
        for i in np.flatnonzero(~regular).tolist():
            if i not in self.library:
                self.library[i] = aggregators.get(self.name, **self.options)
            out[i] = self.library[i](G[i])
            self.fallbacks += 1
        return out


class GradDropUpdate:
    """GradDrop for all starts: every start's instance draws U from a generator with the same
    seed, so one draw per step serves them all."""

    def __init__(self, name: str, scale: float):
        self.scale = scale
        reference = aggregators.get(name)
        if reference.leak != 0.0:
            raise ValueError("the batched GradDrop is the leak = 0 form")
        self.generator = torch.Generator().manual_seed(reference.seed)
        self.fallbacks = 0

    def __call__(self, x: torch.Tensor, adam: Adam) -> torch.Tensor:
        G = losses_and_gradients(x, self.scale)[1]
        total = G.sum(dim=1)
        positive_total = G.clamp(min=0).sum(dim=1)
        magnitude = 2.0 * positive_total - total
        purity = positive_total / torch.where(magnitude > 0, magnitude, 1.0)
        U = torch.rand(G.shape[2], generator=self.generator, dtype=G.dtype)
        return torch.where(
            purity > U, positive_total, torch.where(purity < U, total - positive_total, 0.0)
        )


class TransferenceUpdate:
    """IT-MTL with its default candidates, ``mean`` and ``pcgrad``: for every start, the
    candidate whose Adam step (from that start's Adam state) leaves the lower total loss (the
    first on a tie, as ``torch.argmin``)."""

    def __init__(self, name: str, scale: float):
        self.scale = scale
        reference = aggregators.get(name)
        names = [candidate.name for candidate in reference.candidates]
        if names != ["mean", "pcgrad"] or reference.score != "total" or reference.per_task:
            raise ValueError("the batched transference is the default (mean, pcgrad, total)")
        self.mean, self.pcgrad = GramianUpdate("mean", scale), GramianUpdate("pcgrad", scale)

    @property
    def fallbacks(self) -> int:
        return self.pcgrad.fallbacks

    def __call__(self, x: torch.Tensor, adam: Adam) -> torch.Tensor:
        G = losses_and_gradients(x, self.scale)[1]
        D = torch.stack([self.mean.directions(G), self.pcgrad.directions(G)], dim=1)
        update, _, _ = adam.step_for(D, adam.t + 1, adam.m[:, None], adam.v[:, None])
        after = toy_losses((x[:, None] + update).reshape(-1, 2), self.scale).reshape(D.shape)
        best = after.sum(dim=2).argmin(dim=1)
        return D[torch.arange(len(D)), best]


class LossUpdate:
    """A loss weighting for all starts: the summed objective of every start's weighted losses
    is back-propagated once to the points (each start's losses only reach its own point), the
    direction clipped per start to ``max_norm``; ``uw``'s log-variances ``[N, 2]`` take Adam
    steps (lr 0.025) as the per-start parameters of the sequential path do."""

    def __init__(self, name: str, scale: float):
        self.name, self.scale = name, scale
        self.method = aggregators.get(name, **method_options(name, scale))
        self.max_norm = self.method.max_norm
        self.state: dict[str, object] = {}
        self.optimizer = None
        self.fallbacks = 0

    def __call__(self, x: torch.Tensor, adam: Adam) -> torch.Tensor:
        xg = x.detach().requires_grad_(True)
        losses = toy_losses(xg, self.scale)
        if self.optimizer is not None:
            self.optimizer.zero_grad()
        objective = getattr(self, f"_{self.name}")(losses)
        objective.backward()
        direction = clipped(xg.grad, self.max_norm)
        if self.optimizer is not None:
            self.optimizer.step()
        return direction

    def _uw(self, losses: torch.Tensor) -> torch.Tensor:
        if "s" not in self.state:
            s = torch.full(losses.shape, self.method.init, dtype=torch.float64, requires_grad=True)
            self.state["s"] = s
            self.optimizer = torch.optim.Adam([s], lr=METHOD_LR)
        s = self.state["s"]
        return (0.5 * (torch.exp(-s) * losses + s).sum(dim=1)).sum()

    def _dwa(self, losses: torch.Tensor) -> torch.Tensor:
        window = self.method.window
        history = self.state.setdefault("history", deque(maxlen=2 * window))
        if len(history) == history.maxlen:
            stacked = torch.stack(list(history))
            before, recent = stacked[:window].mean(dim=0), stacked[window:].mean(dim=0)
            ratio = torch.where(before.abs() > 0, recent / torch.where(before != 0, before, 1), 1)
            weights = torch.softmax(ratio / self.method.temperature, dim=1)
        else:
            weights = torch.full(losses.shape, 0.5, dtype=losses.dtype)
        history.append(losses.detach())
        return (weights * losses).sum()

    def _rlw(self, losses: torch.Tensor) -> torch.Tensor:
        if "generator" not in self.state:
            self.state["generator"] = torch.Generator().manual_seed(self.method.seed)
        z = torch.randn(2, generator=self.state["generator"], dtype=torch.float64)
        return (torch.softmax(z, dim=0) * losses).sum()

    def _famo(self, losses: torch.Tensor) -> torch.Tensor:
        famo, state = self.method, self.state
        if "logits" not in state:
            state.update(logits=torch.zeros(losses.shape, dtype=torch.float64), steps=0)
            state.update(m=torch.zeros(losses.shape, dtype=torch.float64))
            state.update(v=torch.zeros(losses.shape, dtype=torch.float64))
        bound = torch.as_tensor(famo.min_losses, dtype=losses.dtype)
        if "previous" in state:  # the toy protocol: learn from this step's incoming losses
            self._famo_update(state.pop("previous"), losses.detach(), bound)
        shifted = losses - bound + famo.eps
        z = torch.softmax(state["logits"], dim=1)
        c = (z / shifted.detach()).sum(dim=1)
        state["previous"] = losses.detach()
        return ((z * torch.log(shifted)).sum(dim=1) / c).sum()

    def _famo_update(self, before: torch.Tensor, after: torch.Tensor, bound) -> None:
        famo, state = self.method, self.state
        decrease = torch.log(before - bound + famo.eps) - torch.log(after - bound + famo.eps)
        logits = state["logits"]
        z = torch.softmax(logits, dim=1)
        gradient = z * (decrease - (z * decrease).sum(dim=1, keepdim=True)) + famo.gamma * logits
        m, v = state["m"], state["v"]
        m.mul_(0.9).add_(gradient, alpha=0.1)
        v.mul_(0.999).addcmul_(gradient, gradient, value=0.001)
        state["steps"] += 1
        m_hat = m / (1 - 0.9 ** state["steps"])
        v_hat = v / (1 - 0.999 ** state["steps"])
        state["logits"] = logits - famo.w_lr * m_hat / (v_hat.sqrt() + 1e-8)


def batched_update(name: str, scale: float):
    """The update of ``name`` for all starts at once: ``update(x: [N, 2], adam) -> [N, 2]``."""
    if name in GRAMIAN_WEIGHTS:
        return GramianUpdate(name, scale)
    kinds = {"graddrop": GradDropUpdate, "transference": TransferenceUpdate}
    if name in kinds:
        return kinds[name](name, scale)
    if name in ("uw", "dwa", "rlw", "famo"):
        return LossUpdate(name, scale)
    raise ValueError(f"no batched form of {name!r} in the toy")


def run(
    name: str,
    steps: int,
    scale: float,
    starts: torch.Tensor | None = None,
    *,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One aggregator from every row of ``starts`` (default: the five published ones) at once:
    the trajectories ``[steps + 1, 5, 2]`` of the first five rows (the published starts) and
    the end points ``[len(starts), 2]`` of all. Each start's update is computed from its own
    gradients and state (:func:`batched_update`); it equals :func:`run_sequential`'s to
    rounding (1e-12), so a run costs about one run whatever the number of starts. ``stats``
    (a dict) receives ``fallbacks``: the start-steps handed to the library's method."""
    starts = STARTS if starts is None else starts
    update = batched_update(name, scale)
    x = starts.clone()
    adam = Adam(x.shape, LR)
    shown = min(len(STARTS), len(starts))
    trajectory = np.empty((steps + 1, shown, 2))
    trajectory[0] = x[:shown].numpy()
    for t in range(steps):
        direction = update(x, adam)
        x = x + adam.step(direction.detach())
        trajectory[t + 1] = x[:shown].numpy()
    if stats is not None:
        stats["fallbacks"] = update.fallbacks
    return trajectory, x.numpy()


def distance_to_set(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Euclidean distance ``[N]`` of each point ``[N, 2]`` to the sampled Pareto set."""
    gaps = points[:, None, :] - curve[None, :, :]
    return np.hypot(gaps[..., 0], gaps[..., 1]).min(axis=1)


def spread(ends: np.ndarray, perturb: int, scale: float, curve: np.ndarray) -> list[dict]:
    """Per published start, the runs from its ``perturb`` perturbed starts (rows
    ``5 + s·perturb ...`` of ``ends``): how many end on the Pareto set (within ``ON_SET``), the
    median and the 5th and 95th percentiles (numpy's linear interpolation) of the end point's
    mean loss, and the median end point."""
    rows = []
    for s in range(len(STARTS)):
        block = ends[len(STARTS) + s * perturb : len(STARTS) + (s + 1) * perturb]
        mean_loss = toy_losses(torch.as_tensor(block), scale).mean(dim=1).numpy()
        low, median, high = np.percentile(mean_loss, [5, 50, 95])
        rows.append(
            {
                "start": STARTS[s].tolist(),
                "runs": perturb,
                "on_set": int((distance_to_set(block, curve) < ON_SET).sum()),
                "mean_loss_median": round(float(median), 3),
                "mean_loss_p5": round(float(low), 3),
                "mean_loss_p95": round(float(high), 3),
                "end_median": [round(float(v), 3) for v in np.median(block, axis=0)],
                "ends": np.round(block, 4).tolist(),
            }
        )
    return rows


def pareto_set(points: int = 1401) -> np.ndarray:
    """The Pareto set ``[points, 2]`` (the same for any scale of the losses): for x1 = 14λ − 7,
    x2 minimises λ L1 + (1 − λ) L2, a one-dimensional bounded minimisation."""
    from scipy.optimize import minimize_scalar

    out = np.empty((points, 2))
    for i, x1 in enumerate(np.linspace(-7.0, 7.0, points)):
        lam = (x1 + 7.0) / 14.0

        def weighted(x2: float, x1: float = x1, lam: float = lam) -> float:
            losses = toy_losses(torch.tensor([[x1, x2]], dtype=torch.float64))[0]
            return float(lam * losses[0] + (1 - lam) * losses[1])

        best = minimize_scalar(
            weighted, bounds=(-12.0, -5.0), method="bounded", options={"xatol": 1e-10}
        )
        out[i] = (x1, best.x)
    return out


def pareto_front(curve: np.ndarray, scale: float) -> np.ndarray:
    return toy_losses(torch.as_tensor(curve), scale).numpy()


def end_table(trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray) -> list[dict]:
    rows = []
    for name, traj in trajectories.items():
        end = torch.as_tensor(traj[-1])
        losses = toy_losses(end, scale).numpy()
        for i in range(len(STARTS)):
            x = traj[-1, i]
            distance = float(np.min(np.hypot(curve[:, 0] - x[0], curve[:, 1] - x[1])))
            rows.append(
                {
                    "aggregator": name,
                    "start": STARTS[i].tolist(),
                    "end": [round(float(x[0]), 3), round(float(x[1]), 3)],
                    "losses": [round(float(v), 3) for v in losses[i]],
                    "mean_loss": round(float(losses[i].mean()), 3),
                    "distance_to_pareto_set": round(distance, 4),
                }
            )
    return rows


def plot_landscape(
    trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray, path: Path
) -> None:
    n = 300
    grid = np.linspace(-10, 10, n)
    X, Y = np.meshgrid(grid, grid)
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1))
    Z = toy_losses(points, scale).mean(dim=1).numpy().reshape(n, n)
    cols = 5
    rows = -(-len(trajectories) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(STARTS)))
    for ax, (name, traj) in zip(axes.flat, trajectories.items(), strict=False):
        ax.contour(X, Y, Z, levels=20, cmap="viridis", linewidths=0.7)
        ax.plot(curve[:, 0], curve[:, 1], color="0.5", linewidth=4, zorder=1)
        ax.plot(0, PARETO_X2, marker="*", color="k", markersize=9, zorder=5)
        for i in range(len(STARTS)):
            ax.plot(traj[:, i, 0], traj[:, i, 1], color=colors[i], linewidth=1.4, zorder=3)
            ax.plot(*traj[0, i], "o", color="k", markersize=4, zorder=4)
            ax.plot(*traj[-1, i], "x", color=colors[i], markersize=7, mew=2, zorder=6)
        ax.set_title(name)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(trajectories) :]:
        ax.axis("off")
    fig.suptitle(
        f"CAGrad toy{'' if scale == 1 else f' (loss 1 × {scale:g})'}: trajectories on the average"
        f" loss (grey: Pareto set, ★: its best average, ●: starts, ×: ends)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pareto(
    trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray, path: Path
) -> None:
    front = pareto_front(curve, scale)
    cols = 5
    rows = -(-len(trajectories) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(STARTS)))
    for ax, (name, traj) in zip(axes.flat, trajectories.items(), strict=False):
        ax.plot(front[:, 0], front[:, 1], color="0.5", linewidth=4, zorder=1)
        for i in range(len(STARTS)):
            path_losses = toy_losses(torch.as_tensor(traj[::50, i]), scale).numpy()
            ax.plot(path_losses[:, 0], path_losses[:, 1], color=colors[i], linewidth=1.2)
            ax.plot(*path_losses[0], "o", color="k", markersize=4)
            end = toy_losses(torch.as_tensor(traj[-1:, i]), scale).numpy()[0]
            ax.plot(*end, "x", color=colors[i], markersize=7, mew=2, zorder=6)
        ax.set_title(name)
        ax.set_xlabel("loss 1", fontsize=8)
        ax.set_ylabel("loss 2", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(trajectories) :]:
        ax.axis("off")
    fig.suptitle(
        f"CAGrad toy{'' if scale == 1 else f' (loss 1 × {scale:g})'} in loss space "
        f"(grey: Pareto front)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _run_one(job: tuple[str, int, float, torch.Tensor]) -> tuple[str, np.ndarray, np.ndarray]:
    name, steps, scale, starts = job
    torch.set_num_threads(1)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats: dict = {}
        trajectory, ends = run(name, steps, scale, starts, stats=stats)
    print(
        f"  {name:<13} {time.perf_counter() - started:6.1f} s, {len(starts)} starts, "
        f"{stats['fallbacks']} library fallbacks",
        file=sys.stderr,
        flush=True,
    )
    return name, trajectory, ends


def spread_table(spreads: dict[str, list[dict]], perturb: int, sigma: float) -> str:
    """The Markdown table of :func:`spread` rows: per start, the median mean loss [5%, 95%] and
    how many of the ``perturb`` runs end on the Pareto set."""
    starts = [f"({s[0]:g}, {s[1]:g})" for s in STARTS.tolist()]
    lines = [
        f"| aggregator | {' | '.join(starts)} | on the set |",
        "|---|" + "---|" * (len(starts) + 1),
    ]
    for name, rows in spreads.items():
        cells = [
            f"{r['mean_loss_median']:.2f} [{r['mean_loss_p5']:.2f}, {r['mean_loss_p95']:.2f}] "
            f"{r['on_set']}/{r['runs']}"
            for r in rows
        ]
        on = sum(r["on_set"] for r in rows)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {on}/{perturb * len(rows)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=35000, help="Adam steps per run")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier of loss 1")
    parser.add_argument("--only", default=None, help="comma-separated aggregators (default all)")
    parser.add_argument("--perturb", type=int, default=0, help="perturbed starts per start")
    parser.add_argument("--sigma", type=float, default=0.1, help="their standard deviation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument("--workers", type=int, default=1, help="processes (one per method)")
    parser.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--json", type=Path, default=ROOT / "analysis" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.only.split(",") if args.only else aggregators.names()
    suffix = "" if args.scale == 1 else f"_scale{args.scale:g}"
    starts = perturbed_starts(args.perturb, args.sigma, args.seed)
    jobs = [(name, args.steps, args.scale, starts) for name in names]
    started = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            done = {name: (traj, ends) for name, traj, ends in pool.imap(_run_one, jobs)}
    else:
        done = {name: (traj, ends) for name, traj, ends in map(_run_one, jobs)}
    trajectories = {name: done[name][0] for name in names}
    seconds = round(time.perf_counter() - started, 1)
    curve = pareto_set()
    table = end_table(trajectories, args.scale, curve)
    args.img.mkdir(parents=True, exist_ok=True)
    plot_landscape(trajectories, args.scale, curve, args.img / f"cagrad_toy_landscape{suffix}.png")
    plot_pareto(trajectories, args.scale, curve, args.img / f"cagrad_toy_pareto{suffix}.png")
    args.json.mkdir(parents=True, exist_ok=True)
    (args.json / f"cagrad_toy{suffix}.json").write_text(
        json.dumps({"steps": args.steps, "scale": args.scale, "runs": table}, indent=1)
    )
    print_end_table(trajectories, table, args)
    if args.perturb:
        spreads = {name: spread(done[name][1], args.perturb, args.scale, curve) for name in names}
        config = {"steps": args.steps, "scale": args.scale, "perturb": args.perturb}
        config |= {"sigma": args.sigma, "seed": args.seed, "on_set_within": ON_SET}
        config |= {"seconds": seconds, "workers": args.workers}
        (args.json / f"cagrad_toy_spread{suffix}.json").write_text(
            json.dumps(config | {"spread": spreads}, indent=1)
        )
        text = (
            f"CAGrad toy, scale {args.scale:g}, {args.steps} Adam steps (lr 1e-3), from "
            f"{args.perturb} starts around each published start (N(0, {args.sigma:g}²) per "
            f"coordinate, seed {args.seed}): median mean loss of the end points [5%, 95%], and "
            f"how many end on the Pareto set (within {ON_SET}); {seconds:.0f} s for all "
            f"methods and starts with {args.workers} worker(s)\n\n"
            + spread_table(spreads, args.perturb, args.sigma)
        )
        (args.json / f"cagrad_toy_spread{suffix}.txt").write_text(text + "\n")
        print("\n" + text)


def print_end_table(trajectories: dict[str, np.ndarray], table: list[dict], args) -> None:
    starts = [f"({s[0]:g}, {s[1]:g})" for s in STARTS.tolist()]
    print(
        f"\nCAGrad toy, scale {args.scale:g}, {args.steps} Adam steps (lr 1e-3): end point x of "
        f"each start; * = on the Pareto set (within {ON_SET})\n"
    )
    print("| aggregator | " + " | ".join(starts) + " | on the set | mean loss |")
    print("|---|" + "---|" * (len(starts) + 2))
    for name in trajectories:
        rows = [r for r in table if r["aggregator"] == name]
        marks = ["*" if r["distance_to_pareto_set"] < ON_SET else "" for r in rows]
        cells = [
            f"({r['end'][0]:.2f}, {r['end'][1]:.2f}){m}" for r, m in zip(rows, marks, strict=True)
        ]
        on = sum(r["distance_to_pareto_set"] < ON_SET for r in rows)
        mean = np.mean([r["mean_loss"] for r in rows])
        print(f"| {name} | " + " | ".join(cells) + f" | {on}/5 | {mean:.2f} |")


if __name__ == "__main__":
    main()
