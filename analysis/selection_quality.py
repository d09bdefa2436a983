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
- **hoa f<x>** (``--phase heldout``): the same from those trainings cut to a fraction x of the
  schedule's steps (``HOA_FRACTIONS``: each network's validation losses at its best evaluation
  up to then, read from its history, ``cut_short``); cost = the seconds of the steps used.
- **verified**: ``verified_selection`` on the affinity of each ``--verify SIGNAL[:FRACTION]`` run
  (default the Adam lookahead; ``verified:<signal>`` for another, e.g. ``cosine``): ``--shortlist``
  groupings, a ``--fraction`` of the schedule, successive halving, short single-task
  references; cost = the co-training run plus its short trainings. ``--phase verify`` writes
  the picks beside the co-training runs (``--affinity-out``); ``--phase heldout`` keeps them in
  ``selection_affinity_<recipe>.json`` too, so the digests alone reproduce the table.
- **exhaustive**: every subset trained, the grouping with the best *validation* Δm on losses
  (what exhaustive search picks without test data); cost = 1.

Each pick is looked up in the ground truth (Δm on the test split against the single-task
subsets, each task served by the grouping's network with the lowest validation loss on it):
regret = Δm − best Δm, in points, lower is better. Costs are fractions of exhaustive search's
training seconds (and steps). Prints a markdown table and a summary (mean and worst regret per
method and budget), writes ``OUT/selection_quality.json``.

``--phase heldout`` is the trustworthy protocol (issue 9, generalised to K initialisations
for issue 16). One training per subset is noisy (the ground truth and exhaustive search's pick
share the same trainings), so every subset is trained with K ≥ 2 initialisations
(``grouping_quality.py --inits 1 2 ...``: ``OUT/seed<S>/init<k>``, training seed S + 1000 k).
On each data seed, a grouping's Δm is computed per initialisation as above; each method selects
from what initialisation 0 (and its co-training runs) shows and is scored by the mean over
initialisations 1..K−1, which it never saw: regret = its held-out Δm − the best held-out Δm,
rank (and top % = rank / groupings) among all groupings. A data seed is scored with every
complete initialisation (``--inits K``: exactly its first K; seeds with fewer are listed, not
scored), so seeds may differ in K while trainings are still running; the report names K per
seed. Per method and budget the summary gives the mean regret over seeds with a 95% bootstrap
interval (two-stage: data seeds resampled, then within each drawn seed its held-out
initialisations; ``bootstrap_regrets``), the paired difference to the noise floor
(``exhaustive``: exhaustive search's validation pick from initialisation 0, scored on the
others) with its interval, the mean top % and the cost.

Methods: TAG with every co-training run found (``affinity_<run>.json`` in ``--affinity-out``):
the Adam lookahead ``optimizer``, ``first_order``, ``cosine``, ``optimizer_scaled`` (Adam's
lookahead in a run on losses divided by their value at initialisation, ``measure_scaled``) and
the later literature's ``linearised`` (Grad-TAG-like) and ``representation_cosine``, each
as measured and ``relative()`` (``/source``); ``partition`` (disjoint groups) and
``singleton=0`` (a task may be trained alone) variants of the Adam lookahead and the cosine;
ensembles of signals (``ens:``, the mean of the matrices each divided by its mean |off-diagonal|
entry) and of ``SHORT_RUNS`` short runs with different seeds (``runs:``, each a third of the
schedule, beside one short run alone); hoa, verified (where ``--phase verify`` wrote its pick),
exhaustive (validation pick) and ``exhaustive:test`` (the best grouping by initialisation 0's
test Δm). Rows also carry the regret against the mean of all K initialisations and against
initialisation 0 alone. Writes ``selection_heldout_<recipe>.{json,txt,png}`` and the matrices
scored, without traces, as ``selection_affinity_<recipe>.json`` under ``--results``.

    python analysis/grouping_quality.py --seeds 0 1 2 3 --phase train --out runs/grouping_quality
    python analysis/selection_quality.py --phase affinity --out runs/grouping_quality
    python analysis/selection_quality.py --seeds 0 1 2 3 --out runs/grouping_quality
    python analysis/grouping_quality.py --seeds 0 1 2 3 --inits 1 2 3 4 --phase train
    python analysis/selection_quality.py --seeds 0 1 2 3 --phase heldout --out runs/grouping_quality

The tables of docs/selection.md, from the ground truth kept in the repository
(``analysis/results/ground_truth/<recipe>/``, restored into a temporary folder) and the kept
affinities (``analysis/results/selection_affinity_<recipe>.json``):

    python analysis/selection_quality.py --recipe multidigits --phase heldout --digests \
        --results analysis/results
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ground_truth
import grouping_quality as gq
import numpy as np
import torch

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.data.benchmark import Benchmark, make_optimizer
from taskgroup.grouping import Grouping, PairTable, select_groups
from taskgroup.settings import AffinitySettings
from taskgroup.training.cotrain import measure_affinity
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import GroupResult, group_key
from taskgroup.training.verified import verified_selection

BUDGETS = gq.BUDGETS
METHODS = ("tag", "hoa", "verified", "exhaustive")
SIGNAL = "optimizer"  # the recipe's lookahead: the one-run TAG pick and the verified shortlist
HOA_FRACTIONS = (1 / 6, 1 / 3)  # HOA also from its trainings cut to these parts of the schedule


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


def cut_short(result: GroupResult, steps: int) -> GroupResult:
    """``result`` as if its training had stopped after ``steps`` steps: validation losses of its
    best evaluation up to then (lowest criterion, the trainer's choice), steps and seconds in
    proportion (the trainer's metrics are not in a history; the test split is left as it is,
    and a selection reads none of it). ``ValueError`` without a history."""
    evaluations = [h for h in result.history if h["step"] <= steps]
    if not evaluations:
        raise ValueError(f"{'+'.join(result.tasks)}: no history to cut at step {steps}")
    best = min(evaluations, key=lambda h: h["criterion"])
    val = {t: result.val[t] | {LOSS: best["val_loss"][t]} for t in result.tasks}
    used = min(steps, result.steps)
    seconds = result.seconds * used / result.steps if result.steps else 0.0
    return dataclasses.replace(result, val=val, best_step=best["step"], steps=used, seconds=seconds)


def pair_tables(
    results: list[GroupResult], tasks: list[str], schedule: int | None, notes: list[str]
) -> dict[str, PairTable]:
    """HOA's tables: ``hoa`` from the whole trainings and, with the ``schedule``'s steps known,
    ``hoa f<x>`` from them cut to each of ``HOA_FRACTIONS`` (skipped with a note where a network
    has no history)."""
    tables = {"hoa": pair_table(results, tasks)[0]}
    pairs = [r for r in results if len(r.tasks) <= 2]
    for fraction in HOA_FRACTIONS if schedule else ():
        name = f"hoa f{fraction:.2g}"
        try:
            cut = [cut_short(r, int(fraction * schedule)) for r in pairs]
        except ValueError as e:
            notes.append(f"{name}: {e}")
            continue
        tables[name] = pair_table(cut, tasks)[0]
    return tables


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


def _verify_seed(recipe, seed, out, shortlist, fraction, signal=SIGNAL):
    """Every budget of one seed in one process: the budgets share short trainings (and their
    folders), so they must not run concurrently. ``signal``: the co-training run whose
    affinity shortlists (``out/seed<S>/affinity_<signal>.json``)."""
    torch.set_num_threads(1)
    spec, bench = gq.recipe_benchmark(recipe, seed)
    settings = gq.train_settings(spec, bench, seed)
    affinity = AffinityMatrix.load(out / f"seed{seed}" / f"affinity_{signal}.json")
    for budget in BUDGETS:
        path = verified_path(out, seed, budget, shortlist, fraction, signal)
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


# -- co-training runs beyond grouping_quality's signals (issue 16): a lookahead on
# scale-normalised losses, and short runs whose matrices are averaged ------------------------

SCALED = "optimizer_scaled"  # Adam's lookahead in a co-training run on scale-normalised losses
# the later literature's signals, one full co-training run each: a linearised (Grad-TAG-like)
# estimate and the cosine of the gradients at the shared representation
LATER_SIGNALS = ("linearised", "representation_cosine")
SHORT_SIGNALS = ("optimizer", "cosine")  # signals measured by several short runs
SHORT_RUNS = 3  # short runs per signal; each co-trains 1/SHORT_RUNS of the recipe's steps
RUN_STRIDE = 100  # short run r co-trains with seed S + 100 r (model initialisation, batch order)


def extra_runs() -> list[str]:
    """The names (``affinity_<name>.json``) of the co-training runs this script adds."""
    shorts = [f"{s}_short{r}" for s in SHORT_SIGNALS for r in range(SHORT_RUNS)]
    return [SCALED, *LATER_SIGNALS, *shorts]


@dataclasses.dataclass(frozen=True)
class ScaledLoss:
    """A task's loss divided by a fixed ``scale`` (its loss at initialisation)."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scale: float

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(prediction, target) / self.scale


def initial_losses(bench: Benchmark, settings: AffinitySettings, seed: int) -> dict[str, float]:
    """Each task's loss, on the co-training run's first batch, of the model that run starts
    from (``settings`` resolved; ``seed`` as in ``measure_affinity``)."""
    model = bench.make_model(seed=seed)
    inputs, targets = next(bench.train.batches(settings.batch_size, seed=seed))
    with torch.no_grad():
        predictions = model(inputs)
        return {t: float(f(predictions[t], targets[t])) for t, f in bench.tasks.losses().items()}


def measure_scaled(
    bench: Benchmark,
    settings: AffinitySettings,
    seed: int,
    scales: dict[str, float] | None = None,
) -> AffinityMatrix:
    """The affinity of a co-training run on scale-normalised losses: ``measure_affinity``
    through its public ``nn.Module`` path, with the run built as its benchmark path builds it
    (model initialised with ``seed``, ``settings``' optimizer, batches in ``seed``'s order) but
    every task's loss divided by ``scales[task]`` (default: ``initial_losses``, so each loss
    starts at 1). The run trains on the sum of the scaled losses and the lookahead steps on a
    scaled loss; the lookahead's ratio L_j(after) / L_j(before) does not depend on the target's
    scale, so only the trajectory and each source's step change. ``scales`` all 1 gives
    ``measure_affinity(bench, settings, seed=seed)``'s matrix."""
    settings = settings.resolve(bench.defaults)
    scales = initial_losses(bench, settings, seed) if scales is None else dict(scales)
    model = bench.make_model(seed=seed)
    optimizer = make_optimizer(
        model.parameters(), settings.optimizer, settings.lr, bench.defaults.weight_decay
    )
    losses = {t: ScaledLoss(f, scales[t]) for t, f in bench.tasks.losses().items()}
    matrix = measure_affinity(
        model,
        settings,
        batches=bench.train.batches(settings.batch_size, seed=seed),
        losses=losses,
        optimizer=optimizer,
        seed=seed,
        progress=False,
    )
    matrix.metadata |= {"benchmark": bench.name, "lr": settings.lr, "loss_scales": scales}
    return matrix


