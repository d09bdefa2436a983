"""Streaming run events to a JSONL log and to TensorBoard event files.

Every record goes to ``RUN_DIR/log.jsonl`` as one JSON object per line (``{"time", "stage",
"run", "step", "kind", "values"}``), appended with a single ``write`` on a file opened with
``O_APPEND``, so several worker processes can share the log without interleaving lines. Scalars
also go to ``RUN_DIR/tensorboard/<run>/`` (``tensorboard --logdir RUN_DIR/tensorboard``).
A resumed run appends after what was already logged; readers keep the last record of a
(run, step, kind).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskgroup.distributed import is_writer
from taskgroup.rundir import LOG, TENSORBOARD


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class EventLog:
    """Append-only events of one ``run`` (a stage, or one group's training) in ``run_dir``.

    Args:
        run_dir: the run directory; ``None`` makes every call a no-op (library use without files).
        stage: ``"affinity"``, ``"train"``, ...
        run: the name of this run inside the stage (e.g. the group's key); TensorBoard's run.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self, run_dir: str | Path | None, stage: str, run: str, *, tensorboard: bool = True
    ) -> None:
        self.stage, self.run = stage, run
        self._fd: int | None = None
        self._writer = None
        if run_dir is None or not is_writer():  # in a distributed run, rank 0 logs
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(run_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / TENSORBOARD / stage / run))

    def scalars(self, step: int, kind: str, values: Mapping[str, float]) -> None:
        """Log ``values`` (name -> number) of ``kind`` (``"loss"``, ``"weight"``, ``"val"``...)
        at ``step``. Non-finite numbers are written as ``null`` to the JSONL log."""
        if self._fd is None:
            return
        clean = {name: float(v) for name, v in values.items()}
        self._append(step, kind, {name: _finite(v) for name, v in clean.items()})
        if self._writer is not None:
            for name, v in clean.items():
                self._writer.add_scalar(f"{kind}/{name}", v, step)

    def event(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
        """Log a non-scalar record (e.g. ``"resumed"``, ``"finished"``) to the JSONL log only."""
        if self._fd is not None:
            self._append(step, kind, dict(values))

    def _append(self, step: int, kind: str, values: dict[str, Any]) -> None:
        record = {
            "time": round(time.time(), 3),
            "stage": self.stage,
            "run": self.run,
            "step": step,
            "kind": kind,
            "values": values,
        }
        os.write(self._fd, (json.dumps(record, allow_nan=False) + "\n").encode())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/log.jsonl`` in order (a torn last line, from a kill mid-write,
    is skipped)."""
    path = Path(run_dir) / LOG
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
