"""Benchmark: what the lookahead affinity costs, and whether measuring it sparsely changes it.

Three studies on ``taskgroup.data.multidigits``, every speed claim a ratio against a baseline timed
in the same run (candidates interleaved, in a fresh random order, in every repetition; medians
over repetitions):

1. **Lookahead cost** of one ``lookahead_affinity`` call (9 tasks, batch 128; an MLP of width 48
   and 256 and the small batch-norm CNN; ``lookahead="sgd"`` lr 0.1 and ``"optimizer"`` with an
   Adam that has taken a few real steps), for every ``vectorize`` × ``batched_grads`` variant,
   against the naive loop users write (deep-copy the model and optimizer per task, backward,
   step, forward again) and against a bare compute floor (one forward with graph, n retained
   backwards, n plain no-grad forwards; and, as "floor + step", with each task's parameter step
   too: SGD's θ − ηg, or Adam's moment and division arithmetic from the live state, which any
   optimizer lookahead must compute). Each variant is first checked
   to equal the naive loop to 1e-5, so no wrong answer is timed.
2. **Co-training overhead** of an :class:`~taskgroup.AffinityTracker` inside ``cotrain`` (6 and
   9 tasks, Adam lr 1e-3) at ``every`` = 1, 5, 10, 50 for ``lookahead="optimizer"`` and
   ``"first_order"``, as time / plain co-training − 1.
3. **Sparse ``every``**: ``measure_affinity`` (default 6 tasks, full default schedule) with
   ``every`` = 1 against 5, 10, 50 for two seeds: Spearman correlation of the 30 off-diagonal
   entries, the top-3 helping / hurting pairs and each target's best partner.

Run from the repository root (about 3 minutes on 2 idle CPU cores; ``--quick`` under one)::

    python analysis/bench_lookahead.py [--quick] [--json analysis/results/bench_lookahead.json]

The thread count is torch's default (printed). Timings on a shared machine are noisy: compare
the ratios, which are taken within one repetition, rather than absolute times across runs.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from measurement import median_ratio, print_table
from scipy.stats import spearmanr

from taskgroup.affinity.lookahead import lookahead_affinity
from taskgroup.affinity.tracker import AffinityTracker
from taskgroup.data import multidigits
from taskgroup.data.benchmark import make_optimizer
from taskgroup.grouping import select_groups
from taskgroup.models import shared_parameter_names
from taskgroup.training.cotrain import cotrain, measure_affinity

NINE_TASKS = [name for name, _, _ in multidigits.TASK_TABLE[:9]]
SIX_TASKS = list(multidigits.DEFAULT_TASKS)
SHORT = ["LC", "LP", "RC", "R5", "SUM", "L>R"]  # abbreviations of SIX_TASKS in printed pairs
VARIANTS = [(v, b) for v in ("auto", "loop", "vmap") for b in (False, True)]
DEFAULT_VARIANT = ("auto", False)  # lookahead_affinity's defaults
GROUP_BUDGETS = (2, 3)
SGD_LR = 0.1
ADAM_LR = 1e-3
TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------
# timing


def interleaved_samples(
    candidates: dict[str, Callable[[], object]], *, repeats: int, inner: int, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one sample per repetition.

    Every repetition runs each candidate ``inner`` times back to back, the candidates in a fresh
    random order, and keeps the median of those calls: a stall of the shared machine (another
    process taking a core from torch's threads) spoils one call, not the sample.
    """
    order = list(candidates)
    rng = random.Random(seed)
    for fn in candidates.values():  # warm-up: lazy init, allocator, dispatcher caches
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(repeats):
        rng.shuffle(order)
        gc.collect()
        for name in order:
            fn = candidates[name]
            calls = []
            for _ in range(inner):
                start = time.perf_counter()
                fn()
                calls.append(time.perf_counter() - start)
            samples[name].append(statistics.median(calls))
    return samples


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# --------------------------------------------------------------------------------------------
# 1. lookahead cost


