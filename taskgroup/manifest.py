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
