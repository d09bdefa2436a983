"""``analysis/cagrad_toy.py``'s spread over perturbed starts: the starts are seeded and laid out
as documented, a published start's run is the same with or without perturbed company, and the
spread's statistics are those of the perturbed runs' end points."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import cagrad_toy as toy


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
