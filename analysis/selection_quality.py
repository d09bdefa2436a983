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

``--phase heldout`` is issue 9's trustworthy protocol. One training per subset is noisy (the
ground truth and exhaustive search's pick share the same trainings), so every subset is trained
with three initialisations (``grouping_quality.py --inits 1 2``: ``OUT/seed<S>/init<k>``, training
seed S + 1000 k). On each data seed whose initialisations 0, 1, 2 are all complete, a grouping's
Δm is computed per initialisation as above and averaged; each method selects from what
initialisation 0 (and its co-training runs) shows and is scored by the mean over initialisations
1 and 2, which it never saw: regret = its held-out Δm − the best held-out Δm, rank among all
groupings. Methods: TAG with every signal found (``affinity_<signal>.json``, as measured and
``relative()`` where defined), hoa, verified (where ``--phase verify`` wrote its pick), exhaustive
(validation pick) and ``exhaustive:test`` (exhaustive search's own pick, the best grouping by the
one-training ground truth of initialisation 0). Rows also carry the regret against the mean of
all three initialisations and against initialisation 0 alone, for comparison. Writes
``OUT/selection_quality_heldout.json`` and the cost–regret plot
``OUT/selection_quality_heldout.png`` (Δm on test loss). Seeds not yet complete are listed,
not scored.

    python analysis/grouping_quality.py --seeds 0 1 2 3 --phase train --out runs/grouping_quality
    python analysis/grouping_quality.py --seeds 0 1 2 3 --phase affinity --out runs/grouping_quality
    python analysis/selection_quality.py --seeds 0 1 2 3 --out runs/grouping_quality
    python analysis/grouping_quality.py --seeds 0 1 2 3 --inits 1 2 --phase train  # default --out
    python analysis/selection_quality.py --seeds 0 1 2 3 --phase heldout --out runs/grouping_quality
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
from taskgroup.grouping import Grouping, PairTable, select_groups
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import GroupResult, group_key
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
    spec, bench = gq.recipe_benchmark(recipe, seed)
    settings = gq.train_settings(spec, bench, seed)
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
        spec, bench = gq.recipe_benchmark(recipe, seed)
        tasks = bench.tasks.names
        n = len(tasks)
        settings = gq.train_settings(spec, bench, seed)
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


# -- issue 9's protocol: a 3-initialisation ground truth, each pick scored on trainings it
# did not see ------------------------------------------------------------------------------

INITS = (0, 1, 2)  # initialisation 0 = the data seed's own training (what the methods see)
HELD_OUT = (1, 2)  # scored on these: every method selects from initialisation 0 at most
SIGNALS = gq.SIGNALS
TIE = 1e-9  # Δm points: closer than this counts as a tie for the rank


def init_counts(out: Path, seed: int, tasks: list[str], aggregator: str) -> dict[int, int]:
    """How many of the 2^n − 1 subset trainings of each initialisation in ``INITS`` exist."""
    return {
        init: sum(
            (gq.subsets_dir(out, seed, init) / group_key(g, aggregator) / "result.json").exists()
            for g in gq.subsets(tasks)
        )
        for init in INITS
    }


