"""Does one co-training run pick good groups? Ground truth from training every subset of tasks.

On ``multidigits`` with the default recipe's 6 tasks, for each data seed:

1. train every non-empty subset of the tasks once (63 networks), with the recipe's ``[train]``
   settings (the same trainer as ``taskgroup train``, each network early-stopped on validation);
2. score every grouping of at most B of those subsets that covers all tasks (overlaps allowed,
   as in TAG): each task is served by the network, among the grouping's, with the lowest
   validation loss on it; Δm against the single-task networks on the test split (TAG's and
   Standley et al.'s evaluation). This is exhaustive search's ground truth;
3. measure the affinity with one co-training run per signal (the recipe's Adam lookahead,
   the first-order estimate, the gradient cosine), select B groups from each with
   ``select_groups`` and look the chosen grouping up in the ground truth: its rank, the
   fraction of groupings at least as good, and its regret (Δm − best Δm);
4. compare the cost: the co-training run's seconds against the 63 trainings' total.

Phases can run apart (``--phase train`` on a many-core machine, ``--phase affinity`` and
``--phase score`` elsewhere); every training is resumable. Prints a markdown table and writes
``OUT/grouping_quality.json``.

    python analysis/grouping_quality.py --seeds 0 1 2 --workers 2 --out runs/grouping_quality
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import select_groups
from taskgroup.recipe import load_recipe
from taskgroup.settings import TrainSettings
from taskgroup.training.cotrain import measure_affinity
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import GroupResult, group_key, train_group

SIGNALS = ("optimizer", "first_order", "cosine")
NORMALIZE = (None, "source")  # the mean matrix as measured, or AffinityMatrix.relative()
BUDGETS = (2, 3)
DELTAS = {"loss": [LOSS], "metric": None}  # Δm on test losses, and on the tasks' metrics


def recipe_benchmark(recipe: str, seed: int):
    spec = load_recipe(recipe).override(seed=seed)
    return spec, spec.load_benchmark()


def train_settings(spec, bench, seed: int) -> TrainSettings:
    return dataclasses.replace(spec.train, seed=seed).resolve(bench.defaults)


def subsets(tasks: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``tasks``, smallest first, members in task order."""
    return [c for r in range(1, len(tasks) + 1) for c in itertools.combinations(tasks, r)]


INIT_STRIDE = 1000  # initialisation k of data seed s trains with seed s + 1000 k


def subsets_dir(out: Path, seed: int, init: int = 0) -> Path:
    """Where the subset trainings of data seed ``seed`` and initialisation ``init`` live
    (``init`` 0 trains with the data seed itself: the single-training ground truth)."""
    return out / f"seed{seed}" / ("subsets" if init == 0 else f"init{init}")


def _train_one(
    recipe: str, seed: int, group: tuple[str, ...], out: Path, init: int = 0
) -> tuple[int, float]:
    torch.set_num_threads(1)
    spec, bench = recipe_benchmark(recipe, seed)
    settings = train_settings(spec, bench, seed + INIT_STRIDE * init)
    directory = subsets_dir(out, seed, init) / group_key(group, settings.aggregator)
    result = train_group(bench, group, settings, directory=directory)
    return seed, result.seconds


def _affinity_one(recipe: str, seed: int, signal: str, out: Path) -> tuple[int, str, float]:
    torch.set_num_threads(1)
    path = out / f"seed{seed}" / f"affinity_{signal}.json"
    if path.exists():
        return seed, signal, AffinityMatrix.load(path).metadata["seconds"]
    spec, bench = recipe_benchmark(recipe, seed)
    settings = dataclasses.replace(spec.affinity, lookahead=signal)
    result = measure_affinity(bench, settings, seed=seed)
    result.save(path)
    return seed, signal, result.metadata["seconds"]


def run_jobs(jobs: list[tuple], workers: int) -> None:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(*job) for job in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            if done % 10 == 0 or done == len(futures):
                print(
                    f"  {done}/{len(futures)} in {time.perf_counter() - started:.0f} s", flush=True
                )


