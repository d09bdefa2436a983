"""``manifest.json``: what produced a run directory (config, versions, seed, timings per stage)."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskgroup.storage import read_json, write_json

MANIFEST = "manifest.json"


def versions() -> dict[str, str]:
    from taskgroup import __version__

    return {
        "taskgroup": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_stage(run_dir: str | Path, stage: str, record: dict[str, Any]) -> Path:
    """Add or replace ``stages[stage]`` in ``run_dir/manifest.json`` (atomic). An unreadable
    existing manifest is an error rather than silently replaced, so no history is lost."""
    path = Path(run_dir) / MANIFEST
    manifest = read_json(path) if path.exists() else {}
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a taskgroup manifest (expected a JSON object)")
    manifest.setdefault("stages", {})[stage] = {
        **record,
        "argv": sys.argv,
        "versions": versions(),
        "finished": now(),
    }
    return write_json(path, manifest)


def claim_run_dir(run_dir: str | Path, identity: dict[str, Any]) -> None:
    """Record in ``run_dir/manifest.json`` which benchmark, tasks and seed its outputs belong
    to, or refuse (``ValueError``, nothing written) a directory that holds another run's."""
    path = Path(run_dir) / MANIFEST
    if path.exists() and not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    manifest = read_json(path) if path.exists() else {}
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a taskgroup manifest (expected a JSON object)")
    recorded = manifest.get("run")
    if recorded is None:
        manifest["run"] = identity
        write_json(path, manifest)
    elif recorded != identity:
        changed = sorted(k for k in identity if recorded.get(k) != identity[k])
        details = "; ".join(f"{k}: {recorded.get(k)!r} there, {identity[k]!r} now" for k in changed)
        raise ValueError(
            f"{run_dir} holds a run of another benchmark or task set ({details}); "
            f"choose another --out"
        )


def run_identity(run_dir: str | Path) -> dict[str, Any] | None:
    """The benchmark identity recorded by :func:`claim_run_dir`, or ``None``."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a taskgroup manifest (expected a JSON object)")
    return manifest.get("run")
