"""Recipes the end-to-end tests share: tiny, so `taskgroup run` takes seconds."""

# the stage tables every tiny recipe shares (6 co-training steps, 20 training steps)
TINY_STAGES = """[affinity]
steps = 6
every = 3
[group]
budget = 2
sweep = true
[train]
steps = 20
eval_every = 10
"""

TINY = (
    """
seed = {seed}
[benchmark]
name = "planted"
groups = 2
tasks_per_group = 2
n_train = 256
n_val = 64
n_test = 64
"""
    + TINY_STAGES
)


def tiny(seed: int = 0) -> str:
    """The tiny planted recipe (4 tasks, 6 co-training steps, 20 training steps)."""
    return TINY.format(seed=seed)
