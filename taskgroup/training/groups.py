"""Train every group of a grouping, and the baselines it is judged against.

``train_groups`` trains one network per group (with the chosen aggregator), every task alone
(the single-task baseline of Δm, plain training) and all tasks together (with the same
aggregator). Each task is served by the network, among the groups that hold it, with the lowest
validation loss on that task, and scored on the test split there. Trainings are independent and
resumable: each has its own folder under ``OUT/train/`` (see :mod:`taskgroup.training.trainer`).

``force=True`` retrains every network of the call from scratch, and never leaves results of
the old networks beside new ones: before training it deletes ``OUT/results.json``, writes the
list of the networks it replaces (``OUT/.retired.json``, atomically), moves each one's folder
(``train/<key>`` and its TensorBoard run) into ``OUT/.retired/`` and deletes that, then trains
them all anew. A forced retrain killed at any point leaves no ``results.json`` and no network
of the old training that it was replacing: the next call on ``OUT`` (forced or not) first
finishes setting aside what the list names, and then resumes the new trainings. Networks of the
run directory that the call does not train (other groupings, pair trainings) are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from taskgroup import distributed
from taskgroup.data.benchmark import Benchmark
from taskgroup.grouping.objective import Grouping, check_groups
from taskgroup.rundir import (
    RESULTS,
    RETIRED,
    RETIRED_KEYS,
    TENSORBOARD,
    initialisation_key,
    network_dir,
)
from taskgroup.settings import TrainSettings
from taskgroup.storage import check_json, fingerprint, read_json, write_json
from taskgroup.training.intervals import CONFIDENCE, DESCRIPTION, Interval, mean_interval, verdict
from taskgroup.training.metrics import LOSS, delta_m, higher_is_better
from taskgroup.training.trainer import GroupResult, group_key, train_group

FORMAT = "taskgroup.results"
SEEDS_CONVENTION = (
    "; with several initialisations (seeds) delta_m* are means over them and seeds holds "
    "each one's values and the 95% intervals; metrics, serves and groups are initialisation 0's"
)
SINGLE_TASK_AGGREGATOR = "mean"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupResults:
    """The outcome of a grouped run.

    Attributes:
        tasks: every task, in order; aggregator: how the groups (and all-together) trained.
        groups: one :class:`GroupResult` per group of the grouping, in its order.
        serves: task -> index in ``groups`` of the network that serves it (best validation loss
            on that task among the groups that hold it).
        single: task -> its single-task training (``None`` without baselines).
        together: the all-tasks training (``None`` without baselines).
        directions: ``{task: {metric: higher_is_better}}`` (the loss included, lower is better).
        settings: the training settings.
        trained_for: what produced it, ``{"groups": groups_fingerprint(groups), "settings":
            fingerprint(settings)}``, so a report can tell results of another grouping (``{}``
            in files written before it was recorded; :attr:`grouping_fingerprint` then derives
            the groups' fingerprint from ``groups``).
        initialisations: with ``seeds = K`` > 1, the results of initialisations 1..K−1, each
            a one-seed ``GroupResults`` like this one; the attributes above are those of
            initialisation 0, :attr:`per_seed` lists all K. Empty with one seed.

    With several initialisations, :meth:`delta_m` and :meth:`delta_m_together` are means over
    them, and :meth:`delta_m_interval`, :meth:`metric_intervals` and :meth:`verdict` give their
    95% intervals (:mod:`taskgroup.training.intervals`).
    """

    tasks: list[str]
    aggregator: str
    groups: list[GroupResult]
    serves: dict[str, int]
    single: dict[str, GroupResult] | None
    together: GroupResult | None
    directions: dict[str, dict[str, bool]]
    settings: dict[str, Any] = field(default_factory=dict)
    trained_for: dict[str, str] = field(default_factory=dict)
    initialisations: tuple[GroupResults, ...] = ()

    @property
    def per_seed(self) -> list[GroupResults]:
        """The one-seed results of every initialisation, initialisation 0 (these results
        without the others) first."""
        return [dataclasses.replace(self, initialisations=()), *self.initialisations]

    @property
    def seeds(self) -> list[int | None]:
        """The seed of each initialisation, in :attr:`per_seed` order (``None`` where
        ``settings`` records none)."""
        return [r.settings.get("seed") for r in self.per_seed]

    @property
    def grouping_fingerprint(self) -> str:
        """The fingerprint of the groups these networks were trained for."""
        return self.trained_for.get("groups") or groups_fingerprint([r.tasks for r in self.groups])

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Test metrics of every task on the network that serves it."""
        return {t: self.groups[self.serves[t]].test[t] for t in self.tasks}

    def delta_m(self, *, against: str = "single", only: Sequence[str] | None = None) -> float:
        """Δm (percent, lower is better) of the grouped solution against the single-task
        baseline (``against="single"``) or all-together (``"together"``); ``only=["loss"]``
        compares test losses instead of the tasks' metrics. With several initialisations, the
        mean of their Δm (each against the baseline of its own seed)."""
        return self.delta_m_interval(against=against, only=only).mean

    def delta_m_together(self, *, only: Sequence[str] | None = None) -> float:
        """Δm of all tasks trained together against the single-task baseline (the mean over
        the initialisations)."""
        return self.delta_m_together_interval(only=only).mean

    def delta_m_interval(
        self, *, against: str = "single", only: Sequence[str] | None = None
    ) -> Interval:
        """:meth:`delta_m` of each initialisation, paired by seed (the grouping of seed s
        against the baseline of seed s), their mean and its 95% interval (none for one)."""
        return mean_interval(
            [
                delta_m(r.metrics, r._baseline(against), r.directions, only=only)
                for r in self.per_seed
            ]
        )

    def delta_m_together_interval(self, *, only: Sequence[str] | None = None) -> Interval:
        """:meth:`delta_m_together` of each initialisation, their mean and its 95% interval."""
        if self.together is None:
            raise ValueError("this run trained no baselines")
        return mean_interval(
            [
                delta_m(r.together.test, r._baseline("single"), r.directions, only=only)
                for r in self.per_seed
            ]
        )

    def metric_intervals(self, of: str = "grouped") -> dict[str, dict[str, Interval]]:
        """Each task's test metrics (the loss included) over the initialisations, with their
        95% intervals: ``of="grouped"`` (the network serving the task in each), ``"single"``
        (the task alone) or ``"together"`` (all tasks in one network)."""
        if of not in ("grouped", "single", "together"):
            raise ValueError(f"of must be 'grouped', 'single' or 'together', got {of!r}")
        tests = [r.metrics if of == "grouped" else r._baseline(of) for r in self.per_seed]
        return {
            t: {name: mean_interval([test[t][name] for test in tests]) for name in tests[0][t]}
            for t in self.tasks
        }

    def verdict(self) -> str | None:
        """Whether the grouping beats all tasks together with 95% confidence, as a sentence,
        from the paired interval of its Δm against all together over the initialisations;
        ``None`` with one initialisation or without baselines."""
        if self.single is None or self.together is None:
            return None
        return verdict(self.delta_m_interval(against="together"))

    def _baseline(self, against: str) -> dict[str, dict[str, float]]:
        if self.single is None or self.together is None:
            raise ValueError("this run trained no baselines")
        if against == "single":
            return {t: self.single[t].test[t] for t in self.tasks}
        if against == "together":
            return self.together.test
        raise ValueError(f"against must be 'single' or 'together', got {against!r}")

    @property
    def cost(self) -> dict[str, dict[str, float]]:
        """Training steps, seconds and parameters of the grouped solution and the baselines."""

        def total(results: list[GroupResult]) -> dict[str, float]:
            return {
                "networks": len(results),
                "steps": sum(r.steps for r in results),
                "seconds": round(sum(r.seconds for r in results), 3),
                "parameters": sum(r.parameters for r in results),
            }

        cost = {"groups": total(self.groups)}
        if self.single is not None and self.together is not None:
            cost["single"] = total(list(self.single.values()))
            cost["together"] = total([self.together])
        return cost

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        if self.single is not None:
            summary = {
                "delta_m": self.delta_m(),
                "delta_m_loss": self.delta_m(only=[LOSS]),
                "delta_m_together": self.delta_m_together(),
                "delta_m_together_loss": self.delta_m_together(only=[LOSS]),
            }
        record = {
            "format": FORMAT,
            "convention": "delta_m: mean relative change in percent against single-task "
            "training, signed so that lower is better (Nash-MTL); *_loss uses test losses",
            "tasks": self.tasks,
            "aggregator": self.aggregator,
            **summary,
            "metrics": self.metrics,
            "serves": self.serves,
            "cost": self.cost,
            "settings": self.settings,
            "trained_for": self.trained_for,
            "directions": self.directions,
            "groups": [r.to_dict() for r in self.groups],
            "single": None
            if self.single is None
            else {t: r.to_dict() for t, r in self.single.items()},
            "together": None if self.together is None else self.together.to_dict(),
        }
        if self.initialisations:
            record["convention"] += SEEDS_CONVENTION
            record["seeds"] = self._seeds_record()
        return record

    def _seeds_record(self) -> dict[str, Any]:
        """The ``seeds`` entry of :meth:`to_dict`: the seeds, the intervals of Δm and of every
        metric (each with its per-seed values), the verdict, and the other initialisations'
        results in full."""
        record: dict[str, Any] = {
            "seeds": self.seeds,
            "confidence": CONFIDENCE,
            "interval": DESCRIPTION,
        }
        kinds = ["grouped"]
        if self.single is not None and self.together is not None:
            kinds += ["single", "together"]
            record |= {
                "delta_m": self.delta_m_interval().to_dict(),
                "delta_m_loss": self.delta_m_interval(only=[LOSS]).to_dict(),
                "delta_m_together": self.delta_m_together_interval().to_dict(),
                "delta_m_together_loss": self.delta_m_together_interval(only=[LOSS]).to_dict(),
                "delta_m_against_together": self.delta_m_interval(against="together").to_dict(),
                "verdict": self.verdict(),
            }
        record["metrics"] = {
            kind: {
                t: {name: i.to_dict() for name, i in values.items()}
                for t, values in self.metric_intervals(kind).items()
            }
            for kind in kinds
        }
        record["initialisations"] = [r.to_dict() for r in self.initialisations]
        return record

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``results.json``-style JSON atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> GroupResults:
        """Read a file written by :meth:`save`; ``ValueError`` naming the file (and the key
        path) when it is not one, or a value is missing, of the wrong type or points nowhere."""
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "results data") -> GroupResults:
        """Read :meth:`to_dict`'s record, checked whole first (see :meth:`load`)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a taskgroup results file (format != {FORMAT!r})")
        check_json(data, {"?seeds": {"initialisations": [dict]}}, source)
        others = data["seeds"]["initialisations"] if "seeds" in data else []
        first = cls._from_dict(data, source, "")
        initialisations = tuple(
            cls._from_dict(o, source, f"seeds.initialisations[{i}]") for i, o in enumerate(others)
        )
        for i, other in enumerate(initialisations):
            if other.tasks != first.tasks or _metric_names(other) != _metric_names(first):
                raise ValueError(
                    f"{source}: seeds.initialisations[{i}] holds other tasks or metrics than "
                    "initialisation 0"
                )
        return dataclasses.replace(first, initialisations=initialisations)

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any], source: str, where: str) -> GroupResults:
        """One initialisation's record (``where``: its key path in the file)."""
        check_json(data, RESULTS_SCHEMA, source, where)
        at = f"{where}." if where else ""

        def network(record: Any, key: str) -> GroupResult:
            return GroupResult.from_dict(record, source, at + key)

        single, together = data["single"], data["together"]
        results = cls(
            tasks=list(data["tasks"]),
            aggregator=data["aggregator"],
            groups=[network(r, f"groups[{i}]") for i, r in enumerate(data["groups"])],
            serves=dict(data["serves"]),
            single=None
            if single is None
            else {t: network(r, f"single.{t}") for t, r in single.items()},
            together=None if together is None else network(together, "together"),
            directions=data["directions"],
            settings=data.get("settings", {}),
            trained_for=dict(data.get("trained_for") or {}),
        )
        problem = _inconsistency(results)
        if problem is not None:
            raise ValueError(f"{source}: {at}{problem}")
        return results

    def table(self) -> str:
        """A plain-text table: each task's test metrics grouped, alone and all together (with
        several initialisations: their means ± 95% intervals, and the verdict)."""
        if self.initialisations:
            return self._seeds_table()
        width = max(len(t) for t in self.tasks)
        lines = [f"  {'task':<{width}}  group  metric      grouped     alone  together"]
        for t in self.tasks:
            for name, value in self.metrics[t].items():
                alone = "-" if self.single is None else f"{self.single[t].test[t][name]:.4g}"
                together = "-" if self.together is None else f"{self.together.test[t][name]:.4g}"
                lines.append(
                    f"  {t:<{width}}  {self.serves[t] + 1:>5}  {name:<8}  {value:>9.4g}  "
                    f"{alone:>8}  {together:>8}"
                )
        if self.single is not None:
            lines.append("")
            lines.append(
                f"  Δm vs single-task (lower is better): grouped {self.delta_m():+.2f}%, "
                f"all together {self.delta_m_together():+.2f}%  "
                f"(on test loss: {self.delta_m(only=[LOSS]):+.2f}%, "
                f"{self.delta_m_together(only=[LOSS]):+.2f}%)"
            )
        return "\n".join(lines)

    def _seeds_table(self) -> str:
        width = max(len(t) for t in self.tasks)
        kinds = ["grouped"] if self.single is None else ["grouped", "single", "together"]
        intervals = {kind: self.metric_intervals(kind) for kind in kinds}
        header = "".join(f"  {k.replace('single', 'alone'):>19}" for k in kinds)
        lines = [f"  {'task':<{width}}  metric  {header}"]
        for t in self.tasks:
            for name in self.metrics[t]:
                cells = "".join(f"  {_plus_minus(intervals[k][t][name]):>19}" for k in kinds)
                lines.append(f"  {t:<{width}}  {name:<8}{cells}")
        seeds = ", ".join(str(s) for s in self.seeds)
        lines += [
            "",
            f"  mean ± 95% interval over {len(self.per_seed)} initialisations (seeds "
            f"{seeds}; Student t)",
        ]
        if self.single is not None:
            lines.append(
                f"  Δm vs single-task (lower is better): grouped "
                f"{_plus_minus(self.delta_m_interval(), '+.2f')}%, all together "
                f"{_plus_minus(self.delta_m_together_interval(), '+.2f')}%  (on test loss: "
                f"{_plus_minus(self.delta_m_interval(only=[LOSS]), '+.2f')}%, "
                f"{_plus_minus(self.delta_m_together_interval(only=[LOSS]), '+.2f')}%)"
            )
            sentence = self.verdict()
            lines.append(f"  {sentence[0].upper()}{sentence[1:]}.")
        return "\n".join(lines)


