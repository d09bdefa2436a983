"""``analysis/ground_truth.py``: complete blocks are digested (histories only for initialisation
0's networks of one or two tasks), incomplete ones are not, and a restore gives
``grouping_quality`` back the very results it trained."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import ground_truth
import grouping_quality as gq

from taskgroup.storage import read_json, write_json
from taskgroup.training.trainer import group_key

TASKS = ["a", "b", "c"]


def _train_layout(out: Path, seed: int, init: int, skip: tuple[str, ...] | None = None) -> None:
    """``result.json`` files as the trainer writes them, one per subset of ``TASKS``."""
    for i, subset in enumerate(gq.subsets(TASKS)):
        if subset == skip:
            continue
        metrics = {t: {"loss": 1.0 + i / 10 + init, "accuracy": 0.5} for t in subset}
        result = {
            "tasks": list(subset),
            "aggregator": "mean",
            "best_step": 100 * (i + 1),
            "steps": 100 * (i + 2),
            "criterion": 0.5 + i,
            "val": metrics,
            "test": metrics,
            "parameters": 10,
            "seconds": 1.5,
            "history": [{"step": 0, "criterion": 1.0}, {"step": 100, "criterion": 0.5 + i}],
        }
        config = {"tasks": list(subset), "settings": {"seed": seed + 1000 * init}}
        path = gq.subsets_dir(out, seed, init) / group_key(subset, "mean") / "result.json"
        write_json(path, {"config": config, "result": result})


def test_digest_and_restore_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(ground_truth, "DIGESTS", tmp_path / "digests")
    trained = tmp_path / "trained"
    _train_layout(trained, seed=0, init=0)
    _train_layout(trained, seed=0, init=1)
    _train_layout(trained, seed=1, init=0, skip=("a", "c"))  # unfinished: not digested
    written = ground_truth.digest(trained, "toy", networks=7)
    assert sorted(p.name for p in written) == ["seed0_init0.json", "seed0_init1.json"]

    restored = tmp_path / "restored"
    assert ground_truth.restore(restored, "toy") == 14
    for init in (0, 1):
        before = sorted(gq.subsets_dir(trained, 0, init).glob("*/result.json"))
        after = sorted(gq.subsets_dir(restored, 0, init).glob("*/result.json"))
        assert [p.parent.name for p in after] == [p.parent.name for p in before]
        for old, new in zip(before, after, strict=True):
            expected = read_json(old)
            if init != 0 or len(expected["result"]["tasks"]) > 2:
                expected["result"]["history"] = []
            assert read_json(new) == expected
    assert not (restored / "seed1").exists()
    assert ground_truth.restore(restored, "toy") == 0  # existing results are kept
