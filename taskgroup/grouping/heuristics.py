"""Heuristic group selection for large n, each with an upper bound on the optimum.

Each builds a partition of the tasks into at most B served sets (the reduction of
:mod:`taskgroup.grouping.objective`), make it admissible (:func:`repair`) and improve it with
the same :func:`local_search` on the true objective:

- :func:`beam` — agglomerative beam search: from one block per task, merge the pair of blocks
  whose merge loses least (or gains most), keeping the ``width`` best partitions at each number of
  blocks; ``width=1`` is plain greedy merging. O(n · width · n² · n log n). ``select_groups``
  runs it with width 8 followed by 30 kicks of iterated local search (:func:`perturbed_search`)
  as ``beam``, and with width 1 and no kicks as ``greedy``.
- :func:`spectral` — spectral clustering (scikit-learn) of the symmetrised affinity into k = 1…B
  clusters. O(B n³).
- :func:`community` — greedy modularity communities (networkx, Clauset–Newman–Moore) of the graph
  of positive symmetrised affinity, forced down to at most B communities, at three resolutions.
- :func:`restarts` — multi-start local search: ``RESTARTS`` random assignments of the tasks to B
  blocks (seeded), each polished; the best, then 30 kicks. It knows nothing of the structure,
  which is its point: on matrices without groups, the constructive methods above all land in the
  same few basins.

Clustering needs a similarity, not the directed Z: both use S = (C + Cᵀ) / 2 where C is Z minus
each target column's mean (so a source that helps every target, such as Adam's shared momentum,
does not look similar to everything). The objective itself always uses Z.

:func:`upper_bound` gives the bound each returns: the LP bound of :mod:`taskgroup.grouping.bounds`
with exact pricing up to ``TABLE_TASKS`` = 20 tasks; beyond, greedy column generation made valid
by the size bound or a time-limited pricing search, whichever is lower.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from taskgroup.grouping.bounds import (
    LPBound,
    cover_of,
    lagrangian_bound,
    lp_bound_search,
    lp_bound_table,
    mask_members,
    subgradient_prices,
)
from taskgroup.grouping.exact import served_set_values
from taskgroup.grouping.objective import served_sets_values

TABLE_TASKS = 20
RESTARTS = 100


class ServedSets:
    """w(P) of served sets under one problem (values, partition, singleton convention)."""

    def __init__(self, values: np.ndarray, *, partition: bool, singleton_score: float | None):
        self.values = values
        self.n = len(values)
        self.partition = partition
        self.singleton_score = singleton_score
        self.scale = max(1.0, float(np.abs(values).max()) * self.n)
        self.tol = 1e-12 * self.scale
        self._cache: dict[int, float] = {}

    def rows(self, member: np.ndarray) -> np.ndarray:
        return served_sets_values(
            self.values, member, partition=self.partition, singleton_score=self.singleton_score
        )

    def of(self, mask: int) -> float:
        if mask not in self._cache:
            self._cache[mask] = float(self.rows(self.member([mask]))[0])
        return self._cache[mask]

    def member(self, masks: Iterable[int]) -> np.ndarray:
        return cover_of(list(masks), self.n).T.astype(bool)

    def total(self, blocks: Sequence[int]) -> float:
        return float(sum(self.of(b) for b in blocks))


def _labels(blocks: Sequence[int], n: int) -> np.ndarray:
    labels = np.full(n, -1)
    for b, mask in enumerate(blocks):
        labels[mask_members(mask)] = b
    return labels


def repair(sets: ServedSets, blocks: Sequence[int], budget: int) -> list[int]:
    """Make a partition admissible: merge every block that cannot be served (a singleton under
    ``singleton_score=None`` without helpers) into the block where it costs least, then merge
    the cheapest pairs until at most ``budget`` blocks remain."""
    blocks = [b for b in blocks if b]
    while len(blocks) > 1:
        values = [sets.of(b) for b in blocks]
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if not bad and len(blocks) <= budget:
            break
        best, pair = -math.inf, None
        firsts = bad if bad else range(len(blocks))
        for a in firsts:
            for b in range(len(blocks)):
                if a == b:
                    continue
                kept = values[b] if math.isfinite(values[b]) else 0.0
                lost = values[a] if math.isfinite(values[a]) else 0.0
                gain = sets.of(blocks[a] | blocks[b]) - kept - lost
                if gain > best:
                    best, pair = gain, (a, b)
        if pair is None:
            break
        a, b = pair
        merged = blocks[a] | blocks[b]
        blocks = [m for i, m in enumerate(blocks) if i not in pair] + [merged]
    return blocks


# A move of local search, (kind, x, y): "move" task x to block y (y = number of blocks: a new
# block), "swap" tasks x and y between their blocks, or "merge" block y into block x.
_Move = tuple[str, int, int]


def local_search(
    sets: ServedSets,
    blocks: Sequence[int],
    budget: int,
    max_rounds: int = 10_000,
    *,
    lazy_swaps: bool = False,
    deadline: float | None = None,
) -> list[int]:
    """Best-improvement local search on the objective: move one task to another block (or to a
    new block while fewer than ``budget``), swap two tasks of different blocks, or merge two
    blocks; until no move gains. Each round evaluates O(n² + n·B + B²) sets at once.

    ``lazy_swaps``: look for swaps (the O(n²) part) only in rounds where no single move or merge
    gains — O(n·B + B²) sets in most rounds, for large n. ``deadline``: stop at the first round
    that starts after this ``time.perf_counter()`` value (the blocks are valid at every round)."""
    n = sets.n
    blocks = [b for b in blocks if b]
    for _ in range(max_rounds):
        if deadline is not None and time.perf_counter() > deadline:
            return blocks
        member = sets.member(blocks)
        current = sets.rows(member)
        labels = _labels(blocks, n)
        best_gain, best_move = sets.tol, None
        moved = _best_task_move(sets, member, current, labels, budget)
        merged = _best_merge(sets, member, current)
        swapped: tuple[float, _Move | None] = (-math.inf, None)
        if not lazy_swaps or max(moved[0], merged[0]) <= sets.tol:
            swapped = _best_swap(sets, member, current, labels)
        for gain, move in (moved, swapped, merged):
            if gain > best_gain:
                best_gain, best_move = gain, move
        if best_move is None:
            return blocks
        blocks = _moved(blocks, best_move, labels)
    return blocks


def _best_task_move(
    sets: ServedSets, member: np.ndarray, current: np.ndarray, labels: np.ndarray, budget: int
) -> tuple[float, _Move]:
    """The best move of one task to another block (or to a new block while fewer than
    ``budget``). ``member`` [k, n] bool, ``current`` [k] their w, ``labels`` [n] their block."""
    n, k = sets.n, len(member)
    tasks = np.arange(n)
    left = member[labels].copy()
    left[tasks, tasks] = False
    w_left = sets.rows(left)
    targets = np.zeros((n, k + 1, n), dtype=bool)
    targets[:, :k] = member[None, :, :]
    targets[tasks, :, tasks] = True
    w_to = sets.rows(targets.reshape(-1, n)).reshape(n, k + 1)
    gain = w_left[:, None] + w_to - current[labels][:, None] - np.append(current, 0.0)
    gain[tasks, labels] = -np.inf
    if k >= budget:
        gain[:, k] = -np.inf
    gain[~np.isfinite(gain)] = -np.inf
    j, t = np.unravel_index(int(np.argmax(gain)), gain.shape)
    return float(gain[j, t]), ("move", int(j), int(t))


def _best_swap(
    sets: ServedSets, member: np.ndarray, current: np.ndarray, labels: np.ndarray
) -> tuple[float, _Move | None]:
    """The best exchange of two tasks of different blocks (−inf when there is none)."""
    if len(member) < 2:
        return -math.inf, None
    jj, ll = np.nonzero(labels[:, None] < labels[None, :])
    if not jj.size:
        return -math.inf, None
    a, b = labels[jj], labels[ll]
    new_a = member[a].copy()
    new_b = member[b].copy()
    rows = np.arange(len(jj))
    new_a[rows, jj], new_a[rows, ll] = False, True
    new_b[rows, ll], new_b[rows, jj] = False, True
    swap_gain = sets.rows(new_a) + sets.rows(new_b) - current[a] - current[b]
    swap_gain[~np.isfinite(swap_gain)] = -np.inf
    s = int(np.argmax(swap_gain))
    return float(swap_gain[s]), ("swap", int(jj[s]), int(ll[s]))


def _best_merge(
    sets: ServedSets, member: np.ndarray, current: np.ndarray
) -> tuple[float, _Move | None]:
    """The best merge of two blocks (−inf when there is one block)."""
    if len(member) < 2:
        return -math.inf, None
    aa, bb = np.triu_indices(len(member), 1)
    merge_gain = sets.rows(member[aa] | member[bb]) - current[aa] - current[bb]
    merge_gain[~np.isfinite(merge_gain)] = -np.inf
    m = int(np.argmax(merge_gain))
    return float(merge_gain[m]), ("merge", int(aa[m]), int(bb[m]))


def _moved(blocks: list[int], move: _Move, labels: np.ndarray) -> list[int]:
    """``blocks`` after ``move`` (``labels`` [n]: each task's block before it), empty blocks
    dropped; ``blocks`` is changed in place."""
    kind, x, y = move
    if kind == "move":
        blocks[labels[x]] &= ~(1 << x)
        if y == len(blocks):
            blocks.append(1 << x)
        else:
            blocks[y] |= 1 << x
    elif kind == "swap":
        a, b = labels[x], labels[y]
        blocks[a] = blocks[a] & ~(1 << x) | (1 << y)
        blocks[b] = blocks[b] & ~(1 << y) | (1 << x)
    else:
        blocks[x] |= blocks[y]
        blocks[y] = 0
    return [b for b in blocks if b]


def beam(sets: ServedSets, budget: int, width: int = 8, kicks: int = 0) -> list[int]:
    """Agglomerative beam search (see the module docstring), then :func:`local_search` of the
    three best admissible partitions it met, then ``kicks`` rounds of
    :func:`perturbed_search` from the best."""
    n = sets.n

    def surrogate(v: np.ndarray) -> np.ndarray:  # an unservable block counts 0 until merged
        return np.where(np.isfinite(v), v, 0.0)

    singles = [1 << j for j in range(n)]
    states: dict[tuple[int, ...], float] = {
        tuple(singles): float(surrogate(sets.rows(sets.member(singles))).sum())
    }
    finalists: dict[tuple[int, ...], float] = {}
    while states:
        for state in states:
            if len(state) <= budget:
                true = sets.total(state)
                if math.isfinite(true):
                    finalists[state] = true
        if len(next(iter(states))) == 1:
            break
        children: dict[tuple[int, ...], float] = {}
        for state, value in states.items():
            k = len(state)
            member = sets.member(state)
            own = surrogate(sets.rows(member))
            aa, bb = np.triu_indices(k, 1)
            merged = surrogate(sets.rows(member[aa] | member[bb]))
            child_values = value + merged - own[aa] - own[bb]
            for c in np.argsort(-child_values)[:width]:
                a, b = int(aa[c]), int(bb[c])
                child = tuple(
                    sorted(
                        [m for i, m in enumerate(state) if i not in (a, b)] + [state[a] | state[b]]
                    )
                )
                children[child] = float(child_values[c])
        if len(next(iter(children))) < budget and finalists:
            # below the budget a merge is only worth it when it gains
            best_final = max(finalists.values())
            children = {c: v for c, v in children.items() if v > best_final - sets.tol}
        ranked = sorted(children.items(), key=lambda item: -item[1])[:width]
        states = dict(ranked)
    top = sorted(finalists, key=lambda s: -finalists[s])[:3] or [tuple(singles)]
    results = [local_search(sets, repair(sets, list(s), budget), budget) for s in top]
    best = max(results, key=sets.total)
    return perturbed_search(sets, best, budget, kicks=kicks, seed=0) if kicks else best


def similarity(values: np.ndarray) -> np.ndarray:
    """S = (C + Cᵀ) / 2 with C = Z minus each column's off-diagonal mean; zero diagonal."""
    n = len(values)
    off = values - np.diag(np.diag(values))
    centred = off - off.sum(axis=0, keepdims=True) / max(n - 1, 1)
    np.fill_diagonal(centred, 0.0)
    sym = (centred + centred.T) / 2
    np.fill_diagonal(sym, 0.0)
    return sym


def _partition_from_labels(labels: Sequence[int]) -> list[int]:
    blocks: dict[int, int] = {}
    for j, label in enumerate(labels):
        blocks[int(label)] = blocks.get(int(label), 0) | (1 << j)
    return list(blocks.values())


def spectral(sets: ServedSets, budget: int, seed: int = 0) -> list[int]:
    """Spectral clustering of ``exp(S / std(S))`` into k = 1…min(B, n) clusters, each repaired
    and locally improved; the best."""
    candidates = spectral_starts(sets, budget, seed)
    results = [local_search(sets, repair(sets, c, budget), budget) for c in candidates]
    return max(results, key=sets.total)


def spectral_starts(
    sets: ServedSets, budget: int, seed: int = 0, sizes: Iterable[int] | None = None
) -> list[list[int]]:
    """The partitions :func:`spectral` starts from: all tasks in one block, then spectral
    clustering into k clusters for each k of ``sizes`` (default 2…min(B, n − 1))."""
    from sklearn.cluster import SpectralClustering

    n = sets.n
    sym = similarity(sets.values)
    spread = float(sym[~np.eye(n, dtype=bool)].std()) if n > 1 else 0.0
    kernel = np.exp(sym / (spread if spread > 0 else 1.0))
    candidates = [[(1 << n) - 1]]
    for k in range(2, min(budget, n - 1) + 1) if sizes is None else sizes:
        model = SpectralClustering(
            n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
        )
        with warnings.catch_warnings():  # tiny n: scikit-learn falls back to a dense solver
            warnings.filterwarnings("ignore", message="k >= N", category=RuntimeWarning)
            candidates.append(_partition_from_labels(model.fit_predict(kernel)))
    return candidates


def community(sets: ServedSets, budget: int) -> list[int]:
    """Greedy modularity communities of the positive part of S (at most B communities, at
    resolutions 0.5, 1 and 2), each repaired and locally improved; the best."""
    candidates = community_starts(sets, budget)
    results = [local_search(sets, repair(sets, c, budget), budget) for c in candidates]
    return max(results, key=sets.total)


def community_starts(
    sets: ServedSets, budget: int, resolutions: Sequence[float] = (0.5, 1.0, 2.0)
) -> list[list[int]]:
    """The partitions :func:`community` starts from: all tasks in one block, then greedy
    modularity communities at each of ``resolutions``."""
    import networkx as nx

    n = sets.n
    sym = similarity(sets.values)
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from(
        (i, j, float(sym[i, j])) for i in range(n) for j in range(i + 1, n) if sym[i, j] > 0
    )
    candidates = [[(1 << n) - 1]]
    if graph.number_of_edges():
        for resolution in resolutions:
            found = nx.community.greedy_modularity_communities(
                graph, weight="weight", resolution=resolution, best_n=min(budget, n)
            )
            labels = np.empty(n, dtype=int)
            for c, nodes in enumerate(found):
                labels[list(nodes)] = c
            candidates.append(_partition_from_labels(labels))
    return candidates


def restarts(sets: ServedSets, budget: int, starts: int = RESTARTS, seed: int = 0) -> list[int]:
    """Multi-start local search: ``starts`` uniform random labellings of the tasks with
    ``budget`` blocks (``numpy`` generator seeded with ``seed``), each repaired and improved by
    :func:`local_search`; then 30 kicks of :func:`perturbed_search` from the best. O(starts ·
    local search): about 60 ms a start at 40 tasks."""
    rng = np.random.default_rng(seed)
    best, best_value = None, -math.inf
    for _ in range(starts):
        start = _partition_from_labels(rng.integers(budget, size=sets.n))
        found = local_search(sets, repair(sets, start, budget), budget)
        value = sets.total(found)
        if value > best_value:
            best, best_value = found, value
    return perturbed_search(sets, best, budget, kicks=30, seed=seed)


def upper_bound(
    sets: ServedSets, budget: int, columns: Iterable[int] = (), time_limit: float = 5.0
) -> LPBound:
    """The LP bound (see :mod:`taskgroup.grouping.bounds`): exact pricing over all 2^n served
    sets up to ``TABLE_TASKS`` tasks; beyond, column generation with greedy pricing made valid by
    the best of the size bound, a pricing search of at most ``time_limit`` seconds, and a
    node-limited pricing search at the size bound's prices.
    ``columns``: served sets of known groupings to start from."""
    n = sets.n
    if n <= TABLE_TASKS:
        table = served_set_values(
            sets.values, partition=sets.partition, singleton_score=sets.singleton_score
        )
        return lp_bound_table(table, n, budget, initial=columns)
    pairs = [(1 << i) | (1 << j) for i in range(n) for j in range(i + 1, n)]
    return lp_bound_search(
        sets.values,
        budget,
        sets.rows,
        [*columns, *pairs],
        partition=sets.partition,
        singleton_score=sets.singleton_score,
        time_limit=time_limit,
    )


def scalable_bound(
    sets: ServedSets, budget: int, served: np.ndarray, *, deadline: float
) -> tuple[float, dict]:
    """An upper bound for any n within a deadline (a ``time.perf_counter()`` value), and what
    made it: the size relaxation's bound minimised over the prices by subgradient steps
    (:func:`~taskgroup.grouping.bounds.subgradient_prices`, from ``served`` [n], the values a
    grouping gives each task; a quarter of the time), then the Lagrangian bound at the best
    prices (:func:`~taskgroup.grouping.bounds.lagrangian_bound`: a pricing search for the rest
    of the time; exact when it completes). Both are valid whatever the prices; the lower wins.
    """
    started = time.perf_counter()
    options = {"partition": sets.partition, "singleton_score": sets.singleton_score}
    by_size, pi = subgradient_prices(
        sets.values,
        budget,
        served,
        target=float(np.sum(served)),
        deadline=started + max(0.0, deadline - started) / 4,
        **options,
    )
    left = max(0.05, deadline - time.perf_counter())
    at_prices, pricing = lagrangian_bound(
        sets.values, pi, budget, node_limit=2**62, time_limit=left, **options
    )
    facts = {
        "size_relaxation": by_size,
        "lagrangian": at_prices,
        "pricing_complete": pricing.complete,
        "pricing_nodes": pricing.nodes,
        "seconds": time.perf_counter() - started,
    }
    return min(by_size, at_prices), facts


def perturbed_search(
    sets: ServedSets,
    blocks: Sequence[int],
    budget: int,
    *,
    kicks: int,
    seed: int,
    deadline: float | None = None,
    lazy_swaps: bool = False,
) -> list[int]:
    """Iterated local search: ``kicks`` times, move three random tasks to random blocks (or a
    new block while fewer than ``budget``), repair, :func:`local_search`, and keep the result
    when it scores higher. Escapes the local optima of single moves and swaps. ``deadline``
    (a ``time.perf_counter()`` value) ends it early; ``lazy_swaps`` as in :func:`local_search`."""
    rng = np.random.default_rng(seed)
    best = list(blocks)
    best_value = sets.total(best)
    n = sets.n
    for _ in range(kicks):
        if deadline is not None and time.perf_counter() > deadline:
            break
        trial = list(best)
        for j in rng.choice(n, size=min(3, n), replace=False):
            trial = [b & ~(1 << int(j)) for b in trial]
            trial = [b for b in trial if b]
            target = int(rng.integers(len(trial) + (len(trial) < budget)))
            if target == len(trial):
                trial.append(1 << int(j))
            else:
                trial[target] |= 1 << int(j)
        trial = local_search(
            sets, repair(sets, trial, budget), budget, lazy_swaps=lazy_swaps, deadline=deadline
        )
        value = sets.total(trial)
        if value > best_value + sets.tol:
            best, best_value = trial, value
    return best
