"""What a report shows: the files of a run directory, read once, and which of them are stale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.report.freshness import Stale, stale_stages
from taskgroup.rundir import AFFINITY, GROUPS, RESULTS, read_manifest
from taskgroup.storage import read_json
from taskgroup.training.groups import GroupResults


@dataclass(frozen=True)
class RunData:
    """A run directory's outputs (``None`` where a stage has not run).

    Attributes:
        run_dir: the directory as the caller named it (the commands the report prints use it).
        affinity, grouping, results: ``affinity.json``, ``groups.json``, ``results.json``.
        groups_record: ``groups.json`` as read (its sweep and the affinity it was selected from).
        manifest: ``manifest.json`` (``{}`` without one).
        stale: the stale stages (:func:`~taskgroup.report.freshness.stale_stages`).
    """

    run_dir: Path
    affinity: AffinityMatrix | None
    grouping: Grouping | None
    groups_record: dict[str, Any] | None
    results: GroupResults | None
    manifest: dict[str, Any]
    stale: list[Stale]

    def is_stale(self, stage: str) -> bool:
        """Whether ``stage`` (``"groups"`` or ``"results"``) is stale."""
        return any(s.stage == stage for s in self.stale)

    @property
    def fresh_results(self) -> GroupResults | None:
        """The results, unless they are stale (then ``None``: they are never shown)."""
        return None if self.is_stale("results") else self.results

    def stage(self, name: str) -> dict[str, Any]:
        """What stage ``name`` recorded in the manifest (``{}`` when nothing)."""
        record = self.manifest.get("stages", {}).get(name)
        return record if isinstance(record, dict) else {}


def read_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir``'s affinity, groups, results and manifest, whichever exist."""
    run_dir = Path(run_dir)
    affinity = AffinityMatrix.load(run_dir / AFFINITY) if (run_dir / AFFINITY).exists() else None
    grouping, record = None, None
    if (run_dir / GROUPS).exists():
        record = read_json(run_dir / GROUPS)
        grouping = Grouping.from_dict(record, source=str(run_dir / GROUPS))
    results = GroupResults.load(run_dir / RESULTS) if (run_dir / RESULTS).exists() else None
    manifest = read_manifest(run_dir)
    groups = None if grouping is None else (grouping, record)
    stale = stale_stages(run_dir, affinity, groups, results, manifest)
    return RunData(run_dir, affinity, grouping, record, results, manifest, stale)
