"""Train one network on one group of tasks, with early stopping and exact resume.

The network trains with an aggregator (or loss weighting) through :class:`~taskgroup.MTLStep`.
Every ``eval_every`` steps it is evaluated on the validation split; the criterion is the mean
over the group's tasks of ``val_loss / val_loss_at_initialisation`` (scale-free, so an MSE task
does not outweigh a classification one). The best evaluation so far is kept (its validation and
test metrics, and its weights in ``model.pt``); training stops after ``patience`` evaluations
without improvement, or after ``steps``.

With a ``directory``, a weights-only checkpoint is written atomically at every evaluation
(model, optimizer, aggregator state, RNG state, best so far). Calling :func:`train_group` again
on the same directory resumes from it and gives the same result as an uninterrupted run; a
finished group is read back from ``result.json`` without training. ``until=k`` pauses after step
k on purpose: the result so far comes back, and a later call continues from the checkpoint (how
the verified selection trains its rungs).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from taskgroup import distributed
from taskgroup.affinity.lookahead import NonFiniteError
from taskgroup.aggregators import get as get_aggregator
from taskgroup.aggregators.backward import all_finite
from taskgroup.aggregators.step import MTLStep
from taskgroup.data.benchmark import Benchmark, make_optimizer, resolve_device, to_device
from taskgroup.rundir import CHECKPOINT, RESULT, WEIGHTS
from taskgroup.settings import TrainSettings
from taskgroup.storage import check_json, read_json, write_json
from taskgroup.training.checkpoint import (
    load_checkpoint,
    load_object_state,
    object_state,
    save_checkpoint,
)
from taskgroup.training.events import EventLog
from taskgroup.training.metrics import LOSS, evaluate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupResult:
    """One trained network.

    Attributes:
        tasks: its tasks; aggregator: how it was trained.
        best_step: the step of the best validation evaluation (0 = at initialisation).
        steps: the steps trained (fewer than ``settings.steps`` after early stopping).
        criterion: the best criterion (mean relative validation loss; 1.0 = initialisation).
        val, test: ``{task: {"loss": ..., metric: ...}}`` at the best step.
        parameters: the network's parameter count; seconds: training wall time.
        history: one record per evaluation: ``{"step", "criterion", "val_loss": {task: ...}}``.
        diverged: ``None``, or where training stopped because a loss, gradient or parameter
            turned NaN/inf: ``{"step", "tasks", "message"}`` (step n = the n-th training step, or
            the evaluation after it); the result is then the best evaluation before it.
    """

    tasks: tuple[str, ...]
    aggregator: str
    best_step: int
    steps: int
    criterion: float
    val: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    parameters: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tasks": list(self.tasks)}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "result data", where: str = ""
    ) -> GroupResult:
        """Read :meth:`to_dict`'s record; ``ValueError`` naming ``source`` and the key path
        (``where`` its place in the file) when a value is missing or of the wrong type."""
        check_json(data, RESULT_SCHEMA, source, where)
        known = {k: v for k, v in data.items() if f"?{k}" in RESULT_SCHEMA or k in RESULT_SCHEMA}
        return cls(**(known | {"tasks": tuple(data["tasks"])}))


METRICS_SCHEMA = {str: {str: float}}  # {task: {metric: value}}
RESULT_SCHEMA = {  # GroupResult.to_dict(): what a network's result.json and results.json hold
    "tasks": [str],
    "aggregator": str,
    "best_step": int,
    "steps": int,
    "criterion": float,
    "val": METRICS_SCHEMA,
    "test": METRICS_SCHEMA,
    "parameters": int,
    "seconds": float,
    "?history": [{"step": int, "?criterion": float, "?val_loss": {str: float}}],
    "?diverged": (None, {"step": int, "tasks": [str], "message": str}),
}


def group_key(tasks: tuple[str, ...] | list[str], aggregator: str) -> str:
    """A file-system-safe, readable, unique name for one (group, aggregator) training."""
    readable = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{aggregator}-{'+'.join(tasks)}")
    digest = hashlib.sha1("\0".join([aggregator, *tasks]).encode()).hexdigest()[:8]
    return f"{readable[:80]}-{digest}"


def _criterion(val: Mapping[str, Mapping[str, float]], initial: Mapping[str, float]) -> float:
    ratios = [val[t][LOSS] / initial[t] if initial[t] > 0 else val[t][LOSS] for t in initial]
    return sum(ratios) / len(ratios)


def train_group(
    benchmark: Benchmark,
    tasks: tuple[str, ...] | list[str],
    settings: TrainSettings,
    *,
    directory: str | Path | None = None,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
    on_step: Callable[[int], None] | None = None,
    device: torch.device | str | None = None,
    until: int | None = None,
    name: str | None = None,
) -> GroupResult:
    """Train one network on ``tasks`` of ``benchmark`` (see the module doc).

    Args:
        benchmark: data, tasks and model factory; ``tasks`` must be among its tasks.
        settings: aggregator, optimizer, schedule, seed (unset schedule fields: the
            benchmark's defaults).
        directory: where checkpoints, weights and ``result.json`` go (``None``: in memory only,
            no resume).
        run_dir: the run directory whose ``log.jsonl`` and ``tensorboard/`` receive the
            training losses, aggregator weights and validation metrics (``None``: no log).
        progress: show a progress bar: ``None`` (default) when stderr is a terminal, ``True``
            always, ``False`` never.
        on_step: called with the number of steps done after every step (for tests and
            custom monitoring; an exception raised there interrupts training, and the last
            checkpoint stays for a resume).
        device: where the network trains (default: CUDA when available, else the CPU).
        until: pause after this step: the result so far is returned (the best evaluation up to
            it; ``steps`` < ``settings.steps``) and not written to ``result.json``, and a later
            call on the same ``directory`` continues from the checkpoint written there, exactly
            as if never paused. A multiple of ``eval_every`` (where checkpoints are written), or
            at least ``settings.steps`` (no pause). A group trained past ``until`` already
            answers with where it stands; one that stopped early is finished. ``None``: no pause.
        name: this training's run in the event log (default: its ``group_key``; another
            initialisation of the same group needs another name).

    Under torch.distributed every rank draws the same global batches of ``batch_size`` rows and
    trains on its shard; per-task gradients (and the losses a loss weighting reads) are averaged
    over the ranks before aggregation, so every rank takes the one-process step of the global
    batch.

    Divergence: when a loss or gradient turns NaN/inf in a training step, or the validation
    loss or a parameter is NaN/inf at an evaluation, the network stops there with a warning
    naming the tasks and the step (logger ``taskgroup.training.trainer``); no NaN reaches the
    parameters, the last good checkpoint and best weights are kept, and the result (the best
    evaluation before it) records it in ``GroupResult.diverged``; a finished result.json is
    written, so a rerun does not train it again.

    Raises ``ValueError`` when ``directory`` holds a checkpoint of other settings.
    """
    tasks = tuple(tasks)
    bench = benchmark.select(list(tasks))
    settings = settings.resolve(benchmark.defaults)
    config = {"tasks": list(tasks), "settings": settings.network(), "benchmark": bench.name}
    directory = None if directory is None else Path(directory)
    stop = _pause_step(until, settings)
    if directory is not None and (directory / RESULT).exists():
        stored = read_json(directory / RESULT)
        check_json(stored, {"?config": {str: object}, "result": dict}, str(directory / RESULT))
        _check_config(directory / RESULT, stored.get("config"), config)
        logger.info("network %s: already trained, read back from %s", "+".join(tasks), directory)
        return GroupResult.from_dict(stored["result"], str(directory / RESULT), "result")

    network = _Network.build(tasks, bench, settings, device, directory, config)
    checkpoint = None
    if directory is not None and (directory / CHECKPOINT).exists():
        checkpoint = load_checkpoint(directory / CHECKPOINT)  # on the CPU; load_state_dict moves it
        _check_config(directory / CHECKPOINT, checkpoint.get("config"), config)
    log = EventLog(run_dir, "train", name or group_key(tasks, settings.aggregator))
    bar = tqdm(
        total=settings.steps,
        desc=f"training {'+'.join(tasks)}"[:60],
        unit="step",
        disable=None if progress is None else not progress,
        leave=False,
    )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            state = _start(network, checkpoint, log)
            _log_start(tasks, settings, state["step"], stop)
            bar.update(state["step"])
            _train_steps(network, state, settings, stop, log, bar, on_step)
    finally:
        bar.close()
        log.close()
    result = _result(network, settings, state)
    _log_end(result, settings, _finished(state, settings))
    if directory is not None and _finished(state, settings):
        write_json(directory / RESULT, {"config": config, "result": result.to_dict()})
    return result


def _log_start(tasks: tuple[str, ...], settings: TrainSettings, step: int, stop: int) -> None:
    resumed = f", resuming at step {step}" if step else ""
    logger.info(
        "network %s: training with %s up to step %d of %d%s",
        "+".join(tasks),
        settings.aggregator,
        stop,
        settings.steps,
        resumed,
    )


def _log_end(result: GroupResult, settings: TrainSettings, finished: bool) -> None:
    """INFO with the network's best criterion; WARNING when training never improved on the
    initialisation (its result is the untrained network)."""
    name = "+".join(result.tasks)
    how = "finished" if finished else "paused"
    logger.info(
        "network %s: %s at step %d, best criterion %.4f at step %d (%.1f s)",
        name,
        how,
        result.steps,
        result.criterion,
        result.best_step,
        result.seconds,
    )
    if finished and result.best_step == 0:
        logger.warning(
            "network %s: no evaluation improved on the initialisation in %d steps; its "
            "result is the untrained network (try another lr or more steps)",
            name,
            result.steps,
        )


def _pause_step(until: int | None, settings: TrainSettings) -> int:
    """The step training stops at: ``settings.steps``, or ``until`` when it comes first."""
    if until is None:
        return settings.steps
    if isinstance(until, bool) or not isinstance(until, int) or until < 1:
        raise ValueError(f"until must be a positive integer or None, got {until!r}")
    if until < settings.steps and until % settings.eval_every:
        raise ValueError(
            f"until must be a multiple of eval_every ({settings.eval_every}), where checkpoints "
            f"are written, or at least steps ({settings.steps}); got {until}"
        )
    return min(until, settings.steps)


@dataclass
class _Network:
    """One group's network in training: the model, what updates it, and where it is saved."""

    tasks: tuple[str, ...]
    bench: Benchmark
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    aggregator: Any
    step: MTLStep
    parameters: int
    directory: Path | None
    config: dict[str, Any]

    @classmethod
    def build(cls, tasks, bench: Benchmark, settings: TrainSettings, device, directory, config):
        device = resolve_device(device)
        model = bench.make_model(seed=settings.seed).to(device)
        optimizer = make_optimizer(
            model.parameters(), settings.optimizer, settings.lr, settings.weight_decay
        )
        aggregator = get_aggregator(settings.aggregator, **settings.options)
        step = MTLStep(model, bench.tasks, aggregator, optimizer)
        parameters = sum(p.numel() for p in model.parameters())
        return cls(
            tasks, bench, device, model, optimizer, aggregator, step, parameters, directory, config
        )

    def save_weights(self) -> None:
        """The weights, as the best so far (with a ``directory``)."""
        if self.directory is not None:
            save_checkpoint(self.directory / WEIGHTS, self.model.state_dict())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Everything a resume needs (with a ``directory``), the RNG stream included."""
        if self.directory is not None:
            checkpoint = {
                "config": self.config,
                "state": state,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "aggregator": object_state(self.aggregator),
                "rng": torch.get_rng_state(),
            }
            save_checkpoint(self.directory / CHECKPOINT, checkpoint)

    def restore(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """Load what :meth:`save_checkpoint` wrote; the training state it held."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        load_object_state(self.aggregator, checkpoint["aggregator"])
        torch.set_rng_state(checkpoint["rng"])
        state = checkpoint["state"]
        return {**state, "history": list(state["history"]), "best": dict(state["best"])}


