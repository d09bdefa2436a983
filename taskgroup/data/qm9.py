"""``qm9``: eleven molecular properties of QM9 as regression tasks, as in Nash-MTL.

The data is torch_geometric's :class:`~torch_geometric.datasets.QM9` (130,831 molecules), read
from a local ``data_root`` and never downloaded. torch_geometric loads ``processed/data_v3.pt``
when it is there; otherwise it builds that file from ``raw/qm9_v3.pt`` (its pre-processed copy,
used when rdkit is not installed) or from ``raw/gdb9.sdf``, ``raw/gdb9.sdf.csv`` and
``raw/uncharacterized.txt`` (when rdkit is installed).

Everything below follows Nash-MTL (Navon et al., ICML 2022), AvivNavon/nash-mtl,
``experiments/quantum_chemistry`` (itself PyG's ``examples/qm9_nn_conv.py``):

- targets: PyG columns ``[0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11]`` (:data:`TARGETS`; the HOMO-LUMO
  gap, column 4, is left out, and U0, U, H, G are the atomization energies of columns 12-15);
- split: one random permutation of the molecules; its first ``test`` molecules are the test
  split, the next ``val`` the validation split, the rest (or the next ``train``) the training
  split. The reference draws the permutation from torch's global RNG (seed 42, after building its
  model); here it comes from a ``torch.Generator`` seeded with ``seed``;
- normalisation: each target is standardised with the training split's mean and (unbiased)
  standard deviation; losses are MSE on standardised targets and the metric ``mae`` is reported
  in the original units (PyG's: eV for energies, where Nash-MTL's tables show meV);
- graph: every molecule is a complete directed graph without self-loops; an edge carries the
  one-hot bond type (4, zero for non-bonded pairs) and the interatomic distance;
- model: :class:`MessagePassingTrunk` then one linear head per target.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taskgroup.data.benchmark import Batch, Benchmark, StreamingSplit, TrainingDefaults
from taskgroup.data.heads import make_heads
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import Task, TaskSet

SPLITS = ("train", "val", "test")
# (task name, column of torch_geometric's QM9.y, unit of that column), in Nash-MTL's order.
TARGETS = (
    ("mu", 0, "D"),
    ("alpha", 1, "a0^3"),
    ("homo", 2, "eV"),
    ("lumo", 3, "eV"),
    ("r2", 5, "a0^2"),
    ("zpve", 6, "eV"),
    ("U0", 12, "eV"),
    ("U", 13, "eV"),
    ("H", 14, "eV"),
    ("G", 15, "eV"),
    ("cv", 11, "cal/(mol K)"),
)
TASK_NAMES = tuple(name for name, _, _ in TARGETS)
# (train, val, test); train None = every molecule not in val or test (110,831 of 130,831).
DEFAULT_SPLIT_SIZES = (None, 10_000, 10_000)
NODE_FEATURES = 11
EDGE_FEATURES = 5
PROCESSED_FILE = "processed/data_v3.pt"
RAW_FILES_WITHOUT_RDKIT = ("raw/qm9_v3.pt",)
RAW_FILES_WITH_RDKIT = ("raw/gdb9.sdf", "raw/gdb9.sdf.csv", "raw/uncharacterized.txt")


def _torch_geometric():
    try:
        import torch_geometric
    except ImportError:
        raise ImportError(
            "the qm9 benchmark needs torch_geometric: pip install taskgroup[qm9]"
        ) from None
    return torch_geometric


def _has_rdkit() -> bool:
    # torch_geometric's QM9 reads other raw files when rdkit can be imported
    return importlib.util.find_spec("rdkit") is not None


def expected_files(root: str | Path) -> str:
    """Which files torch_geometric's ``QM9(root)`` needs under ``root``, in words."""
    root = Path(root)
    here = "installed here" if _has_rdkit() else "not installed here"
    without = ", ".join(str(root / f) for f in RAW_FILES_WITHOUT_RDKIT)
    with_rdkit = ", ".join(str(root / f) for f in RAW_FILES_WITH_RDKIT)
    return (
        f"{root / PROCESSED_FILE} (torch_geometric's processed QM9), or the raw files it is "
        f"built from: {without} when rdkit is not installed, {with_rdkit} when it is "
        f"(rdkit is {here})"
    )


