"""The ``taskgroup`` command line. Errors in user input print one line and exit with code 2."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import click
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="taskgroup", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Abort:
        typer.echo("taskgroup: aborted", err=True)
        return 130
    except (ValueError, OSError) as e:
        typer.echo(f"taskgroup: error: {e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