def _start(network: _Network, checkpoint: dict[str, Any] | None, log: EventLog) -> dict[str, Any]:
    """The training state: restored from ``checkpoint``, or fresh (the initialisation evaluated,
    and its weights the best so far)."""
    if checkpoint is not None:
        state = network.restore(checkpoint)
        log.event(state["step"], "resumed", {"from_step": state["step"]})
        return state
    state = _fresh_state(network.model, network.bench)
    network.save_weights()
    log.scalars(0, "val", _flat(state["best"]["val"]))
    return state


def _train_steps(
    network: _Network,
    state: dict[str, Any],
    settings: TrainSettings,
    stop: int,
    log: EventLog,
    bar,
    on_step: Callable[[int], None] | None,
) -> None:
    """Train from ``state["step"]`` up to ``stop`` steps, or until patience runs out, updating
    ``state``; evaluate and checkpoint every ``eval_every`` steps and at the last one."""
    started = time.perf_counter() - state["seconds"]
    batches = distributed.sharded(
        network.bench.train.batches(settings.batch_size, seed=settings.seed, start=state["step"])
    )
    while state["step"] < stop and not _patience_spent(state, settings):
        inputs, targets = to_device(next(batches), network.device)
        try:
            result = network.step(inputs, targets)  # raises before a NaN reaches a parameter
        except NonFiniteError as e:
            state["seconds"] = time.perf_counter() - started
            _diverge(state, network, log, e.at_step(state["step"] + 1))
            return
        state["step"] += 1
        step = state["step"]
        bar.update()
        if step % settings.log_every == 0:
            _log_losses(log, step, network.tasks, result)
        if step % settings.eval_every == 0 or step == settings.steps:
            try:
                _evaluate_step(state, network, log)
            except NonFiniteError as e:  # checked before anything of this evaluation is kept
                state["seconds"] = time.perf_counter() - started
                _diverge(state, network, log, e.at_step(step))
                return
            state["seconds"] = time.perf_counter() - started
            network.save_checkpoint(state)
        if on_step is not None:
            on_step(step)


