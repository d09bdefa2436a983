"""Streaming run events to a JSONL log and to TensorBoard event files.

Every record goes to ``RUN_DIR/log.jsonl`` as one JSON object per line (``{"time", "stage",
"run", "step", "kind", "values"}``), appended with a single ``write`` on a file opened with
``O_APPEND``, so several worker processes can share the log without interleaving lines. Scalars
also go to ``RUN_DIR/tensorboard/<run>/`` (``tensorboard --logdir RUN_DIR/tensorboard``).
A resumed run appends after what was already logged; readers keep the last record of a
(run, step, kind).

Both are written synchronously through :class:`taskgroup.storage.AppendFile`: a record is on
disk when the call returns (a kill loses nothing logged before it), a full disk raises
``OSError`` at once and leaves no partial record, and a line torn by a kill mid-write is
skipped by :func:`read_log` without losing the records after it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskgroup.distributed import is_writer
from taskgroup.rundir import LOG, TENSORBOARD
from taskgroup.storage import AppendFile, make_folders


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
        self._log: AppendFile | None = None
        self._writer: TensorBoardFile | None = None
        if run_dir is None or not is_writer():  # in a distributed run, rank 0 logs
            return
        run_dir = Path(run_dir)
        make_folders(run_dir)
        self._log = AppendFile(run_dir / LOG, lines=True)
        if tensorboard:
            try:
                self._writer = TensorBoardFile(run_dir / TENSORBOARD / stage / run)
            except BaseException:
                self.close()
                raise

    def scalars(self, step: int, kind: str, values: Mapping[str, float]) -> None:
        """Log ``values`` (name -> number) of ``kind`` (``"loss"``, ``"weight"``, ``"val"``...)
        at ``step``. Non-finite numbers are written as ``null`` to the JSONL log."""
        if self._log is None:
            return
        clean = {name: float(v) for name, v in values.items()}
        self._append(step, kind, {name: _finite(v) for name, v in clean.items()})
        if self._writer is not None:
            self._writer.scalars(step, {f"{kind}/{name}": v for name, v in clean.items()})

    def event(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
        """Log a non-scalar record (e.g. ``"resumed"``, ``"finished"``) to the JSONL log only."""
        if self._log is not None:
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
        self._log.append((json.dumps(record, allow_nan=False) + "\n").encode())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardFile:
    """One TensorBoard event file in ``folder`` (``events.out.tfevents.<time>.<host>.<pid>.<n>``,
    TensorBoard's naming), written synchronously record by record through
    :class:`~taskgroup.storage.AppendFile`: TensorBoard's own writer flushes from a background
    thread, which would hide a full disk until later and report it with a traceback."""

    _files = 0  # files opened by this process: the <n> of their names

    def __init__(self, folder: str | Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        make_folders(folder)
        TensorBoardFile._files += 1
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{TensorBoardFile._files}"
        )
        self.path = Path(folder) / name
        self._file = AppendFile(self.path)
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One event at ``step`` holding every ``tag -> value`` of ``values``."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
        self._write(Event(wall_time=time.time(), step=step, summary=summary))

    def _write(self, event) -> None:
        """TFRecord framing: length, its masked CRC-32C, the data, its masked CRC-32C."""
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        footer = struct.pack("<I", masked_crc32c(data))
        self._file.append(header + struct.pack("<I", masked_crc32c(header)) + data + footer)

    def close(self) -> None:
        self._file.close()


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
