"""A fingerprint of a benchmark's data, which a run directory records so that a resume on other
data is refused, naming the split and the field that differ.

For each split (``train``, ``val``, ``test``) the fingerprint holds its row count and a digest
(the first 16 hex digits of a sha256) of its inputs and of each task's targets; a digest covers
every tensor's dtype, shape and bytes. ``tasks`` digests each task's name, kind and metric names
(their functions cannot be hashed).

What is hashed depends on the split, to keep it fast:

- an in-memory :class:`~taskgroup.data.benchmark.Split` of at most :data:`FULL_BYTES` bytes:
  every row (``"hashed": "all"``; about 1 GB/s);
- a larger in-memory split: :data:`SAMPLE_ROWS` rows evenly spaced over the split;
- any other split (read from files or from a ``Dataset``, possibly streamed): its first
  :data:`SAMPLE_ROWS` rows in order, read with ``split.chunks`` (``"hashed": "first N rows"``).

A sampled fingerprint misses a change confined to rows it does not read; the row count still
catches a split that grew or shrank. Inputs that are neither tensors, arrays, scalars, strings,
mappings, sequences, dataclasses nor objects with ``to_dict()`` contribute only their type name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from taskgroup.data.benchmark import Benchmark, DataSplit, Split

SPLITS = ("train", "val", "test")
FULL_BYTES = 256 * 2**20
SAMPLE_ROWS = 256
DIGITS = 16


def data_fingerprint(bench: Benchmark) -> dict[str, Any]:
    """``{"tasks": digest, "train": {...}, "val": {...}, "test": {...}}`` of ``bench``, each
    split as :func:`split_fingerprint` gives it."""
    tasks = [[t.name, t.kind, sorted(t.metrics)] for t in bench.tasks]
    return {
        "tasks": _digest(tasks),
        **{split: split_fingerprint(getattr(bench, split)) for split in SPLITS},
    }


def split_fingerprint(split: DataSplit) -> dict[str, Any]:
    """``{"rows": N, "hashed": what, "inputs": digest, "targets": {task: digest}}`` of one
    split (see the module docstring for which rows are hashed)."""
    rows = len(split)
    if isinstance(split, Split):
        if _nbytes(split) <= FULL_BYTES:
            inputs, targets, hashed = split.inputs, split.targets, "all"
        else:
            index = torch.linspace(0, rows - 1, SAMPLE_ROWS).round().long()
            inputs = split.inputs[index]
            targets = {name: t[index] for name, t in split.targets.items()}
            hashed = f"{SAMPLE_ROWS} evenly spaced rows"
    else:
        inputs, targets = next(iter(split.chunks(SAMPLE_ROWS)), (None, {}))
        hashed = "all" if rows <= SAMPLE_ROWS else f"first {SAMPLE_ROWS} rows"
    return {
        "rows": rows,
        "hashed": hashed,
        "inputs": _digest(inputs),
        "targets": {name: _digest(targets[name]) for name in sorted(targets)},
    }


def _nbytes(split: Split) -> int:
    tensors = [split.inputs, *split.targets.values()]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _digest(value: Any) -> str:
    h = hashlib.sha256()
    _update(h, value)
    return h.hexdigest()[:DIGITS]


def _update(h, value: Any) -> None:
    """Feed ``value`` into the hash ``h``: tensors and arrays by dtype, shape and bytes,
    containers element by element (mappings in key order)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        t = t.to_dense() if t.is_sparse else t
        h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, np.ndarray):
        h.update(f"array {value.dtype} {value.shape};".encode())
        h.update(np.ascontiguousarray(value).view(np.uint8))
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(value).__name__} {value!r};".encode())
    elif isinstance(value, Mapping):
        h.update(f"mapping {len(value)};".encode())
        for key in sorted(value, key=str):
            _update(h, str(key))
            _update(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"sequence {len(value)};".encode())
        for item in value:
            _update(h, item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"{type(value).__qualname__};".encode())
        _update(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    elif callable(getattr(value, "to_dict", None)):
        h.update(f"{type(value).__qualname__};".encode())
        _update(h, value.to_dict())
    else:
        h.update(f"opaque {type(value).__qualname__};".encode())
