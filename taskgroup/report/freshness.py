"""Whether each stage's output still belongs to the output it was made from.

``groups.json`` records the fingerprint of the affinity matrix it was selected from
(:func:`affinity_fingerprint`, written by the group stage); ``results.json`` records the
fingerprint of the groups (and settings) its networks were trained for
(``GroupResults.trained_for``). :func:`stale_stages` compares them with what the run directory
holds now, so a report never shows the results of one grouping beside another, and names the
command that refreshes a stale stage.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.rundir import GROUPS, RESULTS
from taskgroup.settings import GroupSettings
from taskgroup.storage import fingerprint
from taskgroup.training.groups import GroupResults, groups_fingerprint

AFFINITY_FINGERPRINT = "affinity_fingerprint"  # the key of groups.json that records it


def affinity_fingerprint(affinity: AffinityMatrix | str | Path) -> str:
    """A fingerprint of an affinity matrix's tasks and values (of the matrix or the file at that
    path); a re-measurement that gives the same matrix has the same one."""
    if not isinstance(affinity, AffinityMatrix):
        affinity = AffinityMatrix.load(affinity)
    return fingerprint({"tasks": affinity.tasks, "values": affinity.values.tolist()})


@dataclass(frozen=True)
class Stale:
    """A stage whose output was made from something the run directory no longer holds.

    Attributes:
        stage: ``"groups"`` or ``"results"``; file: its file; reason: why (plain text);
        command: the command that refreshes it.
    """

    stage: str
    file: str
    reason: str
    command: str


def group_command(run_dir: str | Path, grouping: Grouping, record: dict[str, Any] | None) -> str:
    """The ``taskgroup group`` command that selects again with the settings the group stage
    recorded in the manifest (``record``; without it, the grouping's budget and partition)."""
    record = record or {"budget": grouping.budget, "partition": grouping.partition}
    parts = ["taskgroup", "group", str(run_dir), "--budget", str(record.get("budget"))]
    for f in fields(GroupSettings):
        value = record.get(f.name, f.default)
        if f.name == "budget" or value == f.default or value is None:
            continue
        option = "--" + f.name.replace("_", "-")
        parts += [option] if value is True else [option, str(value)]
    return shlex.join(parts)


def train_command(run_dir: str | Path) -> str:
    """The ``taskgroup train`` command that trains the groups of ``groups.json``."""
    return shlex.join(["taskgroup", "train", str(run_dir)])


def _names(groups) -> str:
    return "; ".join("{" + ", ".join(g) + "}" for g in groups)


def stale_stages(
    run_dir: str | Path,
    affinity: AffinityMatrix | None,
    groups: tuple[Grouping, dict[str, Any]] | None,
    results: GroupResults | None,
    manifest: dict[str, Any],
) -> list[Stale]:
    """The stale stages of ``run_dir``, in pipeline order.

    ``groups``: the grouping and the ``groups.json`` record it was read from; ``manifest``: the
    run's manifest. The groups are stale when the affinity matrix is not the one they were
    selected from (or is of other tasks); the results when their networks were trained for
    other groups than ``groups.json`` holds. A ``groups.json`` written before the fingerprint
    was recorded is compared by its tasks only.
    """
    stale = []
    stages = manifest.get("stages", {}) if isinstance(manifest, dict) else {}
    if groups is not None and affinity is not None:
        grouping, record = groups
        made_from = record.get(AFFINITY_FINGERPRINT)
        if grouping.tasks != affinity.tasks or (
            made_from is not None and made_from != affinity_fingerprint(affinity)
        ):
            stale.append(
                Stale(
                    "groups",
                    GROUPS,
                    f"{GROUPS} was selected from another affinity matrix than affinity.json "
                    "holds now (the affinity was measured again).",
                    group_command(run_dir, grouping, stages.get("group")),
                )
            )
    if results is not None and groups is not None:
        grouping = groups[0]
        if results.grouping_fingerprint != groups_fingerprint(grouping.groups):
            trained = _names(r.tasks for r in results.groups)
            stale.append(
                Stale(
                    "results",
                    RESULTS,
                    f"{RESULTS} was trained for other groups ({trained}) than {GROUPS} "
                    f"holds now ({_names(grouping.groups)}); its results are not shown.",
                    train_command(run_dir),
                )
            )
    return stale
