from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, InMemoryDataset

import taskgroup
import taskgroup.data
from taskgroup.data import qm9
from taskgroup.data.benchmark import DataSplit
from taskgroup.recipe import load_recipe

MOLECULES = 30
SIZES = (20, 5, 5)
# scales of the 19 PyG target columns, so that standardisation and de-normalisation matter
TARGET_SCALE = torch.tensor([3.0, 50.0, 0.3, 1.0, 0.4, 500.0, 0.1, 1e3, 1e3, 1e3, 1e3, 8.0, 60.0,
                             60.0, 60.0, 60.0, 2.0, 1.0, 1.0])  # fmt: skip
ELEMENTS = (1, 6, 7, 8, 9)  # H C N O F, the order of PyG's one-hot atom type


def fake_molecules(n: int = MOLECULES, seed: int = 0) -> list[Data]:
    """Small random molecules with the fields and dtypes of torch_geometric's processed QM9."""
    g = torch.Generator().manual_seed(seed)
    molecules = []
    for i in range(n):
        atoms = int(torch.randint(3, 7, (), generator=g))
        type_idx = torch.randint(0, 5, (atoms,), generator=g)
        z = torch.tensor(ELEMENTS)[type_idx]
        # a chain of bonds 0-1-2-..., both directions, sorted as PyG sorts them
        pairs = [(k, k + 1) for k in range(atoms - 1)]
        rows = [a for a, b in pairs] + [b for a, b in pairs]
        cols = [b for a, b in pairs] + [a for a, b in pairs]
        kinds = torch.randint(0, 4, (len(pairs),), generator=g).repeat(2)
        edge_index = torch.tensor([rows, cols])
        perm = (edge_index[0] * atoms + edge_index[1]).argsort()
        edge_index, kinds = edge_index[:, perm], kinds[perm]
        x = torch.cat(
            [
                torch.nn.functional.one_hot(type_idx, 5).float(),
                z[:, None].float(),
                torch.randint(0, 2, (atoms, 5), generator=g).float(),
            ],
            dim=1,
        )
        y = 5.0 + TARGET_SCALE * torch.randn(1, 19, generator=g)
        molecules.append(
            Data(
                x=x,
                z=z,
                pos=2.0 * torch.randn(atoms, 3, generator=g),
                edge_index=edge_index,
                edge_attr=torch.nn.functional.one_hot(kinds, 4).float(),
                y=y,
                smiles="C",
                name=f"gdb_{i + 1}",
                idx=i,
            )
        )
    return molecules


@pytest.fixture(scope="module")
def molecules() -> list[Data]:
    return fake_molecules()


@pytest.fixture(scope="module")
def root(tmp_path_factory, molecules) -> Path:
    """A QM9 root holding only torch_geometric's processed file (read with or without rdkit)."""
    path = tmp_path_factory.mktemp("qm9")
    (path / "processed").mkdir()
    InMemoryDataset.save(molecules, str(path / qm9.PROCESSED_FILE))
    return path


@pytest.fixture(scope="module")
def bench(root):
    return qm9.load(data_root=root, split_sizes=SIZES, seed=0)


def test_registered_with_a_recipe_and_the_qm9_extra():
    assert "qm9" in taskgroup.data.names()
    recipe = load_recipe("qm9")
    assert recipe.benchmark == "qm9" and "data_root" in recipe.options
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'qm9 = ["torch_geometric>=2.5"]' in pyproject


def test_split_sizes_tasks_and_info(bench):
    assert [len(bench.train), len(bench.val), len(bench.test)] == list(SIZES)
    assert bench.tasks.names == list(qm9.TASK_NAMES)
    assert [c for _, c, _ in qm9.TARGETS] == [0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11]
    for split in (bench.train, bench.val, bench.test):
        assert isinstance(split, DataSplit)
    for task in bench.tasks:
        assert task.kind == "regression" and task.higher_is_better == {"mae": False}
    assert bench.info["split_sizes"] == {"train": 20, "val": 5, "test": 5}
    assert bench.info["molecules"] == MOLECULES
    assert bench.defaults.batch_size == 120 and bench.defaults.optimizer == "adam"


