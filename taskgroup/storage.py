"""Crash-safe file writes, and JSON reading with errors that name the file.

Every file of a run directory is written here, so a kill, a full disk or a failed write at any
moment leaves each file either as it was or whole and new, never partial:

- :func:`write_atomic` (JSON, plots, pages, checkpoints): a temporary file in the same folder,
  written, flushed to disk (``fsync``), then renamed over the target (``os.replace``). A failed
  write removes its temporary file and the folders it created, and raises ``OSError`` naming the
  target; a kill can leave a temporary file (``.NAME.XXXXXXXX.tmp``), which
  :func:`remove_temporaries` clears (the next run in that folder does).
- :class:`AppendFile` (the event log, TensorBoard's event files): each record in one ``write``;
  a record that fails half-written (a full disk) is cut off again, and a torn last line (a kill
  mid-write) is ended before the next record, so a reader skips it and loses nothing after it.
- :func:`read_json` refuses what Python's ``json`` would accept silently (``NaN``,
  ``Infinity``, numbers out of float range) and what it cannot parse (nesting that exhausts the
  stack), each as one ``ValueError`` that names the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPORARY = ".tmp"  # suffix of write_atomic's temporary files: .NAME.XXXXXXXX.tmp


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    readers see either the old file or the whole new one, never a partial write (see the module
    doc). A symbolic link at ``path`` is replaced, never followed.

    In a torch.distributed run only rank 0 writes (every rank holds the same results); the
    others return the path without touching the file system."""
    from taskgroup.distributed import is_writer

    path = Path(path)
    if not is_writer():
        return path
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    created = make_folders(path.parent)
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY)
        try:
            write_all(fd, payload)
            os.fsync(fd)
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException as e:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        remove_empty_folders(created)
        if isinstance(e, OSError):
            raise named_error(e, path) from None
        raise
    _sync_folder(path.parent)
    return path


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (``os.write`` until done; a write
    that makes no progress is a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def named_error(error: OSError, path: str | os.PathLike) -> OSError:
    """``error`` as an ``OSError`` of the same kind that names ``path`` (not a temporary file,
    and not ``None`` as ``os.write``'s errors do)."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk as well (best effort: some file systems refuse a folder's fd)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; the folders this call created, outermost
    first (on failure it removes them again and raises ``OSError`` naming the folder)."""
    folder = Path(folder)
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    for f in reversed(missing):
        try:
            f.mkdir()
            made.append(f)
        except FileExistsError:  # made meanwhile by another process: fine if a folder
            if not f.is_dir():
                remove_empty_folders(made)
                raise named_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), f) from None
        except OSError as e:
            remove_empty_folders(made)
            raise named_error(e, f) from None
    return made


def remove_empty_folders(created: list[Path]) -> None:
    """Remove what :func:`make_folders` created, innermost first, where still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes left under ``folder`` (symbolic links are
    not followed); the paths removed. Only safe when no other process writes there: the run
    directory's lock (:func:`taskgroup.rundir.hold_run_dir`) calls it."""
    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and name.endswith(TEMPORARY) and name.count(".") >= 3:
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class AppendFile:
    """A file that grows by whole records: each :meth:`append` is one ``write`` at the end
    (``O_APPEND``, so processes sharing the file do not interleave records). A record that
    fails part-way (a full disk) is cut off again when no other process appended after it, and
    the ``OSError`` names the file. With ``lines=True`` a last line left without its newline
    (a kill mid-write) is ended on opening, so the next record starts a line of its own.
    A symbolic link at ``path`` is refused (``O_NOFOLLOW``)."""

    def __init__(self, path: str | os.PathLike, *, lines: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise named_error(e, self.path) from None
        if lines and not _ends_a_line(self.path):
            self.append(b"\n")

    def append(self, record: bytes) -> None:
        """Add ``record`` whole at the end of the file, or raise ``OSError`` leaving it as it
        was."""
        if self._fd is None:
            raise ValueError(f"{self.path}: closed")
        start = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, record)
            if written != len(record):  # a disk that filled up mid-record
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            size = os.fstat(self._fd).st_size
            if start < size <= start + len(record):  # a part of ours, and nobody's after it
                os.ftruncate(self._fd, start)
            raise named_error(e, self.path) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf are refused, not written)."""
    return write_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def fingerprint(value: Any) -> str:
    """A short digest (16 hex digits of a sha256) of ``value``'s JSON with sorted keys, so equal
    JSON values (a tuple and a list alike) have equal fingerprints."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_json(path: str | os.PathLike) -> Any:
    """Parse the JSON file at ``path``; ``ValueError`` naming the file when it is missing,
    unreadable or malformed, holds ``NaN``/``Infinity`` or a number beyond float range (or an
    integer of thousands of digits), or nests too deeply to parse."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    return parse_json(text, str(path))


def parse_json(text: str, source: str) -> Any:
    """``text`` parsed as strict JSON (see :func:`read_json`); errors name ``source``."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: malformed JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ValueError(f"{source}: malformed JSON (nested too deeply to read)") from None
    except ValueError as e:  # _no_constant, _finite_float, or an integer of too many digits
        reason = str(e).split(":")[0].split(";")[0]
        raise ValueError(f"{source}: malformed JSON ({reason})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise ValueError(f"the number {shown} is beyond float range")
    return value


def check_json(value: Any, schema: Any, source: str, where: str = "") -> None:
    """Check the parsed JSON ``value`` against ``schema``; ``ValueError`` naming ``source`` and
    the key path of the first value that does not fit (``SOURCE: groups[0].test.a must be an
    object, got a list``), so a file with a wrong type is refused where it is read, not met as a
    Python error later.

    ``schema``: ``str``, ``int``, ``bool``, ``float`` (any number; never ``true``/``false``),
    ``None`` (null) or ``object`` (anything); ``[s]`` a list of ``s``; ``{str: s}`` an object of
    any keys, each value ``s``; ``{"key": s, "?opt": s}`` an object with ``key`` (and, where
    present, ``opt``), other keys allowed; a tuple: any one of its schemas."""
    if not _fits(value, schema):
        shown = where or "the file"
        raise ValueError(f"{source}: {shown} must be {_wanted(schema)}, got {_kind(value)}")
    if isinstance(schema, list):
        for i, item in enumerate(value):
            check_json(item, schema[0], source, f"{where}[{i}]")
    elif isinstance(schema, dict) and list(schema) == [str]:
        for key, item in value.items():
            check_json(item, schema[str], source, _key(where, key))
    elif isinstance(schema, dict):
        for key, inner in schema.items():
            name = key.removeprefix("?")
            if name in value:
                check_json(value[name], inner, source, _key(where, name))
            elif not key.startswith("?"):
                raise ValueError(f"{source}: missing {_key(where, name)!r}")
    elif isinstance(schema, tuple):
        for option in schema:
            if _fits(value, option):
                check_json(value, option, source, where)
                return


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _fits(value: Any, schema: Any) -> bool:
    """Whether ``value`` is of ``schema``'s kind (its items are checked separately)."""
    if isinstance(schema, tuple):
        return any(_fits(value, option) for option in schema)
    if schema is None:
        return value is None
    if schema is object:
        return True
    if isinstance(schema, list):
        return isinstance(value, list)
    if isinstance(schema, dict):
        return isinstance(value, dict)
    if schema is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, schema)


def _wanted(schema: Any) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_wanted(option) for option in schema)
    if isinstance(schema, list | dict):
        return "a list" if isinstance(schema, list) else "an object"
    names = {
        None: "null",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }
    return names.get(schema, "anything")


def _kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "a list" if isinstance(value, list) else "an object"
