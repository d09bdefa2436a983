"""``nyuv2`` on tiny fabricated arrays in MTAN's layout, and its losses and metrics by hand."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import taskgroup
from taskgroup.data import nyuv2
from taskgroup.data.benchmark import DataSplit
from taskgroup.recipe import load_recipe
from taskgroup.tasks import StreamingMetric

H, W = 16, 24
COUNTS = {"train": 6, "val": 3}


@dataclasses.dataclass
class Fake:
    root: Path
    arrays: dict[str, dict[str, list[np.ndarray]]]  # folder -> kind -> arrays as saved


def fabricate(root: Path, channel_first: bool = False) -> Fake:
    rng = np.random.default_rng(0)
    arrays: dict[str, dict[str, list[np.ndarray]]] = {}
    for folder, n in COUNTS.items():
        arrays[folder] = {k: [] for k in ("image", "label", "depth", "normal")}
        for kind in arrays[folder]:
            (root / folder / kind).mkdir(parents=True)
        for i in range(n):
            label = rng.integers(-1, 13, (H, W)).astype(np.float32)
            depth = (rng.uniform(0.5, 5, (H, W, 1)) * (rng.random((H, W, 1)) > 0.2)).astype(
                np.float32
            )
            normal = rng.normal(size=(H, W, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[rng.random((H, W)) < 0.1] = 0
            items = {
                "image": rng.random((H, W, 3)).astype(np.float32),
                "label": label,
                "depth": depth,
                "normal": normal.astype(np.float32),
            }
            for kind, a in items.items():
                arrays[folder][kind].append(a)
                saved = np.moveaxis(a, -1, 0) if channel_first and a.ndim == 3 else a
                np.save(root / folder / kind / f"{i}.npy", saved)
    return Fake(root, arrays)


@pytest.fixture
def fake(tmp_path) -> Fake:
    return fabricate(tmp_path / "nyuv2")


def load(fake: Fake, **options):
    options = {"image_size": (H, W), "width": 4, "val_fraction": 0.34, **options}
    return nyuv2.load(data_root=fake.root, **options)


def whole(split):
    parts = list(split.chunks(2))
    return torch.cat([x for x, _ in parts]), {
        n: torch.cat([t[n] for _, t in parts]) for n in parts[0][1]
    }


def channel_first(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(a, -1, 0) if a.ndim == 3 else a)


def test_splits_hold_out_part_of_train_for_val_and_test_is_mtans_val(fake):
    bench = load(fake)
    assert bench.tasks.names == ["segmentation", "depth", "normal"]
    assert [len(bench.train), len(bench.val), len(bench.test)] == [4, 2, 3]
    source = [channel_first(a) for a in fake.arrays["train"]["image"]]
    seen = []
    for split in ("train", "val"):
        data = getattr(bench, split)
        assert isinstance(data, DataSplit)
        images, targets = whole(data)
        for row, image in enumerate(images):
            (i,) = [k for k, s in enumerate(source) if torch.equal(s, image)]
            seen.append(i)
            expected = fake.arrays["train"]
            assert targets["segmentation"][row].dtype == torch.int64
            assert torch.equal(
                targets["segmentation"][row], torch.from_numpy(expected["label"][i]).long()
            )
            assert torch.equal(targets["depth"][row], channel_first(expected["depth"][i]))
            assert torch.equal(targets["normal"][row], channel_first(expected["normal"][i]))
    assert sorted(seen) == list(range(6))  # train and val partition train/
    images, targets = whole(bench.test)
    for i in range(3):
        assert torch.equal(images[i], channel_first(fake.arrays["val"]["image"][i]))
        assert torch.equal(targets["normal"][i], channel_first(fake.arrays["val"]["normal"][i]))
    other = load(fake, seed=1)
    assert not torch.equal(whole(other.val)[0], whole(bench.val)[0])
    assert [len(s) for s in (load(fake, limit=1).train, load(fake, limit=1).test)] == [1, 1]


def test_channel_first_arrays_read_the_same(fake, tmp_path):
    other = fabricate(tmp_path / "first", channel_first=True)
    a, b = whole(load(fake).test), whole(load(other).test)
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(a[1][n], b[1][n]) for n in a[1])


def test_batches_are_resume_exact_and_select_reads_only_chosen_targets(fake):
    train = load(fake).select(["normal", "depth"]).train
    stream = train.batches(3, seed=5)
    full = [next(stream) for _ in range(6)]
    resumed = train.batches(3, seed=5, start=3)
    for x, t in full[3:]:
        rx, rt = next(resumed)
        assert torch.equal(x, rx) and list(rt) == ["normal", "depth"]
        assert all(torch.equal(t[n], rt[n]) for n in t)
    assert pickle.loads(pickle.dumps(train)).rows([0])[0].shape == (1, 3, H, W)


def one_hot_logits(labels: list[list[int]]) -> torch.Tensor:
    """Logits ``[1, 13, h, w]`` whose argmax is ``labels``."""
    return F.one_hot(torch.tensor([labels]), 13).permute(0, 3, 1, 2).float()


def test_segmentation_metrics_by_hand():
    miou, acc = nyuv2.MeanIoU(), nyuv2.PixelAccuracy()
    target = torch.tensor([[[0, 0, 1], [1, 2, -1]]])
    prediction = one_hot_logits([[0, 1, 1], [1, 1, 0]])  # the -1 pixel's guess is ignored
    for m in (miou, acc):
        m.update(prediction, target)
    # class 0: TP 1, FP 0, FN 1; class 1: TP 2, FP 2, FN 0; class 2: TP 0, FN 1
    assert miou.compute() == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    assert acc.compute() == pytest.approx(3 / 5)
    target2 = torch.tensor([[[2, 2, 2], [-1, -1, -1]]])
    for m in (miou, acc):
        m.update(one_hot_logits([[2, 2, 0], [5, 5, 5]]), target2)
    # class 0: TP 1, FP 1, FN 1; class 1: TP 2, FP 2; class 2: TP 2, FN 2
    assert miou.compute() == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert acc.compute() == pytest.approx(5 / 8)
    miou.reset()
    assert math.isnan(miou.compute())
    # the loss ignores -1 and averages over labelled pixels
    logits = torch.randn(1, 13, 2, 3)
    log_p = logits.log_softmax(dim=1)
    picks = [-log_p[0, c, i, j] for (i, j), c in np.ndenumerate(target[0].numpy()) if c >= 0]
    assert nyuv2.segmentation_loss(logits, target) == pytest.approx(float(sum(picks) / 5))


def test_depth_metrics_and_loss_by_hand():
    abs_err, rel_err = nyuv2.DepthError(), nyuv2.DepthError(relative=True)
    prediction = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    target = torch.tensor([2.0, 0.0, 2.0, 8.0]).reshape(1, 1, 1, 4)  # pixel 1 unknown
    assert float(nyuv2.depth_loss(prediction, target)) == pytest.approx((1 + 1 + 4) / 3)
    for m in (abs_err, rel_err):
        m.update(prediction, target)
    assert abs_err.compute() == pytest.approx(2.0)
    assert rel_err.compute() == pytest.approx(0.5)
    for m in (abs_err, rel_err):
        m.update(torch.full((1, 1, 1, 1), 5.0), torch.full((1, 1, 1, 1), 4.0))
    assert abs_err.compute() == pytest.approx(7 / 4)  # pixel-weighted, not batch-weighted
    assert rel_err.compute() == pytest.approx((0.5 + 0.5 + 0.5 + 0.25) / 4)


def normals_at(degrees: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (length 2) at ``degrees`` from targets (1, 0, 0), plus one unknown pixel."""
    theta = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    prediction = torch.stack([2 * theta.cos(), 2 * theta.sin(), torch.zeros_like(theta)])
    prediction = torch.cat([prediction, torch.ones(3, 1, dtype=torch.float64)], dim=1)
    target = torch.zeros_like(prediction)
    target[0, : len(degrees)] = 1.0
    return prediction.float()[None, :, None, :], target.float()[None, :, None, :]


