"""Batch jobs over the lakehouse: model training and rescoring (``training``), evaluation, metrics and the
report (``evaluation``), the periodic retrain cycle over both (``retraining``), the benchmark (``bench``) and
the demo (``demo``).
"""

__all__ = ["bench", "demo", "evaluation", "retraining", "training"]
