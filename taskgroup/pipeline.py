"""The stages of a run, each reading and writing files in one run directory.

affinity → group → train → report. Each stage is a function the CLI commands (and ``taskgroup
run``) call; each records itself in ``manifest.json`` and writes its outputs atomically, so a
run can stop after any stage and be resumed or continued by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping, select_groups
from taskgroup.grouping import certify as certify_grouping
from taskgroup.grouping import sweep as sweep_budgets
from taskgroup.manifest import MANIFEST, claim_run_dir, record_stage, run_identity
from taskgroup.recipes import Recipe
from taskgroup.storage import read_json, write_atomic, write_json
from taskgroup.training.events import EventLog
from taskgroup.training.groups import RESULTS, GroupResults, check_groups, train_groups

AFFINITY = "affinity.json"
GROUPS = "groups.json"
REPORT = "report.html"
NORMALIZE = (None, "source")


def affinity_stage(
    spec: Recipe,
    run_dir: Path,
    settings: Mapping[str, Any],
    *,
    progress: bool = False,
    device: str | None = None,
) -> AffinityMatrix:
    """Co-train the recipe's tasks and write ``affinity.json``, its plots and the event log."""
    from taskgroup.report import plots
    from taskgroup.training.cotrain import measure_affinity

    bench = spec.load_benchmark()
    claim_run_dir(run_dir, spec.identity() | {"tasks": bench.tasks.names})
    started = time.perf_counter()
    with EventLog(run_dir, "affinity", "cotrain") as log:

        def on_step(step: int, losses) -> None:
            if (step + 1) % 10 == 0:
                log.scalars(
                    step + 1, "loss", dict(zip(bench.tasks.names, losses.tolist(), strict=True))
                )

        result = measure_affinity(
            bench, seed=spec.seed, progress=progress, on_step=on_step, device=device, **settings
        )
        for step, matrix in zip(result.trace_steps, result.trace, strict=True):
            log.scalars(
                int(step),
                "affinity",
                {
                    f"{source}->{target}": float(matrix[i, j])
                    for i, source in enumerate(result.tasks)
                    for j, target in enumerate(result.tasks)
                    if i != j
                },
            )
    seconds = time.perf_counter() - started
    figures = {
        "affinity_heatmap.png": plots.affinity_heatmap(result),
        "affinity_over_training.png": plots.affinity_over_training(result),
    }
    result.save(run_dir / AFFINITY)
    for name, png in figures.items():
        write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "affinity",
        {
            "recipe": spec.to_dict() | {"affinity": dict(settings)},
            "benchmark_info": dict(bench.info),
            "tasks": result.tasks,
            "seconds": round(seconds, 3),
            "outputs": [AFFINITY, *figures],
        },
    )
    return result


