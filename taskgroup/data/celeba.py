"""``celeba``: CelebA face attributes as binary tasks, read from the standard files (no download).

Expected under ``data_root`` (the layout of the official "Align&Cropped Images" release)::

    img_align_celeba/000001.jpg ... 202599.jpg   aligned and cropped faces, 178×218 JPEG
    list_attr_celeba.txt                          line 1: image count; line 2: the 40 attribute
                                                  names; then "<file> <±1 × 40>" per image
    list_eval_partition.txt                       "<file> <0|1|2>" (train / val / test)

The splits are the official partition (162,770 / 19,867 / 19,962 images). Tasks are TAG's nine
attributes (:data:`TAG_ATTRIBUTES`); any of the 40 can be chosen with ``attributes=``. Targets are
1 where the attribute is +1, else 0.

Images are decoded on demand (a :class:`~taskgroup.data.benchmark.StreamingSplit`), never all at
once: each is converted to RGB in [0, 1] and resized to ``image_size × image_size`` as TAG did, then
rounded to 8 bits (the JPEG's own precision) so that a cached image and a freshly decoded one are
identical. Up to ``cache_mb`` of resized images are kept in memory per process.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taskgroup.data.benchmark import Batch, Benchmark, StreamingSplit, TrainingDefaults
from taskgroup.data.heads import make_heads, make_task
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import TaskSet

SPLITS = ("train", "val", "test")
IMAGE_DIR = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"

# The 40 CelebA attributes, in the order of list_attr_celeba.txt.
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# TAG (Fifty et al., NeurIPS 2021, "Efficiently Identifying Task Groupings for Multi-Task
# Learning"), google-research/google-research tag/celeba/CelebA.ipynb: FLAGS.tasks of the 9-task
# experiment. The same notebook resizes with tf.image.resize(convert_image_dtype(image, float32),
# [64, 64]) (bilinear, half-pixel centres, no antialiasing) and trains with SGD (momentum 0.9),
# lr 0.0005, batch size 256.
TAG_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Black_Hair", "Blond_Hair", "Brown_Hair", "Goatee", "Mustache",
    "No_Beard", "Rosy_Cheeks", "Wearing_Hat",
)  # fmt: skip
TAG_IMAGE_SIZE = 64


def expected_layout(root: Path) -> str:
    """The files ``celeba`` reads, as a message for errors and docs."""
    return (
        f"celeba expects under {root}:\n"
        f"  {root / IMAGE_DIR}/000001.jpg ... 202599.jpg  (aligned & cropped JPEGs)\n"
        f"  {root / ATTRIBUTE_FILE}  (count; 40 attribute names; '<file> ±1 ×40' per line)\n"
        f"  {root / PARTITION_FILE}  ('<file> 0|1|2' per line: train/val/test)"
    )


def read_attributes(path: Path, attributes: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """File names ``[N]`` and the 0/1 values ``[N, len(attributes)]`` (uint8) of
    ``list_attr_celeba.txt``; ``ValueError`` naming the file and line on malformed content."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected an image count and a line of attribute names")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"{path}:1: expected the number of images, got {lines[0]!r}") from None
    header = lines[1].split()
    if len(header) != len(ATTRIBUTES) or len(set(header)) != len(header):
        raise ValueError(
            f"{path}:2: expected the {len(ATTRIBUTES)} attribute names, got {len(header)} "
            f"(distinct: {len(set(header))})"
        )
    missing = [a for a in attributes if a not in header]
    if missing:
        raise ValueError(f"{path}:2: no attribute(s) {missing}; the file has {header}")
    columns = [1 + header.index(a) for a in attributes]
    width = 1 + len(header)
    names: list[str] = []
    values = np.empty((len(lines) - 2, len(attributes)), dtype=np.uint8)
    for row, line in enumerate(lines[2:]):
        parts = line.split()
        if len(parts) != width:
            raise ValueError(
                f"{path}:{row + 3}: expected {width} columns (file name and {len(header)} "
                f"attributes), got {len(parts)}"
            )
        for k, c in enumerate(columns):
            v = parts[c]
            if v == "1":
                values[row, k] = 1
            elif v == "-1":
                values[row, k] = 0
            else:
                raise ValueError(
                    f"{path}:{row + 3}: attribute {header[c - 1]} must be 1 or -1, got {v!r}"
                )
        names.append(parts[0])
    if count != len(names):
        raise ValueError(f"{path}: line 1 says {count} images, the file lists {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: some file names are listed more than once")
    return names, values


