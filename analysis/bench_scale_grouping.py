"""Benchmark: ``select_groups(..., method="auto")`` at 40, 100 and 200 tasks, and affinity plus
grouping end to end on 100 planted tasks (issue 20, item 5).

Matrices (``planted-like``): G = 6 hidden groups of near-equal size, tasks shuffled,
Z = 0.01 · (+1 within a group, −0.5 across, plus N(0, σ²) noise), σ = 0.5 (``noise 0.5``) and
σ = 1.0 (``noise 1.0``, at B = 6 and 10 only); seed 0. For every n and budget B = 2…10 it
records ``auto``'s wall time (its default 60 s limit), the score, the bound it reports, its gap
(bound − score) / |bound|, which start won, which stages its time limit cut, and the adjusted Rand
index of the tasks' serving groups against the hidden groups (below B = 6 merging is forced, so
recovery cannot be complete there). Up to 40 tasks ``auto`` is the earlier path (exact up to
22 tasks, else heuristics and price-and-branch); beyond, the deadline-driven one.

End to end (``--end-to-end``): ``planted`` with 10 groups × 10 tasks, ``conflict=1`` (the most
anti-aligned groups), ``latent=16``, the benchmark's default schedule (600 Adam steps, a
measurement every 5), ``tg.measure_affinity`` with the Adam lookahead (the default) and with the
gradient cosine, then ``tg.select_groups(A, 10)``; seconds of each part and the ARI against the
planted groups.

Everything runs on one thread (torch and BLAS); run it under ``nice`` on the 2-core machine::

    python analysis/bench_scale_grouping.py [--out analysis/results/bench_scale_grouping.txt]
    python analysis/bench_scale_grouping.py --end-to-end [--seeds 0 1 2] [--signals cosine]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

import taskgroup as tg
from taskgroup.data import planted

HIDDEN = 6
SIZES = (40, 100, 200)
BUDGETS = range(2, 11)


def planted_like(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(Z [n, n], hidden labels [n])``: HIDDEN groups, +1 within, −0.5 across, noise, · 0.01."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % HIDDEN)
    same = labels[:, None] == labels[None, :]
    return 0.01 * (np.where(same, 1.0, -0.5) + noise * rng.normal(size=(n, n))), labels


def ari(grouping: tg.Grouping, labels) -> float:
    return adjusted_rand_score(list(labels), [grouping.serves[t] for t in grouping.tasks])


def scale_rows(noise: float, budgets) -> list[str]:
    rows = []
    for n in SIZES:
        values, labels = planted_like(n, noise)
        for budget in budgets:
            started = time.perf_counter()
            g = tg.select_groups(values, budget)
            seconds = time.perf_counter() - started
            cut = g.info.get("cut_by_time_limit") or []
            rows.append(
                f"{noise:5.1f} {n:4d} {budget:3d} {seconds:7.1f} {g.score:9.5f} {g.bound:9.5f} "
                f"{100 * g.gap:6.2f}% {ari(g, labels):5.3f}  {g.method:<16} "
                f"{'; '.join(cut) or '-'}"
            )
            print(rows[-1], flush=True)
    return rows


def scale_table() -> list[str]:
    head = [
        f"{'noise':>5} {'n':>4} {'B':>3} {'seconds':>7} {'score':>9} {'bound':>9} {'gap':>7} "
        f"{'ARI':>5}  {'winner':<16} cut by the time limit"
    ]
    return head + scale_rows(0.5, BUDGETS) + scale_rows(1.0, (HIDDEN, 10))


def end_to_end(seeds, signals) -> list[str]:
    rows = [
        f"{'signal':<10} {'seed':>4} {'affinity s':>10} {'group s':>8} {'total s':>8} "
        f"{'ARI':>6} {'gap':>7}"
    ]
    for signal in signals:
        for seed in seeds:
            started = time.perf_counter()
            bench = planted.load(seed=seed, groups=10, tasks_per_group=10, conflict=1.0, latent=16)
            affinity = tg.measure_affinity(bench, lookahead=signal, seed=seed, progress=False)
            measured = time.perf_counter()
            g = tg.select_groups(affinity, 10)
            done = time.perf_counter()
            truth = {t: k for k, group in enumerate(bench.info["groups"]) for t in group}
            rows.append(
                f"{signal:<10} {seed:4d} {measured - started:10.1f} {done - measured:8.1f} "
                f"{done - started:8.1f} {ari(g, [truth[t] for t in g.tasks]):6.3f} "
                f"{100 * g.gap:6.2f}%"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--signals", nargs="+", default=["optimizer", "cosine"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    with threadpool_limits(1):
        rows = end_to_end(args.seeds, args.signals) if args.end_to_end else scale_table()
    head = [
        "bench_scale_grouping: "
        + ("affinity + grouping, 100 planted tasks" if args.end_to_end else "auto at 40-200 tasks"),
        f"python {platform.python_version()}, torch {torch.__version__}, one thread, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the start",
        "",
    ]
    text = "\n".join(head + rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
