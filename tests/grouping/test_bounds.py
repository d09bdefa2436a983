"""The LP bound with exact pricing (``bounds.lp_bound_table``) against the whole LP at once."""

import numpy as np
import pytest
from scipy.optimize import linprog

from taskgroup.grouping import bounds, exact
from tests.grouping.conftest import random_matrix


@pytest.mark.parametrize("n, seed, kind", [(8, 1, "normal"), (8, 2, "planted"), (7, 3, "ties")])
@pytest.mark.parametrize("budget", [1, 2, 4])
def test_lp_bound_table_is_the_lp_over_every_served_set(n, seed, kind, budget):
    values = random_matrix(n, seed, kind)
    w = exact.served_set_values(values, partition=False, singleton_score=None)
    masks = [m for m in range(1, 1 << n) if np.isfinite(w[m])]
    cover = np.array([[m >> j & 1 for m in masks] for j in range(n)], dtype=float)
    # every column at once, by simplex: no column generation, no interior point
    whole = linprog(
        -w[masks],
        A_ub=np.ones((1, len(masks))),
        b_ub=[budget],
        A_eq=cover,
        b_eq=np.ones(n),
        method="highs-ds",
    )
    lp = bounds.lp_bound_table(w, n, budget)
    assert lp.value == pytest.approx(-whole.fun, rel=1e-9, abs=1e-12)
    # a bound by its own prices: π(P) + λ ≥ w(P) for every served set P
    assert (lp.pi @ cover + lp.lam >= w[masks] - 1e-12).all()
    assert lp.value == pytest.approx(lp.pi.sum() + budget * lp.lam, rel=1e-12)


def test_central_master_has_the_vertex_optimum_and_central_duals():
    values = random_matrix(8, 4, "planted")
    w = exact.served_set_values(values, partition=False, singleton_score=None)
    masks = [m for m in range(1, 1 << 8) if np.isfinite(w[m])]
    cover = bounds.cover_of(masks, 8)
    value, pi, lam = bounds.central_master(cover, w[masks], 3)
    vertex_value, *_ = bounds.master_lp(cover, w[masks], 3)
    assert value == pytest.approx(vertex_value, rel=1e-10)
    # dual feasible and optimal: Σ π + 3 λ is the LP value and no column prices out
    assert (pi @ cover + lam >= w[masks] - 1e-10 * np.abs(w[masks]).max()).all()
    assert pi.sum() + 3 * lam == pytest.approx(value, rel=1e-10)
