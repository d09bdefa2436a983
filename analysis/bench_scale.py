"""Scaling benchmark (issue 20, item 1): affinity signals at 10–100 tasks and trunk widths 48–1024.

For each point (layout, n tasks, trunk width) one co-training run (Adam, batch 128, one thread)
measures, on the same batches and the same trajectory:

- the **reference**: the exact Adam lookahead (``lookahead="optimizer"``) at *every* step;
- each **signal** every ``E`` steps through its own :class:`~taskgroup.AffinityTracker`:
  ``optimizer`` (the exact lookahead every E steps: the subsampling baseline, read off the
  reference's calls), ``first_order``, ``cosine``, ``representation``,
  ``representation_cosine``, ``sketch``, ``sketch_cosine`` and ``linearised`` (d = 64
  Gaussian), ``sampled`` (⌈n/4⌉ sources per measurement, the exact Adam step).

It records per signal:

- **overhead**: 1 + (time in the signal's ``tracker.step`` calls) / (time of the plain training
  steps) — both timed in the same process, step by step, with the order of the signals rotated
  every step (interleaved), so the ratio is what the tracker adds to plain co-training;
- **peak memory**: the peak resident set above the level before one call (Linux
  ``/proc/self/clear_refs``), for the signal and for one plain training step (malloc may reuse
  freed memory, so small values are lower bounds);
- **agreement** with the reference matrix (mean over every step): Spearman rank correlation of the
  off-diagonal entries, and the TAG score under the reference of the groups selected from the
  signal against the best grouping known under the reference (``score_gap``: (best − score) /
  |best|, 0 = as good; scores can be negative, so a plain ratio would mislead). Groups: B = the
  number of hidden groups, disjoint, chosen by the same seeded local search for every matrix
  (``select_groups`` takes minutes at 40–100 tasks on this loaded machine, and is not what is
  compared here); ``ari``: adjusted Rand index of those groups against the hidden ones.

Layouts: ``planted`` (groups of 5 tasks, conflict 0.5; the trunk is the benchmark's two-layer MLP
of the given width) and a **CelebA-40-like** layout: 40 binary tasks in 8 hidden groups on
``celeba.build_model`` (conv, batch-norm, max-pool, one residual block) with fabricated 24×24
images whose attributes are thresholded projections of shared latent factors.

Run from the repository root, one thread, niced (the machine is shared)::

    nice -n 10 python analysis/bench_scale.py [--quick] [--out analysis/results/bench_scale]

writes ``<out>.json`` (every number) and ``<out>.txt`` (the table), point by point. Timings on a
loaded machine are noisy; the ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

import taskgroup as tg
from taskgroup.affinity import scalable
from taskgroup.affinity.scalable import SKETCH_DIM, SignalMeasurer
from taskgroup.data import celeba
from taskgroup.data.heads import make_task
from taskgroup.tasks import TaskSet

# every signal of the library but the SGD lookahead (the run trains with Adam); the sketches
# use the library's default dimension, SKETCH_DIM
SIGNALS = tuple(s for s in scalable.SIGNALS if s != "sgd")
# (layout, tasks, width, steps, every): the exact every-step reference bounds the steps; every
# signal is measured every 10 steps, the interval of TAG and of the overhead figures
GRID = [
    ("planted", 10, 48, 40, 10),
    ("planted", 20, 48, 40, 10),
    ("planted", 40, 48, 40, 10),
    ("planted", 100, 48, 40, 10),
    ("planted", 40, 256, 40, 10),
    ("planted", 100, 256, 40, 10),
    ("planted", 40, 1024, 40, 10),
    ("planted", 100, 1024, 40, 10),
    ("celeba40", 40, 16, 40, 10),
]
QUICK = [("planted", 10, 48, 20, 5), ("celeba40", 40, 16, 10, 5)]
BATCH = 128


def planted_setup(n: int, width: int, seed: int = 0):
    groups = n // 5
    bench = tg.data.get(
        "planted", seed=seed, groups=groups, tasks_per_group=5, width=width,
        latent=max(8, groups), n_train=4096, n_val=2, n_test=2,
    )  # fmt: skip
    model = bench.make_model(seed=seed)
    return model, bench.train.batches(BATCH, seed=seed), bench.tasks.losses(), bench.info["groups"]


def celeba_setup(n: int, width: int, seed: int = 0, side: int = 24, rows: int = 2048):
    """40 binary tasks in 8 hidden groups on TAG's CelebA model, fabricated images."""
    g = torch.Generator().manual_seed(seed)
    latent = 8
    z = torch.randn(rows, latent, generator=g)
    mixing = torch.randn(latent, 3 * side * side, generator=g) / math.sqrt(latent)
    images = torch.tanh(z @ mixing).reshape(rows, 3, side, side)
    images += 0.1 * torch.randn(images.shape, generator=g)
    directions = torch.linalg.qr(torch.randn(latent, latent, generator=g))[0]
    names = [f"attr{k:02d}" for k in range(n)]
    hidden = [names[k : k + 5] for k in range(0, n, 5)]
    task_dirs = torch.stack(
        [directions[k // 5] + 0.3 * torch.randn(latent, generator=g) for k in range(n)]
    )
    logits = z @ task_dirs.T + 0.3 * torch.randn(rows, n, generator=g)
    labels = (logits > 0).float()
    tasks = TaskSet(make_task(name, "binary") for name in names)
    torch.manual_seed(seed)
    model = celeba.build_model(tasks, width=width, image_size=side)

    def batches() -> Iterator:
        order = np.random.default_rng(seed)
        while True:
            for _ in range(rows // BATCH):
                idx = torch.from_numpy(order.permutation(rows)[:BATCH])
                yield images[idx], {name: labels[idx, k] for k, name in enumerate(names)}

    return model, batches(), tasks.losses(), hidden


def rss_mib(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) / 1024


def peak_mib(fn: Callable[[], object]) -> float | None:
    """Peak resident memory (MiB) above the level before ``fn()``; ``None`` where Linux's
    peak reset is unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = rss_mib("VmRSS")
    fn()
    return round(rss_mib("VmHWM") - before, 1)


def train_step(model, optimizer, inputs, targets, losses) -> None:
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs)
    sum(loss(out[name], targets[name]) for name, loss in losses.items()).backward()
    optimizer.step()


def tag_score(Z: np.ndarray, groups: list[list[int]]) -> float:
    """TAG's objective of disjoint groups of size ≥ 2: Σ_j mean_{i ∈ S(j), i ≠ j} Z[i, j]."""
    total = 0.0
    for members in groups:
        sub = Z[np.ix_(members, members)]
        total += float(((sub.sum(0) - np.diag(sub)) / (len(members) - 1)).sum())
    return total


def local_search(Z: np.ndarray, budget: int, *, restarts: int = 16, seed: int = 0):
    """Disjoint groups (each ≥ 2 tasks) maximising :func:`tag_score`: from seeded random
    balanced starts, each task in turn moves to the group that raises the score most, until no
    move raises it; the best start. Deterministic.

    A move is scored in O(n + B) from the column sums S[g, j] = Σ_{i ∈ g} Z[i, j] and the
    group scores, so a sweep costs O(n (n + B)) instead of O(n B) full evaluations of
    :func:`tag_score` (at n = 100, B = 20 the whole search takes seconds, not minutes)."""
    n = len(Z)
    diagonal = np.diag(Z)
    rng = np.random.default_rng(seed)
    best, best_score = None, -np.inf
    for _ in range(restarts):
        label = rng.permutation(np.arange(n) % budget)
        members = np.eye(budget)[:, label]  # [B, n] one-hot
        S = members @ Z
        size = members.sum(axis=1)
        within = (members * (S - diagonal)).sum(axis=1)  # Σ_{j ∈ g} Σ_{i ∈ g, i ≠ j} Z[i, j]
        improved = True
        while improved:
            improved = False
            for t in rng.permutation(n):
                a = label[t]
                if size[a] <= 2:
                    continue
                into = members @ Z[t]  # Σ_{j ∈ g} Z[t, j]
                # leaving a: t's column and t's row (as a source) leave a's sums
                left = within[a] - (S[a, t] - Z[t, t]) - (into[a] - Z[t, t])
                gain_out = left / (size[a] - 2) - within[a] / (size[a] - 1)
                joined = within + S[:, t] + into
                with np.errstate(divide="ignore", invalid="ignore"):
                    gain_in = joined / size - np.where(size > 1, within / (size - 1), 0.0)
                gain = gain_out + gain_in
                gain[a] = -np.inf
                g = int(np.argmax(gain))
                if gain[g] <= 1e-12:
                    continue
                within[a], within[g] = left, joined[g]
                S[a] -= Z[t]
                S[g] += Z[t]
                size[a] -= 1
                size[g] += 1
                members[a, t], members[g, t] = 0.0, 1.0
                label[t] = g
                improved = True
        score = tag_score(Z, [list(np.flatnonzero(label == g)) for g in range(budget)])
        if score > best_score:
            best, best_score = label.copy(), score
    return [list(np.flatnonzero(best == g)) for g in range(budget)], best


def agreement(signal: np.ndarray, reference: np.ndarray, budget: int, hidden_labels) -> dict:
    """Spearman ρ of the off-diagonal entries, the signal's groups (by :func:`local_search`),
    their TAG score under the reference and their ARI against the hidden groups."""
    off = ~np.eye(len(reference), dtype=bool)
    rho = spearmanr(signal[off], reference[off]).statistic
    groups, labels = local_search(signal, budget)
    return {
        "spearman": round(float(rho), 4),
        "reference_score": tag_score(reference, groups),
        "ari": round(float(adjusted_rand_score(hidden_labels, labels)), 4),
    }


def score_gaps(signals: dict[str, dict], own: float) -> float:
    """Set each signal's ``score_gap``: (best − its groups' score under the reference) / |best|,
    ``best`` the best score known under the reference — the reference's own choice (score
    ``own``), or a signal's where the reference's search stopped at a lower local optimum (so
    gaps stay ≥ 0). Returns ``best``."""
    best = max([own] + [s["reference_score"] for s in signals.values()])
    for s in signals.values():
        s["score_gap"] = round((best - s.pop("reference_score")) / abs(best), 4)
    return best


def trackers_for(model, losses, optimizer, every: int) -> dict[str, tg.AffinityTracker]:
    return {
        s: tg.AffinityTracker(model, losses, optimizer=optimizer, lookahead=s, every=every)
        for s in SIGNALS
        if s != "optimizer"
    }


def run_point(layout: str, n: int, width: int, steps: int, every: int, seed: int = 0) -> dict:
    """One co-training run measuring the reference and every signal; see the module docstring."""
    setup = planted_setup if layout == "planted" else celeba_setup
    model, batches, losses, hidden = setup(n, width, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    reference = tg.AffinityTracker(model, losses, optimizer=optimizer, every=1)
    trackers = trackers_for(model, losses, optimizer, every)
    seconds = dict.fromkeys(SIGNALS, 0.0)
    train_seconds, reference_seconds = 0.0, 0.0
    for step in range(steps):
        inputs, targets = next(batches)
        names = list(trackers)
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:  # rotated: no signal always runs first
            start = time.perf_counter()
            trackers[name].step(inputs, targets)
            seconds[name] += time.perf_counter() - start
        start = time.perf_counter()
        reference.step(inputs, targets)
        elapsed = time.perf_counter() - start
        reference_seconds += elapsed
        seconds["optimizer"] += elapsed if step % every == 0 else 0.0
        start = time.perf_counter()
        train_step(model, optimizer, inputs, targets, losses)
        train_seconds += time.perf_counter() - start
    ref = reference.result().values
    matrices = {name: t.result().values for name, t in trackers.items()}
    matrices["optimizer"] = np.mean(reference.result().trace[::every], axis=0)
    hidden_labels = np.array([k for k, group in enumerate(hidden) for _ in group])
    memory = point_memory(model, optimizer, losses, inputs, targets)
    signals = {
        name: {"overhead": round(1 + seconds[name] / train_seconds, 4), "peak_mib": memory[name]}
        | agreement(matrices[name], ref, len(hidden), hidden_labels)
        for name in SIGNALS
    }
    ref_groups, ref_labels = local_search(ref, len(hidden))
    own_score = tag_score(ref, ref_groups)
    best_score = score_gaps(signals, own_score)
    return {
        "layout": layout, "tasks": n, "width": width, "steps": steps, "every": every,
        "shared_parameters": sum(p.numel() for p in model.trunk.parameters()),
        "train_seconds": round(train_seconds, 3),
        "reference_overhead_every_step": round(1 + reference_seconds / train_seconds, 3),
        "train_step_peak_mib": memory.pop("train_step"),
        "reference_ari": round(float(adjusted_rand_score(hidden_labels, ref_labels)), 4),
        "reference_choice_gap": round((best_score - own_score) / abs(best_score), 4),
        "signals": signals,
    }  # fmt: skip


def point_memory(model, optimizer, losses, inputs, targets) -> dict:
    """Peak MiB of one plain training step (on copies) and of one measurement per signal."""
    memory = {}
    model_copy = copy.deepcopy(model)
    opt_copy = torch.optim.Adam(model_copy.parameters(), lr=3e-3)
    opt_copy.load_state_dict(optimizer.state_dict())
    memory["train_step"] = peak_mib(
        lambda m=model_copy, o=opt_copy: train_step(m, o, inputs, targets, losses)
    )
    del model_copy, opt_copy
    for name in SIGNALS:
        measure = SignalMeasurer(name, len(losses))
        memory[name] = peak_mib(
            lambda m=measure: m(model, inputs, targets, losses, optimizer=optimizer)
        )
    return memory


def table(points: list[dict]) -> str:
    lines = []
    for p in points:
        lines.append(
            f"\n{p['layout']} n={p['tasks']} width={p['width']} (P={p['shared_parameters']:,}; "
            f"{p['steps']} steps, signals every {p['every']}; exact every step = "
            f"{p['reference_overhead_every_step']}x plain; train step peak "
            f"{p['train_step_peak_mib']} MiB; the reference's own groups: ARI "
            f"{p['reference_ari']}, score gap to the best known {p['reference_choice_gap']})"
        )
        lines.append(
            f"  {'signal':<22} {'overhead':>9} {'peak MiB':>9} {'spearman':>9} "
            f"{'score gap':>9} {'ARI':>6}"
        )
        for name, s in p["signals"].items():
            lines.append(
                f"  {name:<22} {s['overhead']:>9.3f} {s['peak_mib']!s:>9} "
                f"{s['spearman']:>9.3f} {s['score_gap']:>9.3f} {s['ari']:>6.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two tiny points (a smoke run)")
    parser.add_argument("--out", default="analysis/results/bench_scale", help="output stem")
    parser.add_argument("--only", default=None, help="comma-separated grid indices to run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = QUICK if args.quick else GRID
    if args.only:
        grid = [grid[int(k)] for k in args.only.split(",")]
    header = (
        f"bench_scale: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"1 thread, nice 10 on a shared 2-core machine under load (timings noisy; ratios are "
        f"within one run); sketch d = {SKETCH_DIM}; sampled m = ceil(n/4)"
    )
    points, started = [], time.perf_counter()
    for layout, n, width, steps, every in grid:
        t0 = time.perf_counter()
        point = run_point(layout, n, width, steps, every)
        point["wall_seconds"] = round(time.perf_counter() - t0, 1)
        points.append(point)
        print(table([point]), f"\n  ({point['wall_seconds']} s)", flush=True)
        Path(f"{args.out}.json").write_text(
            json.dumps({"header": header, "points": points}, indent=1)
        )
        Path(f"{args.out}.txt").write_text(header + "\n" + table(points) + "\n")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