def test_default_split_takes_every_other_molecule_for_training(root):
    ids = qm9.draw_split(130_831, qm9.DEFAULT_SPLIT_SIZES, seed=0)
    assert [len(ids[s]) for s in ("train", "val", "test")] == [110_831, 10_000, 10_000]
    small = qm9.load(data_root=root, split_sizes=(None, 4, 6))
    assert [len(small.train), len(small.val), len(small.test)] == [20, 4, 6]


def test_splits_are_disjoint_and_follow_the_seed(root):
    ids = qm9.draw_split(MOLECULES, SIZES, seed=0)
    everything = torch.cat(list(ids.values()))
    assert len(set(everything.tolist())) == MOLECULES
    order = torch.randperm(MOLECULES, generator=torch.Generator().manual_seed(0))
    assert set(ids["test"].tolist()) == set(order[:5].tolist())
    assert set(ids["val"].tolist()) == set(order[5:10].tolist())
    other = qm9.draw_split(MOLECULES, SIZES, seed=1)
    assert not torch.equal(ids["test"], other["test"])


def _raw_targets(molecules, ids) -> torch.Tensor:
    columns = [c for _, c, _ in qm9.TARGETS]
    return torch.cat([molecules[int(i)].y for i in ids])[:, columns].double()


def test_targets_are_standardised_with_training_statistics(bench, molecules):
    ids = qm9.draw_split(MOLECULES, SIZES, seed=0)
    raw_train = _raw_targets(molecules, ids["train"])
    mean, std = raw_train.mean(0), raw_train.std(0)
    for split in ("train", "val", "test"):
        _, targets = next(getattr(bench, split).chunks(100))
        expected = (_raw_targets(molecules, ids[split]) - mean) / std
        got = torch.stack([targets[name] for name in qm9.TASK_NAMES], dim=1).double()
        assert torch.allclose(got, expected, atol=1e-5)
    _, train = next(bench.train.chunks(100))
    values = torch.stack(list(train.values()), dim=1).double()
    assert torch.allclose(values.mean(0), torch.zeros(11, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(values.std(0), torch.ones(11, dtype=torch.float64), atol=1e-5)


def test_mae_is_reported_in_original_units(bench, molecules):
    ids = qm9.draw_split(MOLECULES, SIZES, seed=0)
    raw_train = _raw_targets(molecules, ids["train"])
    prediction = torch.linspace(-1.0, 1.0, 5)
    _, targets = next(bench.val.chunks(5))
    raw_val = _raw_targets(molecules, ids["val"])
    for k, task in enumerate(bench.tasks):
        mean, std = float(raw_train[:, k].mean()), float(raw_train[:, k].std())
        # the prediction in original units, against the raw targets
        by_hand = np.mean(np.abs(prediction.double().numpy() * std + mean - raw_val[:, k].numpy()))
        assert task.metrics["mae"](prediction, targets[task.name]) == pytest.approx(by_hand, 1e-5)
    mae = bench.tasks[0].metrics["mae"]
    assert pickle.loads(pickle.dumps(mae)) == mae


def test_batches_are_complete_graphs_with_bond_types_and_distances(bench, molecules):
    ids = qm9.draw_split(MOLECULES, SIZES, seed=0)["val"]
    inputs, _ = next(bench.val.chunks(3))
    assert inputs.num_graphs == 3
    offset = 0
    for g, m in enumerate(ids[:3].tolist()):
        mol = molecules[m]
        n = mol.num_nodes
        assert torch.equal(inputs.x[inputs.batch == g], mol.x)
        bonds = {
            (int(a), int(b)): int(t)
            for a, b, t in zip(*mol.edge_index, mol.edge_attr.argmax(1), strict=True)
        }
        expected = []
        for a in range(n):
            for b in range(n):
                if a != b:
                    one_hot = [0.0] * 4
                    if (a, b) in bonds:
                        one_hot[bonds[(a, b)]] = 1.0
                    expected.append(((a, b), [*one_hot, float((mol.pos[b] - mol.pos[a]).norm())]))
        source, target = inputs.edge_index
        mine = (source >= offset) & (source < offset + n)
        assert bool(((target[mine] >= offset) & (target[mine] < offset + n)).all())
        got = [
            ((int(s) - offset, int(t) - offset), attr)
            for s, t, attr in zip(source[mine], target[mine], inputs.edge_attr[mine], strict=True)
        ]
        assert [pair for pair, _ in got] == [pair for pair, _ in expected]
        for (_, attr), (_, want) in zip(got, expected, strict=True):
            assert torch.allclose(attr, torch.tensor(want), atol=1e-5)
        offset += n
    assert torch.equal(inputs.ptr[:2], torch.tensor([0, molecules[int(ids[0])].num_nodes]))


def test_batches_resume_exactly_and_select_keeps_chosen_tasks(bench):
    def take(stream, k):
        return [next(stream) for _ in range(k)]

    full = take(bench.train.batches(6, seed=3), 7)
    resumed = take(bench.train.batches(6, seed=3, start=4), 3)
    for (a_in, a_t), (b_in, b_t) in zip(full[4:], resumed, strict=True):
        assert torch.equal(a_in.x, b_in.x) and torch.equal(a_in.edge_index, b_in.edge_index)
        assert torch.equal(a_in.edge_attr, b_in.edge_attr)
        assert all(torch.equal(a_t[n], b_t[n]) for n in a_t)
    assert all(b[0].num_graphs == 6 for b in full)
    copy = pickle.loads(pickle.dumps(bench.train))  # e.g. sent to worker processes
    again, _ = next(copy.batches(6, seed=3, start=4))
    assert torch.equal(again.edge_attr, resumed[0][0].edge_attr)
    chunks = list(bench.test.chunks(2))
    assert [c[0].num_graphs for c in chunks] == [2, 2, 1]
    sub = bench.select(["homo", "cv"])
    _, targets = next(sub.train.chunks(4))
    assert list(targets) == ["homo", "cv"]


def test_model_maps_a_batch_to_one_scalar_per_graph_and_task(bench):
    model = bench.make_model(seed=0)
    inputs, targets = next(bench.train.batches(4, seed=0))
    out = model(inputs)
    assert list(out) == list(qm9.TASK_NAMES)
    assert all(v.shape == (4,) for v in out.values())
    loss = sum(t.loss(out[t.name], targets[t.name]) for t in bench.tasks)
    loss.backward()
    assert all(p.grad is not None for p in model.trunk.parameters())


def test_trunk_layers_match_torch_and_torch_geometric(bench):
    from torch_geometric.nn import NNConv
    from torch_geometric.nn import Set2Set as PygSet2Set

    torch.manual_seed(0)
    inputs, _ = next(bench.train.batches(5, seed=0))
    width = 8
    x = torch.randn(inputs.num_nodes, width)
    # NNConv, aggr="mean", with the same weights
    ours = qm9.EdgeConditionedConv(width)
    reference = NNConv(width, width, ours.edge_net, aggr="mean")
    reference.lin.weight.data.copy_(ours.root.weight.data)
    reference.bias.data.copy_(torch.randn(width))
    ours.bias.data.copy_(reference.bias.data)
    weights = ours.edge_weights(inputs.edge_attr)
    assert torch.allclose(
        ours(x, inputs.edge_index, weights),
        reference(x, inputs.edge_index, inputs.edge_attr),
        atol=1e-5,
    )
    # GRU and LSTM steps against torch's cells
    gru, cell = qm9.GRUStep(width, width), torch.nn.GRUCell(width, width)
    cell.load_state_dict(gru.state_dict())
    h = torch.randn(inputs.num_nodes, width)
    assert torch.allclose(gru(x, h), cell(x, h), atol=1e-6)
    lstm, lcell = qm9.LSTMStep(2 * width, width), torch.nn.LSTMCell(2 * width, width)
    lcell.load_state_dict(lstm.state_dict())
    xx, c = torch.randn(3, 2 * width), torch.randn(3, width)
    for a, b in zip(lstm(xx, (h[:3], c)), lcell(xx, (h[:3], c)), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # Set2Set against torch_geometric's (its LSTM holds the same weights under other names)
    ours_s2s, pyg_s2s = qm9.Set2Set(width, steps=3), PygSet2Set(width, processing_steps=3)
    pyg_s2s.lstm.load_state_dict({f"{k}_l0": v for k, v in ours_s2s.lstm.state_dict().items()})
    assert torch.allclose(
        ours_s2s(x, inputs.batch, inputs.num_graphs), pyg_s2s(x, inputs.batch), atol=1e-5
    )


def test_lookahead_runs_through_functional_call_and_vmap(bench):
    model = bench.make_model(seed=0)
    inputs, targets = next(bench.train.batches(5, seed=0))
    losses = bench.tasks.losses()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z_vmap = taskgroup.lookahead_affinity(model, inputs, targets, losses, lr=0.01, vectorize="vmap")
    z_loop = taskgroup.lookahead_affinity(model, inputs, targets, losses, lr=0.01, vectorize="loop")
    assert z_vmap.shape == (11, 11) and bool(torch.isfinite(z_vmap).all())
    assert torch.allclose(z_vmap, z_loop, atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_measure_affinity_on_the_fabricated_root(bench):
    result = taskgroup.measure_affinity(bench, steps=3, every=1, batch_size=8)
    assert result.values.shape == (11, 11)
    assert np.isfinite(result.values).all()
    assert result.tasks == list(qm9.TASK_NAMES)


def test_missing_root_or_files_name_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"processed/data_v3\.pt.*raw/qm9_v3\.pt"):
        qm9.load(data_root=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/processed/data_v3\.pt.*gdb9\.sdf"):
        qm9.load(data_root=tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []  # nothing created, nothing fetched
    (tmp_path / "empty" / "raw").mkdir()
    (tmp_path / "empty" / "raw" / "other.pt").touch()
    with pytest.raises(FileNotFoundError, match=r"rdkit is (not )?installed"):
        qm9.load(data_root=tmp_path / "empty")


def test_raw_preprocessed_file_is_processed_without_rdkit(tmp_path, molecules):
    if qm9._has_rdkit():
        pytest.skip("with rdkit installed torch_geometric reads gdb9.sdf instead of qm9_v3.pt")
    (tmp_path / "raw").mkdir()
    torch.save([m.to_dict() for m in molecules], tmp_path / "raw" / "qm9_v3.pt")
    bench = qm9.load(data_root=tmp_path, split_sizes=SIZES)
    assert (tmp_path / qm9.PROCESSED_FILE).is_file()
    assert [len(bench.train), len(bench.val), len(bench.test)] == list(SIZES)


def test_too_small_dataset_and_bad_sizes_are_clear_errors(root):
    with pytest.raises(ValueError, match=r"need .*= 40 molecules.*only 30"):
        qm9.load(data_root=root, split_sizes=(30, 5, 5))
    with pytest.raises(ValueError, match=r"only 30"):
        qm9.load(data_root=root)  # the default 10,000 + 10,000 held out
    with pytest.raises(ValueError, match="split_sizes"):
        qm9.load(data_root=root, split_sizes=(10, 0, 5))


def test_missing_torch_geometric_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    with pytest.raises(ImportError, match=r"pip install taskgroup\[qm9\]"):
        qm9.load(data_root=tmp_path)


def test_training_runs_on_the_fabricated_root(bench, tmp_path):
    settings = taskgroup.TrainSettings.for_benchmark(bench, steps=2, eval_every=1, batch_size=8)
    result = taskgroup.train_group(bench, ["mu", "alpha"], settings, directory=tmp_path / "g")
    assert result.steps == 2 and set(result.test) == {"mu", "alpha"}
    assert all(np.isfinite(v) for m in result.test.values() for v in m.values())
