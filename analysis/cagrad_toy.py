"""The CAGrad two-objective toy problem, run with every aggregator of taskgroup.

Liu et al. ("Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021, ``toy.py``
of their repository) built two losses on x ∈ R² whose gradients conflict. Their Pareto set is the
curve x₂ = x₂*(x₁), −7 ≤ x₁ ≤ 7, with x₂* between −8.4345 (at x₁ = ±7) and −8.3551 (at x₁ = 0,
the minimum of the average loss; the papers draw the set as the segment x₂ = −8.3552): here it is
computed exactly (for x₁ = 14λ − 7 the minimiser over x₂ of λ L₁ + (1 − λ) L₂). Navon et
al. (Nash-MTL, ICML 2022) reuse it from five starting points, (−8.5, 7.5), (0, 0), (9, 9),
(−7.5, −0.5), (9, −1), optionally with the first loss scaled by 0.1 (``--scale 0.1``) to test
invariance to the losses' scales. Each run takes ``--steps`` Adam steps (lr 1e-3, the papers'
optimiser; 35 000 steps as in Nash-MTL's toy) on x with the update of one aggregator from the
registry, with its default options except CAGrad's c = 0.5 (the CAGrad toy's) and FAMO's
γ = 0 with lower bounds −21 (FAMO's toy settings); the loss weightings' own parameters (``uw``)
take Adam steps with lr 0.025 (Nash-MTL's toy). ``transference`` scores its candidates
(``mean``, ``pcgrad``) by the losses after the Adam step each would take.

One run from a published start can be a chaotic outcome (PCGrad's end point moves from mean loss
0.34 to −10.52 when its start moves by 1e-9), so ``--perturb P`` also runs each method from P
starts drawn around each published start (Gaussian, standard deviation ``--sigma`` per
coordinate, seeded by ``--seed``) and reports, per method and published start, the spread over
those P runs: how many end on the Pareto set, and the median and 5–95% range of the end point's
mean loss. The figures always show the runs from the published starts themselves.

Outputs: ``docs/img/cagrad_toy_landscape.png`` (trajectories on the average loss, one panel per
aggregator), ``docs/img/cagrad_toy_pareto.png`` (the same runs in loss space with the Pareto front)
and tables of where each run ends (also ``analysis/results/cagrad_toy.json``; with ``--perturb``,
``cagrad_toy_spread.txt``/``.json``).

Run from the repository root (about 10 minutes on one idle core without ``--perturb``, and
``P + 1`` times as long with it, divided by ``--workers`` processes; ``--steps 5000`` for a quick
look)::

    OMP_NUM_THREADS=1 python analysis/cagrad_toy.py [--steps 35000] [--scale 1.0] \
        [--perturb 20 --sigma 0.1 --seed 0] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from taskgroup import aggregators
from taskgroup.aggregators import TransferenceContext

ROOT = Path(__file__).resolve().parents[1]
STARTS = torch.tensor(
    [[-8.5, 7.5], [0.0, 0.0], [9.0, 9.0], [-7.5, -0.5], [9.0, -1.0]], dtype=torch.float64
)
PARETO_X2 = -8.3552  # the set at x1 = 0 (the papers' drawing)
ON_SET = 0.02  # an end point this close to the Pareto set is on it
LOWER = 5e-6
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8
OPTIONS = {"cagrad": {"c": 0.5}, "famo": {"gamma": 0.0}}
METHOD_LR = 0.025


def toy_losses(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The two losses ``[N, 2]`` at points ``x: [N, 2]`` (CAGrad's toy; loss 1 times scale)."""
    x1, x2 = x[:, 0], x[:, 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([(f1 * c1 + f1_sq * c2) * scale, f2 * c1 + f2_sq * c2], dim=1)


def losses_and_gradients(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses ``[N, 2]`` and per-point task gradients ``[N, 2 tasks, 2 coords]``."""
    x = x.detach().requires_grad_(True)
    losses = toy_losses(x, scale)
    rows = [torch.autograd.grad(losses[:, i].sum(), x, retain_graph=True)[0] for i in range(2)]
    return losses.detach(), torch.stack(rows, dim=1)


class Adam:
    """Adam on a batch of independent points (torch.optim.Adam's update, element-wise)."""

    def __init__(self, shape, lr: float):
        self.lr = lr
        self.m = torch.zeros(shape, dtype=torch.float64)
        self.v = torch.zeros(shape, dtype=torch.float64)
        self.t = 0

    def step_for(self, gradient: torch.Tensor, t: int, m: torch.Tensor, v: torch.Tensor):
        m = BETAS[0] * m + (1 - BETAS[0]) * gradient
        v = BETAS[1] * v + (1 - BETAS[1]) * gradient**2
        m_hat = m / (1 - BETAS[0] ** t)
        v_hat = v / (1 - BETAS[1] ** t)
        return -self.lr * m_hat / (v_hat.sqrt() + EPS), m, v

    def step(self, gradient: torch.Tensor) -> torch.Tensor:
        self.t += 1
        update, self.m, self.v = self.step_for(gradient, self.t, self.m, self.v)
        return update

    def would_step(self, gradients: torch.Tensor, i: int) -> torch.Tensor:
        """The updates ``[m, 2]`` point i would take for each candidate gradient row."""
        update, _, _ = self.step_for(gradients, self.t + 1, self.m[i], self.v[i])
        return update


def perturbed_starts(perturb: int, sigma: float, seed: int) -> torch.Tensor:
    """The published starts ``[5, 2]`` followed by ``perturb`` starts around each
    (``[5 + 5·perturb, 2]``: row 5 + s·perturb + r is the r-th perturbation of start s), drawn as
    start + N(0, sigma²) per coordinate from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, size=(len(STARTS), perturb, 2))
    around = STARTS.numpy()[:, None, :] + noise
    return torch.cat([STARTS, torch.as_tensor(around.reshape(-1, 2))])


def run(
    name: str, steps: int, scale: float, starts: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One aggregator from every row of ``starts`` (default: the five published ones), each
    point with its own method instance: the trajectories ``[steps + 1, 5, 2]`` of the first five
    rows (the published starts) and the end points ``[len(starts), 2]`` of all."""
    starts = STARTS if starts is None else starts
    n = len(starts)
    options = dict(OPTIONS.get(name, {}))
    if name == "famo":
        options["min_losses"] = [-21.0 * scale, -21.0]
    methods = [aggregators.get(name, **options) for _ in range(n)]
    x = starts.clone()
    adam = Adam(x.shape, LR)
    loss_weighting = methods[0].kind == "loss"
    if loss_weighting:
        for method in methods:
            method.prepare(2, dtype=torch.float64)
        own = [p for method in methods for p in method.parameters()]
        own_optimizer = torch.optim.Adam(own, lr=METHOD_LR) if own else None
    shown = len(STARTS)
    trajectory = np.empty((steps + 1, shown, 2))
    trajectory[0] = x[:shown].numpy()
    for t in range(steps):
        if loss_weighting:
            xg = x.detach().requires_grad_(True)
            losses = toy_losses(xg, scale)
            if own_optimizer is not None:
                own_optimizer.zero_grad()
            objective = sum(method(losses[i]) for i, method in enumerate(methods))
            objective.backward()
            direction = xg.grad
            if methods[0].max_norm > 0:  # the reference clips the shared parameters' gradient
                norms = direction.norm(dim=1, keepdim=True)
                direction = direction * torch.clamp(methods[0].max_norm / norms, max=1.0)
            if own_optimizer is not None:
                own_optimizer.step()
        else:
            losses, G = losses_and_gradients(x, scale)
            rows = []
            for i, method in enumerate(methods):
                if name == "transference":
                    context = TransferenceContext(
                        evaluate=lambda D, i=i, x=x: toy_losses(
                            x[i] + adam.would_step(D, i), scale
                        ),
                        base_losses=losses[i],
                    )
                    rows.append(method.aggregate(G[i], context=context).direction)
                else:
                    rows.append(method(G[i]))
            direction = torch.stack(rows)
        x = x + adam.step(direction.detach())
        trajectory[t + 1] = x[:shown].numpy()
    return trajectory, x.numpy()


def distance_to_set(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Euclidean distance ``[N]`` of each point ``[N, 2]`` to the sampled Pareto set."""
    gaps = points[:, None, :] - curve[None, :, :]
    return np.hypot(gaps[..., 0], gaps[..., 1]).min(axis=1)


def spread(ends: np.ndarray, perturb: int, scale: float, curve: np.ndarray) -> list[dict]:
    """Per published start, the runs from its ``perturb`` perturbed starts (rows
    ``5 + s·perturb ...`` of ``ends``): how many end on the Pareto set (within ``ON_SET``), the
    median and the 5th and 95th percentiles (numpy's linear interpolation) of the end point's
    mean loss, and the median end point."""
    rows = []
    for s in range(len(STARTS)):
        block = ends[len(STARTS) + s * perturb : len(STARTS) + (s + 1) * perturb]
        mean_loss = toy_losses(torch.as_tensor(block), scale).mean(dim=1).numpy()
        low, median, high = np.percentile(mean_loss, [5, 50, 95])
        rows.append(
            {
                "start": STARTS[s].tolist(),
                "runs": perturb,
                "on_set": int((distance_to_set(block, curve) < ON_SET).sum()),
                "mean_loss_median": round(float(median), 3),
                "mean_loss_p5": round(float(low), 3),
                "mean_loss_p95": round(float(high), 3),
                "end_median": [round(float(v), 3) for v in np.median(block, axis=0)],
                "ends": np.round(block, 4).tolist(),
            }
        )
    return rows


def pareto_set(points: int = 1401) -> np.ndarray:
    """The Pareto set ``[points, 2]`` (the same for any scale of the losses): for x1 = 14λ − 7,
    x2 minimises λ L1 + (1 − λ) L2, a one-dimensional bounded minimisation."""
    from scipy.optimize import minimize_scalar

    out = np.empty((points, 2))
    for i, x1 in enumerate(np.linspace(-7.0, 7.0, points)):
        lam = (x1 + 7.0) / 14.0

        def weighted(x2: float, x1: float = x1, lam: float = lam) -> float:
            losses = toy_losses(torch.tensor([[x1, x2]], dtype=torch.float64))[0]
            return float(lam * losses[0] + (1 - lam) * losses[1])

        best = minimize_scalar(
            weighted, bounds=(-12.0, -5.0), method="bounded", options={"xatol": 1e-10}
        )
        out[i] = (x1, best.x)
    return out


def pareto_front(curve: np.ndarray, scale: float) -> np.ndarray:
    return toy_losses(torch.as_tensor(curve), scale).numpy()


def end_table(trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray) -> list[dict]:
    rows = []
    for name, traj in trajectories.items():
        end = torch.as_tensor(traj[-1])
        losses = toy_losses(end, scale).numpy()
        for i in range(len(STARTS)):
            x = traj[-1, i]
            distance = float(np.min(np.hypot(curve[:, 0] - x[0], curve[:, 1] - x[1])))
            rows.append(
                {
                    "aggregator": name,
                    "start": STARTS[i].tolist(),
                    "end": [round(float(x[0]), 3), round(float(x[1]), 3)],
                    "losses": [round(float(v), 3) for v in losses[i]],
                    "mean_loss": round(float(losses[i].mean()), 3),
                    "distance_to_pareto_set": round(distance, 4),
                }
            )
    return rows


def plot_landscape(
    trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray, path: Path
) -> None:
    n = 300
    grid = np.linspace(-10, 10, n)
    X, Y = np.meshgrid(grid, grid)
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1))
    Z = toy_losses(points, scale).mean(dim=1).numpy().reshape(n, n)
    cols = 5
    rows = -(-len(trajectories) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(STARTS)))
    for ax, (name, traj) in zip(axes.flat, trajectories.items(), strict=False):
        ax.contour(X, Y, Z, levels=20, cmap="viridis", linewidths=0.7)
        ax.plot(curve[:, 0], curve[:, 1], color="0.5", linewidth=4, zorder=1)
        ax.plot(0, PARETO_X2, marker="*", color="k", markersize=9, zorder=5)
        for i in range(len(STARTS)):
            ax.plot(traj[:, i, 0], traj[:, i, 1], color=colors[i], linewidth=1.4, zorder=3)
            ax.plot(*traj[0, i], "o", color="k", markersize=4, zorder=4)
            ax.plot(*traj[-1, i], "x", color=colors[i], markersize=7, mew=2, zorder=6)
        ax.set_title(name)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(trajectories) :]:
        ax.axis("off")
    fig.suptitle(
        f"CAGrad toy{'' if scale == 1 else f' (loss 1 × {scale:g})'}: trajectories on the average"
        f" loss (grey: Pareto set, ★: its best average, ●: starts, ×: ends)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pareto(
    trajectories: dict[str, np.ndarray], scale: float, curve: np.ndarray, path: Path
) -> None:
    front = pareto_front(curve, scale)
    cols = 5
    rows = -(-len(trajectories) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(STARTS)))
    for ax, (name, traj) in zip(axes.flat, trajectories.items(), strict=False):
        ax.plot(front[:, 0], front[:, 1], color="0.5", linewidth=4, zorder=1)
        for i in range(len(STARTS)):
            path_losses = toy_losses(torch.as_tensor(traj[::50, i]), scale).numpy()
            ax.plot(path_losses[:, 0], path_losses[:, 1], color=colors[i], linewidth=1.2)
            ax.plot(*path_losses[0], "o", color="k", markersize=4)
            end = toy_losses(torch.as_tensor(traj[-1:, i]), scale).numpy()[0]
            ax.plot(*end, "x", color=colors[i], markersize=7, mew=2, zorder=6)
        ax.set_title(name)
        ax.set_xlabel("loss 1", fontsize=8)
        ax.set_ylabel("loss 2", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(trajectories) :]:
        ax.axis("off")
    fig.suptitle(
        f"CAGrad toy{'' if scale == 1 else f' (loss 1 × {scale:g})'} in loss space "
        f"(grey: Pareto front)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _run_one(job: tuple[str, int, float, torch.Tensor]) -> tuple[str, np.ndarray, np.ndarray]:
    name, steps, scale, starts = job
    torch.set_num_threads(1)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trajectory, ends = run(name, steps, scale, starts)
    print(f"  {name:<13} {time.perf_counter() - started:6.1f} s", file=sys.stderr, flush=True)
    return name, trajectory, ends


def spread_table(spreads: dict[str, list[dict]], perturb: int, sigma: float) -> str:
    """The Markdown table of :func:`spread` rows: per start, the median mean loss [5%, 95%] and
    how many of the ``perturb`` runs end on the Pareto set."""
    starts = [f"({s[0]:g}, {s[1]:g})" for s in STARTS.tolist()]
    lines = [
        f"| aggregator | {' | '.join(starts)} | on the set |",
        "|---|" + "---|" * (len(starts) + 1),
    ]
    for name, rows in spreads.items():
        cells = [
            f"{r['mean_loss_median']:.2f} [{r['mean_loss_p5']:.2f}, {r['mean_loss_p95']:.2f}] "
            f"{r['on_set']}/{r['runs']}"
            for r in rows
        ]
        on = sum(r["on_set"] for r in rows)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {on}/{perturb * len(rows)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=35000, help="Adam steps per run")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier of loss 1")
    parser.add_argument("--only", default=None, help="comma-separated aggregators (default all)")
    parser.add_argument("--perturb", type=int, default=0, help="perturbed starts per start")
    parser.add_argument("--sigma", type=float, default=0.1, help="their standard deviation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument("--workers", type=int, default=1, help="processes (one per method)")
    parser.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--json", type=Path, default=ROOT / "analysis" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.only.split(",") if args.only else aggregators.names()
    suffix = "" if args.scale == 1 else f"_scale{args.scale:g}"
    starts = perturbed_starts(args.perturb, args.sigma, args.seed)
    jobs = [(name, args.steps, args.scale, starts) for name in names]
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            done = {name: (traj, ends) for name, traj, ends in pool.imap(_run_one, jobs)}
    else:
        done = {name: (traj, ends) for name, traj, ends in map(_run_one, jobs)}
    trajectories = {name: done[name][0] for name in names}
    curve = pareto_set()
    table = end_table(trajectories, args.scale, curve)
    args.img.mkdir(parents=True, exist_ok=True)
    plot_landscape(trajectories, args.scale, curve, args.img / f"cagrad_toy_landscape{suffix}.png")
    plot_pareto(trajectories, args.scale, curve, args.img / f"cagrad_toy_pareto{suffix}.png")
    args.json.mkdir(parents=True, exist_ok=True)
    (args.json / f"cagrad_toy{suffix}.json").write_text(
        json.dumps({"steps": args.steps, "scale": args.scale, "runs": table}, indent=1)
    )
    print_end_table(trajectories, table, args)
    if args.perturb:
        spreads = {name: spread(done[name][1], args.perturb, args.scale, curve) for name in names}
        config = {"steps": args.steps, "scale": args.scale, "perturb": args.perturb}
        config |= {"sigma": args.sigma, "seed": args.seed, "on_set_within": ON_SET}
        (args.json / f"cagrad_toy_spread{suffix}.json").write_text(
            json.dumps(config | {"spread": spreads}, indent=1)
        )
        text = (
            f"CAGrad toy, scale {args.scale:g}, {args.steps} Adam steps (lr 1e-3), from "
            f"{args.perturb} starts around each published start (N(0, {args.sigma:g}²) per "
            f"coordinate, seed {args.seed}): median mean loss of the end points [5%, 95%], and "
            f"how many end on the Pareto set (within {ON_SET})\n\n"
            + spread_table(spreads, args.perturb, args.sigma)
        )
        (args.json / f"cagrad_toy_spread{suffix}.txt").write_text(text + "\n")
        print("\n" + text)


def print_end_table(trajectories: dict[str, np.ndarray], table: list[dict], args) -> None:
    starts = [f"({s[0]:g}, {s[1]:g})" for s in STARTS.tolist()]
    print(
        f"\nCAGrad toy, scale {args.scale:g}, {args.steps} Adam steps (lr 1e-3): end point x of "
        f"each start; * = on the Pareto set (within {ON_SET})\n"
    )
    print("| aggregator | " + " | ".join(starts) + " | on the set | mean loss |")
    print("|---|" + "---|" * (len(starts) + 2))
    for name in trajectories:
        rows = [r for r in table if r["aggregator"] == name]
        marks = ["*" if r["distance_to_pareto_set"] < ON_SET else "" for r in rows]
        cells = [
            f"({r['end'][0]:.2f}, {r['end'][1]:.2f}){m}" for r, m in zip(rows, marks, strict=True)
        ]
        on = sum(r["distance_to_pareto_set"] < ON_SET for r in rows)
        mean = np.mean([r["mean_loss"] for r in rows])
        print(f"| {name} | " + " | ".join(cells) + f" | {on}/5 | {mean:.2f} |")


if __name__ == "__main__":
    main()
