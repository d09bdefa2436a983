"""AffinityTracker measures on schedule and averages exactly what lookahead_affinity returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskgroup.affinity import AffinityTracker, lookahead_affinity

from .conftest import LOSSES, make_batch, make_model


def test_tracker_measures_every_k_steps_and_averages_them():
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tracker = AffinityTracker(model, LOSSES, optimizer=opt, every=3)
    expected = []
    for step in range(7):
        x, t = make_batch(seed=step)
        if step % 3 == 0:
            expected.append(lookahead_affinity(model, x, t, LOSSES, optimizer=opt).numpy())
        measured = tracker.step(x, t)
        assert (measured is not None) == (step % 3 == 0)
        opt.zero_grad()
        out = model(x)
        sum(LOSSES[n](out[n], t[n]) for n in LOSSES).backward()
        opt.step()
    result = tracker.result(run="test")
    assert result.trace_steps == [0, 3, 6]
    assert result.trace_lr == [1e-2] * 3
    np.testing.assert_allclose(result.trace, np.stack(expected), atol=1e-12)
    np.testing.assert_allclose(result.values, np.mean(expected, axis=0), atol=1e-12)
    assert result.metadata == {"lookahead": "optimizer", "every": 3, "run": "test"}


def test_tracker_validates_its_schedule():
    model = make_model()
    with pytest.raises(ValueError, match="every must be a positive integer"):
        AffinityTracker(model, LOSSES, lr=0.1, every=0)
    with pytest.raises(ValueError, match="no affinity measured"):
        AffinityTracker(model, LOSSES, lr=0.1).result()


def test_a_model_that_needs_shared_fails_when_the_tracker_is_made():
    """A plain nn.Module names its shared parameters with shared=; without it the tracker
    refuses at construction, not at its first step()."""

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = make_model()

        def forward(self, x):
            return self.inner(x)

    model = Plain()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="shared=None only works for a MultiTaskModel"):
        AffinityTracker(model, LOSSES, optimizer=opt)
    tracker = AffinityTracker(model, LOSSES, optimizer=opt, shared=model.inner.trunk)
    x, t = make_batch(seed=0)
    expected = lookahead_affinity(model, x, t, LOSSES, optimizer=opt, shared=model.inner.trunk)
    np.testing.assert_allclose(tracker.step(x, t).numpy(), expected.numpy(), atol=0)
