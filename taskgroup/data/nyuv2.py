"""``nyuv2``: NYU-Depth v2 with 13-class segmentation, depth and surface normals, read from MTAN's
preprocessed arrays (no download).

Expected under ``data_root`` (MTAN's ``nyuv2`` release, github.com/lorenmt/mtan, the files that
``im2im_pred/create_dataset.py`` reads; LibMTL and Nash-MTL read the same)::

    train/image/0.npy ... 794.npy    RGB in [0, 1]          [288, 384, 3] float
    train/label/0.npy ...            class 0..12, -1 = none  [288, 384]    float
    train/depth/0.npy ...            depth, 0 = unknown      [288, 384, 1] float
    train/normal/0.npy ...           unit normal, 0 = none   [288, 384, 3] float
    val/{image,label,depth,normal}/0.npy ... 653.npy

Arrays are stored channel-last (MTAN moves the channel axis first when loading); channel-first
arrays are accepted too. ``image_size`` sets the expected ``(height, width)``.

Splits. MTAN has no validation set: it trains on ``train/`` (795 images) and reports on ``val/``
(654), and LibMTL and Nash-MTL do the same. Here ``test`` is MTAN's ``val/`` folder, so numbers
are comparable with the papers', and ``val`` is a seeded hold-out of ``val_fraction`` of
``train/`` (80 images by default), which ``train`` then excludes.

Tasks and metrics follow MTAN's ``utils.py`` and LibMTL's ``examples/nyu/utils.py``:

- ``segmentation``: cross-entropy over 13 classes ignoring label -1; ``miou`` and ``pixel_acc``
  from the confusion matrix of the whole split (LibMTL's definition).
- ``depth``: L1 on valid pixels (target != 0); ``abs_err`` and ``rel_err`` (|p - t| / t).
- ``normal``: 1 - cosine on valid pixels (target not all zero; predictions are normalised);
  the angle's ``angle_mean`` and ``angle_median`` in degrees and the fractions of pixels
  ``within_11_25``, ``within_22_5`` and ``within_30`` degrees.

Every metric is a :class:`~taskgroup.tasks.StreamingMetric` averaged over the valid pixels of the
whole split (MTAN and LibMTL average per-batch values, which weighs images unevenly).
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taskgroup.data.benchmark import Batch, Benchmark, StreamingSplit, TrainingDefaults
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import StreamingMetric, Task, TaskSet

SPLITS = ("train", "val", "test")
FOLDERS = ("image", "label", "depth", "normal")
CLASSES = 13
IMAGE_SIZE = (288, 384)
TASKS = ("segmentation", "depth", "normal")
CHANNELS = {"image": 3, "label": None, "depth": 1, "normal": 3}
# the MTAN folder of each task's targets
TARGET_FOLDER = {"segmentation": "label", "depth": "depth", "normal": "normal"}


# ---------------------------------------------------------------------------------------------
# Losses: mean-reduced over valid pixels, as in MTAN's model_fit.


def segmentation_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits ``[N, 13, H, W]`` against labels ``[N, H, W]`` (int64, -1 =
    ignored), averaged over labelled pixels."""
    return F.cross_entropy(prediction, target, ignore_index=-1)


def depth_mask(target: torch.Tensor) -> torch.Tensor:
    """Valid pixels ``[N, 1, H, W]`` (bool) of a depth map ``[N, 1, H, W]``: depth != 0 (MTAN)."""
    return target.sum(dim=1, keepdim=True) != 0


def normal_mask(target: torch.Tensor) -> torch.Tensor:
    """Valid pixels ``[N, 1, H, W]`` (bool) of normals ``[N, 3, H, W]``: components not summing
    to 0 (MTAN's test, which marks the all-zero normals of unknown pixels)."""
    return target.sum(dim=1, keepdim=True) != 0


