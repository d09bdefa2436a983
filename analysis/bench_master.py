"""Benchmark: column generation over the full table at central prices vs at a vertex's.

``bounds.lp_bound_table`` (the LP bound of ``exact``, ``milp`` and the heuristics up to 22 tasks)
prices at the duals of the master LP solved by interior point without crossover. This times it
against the same loop with the simplex's vertex duals (``bounds.master_lp``, what it used before)
on 22-task matrices of ``bench_grouping.py``, budget 4, one thread, in the same run: rounds,
seconds of the column generation alone, seconds of ``select_groups(method="exact")``, and the
bound (the LP optimum either way).

Run from the repository root (about 4 minutes)::

    python analysis/bench_master.py
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from bench_grouping import BUDGET, matrix
from threadpoolctl import threadpool_limits

import taskgroup as tg
from taskgroup.grouping import bounds, exact

INSTANCES = [
    ("measured", 0),
    ("measured", 1),
    ("planted", 0),
    ("planted-2B", 0),
    ("random", 0),
]
N = 22


def vertex_master(cover: np.ndarray, weights: np.ndarray, budget: int):
    return bounds.master_lp(cover, weights, budget)[:3]


def timed(values: np.ndarray, table: np.ndarray) -> dict:
    started = time.perf_counter()
    lp = bounds.lp_bound_table(table, N, BUDGET)
    generation = time.perf_counter() - started
    started = time.perf_counter()
    grouping = tg.select_groups(values, BUDGET, method="exact")
    return {
        "rounds": lp.rounds,
        "generation": generation,
        "exact": time.perf_counter() - started,
        "bound": lp.value,
        "optimal": grouping.optimal,
    }


def main() -> None:
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too: its threads oversubscribe shared cores
    print(f"python {platform.python_version()}, numpy {np.__version__}, n = {N}, budget {BUDGET}")
    print(
        "\n| matrix | seed | rounds vertex → central | column generation (s) | ratio "
        "| exact (s) | ratio | same bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, seed in INSTANCES:
        values = matrix(kind, N, seed)
        table = exact.served_set_values(values, partition=False, singleton_score=None)
        with mock.patch.object(bounds, "central_master", vertex_master):
            vertex = timed(values, table)
        central = timed(values, table)
        assert vertex["optimal"] and central["optimal"]
        same = np.isclose(vertex["bound"], central["bound"], rtol=1e-9)
        print(
            f"| {kind} | {seed} | {vertex['rounds']} → {central['rounds']} "
            f"| {vertex['generation']:.1f} → {central['generation']:.1f} "
            f"| {vertex['generation'] / central['generation']:.1f}× "
            f"| {vertex['exact']:.1f} → {central['exact']:.1f} "
            f"| {vertex['exact'] / central['exact']:.1f}× | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
