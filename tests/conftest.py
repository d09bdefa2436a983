"""Test-wide settings."""

import torch

# The models under test are tiny: one intra-op thread is as fast as two, and it keeps the suite
# fast and stable when other processes share the 2 cores (OpenMP spin-waits collapse otherwise).
torch.set_num_threads(1)