def _diverge(state: dict[str, Any], network: _Network, log: EventLog, error: NonFiniteError):
    """Stop the network where ``error`` (naming the tasks and the step) says it diverged: its
    result is the best evaluation so far; no checkpoint or weights are written after it."""
    name = "+".join(network.tasks)
    best = state["best"]["step"]
    state["diverged"] = {"step": error.step, "tasks": list(error.tasks), "message": str(error)}
    log.event(error.step, "diverged", state["diverged"])
    logger.warning(
        "network %s diverged: %s; stopped there, its result is the best evaluation before it "
        "(step %d)%s",
        name,
        error,
        best,
        "" if network.directory is None else ", the last good checkpoint is kept",
    )


def _log_losses(log: EventLog, step: int, tasks: tuple[str, ...], result) -> None:
    log.scalars(step, "loss", dict(zip(tasks, result.losses.tolist(), strict=True)))
    if result.weights is not None:
        weights = result.weights.detach().flatten().tolist()
        log.scalars(step, "weight", dict(zip(tasks, weights, strict=True)))


def _finished(state: dict[str, Any], settings: TrainSettings) -> bool:
    diverged = state.get("diverged") is not None
    return diverged or state["step"] >= settings.steps or _patience_spent(state, settings)


def _result(network: _Network, settings: TrainSettings, state: dict[str, Any]) -> GroupResult:
    best = state["best"]
    return GroupResult(
        tasks=network.tasks,
        aggregator=settings.aggregator,
        best_step=best["step"],
        steps=state["step"],
        criterion=best["criterion"],
        val=best["val"],
        test=best["test"],
        parameters=network.parameters,
        seconds=round(state["seconds"], 3),
        history=state["history"],
        diverged=state.get("diverged"),
    )


