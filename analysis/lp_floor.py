"""How close to the score can any certificate from the set-partitioning LP get at 40 tasks?

Every bound of ``tg.grouping`` beyond 20 tasks (the default one and ``tg.grouping.certify``) is
a dual bound of the LP relaxation of the served-set partition problem (docs/grouping.md), so none
can go below that LP's optimum. This script raises a floor under that optimum: column generation
over the served sets, priced by the default bound's greedy growth plus a local search per set
(add, drop or swap one task, maximising w(P) − π(P)) from random sets and from the master's
support, alternating vertex and interior-point prices, until no column with positive reduced
value is found. The restricted master's value is then at most the LP optimum: ``floor gap`` =
(floor − score) / floor is the least gap an LP certificate could prove for ``auto``'s grouping.
The MILP over the same columns (HiGHS) says whether they contain a better grouping.

Where the floor is above the score, a second table asks what the semidefinite pricing of
``tg.grouping.certify`` would prove at the floor's own (interior-point, near-optimal) prices:
the largest per-size relaxation bound against the best reduced value that local search finds
from ``PRICING_STARTS`` random sets, and the certificate Σ π + B · (that bound) it gives.

Run from the repository root (about 6 minutes)::

    python analysis/lp_floor.py > analysis/results/lp_floor.txt
"""

from __future__ import annotations

import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from bench_certify import INSTANCES
from bench_grouping import BUDGET, matrix

import taskgroup as tg
from taskgroup.grouping import heuristics, milp
from taskgroup.grouping.bounds import central_master, cover_of, grow_columns, master_lp
from taskgroup.grouping.certificate import SizeRelaxation
from taskgroup.grouping.objective import served_masks

RANDOM_STARTS = 20
PRICING_STARTS = 300
SECONDS = 300.0