def naive_affinity(model, inputs, targets, losses, shared_names, *, optimizer=None, lr=SGD_LR):
    """The loop users write: per source task, deep-copy the model (and the optimizer state),
    backward that task's loss, drop the task-specific gradients, step, forward again."""
    names = list(losses)
    shared = set(shared_names)
    z = torch.empty(len(names), len(names), dtype=torch.float64)
    for i, source in enumerate(names):
        clone = copy.deepcopy(model)
        if optimizer is None:
            opt = torch.optim.SGD(clone.parameters(), lr=lr)
        else:
            opt = type(optimizer)(clone.parameters())
            opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        out = clone(inputs)
        before = torch.stack([losses[n](out[n], targets[n]) for n in names]).detach()
        losses[source](out[source], targets[source]).backward()
        for name, p in clone.named_parameters():
            if name not in shared:
                p.grad = None
        opt.step()
        with torch.no_grad():
            out = clone(inputs)
            after = torch.stack([losses[n](out[n], targets[n]) for n in names])
        z[i] = 1 - after.double() / before.double()
    return z


def compute_floor(
    model, inputs, targets, losses, shared_params, optimizer=None, lr=None, step=False
) -> None:
    """The bare arithmetic of a lookahead, as the issue defines it: one forward with graph, n
    retained backwards, n plain no-grad forwards and their losses (no parameter change, no
    bookkeeping). With ``step``, also each task's parameter step (θ − lr·g for SGD; for Adam the
    moment updates, bias correction and division that any Adam lookahead must do, in torch's
    own foreach ops from the live state)."""
    names = list(losses)
    out = model(inputs)
    task_losses = [losses[n](out[n], targets[n]) for n in names]
    grads = [torch.autograd.grad(loss, shared_params, retain_graph=True) for loss in task_losses]
    with torch.no_grad():
        params = [p.detach() for p in shared_params]
        for g in grads if step else []:
            if optimizer is None:
                torch._foreach_add(params, list(g), alpha=-lr)
                continue
            group = optimizer.param_groups[0]
            (beta1, beta2), eps, step_lr = group["betas"], group["eps"], group["lr"]
            states = [optimizer.state[p] for p in shared_params]
            t = float(states[0]["step"]) + 1
            m = torch._foreach_lerp([s["exp_avg"] for s in states], list(g), 1 - beta1)
            v = torch._foreach_mul([s["exp_avg_sq"] for s in states], beta2)
            torch._foreach_addcmul_(v, list(g), list(g), value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv(params, m, denom, value=-step_lr / (1 - beta1**t))
        for _ in names:
            out = model(inputs)
            torch.stack([losses[n](out[n], targets[n]) for n in names])


def warmed_adam(model, bench, steps: int = 5) -> torch.optim.Optimizer:
    """Adam (lr 1e-3) after ``steps`` real co-training steps on the train split."""
    losses = bench.tasks.losses()
    opt = make_optimizer(model.parameters(), "adam", ADAM_LR)
    batches = bench.train.batches(128, seed=1)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        sum(losses[n](out[n], y[n]) for n in losses).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def lookahead_cost(args) -> list[dict]:
    models = [("mlp-48", "mlp", 48), ("mlp-256", "mlp", 256), ("cnn", "cnn", 48)]
    return [row for spec in models for row in lookahead_tables(args, *spec)]


def lookahead_tables(args, label: str, kind: str, width: int) -> list[dict]:
    """Section 1 on one model: one table per lookahead."""
    results = []
    bench = multidigits.load(seed=0, model=kind, width=width).select(NINE_TASKS)
    model = bench.make_model(seed=0)
    adam = warmed_adam(model, bench)
    inputs, targets = next(bench.train.batches(128, seed=0))
    losses = bench.tasks.losses()
    shared_names = shared_parameter_names(model)
    params = dict(model.named_parameters())
    shared_params = [params[n] for n in shared_names]
    n_shared = sum(p.numel() for p in shared_params)
    n_all = sum(p.numel() for p in params.values())
    for lookahead in ("sgd", "optimizer"):
        opt = adam if lookahead == "optimizer" else None
        kw = {"lookahead": lookahead, "optimizer": opt, "lr": None if opt else SGD_LR}
        reference = naive_affinity(
            model, inputs, targets, losses, shared_names, optimizer=opt, lr=SGD_LR
        )
        candidates: dict[str, Callable[[], object]] = {
            "naive loop": lambda opt=opt: naive_affinity(
                model, inputs, targets, losses, shared_names, optimizer=opt, lr=SGD_LR
            ),
            "floor": lambda: compute_floor(model, inputs, targets, losses, shared_params),
            "floor + step": lambda opt=opt: compute_floor(
                model, inputs, targets, losses, shared_params, optimizer=opt, lr=SGD_LR, step=True
            ),
        }
        skipped, errors = {}, {}
        for vec, batched in VARIANTS:
            name = f"ours {vec}/batched={batched}"

            # each variant keeps its workspace between calls, as AffinityTracker does
            def ours(vec=vec, batched=batched, kw=kw, workspace={}):  # noqa: B006
                return lookahead_affinity(
                    model, inputs, targets, losses, vectorize=vec, batched_grads=batched,
                    workspace=workspace, **kw,
                )  # fmt: skip

            try:
                z = ours()
            except RuntimeError as exc:
                if "Batch norm" not in str(exc):
                    raise
                # vmap cannot update the unbatched batch-norm running statistics
                skipped[name] = str(exc).splitlines()[0]
                continue
            errors[name] = float((z - reference).abs().max())
            assert errors[name] <= TOLERANCE, (label, lookahead, name, errors[name])
            candidates[name] = ours
        if lookahead == "optimizer":  # Adam's replayed step fused by torch.compile
            name = "ours auto, compiled step"

            def compiled(kw=kw, workspace={}):  # noqa: B006
                return lookahead_affinity(
                    model, inputs, targets, losses, workspace=workspace, compile_step=True, **kw
                )

            errors[name] = float((compiled() - reference).abs().max())
            assert errors[name] <= TOLERANCE, (label, lookahead, name, errors[name])
            candidates[name] = compiled
        samples = interleaved_samples(candidates, repeats=args.repeats, inner=args.inner)
        times = {k: statistics.median(v) for k, v in samples.items()}
        ours_times = {k: v for k, v in times.items() if k.startswith("ours")}
        best = min(ours_times, key=ours_times.get)
        default = "ours {}/batched={}".format(*DEFAULT_VARIANT)
        versus_naive = {k: median_ratio(samples, "naive loop", k) for k in samples}
        versus_floor = {k: median_ratio(samples, k, "floor") for k in samples}
        versus_step = {k: median_ratio(samples, k, "floor + step") for k in samples}
        results.append(
            {
                "model": label,
                "shared_parameters": n_shared,
                "parameters": n_all,
                "lookahead": lookahead,
                "ms_per_call": {k: 1e3 * v for k, v in times.items()},
                "naive_over": versus_naive,
                "over_floor": versus_floor,
                "over_floor_with_step": versus_step,
                "max_abs_error_vs_naive": errors,
                "skipped": skipped,
                "best": best,
                "default": default,
                "load_average": load_average(),
            }
        )
        rows = [
            [
                k,
                f"{1e3 * v:.2f}",
                f"{versus_naive[k]:.2f}x",
                f"{versus_floor[k]:.2f}",
                f"{versus_step[k]:.2f}",
                f"{errors[k]:.1e}" if k in errors else "",
            ]
            for k, v in times.items()
        ]
        rows += [[k, "skipped", "", "", "", "see below"] for k in skipped]
        print_table(
            f"[1] lookahead cost: {label} ({n_shared} shared / {n_all} parameters), 9 tasks, "
            f"batch 128, lookahead={lookahead!r}"
            + (f" (Adam lr {ADAM_LR}, 5 steps in)" if opt else f" (lr {SGD_LR})")
            + f"; load average {load_average()}",
            ["candidate", "ms/call", "naive/this", "this/floor", "/(floor+step)", "max|Z-naive|"],
            rows,
        )
        for name, why in skipped.items():
            print(f"  {name} skipped (batch-norm under vmap): RuntimeError: {why}")
        for what, name in (("best", best), ("default", default)):
            print(
                f"  {what:7s} = {name}: naive/ours {versus_naive[name]:.2f}x "
                f"({'met' if versus_naive[name] >= 1.8 else 'MISSED'}: >= 1.8x), ours/floor "
                f"{versus_floor[name]:.2f} ({'met' if versus_floor[name] <= 1.15 else 'MISSED'}"
                f": <= 1.15), ours/(floor + step) {versus_step[name]:.2f}"
            )
    return results


# --------------------------------------------------------------------------------------------
# 2. co-training overhead


def robust_seconds(step_times: list[float], every: int | None) -> float:
    """A stall-proof estimate of a run's seconds: the median duration of the measured steps
    (``step % every == 0``) and of the others, weighted by how many there are of each."""
    if every is None:
        return statistics.median(step_times) * len(step_times)
    measured = step_times[::every]
    others = [t for k, t in enumerate(step_times) if k % every]
    total = statistics.median(measured) * len(measured)
    return total + (statistics.median(others) * len(others) if others else 0.0)


def timed_cotrain(bench, lookahead: str | None, every: int | None, steps: int):
    """Seconds of one ``cotrain`` run (fresh model, Adam) and its stall-proof estimate."""
    losses = bench.tasks.losses()
    model = bench.make_model(seed=0)
    opt = make_optimizer(model.parameters(), "adam", ADAM_LR)
    batches = bench.train.batches(128, seed=0)
    tracker = None
    if lookahead is not None:
        tracker = AffinityTracker(
            model,
            losses,
            optimizer=opt if lookahead == "optimizer" else None,
            lr=None if lookahead == "optimizer" else ADAM_LR,
            lookahead=lookahead,
            every=every,
        )
    stamps = []
    gc.collect()
    start = time.perf_counter()
    cotrain(
        model,
        batches,
        losses,
        opt,
        steps,
        tracker=tracker,
        on_step=lambda step, _: stamps.append(time.perf_counter()),
    )
    total = time.perf_counter() - start
    per_step = np.diff([start, *stamps]).tolist()
    return total, robust_seconds(per_step, every)


def cotrain_overhead(args) -> list[dict]:
    results = []
    for tasks in (SIX_TASKS, NINE_TASKS):
        bench = multidigits.load(seed=0).select(tasks)
        configs = {"plain": (None, None)} | {
            f"{la} every={every}": (la, every)
            for la in ("optimizer", "first_order")
            for every in (1, 5, 10, 50)
        }

        for la, every in configs.values():  # warm-up
            timed_cotrain(bench, la, every, 10)
        totals: dict[str, list[float]] = {name: [] for name in configs}
        robust: dict[str, list[float]] = {name: [] for name in configs}
        rng = random.Random(1)
        for _ in range(args.cotrain_repeats):
            order = list(configs)
            rng.shuffle(order)
            for name in order:
                total, estimate = timed_cotrain(bench, *configs[name], args.cotrain_steps)
                totals[name].append(total)
                robust[name].append(estimate)
        overhead = {k: 100 * (median_ratio(totals, k, "plain") - 1) for k in configs}
        overhead_robust = {k: 100 * (median_ratio(robust, k, "plain") - 1) for k in configs}
        seconds = {k: statistics.median(v) for k, v in totals.items()}
        rows = [
            [
                name,
                f"{seconds[name]:.3f}",
                f"{1e3 * seconds[name] / args.cotrain_steps:.2f}",
                "" if name == "plain" else f"{overhead[name]:+.1f}%",
                "" if name == "plain" else f"{overhead_robust[name]:+.1f}%",
            ]
            for name in configs
        ]
        under = [k for k in configs if k != "plain" and overhead[k] < 50]
        results.append(
            {
                "tasks": len(tasks),
                "steps": args.cotrain_steps,
                "seconds": seconds,
                "overhead_percent": {k: v for k, v in overhead.items() if k != "plain"},
                "overhead_percent_robust": {
                    k: v for k, v in overhead_robust.items() if k != "plain"
                },
                "under_50_percent": under,
                "load_average": load_average(),
            }
        )
        print_table(
            f"[2] co-training overhead: multidigits MLP (width 48), {len(tasks)} tasks, "
            f"{args.cotrain_steps} steps, Adam lr {ADAM_LR}, batch 128; load average "
            f"{load_average()}",
            ["run", "seconds", "ms/step", "overhead", "overhead (stall-proof)"],
            rows,
        )
        print(
            "  overhead = median over repetitions of time/plain - 1; stall-proof: from the median "
            "duration of measured and unmeasured steps\n"
            f"  under 50% (target): {', '.join(under) or 'none'}"
        )
    return results


# --------------------------------------------------------------------------------------------
# 3. sparse every


def top_pairs(z: np.ndarray, k: int, sign: int) -> list[tuple[int, int]]:
    """The ``k`` off-diagonal (source, target) pairs with the largest ``sign * z``."""
    pairs = [(i, j) for i in range(len(z)) for j in range(len(z)) if i != j]
    return sorted(pairs, key=lambda p: -sign * z[p])[:k]


def ranking_agreement(dense: np.ndarray, sparse: np.ndarray) -> dict:
    """How well ``sparse`` reproduces the ranking of ``dense`` (both ``[n, n]``, row = source):
    Spearman of the off-diagonal entries, overlap of the top-3 helping / hurting pairs, and how
    many targets keep their best partner (argmax over sources i != j of Z[i, j]), and whether
    the optimal groups (TAG objective, exact solver) at budgets 2 and 3 are the same."""
    n = len(dense)
    off = ~np.eye(n, dtype=bool)

    def top(z: np.ndarray, k: int, sign: int) -> set[tuple[int, int]]:
        return set(top_pairs(z, k, sign))

    masked_dense = np.where(off, dense, -np.inf)
    masked_sparse = np.where(off, sparse, -np.inf)
    best_dense = masked_dense.argmax(axis=0)
    best_sparse = masked_sparse.argmax(axis=0)
    return {
        "spearman": float(spearmanr(dense[off], sparse[off]).statistic),
        "top3_help_overlap": len(top(dense, 3, 1) & top(sparse, 3, 1)),
        "top3_hurt_overlap": len(top(dense, 3, -1) & top(sparse, 3, -1)),
        "best_partner_same": int((best_dense == best_sparse).sum()),
        "best_partner_differs_for": [int(j) for j in np.flatnonzero(best_dense != best_sparse)],
        "same_groups": {
            budget: set(select_groups(dense, budget, method="exact").groups)
            == set(select_groups(sparse, budget, method="exact").groups)
            for budget in GROUP_BUDGETS
        },
    }


def sparse_every(args) -> dict:
    results = []
    dense_by_seed = {}
    pair_lines: list[str] = []
    matrices_out: dict[str, list] = {}
    for seed in (0, 1):
        matrices = {}
        for every in (1, 5, 10, 50):
            matrices[every] = measure_affinity(
                "multidigits", tasks=SIX_TASKS, seed=seed, every=every, steps=args.affinity_steps
            )
        dense = matrices[1]
        dense_by_seed[seed] = dense.values
        for every, matrix in matrices.items():
            z = matrix.values
            listed = [
                "help "
                + ", ".join(f"{SHORT[i]}→{SHORT[j]} {z[i, j]:+.4f}" for i, j in top_pairs(z, 3, 1))
                + " | hurt "
                + ", ".join(f"{SHORT[i]}→{SHORT[j]} {z[i, j]:+.4f}" for i, j in top_pairs(z, 3, -1))
            ]
            pair_lines.append(f"  seed {seed} every={every:<2d}: {listed[0]}")
            matrices_out[f"seed={seed} every={every}"] = z.tolist()
        for every in (5, 10, 50):
            sparse = matrices[every]
            # the lookahead never changes the run, so every=k is every=1's trace sampled at k
            resampled = dense.trace[::every].mean(axis=0)
            row = {
                "seed": seed,
                "every": every,
                "measurements": sparse.trace.shape[0],
                "max_abs_diff_vs_resampled_every1": float(np.abs(resampled - sparse.values).max()),
                **ranking_agreement(dense.values, sparse.values),
            }
            results.append(row)
    tasks = SIX_TASKS
    rows = [
        [
            r["seed"],
            f"1 vs {r['every']}",
            r["measurements"],
            f"{r['spearman']:.3f}",
            f"{r['top3_help_overlap']}/3",
            f"{r['top3_hurt_overlap']}/3",
            f"{r['best_partner_same']}/6",
            " ".join("same" if r["same_groups"][b] else "DIFFER" for b in GROUP_BUDGETS),
            ", ".join(tasks[j] for j in r["best_partner_differs_for"]) or "-",
        ]
        for r in results
    ]
    across = ranking_agreement(dense_by_seed[0], dense_by_seed[1])
    rows.append(
        [
            "0 vs 1",
            "1 vs 1",
            "",
            f"{across['spearman']:.3f}",
            f"{across['top3_help_overlap']}/3",
            f"{across['top3_hurt_overlap']}/3",
            f"{across['best_partner_same']}/6",
            " ".join("same" if across["same_groups"][b] else "DIFFER" for b in GROUP_BUDGETS),
            ", ".join(tasks[j] for j in across["best_partner_differs_for"]) or "-",
        ]
    )
    print_table(
        f"[3] sparse every: measure_affinity(multidigits, 6 default tasks, {args.affinity_steps} "
        f"steps, Adam lookahead); every=1 against every=k (last row: seed 0 vs seed 1, "
        f"the seed-to-seed spread for scale)",
        [
            "seed",
            "every",
            "meas.",
            "spearman(30)",
            "top3 help",
            "top3 hurt",
            "best partner",
            "groups B=2 B=3",
            "best partner differs for",
        ],
        rows,
    )
    worst = max(r["max_abs_diff_vs_resampled_every1"] for r in results)
    print(f"  max |Z(every=k) - mean of every=1 trace[::k]| over all runs: {worst:.1e}")
    print(
        "  top-3 helping and hurting pairs (source→target Z); "
        + ", ".join(f"{a}={b}" for a, b in zip(SHORT, SIX_TASKS, strict=True))
    )
    print("\n".join(pair_lines))
    return {
        "steps": args.affinity_steps,
        "comparisons": [*results, {"seed": "0 vs 1", "every": 1, **across}],
        "matrices": matrices_out,
        "tasks": SIX_TASKS,
    }


# --------------------------------------------------------------------------------------------


SECTIONS = {
    "lookahead_cost": lookahead_cost,
    "cotrain_overhead": cotrain_overhead,
    "sparse_every": sparse_every,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (under a minute)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: leave torch's default)"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which studies to run (default: all three)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.repeats, args.inner = (5, 3) if args.quick else (15, 5)
    args.cotrain_steps, args.cotrain_repeats = (60, 3) if args.quick else (300, 5)
    args.affinity_steps = 150 if args.quick else 1500

    print(
        f"bench_lookahead: torch {torch.__version__}, torch.get_num_threads() = "
        f"{torch.get_num_threads()}, python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'} mode; timings are medians over {args.repeats} "
        f"interleaved repetitions of {args.inner} calls (co-training: {args.cotrain_repeats})"
    )
    started = time.perf_counter()
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    for section in args.sections:
        report[section] = SECTIONS[section](args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ntotal {report['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
