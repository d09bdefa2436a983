"""The co-training run: train all tasks together and measure their affinity along the way."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from taskgroup import distributed
from taskgroup.affinity.lookahead import (
    LossFns,
    NonFiniteError,
    check_finite,
    nonfinite_gradient_tasks,
    task_loss_list,
)
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.affinity.tracker import AffinityTracker
from taskgroup.aggregators.backward import all_finite
from taskgroup.data import get as get_benchmark
from taskgroup.data.benchmark import (
    Batch,
    Benchmark,
    TrainingDefaults,
    make_optimizer,
    resolve_device,
    to_device,
)
from taskgroup.models import SharedSpec
from taskgroup.settings import AffinitySettings

logger = logging.getLogger(__name__)


def cotrain(
    model: nn.Module,
    batches: Iterator[Batch],
    losses: LossFns,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    tracker: AffinityTracker | None = None,
    progress: bool | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> None:
    """Train ``model`` on the unweighted sum of ``losses`` for ``steps`` steps.

    When given, ``tracker.step`` sees each batch before the update. ``on_step(step, losses)``
    receives the detached ``[n]`` task losses of every step. ``progress``: a progress bar, shown
    when stderr is a terminal (``None``), always (``True``) or never (``False``). Raises
    ``ValueError`` naming the task when a loss turns NaN/inf (the model is left at its last
    finite state).
    """
    names = list(losses)
    disable = None if progress is None else not progress  # None: on when stderr is a terminal
    bar = tqdm(total=steps, desc="co-training", unit="step", disable=disable, leave=False)
    try:
        for step in range(steps):
            try:
                inputs, targets = next(batches)
            except StopIteration:
                raise ValueError(f"the batches ran out after {step} of {steps} steps") from None
            if tracker is not None:
                tracker.step(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            per_task = task_loss_list(model(inputs), targets, losses)
            task_losses = torch.stack(per_task)
            try:
                check_finite(task_losses.detach(), names, "the training loss")
            except NonFiniteError as e:
                raise e.at_step(step) from None
            task_losses.sum().backward(retain_graph=True)  # kept to name a NaN gradient's task
            _check_gradients(model, per_task, names, step)
            values = task_losses.detach()
            del task_losses, per_task  # frees the graph
            optimizer.step()
            if on_step is not None:
                on_step(step, values)
            bar.update()
    finally:
        bar.close()


def _check_gradients(
    model: nn.Module, task_losses: list[torch.Tensor], names: list[str], step: int
) -> None:
    """Raise :class:`NonFiniteError` naming the tasks (and ``step``) when a gradient the
    optimizer is about to apply is NaN/inf, so the model stays at its last finite state."""
    params = [p for p in model.parameters() if p.grad is not None]
    if all_finite(p.grad for p in params):
        return
    bad = [names[i] for i in nonfinite_gradient_tasks(task_losses, params)]
    raise NonFiniteError("the gradient of the training loss", bad, step=step)


def measure_affinity(
    source: Benchmark | str | nn.Module,
    settings: AffinitySettings | None = None,
    *,
    tasks: list[str] | None = None,
    steps: int | None = None,
    every: int | None = None,
    lookahead: str | None = None,
    optimizer: torch.optim.Optimizer | str | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    batches: Iterable[Batch] | None = None,
    losses: LossFns | None = None,
    shared: SharedSpec = None,
    progress: bool | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    device: torch.device | str | None = None,
    **lookahead_options: Any,
) -> AffinityMatrix:
    """Co-train all tasks and return their mean lookahead affinity (TAG).

    Args:
        source: a :class:`Benchmark`, a registered benchmark name, or a multi-task ``nn.Module``
            (then ``batches``, ``losses``, ``steps`` and an ``optimizer`` instance are required).
        settings: the run's :class:`~taskgroup.settings.AffinitySettings` (default: its
            defaults); ``steps``, ``every``, ``lookahead``, an optimizer name, ``lr`` and
            ``batch_size`` given here override it. Unset schedule fields take the benchmark's
            training defaults. ``lookahead``: ``"optimizer"`` (the run's own optimizer step, the
            default), ``"sgd"``, ``"first_order"`` or ``"cosine"``; see
            :func:`lookahead_affinity`.
        tasks: benchmark tasks to co-train (default: all of the benchmark's).
        optimizer: an optimizer name (``adam``, ``adamw``, ``sgd``) for a benchmark, or an
            optimizer instance for a module.
        seed: fixes the model initialisation and batch order (the caller's RNG is untouched).
            Under torch.distributed every rank draws the same global batches of
            ``batch_size`` rows and trains on its shard through DDP; the matrix is that of
            one process on the global batches.
        progress: show a progress bar: ``None`` (default) when stderr is a terminal, ``True``
            always, ``False`` never.
        device: where a benchmark's model trains (default: CUDA when available, else the CPU;
            a given ``nn.Module`` stays where it is).
        on_step: ``on_step(step, losses)`` receives the detached ``[n]`` task losses of every
            training step (e.g. to log them).
        **lookahead_options: passed to :class:`AffinityTracker` (``vectorize``, ...).

    Returns an :class:`AffinityMatrix` (row = source task) with per-step traces and metadata.
    """
    given = {"steps": steps, "every": every, "lookahead": lookahead, "lr": lr}
    given |= {
        "batch_size": batch_size,
        "optimizer": optimizer if isinstance(optimizer, str) else None,
    }
    settings = dataclasses.replace(
        settings or AffinitySettings(), **{k: v for k, v in given.items() if v is not None}
    )
    if isinstance(source, str):
        source = get_benchmark(source, seed=seed)
    if isinstance(source, Benchmark):
        run = _benchmark_run(source.select(tasks), settings, seed, device)
    elif isinstance(source, nn.Module):
        run = _module_run(source, settings, batches, losses, optimizer)
    else:
        raise TypeError(
            f"source must be a Benchmark, a benchmark name or an nn.Module, "
            f"got {type(source).__name__}"
        )
    settings = run.settings
    tracker = AffinityTracker(
        run.model,
        run.losses,
        shared=shared,
        optimizer=run.optimizer,  # sgd / first_order read their step size from it when lr is None
        lr=None if settings.lookahead == "optimizer" else settings.lr,
        lookahead=settings.lookahead,
        every=settings.every,
        **lookahead_options,
    )
    _warn_few_measurements(settings)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cotrain(
            _distributed(run.model),
            run.batches,
            run.losses,
            run.optimizer,
            settings.steps,
            tracker=tracker,
            progress=progress,
            on_step=on_step,
        )
    seconds = round(time.perf_counter() - started, 3)
    matrix = tracker.result(steps_trained=settings.steps, seed=seed, seconds=seconds, **run.config)
    logger.info(
        "affinity (%s) of %d tasks measured: %d steps, %d measurements, %.1f s",
        settings.lookahead,
        len(matrix.tasks),
        settings.steps,
        len(matrix.trace_steps),
        seconds,
    )
    return matrix


class FewMeasurementsWarning(UserWarning):
    """``every`` leaves one measurement in ``steps`` (at step 0): the matrix is one step's
    noise. ``steps`` and ``every`` are the resolved values (the command line names its
    options from them)."""

    def __init__(self, steps: int, every: int):
        super().__init__(
            f"every={every} with steps={steps} measures the affinity once (at step 0 only); "
            "lower every or raise steps to average several measurements"
        )
        self.steps, self.every = steps, every


def _warn_few_measurements(settings: AffinitySettings) -> None:
    """A :class:`FewMeasurementsWarning` (and a WARNING log record) when ``every`` leaves fewer
    than two measurements in ``steps`` (they are taken at steps 0, every, 2·every, ...)."""
    measurements = math.ceil(settings.steps / settings.every)
    if measurements < 2:
        warning = FewMeasurementsWarning(settings.steps, settings.every)
        logger.warning("%s", warning)
        warnings.warn(warning, stacklevel=3)  # at the caller of measure_affinity


@dataclasses.dataclass
class _CotrainingRun:
    """What a co-training run trains: the model, its optimizer, batches and loss functions,
    the settings resolved for it, and what the matrix's metadata records of it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Iterator[Batch]
    losses: LossFns
    settings: AffinitySettings
    config: dict[str, Any]


def _benchmark_run(
    bench: Benchmark, settings: AffinitySettings, seed: int, device
) -> _CotrainingRun:
    settings = settings.resolve(bench.defaults)
    device = resolve_device(device)
    model = bench.make_model(seed=seed).to(device)
    optimizer = make_optimizer(
        model.parameters(), settings.optimizer, settings.lr, bench.defaults.weight_decay
    )
    batches = (
        to_device(batch, device)
        for batch in distributed.sharded(bench.train.batches(settings.batch_size, seed=seed))
    )
    config = {
        "benchmark": bench.name,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
    }
    return _CotrainingRun(model, optimizer, batches, bench.tasks.losses(), settings, config)


def _module_run(model: nn.Module, settings: AffinitySettings, batches, losses, optimizer):
    if batches is None or losses is None or not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            "measure_affinity(model) needs batches=, losses= and an optimizer= instance"
        )
    if settings.steps is None:
        raise ValueError("measure_affinity(model) needs steps=")
    if settings.every is None:
        settings = dataclasses.replace(settings, every=TrainingDefaults().every)
    config = {"optimizer": type(optimizer).__name__}
    return _CotrainingRun(model, optimizer, iter(batches), losses, settings, config)


def _distributed(model: nn.Module) -> nn.Module:
    """``model`` wrapped in DDP under torch.distributed (gradients averaged over the shards),
    else itself; the tracker reads the plain module and averages the lookahead itself."""
    if not distributed.active():
        return model
    on_gpu = next(model.parameters()).is_cuda
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[next(model.parameters()).device] if on_gpu else None
    )