def _extra_one(recipe: str, seed: int, name: str, out: Path) -> None:
    """One co-training run of ``extra_runs`` for data seed ``seed``, kept if already written."""
    torch.set_num_threads(1)
    path = out / f"seed{seed}" / f"affinity_{name}.json"
    if path.exists():
        return
    spec, bench = gq.recipe_benchmark(recipe, seed)
    if name == SCALED:
        settings = dataclasses.replace(spec.affinity, lookahead="optimizer")
        matrix = measure_scaled(bench, settings, seed)
    elif name in LATER_SIGNALS:
        settings = dataclasses.replace(spec.affinity, lookahead=name)
        matrix = measure_affinity(bench, settings, seed=seed, progress=False)
    else:
        signal, run = name.rsplit("_short", 1)
        settings = dataclasses.replace(spec.affinity, lookahead=signal).resolve(bench.defaults)
        settings = dataclasses.replace(settings, steps=settings.steps // SHORT_RUNS)
        matrix = measure_affinity(
            bench, settings, seed=seed + RUN_STRIDE * int(run), progress=False
        )
    matrix.save(path)


# -- the held-out protocol (issues 9 and 16): K initialisations of every subset per data seed;
# each method selects from initialisation 0 and is scored on the mean of the others ----------

SIGNALS = gq.SIGNALS
NORMALIZED = (*SIGNALS, SCALED, *LATER_SIGNALS)  # selected from as measured and relative()
VARIANT_SIGNALS = ("optimizer", "cosine")  # also selected with partition=True / singleton 0
ENSEMBLES = {  # mean of the matrices, each divided by its mean |off-diagonal| entry
    "ens:optimizer+cosine": ("optimizer", "cosine"),
    "ens:optimizer+first_order+cosine": ("optimizer", "first_order", "cosine"),
    "ens:optimizer_scaled+cosine": (SCALED, "cosine"),
}
TIE = 1e-9  # Δm points: closer than this counts as a tie for the rank
BOOTSTRAP_REPS = 10_000
BOOTSTRAP_SEED = 16  # numpy.random.default_rng seed of every interval
NOISE_FLOOR = "exhaustive"  # the paired differences are taken against this method


def init_counts(out: Path, seed: int, tasks: list[str], aggregator: str) -> dict[int, int]:
    """How many of the 2^n − 1 subset trainings each initialisation of data seed ``seed`` holds:
    initialisation 0 and every ``init<k>`` folder found."""
    root = out / f"seed{seed}"
    found = {0} | {int(p.name[4:]) for p in root.glob("init*") if p.name[4:].isdigit()}
    return {
        init: sum(
            (gq.subsets_dir(out, seed, init) / group_key(g, aggregator) / "result.json").exists()
            for g in gq.subsets(tasks)
        )
        for init in sorted(found)
    }


def scored_inits(counts: dict[int, int], networks: int, inits: int | None) -> list[int] | None:
    """The initialisations a data seed is scored with, 0 first: every complete one (all
    ``networks`` trained), or with ``inits`` = K the first K complete ones; ``None`` when
    initialisation 0 is incomplete or fewer than 2 (or K) are complete."""
    complete = [k for k, count in sorted(counts.items()) if count == networks]
    if not complete or complete[0] != 0:
        return None
    chosen = complete if inits is None else complete[:inits]
    return chosen if len(chosen) >= max(2, inits or 2) else None


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
    own single-task networks; the held-out score of a grouping is the mean over its rows 1..K−1."""
    first, rows = None, []
    for results in results_by_init:
        groupings, dm = gq.ground_truth(results, tasks, directions, budget, only)
        if first is not None and groupings != first:
            raise ValueError("the initialisations' subset lists differ; load them in one order")
        first = groupings
        rows.append(dm)
    return first, np.stack(rows)


def held_out_score(value: float, scores: np.ndarray) -> dict:
    """A pick's place among ``scores`` (every grouping's held-out Δm; lower is better): regret,
    rank (ties within ``TIE`` share the better rank) and top % = 100 · rank / groupings."""
    best = float(scores.min())
    rank = int((scores < value - TIE).sum()) + 1
    return {
        "delta_m": value,
        "best": best,
        "regret": value - best,
        "rank": rank,
        "groupings": len(scores),
        "top": 100.0 * rank / len(scores),
        "median": float(np.median(scores)),
    }


def bootstrap_regrets(
    blocks: list[np.ndarray],
    picks: list[dict[str, int]],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, np.ndarray]:
    """The two-stage bootstrap distribution of each method's mean held-out regret.

    ``blocks[s]``: ``[H_s, G]`` held-out Δm of every grouping on each held-out initialisation of
    data seed s; ``picks[s]``: method → the index of the grouping it chose on seed s (from
    initialisation 0: fixed, only its scoring is resampled). One replicate, with
    ``rng = numpy.random.default_rng(seed)``: draw ``len(blocks)`` data seeds with replacement
    (``rng.integers(len(blocks), size=len(blocks))``), then for each drawn seed in order its
    ``H_s`` held-out initialisations with replacement (``rng.integers(H_s, size=H_s)``); a
    grouping's score on a drawn seed is the mean of its drawn initialisations' Δm, a pick's
    regret its score minus the best score there, and the replicate's value per method the mean
    regret over the drawn seeds where the method chose (every method sees the same draws, so
    differences between methods are paired). Returns method → ``[reps]``."""
    rng = np.random.default_rng(seed)
    methods = list(dict.fromkeys(m for p in picks for m in p))
    index = [np.array([p.get(m, -1) for m in methods]) for p in picks]
    cache: list[dict[tuple, np.ndarray]] = [{} for _ in blocks]
    values = np.empty((reps, len(methods)))
    for rep in range(reps):
        total, count = np.zeros(len(methods)), np.zeros(len(methods))
        for s in rng.integers(len(blocks), size=len(blocks)):
            drawn = tuple(sorted(rng.integers(len(blocks[s]), size=len(blocks[s]))))
            if drawn not in cache[s]:
                score = blocks[s][list(drawn)].mean(axis=0)
                regret = score[index[s]] - score.min()
                cache[s][drawn] = np.where(index[s] >= 0, regret, np.nan)
            regret = cache[s][drawn]
            total += np.nan_to_num(regret)
            count += ~np.isnan(regret)
        with np.errstate(invalid="ignore"):
            values[rep] = total / count
    return {m: values[:, k] for k, m in enumerate(methods)}


def interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval of a bootstrap distribution (replicates where it is NaN,
    a method absent from every drawn seed, left out)."""
    kept = values[~np.isnan(values)]
    return [float(v) for v in np.percentile(kept, [2.5, 97.5])]


