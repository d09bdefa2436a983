"""Running under torch.distributed: ranks, batch shards, and launching a command on N processes.

Every rank draws the same global batch stream (same seed) and trains on its own contiguous
shard of each batch; per-task gradients (and the losses that loss weightings read) are averaged
across ranks before the aggregator sees them, so every rank takes exactly the step one process
would take on the global batch. Only rank 0 writes files (:func:`taskgroup.storage.write_atomic`
asks :func:`is_writer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether a process group is initialised (and has more than one rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a distributed run."""
    if not active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_writer() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank_and_world()[0] == 0


def average(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over all ranks (a detached copy; ``t`` itself outside a run)."""
    if not active():
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()


def average_grads(params: Iterable[torch.Tensor]) -> None:
    """Replace every parameter's ``.grad`` by its mean over ranks (one flat all-reduce)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = average(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def shard(batch: tuple[Any, dict[str, torch.Tensor]]) -> tuple[Any, dict[str, torch.Tensor]]:
    """This rank's contiguous share of a global batch (``ValueError`` unless the inputs are a
    tensor whose rows divide evenly)."""
    rank, world = rank_and_world()
    if world == 1:
        return batch
    inputs, targets = batch
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(
            f"distributed runs shard tensor inputs; this benchmark's inputs are "
            f"{type(inputs).__name__}"
        )
    rows = len(inputs)
    if rows % world:
        raise ValueError(
            f"the batch of {rows} rows does not split evenly over {world} processes; "
            f"choose a batch_size divisible by {world}"
        )
    part = slice(rank * rows // world, (rank + 1) * rows // world)
    return inputs[part], {k: v[part] for k, v in targets.items()}


def sharded(batches: Iterable) -> Iterator:
    """:func:`shard` applied to every batch of a stream."""
    for batch in batches:
        yield shard(batch)


def init_from_env() -> bool:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE`` > 1):
    gloo on CPU, nccl when CUDA is available. Returns whether a group is (now) initialised."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


class LaunchError(Exception):
    """A rank of a launched run failed (the message names it)."""


def launch(nproc: int, argv: list[str], entrypoint: Callable[[list[str]], int]) -> int:
    """Run ``entrypoint(argv)`` on ``nproc`` local processes through torch's elastic launcher
    (torchrun's engine); ``entrypoint`` is a module-level function (the command line passes its
    own). Returns 0, or raises :class:`LaunchError` naming the rank that failed first (the
    launcher then stops the others)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
        run_id=f"taskgroup-{os.getpid()}",
    )
    try:
        elastic_launch(config, entrypoint)(argv)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise LaunchError(
            f"rank {rank} of {nproc} failed (exit code {failure.exitcode}) and the other ranks "
            f"were stopped; files written so far are kept: run the same command again to "
            f"resume"
        ) from None
    return 0
