"""The stages of a run and the run loop, each reading and writing files in one run directory.

affinity → group → train → report. Each stage is a function that the ``taskgroup`` commands call
and :func:`run` chains; each records itself in ``manifest.json`` and writes its outputs
atomically, so a run can stop after any stage and be resumed or continued by hand. Every input
is checked before a stage writes anything; :func:`run` checks the whole recipe, the device and
the run directory before its first stage. Each stage, and :func:`run` as a whole, holds the
run directory's lock (:func:`taskgroup.rundir.hold_run_dir`): a second command on the same
directory is refused, naming the process that works there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taskgroup import distributed
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.data.benchmark import Benchmark, resolve_device
from taskgroup.grouping import Grouping, PairTable, select_groups
from taskgroup.grouping import certify as certify_grouping
from taskgroup.grouping import sweep as sweep_budgets
from taskgroup.grouping.objective import check_groups
from taskgroup.recipe import Recipe
from taskgroup.report import plots
from taskgroup.report.freshness import AFFINITY_FINGERPRINT, affinity_fingerprint
from taskgroup.report.html import render_report
from taskgroup.rundir import (
    AFFINITY,
    AFFINITY_HEATMAP,
    AFFINITY_OVER_TRAINING,
    GROUPS,
    GROUPS_GRAPH,
    REPORT,
    RESULTS,
    RESULTS_PLOT,
    SCORE_VS_BUDGET,
    TENSORBOARD,
    check_identity,
    claim_run_dir,
    holds_run_dir,
    read_manifest,
    record_stage,
    stage_record,
)
from taskgroup.settings import GroupSettings, SettingError
from taskgroup.storage import fingerprint, read_json, write_atomic, write_json
from taskgroup.training.cotrain import measure_affinity
from taskgroup.training.events import EventLog
from taskgroup.training.groups import GroupResults, groups_fingerprint, train_groups

OnStage = Callable[[str, Any], None]
OnReuse = Callable[[str], None]  # hears the one line that says a finished stage is reused
AFFINITY_RUN = "cotrain"  # the affinity stage's run in the event log and TensorBoard
PAIRS_FINGERPRINT = "pairs_fingerprint"  # what the group stage records of a pair table


def reuse_line(stage: str, path: Path, force: str = "recomputes it") -> str:
    """What a command prints when it reuses a finished stage instead of recomputing it."""
    return f"{stage}: reusing {path}, finished with the same inputs; --force {force}"


def _reuse(stage: str, path: Path, on_reuse: OnReuse | None, force: str = "recomputes it"):
    if on_reuse is not None:
        on_reuse(reuse_line(stage, path, force))


def _finished_record(run_dir: Path, stage: str) -> dict[str, Any] | None:
    """What ``stage`` recorded in the manifest, when every output it lists is still there."""
    done = stage_record(run_dir, stage)
    if done is None or not all((run_dir / name).exists() for name in done.get("outputs", [])):
        return None
    return done


def _same_recipe(done: dict[str, Any], recipe: Recipe, keys: tuple[str, ...]) -> bool:
    """Whether the recipe ``done`` records agrees with ``recipe`` on ``keys`` (the ``train``
    settings compared without ``workers``, which changes how networks are scheduled only)."""
    recorded = done.get("recipe")
    if not isinstance(recorded, dict):
        return False
    mine = recipe.to_dict()

    def part(record: dict[str, Any], key: str) -> Any:
        value = record.get(key)
        return {k: v for k, v in value.items() if k != "workers"} if key == "train" else value

    return all(part(recorded, k) == part(mine, k) for k in keys)


@holds_run_dir
def affinity_stage(
    recipe: Recipe,
    run_dir: Path,
    *,
    bench: Benchmark | None = None,
    progress: bool = False,
    device: str | None = None,
    force: bool = False,
    on_reuse: OnReuse | None = None,
) -> AffinityMatrix:
    """Co-train the recipe's tasks with ``recipe.affinity`` and write ``affinity.json``, its
    plots and the event log. ``bench``: the recipe's benchmark when already loaded.

    When ``run_dir`` holds this run's affinity, finished with the same benchmark, tasks, seed
    and ``[affinity]`` settings (:func:`affinity_finished`), it is returned as it is and nothing
    is written (``on_reuse`` hears :func:`reuse_line`), unless ``force``. A measurement replaces
    the TensorBoard event file of an earlier one in ``run_dir``, so TensorBoard shows one run."""
    bench = bench or recipe.load_benchmark()
    identity = recipe.identity(bench)
    if not force and check_identity(run_dir, identity) and affinity_finished(run_dir, recipe):
        _reuse("affinity", run_dir / AFFINITY, on_reuse)
        return AffinityMatrix.load(run_dir / AFFINITY)
    claim_run_dir(run_dir, identity)
    started = time.perf_counter()
    earlier = sorted((run_dir / TENSORBOARD / "affinity" / AFFINITY_RUN).glob("events.out.*"))
    result = _measure(recipe, run_dir, bench, progress, device)
    seconds = time.perf_counter() - started
    figures = {
        AFFINITY_HEATMAP: plots.affinity_heatmap(result),
        AFFINITY_OVER_TRAINING: plots.affinity_over_training(result),
    }
    result.save(run_dir / AFFINITY)
    for name, png in figures.items():
        write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "affinity",
        {
            "recipe": recipe.to_dict(),
            "benchmark_info": dict(bench.info),
            "tasks": result.tasks,
            "seconds": round(seconds, 3),
            "outputs": [AFFINITY, *figures],
        },
    )
    for path in earlier:  # the new measurement is complete: its event file replaces these
        path.unlink(missing_ok=True)
    return result


def _measure(
    recipe: Recipe, run_dir: Path, bench: Benchmark, progress: bool, device: str | None
) -> AffinityMatrix:
    """The co-training run of ``recipe.affinity``, its losses and affinities in the event log."""
    with EventLog(run_dir, "affinity", AFFINITY_RUN) as log:

        def on_step(step: int, losses) -> None:
            if (step + 1) % 10 == 0:
                log.scalars(
                    step + 1, "loss", dict(zip(bench.tasks.names, losses.tolist(), strict=True))
                )

        result = measure_affinity(
            bench,
            recipe.affinity,
            seed=recipe.seed,
            progress=progress,
            on_step=on_step,
            device=device,
        )
        for step, matrix in zip(result.trace_steps, result.trace, strict=True):
            log.scalars(int(step), "affinity", _off_diagonal(result.tasks, matrix))
    return result


def _off_diagonal(tasks: list[str], matrix) -> dict[str, float]:
    return {
        f"{source}->{target}": float(matrix[i, j])
        for i, source in enumerate(tasks)
        for j, target in enumerate(tasks)
        if i != j
    }


def affinity_finished(run_dir: Path, recipe: Recipe) -> bool:
    """Whether ``run_dir`` holds an affinity measured with ``recipe``'s benchmark, tasks, seed
    and ``[affinity]`` settings, with all its outputs."""
    done = _finished_record(run_dir, "affinity")
    return done is not None and _same_recipe(done, recipe, ("seed", "benchmark", "affinity"))


@holds_run_dir
def group_stage(
    affinity_path: Path | None,
    run_dir: Path,
    settings: GroupSettings,
    *,
    pairs: Path | None = None,
    certify: float | None = None,
    on_certificate_round: Callable[[int, float, float], None] | None = None,
    force: bool = False,
    on_reuse: OnReuse | None = None,
) -> tuple[Grouping, list[Grouping]]:
    """Select groups with ``settings`` from ``affinity_path``, or with ``method="hoa"`` from
    the pair table ``pairs`` (``pairs.json`` of :func:`~taskgroup.pair_results`; its HOA score
    matrix is what the graph shows); write ``groups.json`` (with the sweep of budgets 1..n when
    ``settings.sweep``) and its plots. ``certify``: then spend up to that many seconds on the
    chosen grouping's semidefinite certificate (:func:`taskgroup.grouping.certify`; its rounds
    reported to ``on_certificate_round``). Returns the chosen grouping and the sweep.

    When ``run_dir`` holds groups selected from the same input (the same affinity or pair
    table, by fingerprint) with the same settings and certificate, they are returned as they
    are (without the sweep) and nothing is written (``on_reuse`` hears :func:`reuse_line`),
    unless ``force``."""
    source, affinity = _selection_source(affinity_path, settings, pairs)
    settings.check_budget(len(affinity.tasks))
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    if certify is not None and (pairs is not None or not certify > 0):
        raise ValueError(
            "--certify takes a positive number of seconds and applies to an affinity matrix, "
            f"not a pair table; got {certify!r}{' with --pairs' if pairs is not None else ''}"
        )
    read_manifest(run_dir)  # a corrupt manifest fails here, before anything is written
    inputs = (
        {"affinity": str(affinity_path), AFFINITY_FINGERPRINT: affinity_fingerprint(affinity_path)}
        if pairs is None
        else {"pairs": str(pairs), PAIRS_FINGERPRINT: fingerprint(read_json(pairs))}
    )
    # the input by its content, not its path: a moved run directory is still the same run
    made = {k: v for k, v in inputs.items() if k not in ("affinity", "pairs")}
    expected = {**made, **settings.to_dict(), "certify": certify}
    done = None if force else _finished_record(run_dir, "group")
    if done is not None and all(done.get(k) == v for k, v in expected.items()):
        _reuse("group", run_dir / GROUPS, on_reuse)
        return Grouping.load(run_dir / GROUPS), []
    started = time.perf_counter()
    chosen, curve = _select(source, settings)
    if certify is not None:
        chosen = certify_grouping(source, chosen, time_limit=certify, on_round=on_certificate_round)
    seconds = time.perf_counter() - started
    outputs = _write_grouping(run_dir, affinity, chosen, curve, inputs, settings)
    record_stage(
        run_dir,
        "group",
        {
            **inputs,
            **expected,
            "method_used": chosen.method,
            "score": chosen.score,
            "bound": chosen.bound,
            "optimal": chosen.optimal,
            "seconds": round(seconds, 3),
            "outputs": outputs,
        },
    )
    return chosen, curve


def _selection_source(affinity_path: Path | None, settings: GroupSettings, pairs: Path | None):
    """What the groups are selected from (an affinity matrix or a pair table) and the matrix
    the graph shows."""
    if (settings.method == "hoa") != (pairs is not None):
        raise ValueError("method 'hoa' selects from a pair table (--pairs FILE), and only it")
    if pairs is not None:
        if settings.normalize is not None:
            raise ValueError("normalize applies to an affinity matrix, not to a pair table")
        table = PairTable.load(pairs)
        return table, table.affinity()
    affinity = AffinityMatrix.load(affinity_path)
    if settings.normalize == "source":
        affinity = affinity.relative()
    return affinity, affinity


def _select(source, settings: GroupSettings) -> tuple[Grouping, list[Grouping]]:
    options = {
        "method": settings.method,
        "partition": settings.partition,
        "singleton_score": settings.singleton_score,
        "time_limit": settings.time_limit,
    }
    if not settings.sweep:
        return select_groups(source, settings.budget, **options), []
    curve = sweep_budgets(source, **options)
    return curve[settings.budget - 1], curve


def _write_grouping(
    run_dir: Path,
    affinity: AffinityMatrix,
    chosen: Grouping,
    curve: list[Grouping],
    inputs: dict[str, str],
    settings: GroupSettings,
) -> list[str]:
    """Write ``groups.json`` and the plots; returns the names written."""
    figures = {GROUPS_GRAPH: plots.grouping_graph(affinity, chosen)}
    if curve:
        figures[SCORE_VS_BUDGET] = plots.score_vs_budget(curve, chosen=settings.budget)
    record = chosen.to_dict() | inputs | {"normalize": settings.normalize}
    if curve:
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
    return [GROUPS, *figures]


def recorded_recipe(run_dir: Path, recipe: Recipe | None) -> Recipe:
    """The recipe of a run: ``recipe`` when given (the stages refuse a directory that holds
    another benchmark's run), else the one the directory's manifest recorded last."""
    if recipe is not None:
        return recipe
    for stage in ("train", "affinity"):
        record = stage_record(run_dir, stage)
        if record is not None and "recipe" in record:
            return Recipe.from_dict(record["recipe"], f"{run_dir} manifest ({stage} stage)")
    raise ValueError(
        f"{run_dir} records no recipe (no manifest.json from `taskgroup affinity` or "
        f"`taskgroup run`); pass the recipe with --recipe"
    )


@holds_run_dir
def train_stage(
    run_dir: Path,
    recipe: Recipe,
    groups: Sequence[Sequence[str]],
    *,
    bench: Benchmark | None = None,
    progress: bool = False,
    device: str | None = None,
    force: bool = False,
    on_reuse: OnReuse | None = None,
) -> GroupResults:
    """Train every group and the baselines with ``recipe.train``; write ``results.json``.
    Finished trainings in ``run_dir`` are not repeated.

    When ``run_dir`` holds results of these groups with the same benchmark, seed and
    ``[train]`` settings (``workers`` aside), they are returned as they are and nothing is
    written (``on_reuse`` hears :func:`reuse_line`), unless ``force``: then every network of
    the groups and baselines is retrained from scratch (``train_groups(force=True)``: the old
    ``results.json``, its plot and those networks are removed first, so a killed forced retrain
    leaves no old results, and rerunning the stage resumes the new trainings)."""
    bench = bench or recipe.load_benchmark()
    groups = check_groups(groups, bench.tasks.names)
    identity = recipe.identity(bench)
    if not force and check_identity(run_dir, identity) and train_finished(run_dir, recipe, groups):
        _reuse("train", run_dir / RESULTS, on_reuse, "retrains the networks")
        return GroupResults.load(run_dir / RESULTS)
    claim_run_dir(run_dir, identity)
    if force:
        (run_dir / RESULTS_PLOT).unlink(missing_ok=True)
    started = time.perf_counter()
    results = train_groups(
        bench,
        groups,
        settings=recipe.train,
        out=run_dir,
        progress=progress,
        device=device,
        force=force,
    )
    seconds = time.perf_counter() - started
    figures = {}
    if results.single is not None:
        figures[RESULTS_PLOT] = plots.task_results(results)
        for name, png in figures.items():
            write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "train",
        {
            "recipe": recipe.to_dict(),
            "groups": [list(g) for g in groups],
            "settings": results.settings,
            "seconds": round(seconds, 3),
            "outputs": [RESULTS, *figures],
        },
    )
    return results


def train_finished(run_dir: Path, recipe: Recipe, groups: Sequence[Sequence[str]]) -> bool:
    """Whether ``run_dir`` holds the results of ``groups`` trained with ``recipe``'s
    benchmark, tasks, seed and ``[train]`` settings (``workers`` aside), with all its outputs."""
    done = _finished_record(run_dir, "train")
    if done is None or done.get("groups") != [list(g) for g in groups]:
        return False
    if not _same_recipe(done, recipe, ("seed", "benchmark", "train")):
        return False
    try:  # the results these networks gave, not a file written for other groups since
        results = GroupResults.load(run_dir / RESULTS)
    except ValueError:
        return False
    return results.grouping_fingerprint == groups_fingerprint(groups)


@holds_run_dir
def report_stage(run_dir: Path) -> Path:
    """Write ``report.html`` from what the run directory holds."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    path = write_atomic(run_dir / REPORT, render_report(run_dir))
    record_stage(run_dir, "report", {"outputs": [REPORT]})
    return path


def refresh_report(run_dir: Path) -> Path | None:
    """Rewrite ``report.html`` when ``run_dir`` holds one, so that after ``taskgroup group``
    or ``train`` it shows the new stage (and what it made stale); ``None`` when there is none."""
    return report_stage(run_dir) if (run_dir / REPORT).exists() else None


def check_run(recipe: Recipe, run_dir: Path, device: str | None) -> Benchmark:
    """Everything :func:`run` can check before it writes: the device, the benchmark and its
    tasks, the budget against them, and that ``run_dir`` holds no other run. Returns the
    benchmark."""
    resolve_device(device)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    bench = recipe.load_benchmark()
    try:
        recipe.group.check_budget(len(bench.tasks.names))
    except SettingError as e:
        raise e.named(f"{recipe.source}: [group] {e.key}") from None
    check_identity(run_dir, recipe.identity(bench))
    return bench


@holds_run_dir
def run(
    recipe: Recipe,
    run_dir: Path,
    *,
    progress: bool = False,
    device: str | None = None,
    on_stage: OnStage | None = None,
    force: bool = False,
    on_reuse: OnReuse | None = None,
) -> Path:
    """The whole pipeline in ``run_dir``: affinity, groups, training, report. A stage that
    ``run_dir`` holds finished with the same inputs is reused (``on_reuse`` hears which;
    ``force``: every stage is made again, every network retrained; otherwise finished networks
    are never retrained).
    ``on_stage(name, result)`` hears of each stage as it ends (``"affinity"``: the matrix,
    ``"group"``: ``(grouping, sweep)``, ``"train"``: the results, ``"report"``: the page's
    path). Returns the path of ``report.html``."""
    bench = check_run(recipe, run_dir, device)
    tell = on_stage or (lambda stage, result: None)
    common = {"force": force, "on_reuse": on_reuse}
    tell(
        "affinity",
        affinity_stage(recipe, run_dir, bench=bench, progress=progress, device=device, **common),
    )
    _after_rank_0_wrote()
    chosen, curve = group_stage(run_dir / AFFINITY, run_dir, recipe.group, **common)
    tell("group", (chosen, curve))
    results = train_stage(
        run_dir, recipe, chosen.groups, bench=bench, progress=progress, device=device, **common
    )
    tell("train", results)
    _after_rank_0_wrote()
    page = report_stage(run_dir)
    tell("report", page)
    return page


def _after_rank_0_wrote() -> None:
    """In a distributed run, wait until every rank is here: rank 0 writes the files that the
    next stage reads on every rank (``affinity.json``, ``results.json``)."""
    if distributed.active():
        import torch.distributed as dist

        dist.barrier()