def read_partition(path: Path) -> dict[str, int]:
    """``{file name: 0 | 1 | 2}`` from ``list_eval_partition.txt``; ``ValueError`` naming the file
    and line on malformed content."""
    partition: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(
                f"{path}:{lineno + 1}: expected '<file name> <0|1|2>', got {line.strip()!r}"
            )
        partition[parts[0]] = int(parts[1])
    return partition


def decode_image(path: Path, size: int) -> torch.Tensor:
    """The image at ``path`` as uint8 ``[3, size, size]``: RGB in [0, 1], resized bilinearly with
    half-pixel centres and no antialiasing (TensorFlow's ``tf.image.resize``, which TAG used),
    rounded back to 8 bits. ``ValueError`` naming the file when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode the image ({e})") from None
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(torch.float32) / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x[0] * 255.0).round_().clamp_(0, 255).to(torch.uint8)


class CelebaRows:
    """Reads rows of one split: images from ``paths`` (decoded on demand, cached up to
    ``cache_bytes``) and targets from ``targets[name] [N]`` (float32 0/1, held in memory)."""

    def __init__(
        self, paths: list[Path], targets: dict[str, torch.Tensor], size: int, cache_bytes: int
    ):
        self.paths = paths
        self.targets = targets
        self.size = size
        self.capacity = cache_bytes // (3 * size * size)
        self._cache: dict[int, torch.Tensor] = {}

    def __call__(self, rows: np.ndarray, names: tuple[str, ...]) -> Batch:
        images = torch.stack([self.image(int(r)) for r in rows])
        index = torch.from_numpy(rows)
        return images.to(torch.float32) / 255.0, {n: self.targets[n][index] for n in names}

    def image(self, row: int) -> torch.Tensor:
        """Image ``row`` as uint8 ``[3, size, size]``."""
        cached = self._cache.get(row)
        if cached is not None:
            return cached
        image = decode_image(self.paths[row], self.size)
        # Shuffled access hits every image alike, so keeping the first ones is as good as LRU.
        if len(self._cache) < self.capacity:
            self._cache[row] = image
        return image

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` with 3×3 convolutions of ``channels``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            _batch_norm(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            _batch_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # Keras' BatchNormalization defaults, as in TAG's model (Keras momentum 0.99 = torch 0.01).
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def feature_side(image_size: int) -> int:
    """Side of the trunk's last feature map: 3×3 max-pool with stride 2, then 2×2 average pool."""
    return ((image_size - 3) // 2 + 1) // 2


def build_model(tasks: TaskSet, *, width: int = 64, image_size: int = 64) -> MultiTaskModel:
    """TAG's CelebA model for images ``[N, 3, image_size, image_size]``: a 3×3 convolution of
    ``width`` channels with batch-norm and ReLU, 3×3 max-pool (stride 2), one residual block, 2×2
    average pool, flatten; one linear head per (binary) task on the
    ``width · feature_side(image_size)²`` features (14,400 for TAG's 64 and 64). TAG's heads are
    two-way softmax layers; a single logit with binary cross-entropy is the same family.
    """
    side = feature_side(image_size)
    trunk = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False),
        _batch_norm(width),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        ResidualBlock(width),
        nn.AvgPool2d(2),
        nn.Flatten(),
    )
    return MultiTaskModel(trunk, make_heads(tasks, width * side * side))


