"""Benchmark: what the aggregators cost.

Two studies, every claim a ratio of times measured in the same repetition (candidates interleaved
in a fresh random order each repetition; medians over repetitions), one intra-op thread:

1. **Nash-MTL solve, k = 11 tasks.** The damped Newton solve of (GGᵀ)w = 1/w — cold (no warm
   start) and warm-started along a sequence of Gramians of a slowly drifting gradient matrix, as
   in training — against the two cvxpy paths: the reference implementation's procedure
   (``solver="ccp"``: up to 20 ECOS solves of a sequential convex programme per step) and the
   same convex problem as Newton's in one cached, parametrised cvxpy/Clarabel solve
   (``solver="cvxpy"``). Residuals and agreement are reported with the times.
2. **Aggregation cost in a training step** on ``multidigits`` with 9 tasks, batch 128, for the
   MLP (width 48) and the small batch-norm CNN: the per-task gradient matrices G of 20 real
   training steps (Adam, lr 1e-3) are recorded; each aggregator then aggregates that sequence
   (state carried from step to step, as in training) and its time per step is divided by the
   time of the per-task gradient computation itself (forward + k backward passes; the faster of
   the batched and the looped form). Transference is timed with a real lookahead on the batch;
   the loss weightings by their per-step work (FAMO with and without its after-step forward),
   although they replace the per-task gradients by one backward.

Run from the repository root (about 2 minutes on 2 CPU cores; ``--quick`` about 30 s)::

    python analysis/bench_aggregators.py [--quick] [--json analysis/results/bench_aggregators.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from measurement import median_ratio, print_table

from taskgroup import aggregators
from taskgroup.affinity.lookahead import task_loss_list
from taskgroup.aggregators.nash_mtl import (
    solve_alpha_fair,
    solve_alpha_fair_cvxpy,
    solve_nash_ccp,
)
from taskgroup.data import multidigits
from taskgroup.gradients import task_gradients
from taskgroup.models import shared_parameter_names

NINE_TASKS = [name for name, _, _ in multidigits.TASK_TABLE[:9]]
K_NASH = 11


def interleaved(
    candidates: dict[str, Callable[[], object]], *, repeats: int, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds per call of each candidate in every repetition (candidates in a fresh random
    order each repetition; each candidate is called once per repetition)."""
    order = list(candidates)
    rng = random.Random(seed)
    for fn in candidates.values():  # warm-up: lazy init, caches, cvxpy compilation
        fn()
    samples: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(repeats):
        rng.shuffle(order)
        gc.collect()
        for name in order:
            start = time.perf_counter()
            per_call = candidates[name]()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed / (per_call or 1))
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


# -------------------------------------------------------------------------------------------
# 1. Nash-MTL solve


