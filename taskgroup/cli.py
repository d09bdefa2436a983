"""The ``taskgroup`` command line. Errors in user input print one line and exit with code 2."""

from __future__ import annotations

import contextlib
import errno
import io
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from taskgroup.recipe import DEFAULT_RECIPE, Recipe, load_recipe
from taskgroup.rundir import GROUPS, PAIRS
from taskgroup.settings import (
    AffinitySettings,
    GroupSettings,
    SettingError,
    Settings,
    TrainSettings,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Which tasks should train together? Measure inter-task affinity, group tasks, train.",
)


RUNS = Path("runs")  # where a run directory goes without --out: RUNS/<recipe name>


def recipe_help(settings: type[Settings], name: str) -> str:
    """The help of an option of a recipe-backed command (``affinity``, ``train``, ``run``):
    left out, it takes the recipe's value, so the settings' default (:meth:`Settings.help`)
    is shown only as what a recipe without that key gets — never as the value a run uses
    (the packaged multidigits recipe sets its own lookahead, budget, steps, ...)."""
    text, _, default = settings.help(name).rpartition(" [default: ")
    return f"{text} [default: the recipe's; a recipe without it: {default}"


# Options shared by several commands, declared once. Every option's help ends with its default:
# typer shows a plain default itself; where the default is None, the help says what it means.
RecipeArgument = Annotated[
    str | None,
    typer.Argument(help=f"recipe file or packaged recipe name [default: {DEFAULT_RECIPE}]"),
]
OutOption = Annotated[
    Path | None, typer.Option(help=f"run directory [default: {RUNS}/<recipe name>]")
]
SeedOption = Annotated[
    int | None,
    typer.Option(help="seed of data, init and batches (>= 0) [default: the recipe's seed]"),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(help="cpu, cuda or cuda:N [default: cuda when available, else cpu]"),
]
DataRootOption = Annotated[
    str | None,
    typer.Option(
        help="folder of a file-backed benchmark's files [default: the recipe's [benchmark] "
        "data_root]"
    ),
]
NprocOption = Annotated[int, typer.Option(help="processes (torch.distributed, DDP)")]
WorkersOption = Annotated[int | None, typer.Option(help=recipe_help(TrainSettings, "workers"))]
SeedsOption = Annotated[int | None, typer.Option(help=recipe_help(TrainSettings, "seeds"))]
LookaheadOption = Annotated[
    str | None, typer.Option(help=recipe_help(AffinitySettings, "lookahead"))
]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]
ForceOption = Annotated[
    bool,
    typer.Option(
        help="recompute the stage even when the run directory holds it finished with the same "
        "inputs (else it is reused and nothing is written)"
    ),
]


def _print_version(value: bool) -> None:
    if value:
        from taskgroup._version import __version__

        typer.echo(f"taskgroup {__version__}")
        raise typer.Exit()


@app.callback()
def _commands(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", is_eager=True, callback=_print_version
        ),
    ] = False,
    threads: Annotated[
        int,
        typer.Option(
            help="threads of torch and of numpy's BLAS on the CPU (1: the embedded benchmarks' "
            "small models and the grouping solvers' small matrix products run fastest on one, "
            "and more collapse when other processes share the cores; raise it for large models)"
        ),
    ] = 1,
) -> None:
    """Which tasks should train together? Measure inter-task affinity, group tasks, train."""
    _positive("--threads", threads)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _non_negative(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")


def _override(recipe: Recipe, stage: str, **given: Any) -> Recipe:
    """``recipe`` with command-line values for ``stage``; a bad one names its option."""
    try:
        return recipe.replace(stage, **given)
    except SettingError as e:
        raise e.named(_option(e.key)) from None


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _group_settings(**given: Any) -> GroupSettings:
    try:
        return GroupSettings(**{k: v for k, v in given.items() if v is not None})
    except SettingError as e:
        raise e.named(_option(e.key)) from None


@app.command()
def affinity(
    ctx: typer.Context,
    recipe: RecipeArgument = None,
    benchmark: Annotated[
        str | None, typer.Option(help="benchmark name [default: the recipe's]")
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="comma-separated task names [default: the recipe's, else all the benchmark's]"
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help=recipe_help(AffinitySettings, "steps"))] = None,
    every: Annotated[int | None, typer.Option(help=recipe_help(AffinitySettings, "every"))] = None,
    lookahead: LookaheadOption = None,
    out: OutOption = None,
    seed: SeedOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = None,
    nproc: NprocOption = 1,
    progress: ProgressOption = True,
    force: ForceOption = False,
) -> None:
    """Co-train all tasks once and measure their affinity (the recipe's signal).

    Writes affinity.json, manifest.json, affinity_heatmap.png and affinity_over_training.png.
    A run directory that holds this affinity, measured with the same benchmark, seed and
    settings, is reused unless --force is given.
    An option left out takes the recipe's value; the default shown is what a recipe without
    that key gets.
    """
    from taskgroup.data.benchmark import resolve_device
    from taskgroup.pipeline import affinity_stage
    from taskgroup.report import tables

    _non_negative("--seed", seed)
    resolve_device(device)
    spec = load_recipe(recipe).override(
        benchmark=benchmark, tasks=_task_list(tasks), seed=seed, data_root=data_root
    )
    spec = _override(spec, "affinity", steps=steps, every=every, lookahead=lookahead)
    run_dir = out or _default_out(spec)
    if _launched(ctx, nproc, run_dir):
        return
    result = affinity_stage(
        spec, run_dir, progress=progress, device=device, force=force, on_reuse=typer.echo
    )
    typer.echo(tables.affinity_table(result))
    typer.echo(
        f"\n{len(result.trace_steps)} measurements over {result.metadata['steps_trained']}"
        f" steps in {result.metadata['seconds']:.1f} s → {run_dir}/affinity.json"
    )


