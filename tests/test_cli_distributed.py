"""`--nproc 2`: the launched run equals one process; a rank that dies is named, and the same
command afterwards completes the run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main, run_on_rank
from taskgroup.distributed import LaunchError, launch

ARGS = ["affinity", "planted", "--steps", "6", "--every", "3", "--no-progress"]


def _die_on_rank_1(argv: list[str]) -> int:
    """Rank 1 dies mid-run: at its fourth co-training step."""
    if os.environ["RANK"] == "1":
        from taskgroup.affinity.tracker import AffinityTracker

        original = AffinityTracker.step
        calls = []

        def step(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                os._exit(7)
            return original(self, *args, **kwargs)

        AffinityTracker.step = step
    return run_on_rank(argv)


def test_nproc_2_equals_one_process(tmp_path, capfd):
    assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0
    assert main([*ARGS, "--out", str(tmp_path / "two"), "--nproc", "2"]) == 0
    printed = capfd.readouterr().out
    assert printed.count("Top 5 helping pairs") == 2  # rank 1 prints nothing
    one = AffinityMatrix.load(tmp_path / "one" / "affinity.json")
    two = AffinityMatrix.load(tmp_path / "two" / "affinity.json")
    np.testing.assert_allclose(two.values, one.values, atol=1e-5, rtol=0)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert "--nproc" not in manifest["stages"]["affinity"]["argv"]


def test_a_dead_rank_is_named_and_the_rerun_completes(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(LaunchError, match=r"rank 1 of 2 failed \(exit code 7\)"):
        launch(2, [*ARGS, "--out", out], entrypoint=_die_on_rank_1)
    assert main([*ARGS, "--out", out, "--nproc", "2"]) == 0
    assert AffinityMatrix.load(tmp_path / "run" / "affinity.json").values.shape == (9, 9)
