"""The run directory: every file name of a run, and ``manifest.json``, what produced it.

A run directory holds one benchmark's run: ``manifest.json`` (the run's identity and, per stage,
its settings, versions and timings), ``affinity.json``, ``groups.json``, ``results.json``, the
plots, ``report.html``, the event log and one folder per trained network under ``train/``. This
module is the only place their names are written; every stage and the report read them here.
"""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskgroup._version import __version__
from taskgroup.storage import read_json, write_json

MANIFEST = "manifest.json"
AFFINITY = "affinity.json"
GROUPS = "groups.json"
RESULTS = "results.json"
PAIRS = "pairs.json"
REPORT = "report.html"
LOG = "log.jsonl"
TENSORBOARD = "tensorboard"
TRAIN = "train"  # one folder per trained network: TRAIN/<group_key>/
INIT = "init{}"  # initialisation k > 0 of a multi-seed run: TRAIN/init<k>/<group_key>/
# inside a network's folder
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
WEIGHTS = "model.pt"
# plots
AFFINITY_HEATMAP = "affinity_heatmap.png"
AFFINITY_OVER_TRAINING = "affinity_over_training.png"
GROUPS_GRAPH = "groups_graph.png"
SCORE_VS_BUDGET = "score_vs_budget.png"
RESULTS_PLOT = "results.png"


def network_dir(run_dir: str | Path, key: str) -> Path:
    """The folder of one trained network (``key``: the training's ``group_key``, or its
    :func:`initialisation_key`)."""
    return Path(run_dir) / TRAIN / key


def initialisation_key(key: str, init: int) -> str:
    """The name of initialisation ``init`` of the training ``key`` (a ``group_key``): ``key``
    itself for initialisation 0, so a one-seed run keeps its layout, else ``init<k>/<key>``,
    a folder of its own under ``TRAIN`` and a run of its own in the event log."""
    return key if init == 0 else f"{INIT.format(init)}/{key}"


def versions() -> dict[str, str]:
    return {
        "taskgroup": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/manifest.json`` (``{}`` when there is none yet); ``ValueError`` when it is not a
    taskgroup manifest, so that nothing replaces a file it cannot read."""
    path = Path(run_dir) / MANIFEST
    if path.exists() and not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    manifest = read_json(path) if path.exists() else {}
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a taskgroup manifest (expected a JSON object)")
    return manifest


def stage_record(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """What ``stage`` recorded in the manifest when it last finished, or ``None``."""
    record = read_manifest(run_dir).get("stages", {}).get(stage)
    return record if isinstance(record, dict) else None


def record_stage(run_dir: str | Path, stage: str, record: dict[str, Any]) -> Path:
    """Add or replace ``stages[stage]`` in ``run_dir/manifest.json`` (atomic)."""
    manifest = read_manifest(run_dir)
    manifest.setdefault("stages", {})[stage] = {
        **record,
        "argv": sys.argv,
        "versions": versions(),
        "finished": now(),
    }
    return write_json(Path(run_dir) / MANIFEST, manifest)


def check_identity(run_dir: str | Path, identity: dict[str, Any]) -> bool:
    """Whether ``run_dir`` may hold the run ``identity`` (benchmark, factory, options, tasks,
    seed, and ``data``: a fingerprint of the benchmark's data): ``True`` when it already does,
    ``False`` when it holds no run yet; ``ValueError`` (nothing written) when it holds another
    run's outputs, naming what differs (the data's split and field, e.g.
    ``data.train.targets.sum``, when nothing else differs). A key that the recorded identity
    lacks (written before taskgroup recorded it) is not compared."""
    recorded = read_manifest(run_dir).get("run")
    if recorded is None:
        return False
    changed = identity_differences(recorded, identity)
    if not changed:
        return True
    shown = "; ".join(f"{k}: {there!r} there, {now!r} now" for k, there, now in changed[:4])
    more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
    what = (
        "on other data"
        if all(k.startswith("data.") for k, _, _ in changed)
        else "of another benchmark or task set"
    )
    raise ValueError(f"{run_dir} holds a run {what} ({shown}{more}); choose another --out")


def identity_differences(
    recorded: dict[str, Any], identity: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, new value)`` of each key that differs (keys the record lacks
    skipped). Differences of the data's fingerprint are listed field by field (``data.val.rows``)
    and only when nothing else differs: another seed or option explains other data."""
    keys = [k for k in identity if k in recorded] + [k for k in recorded if k not in identity]
    changed = [
        (k, recorded.get(k), identity.get(k)) for k in keys if recorded.get(k) != identity.get(k)
    ]
    if [k for k, _, _ in changed] != ["data"]:
        return [c for c in changed if c[0] != "data"]
    return _leaf_differences("data", recorded["data"], identity["data"])


def _leaf_differences(path: str, there: Any, now: Any) -> list[tuple[str, Any, Any]]:
    if not (isinstance(there, dict) and isinstance(now, dict)):
        return [] if there == now else [(path, there, now)]
    keys = [*now, *(k for k in there if k not in now)]
    return [d for k in keys for d in _leaf_differences(f"{path}.{k}", there.get(k), now.get(k))]


def claim_run_dir(run_dir: str | Path, identity: dict[str, Any]) -> None:
    """Record in ``run_dir/manifest.json`` which run its outputs belong to, or refuse a
    directory that holds another run's (see :func:`check_identity`)."""
    if not check_identity(run_dir, identity):
        manifest = read_manifest(run_dir)
        manifest["run"] = identity
        write_json(Path(run_dir) / MANIFEST, manifest)


def run_identity(run_dir: str | Path) -> dict[str, Any] | None:
    """The run identity recorded by :func:`claim_run_dir`, or ``None``."""
    return read_manifest(run_dir).get("run")