def _missing_data(root: Path) -> str:
    return (
        f"no QM9 data under {root}: expected {expected_files(root)}. This loader never "
        f"downloads: fetch the files once with torch_geometric.datasets.QM9(root) on a machine "
        f"with internet access"
    )


def _read_qm9(root: Path):
    """torch_geometric's ``QM9(root)``; ``FileNotFoundError`` instead of a download."""
    _torch_geometric()
    from torch_geometric.datasets import QM9

    class LocalQM9(QM9):
        # QM9 downloads whenever its raw files are missing, even with the processed file there
        def download(self) -> None:
            if not (Path(self.root) / PROCESSED_FILE).is_file():
                raise FileNotFoundError(_missing_data(Path(self.root)))

    raw = RAW_FILES_WITH_RDKIT if _has_rdkit() else RAW_FILES_WITHOUT_RDKIT
    present = (root / PROCESSED_FILE).is_file() or all((root / f).is_file() for f in raw)
    if not present:
        raise FileNotFoundError(_missing_data(root))
    return LocalQM9(str(root))


@dataclass(frozen=True)
class Molecules:
    """All molecules of QM9, collated: atoms of molecule ``m`` are rows
    ``atom_ptr[m]:atom_ptr[m + 1]`` of ``x [A, 11]`` and ``pos [A, 3]``; its bonds are columns
    ``bond_ptr[m]:bond_ptr[m + 1]`` of ``bond_index [2, E]`` (atom numbers local to the
    molecule, both directions) with one-hot bond types ``bond_attr [E, 4]``; ``y [M, 19]`` are
    PyG's 19 targets."""

    x: torch.Tensor
    pos: torch.Tensor
    atom_ptr: torch.Tensor
    bond_index: torch.Tensor
    bond_attr: torch.Tensor
    bond_ptr: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.atom_ptr) - 1

    @classmethod
    def from_dataset(cls, dataset) -> Molecules:
        """From a torch_geometric ``InMemoryDataset`` of QM9 (its collated storage)."""
        data, slices = dataset._data, dataset.slices
        return cls(
            x=data.x.float(),
            pos=data.pos.float(),
            atom_ptr=slices["x"].long(),
            bond_index=data.edge_index.long(),
            bond_attr=data.edge_attr.float(),
            bond_ptr=slices["edge_index"].long(),
            y=data.y.float(),
        )

    def graph_batch(self, ids: torch.Tensor):
        """The molecules ``ids [B]`` as one torch_geometric ``Batch`` of complete graphs:
        ``x [N, 11]``, ``edge_index [2, E]`` (every ordered pair of distinct atoms of a molecule,
        source row first, sources in order), ``edge_attr [E, 5]`` (one-hot bond type, zero when
        not bonded, then the distance), ``batch [N]`` and ``ptr [B + 1]``."""
        from torch_geometric.data import Batch as GraphBatch

        atoms = self.atom_ptr[ids + 1] - self.atom_ptr[ids]  # [B]
        atom_rows = _ranges(self.atom_ptr[ids], atoms)
        offsets = torch.cumsum(atoms, 0) - atoms  # first node of each graph in the batch
        graph = torch.repeat_interleave(torch.arange(len(ids)), atoms)  # [N]
        partners = atoms[graph]  # each node is paired with every node of its graph
        pair_start = torch.cumsum(partners, 0) - partners
        source = torch.repeat_interleave(torch.arange(len(graph)), partners)
        target = _ranges(offsets[graph], partners)
        bonds = self.bond_ptr[ids + 1] - self.bond_ptr[ids]
        bond_cols = _ranges(self.bond_ptr[ids], bonds)
        bond_graph = torch.repeat_interleave(torch.arange(len(ids)), bonds)
        local = self.bond_index[:, bond_cols]
        bond_source = local[0] + offsets[bond_graph]
        bond_type = torch.zeros(len(source), self.bond_attr.shape[1])
        bond_type[pair_start[bond_source] + local[1]] = self.bond_attr[bond_cols]
        keep = source != target
        source, target, bond_type = source[keep], target[keep], bond_type[keep]
        pos = self.pos[atom_rows]
        distance = (pos[target] - pos[source]).norm(dim=-1, keepdim=True)
        return GraphBatch(
            x=self.x[atom_rows],
            edge_index=torch.stack([source, target]),
            edge_attr=torch.cat([bond_type, distance], dim=1),
            batch=graph,
            ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(atoms, 0)]),
        )