def load(
    *,
    data_root: str | os.PathLike | None = None,
    attributes: list[str] | tuple[str, ...] = TAG_ATTRIBUTES,
    image_size: int = TAG_IMAGE_SIZE,
    width: int = 64,
    limit: int | None = None,
    cache_mb: float = 512,
) -> Benchmark:
    """The ``celeba`` benchmark read from the standard files under ``data_root``.

    Args:
        data_root: folder holding ``img_align_celeba/``, ``list_attr_celeba.txt`` and
            ``list_eval_partition.txt`` (see :func:`expected_layout`).
        attributes: the tasks, CelebA attribute names (default: TAG's nine).
        image_size: side of the square resized images (TAG: 64).
        width: channels of the trunk (TAG: 64).
        limit: use only the first ``limit`` images of each split (quick runs).
        cache_mb: memory for decoded images per split and process (0 disables the cache).

    Raises ``FileNotFoundError`` listing the expected layout when files are missing, and
    ``ValueError`` naming the file (and line) when a text file is malformed. A corrupt image
    raises ``ValueError`` naming it when a batch first reads it.
    """
    attributes = _check_options(data_root, attributes, image_size, width, limit, cache_mb)
    root = Path(data_root).expanduser()
    image_dir = root / IMAGE_DIR
    names, values, rows = read_splits(root, attributes, limit)
    cache_bytes = int(cache_mb * 2**20)
    splits = {}
    for split in SPLITS:
        r = rows[split]
        targets = {
            a: torch.from_numpy(values[r, k].astype(np.float32)) for k, a in enumerate(attributes)
        }
        reader = CelebaRows([image_dir / names[i] for i in r], targets, image_size, cache_bytes)
        splits[split] = StreamingSplit(reader, len(r), attributes)
    return Benchmark(
        name="celeba",
        tasks=TaskSet(make_task(a, "binary") for a in attributes),
        model_factory=partial(build_model, width=width, image_size=image_size),
        defaults=TrainingDefaults(optimizer="sgd", lr=5e-4, batch_size=256, steps=3000, every=10),
        info={
            "data_root": str(root),
            "sizes": {split: len(rows[split]) for split in SPLITS},
            "limit": limit,
            "input_shape": [3, image_size, image_size],
            "width": width,
            "attributes": list(attributes),
        },
        **splits,
    )


def _check_options(
    data_root: str | os.PathLike | None,
    attributes: list[str] | tuple[str, ...],
    image_size: int,
    width: int,
    limit: int | None,
    cache_mb: float,
) -> tuple[str, ...]:
    """The options of :func:`load` checked (``ValueError`` naming the first bad one); returns
    the attributes as a tuple."""
    if data_root is None:
        raise ValueError(
            "celeba needs data_root= (CLI: --data-root): the folder holding img_align_celeba/, "
            f"{ATTRIBUTE_FILE} and {PARTITION_FILE}"
        )
    attributes = tuple(attributes)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown or not attributes or len(set(attributes)) != len(attributes):
        raise ValueError(
            f"attributes must be distinct CelebA attribute names; unknown: {unknown}; "
            f"choose from {list(ATTRIBUTES)}"
        )
    if feature_side(image_size) < 1:
        raise ValueError(f"image_size must be >= 5, got {image_size}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if cache_mb < 0:
        raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
    return attributes


def read_splits(
    root: Path, attributes: tuple[str, ...], limit: int | None = None
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """The file names ``[N]``, the 0/1 ``attributes`` ``[N, len(attributes)]`` (uint8) and the
    rows of each split (``{split: row indices}``, the first ``limit`` of each) of the CelebA
    files under ``root``.

    Raises ``FileNotFoundError`` listing the expected layout when a file, or an image a split
    uses, is missing, and ``ValueError`` naming the file (and line) when a text file is malformed
    or an image has no split.
    """
    image_dir, attr_path, part_path = root / IMAGE_DIR, root / ATTRIBUTE_FILE, root / PARTITION_FILE
    absent = [p for p in (image_dir, attr_path, part_path) if not p.exists()]
    if absent:
        raise FileNotFoundError(
            f"missing {', '.join(map(str, absent))}\n{expected_layout(root)}\n"
            "(Kaggle's copy nests the images in img_align_celeba/img_align_celeba/ and has .csv "
            "lists instead: rearrange it into this layout)"
        )
    names, values = read_attributes(attr_path, attributes)
    partition = read_partition(part_path)
    unassigned = [n for n in names if n not in partition]
    if unassigned:
        raise ValueError(
            f"{part_path}: no split for {len(unassigned)} image(s) of {attr_path}, "
            f"e.g. {unassigned[:3]}"
        )
    split_of = np.array([partition[n] for n in names])
    rows = {split: np.flatnonzero(split_of == k)[:limit] for k, split in enumerate(SPLITS)}
    present = set(os.listdir(image_dir))
    used = [names[i] for split in SPLITS for i in rows[split]]
    lacking = [n for n in used if n not in present]
    if lacking:
        raise FileNotFoundError(
            f"{len(lacking)} image(s) listed in {attr_path} are missing from {image_dir}, "
            f"e.g. {[str(image_dir / n) for n in lacking[:3]]}\n{expected_layout(root)}"
        )
    return names, values, rows