def test_normal_metrics_and_loss_by_hand():
    angles = [0.0, 10.0, 20.0, 25.0, 45.0, 90.0]
    prediction, target = normals_at(angles)
    metrics = nyuv2.make_tasks()["normal"].metrics
    for m in metrics.values():
        m.reset()
        m.update(prediction, target)
    got = {k: m.compute() for k, m in metrics.items()}
    assert got["angle_mean"] == pytest.approx(190 / 6, abs=1e-4)
    assert got["angle_median"] == pytest.approx(22.5, abs=1e-3)
    assert got["within_11_25"] == pytest.approx(2 / 6)
    assert got["within_22_5"] == pytest.approx(3 / 6)
    assert got["within_30"] == pytest.approx(4 / 6)
    cosines = np.cos(np.deg2rad(angles))
    assert float(nyuv2.normal_loss(prediction, target)) == pytest.approx(1 - cosines.mean())
    median = nyuv2.AngleMedian()
    odd = normals_at([0.0, 5.0, 10.0, 20.0, 25.0, 45.0, 90.0])
    median.update(*odd)
    assert median.compute() == pytest.approx(20.0, abs=1e-3)
    median.update(*normals_at([100.0, 110.0]))
    assert median.compute() == pytest.approx(
        float(np.median([0, 5, 10, 20, 25, 45, 90, 100, 110])), abs=1e-3
    )