def _check_config(path: Path, stored: Any, expected: dict[str, Any]) -> None:
    if stored != expected:
        raise ValueError(
            f"{path} was written by another training ({_difference(stored, expected)}); "
            f"use another output directory, or delete {path.parent} to retrain"
        )


def _difference(stored: Any, expected: dict[str, Any]) -> str:
    if not isinstance(stored, dict):
        return "no settings recorded"

    def flat(config: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in config.items() if k != "settings"}
        return {**config.get("settings", {}), **rest}

    there, now = flat(stored), flat(expected)
    changed = sorted(k for k in now if there.get(k) != now[k])
    return ", ".join(f"{k}: {there.get(k)!r} there, {now[k]!r} now" for k in changed)


def _flat(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f"{task}/{name}": v for task, values in metrics.items() for name, v in values.items()}


def _fresh_state(model, bench: Benchmark) -> dict[str, Any]:
    val = evaluate(model, bench.val, bench.tasks)
    initial = {t: val[t][LOSS] for t in val}
    for task, loss in initial.items():
        if not math.isfinite(loss):
            raise ValueError(f"task {task!r}: the validation loss at initialisation is {loss}")
    best = {
        "step": 0,
        "criterion": 1.0,
        "val": val,
        "test": evaluate(model, bench.test, bench.tasks),
    }
    return {
        "step": 0,
        "seconds": 0.0,
        "initial": initial,
        "best": best,
        "since_best": 0,
        "history": [{"step": 0, "criterion": 1.0, "val_loss": initial}],
    }