def improve_set(sets: heuristics.ServedSets, pi: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Best-improvement local search on one served set: add, drop or swap one task while
    w(P) − π(P) rises. ``member`` [n] bool."""
    n = sets.n
    current = float(sets.rows(member[None])[0] - pi @ member)
    while True:
        flips = np.repeat(member[None], n, axis=0)
        flips[np.arange(n), np.arange(n)] ^= True
        inside, outside = np.flatnonzero(member), np.flatnonzero(~member)
        a, b = np.repeat(inside, len(outside)), np.tile(outside, len(inside))
        swaps = np.repeat(member[None], len(a), axis=0)
        swaps[np.arange(len(a)), a] = False
        swaps[np.arange(len(a)), b] = True
        candidates = np.vstack([flips, swaps])
        candidates = candidates[candidates.any(axis=1)]
        reduced = sets.rows(candidates) - candidates @ pi
        best = int(np.argmax(reduced))
        if not reduced[best] > current + sets.tol:
            return member
        member, current = candidates[best], float(reduced[best])


def floor(kind: str, n: int, seed: int) -> dict:
    values = matrix(kind, n, seed)
    grouping = tg.select_groups(values, BUDGET)
    sets = heuristics.ServedSets(values, partition=False, singleton_score=None)
    bound = heuristics.upper_bound(sets, BUDGET, served_masks(grouping), time_limit=3.0)
    weights = dict(bound.weights or {})
    columns = [c for c in bound.columns if math.isfinite(weights.setdefault(c, sets.of(c)))]
    rng = np.random.default_rng(seed)
    started, rounds, value = time.perf_counter(), 0, -math.inf
    while time.perf_counter() - started < SECONDS:
        rounds += 1
        worth = np.array([weights[c] for c in columns])
        value, pi, lam, z = master_lp(cover_of(columns, n), worth, BUDGET)
        if rounds % 2 == 0:  # central prices find other columns than a vertex's
            _, pi, lam = central_master(cover_of(columns, n), worth, BUDGET)
        found = set(grow_columns(values, pi, lam + sets.tol, sets.rows, keep=4 * n))
        starts = [rng.random(n) < rng.uniform(0.1, 0.5) for _ in range(RANDOM_STARTS)]
        starts += [sets.member([columns[c]])[0] for c in np.flatnonzero(z > 1e-9)]
        for start in starts:
            if start.any():
                member = improve_set(sets, pi, start)
                if sets.rows(member[None])[0] - pi @ member > lam + sets.tol:
                    found.add(sum(1 << int(j) for j in np.flatnonzero(member)))
        new = [c for c in found if c not in weights]
        new = [c for c in new if math.isfinite(weights.setdefault(c, sets.of(c)))]
        if not new:
            break
        columns += new
    model = milp.SetPartitionModel(columns, np.array([weights[c] for c in columns]), n)
    chosen, _, _ = model.solve(BUDGET, 120.0)
    return {
        "kind": kind,
        "n": n,
        "seed": seed,
        "score": grouping.score,
        "floor": value,
        "gap": (value - grouping.score) / abs(value),
        "columns": len(columns),
        "rounds": rounds,
        "seconds": time.perf_counter() - started,
        "converged": not new,
        "milp": sets.total(chosen),
        "central_prices": central_master(
            cover_of(columns, n), np.array([weights[c] for c in columns]), BUDGET
        )[1],
    }


def pricing_gap(kind: str, n: int, seed: int, pi: np.ndarray) -> dict:
    """At prices ``pi``: the best reduced value w(P) − π(P) local search finds, and the largest
    semidefinite bound on it over group sizes (computed on Z / max |Z| as ``certify`` does)."""
    values = matrix(kind, n, seed)
    sets = heuristics.ServedSets(values, partition=False, singleton_score=None)
    rng = np.random.default_rng(seed)
    found = -math.inf
    for _ in range(PRICING_STARTS):
        member = improve_set(sets, pi, rng.random(n) < rng.uniform(0.05, 0.6))
        found = max(found, float(sets.rows(member[None])[0] - pi @ member))
    scale = float(np.abs(values).max())
    by_size = [
        SizeRelaxation(n, k, False).solve(values / scale, pi / scale)[0] * scale
        for k in range(2, n + 1)
    ]
    top = int(np.argmax(by_size))
    return {"found": found, "relaxed": by_size[top], "size": top + 2, "sum": float(pi.sum())}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print(f"python {platform.python_version()}, numpy {np.__version__}, budget {BUDGET}")
    print(
        "| matrix | n | seed | auto's score | LP floor | floor gap | MILP over the columns "
        "| columns | rounds | seconds | pricing exhausted |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for kind, n, seed in INSTANCES:
        r = floor(kind, n, seed)
        rows.append(r)
        print(
            f"| {kind} | {n} | {seed} | {r['score']:.6g} | {r['floor']:.6g} | "
            f"{max(0.0, 100 * r['gap']):.2f}% | {r['milp']:.6g} | {r['columns']} | {r['rounds']} | "
            f"{r['seconds']:.0f} | {'yes' if r['converged'] else 'no'} |",
            flush=True,
        )
    print(
        "\nPricing at the floor's interior-point prices: best reduced value found, the largest "
        "semidefinite bound (size), and the certificate they give\n"
    )
    print(
        "| matrix | n | seed | best found | relaxation bound | size | relaxation error "
        "| certificate | its gap |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["gap"] <= 1e-3:
            continue
        p = pricing_gap(r["kind"], r["n"], r["seed"], r["central_prices"])
        certificate = p["sum"] + BUDGET * max(0.0, p["relaxed"])
        print(
            f"| {r['kind']} | {r['n']} | {r['seed']} | {p['found']:.5g} | {p['relaxed']:.5g} | "
            f"{p['size']} | {100 * (p['relaxed'] - p['found']) / abs(p['found']):.1f}% | "
            f"{certificate:.5g} | {100 * (certificate - r['score']) / abs(certificate):.2f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