def mean_ground_truth(
    results_by_init: list[list[GroupResult]],
    tasks: list[str],
    directions: dict,
    budget: int,
    only,
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """``grouping_quality.ground_truth`` on each initialisation's trainings (every list in the
    same ``subsets`` order), the groupings' Δm stacked: ``(groupings, dm [inits, groupings])``.
    Each initialisation serves tasks by its own validation losses and measures Δm against its
    own single-task networks; the trustworthy score of a grouping is the mean over axis 0."""
    first, rows = None, []
    for results in results_by_init:
        groupings, dm = gq.ground_truth(results, tasks, directions, budget, only)
        if first is not None and groupings != first:
            raise ValueError("the initialisations' subset lists differ; load them in one order")
        first = groupings
        rows.append(dm)
    return first, np.stack(rows)


def held_out_score(value: float, scores: np.ndarray) -> dict:
    """A pick's place among ``scores`` (every grouping's held-out Δm; lower is better)."""
    best = float(scores.min())
    return {
        "delta_m": value,
        "best": best,
        "regret": value - best,
        "rank": int((scores < value - TIE).sum()) + 1,
        "groupings": len(scores),
        "median": float(np.median(scores)),
    }


def _signal_name(signal: str, normalize: str | None) -> str:
    return f"tag:{signal}" + ("/source" if normalize else "")


def _picks(out, seed, tasks, results, budget, table, exhaustive, shortlist, fraction, notes):
    """Each method's grouping (subset tuples) and cost (seconds, steps), from what initialisation
    0 and the co-training runs show: method → (groups, seconds, steps)."""
    picks = {}
    affinities = {}
    for signal in SIGNALS:
        path = out / f"seed{seed}" / f"affinity_{signal}.json"
        if not path.exists():
            notes.append(f"seed {seed}: no {path.name}")
            continue
        affinities[signal] = AffinityMatrix.load(path)
    for signal, affinity in affinities.items():
        seconds = affinity.metadata["seconds"]
        steps = affinity.metadata.get("steps_trained", 0)
        for normalize in gq.NORMALIZE:
            try:
                matrix = affinity.relative() if normalize else affinity
            except ValueError as e:  # a source whose own step does not help itself
                notes.append(f"seed {seed}, B={budget}, {_signal_name(signal, normalize)}: {e}")
                continue
            chosen = select_groups(matrix, budget).groups
            picks[_signal_name(signal, normalize)] = (chosen, seconds, steps)
    picks["hoa"] = (
        select_groups(table, budget, method="hoa").groups,
        table.cost["seconds"],
        table.cost["steps"],
    )
    path = out / f"seed{seed}" / f"verified_B{budget}_K{shortlist}_f{fraction:g}.json"
    if path.exists() and SIGNAL in affinities:
        verified = Grouping.load(path)
        cost = verified.info["cost"]
        picks["verified"] = (
            verified.groups,
            affinities[SIGNAL].metadata["seconds"] + cost["seconds"],
            affinities[SIGNAL].metadata.get("steps_trained", 0) + cost["steps"],
        )
    else:
        notes.append(f"seed {seed}, B={budget}: no {path.name} (run --phase verify)")
    picks["exhaustive"] = (
        [results[s].tasks for s in validation_choice(results, tasks, budget)],
        *exhaustive,
    )
    return picks


def score_held_out(
    out: Path,
    seeds: list[int],
    tasks: list[str],
    aggregator: str,
    directions: dict,
    shortlist: int = 8,
    fraction: float = 0.25,
) -> dict:
    """Issue 9's evaluation on the seeds whose ``INITS`` are all trained (see ``main``'s
    ``--phase heldout``). ``directions``: task → metric → higher is better (``loss``: False)."""
    order = {t: i for i, t in enumerate(tasks)}
    complete, incomplete, notes, rows = [], {}, [], []
    for seed in seeds:
        counts = init_counts(out, seed, tasks, aggregator)
        if min(counts.values()) < 2 ** len(tasks) - 1:
            incomplete[seed] = counts
            continue
        complete.append(seed)
        by_init = [gq.load_subsets(out, seed, tasks, aggregator, init) for init in INITS]
        results = by_init[0]
        index = {r.tasks: s for s, r in enumerate(results)}
        exhaustive = (sum(r.seconds for r in results), sum(r.steps for r in results))
        table, _ = pair_table(results, tasks)
        for budget in BUDGETS:
            picks = _picks(
                out, seed, tasks, results, budget, table, exhaustive, shortlist, fraction, notes
            )
            for delta, only in gq.DELTAS.items():
                groupings, dm = mean_ground_truth(by_init, tasks, directions, budget, only)
                position = {g: k for k, g in enumerate(groupings)}
                held = dm[list(HELD_OUT)].mean(axis=0)
                every = dm.mean(axis=0)
                # exhaustive search's own pick: the best grouping by the one-training ground truth
                own = groupings[int(dm[0].argmin())]
                method_picks = picks | {
                    "exhaustive:test": ([results[s].tasks for s in own], *exhaustive)
                }
                for method, (groups, seconds, steps) in method_picks.items():
                    key = tuple(
                        sorted(index[tuple(sorted(g, key=order.__getitem__))] for g in groups)
                    )
                    k = position[key]
                    rows.append(
                        {
                            "seed": seed,
                            "budget": budget,
                            "delta": delta,
                            "method": method,
                            "groups": [list(results[s].tasks) for s in key],
                            **held_out_score(float(held[k]), held),
                            "delta_m_inits": [float(dm[i, k]) for i in range(len(INITS))],
                            "regret_all_inits": float(every[k] - every.min()),
                            "regret_init0": float(dm[0, k] - dm[0].min()),
                            "cost_seconds": seconds / exhaustive[0],
                            "cost_steps": steps / exhaustive[1] if steps else None,
                        }
                    )
    return {
        "protocol": {
            "inits": list(INITS),
            "held_out": list(HELD_OUT),
            "score": "Δm of a grouping = mean over the held-out initialisations of "
            "grouping_quality.ground_truth (each serving by its own validation losses)",
            "shortlist": shortlist,
            "fraction": fraction,
        },
        "seeds": complete,
        "incomplete": {str(s): c for s, c in incomplete.items()},
        "notes": list(dict.fromkeys(notes)),
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per Δm kind, budget and method over the seeds: regret and rank mean / worst, cost."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["delta"], r["budget"], r["method"]), []).append(r)
    return [
        {
            "delta": delta,
            "budget": budget,
            "method": method,
            "seeds": [r["seed"] for r in chosen],
            "regret_mean": statistics.mean(r["regret"] for r in chosen),
            "regret_worst": max(r["regret"] for r in chosen),
            "rank_mean": statistics.mean(r["rank"] for r in chosen),
            "rank_worst": max(r["rank"] for r in chosen),
            "groupings": chosen[0]["groupings"],
            "cost_seconds": statistics.mean(r["cost_seconds"] for r in chosen),
        }
        for (delta, budget, method), chosen in groups.items()
    ]


def print_held_out(summary: dict) -> None:
    print(
        f"Held-out protocol: methods select from initialisation 0, scored by the mean Δm over "
        f"initialisations {', '.join(map(str, HELD_OUT))}. Seeds scored: "
        f"{summary['seeds'] or 'none'}; incomplete (trainings found per initialisation): "
        f"{summary['incomplete'] or 'none'}.\n"
    )
    for note in summary["notes"]:
        print(f"- {note}")
    print(
        "\n| seed | B | Δm on | method | held-out Δm | best | regret | rank | regret, 3-init mean "
        "| regret, init 0 | cost (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in summary["rows"]:
        print(
            f"| {r['seed']} | {r['budget']} | {r['delta']} | {r['method']} | "
            f"{r['delta_m']:+.2f} | {r['best']:+.2f} | {r['regret']:.2f} | "
            f"{r['rank']}/{r['groupings']} | {r['regret_all_inits']:.2f} | "
            f"{r['regret_init0']:.2f} | {r['cost_seconds']:.4f} |"
        )
    print(
        "\n| Δm on | B | method | seeds | regret mean / worst | rank mean / worst | "
        "cost vs exhaustive |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in summary["summary"]:
        print(
            f"| {s['delta']} | {s['budget']} | {s['method']} | {len(s['seeds'])} | "
            f"{s['regret_mean']:.2f} / {s['regret_worst']:.2f} | "
            f"{s['rank_mean']:.1f} / {s['rank_worst']} of {s['groupings']} | "
            f"{s['cost_seconds']:.4f} |"
        )


def plot_cost_regret(summary: dict, path: Path, delta: str = "loss") -> None:
    """Cost (fraction of exhaustive search, log) against held-out regret on ``delta``: one
    panel per budget, one marker per method at its mean, light points for the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in summary["rows"]))
    markers = "os^vD<>pPX*h"
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(BUDGETS), figsize=(5.5 * len(BUDGETS) + 2, 4.5), squeeze=False)
    for ax, budget in zip(axes[0], BUDGETS, strict=True):
        for m, method in enumerate(methods):
            rows = [
                r
                for r in summary["rows"]
                if r["method"] == method and r["budget"] == budget and r["delta"] == delta
            ]
            if not rows:
                continue
            style = {"marker": markers[m % len(markers)], "color": colors(m % 10)}
            cost = [r["cost_seconds"] for r in rows]
            regret = [r["regret"] for r in rows]
            ax.scatter(cost, regret, alpha=0.3, s=18, **style)
            ax.scatter(np.mean(cost), np.mean(regret), s=70, label=method, edgecolor="k", **style)
        ax.set_xscale("log")
        ax.set_xlabel("compute, fraction of exhaustive search (seconds)")
        ax.set_ylabel(f"held-out regret, Δm points ({delta})")
        ax.set_title(f"B = {budget}")
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    seeds = ", ".join(map(str, summary["seeds"])) or "none"
    fig.suptitle(
        f"Selection from initialisation 0, scored on initialisations "
        f"{', '.join(map(str, HELD_OUT))} (data seeds {seeds}; large: mean, light: per seed)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
        "--phase",
        choices=["all", "train", "affinity", "verify", "score", "heldout"],
        default="all",
        help="score: one training per subset; heldout: issue 9's 3-initialisation protocol",
    )
    args = parser.parse_args(argv)
    out = args.out
    if args.phase in ("all", "train", "affinity"):
        phases = ["train", "affinity"] if args.phase == "all" else [args.phase]
        common = ["--recipe", args.recipe, "--workers", str(args.workers), "--out", str(out)]
        for phase in phases:
            gq.main([*common, "--phase", phase, "--seeds", *map(str, args.seeds)])
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
    if args.phase in ("all", "heldout"):
        spec, bench = gq.recipe_benchmark(args.recipe, args.seeds[0])
        tasks = bench.tasks.names
        directions = {t: {LOSS: False, **bench.tasks[t].higher_is_better} for t in tasks}
        aggregator = gq.train_settings(spec, bench, args.seeds[0]).aggregator
        summary = score_held_out(
            out, args.seeds, tasks, aggregator, directions, args.shortlist, args.fraction
        )
        (out / "selection_quality_heldout.json").write_text(json.dumps(summary, indent=1))
        print_held_out(summary)
        if summary["rows"]:
            plot_cost_regret(summary, out / "selection_quality_heldout.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
