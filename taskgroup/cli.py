"""The ``taskgroup`` command line. Errors in user input print one line and exit with code 2."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from taskgroup.affinity.lookahead import LOOKAHEADS
from taskgroup.recipes import load_recipe

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Which tasks should train together? Measure inter-task affinity, group tasks, train.",
)


@app.callback()
def _commands(
    threads: Annotated[
        int | None,
        typer.Option(help="torch intra-op threads (default: torch's choice; 1 is often fastest "
                     "for small models or on a busy machine)"),
    ] = None,
) -> None:
    """Which tasks should train together? Measure inter-task affinity, group tasks, train."""
    if threads is not None:
        _positive("--threads", threads)
        import torch

        torch.set_num_threads(threads)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@app.command()
def affinity(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe file or name in recipes/ (default multidigits)")
    ] = None,
    benchmark: Annotated[str | None, typer.Option(help="benchmark name")] = None,
    tasks: Annotated[str | None, typer.Option(help="comma-separated task names")] = None,
    steps: Annotated[int | None, typer.Option(help="co-training steps")] = None,
    every: Annotated[int | None, typer.Option(help="measure every K steps")] = None,
    lookahead: Annotated[str | None, typer.Option(help=f"one of {', '.join(LOOKAHEADS)}")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of data, init and batches")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Co-train all tasks once and measure their lookahead affinity (TAG).

    Writes affinity.json, manifest.json, affinity_heatmap.png and affinity_over_training.png.
    """
    from taskgroup.report import plots, tables
    from taskgroup.training.cotrain import measure_affinity

    _positive("--steps", steps)
    _positive("--every", every)
    if lookahead is not None and lookahead not in LOOKAHEADS:
        raise ValueError(f"--lookahead must be one of {', '.join(LOOKAHEADS)}, got {lookahead!r}")
    spec = load_recipe(recipe).override(
        benchmark=benchmark,
        tasks=None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()],
        seed=seed,
    )
    settings = spec.stage("affinity")
    settings |= {
        k: v
        for k, v in {"steps": steps, "every": every, "lookahead": lookahead}.items()
        if v is not None
    }
    bench = spec.load_benchmark()
    run_dir = out or Path("runs") / Path(spec.source).stem
    started = time.perf_counter()
    result = measure_affinity(bench, seed=spec.seed, progress=progress, **settings)
    seconds = time.perf_counter() - started
    heatmap = plots.affinity_heatmap(result)
    over_training = plots.affinity_over_training(result)

    from taskgroup.manifest import record_stage
    from taskgroup.storage import write_atomic

    result.save(run_dir / "affinity.json")
    write_atomic(run_dir / "affinity_heatmap.png", heatmap)
    write_atomic(run_dir / "affinity_over_training.png", over_training)
    record_stage(
        run_dir,
        "affinity",
        {
            "recipe": spec.to_dict() | {"affinity": settings},
            "benchmark_info": dict(bench.info),
            "tasks": result.tasks,
            "seconds": round(seconds, 3),
            "outputs": ["affinity.json", "affinity_heatmap.png", "affinity_over_training.png"],
        },
    )
    typer.echo(tables.affinity_table(result))
    typer.echo(
        f"\n{len(result.trace_steps)} measurements over {result.metadata['steps_trained']}"
        f" steps in {seconds:.1f} s → {run_dir}/affinity.json"
    )


@app.command()
def group(
    source: Annotated[
        Path, typer.Argument(help="run directory (reads its affinity.json) or an affinity JSON")
    ],
    budget: Annotated[int, typer.Option(help="the most groups (networks to train)")],
    method: Annotated[
        str, typer.Option(help="auto, exact, milp, beam, greedy, spectral or community")
    ] = "auto",
    partition: Annotated[bool, typer.Option(help="only disjoint groups")] = False,
    sweep: Annotated[
        bool, typer.Option(help="solve every budget 1..n and draw the score-vs-budget curve")
    ] = False,
    singleton_score: Annotated[
        float | None,
        typer.Option(help="value of a task trained alone (default: a singleton serves no task)"),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="seconds per solve (default: the method's own)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default: where the affinity is)")
    ] = None,
) -> None:
    """Choose the groups of tasks to train together from an affinity matrix (TAG's selection).

    Writes groups.json, groups_graph.png (and score_vs_budget.png with --sweep) and records the
    stage in manifest.json.
    """
    from taskgroup.affinity.matrix import AffinityMatrix
    from taskgroup.grouping import select_groups
    from taskgroup.grouping import sweep as sweep_budgets
    from taskgroup.manifest import MANIFEST, record_stage
    from taskgroup.report import plots
    from taskgroup.storage import read_json, write_atomic, write_json

    if source.is_dir():
        path, run_dir = source / "affinity.json", out or source
    elif source.exists():
        path, run_dir = source, out or source.parent
    else:
        raise ValueError(f"{source}: no such file or directory")
    affinity_matrix = AffinityMatrix.load(path)
    n = len(affinity_matrix.tasks)
    if not 1 <= budget <= n:
        raise ValueError(f"--budget must lie in 1..{n} (the number of tasks), got {budget}")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory")
    manifest = run_dir / MANIFEST
    if manifest.exists() and not isinstance(read_json(manifest), dict):
        raise ValueError(f"{manifest}: not a taskgroup manifest (expected a JSON object)")
    options = {
        "method": method,
        "partition": partition,
        "singleton_score": singleton_score,
        "time_limit": time_limit,
    }
    started = time.perf_counter()
    if sweep:
        curve = sweep_budgets(affinity_matrix, **options)
        chosen = curve[budget - 1]
    else:
        curve = []
        chosen = select_groups(affinity_matrix, budget, **options)
    seconds = time.perf_counter() - started
    figures = {"groups_graph.png": plots.grouping_graph(affinity_matrix, chosen)}
    if sweep:
        figures["score_vs_budget.png"] = plots.score_vs_budget(curve, chosen=budget)
    record = chosen.to_dict() | {"affinity": str(path)}
    if sweep:
        record["sweep"] = [
            {
                "budget": g.budget,
                "score": g.score,
                "bound": g.bound,
                "optimal": g.optimal,
                "method": g.method,
                "seconds": round(g.seconds, 6),
                "groups": [list(members) for members in g.groups],
            }
            for g in curve
        ]

    write_json(run_dir / "groups.json", record)
    for name, png in figures.items():
        write_atomic(run_dir / name, png)
    record_stage(
        run_dir,
        "group",
        {
            "affinity": str(path),
            "budget": budget,
            **options,
            "sweep": sweep,
            "method_used": chosen.method,
            "score": chosen.score,
            "bound": chosen.bound,
            "optimal": chosen.optimal,
            "seconds": round(seconds, 3),
            "outputs": ["groups.json", *figures],
        },
    )
    typer.echo(chosen.describe())
    if sweep:
        typer.echo("\nbudget  score       bound       optimal")
        for g in curve:
            bound = "-" if g.bound is None else f"{g.bound:.6g}"
            typer.echo(f"{g.budget:>6}  {g.score:<10.6g}  {bound:<10}  {g.optimal}")
    typer.echo(f"\n→ {run_dir}/groups.json, {', '.join(figures)}")


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
    commands before they write anything.
    """
    try:
        app(args=argv, prog_name="taskgroup")
    except SystemExit as e:  # click's standalone mode ends every run with SystemExit
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except (ValueError, OSError) as e:
        typer.echo(f"taskgroup: error: {e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