RESULTS_SCHEMA = {  # one initialisation of GroupResults.to_dict(); networks: RESULT_SCHEMA
    "tasks": [str],
    "aggregator": str,
    "?metrics": {str: {str: float}},
    "serves": {str: int},
    "?cost": {str: {str: float}},
    "?settings": {str: object},
    "?trained_for": (None, {str: str}),
    "directions": {str: {str: bool}},
    "groups": [dict],
    "single": (None, {str: dict}),
    "together": (None, dict),
    **{f"?{k}": (float, None) for k in ("delta_m", "delta_m_loss", "delta_m_together")},
    "?delta_m_together_loss": (float, None),
}


def _inconsistency(results: GroupResults) -> str | None:
    """What in ``results`` points nowhere (a task without a serving network, a network without
    the test metrics of a task it serves, a metric without its direction), or ``None``."""
    if not results.tasks or len(set(results.tasks)) != len(results.tasks):
        return "tasks must name each task once"
    if set(results.serves) != set(results.tasks):
        return "serves must name the serving network of each task in tasks, and only those"
    for t, g in results.serves.items():
        if not 0 <= g < len(results.groups) or t not in results.groups[g].test:
            return f"serves.{t} names network {g}, which holds no test metrics of {t}"
    baselines = {}
    if results.single is not None:
        baselines |= {f"single.{t}": (results.single.get(t), t) for t in results.tasks}
    if results.together is not None:
        baselines |= {f"together.test.{t}": (results.together, t) for t in results.tasks}
    for key, (network, t) in baselines.items():
        grouped = results.groups[results.serves[t]].test[t]
        if network is None or t not in network.test or not set(grouped) <= set(network.test[t]):
            return f"{key}: missing, or without a metric of {t} (every task needs its baselines)"
    for t in results.tasks:
        for name in results.groups[results.serves[t]].test[t]:
            if name not in results.directions.get(t, {}):
                return f"directions.{t}.{name}: missing (whether higher is better)"
    return None