def _patience_spent(state: dict[str, Any], settings: TrainSettings) -> bool:
    return settings.patience is not None and state["since_best"] >= settings.patience


def _check_evaluation(network: _Network, val: Mapping[str, Mapping[str, float]]) -> None:
    """Raise :class:`NonFiniteError` when a validation loss or a parameter is NaN/inf (an
    optimizer step can overflow from finite gradients), before the evaluation is kept."""
    bad = [t for t, values in val.items() if not math.isfinite(values[LOSS])]
    if bad:
        raise NonFiniteError("the validation loss", bad)
    named = dict(network.model.named_parameters())
    if not all_finite(p.detach() for p in named.values()):
        broken = [n for n, p in named.items() if not bool(torch.isfinite(p).all())]
        owner = {
            n: next((t for t in network.tasks if n.startswith(f"heads.{t}.")), None) for n in broken
        }
        shared = None in owner.values()  # a shared parameter: every task reads it
        tasks = list(network.tasks) if shared else sorted(set(owner.values()))
        more = ", ..." if len(broken) > 3 else ""
        raise NonFiniteError("a parameter", tasks, detail=f" ({', '.join(broken[:3])}{more})")


def _evaluate_step(state: dict[str, Any], network: _Network, log: EventLog) -> None:
    model, bench = network.model, network.bench
    val = evaluate(model, bench.val, bench.tasks)
    _check_evaluation(network, val)
    criterion = _criterion(val, state["initial"])
    step = state["step"]
    state["history"].append(
        {"step": step, "criterion": criterion, "val_loss": {t: v[LOSS] for t, v in val.items()}}
    )
    log.scalars(step, "val", _flat(val) | {"criterion": criterion})
    if criterion < state["best"]["criterion"]:
        test = evaluate(model, bench.test, bench.tasks)
        state["best"] = {"step": step, "criterion": criterion, "val": val, "test": test}
        state["since_best"] = 0
        network.save_weights()
    else:
        state["since_best"] += 1