def depth_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``|prediction - target|`` over valid pixels; both ``[N, 1, H, W]`` (0 if none)."""
    mask = depth_mask(target)
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1)


def normal_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - `` mean cosine between normalised ``prediction`` and ``target`` (``[N, 3, H, W]``)
    over valid pixels (1 if none)."""
    mask = normal_mask(target)
    cosine = (F.normalize(prediction, dim=1) * target).sum(dim=1, keepdim=True)
    return 1 - (cosine * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# Metrics: split-level statistics over valid pixels.


class ConfusionMetric(StreamingMetric):
    """Confusion matrix ``[classes, classes]`` (row = true class) over labelled pixels of logits
    ``[N, classes, H, W]`` and labels ``[N, H, W]``; subclasses read a score from it."""

    def __init__(self, classes: int = CLASSES):
        self.classes = classes
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.classes, self.classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        predicted = prediction.detach().argmax(dim=1).flatten()
        target = target.flatten().to(torch.int64)
        valid = (target >= 0) & (target < self.classes)
        cells = self.classes * target[valid] + predicted[valid]
        counts = torch.bincount(cells.cpu(), minlength=self.classes**2)
        self.confusion += counts.reshape(self.classes, self.classes)


class MeanIoU(ConfusionMetric):
    """Mean over classes of TP / (TP + FP + FN); classes that neither occur nor are predicted
    (union 0) are left out of the mean. NaN on a split without labelled pixels."""

    def compute(self) -> float:
        h = self.confusion.to(torch.float64)
        tp = h.diag()
        union = h.sum(0) + h.sum(1) - tp
        present = union > 0
        return float((tp[present] / union[present]).mean()) if present.any() else math.nan


class PixelAccuracy(ConfusionMetric):
    """Fraction of labelled pixels whose argmax class is right."""

    def compute(self) -> float:
        total = self.confusion.sum()
        return float(self.confusion.diag().sum() / total) if total > 0 else math.nan


class DepthError(StreamingMetric):
    """Mean absolute (``relative=False``) or relative (``|p - t| / t``) depth error over the valid
    pixels of the split; predictions and targets ``[N, 1, H, W]``."""

    def __init__(self, relative: bool = False):
        self.relative = relative
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        mask = depth_mask(target)
        t = target[mask].to(torch.float64)
        error = (prediction.detach()[mask].to(torch.float64) - t).abs()
        if self.relative:
            error = error / t
        self.total += float(error.sum())
        self.count += int(mask.sum())

    def compute(self) -> float:
        return self.total / self.count if self.count else math.nan


def normal_angles(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angles in degrees ``[V]`` (float64) between normalised ``prediction`` and ``target``
    (``[N, 3, H, W]``) at the V valid pixels."""
    cosine = (F.normalize(prediction.detach().to(torch.float64), dim=1) * target).sum(dim=1)
    cosine = cosine[normal_mask(target)[:, 0]]
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))


class AngleMean(StreamingMetric):
    """Mean angle (degrees) between predicted and true normals over the split's valid pixels."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        angles = normal_angles(prediction, target)
        self.total += float(angles.sum())
        self.count += angles.numel()

    def compute(self) -> float:
        return self.total / self.count if self.count else math.nan


class AngleWithin(StreamingMetric):
    """Fraction of valid pixels whose normal angle is below ``degrees``."""

    def __init__(self, degrees: float):
        self.degrees = degrees
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.count = 0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        angles = normal_angles(prediction, target)
        self.hits += int((angles < self.degrees).sum())
        self.count += angles.numel()

    def compute(self) -> float:
        return self.hits / self.count if self.count else math.nan


class AngleMedian(StreamingMetric):
    """Median angle (degrees) over the split's valid pixels, from a histogram of
    ``resolution``-degree bins over [0, 180] (exact to ``resolution / 2``; memory does not grow
    with the split, unlike keeping every angle: 72 M of them on MTAN's test set)."""

    def __init__(self, resolution: float = 1e-3):
        self.resolution = resolution
        self.bins = math.ceil(180.0 / resolution) + 1
        self.reset()

    def reset(self) -> None:
        self.histogram = torch.zeros(self.bins, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        angles = normal_angles(prediction, target).cpu()
        index = (angles / self.resolution).floor().to(torch.int64).clamp_(0, self.bins - 1)
        self.histogram += torch.bincount(index, minlength=self.bins)

    def compute(self) -> float:
        count = int(self.histogram.sum())
        if count == 0:
            return math.nan
        cumulative = self.histogram.cumsum(0)
        # the bins of the two middle order statistics (equal for an odd count), as np.median
        low = int(torch.searchsorted(cumulative, (count + 1) // 2))
        high = int(torch.searchsorted(cumulative, count // 2 + 1))
        return (low + high + 1) * self.resolution / 2


def make_tasks() -> TaskSet:
    """The three NYUv2 tasks with MTAN's losses and the metrics the papers report."""
    return TaskSet(
        [
            Task(
                "segmentation",
                segmentation_loss,
                metrics={"miou": MeanIoU(), "pixel_acc": PixelAccuracy()},
                higher_is_better={"miou": True, "pixel_acc": True},
                kind="segmentation",
            ),
            Task(
                "depth",
                depth_loss,
                metrics={"abs_err": DepthError(), "rel_err": DepthError(relative=True)},
                higher_is_better={"abs_err": False, "rel_err": False},
                kind="depth",
            ),
            Task(
                "normal",
                normal_loss,
                metrics={
                    "angle_mean": AngleMean(),
                    "angle_median": AngleMedian(),
                    "within_11_25": AngleWithin(11.25),
                    "within_22_5": AngleWithin(22.5),
                    "within_30": AngleWithin(30.0),
                },
                higher_is_better={
                    "angle_mean": False,
                    "angle_median": False,
                    "within_11_25": True,
                    "within_22_5": True,
                    "within_30": True,
                },
                kind="normal",
            ),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Files.


def expected_layout(root: Path, image_size: tuple[int, int] = IMAGE_SIZE) -> str:
    """The files ``nyuv2`` reads, as a message for errors and docs."""
    h, w = image_size
    return (
        f"nyuv2 expects MTAN's preprocessed arrays under {root}:\n"
        f"  {root}/train/image/0.npy ... N-1.npy   [{h}, {w}, 3] RGB\n"
        f"  {root}/train/label/<same numbers>.npy  [{h}, {w}] class 0..12, -1 = unlabelled\n"
        f"  {root}/train/depth/<same numbers>.npy  [{h}, {w}, 1]\n"
        f"  {root}/train/normal/<same numbers>.npy [{h}, {w}, 3]\n"
        f"  {root}/val/{{image,label,depth,normal}}/0.npy ... (the same, MTAN's test images)"
    )


def _shapes(folder: str, size: tuple[int, int]) -> list[tuple[int, ...]]:
    """Accepted shapes of an array of ``folder``: channel-last (MTAN's files) or channel-first."""
    h, w = size
    c = CHANNELS[folder]
    if c is None:
        return [(h, w)]
    return [(h, w, c), (c, h, w), *([(h, w)] if c == 1 else [])]


def _bad_shape(path: Path, shape, folder: str, size: tuple[int, int]) -> ValueError:
    accepted = " or ".join(str(list(s)) for s in _shapes(folder, size))
    return ValueError(f"{path}: array of shape {list(shape)}, expected {accepted} ({folder})")


def check_array(path: Path, folder: str, size: tuple[int, int]) -> None:
    """``ValueError`` naming ``path`` unless it is a whole .npy array of a shape of ``folder``
    (reads the header only)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    try:
        if array.shape not in _shapes(folder, size):
            raise _bad_shape(path, array.shape, folder, size)
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{path}: array of dtype {array.dtype}, expected numbers")
    finally:
        del array


def read_array(path: Path, folder: str, size: tuple[int, int]) -> torch.Tensor:
    """The array at ``path`` as float32, channel-first (``[C, H, W]``, or ``[H, W]`` for labels);
    ``ValueError`` naming the file on a wrong shape or unreadable content."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: array file is missing") from None
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    h, w = size
    if array.shape not in _shapes(folder, size) or not np.issubdtype(array.dtype, np.number):
        raise _bad_shape(path, array.shape, folder, size)
    if array.ndim == 2 and folder != "label":
        array = array[None]
    elif array.ndim == 3 and array.shape[:2] == (h, w):
        array = np.moveaxis(array, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def read_label(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """Labels ``[H, W]`` int64 in -1..12; ``ValueError`` naming the file on other values."""
    label = read_array(path, "label", size)
    whole = label.round()
    if not torch.equal(whole, label) or label.min() < -1 or label.max() >= CLASSES:
        raise ValueError(
            f"{path}: labels must be whole numbers in -1..{CLASSES - 1}, found values in "
            f"[{float(label.min())}, {float(label.max())}]"
        )
    return label.to(torch.int64)


class NyuRows:
    """Reads rows of one split: row ``r`` is the numbered file ``numbers[r]`` in each folder of
    ``folder`` (``<root>/train`` or ``<root>/val``)."""

    def __init__(self, folder: Path, numbers: np.ndarray, size: tuple[int, int]):
        self.folder = folder
        self.numbers = numbers
        self.size = size

    def path(self, kind: str, row: int) -> Path:
        return self.folder / kind / f"{int(self.numbers[row])}.npy"

    def __call__(self, rows: np.ndarray, names: tuple[str, ...]) -> Batch:
        images = torch.stack([read_array(self.path("image", r), "image", self.size) for r in rows])
        targets = {}
        for name in names:
            kind = TARGET_FOLDER[name]
            if kind == "label":
                items = [read_label(self.path(kind, r), self.size) for r in rows]
            else:
                items = [read_array(self.path(kind, r), kind, self.size) for r in rows]
            targets[name] = torch.stack(items)
        return images, targets


def _numbers(folder: Path, root: Path, size: tuple[int, int]) -> np.ndarray:
    """The file numbers ``0..N-1`` present in every kind folder of ``folder``."""
    absent = [folder / kind for kind in FOLDERS if not (folder / kind).is_dir()]
    if absent:
        raise FileNotFoundError(
            f"missing {', '.join(map(str, absent))}\n{expected_layout(root, size)}"
        )
    found = {}
    for kind in FOLDERS:
        stems = [f[:-4] for f in os.listdir(folder / kind) if f.endswith(".npy")]
        found[kind] = {int(s) for s in stems if s.isdigit()}
    n = len(found["image"])
    if n == 0:
        raise FileNotFoundError(
            f"no .npy arrays in {folder / 'image'}\n{expected_layout(root, size)}"
        )
    for kind in FOLDERS:
        missing = sorted(set(range(n)) - found[kind])
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} array(s) missing from {folder / kind} (expected 0.npy ... "
                f"{n - 1}.npy, as in {folder / 'image'}), e.g. "
                f"{[str(folder / kind / f'{i}.npy') for i in missing[:3]]}\n"
                f"{expected_layout(root, size)}"
            )
    return np.arange(n)


# ---------------------------------------------------------------------------------------------
# Model.


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class DenseTrunk(nn.Module):
    """A tiny SegNet-like encoder-decoder: ``[N, 3, H, W] -> [N, width, H, W]``.

    Encoder: conv(3→w), max-pool 2, conv(w→2w), max-pool 2, conv(2w→2w); decoder: bilinear
    up-sampling back to each encoder resolution, each followed by a conv (2w→w, then w→w). Every
    conv is 3×3 with batch-norm and ReLU. Any H, W >= 4 work.
    """

    def __init__(self, width: int):
        super().__init__()
        self.enc1 = _conv(3, width)
        self.enc2 = _conv(width, 2 * width)
        self.mid = _conv(2 * width, 2 * width)
        self.dec2 = _conv(2 * width, width)
        self.dec1 = _conv(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(_upsample(m, e2))
        return self.dec1(_upsample(d2, e1))


class DenseHead(nn.Module):
    """MTAN's task head: 3×3 conv (width→width), ReLU, 1×1 conv (width→``out``); with
    ``unit=True`` the output vectors are normalised (surface normals)."""

    def __init__(self, width: int, out: int, *, unit: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out, 1)
        )
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return F.normalize(y, dim=1) if self.unit else y


def build_model(tasks: TaskSet, *, width: int = 32) -> MultiTaskModel:
    """:class:`DenseTrunk` of ``width`` with a :class:`DenseHead` per task: segmentation logits
    ``[N, 13, H, W]``, depth ``[N, 1, H, W]``, unit normals ``[N, 3, H, W]``."""
    outputs = {"segmentation": (CLASSES, False), "depth": (1, False), "normal": (3, True)}
    heads = {}
    for task in tasks:
        if task.name not in outputs:
            raise ValueError(f"unknown nyuv2 task {task.name!r}; choose from {list(outputs)}")
        out, unit = outputs[task.name]
        heads[task.name] = DenseHead(width, out, unit=unit)
    return MultiTaskModel(DenseTrunk(width), heads)


def load(
    *,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    image_size: tuple[int, int] | list[int] = IMAGE_SIZE,
    width: int = 32,
    limit: int | None = None,
) -> Benchmark:
    """The ``nyuv2`` benchmark read from MTAN's arrays under ``data_root``.

    Args:
        data_root: folder holding ``train/`` and ``val/`` (see :func:`expected_layout`).
        seed: fixes which ``train/`` images are held out for validation.
        val_fraction: fraction of ``train/`` held out as the ``val`` split (at least one image).
        image_size: ``(height, width)`` of the arrays (MTAN's: 288 × 384).
        width: channels of the model's decoder output (its encoder goes to twice that).
        limit: use only the first ``limit`` images of each split (quick runs).

    ``test`` is MTAN's ``val/`` folder. Raises ``FileNotFoundError`` listing the expected layout
    when files are missing and ``ValueError`` naming the file when an array has the wrong shape
    or cannot be read (every used file's header is checked here; contents when a batch reads it).
    """
    if data_root is None:
        raise ValueError(
            "nyuv2 needs data_root= (CLI: --data-root): the folder holding MTAN's train/ and val/"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 4:
        raise ValueError(f"image_size must be (height, width), both >= 4, got {image_size!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")

    root = Path(data_root).expanduser()
    absent = [root / d for d in ("train", "val") if not (root / d).is_dir()]
    if absent:
        raise FileNotFoundError(
            f"missing {', '.join(map(str, absent))}\n{expected_layout(root, size)}"
        )
    train_numbers = _numbers(root / "train", root, size)
    test_numbers = _numbers(root / "val", root, size)
    if len(train_numbers) < 2:
        raise ValueError(f"{root / 'train'}: needs at least 2 images to hold one out for val")
    held = max(1, round(val_fraction * len(train_numbers)))
    held = min(held, len(train_numbers) - 1)
    order = np.random.default_rng(seed).permutation(len(train_numbers))
    numbers = {
        "train": np.sort(train_numbers[order[held:]])[:limit],
        "val": np.sort(train_numbers[order[:held]])[:limit],
        "test": test_numbers[:limit],
    }
    folders = {"train": root / "train", "val": root / "train", "test": root / "val"}
    for split in SPLITS:
        for i in numbers[split]:
            for kind in FOLDERS:
                check_array(folders[split] / kind / f"{i}.npy", kind, size)

    rows = {split: NyuRows(folders[split], numbers[split], size) for split in SPLITS}
    splits = {split: StreamingSplit(rows[split], len(numbers[split]), TASKS) for split in SPLITS}
    return Benchmark(
        name="nyuv2",
        tasks=make_tasks(),
        model_factory=partial(build_model, width=width),
        defaults=TrainingDefaults(optimizer="adam", lr=1e-4, batch_size=8, steps=2000, every=10),
        info={
            "data_root": str(root),
            "seed": seed,
            "val_fraction": val_fraction,
            "sizes": {split: len(numbers[split]) for split in SPLITS},
            "limit": limit,
            "input_shape": [3, *size],
            "width": width,
            "test_is": "MTAN's val/ folder",
        },
        **splits,
    )