def load_subsets(
    out: Path, seed: int, tasks: list[str], aggregator: str, init: int = 0
) -> list[GroupResult]:
    results = []
    for group in subsets(tasks):
        path = subsets_dir(out, seed, init) / group_key(group, aggregator) / "result.json"
        results.append(GroupResult.from_dict(json.loads(path.read_text())["result"]))
    return results


def task_terms(
    results: list[GroupResult], tasks: list[str], directions: dict, only
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per subset training (rows, ``results`` order) and task (columns): the validation loss
    (inf where the subset lacks the task) and the task's Δm term on the test split against the
    single-task subsets (its metrics' relative changes summed, signed so that lower is better),
    and the factor 100 / (metrics counted) that turns a sum of terms into Δm points. ``only``:
    the metrics to count (``None``: every metric but the loss)."""
    n = len(tasks)
    index = {r.tasks: s for s, r in enumerate(results)}
    single = {t: results[index[(t,)]].test[t] for t in tasks}
    val = np.full((len(results), n), np.inf)
    change = np.zeros((len(results), n))
    for s, r in enumerate(results):
        for j, t in enumerate(tasks):
            if t not in r.tasks:
                continue
            val[s, j] = r.val[t][LOSS]
            names = [m for m in r.test[t] if (m != LOSS if only is None else m in only)]
            terms = [
                (-1 if directions[t][m] else 1) * (r.test[t][m] - single[t][m]) / abs(single[t][m])
                for m in names
            ]
            change[s, j] = sum(terms)
    weight = 100.0 / sum(
        len([m for m in single[t] if (m != LOSS if only is None else m in only)]) for t in tasks
    )
    return val, change, weight


def ground_truth(
    results: list[GroupResult], tasks: list[str], directions: dict, budget: int, only
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Every grouping of at most ``budget`` subsets that covers all tasks (as indices into
    ``results``, in ``itertools.combinations`` order by size) and its Δm against the single-task
    subsets (lower is better): each task served by the grouping's subset with the lowest
    validation loss on it (the first such subset on a tie). O(C(2^n − 1, budget) · budget · n),
    vectorised per size."""
    val, change, weight = task_terms(results, tasks, directions, only)
    columns = np.arange(len(tasks))
    groupings, scores = [], []
    for size in range(1, budget + 1):
        combos = np.array(list(itertools.combinations(range(len(results)), size)), dtype=np.intp)
        rows = val[combos.reshape(-1, size)]  # [groupings, size, tasks]
        covered = np.isfinite(rows).any(axis=1).all(axis=1)  # misses no task
        combos, rows = combos.reshape(-1, size)[covered], rows[covered]
        serve = np.take_along_axis(combos, rows.argmin(axis=1), axis=1)  # [groupings, tasks]
        groupings += [tuple(int(s) for s in combo) for combo in combos]
        scores.append(weight * change[serve, columns].sum(axis=1))
    return groupings, np.concatenate(scores)


def score(out: Path, recipe: str, seeds: list[int]) -> dict:
    rows = []
    for seed in seeds:
        spec, bench = recipe_benchmark(recipe, seed)
        tasks = bench.tasks.names
        settings = train_settings(spec, bench, seed)
        results = load_subsets(out, seed, tasks, settings.aggregator)
        index = {r.tasks: s for s, r in enumerate(results)}
        directions = {t: {LOSS: False, **bench.tasks[t].higher_is_better} for t in tasks}
        exhaustive_seconds = sum(r.seconds for r in results)
        for budget in BUDGETS:
            for delta, only in DELTAS.items():
                groupings, dm = ground_truth(results, tasks, directions, budget, only)
                keyed = {g: v for g, v in zip(groupings, dm, strict=True)}
                together = keyed[(index[tuple(tasks)],)]
                for signal, normalize in itertools.product(SIGNALS, NORMALIZE):
                    affinity = AffinityMatrix.load(out / f"seed{seed}" / f"affinity_{signal}.json")
                    try:
                        signal_matrix = affinity.relative() if normalize else affinity
                    except ValueError as e:  # a source whose own step does not help itself
                        print(f"seed {seed}, {signal} / {normalize}: {e}")
                        continue
                    chosen = select_groups(signal_matrix, budget)
                    key = tuple(sorted(index[g] for g in chosen.groups))
                    value = keyed[key]
                    rows.append(
                        {
                            "seed": seed,
                            "budget": budget,
                            "delta": delta,
                            "signal": signal,
                            "normalize": normalize,
                            "groups": [list(g) for g in chosen.groups],
                            "delta_m": value,
                            "best": float(dm.min()),
                            "regret": value - float(dm.min()),
                            "rank": int((dm < value - 1e-12).sum()) + 1,
                            "groupings": len(dm),
                            "top_fraction": float((dm <= value + 1e-12).mean()),
                            "together": together,
                            "median": float(np.median(dm)),
                            "cost_ratio": affinity.metadata["seconds"] / exhaustive_seconds,
                        }
                    )
    return {"rows": rows}


def _signal(r: dict) -> str:
    return r["signal"] + (" / source" if r["normalize"] == "source" else "")


def print_table(summary: dict) -> None:
    print(
        "| seed | B | Δm on | signal | chosen Δm | best Δm | regret | rank | top % | "
        "all-together Δm | median Δm | cost vs exhaustive |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in summary["rows"]:
        print(
            f"| {r['seed']} | {r['budget']} | {r['delta']} | {_signal(r)} | "
            f"{r['delta_m']:+.2f} | {r['best']:+.2f} | {r['regret']:.2f} | "
            f"{r['rank']}/{r['groupings']} | {100 * r['top_fraction']:.1f} | "
            f"{r['together']:+.2f} | {r['median']:+.2f} | 1/{1 / r['cost_ratio']:.0f} |"
        )


def print_summary(summary: dict) -> None:
    """Per signal and budget over the seeds: the chosen grouping's top fraction and regret
    (mean / worst), how often it beats all tasks together, and the cost."""
    groups: dict[tuple, list[dict]] = {}
    for r in summary["rows"]:
        groups.setdefault((r["delta"], r["budget"], _signal(r)), []).append(r)
    print(
        "\n| Δm on | B | signal | top % mean / worst | regret mean / worst | "
        "beats all-together | cost vs exhaustive |"
    )
    print("|---|---|---|---|---|---|---|")
    for (delta, budget, signal), rows in groups.items():
        top = [100 * r["top_fraction"] for r in rows]
        regret = [r["regret"] for r in rows]
        beats = sum(r["delta_m"] < r["together"] for r in rows)
        cost = np.mean([r["cost_ratio"] for r in rows])
        print(
            f"| {delta} | {budget} | {signal} | {np.mean(top):.1f} / {max(top):.1f} | "
            f"{np.mean(regret):.2f} / {max(regret):.2f} | {beats}/{len(rows)} | "
            f"1/{1 / cost:.0f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="multidigits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--inits",
        type=int,
        nargs="+",
        default=[0],
        help="initialisations to train every subset with (0: the data seed; k: seed + 1000 k)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/grouping_quality"))
    parser.add_argument("--phase", choices=["all", "train", "affinity", "score"], default="all")
    args = parser.parse_args(argv)
    out = args.out
    if args.phase in ("all", "train"):
        _, bench = recipe_benchmark(args.recipe, args.seeds[0])
        groups = subsets(bench.tasks.names)
        # largest first: the long trainings start early and the pool ends evenly
        jobs = [
            (_train_one, args.recipe, seed, g, out, init)
            for g in sorted(groups, key=len, reverse=True)
            for init in args.inits
            for seed in args.seeds
        ]
        print(f"training {len(jobs)} networks on {args.workers} workers", flush=True)
        run_jobs(jobs, args.workers)
    if args.phase in ("all", "affinity"):
        jobs = [
            (_affinity_one, args.recipe, seed, signal, out)
            for seed in args.seeds
            for signal in SIGNALS
        ]
        print(f"measuring {len(jobs)} affinities on {args.workers} workers", flush=True)
        run_jobs(jobs, args.workers)
    if args.phase in ("all", "score"):
        summary = score(out, args.recipe, args.seeds)
        name = "grouping_quality_" + "_".join(map(str, args.seeds)) + ".json"
        (out / name).write_text(json.dumps(summary, indent=1))
        print_table(summary)
        print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