def normalized_mean(matrices: list[AffinityMatrix]) -> AffinityMatrix:
    """The mean of the matrices, each divided by its mean absolute off-diagonal entry (TAG's
    selection does not change when one matrix is scaled by a positive number, so the scaling
    only sets each signal's weight in the mean)."""
    n = len(matrices[0].tasks)
    off = ~np.eye(n, dtype=bool)
    scaled = [m.select(matrices[0].tasks).values for m in matrices]
    values = np.mean([v / np.abs(v[off]).mean() for v in scaled], axis=0)
    return AffinityMatrix(values, matrices[0].tasks)


def _cost(runs: list[AffinityMatrix]) -> tuple[float, int]:
    return (
        sum(a.metadata["seconds"] for a in runs),
        sum(a.metadata.get("steps_trained", 0) for a in runs),
    )


def signal_picks(
    affinities: dict[str, AffinityMatrix], budget: int, notes: list[str], where: str
) -> dict[str, tuple]:
    """Each affinity-based method's grouping and cost: method → (groups, seconds, steps).
    ``affinities``: run name (``affinity_<name>.json``) → matrix; a method whose runs are
    missing, or whose relative matrix is undefined, is skipped with a note."""
    picks = {}

    def add(name, matrix, runs, **options):
        picks[name] = (select_groups(matrix, budget, **options).groups, *_cost(runs))

    for signal in (s for s in NORMALIZED if s in affinities):
        measured = affinities[signal]
        add(f"tag:{signal}", measured, [measured])
        try:
            add(f"tag:{signal}/source", measured.relative(), [measured])
        except ValueError as e:  # a source whose own step does not help itself
            notes.append(f"{where}, B={budget}, tag:{signal}/source: {e}")
    for signal in (s for s in VARIANT_SIGNALS if s in affinities):
        add(f"tag:{signal} partition", affinities[signal], [affinities[signal]], partition=True)
        single = {"singleton_score": 0.0}
        add(f"tag:{signal} singleton=0", affinities[signal], [affinities[signal]], **single)
    for name, members in ENSEMBLES.items():
        if all(m in affinities for m in members):
            runs = [affinities[m] for m in members]
            add(name, normalized_mean(runs), runs)
    for signal in SHORT_SIGNALS:
        runs = [affinities.get(f"{signal}_short{r}") for r in range(SHORT_RUNS)]
        if all(runs):
            add(f"tag:{signal} short", runs[0], runs[:1])
            mean = AffinityMatrix(np.mean([a.values for a in runs], axis=0), runs[0].tasks)
            add(f"runs:{signal} {SHORT_RUNS}x short", mean, runs)
    missing = [n for n in (*SIGNALS, *extra_runs()) if n not in affinities]
    if missing:
        notes.append(f"{where}: no affinity_{{{','.join(missing)}}}.json")
    return picks