def _metric_names(results: GroupResults) -> dict[str, list[str]]:
    return {t: list(values) for t, values in results.metrics.items()}


def _plus_minus(interval: Interval, spec: str = ".4g") -> str:
    """``mean ± half_width`` (just the mean without an interval)."""
    if interval.half_width is None:
        return format(interval.mean, spec)
    return f"{interval.mean:{spec}} ± {interval.half_width:{spec.lstrip('+')}}"


def groups_fingerprint(groups: Sequence[Sequence[str]]) -> str:
    """A fingerprint of ``groups``: their order counts (it numbers the networks), the order of
    the tasks inside a group does not."""
    return fingerprint([sorted(g) for g in groups])


def read_groups(
    path: str | os.PathLike, tasks: Sequence[str] | None = None
) -> list[tuple[str, ...]]:
    """The groups of a ``groups.json`` written by ``taskgroup group``, or of a hand-written
    JSON file holding ``{"groups": [["a", "b"], ["c"]]}`` or just ``[["a", "b"], ["c"]]``;
    with ``tasks``, every name must be one of them (``ValueError`` naming the file)."""
    data = read_json(path)
    groups = data.get("groups") if isinstance(data, dict) else data
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and g and all(isinstance(t, str) for t in g) for g in groups
    ):
        raise ValueError(
            f"{path}: expected 'groups' as a list of non-empty lists of task names, "
            f'e.g. {{"groups": [["a", "b"], ["c"]]}}'
        )
    unknown = sorted({t for g in groups for t in g} - set(tasks)) if tasks is not None else []
    if unknown:
        raise ValueError(
            f"{path}: unknown task(s) {', '.join(map(repr, unknown))}; the benchmark's tasks are "
            f"{', '.join(tasks)}"
        )
    return [tuple(g) for g in groups]


