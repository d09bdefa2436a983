"""``celeba`` on tiny fabricated files in the official format (JPEGs and the two text files)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import taskgroup
import taskgroup.data
from taskgroup.data import celeba
from taskgroup.data.benchmark import DataSplit
from taskgroup.recipe import load_recipe

# Written out here rather than taken from the module, so the test checks the module's lists.
ALL_40 = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
]  # fmt: skip
TAG_NINE = [
    "5_o_Clock_Shadow", "Black_Hair", "Blond_Hair", "Brown_Hair", "Goatee", "Mustache",
    "No_Beard", "Rosy_Cheeks", "Wearing_Hat",
]  # fmt: skip
PARTITION = [0, 1, 0, 2, 0, 0, 1, 2, 0, 2]  # 5 train, 2 val, 3 test, interleaved
SIZE = 16  # images are fabricated at 32×32, so resizing halves them exactly


@dataclasses.dataclass
class Fake:
    root: Path
    names: list[str]
    values: np.ndarray  # [N, 40] of ±1
    pixels: list[np.ndarray]  # [32, 32, 3] uint8 as decoded by Pillow


def write_attributes(path: Path, names, values, header=ALL_40, count=None) -> None:
    lines = [str(len(names) if count is None else count), " ".join(header) + " "]
    lines += [
        f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def fake(tmp_path) -> Fake:
    rng = np.random.default_rng(0)
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    pixels = []
    for name in names:
        smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(root / "img_align_celeba" / name, quality=95)
        pixels.append(np.array(Image.open(root / "img_align_celeba" / name).convert("RGB")))
    values = rng.choice([-1, 1], size=(len(names), 40))
    write_attributes(root / "list_attr_celeba.txt", names, values)
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, PARTITION, strict=True))
    )
    return Fake(root, names, values, pixels)


def load(fake: Fake, **options):
    return celeba.load(data_root=fake.root, image_size=SIZE, width=4, **options)


def whole(split) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    parts = list(split.chunks(3))
    inputs = torch.cat([x for x, _ in parts])
    return inputs, {n: torch.cat([t[n] for _, t in parts]) for n in parts[0][1]}


def test_tasks_are_tags_nine_binary_attributes(fake):
    bench = load(fake)
    assert bench.tasks.names == TAG_NINE
    assert list(celeba.ATTRIBUTES) == ALL_40
    for task in bench.tasks:
        assert task.kind == "binary" and task.higher_is_better == {"accuracy": True}
    assert "celeba" in taskgroup.data.names()


def test_splits_follow_the_partition_file_and_targets_the_attribute_file(fake):
    bench = load(fake)
    for k, split in enumerate(("train", "val", "test")):
        data = getattr(bench, split)
        assert isinstance(data, DataSplit)
        rows = [i for i, p in enumerate(PARTITION) if p == k]
        assert len(data) == len(rows)
        inputs, targets = whole(data)
        assert inputs.shape == (len(rows), 3, SIZE, SIZE) and inputs.dtype == torch.float32
        for name in TAG_NINE:
            column = ALL_40.index(name)
            expected = [1.0 if fake.values[i, column] == 1 else 0.0 for i in rows]
            assert targets[name].tolist() == expected
            assert targets[name].dtype == torch.float32


def test_images_are_resized_bilinearly_with_half_pixel_centres(fake):
    # Halving with half-pixel centres averages each 2×2 block (TF's and torch's bilinear).
    inputs, _ = whole(load(fake).train)
    rows = [i for i, p in enumerate(PARTITION) if p == 0]
    for got, i in zip(inputs, rows, strict=True):
        blocks = fake.pixels[i].astype(np.float64).reshape(SIZE, 2, SIZE, 2, 3).mean(axis=(1, 3))
        expected = torch.from_numpy(blocks / 255.0).permute(2, 0, 1).float()
        assert torch.allclose(got, expected, atol=0.51 / 255)  # 8-bit rounding
        assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def test_attributes_and_limit_options(fake):
    bench = load(fake, attributes=["Smiling", "Male"], limit=2)
    assert bench.tasks.names == ["Smiling", "Male"]
    assert [len(bench.train), len(bench.val), len(bench.test)] == [2, 2, 2]
    _, targets = whole(bench.test)
    first_two_test = [i for i, p in enumerate(PARTITION) if p == 2][:2]
    smiling = [float(fake.values[i, ALL_40.index("Smiling")] == 1) for i in first_two_test]
    assert targets["Smiling"].tolist() == smiling
    with pytest.raises(ValueError, match="Nope"):
        load(fake, attributes=["Nope"])


def test_batches_are_resume_exact_and_select_restricts_targets(fake):
    train = load(fake).select(["Goatee", "Mustache"]).train
    stream = train.batches(2, seed=3)
    full = [next(stream) for _ in range(7)]
    resumed = train.batches(2, seed=3, start=4)
    for x, t in full[4:]:
        rx, rt = next(resumed)
        assert torch.equal(x, rx)
        assert list(rt) == ["Goatee", "Mustache"]
        assert all(torch.equal(t[n], rt[n]) for n in t)
    # an epoch (2 batches of 2 from 5 rows) draws distinct rows
    epoch = torch.cat([x for x, _ in full[:2]])
    assert len({tuple(r.flatten().tolist()) for r in epoch}) == 4


def test_split_pickles_without_its_cache_and_cached_reads_are_identical(fake):
    bench = load(fake)
    first, _ = whole(bench.val)
    again, _ = whole(bench.val)  # now from the cache
    assert torch.equal(first, again)
    clone = pickle.loads(pickle.dumps(bench.val))
    assert clone.read._cache == {}
    assert torch.equal(whole(clone)[0], first)
    uncached, _ = whole(load(fake, cache_mb=0).val)
    assert torch.equal(uncached, first)


def test_missing_files_name_the_expected_layout(fake):
    (fake.root / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load(fake)
    message = str(error.value)
    for expected in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"):
        assert str(fake.root / expected) in message
    with pytest.raises(ValueError, match="data_root"):
        celeba.load()


def test_a_missing_image_is_named(fake):
    (fake.root / "img_align_celeba" / fake.names[3]).unlink()
    with pytest.raises(FileNotFoundError, match=fake.names[3]):
        load(fake)


def test_a_truncated_jpeg_raises_a_value_error_naming_it(fake):
    path = fake.root / "img_align_celeba" / fake.names[1]  # the first val image
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    bench = load(fake)
    with pytest.raises(ValueError, match=fake.names[1]):
        whole(bench.val)


def test_a_wrong_column_count_names_the_file_and_line(fake):
    path = fake.root / "list_attr_celeba.txt"
    values = fake.values.copy()
    write_attributes(path, fake.names, values)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(" ", 1)[0]  # drop the last attribute of the 4th image
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt:6: expected 41 columns.*got 40"):
        load(fake)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: write_attributes(*f, count=99), r"line 1 says 99 images"),
        (lambda f: write_attributes(*f, header=ALL_40[:39]), r"\.txt:2: expected the 40"),
        (
            lambda f: write_attributes(f[0], f[1], np.where(f[2] == 1, 2, f[2])),
            r"\.txt:3: .*1 or -1",
        ),
    ],
)
def test_malformed_attribute_files_are_named(fake, edit, message):
    edit((fake.root / "list_attr_celeba.txt", fake.names, fake.values))
    with pytest.raises(ValueError, match=message):
        load(fake)


def test_malformed_partition_file_is_named(fake):
    path = fake.root / "list_eval_partition.txt"
    path.write_text(path.read_text().replace(f"{fake.names[2]} 0", f"{fake.names[2]} 3"))
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt:3"):
        load(fake)


def test_recipe_options_are_loader_keywords(fake):
    recipe = load_recipe("celeba")
    assert recipe.benchmark == "celeba" and recipe.tasks == TAG_NINE
    assert "data_root" in recipe.options
    small = dataclasses.replace(
        recipe, options={**recipe.options, "data_root": str(fake.root), "image_size": SIZE}
    )
    assert len(small.load_benchmark().train) == 5


def test_measure_affinity_runs_on_the_fabricated_benchmark(fake):
    bench = load(fake)
    A = taskgroup.measure_affinity(bench, steps=3, every=1, batch_size=4)
    assert A.values.shape == (9, 9) and A.tasks == TAG_NINE
    assert np.isfinite(A.values).all()
    assert celeba.build_model(bench.tasks).trunk(torch.zeros(2, 3, 64, 64)).shape == (2, 14400)


def test_training_runs_on_the_fabricated_benchmark(fake, tmp_path):
    bench = load(fake)
    settings = taskgroup.TrainSettings.for_benchmark(bench, steps=2, eval_every=1, batch_size=4)
    result = taskgroup.train_group(bench, TAG_NINE[:3], settings, directory=tmp_path / "g")
    assert result.steps == 2 and set(result.test) == set(TAG_NINE[:3])
    assert all(np.isfinite(v) for m in result.test.values() for v in m.values())