def load_affinities(root: Path, seed: int, digest: dict | None = None) -> dict:
    """Run name → matrix of every co-training run of data seed ``seed``: the files
    ``root/seed<S>/affinity_<name>.json``, else the entry of ``digest`` (``affinity_digest``)."""
    stored = (digest or {}).get("seeds", {}).get(str(seed), {})
    found = {}
    for name in (*SIGNALS, *extra_runs()):
        path = root / f"seed{seed}" / f"affinity_{name}.json"
        if path.exists():
            found[name] = AffinityMatrix.load(path)
        elif name in stored:
            found[name] = AffinityMatrix.from_dict(stored[name], f"digest {name}")
    return found


def verified_digest(folder: Path, seeds: list[int], previous: dict | None) -> dict:
    """Every verified pick found in ``folder/seed<S>/verified_*.json``, by seed and file name,
    over the ``previous`` digest's (the picks are small; the short trainings are not kept)."""
    picks = {k: dict(v) for k, v in (previous or {}).get("verified", {}).items()}
    for seed in seeds:
        for path in sorted((folder / f"seed{seed}").glob("verified_*.json")):
            picks.setdefault(str(seed), {})[path.name] = Grouping.load(path).to_dict()
    return picks


def affinity_digest(recipe: str, affinities: dict[int, dict[str, AffinityMatrix]]) -> dict:
    """Every matrix scored, without its per-step trace: a few kB to keep in the repository."""
    seeds = {}
    for seed, found in affinities.items():
        seeds[str(seed)] = {}
        for name, matrix in found.items():
            record = matrix.to_dict()
            record.pop("trace", None)
            seeds[str(seed)][name] = record
    return {"format": "taskgroup.selection_affinities", "recipe": recipe, "seeds": seeds}


