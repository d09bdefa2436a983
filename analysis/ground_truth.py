"""Keep a slow ground truth in the repository: digest finished trainings, and restore them.

``analysis/grouping_quality.py --phase train`` trains every subset of a recipe's tasks per data
seed and initialisation, each in its own resumable folder
(``OUT/seed<S>/subsets/<group_key>/result.json`` for initialisation 0, ``OUT/seed<S>/init<k>/``
for initialisation k, beside checkpoints and weights, tens
of megabytes). Those folders do not outlive a session, so this script keeps what the scoring
reads — each network's configuration, validation and test metrics, steps and seconds, and
the per-evaluation history of initialisation 0's single-task and pair networks only (what HOA on
a cut schedule reads: ``selection_quality``'s ``hoa f<x>``), no weights — as one small JSON file
per complete (seed, initialisation) block under ``analysis/results/ground_truth/<recipe>/``, and
writes the ``result.json`` files back from them, so that a later ``--phase train`` skips every
restored network (the trainer returns a finished network from its ``result.json`` when the
configuration matches).

    python analysis/ground_truth.py digest --out /work/gt/runs --recipe multidigits
    python analysis/ground_truth.py restore --out runs/grouping_quality --recipe multidigits
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grouping_quality import subsets_dir

from taskgroup.rundir import RESULT
from taskgroup.storage import read_json, write_json

DIGESTS = Path(__file__).resolve().parent / "results" / "ground_truth"
FORMAT = "taskgroup.ground_truth"
HISTORY_TASKS = 2  # the histories kept: initialisation 0's networks of at most this many tasks


def _blocks(out: Path) -> list[tuple[int, int]]:
    """The (seed, initialisation) blocks that ``out`` holds trainings of."""
    found = []
    for seed_dir in sorted(out.glob("seed*")):
        seed = int(seed_dir.name[4:])
        inits = [int(p.name[4:]) for p in seed_dir.glob("init*")]
        found += [(seed, init) for init in sorted([0] * (seed_dir / "subsets").is_dir() + inits)]
    return found


def digest(out: Path, recipe: str, networks: int) -> list[Path]:
    """One digest per block of ``out`` that holds all ``networks`` finished trainings."""
    written = []
    for seed, init in _blocks(out):
        folders = sorted(subsets_dir(out, seed, init).glob(f"*/{RESULT}"))
        if len(folders) != networks:
            print(f"seed {seed} init {init}: {len(folders)}/{networks} finished, not digested")
            continue
        records = {}
        for path in folders:
            stored = read_json(path)
            result = stored["result"]
            if init != 0 or len(result["tasks"]) > HISTORY_TASKS:
                result = {k: v for k, v in result.items() if k != "history"}
            records[path.parent.name] = {"config": stored["config"], "result": result}
        target = DIGESTS / recipe / f"seed{seed}_init{init}.json"
        record = {"format": FORMAT, "recipe": recipe, "seed": seed, "init": init}
        written.append(write_json(target, record | {"networks": records}))
        print(f"seed {seed} init {init}: {networks} networks -> {target}")
    return written


def restore(out: Path, recipe: str) -> int:
    """Write every digested network's ``result.json`` under ``out`` (existing ones are kept);
    returns how many were written."""
    count = 0
    for path in sorted((DIGESTS / recipe).glob("seed*_init*.json")):
        block = read_json(path)
        if block.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} digest")
        folder = subsets_dir(out, block["seed"], block["init"])
        for key, stored in block["networks"].items():
            target = folder / key / RESULT
            if not target.exists():
                result = {"history": []} | stored["result"]
                write_json(target, {"config": stored["config"], "result": result})
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["digest", "restore"])
    parser.add_argument("--out", type=Path, required=True, help="grouping_quality's --out")
    parser.add_argument("--recipe", default="multidigits")
    parser.add_argument(
        "--networks", type=int, default=63, help="trainings in a complete block (2^n - 1)"
    )
    args = parser.parse_args(argv)
    if args.action == "digest":
        digest(args.out, args.recipe, args.networks)
    else:
        print(f"restored {restore(args.out, args.recipe)} networks under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
