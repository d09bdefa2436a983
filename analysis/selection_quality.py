"""Selection beyond TAG: HOA and the verified selection against exhaustive search's ground truth.

A slow study (it trains every subset of the tasks once per seed). It reuses
``analysis/grouping_quality.py``'s run layout and ground truth (``OUT/seed<S>/subsets/<group_key>``,
``OUT/seed<S>/affinity_<signal>.json``; its phases ``train`` and ``affinity`` fill them) and adds,
for each seed and budget B in 2, 3:

- **tag**: ``select_groups`` on the recipe's one-run lookahead affinity (``affinity_optimizer``);
  cost = the co-training run's seconds.
- **hoa**: Standley's higher-order approximation (``select_groups(table, B, method="hoa")``) from
  the single-task and pair trainings among the exhaustive ones (validation losses); cost = those
  n + n(n−1)/2 trainings (the network ratio (n + n(n−1)/2) / (2^n − 1) is printed beside it).
- **verified**: ``verified_selection`` on the same affinity (``--shortlist`` groupings, a
  ``--fraction`` of the schedule, successive halving, short single-task references); cost = the
  co-training run plus its short trainings.
- **exhaustive**: every subset trained, the grouping with the best *validation* Δm on losses
  (what exhaustive search picks without test data); cost = 1.

Each pick is looked up in the ground truth (Δm on the test split against the single-task
subsets, each task served by the grouping's network with the lowest validation loss on it):
regret = Δm − best Δm, in points, lower is better. Costs are fractions of exhaustive search's
training seconds (and steps). Prints a markdown table and a summary (mean and worst regret per
method and budget), writes ``OUT/selection_quality.json``.

    python analysis/grouping_quality.py --seeds 0 1 2 3 --phase train --out runs/grouping_quality
    python analysis/grouping_quality.py --seeds 0 1 2 3 --phase affinity --out runs/grouping_quality
    python analysis/selection_quality.py --seeds 0 1 2 3 --out runs/grouping_quality
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import grouping_quality as gq
import numpy as np
import torch

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import PairTable, select_groups
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import GroupResult
from taskgroup.training.verified import verified_selection

BUDGETS = gq.BUDGETS
METHODS = ("tag", "hoa", "verified", "exhaustive")
SIGNAL = "optimizer"  # the recipe's lookahead: the one-run TAG pick and the verified shortlist


def pair_table(results: list[GroupResult], tasks: list[str]) -> tuple[PairTable, float]:
    """HOA's table from the size-1 and size-2 subsets (validation losses) and their seconds."""
    by = {r.tasks: r for r in results}
    single = {t: by[(t,)].val[t][LOSS] for t in tasks}
    pair: dict[str, dict[str, float]] = {t: {} for t in tasks}
    for a, b in itertools.combinations(tasks, 2):
        pair[a][b] = by[(a, b)].val[a][LOSS]
        pair[b][a] = by[(a, b)].val[b][LOSS]
    used = [r for r in results if len(r.tasks) <= 2]
    cost = {"networks": len(used), "steps": sum(r.steps for r in used)}
    seconds = sum(r.seconds for r in used)
    return PairTable(tasks, single, pair, cost=cost | {"seconds": seconds}), seconds


def validation_choice(results: list[GroupResult], tasks: list[str], budget: int) -> tuple:
    """The grouping (indices into ``results``) with the lowest validation Δm on losses against
    the single-task subsets: exhaustive search's test-free pick."""
    n = len(tasks)
    index = {r.tasks: s for s, r in enumerate(results)}
    single = np.array([results[index[(t,)]].val[t][LOSS] for t in tasks])
    val = np.full((len(results), n), np.inf)
    for s, r in enumerate(results):
        for j, t in enumerate(tasks):
            if t in r.tasks:
                val[s, j] = r.val[t][LOSS]
    best, best_value = None, np.inf
    for size in range(1, budget + 1):
        for combo in itertools.combinations(range(len(results)), size):
            served = val[list(combo)].min(axis=0)
            if not np.isfinite(served).all():
                continue
            value = float((served / single - 1).mean())
            if value < best_value - 1e-15:
                best, best_value = combo, value
    return tuple(sorted(best))


def _verify_seed(recipe, seed, out, shortlist, fraction):
    """Every budget of one seed in one process: the budgets share short trainings (and their
    folders), so they must not run concurrently."""
    torch.set_num_threads(1)
    spec, bench = gq._bench(recipe, seed)
    settings = gq._settings(spec, bench, seed)
    affinity = AffinityMatrix.load(out / f"seed{seed}" / f"affinity_{SIGNAL}.json")
    for budget in BUDGETS:
        path = out / f"seed{seed}" / f"verified_B{budget}_K{shortlist}_f{fraction:g}.json"
        if path.exists():
            continue
        chosen = verified_selection(
            bench,
            affinity,
            budget,
            shortlist=shortlist,
            fraction=fraction,
            settings=settings,
            seed=seed,
            out=out / f"seed{seed}",
        )
        chosen.save(path)