def train_groups(
    benchmark: Benchmark,
    grouping: Grouping | Sequence[Sequence[str]],
    aggregator: str | None = None,
    *,
    settings: TrainSettings | None = None,
    options: Mapping[str, Any] | None = None,
    steps: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    seed: int | None = None,
    baselines: bool | None = None,
    workers: int | None = None,
    seeds: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
    force: bool = False,
) -> GroupResults:
    """Train one network per group of ``grouping`` and, with ``baselines``, every task alone and
    all tasks together; see the module doc.

    Args:
        benchmark: the benchmark whose tasks the grouping covers (every task, exactly).
        grouping: a :class:`~taskgroup.Grouping` or a list of groups of task names.
        settings: how every network trains (:class:`~taskgroup.settings.TrainSettings`,
            default: its defaults); the keywords below given here override it. Unset schedule
            fields take the benchmark's training defaults.
        aggregator, options: how each group trains (``taskgroup aggregators``); single-task
            baselines train plainly (``mean``), all-together uses ``aggregator``.
        steps, lr, optimizer, batch_size, eval_every, patience: the schedule and early stopping.
        seed: the seed of every network (initialisation, batches, training randomness).
        baselines: also train every task alone and all tasks together.
        workers: trainings run in this many processes (``spawn``); the benchmark must pickle.
        seeds: train every network (groups and baselines) with this many initialisations,
            initialisation k with the seed ``seed + 1000 k``, and report each metric and Δm
            as mean ± 95% interval over them (:meth:`GroupResults.delta_m_interval`);
            initialisation 0 is the one-seed run, in the same folders.
        out: run directory: checkpoints and results of each training under ``out/train/``, the
            event log ``out/log.jsonl`` and ``out/tensorboard/``, and ``out/results.json``.
            A second call with the same ``out`` resumes: finished trainings are not repeated.
        progress: show progress bars: ``None`` (default) when stderr is a terminal, ``True``
            always, ``False`` never.
        device: where the networks train (default: CUDA when available, else the CPU).
        force: with ``out``, retrain every network of this call from scratch instead of
            reading finished ones back (see the module doc: what a killed forced retrain
            leaves).

    Returns :class:`GroupResults`; ``results.delta_m()`` is the Δm of the grouped solution.
    """
    given = {
        "aggregator": aggregator,
        "options": options,
        "steps": steps,
        "lr": lr,
        "optimizer": optimizer,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "patience": patience,
        "seed": seed,
        "baselines": baselines,
        "workers": workers,
        "seeds": seeds,
    }
    settings = TrainSettings.for_benchmark(benchmark, settings, **given)
    groups = check_groups(
        grouping.groups if isinstance(grouping, Grouping) else grouping, benchmark.tasks.names
    )
    if settings.workers > 1 and distributed.active():
        raise ValueError(
            "workers > 1 cannot be combined with a distributed run (--nproc): every rank "
            "trains the same network in step; run independent groups as separate jobs instead"
        )
    inits = [settings.initialisation(k) for k in range(settings.seeds)]
    jobs = {
        initialisation_key(key, k): job
        for k, init in enumerate(inits)
        for key, job in _jobs(benchmark.tasks.names, groups, init).items()
    }
    run_dir = None if out is None else Path(out)
    if run_dir is not None:
        retire_networks(run_dir, list(jobs) if force else [])
    done = train_networks(benchmark, jobs, run_dir, settings.workers, progress, device)
    first, *others = [_gather(benchmark, groups, init, done, k) for k, init in enumerate(inits)]
    results = dataclasses.replace(first, initialisations=tuple(others))
    _log_results(results)
    if run_dir is not None:
        results.save(run_dir / RESULTS)
    return results