@app.command()
def group(
    source: Annotated[
        Path, typer.Argument(help="run directory (reads its affinity.json) or an affinity JSON")
    ],
    budget: Annotated[int, typer.Option(help="the most groups (networks to train)")],
    method: Annotated[
        str | None,
        typer.Option(
            help=GroupSettings.help("method")
            + ": auto, exact, milp, beam, greedy, spectral, community, restarts, or hoa "
            "(Standley's higher-order approximation from a pair table, see --pairs)"
        ),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            help=f"pair table of tg.pair_results, for --method hoa [default: DIR/{PAIRS}]"
        ),
    ] = None,
    partition: Annotated[bool | None, typer.Option(help=GroupSettings.help("partition"))] = None,
    normalize: Annotated[str | None, typer.Option(help=GroupSettings.help("normalize"))] = None,
    sweep: Annotated[bool | None, typer.Option(help=GroupSettings.help("sweep"))] = None,
    singleton_score: Annotated[
        float | None, typer.Option(help=GroupSettings.help("singleton_score"))
    ] = None,
    time_limit: Annotated[float | None, typer.Option(help=GroupSettings.help("time_limit"))] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="output directory [default: DIR, or the affinity JSON's folder]"),
    ] = None,
    certify: Annotated[
        float | None,
        typer.Option(
            help="then spend up to this many seconds proving a tighter bound (semidefinite "
            "pricing; minutes at 40 tasks) [default: no certificate]"
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Choose the groups of tasks to train together from an affinity matrix (TAG's selection),
    or with --method hoa from single-task and pair trainings (Standley et al.).

    Writes groups.json, groups_graph.png (and score_vs_budget.png with --sweep) and records the
    stage in manifest.json. Groups selected from the same input with the same options are
    reused unless --force is given.
    """
    from taskgroup.pipeline import group_stage
    from taskgroup.rundir import AFFINITY, GROUPS_GRAPH, SCORE_VS_BUDGET

    settings = _group_settings(
        budget=budget,
        method=method,
        partition=partition,
        normalize=normalize,
        sweep=sweep,
        singleton_score=singleton_score,
        time_limit=time_limit,
    )
    if source.is_dir():
        path, run_dir = source / AFFINITY, out or source
    elif source.exists():
        path, run_dir = source, out or source.parent
    else:
        raise ValueError(f"{source}: no such file or directory")
    if settings.method == "hoa":
        pairs = pairs or (source / PAIRS if source.is_dir() else None)
        if pairs is None or not pairs.exists():
            raise ValueError(
                f"--method hoa needs a pair table: pass --pairs FILE ({PAIRS} written by "
                f"tg.pair_results){'' if pairs is None else f'; {pairs} does not exist'}"
            )
        path = None
    elif pairs is not None:
        raise ValueError("--pairs is read by --method hoa only")
    chosen, curve = group_stage(
        path,
        run_dir,
        settings,
        pairs=pairs,
        certify=certify,
        on_certificate_round=lambda r, bound, best: typer.echo(
            f"certificate round {r}: bound {bound:.6g} (best {best:.6g})", err=True
        ),
        force=force,
        on_reuse=(reused := _Reused()),
    )
    _print_grouping(chosen, curve)
    if "cost" in chosen.info:
        cost = chosen.info["cost"]
        typer.echo(
            f"\ncost of the pair table: {cost.get('networks', '?')} networks, "
            f"{cost.get('steps', '?')} steps, {cost.get('seconds', '?')} s of training"
        )
    plots = GROUPS_GRAPH + (f", {SCORE_VS_BUDGET}" if settings.sweep else "")
    typer.echo(f"\n→ {run_dir}/groups.json, {plots}")
    if not reused:
        _refresh_report(run_dir)


def _print_grouping(chosen, curve) -> None:
    typer.echo(chosen.describe())
    if curve:
        typer.echo("\nbudget  score       bound       optimal")
        for g in curve:
            bound = "-" if g.bound is None else f"{g.bound:.6g}"
            typer.echo(f"{g.budget:>6}  {g.score:<10.6g}  {bound:<10}  {g.optimal}")


@app.command()
def networks(
    results: Annotated[
        Path,
        typer.Argument(
            help="Standley's results file: one trained network per line, its loss on each task "
            "tab-separated (an empty field: the network lacks the task); line 1 holds the "
            "half-size single-task networks (cost 0.5), every later line costs 1"
        ),
    ],
    budget: Annotated[
        str,
        typer.Option(
            help="the total cost allowed: a number (2.5), a list (1,2,3) or a range "
            "START:STOP:STEP (1:5:0.5, STOP included)"
        ),
    ],
    hoa: Annotated[
        bool,
        typer.Option(
            "--hoa",
            help="select on Standley's higher-order approximation: every network of 3+ tasks "
            "scored by the mean of its pairs' losses [default: false]",
        ),
    ] = False,
    test: Annotated[
        Path | None,
        typer.Option(
            help="results file of the same networks on held-out data: also score the chosen "
            "networks there [default: none]"
        ),
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(help="comma-separated names of the columns [default: task1,task2,...]"),
    ] = None,
) -> None:
    """Choose among trained networks within a compute budget (Standley et al.'s network
    selection): the networks whose summed lowest loss per task is least.

    Prints each budget's networks, cost and score (and test score with --test); writes nothing.
    """
    from taskgroup.grouping.networks import NetworkTable, select_networks

    budgets = _budgets(budget)
    names = _task_list(tasks)
    table = NetworkTable.read_standley(results, names)
    held_out = None if test is None else NetworkTable.read_standley(test, names)
    selecting = table.hoa() if hoa else table
    chosen = [select_networks(selecting, b) for b in budgets]
    scores = [None if held_out is None else held_out.score(c) for c in chosen]
    what = " (selecting on the higher-order approximation)" if hoa else ""
    typer.echo(f"{results}: {len(table)} networks of {len(table.tasks)} tasks{what}")
    header = "budget  cost  score     " + ("test      " if held_out else "") + "networks"
    typer.echo(header)
    for c, tested in zip(chosen, scores, strict=True):
        listed = "  ".join(
            "{" + ",".join(n) + "}" + ("" if cost == 1 else f"({cost:g})")
            for n, cost in zip(c.networks, c.costs, strict=True)
        )
        shown = "" if tested is None else f"{tested:<10.6g}"
        typer.echo(f"{c.budget:<6g}  {c.cost:<4g}  {c.score:<10.6g}{shown}{listed}")
    if len(chosen) == 1:
        typer.echo("\n" + chosen[0].describe())


def _budgets(text: str) -> list[float]:
    """``--budget`` of ``networks``: ``2.5``, ``1,2,3`` or ``START:STOP:STEP`` (STOP included)."""
    usage = f"--budget must be a number, a list 1,2,3 or a range START:STOP:STEP, got {text!r}"
    try:
        if ":" in text:
            start, stop, step = (float(p) for p in text.split(":"))
            if not step > 0 or stop < start:
                raise ValueError(usage)
            count = int((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 12) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(usage) from None
    bad = [v for v in values if not (v > 0 and v < float("inf"))]
    if bad:
        raise ValueError(f"--budget must be > 0, got {bad[0]:g}")
    return values


@app.command()
def train(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="run directory (with groups.json)")],
    aggregator: Annotated[
        str | None, typer.Option(help=recipe_help(TrainSettings, "aggregator"))
    ] = None,
    groups: Annotated[
        Path | None,
        typer.Option(help=f'groups file, JSON {{"groups": [[...]]}} [default: RUN_DIR/{GROUPS}]'),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="recipe, when RUN_DIR records none [default: the one RUN_DIR records]"),
    ] = None,
    steps: Annotated[int | None, typer.Option(help=recipe_help(TrainSettings, "steps"))] = None,
    workers: WorkersOption = None,
    baselines: Annotated[
        bool | None, typer.Option(help=recipe_help(TrainSettings, "baselines"))
    ] = None,
    seeds: SeedsOption = None,
    device: DeviceOption = None,
    nproc: NprocOption = 1,
    progress: ProgressOption = True,
    force: Annotated[
        bool,
        typer.Option(
            help="retrain every network of the groups and baselines from scratch, even when "
            "results.json holds them trained with the same settings (the old results and "
            "networks are removed first; a killed forced retrain resumes without --force)"
        ),
    ] = False,
) -> None:
    """Train one network per group, and the single-task and all-together baselines.

    Writes results.json (per-task metrics, Δm, cost), results.png, checkpoints under train/,
    log.jsonl and tensorboard/. Run it again to resume: finished networks are not retrained,
    and results of the same groups and settings are reused, unless --force is given (then
    every network is retrained).
    An option left out takes the recipe's value; the default shown is what a recipe without
    that key gets.
    """
    from taskgroup.data.benchmark import resolve_device
    from taskgroup.pipeline import recorded_recipe, train_stage
    from taskgroup.training.groups import read_groups

    if _launched(ctx, nproc, run_dir):
        return
    resolve_device(device)
    spec = recorded_recipe(run_dir, None if recipe is None else load_recipe(recipe))
    spec = _override(
        spec,
        "train",
        aggregator=aggregator,
        steps=steps,
        workers=workers,
        baselines=baselines,
        seeds=seeds,
    )
    groups_path = groups or run_dir / GROUPS
    if not groups_path.exists():
        raise ValueError(
            f"{groups_path}: no such file; run `taskgroup group {run_dir} --budget B` first "
            f"or pass --groups"
        )
    bench = spec.load_benchmark()
    results = train_stage(
        run_dir,
        spec,
        read_groups(groups_path, bench.tasks.names),
        bench=bench,
        progress=progress,
        device=device,
        force=force,
        on_reuse=(reused := _Reused()),
    )
    typer.echo(results.table())
    typer.echo(f"\n→ {run_dir}/results.json")
    if not reused:
        _refresh_report(run_dir)
    _exit_if_diverged(results)


class _Reused:
    """``on_reuse`` of a stage: prints the line that says the stage is reused, and is true
    afterwards (then the command writes nothing more)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        typer.echo(line)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _refresh_report(run_dir: Path) -> None:
    """Rewrite the run's report.html, when it has one, so it never shows the previous stage."""
    from taskgroup.pipeline import refresh_report

    page = refresh_report(run_dir)
    if page is not None:
        typer.echo(f"→ {page} (refreshed)")


@app.command()
def run(
    ctx: typer.Context,
    recipe: RecipeArgument = None,
    out: OutOption = None,
    seed: SeedOption = None,
    budget: Annotated[int | None, typer.Option(help=recipe_help(GroupSettings, "budget"))] = None,
    lookahead: LookaheadOption = None,
    aggregator: Annotated[
        str | None, typer.Option(help=recipe_help(TrainSettings, "aggregator"))
    ] = None,
    workers: WorkersOption = None,
    seeds: SeedsOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = None,
    nproc: NprocOption = 1,
    progress: ProgressOption = True,
    force: Annotated[
        bool,
        typer.Option(
            help="measure, select and train again even where the run directory holds the "
            "stages finished with the same inputs (every network is retrained)"
        ),
    ] = False,
) -> None:
    """The whole pipeline: affinity → group → train → report, in one run directory.

    Run it again on the same --out to resume: a stage finished with the same inputs is reused
    and finished networks are not retrained (unless --force is given). An option left out
    takes the recipe's value; the default shown is what a recipe without that key gets.
    """
    from taskgroup import pipeline

    _non_negative("--seed", seed)
    spec = load_recipe(recipe).override(seed=seed, data_root=data_root)
    spec = _override(spec, "affinity", lookahead=lookahead)
    spec = _override(spec, "group", budget=budget)
    spec = _override(spec, "train", aggregator=aggregator, workers=workers, seeds=seeds)
    run_dir = out or _default_out(spec)
    if _launched(ctx, nproc, run_dir):
        return
    stages = _stage_bar(progress)
    try:
        page = pipeline.run(
            spec,
            run_dir,
            progress=progress,
            device=device,
            on_stage=_stage_printer(run_dir, stages),
            force=force,
            on_reuse=typer.echo,
        )
    finally:
        stages.close()
    typer.echo(f"\n→ {page}")
    from taskgroup.rundir import RESULTS
    from taskgroup.training.groups import GroupResults

    _exit_if_diverged(GroupResults.load(run_dir / RESULTS))


DIVERGED = 3  # exit code: the run finished and wrote everything, but a network diverged


def _exit_if_diverged(results) -> None:
    """Name every network of ``results`` that stopped on a NaN/inf on stderr, then exit with
    code 3 (its result is the best evaluation before it; every other network finished)."""
    seen, lines = set(), []
    for r in getattr(results, "per_seed", [results]):
        together = [] if r.together is None else [r.together]
        for network in [*r.groups, *(r.single or {}).values(), *together]:
            diverged = network.diverged
            if diverged is None or (network.tasks, diverged["message"]) in seen:
                continue
            seen.add((network.tasks, diverged["message"]))
            name = f"{'+'.join(network.tasks)} ({network.aggregator})"
            lines.append(f"  {name}: {diverged['message']}")
    if lines:
        typer.echo(
            f"taskgroup: {len(lines)} network(s) diverged and stopped early (results.json "
            f"records each under 'diverged'; their results are the best evaluation before it):\n"
            + "\n".join(lines),
            err=True,
        )
        raise typer.Exit(DIVERGED)


NEXT_STAGE = {"affinity": "group", "group": "train", "train": "report"}


def _stage_printer(run_dir: Path, stages):
    """What ``taskgroup run`` prints as each stage ends (and the stage bar's progress)."""
    from taskgroup.report import tables

    def on_stage(stage: str, result: Any) -> None:
        if stage == "affinity":
            typer.echo(tables.affinity_table(result) + "\n")
        elif stage == "group":
            _print_grouping(*result)
        elif stage == "train":
            typer.echo("\n" + result.table())
        stages.update()
        stages.set_description(NEXT_STAGE.get(stage, "report"))

    stages.set_description("affinity")
    return on_stage


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
) -> None:
    """Write RUN_DIR/report.html: one self-contained page with every plot and table."""
    from taskgroup.pipeline import report_stage

    typer.echo(f"→ {report_stage(run_dir)}")


def _stage_bar(progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=4, unit="stage", disable=not progress, position=0, leave=False)


def _task_list(tasks: str | None) -> list[str] | None:
    return None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]


def _default_out(spec) -> Path:
    return RUNS / Path(spec.source).stem


@app.command("aggregators")
def list_aggregators() -> None:
    """List the gradient aggregators and loss weightings with their options."""
    import textwrap

    from taskgroup.aggregators import describe

    records = describe()
    width = max(len(r["name"]) for r in records)
    indent = " " * (width + 4)
    titles = {
        "gradient": "Gradient aggregators (per-task gradients G [k, d] -> update direction):",
        "loss": "Loss weightings (task losses [k] -> weighted objective, no per-task gradients):",
    }
    for kind, title in titles.items():
        typer.echo(title)
        for r in (r for r in records if r["kind"] == kind):
            options = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
            typer.echo(f"  {r['name']:<{width}}  {r['summary']}")
            wrapped = textwrap.fill(
                f"options: {options}", 100, initial_indent=indent, subsequent_indent=indent + "  "
            )
            typer.echo(wrapped)
            typer.echo(f"{indent}{r['reference']}")
        typer.echo("")
    typer.echo('Use in Python: taskgroup.aggregators.get("nash_mtl", max_norm=1.0)')


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2.

    Usage errors (unknown options, missing arguments) are reported by click itself, with exit
    code 2; errors in values, files and recipes are ``ValueError``/``OSError`` raised by the
    commands before they write anything; a failed rank of a ``--nproc`` run is named. A
    ``train`` or ``run`` whose networks diverged (NaN/inf) finishes the others, writes
    everything, names each diverged network on stderr and exits with code 3.
    Launched by torchrun (``WORLD_SIZE`` > 1), it joins the process group first; only rank 0
    prints and writes.
    """
    from taskgroup import distributed

    args = global_options_first(list(sys.argv[1:] if argv is None else argv))
    quiet = distributed.init_from_env() and not distributed.is_writer()
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext(),
            _one_line_warnings(quiet),
        ):
            app(args=args, prog_name="taskgroup", obj=args)  # obj: what --nproc relaunches
    except SystemExit as e:  # click's standalone mode ends every run with SystemExit
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        if code == INTERRUPTED:  # typer's exit code for Ctrl-C
            typer.echo(
                "\ntaskgroup: interrupted; every file written so far is complete: run the same "
                "command again to resume",
                err=True,
            )
        return code
    except OSError as e:
        typer.echo(f"taskgroup: error: {_os_error(e)}", err=True)
        return 2
    except (ValueError, distributed.LaunchError) as e:
        typer.echo(f"taskgroup: error: {e}", err=True)
        return 2
    return 0


@contextlib.contextmanager
def _one_line_warnings(quiet: bool):
    """While a command runs, each warning is one line on stderr, ``taskgroup: warning: ...``
    (none on the ranks of a distributed run that do not print)."""

    def show(message, *args, **kwargs) -> None:
        if not quiet:
            typer.echo(f"taskgroup: warning: {_warning_text(message)}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _warning_text(message: Warning | str) -> str:
    """A warning in the command line's words: the library's ``every``/``steps`` become the
    options and recipe keys that set them."""
    from taskgroup.training.cotrain import FewMeasurementsWarning

    if isinstance(message, FewMeasurementsWarning):
        return (
            f"--every {message.every} with --steps {message.steps} measures the affinity once "
            "(at step 0 only), so it is one step's noise; lower --every or raise --steps "
            "([affinity] every and steps in a recipe)"
        )
    return str(message).replace("\n", " ")


INTERRUPTED = 130
GLOBAL_OPTIONS = {"--threads": 1, "--version": 0}  # option: how many values follow it


def global_options_first(args: list[str]) -> list[str]:
    """``args`` with the global options (``--threads N``, ``--version``) moved before the
    subcommand, so that ``taskgroup run --threads 2`` works as ``taskgroup --threads 2 run``."""
    front, rest, i = [], [], 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            values = 0 if "=" in args[i] else GLOBAL_OPTIONS[name]
            front += args[i : i + 1 + values]
            i += 1 + values
        else:
            rest.append(args[i])
            i += 1
    return front + rest


def _os_error(e: OSError) -> str:
    """One plain sentence for a failed file operation (not Python's ``[Errno 20] ...``)."""
    reason = (e.strerror or str(e)).rstrip(".").lower()
    if e.filename is None:
        return f"a file operation failed: {reason}"
    hint = {
        errno.ENOTDIR: " (a part of this path is a file)",
        errno.ENOSPC: "; every file written before is kept whole: free some space, then run "
        "the same command again to resume",
        errno.EDQUOT: "; every file written before is kept whole: free some space, then run "
        "the same command again to resume",
    }.get(e.errno, "")
    return f"cannot use {e.filename}: {reason}{hint}"


def run_on_rank(argv: list[str]) -> int:
    """What each process of a ``--nproc`` run executes: this command line on ``argv``."""
    code = main(argv)
    if code:
        raise SystemExit(code)
    return code


def _launched(ctx: typer.Context, nproc: int, run_dir: Path) -> bool:
    """With ``--nproc N`` > 1 outside a distributed run: run this same command line (``ctx.obj``,
    from :func:`main`) on N processes (torchrun's launcher) and return True; the caller then has
    nothing left to do. A ``run_dir`` that another command holds is refused here, before
    anything is read or any process starts (the stages, on rank 0, then take its lock)."""
    from taskgroup import distributed
    from taskgroup.rundir import hold_run_dir

    _positive("--nproc", nproc)
    with hold_run_dir(run_dir):  # a folder another command works in is refused before anything
        pass
    if nproc == 1 or distributed.active():
        return False
    argv, skip = [], False
    for arg in ctx.obj:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    distributed.launch(nproc, argv, run_on_rank)
    return True


if __name__ == "__main__":
    sys.exit(main())
