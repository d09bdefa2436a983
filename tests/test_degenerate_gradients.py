"""Degenerate gradients (issue 21, item 6), by hypothesis, for every registered method and
k = 1..12 tasks: zero rows, duplicated rows, collinear rows, opposite (collinear, both signs)
rows, all rows zero and a single task, at scales 10^-12 .. 10^15, in float32 and float64.

Each structured case has a limit that the method's definition fixes in closed form (derived in
the comments below, computed here independently of the solvers); the result must be finite and
equal to it. Nash-MTL and MGDA report their solver status in ``info["solver_status"]``.
Loss weightings act on losses: the same cases are their losses (zero, duplicated, 10^-12 ..
10^15), and the gradient they back-propagate must be Σ w_i ∇L_i, finite.

``EXAMPLES`` is the number of hypothesis examples per method (docs/reliability.md cites it).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskgroup import aggregators

GRADIENT = [n for n in aggregators.names() if aggregators.get(n).kind == "gradient"]
LOSS = [n for n in aggregators.names() if aggregators.get(n).kind == "loss"]
EXAMPLES = 150  # hypothesis examples per method and property
CASES = ["zero_rows", "duplicated", "collinear", "opposite", "all_zero", "single"]
CAGRAD_C = 0.4  # the default c: k = 1 gives (1 + c) g / (1 + c²)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def degenerate(draw):
    """``(case, G [k, d] float64 before scaling, scale, dtype, v)``; v is the common direction
    of the collinear and opposite cases (else ``None``)."""
    case = draw(st.sampled_from(CASES))
    k = 1 if case == "single" else draw(st.integers(1 if case == "all_zero" else 2, 12))
    d = draw(st.integers(1, 16))
    seed = draw(st.integers(0, 2**16))
    scale = 10.0 ** draw(st.integers(-12, 15))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(k, d, generator=g, dtype=torch.float64)
    v = None
    if case == "zero_rows":  # at least one zero row and one non-zero row
        zero = torch.rand(k, generator=g) < 0.5
        zero[0], zero[-1] = True, False
        R[zero] = 0.0
    elif case == "duplicated":  # rows drawn from a few distinct ones, each used at least once
        distinct = draw(st.integers(1, k - 1))
        index = torch.cat([torch.arange(distinct), torch.randint(0, distinct, (k - distinct,))])
        R = R[:distinct][index[torch.randperm(k, generator=g)]]
    elif case in ("collinear", "opposite"):
        v = R[0] / R[0].norm()
        c = 0.1 + 10 * torch.rand(k, generator=g, dtype=torch.float64)
        if case == "opposite":  # both signs present
            c = c * torch.where(torch.arange(k) % 2 == 0, 1.0, -1.0).double()
        R = c[:, None] * v
    elif case == "all_zero":
        R = torch.zeros(k, d, dtype=torch.float64)
    return case, R, scale, dtype, v


def fresh(name: str):
    return aggregators.get(name)


def run(name: str, G: torch.Tensor):
    agg = fresh(name)
    if name == "transference":  # scores candidates by a lookahead: a fixed, finite one here
        k = G.shape[0]

        def evaluate(D):
            return (D.double() ** 2).sum(dim=1, keepdim=True).expand(len(D), k).float()

        context = aggregators.TransferenceContext(evaluate, torch.ones(k))
        return agg.aggregate(G, context=context)
    return agg.aggregate(G)


def tolerance(dtype) -> float:
    return 1e-9 if dtype == torch.float64 else 2e-4


def assert_close(actual: torch.Tensor, expected: torch.Tensor, unit: float, dtype) -> None:
    """``actual == expected`` up to the dtype's rounding, relative to ``unit`` (the scale of
    the inputs that ``expected`` is made of)."""
    error = float((actual.double() - expected.double()).norm())
    assert error <= tolerance(dtype) * unit, (error, unit, actual, expected)


def unique_rows(G: torch.Tensor) -> torch.Tensor:
    return torch.unique(G, dim=0)


def limit(name: str, case: str, given: torch.Tensor, v: torch.Tensor | None):
    """The direction the method's definition gives on this case (float64), or ``None`` where
    only the general properties are checked. ``given`` is the scaled input in its dtype."""
    G = given.double()
    k = G.shape[0]
    mean = G.mean(dim=0)
    if case == "all_zero":
        return torch.zeros_like(mean)
    if case == "single":
        g = G[0]
        if name in ("nash_mtl", "fairgrad"):  # w = 1/‖g‖: the unit gradient (norm 1 = max_norm)
            return g / g.norm()
        return g * ((1 + CAGRAD_C) / (1 + CAGRAD_C**2) if name == "cagrad" else 1.0)
    if name == "mean":
        return mean
    if case in ("collinear", "opposite"):
        c = G @ v  # G = c vᵀ
        positive = bool((c > 0).all())
        if name == "aligned_mtl":  # rank 1: B = ĉĉᵀ, d = Gᵀ ĉĉᵀ 1/k = v Σc / k, the mean
            return mean
        if name == "mgda":  # min-norm point of the hull: the shortest row, or 0 across 0
            return G[int(c.abs().argmin())] if positive else torch.zeros_like(mean)
        if name in ("nash_mtl", "fairgrad"):  # u_i Σu = 1: u_i = 1/√k, d = √k v̂ clipped to 1
            return v * min(math.sqrt(k), 1.0) if positive else torch.zeros_like(mean)
        if name in ("pcgrad", "graddrop"):  # nothing conflicts: the sum; else all cancel
            return (
                G.sum(dim=0) if positive else (torch.zeros_like(mean) if name == "pcgrad" else None)
            )
        if name == "imtl_g" and not positive:  # equal projections on v̂ and −v̂: d ⊥ v, d ∈ span v
            return torch.zeros_like(mean)
        if name == "cagrad":
            return cagrad_on_a_line(c, v)
        return None
    if case == "zero_rows":
        if name == "mgda":  # 0 is a row, so the min-norm point of the hull is 0
            return torch.zeros_like(mean)
        if name in ("nash_mtl", "fairgrad", "imtl_g", "graddrop"):  # zero rows take no part
            nonzero = given[given.abs().sum(dim=1) > 0]  # (GradDrop: the same U draws)
            return run(name, nonzero).direction.double()
        return None
    if case == "duplicated" and name in ("mgda", "imtl_g"):  # the same hull / constraints
        unique = unique_rows(given)
        if name == "imtl_g" and torch.linalg.matrix_rank(unique.double()) < len(unique):
            return None  # dependent rows (e.g. one coordinate): equal projections hold for a
            # whole family of d, IMTL-G has no defined limit to compare with (as on a line)
        return run(name, unique).direction.double()
    return None


def cagrad_on_a_line(c: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """CAGrad for G = c vᵀ (‖v‖ = 1), from its dual: g_w = s v with s = w·c ∈ [min c, max c],
    g_0 = m v (m = mean c), minimise F(s) = s m + ρ|s| (ρ = C|m|), piecewise linear, so at an
    end of the interval or at 0; then d = (g_0 + ρ g_w / ‖g_w‖) / (1 + C²) (g_w = 0: g_0)."""
    m = float(c.mean())
    rho = CAGRAD_C * abs(m)
    low, high = float(c.min()), float(c.max())
    candidates = [low, high] + ([0.0] if low < 0 < high else [])
    best = min(candidates, key=lambda s: s * m + rho * abs(s))
    step = m + (rho * math.copysign(1.0, best) if best != 0 else 0.0)
    return v * step / (1 + CAGRAD_C**2)


def check_general(name: str, G: torch.Tensor, result, dtype) -> None:
    """Properties every input must keep: finite; d = Gᵀw; the solver status of MGDA and
    Nash-MTL reported."""
    d = result.direction
    assert bool(torch.isfinite(d).all()), d
    unit = float(G.double().norm()) if name not in ("nash_mtl", "fairgrad") else 1.0
    if result.weights is not None and name != "transference":
        w = torch.as_tensor(result.weights).double()
        assert bool(torch.isfinite(w).all())
        if name not in ("nash_mtl", "fairgrad"):  # (their w is 1/‖g‖-scaled: checked below)
            assert_close(d, w @ G.double(), unit, dtype)
    if name in ("mgda", "nash_mtl", "fairgrad"):
        status = result.info["solver_status"]
        assert status == "optimal" or status.startswith("defined limit:"), status


@pytest.mark.parametrize("name", GRADIENT)
@SETTINGS
@given(example=degenerate())
def test_degenerate_gradients_give_the_defined_limit(name, example):
    case, R, scale, dtype, v = example
    G = (R * scale).to(dtype)
    result = run(name, G)
    check_general(name, G, result, dtype)
    expected = limit(name, case, G, v)
    if expected is not None:
        unit = 1.0 if name in ("nash_mtl", "fairgrad") else float(G.double().norm())
        assert_close(result.direction, expected, max(unit, 1e-300), dtype)


@pytest.mark.parametrize("name", LOSS)
@SETTINGS
@given(example=degenerate(), losses_seed=st.integers(0, 2**16))
def test_loss_weightings_on_degenerate_losses_back_propagate_the_weighted_gradient(
    name, example, losses_seed
):
    """Losses L_i(θ) = a_i + g_i·θ at θ = 0, with a_i from the case (zero, duplicated, 10^-12
    .. 10^15): the gradient written is Σ w_i g_i with the weights returned, finite."""
    case, R, scale, dtype, _ = example
    G = (R * scale).to(dtype)
    k = G.shape[0]
    g = torch.Generator().manual_seed(losses_seed)
    a = {
        "all_zero": torch.zeros(k),
        "zero_rows": (R.abs().sum(dim=1) > 0).float(),
        "duplicated": torch.ones(k),
    }.get(case, torch.rand(k, generator=g) + 0.5)
    a = (a.double() * scale).to(dtype)
    theta = torch.zeros(G.shape[1], dtype=dtype, requires_grad=True)
    losses = a + G @ theta
    weighting = fresh(name)
    result = weighting.backward(list(losses.unbind()), [theta])
    assert bool(torch.isfinite(result.weights).all()) and bool(torch.isfinite(theta.grad).all())
    expected = result.weights.double() @ G.double()
    if weighting.max_norm > 0:  # clip_grad_norm_'s definition: max_norm / (norm + 1e-6)
        expected = expected * min(1.0, weighting.max_norm / (float(expected.norm()) + 1e-6))
    assert_close(theta.grad, expected, float(G.double().norm()) + 1e-300, dtype)


def test_a_nan_gradient_is_a_clear_error_for_every_aggregator():
    G = torch.ones(3, 4)
    G[1, 2] = float("nan")
    for name in GRADIENT:
        with pytest.raises(ValueError, match=r"not finite \(NaN or inf\) for task\(s\) 1"):
            run(name, G)
