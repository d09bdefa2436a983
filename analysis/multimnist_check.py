"""Does grouping matter on ``multimnist``? All tasks together against a few candidate groupings.

For each data seed, the packaged ``multimnist`` recipe's six tasks are trained with the recipe's
``[train]`` schedule by ``tg.train_groups`` (every network with ``--inits`` initialisations):
each task alone, all six together, and a few hand-picked groupings of 2 and 3 networks. Δm
(percent, lower is better) against the single-task networks, on test losses and on the tasks'
metrics; a task is served by the grouping's network with the lowest validation loss on it. The
candidates are not an exhaustive search: the best of them is an upper bound on the best grouping.

Also reports the seconds of one network (this process's CPU time, one torch thread).

    nice -n 10 python analysis/multimnist_check.py --seeds 0 1 2 --inits 2 \
        --out /tmp/multimnist_check > analysis/results/multimnist_check.txt

Resumable: a second call with the same ``--out`` retrains nothing that finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import taskgroup as tg
from taskgroup.recipe import load_recipe
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import train_group

RESULTS = Path(__file__).resolve().parent / "results"
L = ("left_class", "left_parity", "left_ink")
R = ("right_class", "right_ge5", "sum")
CANDIDATES = {
    "by side (B=2)": [L, R],
    "by kind (B=2)": [
        ("left_class", "right_class", "sum"),
        ("left_parity", "right_ge5", "left_ink"),
    ],
    "side pairs + sum,ink (B=3)": [L[:2], R[:2], ("sum", "left_ink")],
    "by side + classes,sum (B=3)": [L, R[:2], ("left_class", "right_class", "sum")],
}


def run_seed(seed: int, inits: int, out: Path) -> dict:
    """Every candidate's results on data seed ``seed`` (baselines trained once, then reused)."""
    spec = load_recipe("multimnist").override(seed=seed)
    bench = spec.load_benchmark()
    settings = dataclasses.replace(spec.train, seed=seed)
    rows = {}
    for name, grouping in CANDIDATES.items():
        results = tg.train_groups(
            bench, grouping, settings=settings, seeds=inits, out=out / f"seed{seed}", progress=False
        )
        rows[name] = {
            "groups": [list(g) for g in grouping],
            "delta_m_loss": results.delta_m_interval(only=[LOSS]).values,
            "delta_m_metric": results.delta_m_interval().values,
        }
    rows["all together"] = {
        "groups": [list(bench.tasks.names)],
        "delta_m_loss": results.delta_m_together_interval(only=[LOSS]).values,
        "delta_m_metric": results.delta_m_together_interval().values,
    }
    per_task = {
        kind: {
            t: {m: i.values for m, i in v.items()}
            for t, v in results.metric_intervals(kind).items()
        }
        for kind in ("single", "together")
    }
    seconds = [r.seconds for g in results.per_seed for r in [*g.single.values(), g.together]]
    return {"candidates": rows, "metrics": per_task, "seconds": seconds}


def network_seconds(seed: int) -> dict[str, float]:
    """CPU seconds of one network of the recipe's schedule, alone and with all six tasks."""
    spec = load_recipe("multimnist").override(seed=seed)
    bench = spec.load_benchmark()
    settings = dataclasses.replace(spec.train, seed=seed).resolve(bench.defaults)
    timed = {}
    for label, tasks in (
        ("left_class alone", ("left_class",)),
        ("all six", tuple(bench.tasks.names)),
    ):
        start = time.process_time()
        train_group(bench, tasks, settings, progress=False)
        timed[label] = time.process_time() - start
    return timed


def mean_ci(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():+.1f}"
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():+.1f} ± {half:.1f}"


def report(seeds: dict[int, dict], timed: dict[str, float]) -> str:
    lines = ["## Δm against single-task networks (percent, lower is better)", ""]
    lines.append("mean ± 1.96·s.e. over data seeds × initialisations")
    lines.append("")
    lines.append("| grouping | networks | Δm test loss | Δm metrics | per data seed (loss) |")
    lines.append("|---|---:|---:|---:|---|")
    names = list(next(iter(seeds.values()))["candidates"])
    for name in sorted(names, key=lambda n: n != "all together"):
        loss = [v for s in seeds.values() for v in s["candidates"][name]["delta_m_loss"]]
        metric = [v for s in seeds.values() for v in s["candidates"][name]["delta_m_metric"]]
        per = ", ".join(
            f"{np.mean(s['candidates'][name]['delta_m_loss']):+.1f}" for s in seeds.values()
        )
        groups = len(next(iter(seeds.values()))["candidates"][name]["groups"])
        lines.append(f"| {name} | {groups} | {mean_ci(loss)} | {mean_ci(metric)} | {per} |")
    lines += ["", "## Test metrics: each task alone and all together", ""]
    lines.append("| task | metric | alone | all together |")
    lines.append("|---|---|---:|---:|")
    first = next(iter(seeds.values()))["metrics"]
    for task, metrics in first["single"].items():
        for metric in metrics:
            alone = [v for s in seeds.values() for v in s["metrics"]["single"][task][metric]]
            together = [v for s in seeds.values() for v in s["metrics"]["together"][task][metric]]
            lines.append(f"| {task} | {metric} | {np.mean(alone):.4g} | {np.mean(together):.4g} |")
    seconds = [v for s in seeds.values() for v in s["seconds"]]
    lines += ["", "## Seconds per network (recipe schedule, one torch thread)", ""]
    lines.append(
        f"- wall-clock of the baselines above: median {np.median(seconds):.1f} s, "
        f"max {np.max(seconds):.1f} s ({len(seconds)} networks; a shared machine)"
    )
    for label, value in timed.items():
        lines.append(f"- CPU time, {label}: {value:.2f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--inits", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/multimnist_check"))
    parser.add_argument("--json", type=Path, default=RESULTS / "multimnist_check.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    seeds = {seed: run_seed(seed, args.inits, args.out) for seed in args.seeds}
    timed = network_seconds(args.seeds[0])
    args.json.write_text(json.dumps({"seeds": seeds, "cpu_seconds": timed}, indent=1))
    print(report(seeds, timed))


if __name__ == "__main__":
    main()