def retire_networks(run_dir: Path, keys: Sequence[str]) -> None:
    """Set aside and delete the trained networks ``keys`` of ``run_dir`` (folders under
    ``train/`` and their TensorBoard runs) and its ``results.json``, so that they are trained
    anew; first finish what a killed earlier call left listed (see the module doc). Only the
    writing rank acts; in a distributed run the others wait for it."""
    if distributed.is_writer():
        _finish_retiring(run_dir)
        if keys:
            (run_dir / RESULTS).unlink(missing_ok=True)  # first: no results of old networks
            write_json(run_dir / RETIRED_KEYS, list(keys))
            _finish_retiring(run_dir)
    if distributed.active():
        import torch.distributed as dist

        dist.barrier()


def _finish_retiring(run_dir: Path) -> None:
    """Move every network listed in ``RETIRED_KEYS`` into ``RETIRED`` (each move one atomic
    rename), drop the list, then delete ``RETIRED``: idempotent, so a kill at any point is
    finished by the next call."""
    journal, retired = run_dir / RETIRED_KEYS, run_dir / RETIRED
    if journal.exists():
        keys = _retired_keys(run_dir, journal)
        for i, key in enumerate(keys):
            places = {"train": network_dir(run_dir, key)}
            places["tensorboard"] = run_dir / TENSORBOARD / "train" / key
            for kind, place in places.items():
                if place.exists():
                    retired.mkdir(exist_ok=True)
                    place.rename(retired / f"{i}-{kind}")
        journal.unlink()
    if retired.exists():
        shutil.rmtree(retired)


