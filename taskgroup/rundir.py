"""The run directory: every file name of a run, and ``manifest.json``, what produced it.

A run directory holds one benchmark's run: ``manifest.json`` (the run's identity and, per stage,
its settings, versions and timings), ``affinity.json``, ``groups.json``, ``results.json``, the
plots, ``report.html``, the event log and one folder per trained network under ``train/``. This
module is the only place their names are written; every stage and the report read them here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import inspect
import json
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskgroup._version import __version__
from taskgroup.storage import (
    make_folders,
    named_error,
    read_json,
    remove_empty_folders,
    remove_temporaries,
    write_json,
)

MANIFEST = "manifest.json"
LOCK = "taskgroup.lock"  # held while a command works in the directory: who holds it, as JSON
AFFINITY = "affinity.json"
GROUPS = "groups.json"
RESULTS = "results.json"
PAIRS = "pairs.json"
REPORT = "report.html"
LOG = "log.jsonl"
TENSORBOARD = "tensorboard"
TRAIN = "train"  # one folder per trained network: TRAIN/<group_key>/
INIT = "init{}"  # initialisation k > 0 of a multi-seed run: TRAIN/init<k>/<group_key>/
# a forced retrain (train_groups(force=True)) first lists the networks it replaces in RETIRED_KEYS,
# then moves their folders into RETIRED and deletes it; a killed one is finished by the next call
RETIRED = ".retired"
RETIRED_KEYS = ".retired.json"
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
    stages = manifest.get("stages", {})
    if not isinstance(stages, dict) or not all(isinstance(r, dict) for r in stages.values()):
        raise ValueError(f"{path}: not a taskgroup manifest ('stages' must map names to objects)")
    if not isinstance(manifest.get("run", {}), dict):
        raise ValueError(f"{path}: not a taskgroup manifest ('run' must be an object)")
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


class StaleLockWarning(UserWarning):
    """A run directory's lock was left by a process that is gone, and is taken over."""


class RunDirBusy(ValueError):
    """Another live process holds the run directory's lock (the message names it)."""


_held: dict[str, list] = {}  # run directories this process holds: real path -> [fd, depth]


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir``'s lock (``run_dir/taskgroup.lock``) while the block runs, so that one
    command at a time works in a run directory.

    Refuses with :class:`RunDirBusy` (a ``ValueError``, one line naming the holder's process id
    and host; nothing touched) while another live process holds it. A lock left by a process
    that is gone (killed, crashed) is taken over, with a :class:`StaleLockWarning` that says
    so. The lock is an ``fcntl.flock`` on the file, which the system releases when its process
    dies however it dies; where the file system has no ``flock``, a holder recorded on this
    host is taken over once its process id is gone. Nested holds in one process share the
    lock; in a torch.distributed run only rank 0 takes it (the ranks of one run work together).

    Before the block runs it also refuses a run directory that is a symbolic link, or that
    holds one leading outside it (taskgroup writes only inside the run directory), and removes
    the temporary files that killed writes left behind. The folders it had to create are
    removed again when the block leaves them empty (a command that fails its checks leaves no
    run directory)."""
    from taskgroup.distributed import is_writer

    run_dir = Path(run_dir)
    if not is_writer():
        yield run_dir
        return
    _check_not_a_link(run_dir)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield run_dir
        finally:
            _held[key][1] -= 1
        return
    created = make_folders(run_dir)
    try:
        fd = _acquire(run_dir)
    except BaseException:
        remove_empty_folders(created)
        raise
    _held[key] = [fd, 1]
    try:
        check_contained(run_dir)
        remove_temporaries(run_dir)
        yield run_dir
    finally:
        del _held[key]
        _release(run_dir / LOCK, fd)
        remove_empty_folders(created)


def holds_run_dir(function: Callable) -> Callable:
    """Decorate ``function`` (which has a ``run_dir`` parameter) to run inside
    :func:`hold_run_dir` of that run directory."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def held(*args, **kwargs):
        run_dir = signature.bind(*args, **kwargs).arguments["run_dir"]
        with hold_run_dir(run_dir):
            return function(*args, **kwargs)

    return held


def _check_not_a_link(run_dir: Path) -> None:
    if run_dir.is_symlink():
        raise ValueError(
            f"{run_dir} is a symbolic link (to {os.path.realpath(run_dir)}); taskgroup writes "
            f"only into a real folder: give the folder itself as the run directory"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")


def check_contained(run_dir: str | Path) -> None:
    """``ValueError`` naming the first symbolic link under ``run_dir`` that leads outside it
    (a file or a folder that taskgroup would write through to elsewhere)."""
    root = os.path.realpath(run_dir)
    for folder, folders, files in os.walk(run_dir):
        for name in [*folders, *files]:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                continue
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                raise ValueError(
                    f"{path} is a symbolic link to {target}, outside the run directory "
                    f"{run_dir}; taskgroup writes only inside it: remove the link or choose "
                    f"another run directory"
                )


def _acquire(run_dir: Path) -> int:
    """Take ``run_dir/LOCK``: its open file descriptor, holding the lock and naming this
    process. A lock file that its holder deletes while we open it is opened again."""
    path = run_dir / LOCK
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise named_error(e, path) from None
        try:
            if _lock_or_holder(fd, run_dir) and _still_at(fd, path):
                _claim(fd, path, run_dir)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise RunDirBusy(f"{run_dir}: its lock {LOCK} keeps changing hands; try again")


def _lock_or_holder(fd: int, run_dir: Path) -> bool:
    """Lock ``fd`` or raise :class:`RunDirBusy` naming the live holder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        raise RunDirBusy(_busy(run_dir, _holder(fd, wait=True))) from None
    except OSError as e:  # no flock on this file system: judge by the recorded holder
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise named_error(e, run_dir / LOCK) from None
    holder = _holder(fd, wait=False)
    if holder and (holder.get("host") != socket.gethostname() or _alive(holder.get("pid"))):
        raise RunDirBusy(_busy(run_dir, holder))
    return True


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (its holder may have deleted it on release
    between our open and our lock)."""
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _claim(fd: int, path: Path, run_dir: Path) -> None:
    """Record this process as the holder, saying so when it takes over from a dead one."""
    previous = _holder(fd, wait=False)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), "argv": sys.argv}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise named_error(e, path) from None
    if previous is not None:
        warnings.warn(
            StaleLockWarning(
                f"{run_dir}: taking over the lock of process {previous.get('pid', '?')} on "
                f"{previous.get('host', '?')}, which is gone (killed or crashed); its files "
                f"are kept and the run resumes from them"
            ),
            stacklevel=2,
        )


def _holder(fd: int, *, wait: bool) -> dict | None:
    """What the lock file says of its holder (``{}`` when unreadable; ``None`` when empty).
    With ``wait``, give a holder that has just locked a moment to write its name."""
    for _ in range(20 if wait else 1):
        text = os.pread(fd, 4096, 0)
        if text:
            try:
                holder = json.loads(text)
            except (ValueError, RecursionError):
                return {}
            return holder if isinstance(holder, dict) else {}
        if wait:
            time.sleep(0.01)
    return None


def _busy(run_dir: Path, holder: dict | None) -> str:
    who = (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
        f"{holder.get('since', '?')}"
        if holder
        else "another process"
    )
    return (
        f"{run_dir} is in use by another taskgroup command ({who}); wait for it to finish "
        f"or stop it, then run this command again"
    )


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release(path: Path, fd: int) -> None:
    """Delete the lock file while still holding it, then let go."""
    with contextlib.suppress(OSError):
        if _still_at(fd, path):
            path.unlink()
    os.close(fd)
