"""Checkpoints that load with ``torch.load(weights_only=True)``, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only. Objects with
internal state that has no ``state_dict`` (an aggregator's warm start, history or generator)
are captured by :func:`object_state`: their attributes encoded into that safe form.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskgroup.storage import write_atomic

_UNSET = object()


def _encode(value: Any) -> Any:
    """``value`` in the weights-only-safe form, or ``_UNSET`` when it holds something else."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.array(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Generator):
        return {"__generator__": value.get_state()}
    if isinstance(value, deque):
        items = [_encode(v) for v in value]
        return _UNSET if _UNSET in items else {"__deque__": items, "maxlen": value.maxlen}
    if isinstance(value, list | tuple):
        items = [_encode(v) for v in value]
        if any(item is _UNSET for item in items):
            return _UNSET
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _encode(v) for k, v in value.items()}
        return _UNSET if any(v is _UNSET for v in items.values()) else items
    return _UNSET


def _decode(value: Any, current: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy()
        if "__generator__" in value:
            generator = current if isinstance(current, torch.Generator) else torch.Generator()
            generator.set_state(value["__generator__"])
            return generator
        if "__deque__" in value:
            return deque((_decode(v, None) for v in value["__deque__"]), maxlen=value["maxlen"])
        if "__tuple__" in value:
            return tuple(_decode(v, None) for v in value["__tuple__"])
        return {k: _decode(v, None) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, None) for v in value]
    if (
        isinstance(value, torch.Tensor)
        and isinstance(current, torch.Tensor)
        and current.shape == value.shape
    ):
        with torch.no_grad():  # in place: the tensor may be a parameter an optimizer holds
            current.copy_(value)
        return current
    return value


def object_state(obj: object) -> dict[str, Any]:
    """The attributes of ``obj`` that can be stored safely (tensors, arrays, numbers, strings,
    generators, and containers of them). Caches of other objects (e.g. a compiled solver) are
    left out; they are rebuilt on demand."""
    state = {}
    for name, value in vars(obj).items():
        encoded = _encode(value)
        if encoded is not _UNSET:
            state[name] = encoded
    return state


def load_object_state(obj: object, state: dict[str, Any]) -> None:
    """Restore what :func:`object_state` captured. Tensors of the same shape are copied in
    place (so an optimizer that holds them still does)."""
    for name, value in state.items():
        setattr(obj, name, _decode(value, getattr(obj, name, None)))


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Atomically write ``checkpoint`` (weights-only-safe values only) to ``path``."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``ValueError`` naming the file when it is
    corrupt, is not a dict, or holds anything but tensors and plain containers (a pickle that
    would import or call anything, e.g. one crafted to run code, is refused unexecuted)."""
    try:
        with warnings.catch_warnings():  # torch's note on an unusual pickle protocol
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():  # a class or function to import: refused, not a torn file
            raise ValueError(
                f"{path}: refused: it holds Python objects other than tensors, numbers, strings "
                f"and containers, and loading those could run code from the file"
            ) from None
        raise ValueError(f"{path}: unreadable checkpoint ({str(e).strip()[:200]})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: unreadable checkpoint ({message})") from None
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{path}: not a taskgroup checkpoint (a {type(loaded).__name__}, not a dict)"
        )
    return loaded