def _retired_keys(run_dir: Path, journal: Path) -> list[str]:
    """The network keys listed in ``journal``; ``ValueError`` naming the file when one is not a
    string or names a folder outside ``run_dir``'s ``train/`` (a hostile list must not make
    the retirement move or delete anything elsewhere)."""
    keys = read_json(journal)
    train = os.path.realpath(network_dir(run_dir, ""))
    if not isinstance(keys, list):
        raise ValueError(f"{journal}: must be a list of network names, got {type(keys).__name__}")
    for key in keys:
        inside = isinstance(key, str) and key.strip("/.") != ""
        if inside:
            place = os.path.realpath(network_dir(run_dir, key))
            inside = os.path.commonpath([train, place]) == train and place != train
        if not inside:
            raise ValueError(
                f"{journal}: {key!r} is not a network folder under {train}; "
                "delete the file if no `taskgroup train --force` was interrupted"
            )
    return keys


def _log_results(results: GroupResults) -> None:
    """INFO: the groups and, with baselines, their Δm; WARNING when Δm is undefined."""
    groups = ", ".join("+".join(r.tasks) for r in results.groups)
    if results.single is None:
        logger.info(
            "trained %d groups (%s) with %s", len(results.groups), groups, results.aggregator
        )
        return
    try:
        gain = results.delta_m()
    except ValueError as error:
        logger.warning(
            "trained %d groups (%s); Δm is undefined: %s", len(results.groups), groups, error
        )
        return
    logger.info(
        "trained %d groups (%s) with %s: Δm %+.2f%% against each task alone (lower is better)",
        len(results.groups),
        groups,
        results.aggregator,
        gain,
    )