def _picks(affinities, seed, results, budget, tables, exhaustive, verified, notes):
    """Each method's grouping (subset tuples) and cost (seconds, steps), from what
    initialisation 0 and the co-training runs show: method → (groups, seconds, steps).
    ``tables``: HOA's (``pair_tables``); ``verified``: per verified selection (its method name,
    the path of its pick, its signal, the digest's pick or ``None``)."""
    picks = signal_picks(affinities, budget, notes, f"seed {seed}")
    for name, table in tables.items():
        groups = select_groups(table, budget, method="hoa").groups
        picks[name] = (groups, table.cost["seconds"], table.cost["steps"])
    for method, verified_file, signal, kept in verified:
        pick = Grouping.load(verified_file) if verified_file.exists() else kept
        if pick is None or signal not in affinities:
            notes.append(f"seed {seed}, B={budget}: no {verified_file.name} (run --phase verify)")
            continue
        cost = pick.info["cost"]
        seconds, steps = _cost([affinities[signal]])
        picks[method] = (pick.groups, seconds + cost["seconds"], steps + cost["steps"])
    tasks = [t for r in results if len(r.tasks) == 1 for t in r.tasks]
    picks["exhaustive"] = (
        [results[s].tasks for s in validation_choice(results, tasks, budget)],
        *exhaustive,
    )
    return picks


def _seed_rows(seed, inits, dm, groupings, results, picks, exhaustive, tasks):
    """The rows of one (seed, budget, Δm kind): each pick's held-out place, and the grouping
    index each method chose (for the bootstrap)."""
    order = {t: i for i, t in enumerate(tasks)}
    index = {r.tasks: s for s, r in enumerate(results)}
    position = {g: k for k, g in enumerate(groupings)}
    held, every = dm[1:].mean(axis=0), dm.mean(axis=0)
    # exhaustive search's own pick: the best grouping by initialisation 0's test Δm
    own = groupings[int(dm[0].argmin())]
    method_picks = picks | {"exhaustive:test": ([results[s].tasks for s in own], *exhaustive)}
    rows, chosen = [], {}
    for method, (groups, seconds, steps) in method_picks.items():
        key = tuple(sorted(index[tuple(sorted(g, key=order.__getitem__))] for g in groups))
        k = chosen[method] = position[key]
        rows.append(
            {
                "seed": seed,
                "inits": list(inits),
                "method": method,
                "groups": [list(results[s].tasks) for s in key],
                **held_out_score(float(held[k]), held),
                "delta_m_inits": [float(v) for v in dm[:, k]],
                "regret_all_inits": float(every[k] - every.min()),
                "regret_init0": float(dm[0, k] - dm[0].min()),
                "cost_seconds": seconds / exhaustive[0],
                "cost_steps": steps / exhaustive[1] if steps else None,
            }
        )
    return rows, chosen