def drifting_gradients(k: int, d: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    """``steps`` gradient matrices [k, d]: correlated rows, norms over two decades, drifting."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d)
    G = rng.standard_normal((k, d)) + 0.5 * common
    scales = 10 ** rng.uniform(-1, 1, size=(k, 1))
    out = []
    for _ in range(steps):
        G = G + 0.05 * rng.standard_normal((k, d))
        out.append(G * scales)
    return out


def nash_study(args) -> dict:
    steps = 10 if args.quick else 30
    Gs = drifting_gradients(K_NASH, 2000, steps)
    Ks = [G @ G.T for G in Gs]
    cache: dict = {}
    newton = [solve_alpha_fair(K) for K in Ks]
    cvx = [solve_alpha_fair_cvxpy(K, cache=cache) for K in Ks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccp, start = [], None
        for K in Ks:
            ccp.append(solve_nash_ccp(K, start=start))
            start = ccp[-1].weights
    agreement = max(
        float(np.max(np.abs(a.weights - b.weights) / a.weights))
        for a, b in zip(newton, cvx, strict=True)
    )

    def cold():
        for K in Ks:
            solve_alpha_fair(K)
        return len(Ks)

    def warm():
        start = None
        for K in Ks:
            start = solve_alpha_fair(K, start=start).scaled
        return len(Ks)

    def one_shot():
        for K in Ks:
            solve_alpha_fair_cvxpy(K, cache=cache)
        return len(Ks)

    def reference_procedure():
        start = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for K in Ks:
                start = solve_nash_ccp(K, start=start).weights
        return len(Ks)

    candidates = {
        "newton (cold)": cold,
        "newton (warm)": warm,
        "cvxpy, one convex solve": one_shot,
        "cvxpy, reference procedure": reference_procedure,
    }
    samples = interleaved(candidates, repeats=3 if args.quick else 7)
    rows, table = [], {}
    for name in candidates:
        t = median(samples[name])
        table[name] = {
            "seconds_per_solve": t,
            "vs_newton_cold": median_ratio(samples, name, "newton (cold)"),
            "vs_newton_warm": median_ratio(samples, name, "newton (warm)"),
        }
        rows.append(
            [
                name,
                f"{t * 1e6:.0f} µs",
                f"{table[name]['vs_newton_cold']:.1f}×",
                f"{table[name]['vs_newton_warm']:.1f}×",
            ]
        )
    print_table(
        f"1. Nash-MTL solve, k = {K_NASH} tasks, {steps} Gramians of a drifting G [11, 2000]",
        ["solver", "time / solve", "÷ newton cold", "÷ newton warm"],
        rows,
    )
    iterations_warm, start = [], None
    for K in Ks:
        solution = solve_alpha_fair(K, start=start)
        iterations_warm.append(solution.iterations)
        start = solution.scaled
    residuals = {
        "newton": max(s.residual for s in newton),
        "cvxpy, one convex solve": max(s.residual for s in cvx),
        "cvxpy, reference procedure": max(s.residual for s in ccp),
    }
    print(
        "  max relative residual ‖Kw − 1/w‖/‖1/w‖: "
        + ", ".join(f"{k} {v:.1e}" for k, v in residuals.items())
    )
    print(f"  max relative weight difference newton vs one convex solve: {agreement:.1e}")
    print(
        f"  Newton iterations: cold {statistics.mean(s.iterations for s in newton):.1f}, "
        f"warm {statistics.mean(iterations_warm):.1f}; reference procedure: "
        f"{statistics.mean(s.iterations for s in ccp):.1f} ECOS solves per step (mean)"
    )
    for name in ("cvxpy, reference procedure", "cvxpy, one convex solve"):
        x = table[name]["vs_newton_cold"]
        print(f"  speed-up of cold Newton over {name}: {x:.0f}× ({'≥' if x >= 50 else '<'} 50×)")
    return {
        "k": K_NASH,
        "gramians": steps,
        "table": table,
        "max_residual": residuals,
        "max_relative_weight_difference_newton_vs_cvxpy": agreement,
        "newton_iterations_cold": statistics.mean(s.iterations for s in newton),
        "newton_iterations_warm": statistics.mean(iterations_warm),
        "reference_procedure_solves": statistics.mean(s.iterations for s in ccp),
    }


# -------------------------------------------------------------------------------------------
# 2. aggregation cost in a training step


def cost_study(args, kind: str) -> dict:
    steps = 8 if args.quick else 20
    bench = multidigits.load(seed=0, model=kind, pairs=(2048, 64, 64)).select(NINE_TASKS)
    model = bench.make_model(seed=0)
    losses = bench.tasks.losses()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = aggregators.MTLStep(model, bench.tasks, "mean", optimizer)
    shared = [model.get_parameter(n) for n in shared_parameter_names(model)]
    batches = bench.train.batches(128, seed=0)
    Gs, loss_rows = [], []
    for _ in range(steps):
        x, y = next(batches)
        per_task = task_loss_list(model(x), y, losses)
        Gs.append(task_gradients(per_task, shared).detach())
        loss_rows.append(torch.stack(per_task).detach())
        step(x, y)
    x, y = next(batches)

    def gradients(batched: bool) -> Callable[[], int]:
        def run():
            task_gradients(task_loss_list(model(x), y, losses), shared, batched=batched)
            return 1

        return run

    def feature_gradients():
        z = model.trunk(x)
        per_task = task_loss_list({n: h(z) for n, h in model.heads.items()}, y, losses)
        task_gradients(per_task, [z])
        return 1

    def sequence(name: str) -> Callable[[], int]:
        agg = aggregators.get(name)

        def run():
            agg.reset()
            for G in Gs:
                agg.aggregate(G)
            return len(Gs)

        return run

    def transference():
        agg = aggregators.get("transference")
        context = aggregators.lookahead_context(
            model, x, y, losses, optimizer=optimizer, base_losses=loss_rows[-1]
        )
        for G in Gs[:4]:
            agg.aggregate(G, context=context)
        return 4

    def weighting(name: str, forward: bool = False) -> Callable[[], int]:
        def run():
            w = aggregators.get(name)
            w.prepare(len(NINE_TASKS))
            for row in loss_rows:
                w.weigh(row)
                if name == "famo":
                    if forward:
                        with torch.no_grad():
                            after = torch.stack(task_loss_list(model(x), y, losses))
                        w.observe(after)
                    else:
                        w.observe(row * 0.99)
            return len(loss_rows)

        return run

    gradient_names = [n for n in aggregators.names() if aggregators.get(n).kind == "gradient"]
    candidates: dict[str, Callable[[], int]] = {
        "per-task gradients (batched)": gradients(True),
        "per-task gradients (loop)": gradients(False),
        "per-task gradients of the features": feature_gradients,
    }
    for name in gradient_names:
        candidates[name] = transference if name == "transference" else sequence(name)
    for name in ("uw", "dwa", "rlw", "famo"):
        candidates[name] = weighting(name)
    candidates["famo + after-step forward"] = weighting("famo", forward=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = interleaved(candidates, repeats=3 if args.quick else 7, seed=1)
    batched = median(samples["per-task gradients (batched)"])
    looped = median(samples["per-task gradients (loop)"])
    denominator = (
        "per-task gradients (batched)" if batched <= looped else "per-task gradients (loop)"
    )
    table = {}
    rows = []
    for name in candidates:
        fraction = median_ratio(samples, name, denominator)
        table[name] = {"seconds": median(samples[name]), "fraction_of_gradients": fraction}
        rows.append([name, f"{median(samples[name]) * 1e6:.0f} µs", f"{100 * fraction:.1f}%"])
    P = sum(p.numel() for p in shared)
    print_table(
        f"2. {kind.upper()} (9 tasks, batch 128, {P} shared parameters): time per step and as a "
        f"fraction of the per-task gradient computation ({denominator.split('(')[1][:-1]}, the "
        f"faster)",
        ["", "time / step", "fraction"],
        rows,
    )
    over = [
        n
        for n in gradient_names
        if n != "transference" and table[n]["fraction_of_gradients"] >= 0.10
    ]
    print(f"  aggregators at or above 10% (transference excluded): {', '.join(over) or 'none'}")
    return {"model": kind, "shared_parameters": P, "denominator": denominator, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"taskgroup aggregator benchmark — torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    results = {"nash": nash_study(args), "cost": [cost_study(args, k) for k in ("mlp", "cnn")]}
    results["environment"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "quick": args.quick,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