def test_every_metric_is_streaming_with_its_direction(fake):
    tasks = load(fake).tasks
    directions = {
        "segmentation": {"miou": True, "pixel_acc": True},
        "depth": {"abs_err": False, "rel_err": False},
        "normal": {
            "angle_mean": False,
            "angle_median": False,
            "within_11_25": True,
            "within_22_5": True,
            "within_30": True,
        },
    }
    for task in tasks:
        assert dict(task.higher_is_better) == directions[task.name]
        assert all(isinstance(m, StreamingMetric) for m in task.metrics.values())
    pickle.dumps(tasks)


def test_missing_files_name_the_expected_paths(fake):
    (fake.root / "train" / "depth" / "3.npy").unlink()
    with pytest.raises(FileNotFoundError, match=str(fake.root / "train" / "depth" / "3.npy")):
        load(fake)
    with pytest.raises(FileNotFoundError) as error:
        nyuv2.load(data_root=fake.root / "absent")
    for expected in ("train/image/0.npy", "train/label/", "train/depth/", "train/normal/", "val/"):
        assert expected in str(error.value)
    with pytest.raises(ValueError, match="data_root"):
        nyuv2.load()


def test_wrong_shapes_and_truncated_arrays_name_the_file(fake):
    with pytest.raises(ValueError, match=r"image/0\.npy: array of shape \[16, 24, 3\]"):
        load(fake, image_size=(288, 384))  # the real size, on the small fabricated arrays
    bad = fake.root / "val" / "normal" / "2.npy"
    np.save(bad, np.zeros((H, W, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=str(bad)):
        load(fake)
    np.save(bad, np.zeros((H, W, 3), dtype=np.float32))
    cut = fake.root / "train" / "image" / "1.npy"
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(ValueError, match=str(cut)):
        load(fake)


def test_bad_label_values_name_the_file_when_read(fake):
    path = fake.root / "val" / "label" / "0.npy"
    np.save(path, np.full((H, W), 13.0, dtype=np.float32))
    bench = load(fake)
    with pytest.raises(ValueError, match=str(path)):
        whole(bench.test)


def test_recipe_options_are_loader_keywords(fake):
    recipe = load_recipe("nyuv2")
    assert recipe.benchmark == "nyuv2" and "data_root" in recipe.options
    small = dataclasses.replace(
        recipe, options={**recipe.options, "data_root": str(fake.root), "image_size": [H, W]}
    )
    assert len(small.load_benchmark().test) == 3


def test_measure_affinity_and_evaluation_run_on_the_fabricated_benchmark(fake):
    bench = load(fake)
    A = taskgroup.measure_affinity(bench, steps=3, every=1, batch_size=2)
    assert A.values.shape == (3, 3) and np.isfinite(A.values).all()
    model = bench.make_model(seed=0).eval()
    for task in bench.tasks:
        for m in task.metrics.values():
            m.reset()
    with torch.no_grad():
        for inputs, targets in bench.test.chunks(2):
            outputs = model(inputs)
            assert torch.allclose(outputs["normal"].norm(dim=1), torch.ones(1))
            for task in bench.tasks:
                for m in task.metrics.values():
                    m.update(outputs[task.name], targets[task.name])
    scores = {k: m.compute() for task in bench.tasks for k, m in task.metrics.items()}
    assert all(math.isfinite(v) for v in scores.values())
    assert all(0 <= scores[k] <= 1 for k in ("miou", "pixel_acc", "within_30"))


def test_training_runs_on_the_fabricated_benchmark(fake, tmp_path):
    bench = load(fake)
    settings = taskgroup.TrainSettings.for_benchmark(bench, steps=2, eval_every=1, batch_size=2)
    result = taskgroup.train_group(bench, bench.tasks.names, settings, directory=tmp_path / "g")
    assert result.steps == 2
    assert set(result.test["segmentation"]) >= {"loss", "miou", "pixel_acc"}
    assert all(np.isfinite(v) for m in result.test.values() for v in m.values())