def score_held_out(
    out: Path,
    seeds: list[int],
    tasks: list[str],
    aggregator: str,
    directions: dict,
    shortlist: int = 8,
    fraction: float = 0.25,
    *,
    inits: int | None = None,
    affinity_out: Path | None = None,
    digest: dict | None = None,
    reps: int = BOOTSTRAP_REPS,
    verify: list[tuple[str, float]] | None = None,
    schedule: int | None = None,
) -> dict:
    """The held-out evaluation (see ``main``'s ``--phase heldout``) of the data seeds whose
    initialisation 0 and at least one more (``inits`` = K: exactly the first K) are complete.
    ``directions``: task → metric → higher is better (``loss``: False); ``affinity_out``: where
    the co-training runs live (default ``out``), ``digest`` their fallback; ``verify``: the
    verified selections scored, as (signal, fraction) (default: the Adam lookahead's at
    ``fraction``); ``schedule``: the trainings' steps, to score HOA on them cut short too."""
    networks = 2 ** len(tasks) - 1
    scored, listed, notes, rows, boot = {}, {}, [], [], {}
    for seed in seeds:
        counts = init_counts(out, seed, tasks, aggregator)
        chosen = scored_inits(counts, networks, inits)
        if chosen is None:
            listed[str(seed)] = counts
            continue
        scored[seed] = chosen
        partial = {k: c for k, c in counts.items() if k not in chosen}
        if partial:
            notes.append(f"seed {seed}: initialisations {partial} (trainings found) not used")
        by_init = [gq.load_subsets(out, seed, tasks, aggregator, init) for init in chosen]
        affinities = load_affinities(affinity_out or out, seed, digest)
        kept = (digest or {}).get("verified", {}).get(str(seed), {})
        specs = verify or [(SIGNAL, fraction)]
        verified = (affinity_out or out, shortlist, specs, fraction, kept)
        _score_seed(
            seed, chosen, by_init, directions, affinities, verified, notes, rows, boot, schedule
        )
    return {
        "protocol": protocol(inits, reps, shortlist, fraction),
        "seeds": list(scored),
        "inits": {str(s): k for s, k in scored.items()},
        "incomplete": listed,
        "notes": list(dict.fromkeys(notes)),
        "rows": rows,
        "summary": summarise(rows, boot, reps),
    }


def verified_path(
    out: Path, seed: int, budget: int, shortlist: int, fraction: float, signal: str = SIGNAL
) -> Path:
    """Where ``--phase verify`` keeps the verified selection's pick (shortlisted by the
    ``signal`` run; the Adam lookahead's file name has no signal, as before)."""
    tag = "" if signal == SIGNAL else f"{signal}_"
    return out / f"seed{seed}" / f"verified_{tag}B{budget}_K{shortlist}_f{fraction:g}.json"


def verified_method(signal: str, fraction: float, default_fraction: float) -> str:
    """``verified`` (the Adam lookahead's shortlist), else ``verified:<signal>``; `` f<x>`` when
    its fraction is not the default."""
    name = "verified" if signal == SIGNAL else f"verified:{signal}"
    return name if fraction == default_fraction else f"{name} f{fraction:g}"


def verify_specs(values: list[str], fraction: float) -> list[tuple[str, float]]:
    """``signal[:fraction]`` values of ``--verify`` → (signal, fraction), ``fraction`` where
    none is given; ``ValueError`` naming a value whose fraction is not in (0, 1]."""
    specs = []
    for value in values:
        signal, _, share = value.partition(":")
        try:
            share_value = float(share) if share else fraction
        except ValueError:
            share_value = math.nan
        if not signal or not 0 < share_value <= 1:
            raise ValueError(f"--verify {value!r}: expected SIGNAL or SIGNAL:FRACTION in (0, 1]")
        specs.append((signal, share_value))
    return specs


def _score_seed(
    seed, inits, by_init, directions, affinities, verified, notes, rows, boot, schedule=None
):
    """Append one data seed's rows (every budget, Δm kind and method) to ``rows`` and its
    held-out blocks and picks to ``boot[(Δm kind, budget)]``; ``verified``: (folder,
    shortlist, [(signal, fraction)], the default fraction, the digest's picks by file name) of
    the verified selections; ``schedule``: the trainings' steps (HOA's cut tables)."""
    results = by_init[0]
    tasks = list(directions)
    exhaustive = (sum(r.seconds for r in results), sum(r.steps for r in results))
    tables = pair_tables(results, tasks, schedule, notes)
    for budget in BUDGETS:
        folder, shortlist, specs, default_fraction, kept = verified
        found = []
        for signal, fraction in specs:
            path = verified_path(folder, seed, budget, shortlist, fraction, signal)
            stored = kept.get(path.name)
            stored = None if stored is None else Grouping.from_dict(stored, f"digest {path.name}")
            method = verified_method(signal, fraction, default_fraction)
            found.append((method, path, signal, stored))
        picks = _picks(affinities, seed, results, budget, tables, exhaustive, found, notes)
        for delta, only in gq.DELTAS.items():
            groupings, dm = mean_ground_truth(by_init, tasks, directions, budget, only)
            found, chosen = _seed_rows(
                seed, inits, dm, groupings, results, picks, exhaustive, tasks
            )
            rows += [r | {"budget": budget, "delta": delta} for r in found]
            blocks, seed_picks = boot.setdefault((delta, budget), ([], []))
            blocks.append(dm[1:])
            seed_picks.append(chosen)


def protocol(inits: int | None, reps: int, shortlist: int, fraction: float) -> dict:
    return {
        "inits": "every complete initialisation" if inits is None else f"the first {inits}",
        "select": "every method selects from initialisation 0 (and its co-training runs)",
        "score": "Δm of a grouping = mean over the held-out initialisations 1..K−1 of "
        "grouping_quality.ground_truth (each serving by its own validation losses)",
        "bootstrap": f"{reps} two-stage replicates (data seeds with replacement, then each "
        f"drawn seed's held-out initialisations with replacement), numpy default_rng("
        f"{BOOTSTRAP_SEED}), 95% percentile interval of the mean regret over seeds; "
        f"differences against {NOISE_FLOOR!r} paired on the same replicates",
        "verified": {"shortlist": shortlist, "fraction": fraction},
    }


