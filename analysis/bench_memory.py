"""Benchmark: peak memory of measuring the affinity at many tasks, the ``[n, P]`` per-task
gradient matrix whole ("before") against chunked ("after", the automatic memory budget of
``lookahead_affinity``), as ratios to a plain training step's peak in the same run (issue 20,
item 3).

Model: an MLP trunk Linear(128, w), ReLU, Linear(w, w), ReLU, Linear(w, w), ReLU with w = 675
(P ≈ 1.0M shared parameters) or w = 2204 (P ≈ 10.0M), one Linear(w, 1) head per task, MSE
losses, a batch of 64 rows, Adam with state (its moments filled, step 1), float32, one thread.

Each configuration runs in its own process: build the model, the optimizer state and the batch,
reset the kernel's peak-RSS counter (``/proc/self/clear_refs`` ← 5; the counter is the one
``getrusage`` reports as ``ru_maxrss``, which tracemalloc does not see for torch's CPU
allocations), record the resident set, run one operation, read the peak (``VmHWM``):

- ``train``: a plain training step of all n tasks (zero_grad, forward, sum of losses, backward,
  Adam step) — the reference;
- ``adam whole`` / ``adam chunked``: ``lookahead_affinity(..., optimizer=opt)`` (the Adam
  lookahead, the default signal) with ``memory_budget=2**62`` (the ``[n, P]`` matrix whole, as
  before this change) and with the automatic budget;
- ``cosine whole`` / ``cosine chunked``: the gradient cosine (a Gramian signal) likewise.

Columns: ``peak`` = the process's peak RSS during the operation (MiB, includes the ~0.3 GiB of
the interpreter, torch and the model), ``+op`` = peak minus the resident set just before the
operation, ``peak/train`` and ``+op/train`` = the same ratios to the training step of the same
n and P, and the operation's seconds. A configuration whose whole ``[n, P]`` path would need
more than ``--max-gib`` is skipped and says so.

Run from the repository root (about 10 minutes on one core)::

    python analysis/bench_memory.py [--quick] [--out analysis/results/bench_memory.txt]

``--cache FILE`` keeps each configuration's result (one JSON line each) and reuses it on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {"1M": 675, "10M": 2204}
TASKS = (10, 40, 100)
OPS = ("train", "adam whole", "adam chunked", "cosine whole", "cosine chunked")
BATCH, DIM = 64, 128


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(op: str, n: int, width: int) -> dict:
    """Run one operation in this (fresh) process and return its memory and time."""
    import torch
    from torch import nn

    import taskgroup as tg

    torch.set_num_threads(1)
    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Linear(DIM, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
    )  # fmt: skip
    heads = {f"t{i}": nn.Linear(width, 1) for i in range(n)}
    model = tg.MultiTaskModel(trunk, heads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():  # Adam's state as after a step, without a step's peak
        opt.state[p] = {
            "step": torch.tensor(1.0),
            "exp_avg": torch.full_like(p, 1e-3),
            "exp_avg_sq": torch.full_like(p, 1e-6),
        }
    x = torch.randn(BATCH, DIM)
    targets = {name: torch.randn(BATCH) for name in heads}
    losses = {name: lambda pred, y: nn.functional.mse_loss(pred.squeeze(-1), y) for name in heads}
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS
    before = _status("VmRSS")
    started = time.perf_counter()
    if op == "train":
        opt.zero_grad()
        out = model(x)
        sum(losses[k](out[k], targets[k]) for k in heads).backward()
        opt.step()
    else:
        signal, how = op.split()
        budget = 2**62 if how == "whole" else None
        kwargs = {"optimizer": opt} if signal == "adam" else {"lookahead": "cosine"}
        z = tg.lookahead_affinity(model, x, targets, losses, memory_budget=budget, **kwargs)
        assert z.shape == (n, n) and bool(z.isfinite().all())
    seconds = time.perf_counter() - started
    shared = sum(p.numel() for p in trunk.parameters())
    return {"before": before, "peak": _status("VmHWM"), "seconds": seconds, "P": shared}


def whole_bytes(op: str, n: int, width: int) -> int:
    """A rough size of the whole path's working set (to skip what cannot fit)."""
    p = 2 * width * width + (DIM + 3) * width
    if "whole" not in op:
        return 0
    # Adam: [n, P] gradients + one [n, P] temporary; cosine: [n, P] + its float64 copy (x2)
    return n * p * 4 * (2 if op.startswith("adam") else 3)


def run(op: str, n: int, size: str, max_gib: float) -> dict | None:
    width = WIDTHS[size]
    if whole_bytes(op, n, width) > max_gib * 2**30:
        return None
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([op, n, width])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{op} n={n} P={size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict, sizes, tasks) -> list[str]:
    mib = 2**20
    lines = [
        f"{'P':>4} {'n':>4} {'operation':<15} {'peak MiB':>9} {'+op MiB':>8} "
        f"{'peak/train':>10} {'+op/train':>9} {'seconds':>8}"
    ]
    for size in sizes:
        for n in tasks:
            train = results[(size, n, "train")]
            train_op = train["peak"] - train["before"]
            for op in OPS:
                r = results.get((size, n, op))
                if r is None:
                    lines.append(f"{size:>4} {n:>4} {op:<15} not run (--max-gib or --skip)")
                    continue
                inc = r["peak"] - r["before"]
                lines.append(
                    f"{size:>4} {n:>4} {op:<15} {r['peak'] / mib:9.0f} {inc / mib:8.0f} "
                    f"{r['peak'] / train['peak']:10.2f} {inc / max(train_op, 1):9.2f} "
                    f"{r['seconds']:8.2f}"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="P ≈ 1M only")
    parser.add_argument("--max-gib", type=float, default=12.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help='configurations to leave out, e.g. "10M:100:cosine chunked"',
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return
    sizes = ["1M"] if args.quick else ["1M", "10M"]
    results = {}
    cached = {}
    if args.cache and args.cache.exists():
        for line in args.cache.read_text().splitlines():
            size, n, op, result = json.loads(line)
            cached[(size, n, op)] = result
    for size in sizes:
        for n in TASKS:
            for op in OPS:
                key = (size, n, op)
                if f"{size}:{n}:{op}" in args.skip:
                    results[key] = None
                    continue
                if key not in cached:
                    cached[key] = run(op, n, size, args.max_gib)
                    if args.cache and cached[key] is not None:
                        with args.cache.open("a") as f:
                            f.write(json.dumps([size, n, op, cached[key]]) + "\n")
                results[key] = cached[key]
                print(size, n, op, results[key], file=sys.stderr, flush=True)
    shared = {s: next(r["P"] for k, r in results.items() if k[0] == s and r) for s in sizes}
    head = [
        "bench_memory: peak RSS of one affinity measurement vs one plain training step",
        f"python {platform.python_version()}, torch {__import__('torch').__version__}, "
        f"{platform.machine()}, one thread; shared parameters: "
        + ", ".join(f"{s} = {shared[s]:,}" for s in sizes),
        "",
    ]
    text = "\n".join(head + table(results, sizes, TASKS)) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
