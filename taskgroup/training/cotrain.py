"""The co-training run: train all tasks together and measure their affinity along the way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from taskgroup import distributed
from taskgroup.affinity.lookahead import LossFns, check_finite, stack_task_losses
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.affinity.tracker import AffinityTracker
from taskgroup.data import get as get_benchmark
from taskgroup.data.benchmark import Batch, Benchmark, make_optimizer, resolve_device, to_device
from taskgroup.models import SharedSpec


def cotrain(
    model: nn.Module,
    batches: Iterator[Batch],
    losses: LossFns,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    tracker: AffinityTracker | None = None,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> None:
    """Train ``model`` on the unweighted sum of ``losses`` for ``steps`` steps.

    When given, ``tracker.step`` sees each batch before the update. ``on_step(step, losses)``
    receives the detached ``[n]`` task losses of every step. Raises ``ValueError`` naming the
    task when a loss turns NaN/inf (the model is left at its last finite state).
    """
    names = list(losses)
    bar = tqdm(total=steps, desc="co-training", unit="step", disable=not progress, leave=False)
    try:
        for step in range(steps):
            try:
                inputs, targets = next(batches)
            except StopIteration:
                raise ValueError(f"the batches ran out after {step} of {steps} steps") from None
            if tracker is not None:
                tracker.step(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            task_losses = stack_task_losses(model(inputs), targets, losses)
            check_finite(task_losses.detach(), names, f"the training loss at step {step}")
            task_losses.sum().backward()
            optimizer.step()
            if on_step is not None:
                on_step(step, task_losses.detach())
            bar.update()
    finally:
        bar.close()


def measure_affinity(
    source: Benchmark | str | nn.Module,
    *,
    tasks: list[str] | None = None,
    steps: int | None = None,
    every: int | None = None,
    lookahead: str = "optimizer",
    optimizer: torch.optim.Optimizer | str | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    batches: Iterable[Batch] | None = None,
    losses: LossFns | None = None,
    shared: SharedSpec = None,
    progress: bool = False,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    device: torch.device | str | None = None,
    **lookahead_options: Any,
) -> AffinityMatrix:
    """Co-train all tasks and return their mean lookahead affinity (TAG).

    Args:
        source: a :class:`Benchmark`, a registered benchmark name, or a multi-task ``nn.Module``
            (then ``batches``, ``losses`` and an ``optimizer`` instance are required).
        tasks: benchmark tasks to co-train (default: all of the benchmark's).
        steps, every, batch_size, lr: default to the benchmark's training defaults.
        lookahead: ``"optimizer"`` (the run's own optimizer step, default), ``"sgd"`` or
            ``"first_order"``; see :func:`lookahead_affinity`.
        optimizer: an optimizer name (``adam``, ``adamw``, ``sgd``) for a benchmark, or an
            optimizer instance for a module.
        seed: fixes the model initialisation and batch order (the caller's RNG is untouched).
            Under torch.distributed every rank draws the same global batches of
            ``batch_size`` rows and trains on its shard through DDP; the matrix is that of
            one process on the global batches.
        progress: show a progress bar.
        device: where a benchmark's model trains (default: CUDA when available, else the CPU;
            a given ``nn.Module`` stays where it is).
        on_step: ``on_step(step, losses)`` receives the detached ``[n]`` task losses of every
            training step (e.g. to log them).

    Returns an :class:`AffinityMatrix` (row = source task) with per-step traces and metadata.
    """
    if isinstance(source, str):
        source = get_benchmark(source, seed=seed)
    if isinstance(source, Benchmark):
        bench = source.select(tasks)
        d = bench.defaults
        steps = d.steps if steps is None else steps
        every = d.every if every is None else every
        batch_size = batch_size or d.batch_size
        lr = d.lr if lr is None else lr
        opt_name = optimizer if isinstance(optimizer, str) else d.optimizer
        device = resolve_device(device)
        model = bench.make_model(seed=seed).to(device)
        opt = make_optimizer(model.parameters(), opt_name, lr, d.weight_decay)
        data = (
            to_device(batch, device)
            for batch in distributed.sharded(bench.train.batches(batch_size, seed=seed))
        )
        losses = bench.tasks.losses()
        config = {
            "benchmark": bench.name,
            "optimizer": opt_name,
            "lr": lr,
            "batch_size": batch_size,
        }
    elif isinstance(source, nn.Module):
        if batches is None or losses is None or not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                "measure_affinity(model) needs batches=, losses= and an optimizer= instance"
            )
        if steps is None:
            raise ValueError("measure_affinity(model) needs steps=")
        model, opt, data = source, optimizer, iter(batches)
        every = 10 if every is None else every
        config = {"optimizer": type(opt).__name__}
    else:
        raise TypeError(
            f"source must be a Benchmark, a benchmark name or an nn.Module, "
            f"got {type(source).__name__}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    tracker = AffinityTracker(
        model,
        losses,
        shared=shared,
        optimizer=opt,  # sgd / first_order read their step size from it when lr is None
        lr=None if lookahead == "optimizer" else lr,
        lookahead=lookahead,
        every=every,
        **lookahead_options,
    )
    # Under torch.distributed the update goes through DDP (gradients averaged over the shards);
    # the tracker reads the plain module and averages the lookahead across ranks itself.
    trained = model
    if distributed.active():
        on_gpu = next(model.parameters()).is_cuda
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[next(model.parameters()).device] if on_gpu else None
        )
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cotrain(
            trained, data, losses, opt, steps, tracker=tracker, progress=progress, on_step=on_step
        )
    return tracker.result(
        steps_trained=steps, seed=seed, seconds=round(time.perf_counter() - started, 3), **config
    )