def summarise(rows: list[dict], boot: dict | None = None, reps: int = BOOTSTRAP_REPS) -> list:
    """Per Δm kind, budget and method over the seeds: regret mean, 95% bootstrap interval
    (``boot``: (Δm kind, budget) → (blocks, picks) of ``bootstrap_regrets``) and worst, the
    paired difference to the noise floor (``NOISE_FLOOR``'s regret), top % and cost."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["delta"], r["budget"], r["method"]), []).append(r)
    draws = {key: bootstrap_regrets(*boot[key], reps=reps) for key in (boot or {})}
    summary = []
    for (delta, budget, method), chosen in groups.items():
        entry = {
            "delta": delta,
            "budget": budget,
            "method": method,
            "seeds": [r["seed"] for r in chosen],
            "regret_mean": statistics.mean(r["regret"] for r in chosen),
            "regret_worst": max(r["regret"] for r in chosen),
            "rank_mean": statistics.mean(r["rank"] for r in chosen),
            "rank_worst": max(r["rank"] for r in chosen),
            "top_mean": statistics.mean(r["top"] for r in chosen),
            "top_worst": max(r["top"] for r in chosen),
            "groupings": chosen[0]["groupings"],
            "cost_seconds": statistics.mean(r["cost_seconds"] for r in chosen),
        }
        found = draws.get((delta, budget), {})
        if method in found:
            entry["regret_interval"] = interval(found[method])
            if NOISE_FLOOR in found:
                difference = found[method] - found[NOISE_FLOOR]
                entry["vs_noise_floor_interval"] = interval(difference)
        summary.append(entry)
    return summary


def _fmt_interval(entry: dict, key: str) -> str:
    low, high = entry.get(key, [float("nan")] * 2)
    return f"[{low:.1f}, {high:.1f}]"


def method_order(rows: list[dict]) -> list[str]:
    """The methods in the order of the seed that has the most of them (a method undefined on the
    first seed keeps its place), the others after them."""
    by_seed: dict[int, list[str]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r["method"])
    lists = sorted(by_seed.values(), key=lambda m: -len(set(m)))
    return list(dict.fromkeys(m for methods in lists for m in methods))


def summary_table(summary: dict, delta: str = "loss") -> str:
    """The markdown table of docs/selection.md: per method, its cost and at each budget the mean
    held-out regret with its 95% interval, the paired difference to the noise floor
    (exhaustive search's validation pick) with its interval, and the mean top %."""
    entries = {(s["method"], s["budget"]): s for s in summary["summary"] if s["delta"] == delta}
    methods = method_order(summary["rows"])
    head = "| method | cost | " + " | ".join(
        f"B={b} regret [95%] | B={b} − floor [95%] | B={b} top %" for b in BUDGETS
    )
    lines = [head + " |", "|---|---:|" + "---:|---:|---:|" * len(BUDGETS)]
    for method in methods:
        cells = []
        for budget in BUDGETS:
            e = entries.get((method, budget))
            if e is None:
                cells += ["–"] * 3
                continue
            difference = e["regret_mean"] - entries[(NOISE_FLOOR, budget)]["regret_mean"]
            cells += [
                f"{e['regret_mean']:.1f} {_fmt_interval(e, 'regret_interval')}",
                f"{difference:+.1f} {_fmt_interval(e, 'vs_noise_floor_interval')}",
                f"{e['top_mean']:.1f}",
            ]
        cost = statistics.mean(
            entries[(method, b)]["cost_seconds"] for b in BUDGETS if (method, b) in entries
        )
        lines.append(f"| {method} | {cost:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_held_out(summary: dict) -> str:
    """The whole held-out report: protocol, seeds, notes, every row, and the summary tables."""
    seeds = ", ".join(f"{s} (K={len(k)})" for s, k in summary["inits"].items()) or "none"
    out = [
        "Held-out protocol: every method selects from initialisation 0 (and its co-training "
        "runs) and is scored by the mean Δm over initialisations 1..K−1 of its data seed.",
        f"Seeds scored (initialisations used): {seeds}; not scored (trainings found per "
        f"initialisation): {summary['incomplete'] or 'none'}.",
        f"Intervals: {summary['protocol']['bootstrap']}.",
        "",
        *[f"- {note}" for note in summary["notes"]],
        "",
        "| seed | K | B | Δm on | method | held-out Δm | best | regret | rank | top % | "
        "regret, all-init mean | regret, init 0 | cost (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        out.append(
            f"| {r['seed']} | {len(r['inits'])} | {r['budget']} | {r['delta']} | {r['method']} "
            f"| {r['delta_m']:+.2f} | {r['best']:+.2f} | {r['regret']:.2f} | "
            f"{r['rank']}/{r['groupings']} | {r['top']:.1f} | {r['regret_all_inits']:.2f} | "
            f"{r['regret_init0']:.2f} | {r['cost_seconds']:.4f} |"
        )
    for delta in gq.DELTAS:
        out += [
            "",
            f"Δm on {delta}: mean over seeds; 'floor' = {NOISE_FLOOR} (regret of "
            "exhaustive search's validation pick); worst regrets in the JSON.",
            "",
        ]
        out.append(summary_table(summary, delta))
    return "\n".join(out) + "\n"


def plot_cost_regret(summary: dict, path: Path, delta: str = "loss") -> None:
    """Cost (fraction of exhaustive search, log) against held-out regret on ``delta``: one
    panel per budget, one marker per method at its mean, light points for the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = method_order(summary["rows"])
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
        f"Selection from initialisation 0, scored on the other initialisations "
        f"(data seeds {seeds}; large: mean, light: per seed)",
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


RESULTS = Path(__file__).resolve().parent / "results"


def held_out_phase(args: argparse.Namespace) -> dict:
    """``--phase heldout``: score, print, and write the report, its JSON, the plot and the
    affinity digest under ``--results``."""
    spec, bench = gq.recipe_benchmark(args.recipe, args.seeds[0])
    tasks = bench.tasks.names
    directions = {t: {LOSS: False, **bench.tasks[t].higher_is_better} for t in tasks}
    settings = gq.train_settings(spec, bench, args.seeds[0])
    digest_path = RESULTS / f"selection_affinity_{args.recipe}.json"
    digest = json.loads(digest_path.read_text()) if digest_path.exists() else None
    results = args.results or args.affinity_out or args.out
    # the verified picks found beside the co-training runs join the digest's before scoring
    verified = verified_digest(args.affinity_out or args.out, args.seeds, digest)
    digest = (digest or {}) | {"verified": verified}
    with tempfile.TemporaryDirectory() as restored:
        out = args.out
        if args.digests:
            out = Path(restored)
            ground_truth.restore(out, args.recipe)
        started = time.perf_counter()
        summary = score_held_out(
            out,
            args.seeds,
            tasks,
            settings.aggregator,
            directions,
            args.shortlist,
            args.fraction,
            inits=args.inits,
            affinity_out=args.affinity_out or args.out,
            digest=digest,
            reps=args.reps,
            verify=verify_specs(args.verify, args.fraction),
            schedule=settings.steps,
        )
    summary["recipe"] = args.recipe
    summary["seconds"] = round(time.perf_counter() - started, 1)
    # every requested seed's matrices (files, else the kept digest), scored yet or not
    affinities = {s: load_affinities(args.affinity_out or args.out, s, digest) for s in args.seeds}
    text = format_held_out(summary)
    print(text)
    results.mkdir(parents=True, exist_ok=True)
    name = f"selection_heldout_{args.recipe}"
    (results / f"{name}.json").write_text(json.dumps(summary, indent=1))
    (results / f"{name}.txt").write_text(text)
    record = affinity_digest(args.recipe, affinities) | {"verified": verified}
    (results / f"selection_affinity_{args.recipe}.json").write_text(json.dumps(record))
    if summary["rows"]:
        plot_cost_regret(summary, results / f"{name}.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="multidigits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/grouping_quality"))
    parser.add_argument(
        "--affinity-out",
        type=Path,
        default=None,
        help="where the co-training runs' affinity_<signal>.json live (default: --out, the "
        "ground truth's folder, which the scoring then only reads)",
    )
    parser.add_argument(
        "--shortlist", type=int, default=8, help="groupings the verified selection shortlists"
    )
    parser.add_argument(
        "--verify",
        nargs="+",
        default=[SIGNAL],
        metavar="SIGNAL[:FRACTION]",
        help="verified selections: the co-training run whose affinity each shortlists from "
        f"(affinity_<signal>.json), and its share of the schedule (default {SIGNAL}, --fraction)",
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
        help="score: one training per subset; heldout: the K-initialisation held-out protocol",
    )
    parser.add_argument(
        "--inits",
        type=int,
        default=None,
        help="heldout: score each data seed with its first K complete initialisations (seeds "
        "with fewer are listed, not scored; default: every complete one, at least 2)",
    )
    parser.add_argument(
        "--digests",
        action="store_true",
        help="heldout: score the ground truth kept in analysis/results/ground_truth/<recipe>/ "
        "(restored into a temporary folder) instead of --out",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="heldout: folder for selection_heldout_<recipe>.{json,txt,png} and the affinity "
        "digest selection_affinity_<recipe>.json (default: --affinity-out)",
    )
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS, help="bootstrap replicates")
    args = parser.parse_args(argv)
    try:
        verify_specs(args.verify, args.fraction)
    except ValueError as e:
        parser.error(str(e))  # before any phase trains or writes
    out = args.out
    affinity_out = args.affinity_out or out
    if args.phase in ("all", "train"):
        common = ["--recipe", args.recipe, "--workers", str(args.workers), "--out", str(out)]
        gq.main([*common, "--phase", "train", "--seeds", *map(str, args.seeds)])
    if args.phase in ("all", "affinity"):
        common = ["--recipe", args.recipe, "--workers", str(args.workers)]
        common += ["--out", str(affinity_out)]
        gq.main([*common, "--phase", "affinity", "--seeds", *map(str, args.seeds)])
        jobs = [
            (_extra_one, args.recipe, seed, name, affinity_out)
            for seed in args.seeds
            for name in extra_runs()
        ]
        print(f"measuring {len(jobs)} further affinities on {args.workers} workers", flush=True)
        gq.run_jobs(jobs, args.workers)
    if args.phase in ("all", "verify"):
        jobs = [
            (_verify_seed, args.recipe, seed, affinity_out, args.shortlist, fraction, signal)
            for seed in args.seeds
            for signal, fraction in verify_specs(args.verify, args.fraction)
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
        held_out_phase(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
