"""Training: the classifier and its validation (``model``), ``xray retrain`` (``retrain``) with the drift
reference it stores (``reference``) and ``xray rescore`` (``rescore``).
"""

__all__ = ["model", "reference", "rescore", "retrain"]
