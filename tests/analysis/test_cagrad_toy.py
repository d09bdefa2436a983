"""``analysis/cagrad_toy.py``'s spread over perturbed starts: the starts are seeded and laid out
as documented, the batched run of all starts equals the sequential one (one library instance per
start) bit for bit or to 1e-12, its k = 2 closed forms equal the library's solvers step by step
and hand degenerate Gramians to the library, a published start's run is the same with or without
perturbed company, and the spread's statistics are those of the perturbed runs' end points."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import cagrad_toy as toy

from taskgroup import aggregators

# the methods whose batched update is computed with exactly the library's operations
BIT_EXACT = {"mean", "pcgrad", "cagrad", "aligned_mtl", "graddrop", "transference"}
BIT_EXACT |= {"uw", "dwa", "rlw", "famo"}


def test_perturbed_starts_follow_the_published_ones_in_blocks():
    starts = toy.perturbed_starts(3, 0.1, seed=7)
    assert starts.shape == (5 + 5 * 3, 2)
    assert torch.equal(starts[:5], toy.STARTS)
    noise = np.random.default_rng(7).normal(0.0, 0.1, size=(5, 3, 2))
    for s in range(5):
        block = starts[5 + 3 * s : 5 + 3 * (s + 1)].numpy()
        np.testing.assert_allclose(block, toy.STARTS[s].numpy() + noise[s], rtol=0, atol=1e-15)
    assert torch.equal(toy.perturbed_starts(3, 0.1, seed=7), starts)
    assert not torch.equal(toy.perturbed_starts(3, 0.1, seed=8), starts)
    assert torch.equal(toy.perturbed_starts(0, 0.1, seed=7), toy.STARTS)


@pytest.mark.parametrize("name", aggregators.names())
def test_the_batched_run_equals_one_library_instance_per_start(name):
    # from (0, 0) the first coordinate of the update is rounding noise, which Adam's normalised
    # step amplifies to ±lr: that start and its neighbours are left out of the comparison
    starts = toy.perturbed_starts(2, 0.1, seed=0)[[0, 2, 3, 4, 5, 10, 12, 14]]
    batched, batched_ends = toy.run(name, 40, 1.0, starts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequential, sequential_ends = toy.run_sequential(name, 40, 1.0, starts)
    if name in BIT_EXACT:
        np.testing.assert_array_equal(batched, sequential)
        np.testing.assert_array_equal(batched_ends, sequential_ends)
    else:
        np.testing.assert_allclose(batched, sequential, rtol=0, atol=1e-12)
        np.testing.assert_allclose(batched_ends, sequential_ends, rtol=0, atol=1e-12)
    assert not np.allclose(batched_ends, starts.numpy(), atol=1e-3)  # the points moved


@pytest.mark.parametrize("name", sorted(toy.GRAMIAN_WEIGHTS))
def test_closed_forms_equal_the_library_solvers_and_hand_it_degenerate_gramians(name):
    rng = np.random.default_rng(3)
    G = torch.as_tensor(rng.normal(size=(40, 2, 2)) * 10.0 ** rng.uniform(-3, 3, (40, 2, 1)))
    G[0, 1] = 0.0  # a zero gradient
    G[1, 1] = -2.5 * G[1, 0]  # opposite gradients: Pareto-stationary
    G[2, 1] = 3.0 * G[2, 0]  # parallel gradients: a singular Gramian
    G[3, 1] = G[3, 0]  # identical gradients
    G[4, 1] = -G[4, 0]  # g₀ = 0: CAGrad's radius ρ is 0, the mean
    update = toy.GramianUpdate(name, 1.0)
    batched = update.directions(G)
    options = toy.method_options(name, 1.0)
    library = torch.stack([aggregators.get(name, **options)(G[i]) for i in range(len(G))])
    # Nash-MTL's Newton stops at a relative residual of 1e-12, so its weights are that close
    tol = 1e-10 if name in ("nash_mtl", "fairgrad") else 1e-12
    error = (batched - library).norm(dim=1)
    scale = G.norm(dim=2).sum(dim=1)  # a d = 0 answer is exact up to the gradients' rounding
    assert bool((error <= tol * library.norm(dim=1) + 1e-15 * scale).all())
    K = toy.gramians(G)
    weights, regular = toy.GRAMIAN_WEIGHTS[name](K, update.c, G.numpy())
    assert update.fallbacks == int((~regular).sum())
    # the library's degenerate cases (zero row; opposite: Pareto-stationary; parallel: rank 1)
    # (opposite gradients are in the closed forms of IMTL-G and Nash-MTL: d = 0 at exact opposition)
    library_cases = {"mean": [], "imtl_g": [0, 2], "aligned_mtl": [0, 1, 2, 4]}
    library_cases |= {"nash_mtl": [0], "fairgrad": [0]}
    assert not regular[library_cases.get(name, [0])].any()
    a, b, c = K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]
    assert regular[3:][(a * c - b * b > 1e-6 * (a + c) ** 2)[3:]].all()
    if name == "cagrad":  # its closed form covers g₀ = 0
        assert regular[4]
    if name in ("nash_mtl", "fairgrad"):  # the closed form solves Kw = 1/w to rounding
        solved = regular & (weights > 0).all(axis=1)
        assert not solved[[1, 4]].any()  # opposite: d = 0, as the library's
        w, Kr = weights[solved], K[solved]
        residual = np.abs(np.einsum("nij,nj->ni", Kr, w) - 1.0 / w)
        rounding = np.einsum("nij,nj->ni", np.abs(Kr), w) + 1.0 / w  # of evaluating it
        assert (residual <= 1e-12 * rounding).all()


@pytest.mark.parametrize("name", ["imtl_g", "nash_mtl"])
def test_near_opposite_gradients_keep_the_closed_form_exact(name):
    # 1 + cos(g₁, g₂) from 1e-3 to 1e-9: the weights equal an extended-precision evaluation of
    # the same formula (IMTL-G: ‖g₂‖, ‖g₁‖ normalised; Nash-MTL: 1/√(a + b√(a/c)), which loses
    # only ε_long/(1 + cos) ≈ 1e-10 there), with no library fallback
    rng = np.random.default_rng(5)
    opposition = 10.0 ** rng.uniform(-9, -3, 64)
    theta = rng.uniform(0, 2 * np.pi, 64)
    angle = theta + np.pi - np.sqrt(2 * opposition)
    norms = 10.0 ** rng.uniform(-2, 2, (64, 2))
    G = np.stack(
        [
            norms[:, :1] * np.stack([np.cos(theta), np.sin(theta)], axis=1),
            norms[:, 1:] * np.stack([np.cos(angle), np.sin(angle)], axis=1),
        ],
        axis=1,
    )
    weights, regular = toy.GRAMIAN_WEIGHTS[name](toy.gramians(torch.as_tensor(G)), 0.0, G)
    assert regular.all()
    L = G.astype(np.longdouble)
    a, b, c = (L[:, 0] ** 2).sum(1), (L[:, 0] * L[:, 1]).sum(1), (L[:, 1] ** 2).sum(1)
    if name == "imtl_g":
        exact = np.stack([np.sqrt(c), np.sqrt(a)], axis=1) / (np.sqrt(a) + np.sqrt(c))[:, None]
    else:
        exact = np.stack(
            [1 / np.sqrt(a + b * np.sqrt(a / c)), 1 / np.sqrt(c + b * np.sqrt(c / a))], 1
        )
    np.testing.assert_allclose(weights, exact.astype(float), rtol=1e-8)
    mild = opposition > 1e-5  # where the library's solvers are accurate: the same directions
    update = toy.GramianUpdate(name, 1.0)
    batched = update.directions(torch.as_tensor(G[mild]))
    library = torch.stack([aggregators.get(name)(torch.as_tensor(g)) for g in G[mild]])
    torch.testing.assert_close(batched, library, rtol=1e-9, atol=0)
    assert update.fallbacks == 0


@pytest.mark.parametrize("name", ["pcgrad", "nash_mtl", "famo"])
def test_a_published_start_runs_the_same_among_perturbed_ones(name):
    alone, alone_ends = toy.run(name, 30, 1.0)
    starts = toy.perturbed_starts(2, 0.1, seed=0)
    together, ends = toy.run(name, 30, 1.0, starts)
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(ends[:5], alone_ends)
    assert ends.shape == (15, 2) and not np.allclose(ends[5:7], ends[:1])


def test_the_spread_counts_and_percentiles_the_perturbed_ends_only():
    curve = toy.pareto_set(201)
    perturb = 4
    rng = np.random.default_rng(0)
    ends = np.concatenate([np.full((5, 2), 100.0), rng.uniform(-9, 9, size=(5 * perturb, 2))])
    ends[5:9] = curve[[10, 50, 100, 150]]  # start 0's four runs end on the set
    ends[9] = curve[100] + [0.0, 0.5]  # start 1's first run ends 0.5 above it
    rows = toy.spread(ends, perturb, 1.0, curve)
    assert rows[0]["on_set"] == 4 and rows[1]["on_set"] == 0
    for s, row in enumerate(rows):
        block = ends[5 + s * perturb : 5 + (s + 1) * perturb]
        losses = [float(toy.toy_losses(torch.tensor(p[None]), 1.0).mean()) for p in block]
        assert row["runs"] == perturb and row["start"] == toy.STARTS[s].tolist()
        assert row["on_set"] == _on(block, curve)
        median = (sorted(losses)[1] + sorted(losses)[2]) / 2  # the median of four
        assert row["mean_loss_median"] == pytest.approx(median, abs=6e-4)
        # numpy's linear 5% of four values: 0.15 of the way from the smallest to the next
        low = sorted(losses)[0] + 0.15 * (sorted(losses)[1] - sorted(losses)[0])
        assert row["mean_loss_p5"] == pytest.approx(low, abs=6e-4)
        assert row["mean_loss_p5"] <= row["mean_loss_median"] <= row["mean_loss_p95"]
    table = toy.spread_table({"mean": rows}, perturb, 0.1)
    assert table.splitlines()[2].startswith(f"| mean | {rows[0]['mean_loss_median']:.2f} [")
    assert table.splitlines()[2].endswith(f"| {sum(r['on_set'] for r in rows)}/20 |")


def _on(points: np.ndarray, curve: np.ndarray) -> int:
    """How many points lie within ``ON_SET`` of the sampled set (brute force, one by one)."""
    count = 0
    for p in points:
        nearest = min(float(np.hypot(*(p - q))) for q in curve)
        count += nearest < toy.ON_SET
    return count


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_closed_form_gradients_equal_autograd(scale):
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(-11, 11, (2000, 2)))
    kinks = torch.tensor([[0.0, 0.0], [-7.0, 0.0], [3.0, 0.0], [5.0, 1e-300]], dtype=torch.float64)
    x = torch.cat([x, toy.STARTS, kinks])  # x2 = 0: where clamp(tanh(±x2/2), 0) switches
    losses, G = toy.losses_and_gradients(x, scale)
    assert torch.equal(losses, toy.toy_losses(x, scale))
    reference = toy.autograd_gradients(x, scale)
    assert float((G - reference).abs().max()) <= 1e-13 * (1 + float(reference.abs().max()))
    assert bool(((G - reference).abs() <= 1e-12 * reference.abs() + 1e-14).all())


def test_the_docs_toy_tables_are_the_committed_spreads():
    """docs/aggregators.md's two toy tables (losses as published, then loss 1 × 0.1) are
    :func:`spread_table` of the committed ``cagrad_toy_spread*.json``, cell for cell."""
    import json

    root = Path(__file__).resolve().parents[2]
    lines = (root / "docs" / "aggregators.md").read_text().splitlines()
    header = toy.spread_table({}, 20, 0.1).splitlines()[0]
    starts = [i for i, line in enumerate(lines) if line == header]
    assert len(starts) == 2, "docs/aggregators.md should hold two spread tables"
    for start, suffix in zip(starts, ["", "_scale0.1"], strict=True):
        data = json.loads(
            (root / "analysis" / "results" / f"cagrad_toy_spread{suffix}.json").read_text()
        )
        expected = toy.spread_table(data["spread"], data["perturb"], data["sigma"]).splitlines()
        assert lines[start : start + len(expected)] == expected
        assert data["steps"] == 35000 and data["perturb"] == 20
