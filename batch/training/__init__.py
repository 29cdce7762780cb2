"""Training: the classifier and its validation (``model``), ``xray retrain`` (``retrain``) with the drift
reference it stores (``reference``), ``xray rescore`` (``rescore``) and when periodic retraining is due
(``schedule``).
"""

__all__ = ["model", "reference", "rescore", "retrain", "schedule"]