def group_stage(
    affinity_path: Path | None,
    run_dir: Path,
    *,
    budget: int,
    method: str = "auto",
    partition: bool = False,
    sweep: bool = False,
    singleton_score: float | None = None,
    time_limit: float | None = None,
    pairs: Path | None = None,
    normalize: str | None = None,
    certify: float | None = None,
    on_certificate_round: Callable[[int, float, float], None] | None = None,
) -> tuple[Grouping, list[Grouping]]:
    """Select groups from ``affinity_path``, or with ``method="hoa"`` from the pair table
    ``pairs`` (``pairs.json`` of :func:`~taskgroup.pair_results`; its HOA score matrix is what
    the graph shows); write ``groups.json`` (with the sweep of budgets 1..n when ``sweep``) and
    its plots. ``normalize="source"`` selects from the relative affinity
    (:meth:`AffinityMatrix.relative`). ``certify``: then spend up to that many seconds on the
    chosen grouping's semidefinite certificate (:func:`taskgroup.grouping.certify`; its rounds
    reported to ``on_certificate_round``). Returns the chosen grouping and the sweep."""
    from taskgroup.grouping.pairs import PairTable
    from taskgroup.report import plots

    if (method == "hoa") != (pairs is not None):
        raise ValueError("method 'hoa' selects from a pair table (--pairs FILE), and only it")
    if pairs is not None:
        source = PairTable.load(pairs)
        affinity = source.affinity()
    else:
        source = affinity = AffinityMatrix.load(affinity_path)
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if normalize == "source":
        if pairs is not None:
            raise ValueError("normalize applies to an affinity matrix, not to a pair table")
        source = affinity = affinity.relative()
    n = len(affinity.tasks)
    if not isinstance(budget, int) or not 1 <= budget <= n:
        raise ValueError(f"the budget must lie in 1..{n} (the number of tasks), got {budget!r}")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    if certify is not None and (pairs is not None or not certify > 0):
        raise ValueError(
            "--certify takes a positive number of seconds and applies to an affinity matrix, "
            f"not a pair table; got {certify!r}{' with --pairs' if pairs is not None else ''}"
        )
    run_identity(run_dir)  # a corrupt manifest fails here, before anything is written
    options = {
        "method": method,
        "partition": partition,
        "singleton_score": singleton_score,
        "time_limit": time_limit,
    }
    started = time.perf_counter()
    if sweep:
        curve = sweep_budgets(source, **options)
        chosen = curve[budget - 1]
    else:
        curve = []
        chosen = select_groups(source, budget, **options)
    if certify is not None:
        chosen = certify_grouping(source, chosen, time_limit=certify, on_round=on_certificate_round)
    seconds = time.perf_counter() - started
    figures = {"groups_graph.png": plots.grouping_graph(affinity, chosen)}
    if sweep:
        figures["score_vs_budget.png"] = plots.score_vs_budget(curve, chosen=budget)
    inputs = {"affinity": str(affinity_path)} if pairs is None else {"pairs": str(pairs)}
    record = chosen.to_dict() | inputs | {"normalize": normalize}
    if sweep:
        record["sweep"] = [
            {
                "budget": g.budget,
                "score": g.score,
                "bound": g.bound,
                "optimal": g.optimal,
                "method": g.method,
                "seconds": round(g.seconds, 6),
                "groups": [list(members) for members in g.groups],
            }
            for g in curve
        ]
    write_json(run_dir / GROUPS, record)
    for name, png in figures.items():
        write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "group",
        {
            **inputs,
            "budget": budget,
            **options,
            "sweep": sweep,
            "normalize": normalize,
            "method_used": chosen.method,
            "score": chosen.score,
            "bound": chosen.bound,
            "optimal": chosen.optimal,
            "seconds": round(seconds, 3),
            "outputs": [GROUPS, *figures],
        },
    )
    return chosen, curve


def run_recipe(run_dir: Path, recipe: Recipe | None) -> Recipe:
    """The recipe of a run: ``recipe`` when given (the stages refuse a directory that holds
    another benchmark's run), else the one the directory's manifest recorded last."""
    if recipe is not None:
        return recipe
    path = run_dir / MANIFEST
    manifest = read_json(path) if path.exists() else {}
    stages = manifest.get("stages", {}) if isinstance(manifest, dict) else {}
    for stage in ("train", "affinity"):
        if "recipe" in stages.get(stage, {}):
            return Recipe.from_dict(stages[stage]["recipe"], f"{path} ({stage} stage)")
    raise ValueError(
        f"{run_dir} records no recipe (no manifest.json from `taskgroup affinity` or "
        f"`taskgroup run`); pass the recipe with --recipe"
    )


def train_stage(
    run_dir: Path,
    spec: Recipe,
    groups: list[tuple[str, ...]],
    settings: Mapping[str, Any],
    *,
    progress: bool = False,
    device: str | None = None,
) -> GroupResults:
    """Train every group and the baselines (``settings``: the recipe's ``[train]`` table with
    overrides); write ``results.json``. Finished trainings in ``run_dir`` are not repeated."""
    from taskgroup.report import plots

    bench = spec.load_benchmark()
    claim_run_dir(run_dir, spec.identity() | {"tasks": bench.tasks.names})
    groups = check_groups(groups, bench.tasks.names)
    options = dict(settings)
    aggregator = options.pop("aggregator", "mean")
    started = time.perf_counter()
    results = train_groups(
        bench,
        groups,
        aggregator,
        seed=spec.seed,
        out=run_dir,
        progress=progress,
        device=device,
        **options,
    )
    seconds = time.perf_counter() - started
    figures = {}
    if results.single is not None:
        figures["results.png"] = plots.task_results(results)
        for name, png in figures.items():
            write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "train",
        {
            "recipe": spec.to_dict(),
            "groups": [list(g) for g in groups],
            "settings": results.settings,
            "seconds": round(seconds, 3),
            "outputs": [RESULTS, *figures],
        },
    )
    return results


def report_stage(run_dir: Path) -> Path:
    """Write ``report.html`` from what the run directory holds."""
    from taskgroup.report.html import render_report

    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    page = render_report(run_dir)
    path = write_atomic(run_dir / REPORT, page)
    record_stage(run_dir, "report", {"outputs": [REPORT]})
    return path