def score(out: Path, recipe: str, seeds: list[int], shortlist: int, fraction: float) -> dict:
    from taskgroup.grouping import Grouping

    rows = []
    for seed in seeds:
        spec, bench = gq._bench(recipe, seed)
        tasks = bench.tasks.names
        n = len(tasks)
        settings = gq._settings(spec, bench, seed)
        results = gq.load_subsets(out, seed, tasks, settings.aggregator)
        index = {r.tasks: s for s, r in enumerate(results)}
        directions = {t: {LOSS: False, **bench.tasks[t].higher_is_better} for t in tasks}
        exhaustive_seconds = sum(r.seconds for r in results)
        exhaustive_steps = sum(r.steps for r in results)
        affinity = AffinityMatrix.load(out / f"seed{seed}" / f"affinity_{SIGNAL}.json")
        cotrain_seconds = affinity.metadata["seconds"]
        cotrain_steps = affinity.metadata.get("steps_trained", 0)
        table, pair_seconds = pair_table(results, tasks)
        for budget in BUDGETS:
            verified = Grouping.load(
                out / f"seed{seed}" / f"verified_B{budget}_K{shortlist}_f{fraction:g}.json"
            )
            vcost = verified.info["cost"]
            picks = {
                "tag": (select_groups(affinity, budget).groups, cotrain_seconds, cotrain_steps),
                "hoa": (
                    select_groups(table, budget, method="hoa").groups,
                    pair_seconds,
                    table.cost["steps"],
                ),
                "verified": (
                    verified.groups,
                    cotrain_seconds + vcost["seconds"],
                    cotrain_steps + vcost["steps"],
                ),
                "exhaustive": (
                    [results[s].tasks for s in validation_choice(results, tasks, budget)],
                    exhaustive_seconds,
                    exhaustive_steps,
                ),
            }
            for delta, only in gq.DELTAS.items():
                groupings, dm = gq.ground_truth(results, tasks, directions, budget, only)
                keyed = {g: v for g, v in zip(groupings, dm, strict=True)}
                best = float(dm.min())
                for method, (groups, seconds, steps) in picks.items():
                    value = keyed[tuple(sorted(index[tuple(g)] for g in groups))]
                    rows.append(
                        {
                            "seed": seed,
                            "budget": budget,
                            "delta": delta,
                            "method": method,
                            "groups": [list(g) for g in groups],
                            "delta_m": value,
                            "best": best,
                            "regret": value - best,
                            "rank": int((dm < value - 1e-12).sum()) + 1,
                            "groupings": len(dm),
                            "cost_seconds": seconds / exhaustive_seconds,
                            "cost_steps": steps / exhaustive_steps if steps else None,
                        }
                    )
        pairs_ratio = (n + n * (n - 1) // 2) / (2**n - 1)
    return {
        "rows": rows,
        "shortlist": shortlist,
        "fraction": fraction,
        "hoa_network_ratio": pairs_ratio,
    }


def print_table(summary: dict) -> None:
    print(
        "| seed | B | Δm on | method | chosen Δm | best Δm | regret | rank | cost (s) | "
        "cost (steps) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in summary["rows"]:
        steps = "-" if r["cost_steps"] is None else f"{r['cost_steps']:.3f}"
        print(
            f"| {r['seed']} | {r['budget']} | {r['delta']} | {r['method']} | "
            f"{r['delta_m']:+.2f} | {r['best']:+.2f} | {r['regret']:.2f} | "
            f"{r['rank']}/{r['groupings']} | {r['cost_seconds']:.3f} | {steps} |"
        )
    print(
        f"\nSummary (regret in Δm points, mean / worst over seeds; cost as a fraction of "
        f"exhaustive search's training seconds, mean). HOA trains "
        f"{summary['hoa_network_ratio']:.3f} of the networks; verified: shortlist "
        f"{summary['shortlist']}, fraction {summary['fraction']:g}.\n"
    )
    print("| Δm on | method | " + " | ".join(f"B={b} regret" for b in BUDGETS) + " | cost |")
    print("|---|---|" + "---|" * len(BUDGETS) + "---|")
    for delta in gq.DELTAS:
        for method in METHODS:
            cells, costs = [], []
            for b in BUDGETS:
                rows = [
                    r
                    for r in summary["rows"]
                    if r["delta"] == delta and r["method"] == method and r["budget"] == b
                ]
                regrets = [r["regret"] for r in rows]
                costs += [r["cost_seconds"] for r in rows]
                cells.append(f"{statistics.mean(regrets):.2f} / {max(regrets):.2f}")
            print(
                f"| {delta} | {method} | "
                + " | ".join(cells)
                + f" | {statistics.mean(costs):.3f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="multidigits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/grouping_quality"))
    parser.add_argument(
        "--shortlist", type=int, default=8, help="groupings the verified selection shortlists"
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.25,
        help="share of the schedule the verified selection trains",
    )
    parser.add_argument(
        "--phase", choices=["all", "train", "affinity", "verify", "score"], default="all"
    )
    args = parser.parse_args(argv)
    out = args.out
    if args.phase in ("all", "train", "affinity"):
        phase = args.phase
        gq.main(
            [
                "--recipe",
                args.recipe,
                "--workers",
                str(args.workers),
                "--out",
                str(out),
                "--phase",
                phase if phase != "all" else "train",
                "--seeds",
                *map(str, args.seeds),
            ]
        )
        if phase == "all":
            gq.main(
                [
                    "--recipe",
                    args.recipe,
                    "--workers",
                    str(args.workers),
                    "--out",
                    str(out),
                    "--phase",
                    "affinity",
                    "--seeds",
                    *map(str, args.seeds),
                ]
            )
    if args.phase in ("all", "verify"):
        jobs = [
            (_verify_seed, args.recipe, seed, out, args.shortlist, args.fraction)
            for seed in args.seeds
        ]
        started = time.perf_counter()
        print(f"verified selections: {len(jobs)} on {args.workers} workers", flush=True)
        gq.run_jobs(jobs, args.workers)
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    if args.phase in ("all", "score"):
        summary = score(out, args.recipe, args.seeds, args.shortlist, args.fraction)
        (out / "selection_quality.json").write_text(json.dumps(summary, indent=1))
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