def _ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenated ``arange(starts[k], starts[k] + lengths[k])`` over k."""
    first = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(first, lengths)
    return torch.repeat_interleave(starts, lengths) + within


def _read_rows(
    molecules: Molecules,
    ids: torch.Tensor,
    targets: torch.Tensor,
    rows: np.ndarray,
    names: tuple[str, ...],
) -> Batch:
    """Rows ``rows`` of a split with molecules ``ids [n]`` and standardised targets
    ``targets [n, 11]`` (columns in :data:`TASK_NAMES` order)."""
    index = torch.from_numpy(rows)
    y = targets[index]
    return molecules.graph_batch(ids[index]), {name: y[:, TASK_NAMES.index(name)] for name in names}


def draw_split(
    n: int, split_sizes: tuple[int | None, int, int], seed: int
) -> dict[str, torch.Tensor]:
    """Molecule ids (sorted) of each split: a permutation of ``range(n)`` drawn from ``seed``;
    its first ``test`` ids are the test split, the next ``val`` the validation split and the next
    ``train`` (all the rest when ``train`` is None) the training split."""
    train, val, test = split_sizes
    needed = val + test + (1 if train is None else train)
    if needed > n:
        want = f"{train} + {val} + {test}" if train is not None else f"at least 1 + {val} + {test}"
        raise ValueError(
            f"split_sizes {split_sizes} need {want} = {needed} molecules, but the dataset has "
            f"only {n}; pass smaller split_sizes=(train, val, test)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    end = n if train is None else val + test + train
    parts = {
        "test": order[:test],
        "val": order[test : test + val],
        "train": order[test + val : end],
    }
    return {split: torch.sort(parts[split]).values for split in SPLITS}


@dataclass(frozen=True)
class ScaledMAE:
    """Mean absolute error in the original units of a standardised target:
    ``scale · mean |prediction - target|`` over ``[N]`` (``scale`` = the training std)."""

    scale: float

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> float:
        return self.scale * float((prediction.detach() - target).abs().mean())


def make_qm9_task(name: str, std: float) -> Task:
    """A regression task: MSE on the standardised target, MAE (lower is better) in the original
    units of a target whose training standard deviation is ``std``."""
    return Task(
        name=name,
        loss=F.mse_loss,
        metrics={"mae": ScaledMAE(std)},
        higher_is_better={"mae": False},
        kind="regression",
    )


class EdgeConditionedConv(nn.Module):
    """NNConv (Gilmer et al. 2017) with mean aggregation, in torch_geometric's parametrisation:
    ``out_i = x_i R + b + mean over edges j→i of x_j W(e_ji)``, ``W(e)`` ``[width, width]`` from
    the edge network. :meth:`edge_weights` is separate so that the three message-passing rounds
    of :class:`MessagePassingTrunk` compute ``W`` once (torch_geometric's layer recomputes it)."""

    def __init__(self, width: int, edge_features: int = EDGE_FEATURES, hidden: int = 128):
        super().__init__()
        self.width = width
        self.edge_net = nn.Sequential(
            nn.Linear(edge_features, hidden), nn.ReLU(), nn.Linear(hidden, width * width)
        )
        self.root = nn.Linear(width, width, bias=False)
        self.bias = nn.Parameter(torch.zeros(width))

    def edge_weights(self, edge_attr: torch.Tensor) -> torch.Tensor:
        """``[E, width, width]`` from ``edge_attr [E, edge_features]``."""
        return self.edge_net(edge_attr).view(-1, self.width, self.width)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """``x [N, width]``, ``edge_index [2, E]`` (source, target), ``weights [E, width, width]``
        -> ``[N, width]``."""
        source, target = edge_index
        messages = torch.bmm(x[source].unsqueeze(1), weights).squeeze(1)
        summed = torch.zeros_like(x).index_add(0, target, messages)
        count = torch.bincount(target, minlength=len(x)).clamp(min=1).unsqueeze(1)
        return summed / count + self.root(x) + self.bias


class GatedStep(nn.Module):
    """The parameters of a recurrent cell with ``gates`` gates, named, shaped and initialised as
    ``torch.nn.GRUCell`` (3 gates) and ``torch.nn.LSTMCell`` (4) define them."""

    def __init__(self, size: int, hidden: int, gates: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden, size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class GRUStep(GatedStep):
    """One step of a GRU (``torch.nn.GRUCell``'s equations, parameters and initialisation),
    written out because ``torch.func.vmap`` has no batching rule for ``gru_cell``."""

    def __init__(self, size: int, hidden: int):
        super().__init__(size, hidden, gates=3)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``x [N, size]``, ``h [N, hidden]`` -> the new ``h [N, hidden]``."""
        i_r, i_z, i_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset * h_n)
        return (1 - update) * candidate + update * h


class LSTMStep(GatedStep):
    """One step of an LSTM (``torch.nn.LSTMCell``'s equations, parameters and initialisation),
    written out because ``torch.func.vmap`` has no batching rule for ``lstm_cell``."""

    def __init__(self, size: int, hidden: int):
        super().__init__(size, hidden, gates=4)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, size]``, ``state = (h, c)`` each ``[N, hidden]`` -> the new ``(h, c)``."""
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias_ih)
        i, f, g, o = (gates + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class Set2Set(nn.Module):
    """Set2Set readout (Vinyals et al. 2016) as torch_geometric's ``Set2Set``: ``steps`` rounds of
    an LSTM query ``q``, attention ``softmax_i(x_i · q)`` within each graph and the attended sum
    ``r``; returns ``[q, r]`` ``[G, 2 · width]`` for node features ``x [N, width]``."""

    def __init__(self, width: int, steps: int = 3):
        super().__init__()
        self.width = width
        self.steps = steps
        self.lstm = LSTMStep(2 * width, width)

    def forward(self, x: torch.Tensor, graph: torch.Tensor, graphs: int) -> torch.Tensor:
        h = c = x.new_zeros(graphs, self.width)
        q_star = x.new_zeros(graphs, 2 * self.width)
        for _ in range(self.steps):
            h, c = self.lstm(q_star, (h, c))
            score = (x * h[graph]).sum(dim=1)
            # the per-graph max only keeps exp() in range; the softmax does not depend on it
            top = score.new_zeros(graphs).scatter_reduce(
                0, graph, score.detach(), "amax", include_self=False
            )
            weight = torch.exp(score - top[graph])
            total = weight.new_zeros(graphs).index_add(0, graph, weight)
            attention = weight / total[graph]
            readout = x.new_zeros(graphs, self.width).index_add(0, graph, attention[:, None] * x)
            q_star = torch.cat([h, readout], dim=1)
        return q_star


class MessagePassingTrunk(nn.Module):
    """The MPNN of PyG's QM9 example as Nash-MTL uses it (``width`` 64): ``h = relu(Linear(x))``;
    three rounds of ``m = relu(NNConv(h))``, ``h = GRU(m, h)``; Set2Set (3 steps); then
    ``relu(Linear(2 · width, width))``. Maps a torch_geometric ``Batch`` of ``G`` complete graphs
    (see :meth:`Molecules.graph_batch`) to features ``[G, width]``."""

    def __init__(self, width: int = 64, rounds: int = 3):
        super().__init__()
        self.rounds = rounds
        self.embed = nn.Linear(NODE_FEATURES, width)
        self.conv = EdgeConditionedConv(width)
        self.gru = GRUStep(width, width)
        self.readout = Set2Set(width, steps=3)
        self.project = nn.Linear(2 * width, width)

    def forward(self, batch) -> torch.Tensor:
        h = F.relu(self.embed(batch.x))
        weights = self.conv.edge_weights(batch.edge_attr)
        for _ in range(self.rounds):
            h = self.gru(F.relu(self.conv(h, batch.edge_index, weights)), h)
        return F.relu(self.project(self.readout(h, batch.batch, batch.num_graphs)))


def build_model(tasks: TaskSet, *, width: int = 64) -> MultiTaskModel:
    """A fresh :class:`MessagePassingTrunk` of ``width`` with one linear head ``[G]`` per task."""
    return MultiTaskModel(MessagePassingTrunk(width), make_heads(tasks, width))


def load(
    *,
    data_root: str | Path,
    seed: int = 0,
    split_sizes: tuple[int | None, int, int] = DEFAULT_SPLIT_SIZES,
    width: int = 64,
) -> Benchmark:
    """The ``qm9`` benchmark: the 11 targets of :data:`TARGETS` on torch_geometric's QM9.

    Args:
        data_root: the folder torch_geometric's ``QM9(root)`` reads (see :func:`expected_files`);
            nothing is downloaded.
        seed: fixes the random split.
        split_sizes: molecules in (train, val, test); ``train=None`` takes every molecule not in
            val or test (Nash-MTL: 110,831 / 10,000 / 10,000).
        width: message-passing width (Nash-MTL: 64).

    Raises ``FileNotFoundError`` naming the expected files when they are missing, ``ImportError``
    when torch_geometric is not installed and ``ValueError`` when the dataset is smaller than the
    split.
    """
    split_sizes = tuple(split_sizes)
    if len(split_sizes) != 3 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1
        for n in (s for s in split_sizes if s is not None)
    ):
        raise ValueError(
            f"split_sizes must be (train, val, test) positive counts (train may be None), "
            f"got {split_sizes!r}"
        )
    if split_sizes[1] is None or split_sizes[2] is None:
        raise ValueError(f"split_sizes: only train may be None, got {split_sizes!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    root = Path(data_root).expanduser()
    dataset = _read_qm9(root)
    ids = draw_split(len(dataset), split_sizes, seed)
    molecules = Molecules.from_dataset(dataset)
    columns = [column for _, column, _ in TARGETS]
    raw = {split: molecules.y[ids[split]][:, columns] for split in SPLITS}
    train64 = raw["train"].double()
    mean = train64.mean(dim=0)
    std = train64.std(dim=0) if len(train64) > 1 else torch.ones_like(mean)
    if not bool((std > 0).all()):
        flat = [TASK_NAMES[k] for k in range(len(TASK_NAMES)) if not std[k] > 0]
        raise ValueError(f"target(s) {flat} are constant on the training split; cannot standardise")
    splits = {
        split: StreamingSplit(
            read=partial(_read_rows, molecules, ids[split], ((raw[split] - mean) / std).float()),
            size=len(ids[split]),
            names=TASK_NAMES,
        )
        for split in SPLITS
    }
    return Benchmark(
        name="qm9",
        tasks=TaskSet(
            make_qm9_task(name, float(s)) for name, s in zip(TASK_NAMES, std, strict=True)
        ),
        model_factory=partial(build_model, width=width),
        # Nash-MTL: Adam, lr 1e-3, batch 120 (300 epochs, lr reduced on plateau)
        defaults=TrainingDefaults(optimizer="adam", lr=1e-3, batch_size=120, steps=1000, every=10),
        info={
            "data_root": str(root),
            "seed": seed,
            "molecules": len(molecules),
            "split_sizes": {split: len(ids[split]) for split in SPLITS},
            "targets": {name: column for name, column, _ in TARGETS},
            "units": {name: unit for name, _, unit in TARGETS},
            "target_mean": dict(zip(TASK_NAMES, mean.tolist(), strict=True)),
            "target_std": dict(zip(TASK_NAMES, std.tolist(), strict=True)),
            "width": width,
        },
        **splits,
    )
