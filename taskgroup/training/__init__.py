"""Training loops: the co-training run that measures affinity."""
