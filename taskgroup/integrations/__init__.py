"""Integrations with training frameworks, each behind an optional extra.

- :mod:`taskgroup.integrations.lightning`: ``AffinityCallback``, the lookahead affinity measured
  inside a PyTorch Lightning ``Trainer.fit`` (``pip install "taskgroup[lightning]"``).

Nothing here is imported by the rest of the package; import the module you need.
"""