def _jobs(
    tasks: list[str], groups: list[tuple[str, ...]], settings: TrainSettings
) -> dict[str, tuple[tuple[str, ...], TrainSettings]]:
    """Every network to train, by key: the groups, then (with baselines) each task alone
    (plain ``mean``) and all tasks together; a network that is both is trained once."""
    jobs = {group_key(g, settings.aggregator): (g, settings) for g in groups}
    if settings.baselines:
        single = dataclasses.replace(settings, aggregator=SINGLE_TASK_AGGREGATOR, options={})
        for t in tasks:
            jobs.setdefault(group_key((t,), SINGLE_TASK_AGGREGATOR), ((t,), single))
        everything = tuple(tasks)
        jobs.setdefault(group_key(everything, settings.aggregator), (everything, settings))
    return jobs


def _gather(
    benchmark: Benchmark,
    groups: list[tuple[str, ...]],
    settings: TrainSettings,
    trained_networks: Mapping[str, GroupResult],
    init: int = 0,
) -> GroupResults:
    """The grouped run's results of initialisation ``init`` from its trained networks: each
    task served by the group with the lowest validation loss on it (ties to the first group)."""
    tasks, aggregator = benchmark.tasks.names, settings.aggregator

    def done(key: str) -> GroupResult:
        return trained_networks[initialisation_key(key, init)]

    trained = [done(group_key(g, aggregator)) for g in groups]
    serves = {}
    for t in tasks:
        holders = [i for i, r in enumerate(trained) if t in r.tasks]
        serves[t] = min(holders, key=lambda i: (trained[i].val[t][LOSS], i))
    single = together = None
    if settings.baselines:
        single = {t: done(group_key((t,), SINGLE_TASK_AGGREGATOR)) for t in tasks}
        together = done(group_key(tuple(tasks), aggregator))
    network = settings.network() | {"single_task_aggregator": SINGLE_TASK_AGGREGATOR}
    return GroupResults(
        tasks=tasks,
        aggregator=aggregator,
        groups=trained,
        serves=serves,
        single=single,
        together=together,
        directions=higher_is_better(benchmark.tasks),
        settings=network,
        trained_for={"groups": groups_fingerprint(groups), "settings": fingerprint(network)},
    )


def _train_job(
    benchmark: Benchmark,
    key: str,
    tasks: tuple[str, ...],
    settings: TrainSettings,
    run_dir: Path | None,
    threads: int | None,
    progress: bool | None,
    device: torch.device | str | None,
) -> GroupResult:
    if threads is not None:
        torch.set_num_threads(threads)
    directory = None if run_dir is None else network_dir(run_dir, key)
    return train_group(
        benchmark,
        tasks,
        settings,
        directory=directory,
        run_dir=run_dir,
        progress=progress,
        device=device,
        name=key,
    )


def train_networks(
    benchmark: Benchmark,
    jobs: Mapping[str, tuple[tuple[str, ...], TrainSettings]],
    run_dir: Path | None,
    workers: int,
    progress: bool | None,
    device: torch.device | str | None,
) -> dict[str, GroupResult]:
    """Train every ``jobs[key] = (tasks, settings)`` network (resumable under
    ``run_dir/train/<key>`` when ``run_dir`` is given), one after another or in ``workers``
    spawned processes; returns ``{key: GroupResult}``."""
    done: dict[str, GroupResult] = {}
    disable = None if progress is None else not progress  # None: on when stderr is a terminal
    bar = tqdm(total=len(jobs), desc="training networks", unit="net", disable=disable)
    try:
        if workers == 1:
            for key, (tasks, settings) in jobs.items():
                done[key] = _train_job(
                    benchmark, key, tasks, settings, run_dir, None, progress, device
                )
                bar.update()
            return done
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {
                pool.submit(
                    _train_job, benchmark, key, tasks, settings, run_dir, threads, False, device
                ): key
                for key, (tasks, settings) in jobs.items()
            }
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.update()
        return done
    finally:
        bar.close()
